"""Losses on the GPU, the CPU kernels' formulas (kernels/losses.py) on device
arrays. Each call writes the gradient for pred and per-element (or per-row)
loss terms in float64, then sums the terms with a two-stage tree reduction in
a fixed order (no atomics), so the loss is the same on every run.

pred, target, grad: (n,) flat for MSE / BCE / BCE-with-logits; (B, C) logits
with labels (B,) or target probabilities (B, C) for cross-entropy.
"""
import functools
import math

import numpy as np
from numba import cuda, float32, float64

from ..losses import BCE, HALF_SUM, MEAN, MSE, SUM
from .reduce import block_tree_sum

THREADS = 256


@functools.lru_cache(maxsize=None)
def elementwise_kernel(dtype):
    element = float32 if dtype == "float32" else float64
    one, eps = element(1), element(1e-12)

    @cuda.jit
    def loss_terms(code, pred, target, scale, terms, grad):
        i = cuda.grid(1)
        if i >= pred.shape[0]:
            return
        p, t = pred[i], target[i]
        p64, t64 = float64(p), float64(t)
        if code == MSE:
            diff = p64 - t64
            terms[i] = diff * diff
            grad[i] = element(scale) * (p - t)
        elif code == BCE:
            # torch's clamp of each log at -100; NaN propagates
            log_p = max(math.log(p64), -100.0) if p64 == p64 else p64
            log_1mp = max(math.log(1.0 - p64), -100.0) if p64 == p64 else p64
            terms[i] = -(t64 * log_p + (1.0 - t64) * log_1mp)
            grad[i] = element(scale) * (p - t) / max((one - p) * p, eps)
        else:
            terms[i] = max(p64, 0.0) - p64 * t64 + math.log1p(math.exp(-abs(p64)))
            e = math.exp(-abs(p))
            s = one / (one + e)
            grad[i] = element(scale) * ((s if p >= 0 else e * s) - t)

    return loss_terms


@functools.lru_cache(maxsize=None)
def cross_entropy_kernel(dtype, soft):
    element = float32 if dtype == "float32" else float64

    # as kernels/losses.py: softmax as exp(z - max) / sum, never exp(z - logsumexp)
    @cuda.jit(device=True)
    def row_max_sumexp(logits, i):
        row_max = -math.inf
        for c in range(logits.shape[1]):
            row_max = max(row_max, float64(logits[i, c]))
        if math.isinf(row_max) or math.isnan(row_max):
            return row_max, math.nan
        total = 0.0
        for c in range(logits.shape[1]):
            total += math.exp(float64(logits[i, c]) - row_max)
        return row_max, total

    @cuda.jit(device=True)
    def row_logsumexp(row_max, total):
        if math.isinf(row_max) or math.isnan(row_max):
            return row_max
        return row_max + math.log(total)

    @cuda.jit(device=True)
    def softmax(logits, i, c, row_max, total):
        z = float64(logits[i, c])
        if math.isinf(row_max) or math.isnan(row_max):
            return math.exp(z - row_max)
        return math.exp(z - row_max) / total

    @cuda.jit
    def with_labels(logits, labels, targets, scale, terms, grad):
        i = cuda.grid(1)
        if i >= logits.shape[0]:
            return
        label = labels[i]
        if label < 0 or label >= logits.shape[1]:
            # GPU labels are not range-checked on the host (that would copy
            # them back): an invalid one gives a NaN loss, never a stray read
            terms[i] = math.nan
            for c in range(logits.shape[1]):
                grad[i, c] = element(math.nan)
            return
        row_max, sum_exp = row_max_sumexp(logits, i)
        terms[i] = row_logsumexp(row_max, sum_exp) - float64(logits[i, label])
        for c in range(logits.shape[1]):
            p = softmax(logits, i, c, row_max, sum_exp)
            # rounded once: float32(scale) - scale would remain where p is 1
            grad[i, c] = element(scale * (p - 1.0 if c == label else p))

    @cuda.jit
    def with_probabilities(logits, labels, targets, scale, terms, grad):
        i = cuda.grid(1)
        if i >= logits.shape[0]:
            return
        row_max, sum_exp = row_max_sumexp(logits, i)
        lse = row_logsumexp(row_max, sum_exp)
        total, mass = 0.0, 0.0
        for c in range(logits.shape[1]):
            t = float64(targets[i, c])
            mass += t
            if t != 0.0:
                total -= t * (float64(logits[i, c]) - lse)
        terms[i] = total
        for c in range(logits.shape[1]):
            p = softmax(logits, i, c, row_max, sum_exp)
            grad[i, c] = element(scale * (p * mass - float64(targets[i, c])))

    return with_probabilities if soft else with_labels


@functools.lru_cache(maxsize=None)
def sum_kernel(threads=THREADS):
    """Block b sums terms[b * threads * 4 + ...] in a fixed tree order into partials[b]."""
    @cuda.jit
    def block_sums(terms, partials):
        tid = cuda.threadIdx.x
        shared = cuda.shared.array(threads, float64)
        acc = 0.0
        start = cuda.blockIdx.x * threads * 4
        for j in range(4):
            i = start + j * threads + tid
            if i < terms.shape[0]:
                acc += terms[i]
        shared[tid] = acc
        block_tree_sum(shared, tid, threads)
        if tid == 0:
            partials[cuda.blockIdx.x] = shared[0]

    return block_sums


def device_sum(terms, threads=THREADS):
    """The sum of a float64 device array, reduced on the device in a fixed order."""
    while terms.shape[0] > 1:
        blocks = (terms.shape[0] + threads * 4 - 1) // (threads * 4)
        partials = cuda.device_array(blocks, np.float64)
        sum_kernel(threads)[blocks, threads](terms, partials)
        terms = partials
    return float(terms.copy_to_host()[0]) if terms.shape[0] else 0.0


def _finish(total, n, reduction):
    if reduction == MEAN:
        return total / n if n else math.nan
    return 0.5 * total if reduction == HALF_SUM else total


def elementwise_loss(code, pred, target, reduction, grad, threads=THREADS):
    """MSE / BCE / BCE-with-logits on flat device arrays: writes grad, returns the loss."""
    n = pred.shape[0]
    if code == MSE:
        scale = 1.0 if reduction == HALF_SUM else (2.0 if reduction == SUM else 2.0 / max(n, 1))
    else:
        scale = 1.0 / max(n, 1) if reduction == MEAN else 1.0
    terms = cuda.device_array(n, np.float64)
    if n:
        elementwise_kernel(str(pred.dtype))[(n + threads - 1) // threads, threads](
            code, pred, target, scale, terms, grad)
    return _finish(device_sum(terms, threads), n, reduction)


def cross_entropy_loss(logits, labels, targets, reduction, grad, threads=THREADS):
    """Softmax cross-entropy on (B, C) device logits, with labels (B,) or, when
    labels is None, target probabilities (B, C): writes grad, returns the loss."""
    batch = logits.shape[0]
    scale = 1.0 / max(batch, 1) if reduction == MEAN else 1.0
    terms = cuda.device_array(batch, np.float64)
    soft = labels is None
    if batch:
        kernel = cross_entropy_kernel(str(logits.dtype), soft)
        placeholder = cuda.device_array(0, np.int64) if soft else labels
        kernel[(batch + threads - 1) // threads, threads](
            logits, placeholder, targets if soft else logits, scale, terms, grad)
    return _finish(device_sum(terms, threads), batch, reduction)
