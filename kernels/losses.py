"""Losses: each `*_forward` returns the reduced loss as a float, each
`*_backward` writes d loss / d pred.

Shapes: pred, target and grad_pred are flat (n,) views of same-shaped arrays,
except for softmax cross-entropy, which works on rows of (B, C) logits.
The loss is accumulated in float64 whatever the input dtype, so a float32
loss printed to 4 digits does not depend on the batch size's rounding.
Gradients are computed in the input's dtype, as torch does.
"""
import numpy as np

from ._jit import inline, jit, jit_sum
from .activations import exp_nonpositive_float64

MEAN, SUM, HALF_SUM, SKLEARN = 0, 1, 2, 3
REDUCTIONS = ("mean", "sum", "half_sum", "sklearn")
# SKLEARN: scikit-learn's MLP losses, for fastbp.sklearn only (no Loss class
# offers it), computed by weighted_loss_forward_backward: each row's loss
# summed over its outputs (half the squared error for MSE), averaged over the
# rows (weighted: divided by sum_i w_i), so d loss / d pred = w_i (pred -
# target) / sum_i w_i at the canonical output activations; the squared error
# it reports is divided by the outputs per row as well, as scikit-learn's
# squared_loss is while its gradient is not.

# Which loss: the one enumeration the whole-network kernels (network.py) and
# the CUDA kernels (cuda/losses.py) share, named by each fastbp Loss class.
MSE, BCE, BCE_WITH_LOGITS, CROSS_ENTROPY_LABELS, CROSS_ENTROPY_SOFT = 0, 1, 2, 3, 4


@jit
def _reduce(total, n, reduction):
    if reduction == MEAN:
        return total / n if n > 0 else np.nan
    if reduction == HALF_SUM:
        return 0.5 * total
    return total


# -- mean squared error: (pred - target)^2, reduced ---------------------------

# pred (n,), target (n,), reduction
@jit_sum  # a strict left-to-right float64 sum waits ~4 cycles per element
def mse_forward(pred, target, reduction):
    total = 0.0
    for i in range(pred.shape[0]):
        diff = np.float64(pred[i]) - np.float64(target[i])
        total += diff * diff
    return _reduce(total, pred.shape[0], reduction)


# pred (n,), target (n,), reduction -> grad_pred (n,)
@jit
def mse_backward(pred, target, reduction, grad_pred):
    n = pred.shape[0]
    scale = 1.0 if reduction == HALF_SUM else (2.0 if reduction == SUM else 2.0 / max(n, 1))
    scale_t = grad_pred.dtype.type(scale)
    for i in range(n):
        grad_pred[i] = scale_t * (pred[i] - target[i])


# -- binary cross-entropy on probabilities ------------------------------------
# As in torch, each log is clamped at -100 so p = 0 or 1 gives a finite loss,
# and the gradient's denominator p(1-p) is clamped at 1e-12.

# pred (n,) in [0, 1], target (n,), reduction
@jit
def bce_forward(pred, target, reduction):
    total = 0.0
    for i in range(pred.shape[0]):
        p = np.float64(pred[i])
        t = np.float64(target[i])
        log_p = max(np.log(p), -100.0) if p == p else p
        log_1mp = max(np.log(1.0 - p), -100.0) if p == p else p
        total -= t * log_p + (1.0 - t) * log_1mp
    return _reduce(total, pred.shape[0], reduction)


# pred (n,), target (n,), reduction -> grad_pred (n,)
@jit
def bce_backward(pred, target, reduction, grad_pred):
    n = pred.shape[0]
    scale = 1.0 / max(n, 1) if reduction == MEAN else 1.0
    eps = grad_pred.dtype.type(1e-12)
    scale_t = grad_pred.dtype.type(scale)
    one = grad_pred.dtype.type(1)
    for i in range(n):
        p = pred[i]
        grad_pred[i] = scale_t * (p - target[i]) / max((one - p) * p, eps)


# -- binary cross-entropy on logits -------------------------------------------
# max(z, 0) - z t + log1p(exp(-|z|)): no overflow for any finite z.

# logits (n,), target (n,), reduction
@jit
def bce_with_logits_forward(logits, target, reduction):
    total = 0.0
    for i in range(logits.shape[0]):
        z = np.float64(logits[i])
        total += max(z, 0.0) - z * np.float64(target[i]) + np.log1p(np.exp(-np.abs(z)))
    return _reduce(total, logits.shape[0], reduction)


# logits (n,), target (n,), reduction -> grad_logits (n,)
@jit
def bce_with_logits_backward(logits, target, reduction, grad_logits):
    n = logits.shape[0]
    scale = 1.0 / max(n, 1) if reduction == MEAN else 1.0
    scale_t = grad_logits.dtype.type(scale)
    one = grad_logits.dtype.type(1)
    for i in range(n):
        z = logits[i]
        e = np.exp(-np.abs(z))
        s = one / (one + e)
        sigmoid = s if z >= 0 else e * s
        grad_logits[i] = scale_t * (sigmoid - target[i])


# -- softmax cross-entropy -----------------------------------------------------
# log-sum-exp with the row maximum subtracted: no overflow for any finite row.
# Targets are class indices (B,) or per-class probabilities (B, C), one pair
# of kernels for each. The batch's exponentials are computed once, into
# float64 scratch, by exp_nonpositive_float64 (every exponent is <= 0) in one
# vector loop: libm's exp is a call per value that keeps a loop scalar, 2.2x
# slower on (256, 10) float32 logits with one call per value (python
# benchmarks/step_costs.py); these kernels called it three times per value.

# compiled once and called, not inlined: the five kernels below share it,
# and an inlined copy in each added seconds to a cold start's compile
@jit
def _softmax_terms(logits):
    """(exps (B, C), row_max (B,), total (B,)), in float64: each row's maximum
    m, exp(z_c - m) for each of its values and their sum s, added in order (it
    never depends on the vector width). For a row whose maximum is not
    finite, s is NaN and exps holds exp(z_c - m): NaN or 0, as numpy gives."""
    batch, width = logits.shape
    exps = np.empty((batch, width), np.float64)
    row_max = np.empty(batch, np.float64)
    total = np.empty(batch, np.float64)
    all_finite = True
    for i in range(batch):
        m = -np.inf
        for c in range(width):
            m = max(m, np.float64(logits[i, c]))
        row_max[i] = m
        all_finite &= np.isfinite(m)
        for c in range(width):
            shifted = np.float64(logits[i, c]) - m
            exps[i, c] = -1080.0 if shifted < -1080.0 else shifted  # -inf logits give 0; NaN passes
    flat = exps.ravel()
    for k in range(flat.shape[0]):  # one vector loop over the batch: rows of 10 are too short for one
        flat[k] = exp_nonpositive_float64(flat[k])
    for i in range(batch):
        m = row_max[i]
        if not all_finite and not np.isfinite(m):
            for c in range(width):
                exps[i, c] = np.exp(np.float64(logits[i, c]) - m)
            row_max[i] = m if m == m else np.nan
            total[i] = np.nan
            continue
        row_total = 0.0
        for c in range(width):
            row_total += exps[i, c]
        total[i] = row_total
    return exps, row_max, total


@inline
def _logsumexp(row_max, total, i):
    return row_max[i] if not np.isfinite(row_max[i]) else row_max[i] + np.log(total[i])


@inline
def _softmax(exps, i, c, row_max, total):
    """softmax(z)_c as exp(z_c - m) / s: exp(z_c - logsumexp) would lose
    log(s) to absorption once |m| dwarfs it (1e16 in float64), turning two
    tied maxima's 0.5 into 1."""
    return exps[i, c] if not np.isfinite(row_max[i]) else exps[i, c] / total[i]


# logits (B, C), labels (B,) int, reduction
@jit
def softmax_cross_entropy_forward(logits, labels, reduction):
    exps, row_max, sum_exp = _softmax_terms(logits)
    total = 0.0
    for i in range(logits.shape[0]):
        total += _logsumexp(row_max, sum_exp, i) - np.float64(logits[i, labels[i]])
    return _reduce(total, logits.shape[0], reduction)


# logits (B, C), labels (B,) int, reduction -> grad_logits (B, C)
# scale * (softmax - onehot) in float64, rounded once to the gradient's dtype:
# rounding scale first left float32(1/B) - 1/B behind where softmax is 1.
@jit
def softmax_cross_entropy_backward(logits, labels, reduction, grad_logits):
    batch = logits.shape[0]
    scale = 1.0 / max(batch, 1) if reduction == MEAN else 1.0
    exps, row_max, total = _softmax_terms(logits)
    for i in range(batch):
        label = labels[i]
        for c in range(logits.shape[1]):
            softmax = _softmax(exps, i, c, row_max, total)
            grad_logits[i, c] = scale * (softmax - 1.0 if c == label else softmax)


# Both in one pass, each exponential computed once: the same values as the
# forward, then the backward (the fused step's loss, kernels/network.py).
@jit
def softmax_cross_entropy_forward_backward(logits, labels, reduction, grad_logits):
    batch = logits.shape[0]
    scale = 1.0 / max(batch, 1) if reduction == MEAN else 1.0
    exps, row_max, total = _softmax_terms(logits)
    value = 0.0
    for i in range(batch):
        label = labels[i]
        value += _logsumexp(row_max, total, i) - np.float64(logits[i, label])
        for c in range(logits.shape[1]):
            softmax = _softmax(exps, i, c, row_max, total)
            grad_logits[i, c] = scale * (softmax - 1.0 if c == label else softmax)
    return _reduce(value, batch, reduction)


# logits (B, C), target_probs (B, C), reduction
@jit
def soft_cross_entropy_forward(logits, target_probs, reduction):
    exps, row_max, sum_exp = _softmax_terms(logits)
    total = 0.0
    for i in range(logits.shape[0]):
        lse = _logsumexp(row_max, sum_exp, i)
        for c in range(logits.shape[1]):
            t = np.float64(target_probs[i, c])
            if t != 0.0:
                total -= t * (np.float64(logits[i, c]) - lse)
    return _reduce(total, logits.shape[0], reduction)


# logits (B, C), target_probs (B, C), reduction -> grad_logits (B, C)
# d/dz of -sum_c t_c log_softmax(z)_c = softmax(z) * sum_c t_c - t
@jit
def soft_cross_entropy_backward(logits, target_probs, reduction, grad_logits):
    batch = logits.shape[0]
    scale = 1.0 / max(batch, 1) if reduction == MEAN else 1.0
    exps, row_max, total = _softmax_terms(logits)
    for i in range(batch):
        target_mass = 0.0
        for c in range(logits.shape[1]):
            target_mass += np.float64(target_probs[i, c])
        for c in range(logits.shape[1]):
            softmax = _softmax(exps, i, c, row_max, total)
            grad_logits[i, c] = scale * (softmax * target_mass - np.float64(target_probs[i, c]))


# -- per-row weights (sample and class weights) ----------------------------------
# The loss is sum_i w_i l_i, l_i row i's loss in the given reduction's sum
# (SUM or HALF_SUM over its outputs). Under MEAN it is divided by sum_i w_i
# (cross-entropy) or by sum_i w_i times the outputs per row (element-wise
# losses): scikit-learn's np.average, and torch's CrossEntropyLoss(weight=)
# for class weights; 0, with zero gradients, when every weight is 0.

# pred (B, C), target (B, C) or (0, 0), labels (B,) or (0,), weights (B,) >= 0
# or (0,) for all 1 (SKLEARN only), reduction -> the loss; grad_pred (B, C) written
@jit
def weighted_loss_forward_backward(loss_code, reduction, pred, target, labels, weights, grad_pred):
    batch, width = pred.shape
    elementwise = loss_code != CROSS_ENTROPY_LABELS and loss_code != CROSS_ENTROPY_SOFT
    unweighted = weights.shape[0] == 0
    row_reduction = reduction
    if reduction == MEAN:
        row_reduction = SUM
    elif reduction == SKLEARN:
        row_reduction = HALF_SUM if loss_code == MSE else SUM
    norm = 1.0
    if reduction == MEAN or reduction == SKLEARN:
        norm = np.float64(batch) if unweighted else 0.0
        for i in range(0 if unweighted else batch):
            norm += np.float64(weights[i])
        if reduction == MEAN and elementwise:
            norm *= width
    cross_entropy = loss_code == CROSS_ENTROPY_LABELS or loss_code == CROSS_ENTROPY_SOFT
    exps, row_max, sum_exp = _softmax_terms(pred if cross_entropy else pred[:0])
    total = 0.0
    for i in range(batch):
        weight = 1.0 if unweighted else np.float64(weights[i])
        scale = weight / norm if norm > 0.0 else 0.0
        if scale == 0.0:  # a zero-weight row adds nothing, even when its loss is inf
            for c in range(width):
                grad_pred[i, c] = 0.0
            continue
        if cross_entropy:
            lse = _logsumexp(row_max, sum_exp, i)
            mass = 1.0
            if loss_code == CROSS_ENTROPY_LABELS:
                value = lse - np.float64(pred[i, labels[i]])
            else:
                value = 0.0
                mass = 0.0
                for c in range(width):
                    t = np.float64(target[i, c])
                    mass += t
                    if t != 0.0:
                        value -= t * (np.float64(pred[i, c]) - lse)
            for c in range(width):
                softmax = _softmax(exps, i, c, row_max, sum_exp)
                t = (1.0 if c == labels[i] else 0.0) if loss_code == CROSS_ENTROPY_LABELS else np.float64(
                    target[i, c])
                grad_pred[i, c] = scale * (softmax * mass - t)
        else:
            if loss_code == MSE:
                value = mse_forward(pred[i], target[i], row_reduction)
                mse_backward(pred[i], target[i], row_reduction, grad_pred[i])
            elif loss_code == BCE:
                value = bce_forward(pred[i], target[i], row_reduction)
                bce_backward(pred[i], target[i], row_reduction, grad_pred[i])
            else:
                value = bce_with_logits_forward(pred[i], target[i], row_reduction)
                bce_with_logits_backward(pred[i], target[i], row_reduction, grad_pred[i])
            scale_t = grad_pred.dtype.type(scale)
            for c in range(width):
                grad_pred[i, c] *= scale_t
        total += scale * value
    if reduction == SKLEARN and loss_code == MSE:
        return total / width
    return total
