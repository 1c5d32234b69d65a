"""Parameter updates, in place, with torch's update rules.

Shapes: param, grad and each state buffer are flat (n,) views of one
parameter. Hyper-parameters arrive as Python floats and are rounded to the
parameter's dtype once, as torch does for float32 parameters; a derived
constant such as ``1 - beta2`` is computed in float64 and then rounded, as
torch computes it in Python before handing it to the tensor op.

Each update has an `*_is_finite` twin that computes the same new values
without writing them and says whether every one is finite: the training
step calls it first, so an overflowing update (a finite loss with inf
gradients, say) changes nothing.
"""
import numpy as np

from ._jit import inline, jit, jit_sum


# param (n,), grad (n,), velocity (n,) -> param, velocity updated in place
# momentum 0: p -= lr g;  else: v = momentum v + g;  p -= lr v
@jit
def sgd_update(param, grad, lr, momentum, velocity):
    lr_t = param.dtype.type(lr)
    if momentum == 0.0:
        for i in range(param.shape[0]):
            param[i] -= lr_t * grad[i]
        return
    momentum_t = param.dtype.type(momentum)
    for i in range(param.shape[0]):
        v = momentum_t * velocity[i] + grad[i]
        velocity[i] = v
        param[i] -= lr_t * v


# True when every value sgd_update would write is finite; writes nothing.
# (x - x) is 0 for a finite x and NaN for inf or NaN, so the sum is 0 or NaN:
# a vectorisable check with no branch in the loop.
@jit_sum
def sgd_update_is_finite(param, grad, lr, momentum, velocity):
    lr_t = param.dtype.type(lr)
    bad = param.dtype.type(0)  # in the parameter's dtype: a float64 sum would convert every term
    if momentum == 0.0:
        for i in range(param.shape[0]):
            p = param[i] - lr_t * grad[i]
            bad += p - p
        return bad == 0
    momentum_t = param.dtype.type(momentum)
    for i in range(param.shape[0]):
        v = momentum_t * velocity[i] + grad[i]
        p = param[i] - lr_t * v
        bad += (p - p) + (v - v)
    return bad == 0


# param (n,), grad (n,), step >= 1, exp_avg (n,), exp_avg_sq (n,)
# torch.optim.Adam without weight decay or amsgrad, in torch's order of
# operations (its single-tensor CPU path):
#   m = m + (1 - beta1) (g - m)          exp_avg.lerp_(grad, 1 - beta1)
#   v = beta2 v + (1 - beta2) g g        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2)
#   p += (-step_size m) / (sqrt(v) / bc2_sqrt + eps)
#                                        param.addcdiv_(exp_avg, denom, value=-step_size)
@jit
def _adam_constants(param, lr, beta1, beta2, eps, step):
    dt = param.dtype.type
    step_size = dt(lr / (1.0 - beta1 ** step))
    bc2_sqrt = dt(np.sqrt(1.0 - beta2 ** step))
    return dt(1.0 - beta1), dt(beta2), dt(1.0 - beta2), dt(eps), -step_size, bc2_sqrt


@jit
def adam_update(param, grad, lr, beta1, beta2, eps, step, exp_avg, exp_avg_sq):
    w1, beta2_t, w2, eps_t, neg_step, bc2_sqrt = _adam_constants(param, lr, beta1, beta2, eps, step)
    for i in range(param.shape[0]):
        g = grad[i]
        m = exp_avg[i] + w1 * (g - exp_avg[i])
        v = beta2_t * exp_avg_sq[i] + w2 * g * g
        exp_avg[i] = m
        exp_avg_sq[i] = v
        param[i] += neg_step * m / (np.sqrt(v) / bc2_sqrt + eps_t)


# True when every value adam_update would write is finite; writes nothing.
@jit_sum
def adam_update_is_finite(param, grad, lr, beta1, beta2, eps, step, exp_avg, exp_avg_sq):
    w1, beta2_t, w2, eps_t, neg_step, bc2_sqrt = _adam_constants(param, lr, beta1, beta2, eps, step)
    bad = param.dtype.type(0)
    for i in range(param.shape[0]):
        g = grad[i]
        m = exp_avg[i] + w1 * (g - exp_avg[i])
        v = beta2_t * exp_avg_sq[i] + w2 * g * g
        p = param[i] + neg_step * m / (np.sqrt(v) / bc2_sqrt + eps_t)
        bad += (p - p) + (m - m) + (v - v)
    return bad == 0


# ---------------------------------------------------------------------------
# The one update every fastbp optimizer goes through: the whole-network step
# (kernels/network.py) calls it on the flat buffers, the layer-by-layer path
# on each parameter, so the two give the same bits.
#
# kind: SGD or ADAM. hyper: float64 (HYPER_SIZE,), read by the names below
# (the Python optimizers keep it current). step: the step being taken (>= 1).
# param, grad (n,); state0, state1 (n,) or (0,) when unused:
#   SGD   state0 = the momentum buffer (when momentum > 0)
#   ADAM  state0 = exp_avg, state1 = exp_avg_sq
# The rules are torch's (torch.optim.SGD without dampening, Adam, AdamW),
# in its order of operations:
#   SGD   g += weight_decay p;  b = momentum b + g;  g = g + momentum b
#         (nesterov) or b;  p -= lr g
#   ADAM  p *= 1 - lr weight_decay (decoupled, AdamW), or g += weight_decay p;
#         then the Adam step above
#
# EPS_HAT (Adam): eps is added to sqrt(v) before the bias correction, the
# Adam paper's efficient form (its epsilon-hat) that scikit-learn's MLP uses:
#   p -= lr sqrt(1 - beta2^t) / (1 - beta1^t) m / (sqrt(v) + eps),
# computed as the rule above with eps / sqrt(1 - beta2^t) in place of eps.
SGD, ADAM = 0, 1
(LR, MOMENTUM, NESTEROV, WEIGHT_DECAY, DECOUPLED_WEIGHT_DECAY, BETA1, BETA2, EPS, MAX_GRAD_NORM,
 EPS_HAT) = range(10)
HYPER_SIZE = 10


@inline
def _sgd_element(p, g, b, lr, momentum, weight_decay, nesterov, has_momentum, has_decay):
    """(new p, new momentum buffer) for one element."""
    if has_decay:
        g = g + weight_decay * p
    if has_momentum:
        b = momentum * b + g
        g = g + momentum * b if nesterov else b
    return p - lr * g, b


@inline
def _adam_element(p, g, m, v, weight_decay, decay, w1, beta2, w2, eps, neg_step, bc2_sqrt,
                  has_decay, decoupled):
    """(new p, new exp_avg, new exp_avg_sq) for one element."""
    if decoupled:
        p = p * decay
    elif has_decay:
        g = g + weight_decay * p
    m = m + w1 * (g - m)
    v = beta2 * v + w2 * g * g
    return p + neg_step * m / (np.sqrt(v) / bc2_sqrt + eps), m, v


@jit
def _sgd_constants(param, hyper):
    dt = param.dtype.type
    return (dt(hyper[LR]), dt(hyper[MOMENTUM]), dt(hyper[WEIGHT_DECAY]), hyper[NESTEROV] != 0.0,
            hyper[MOMENTUM] != 0.0, hyper[WEIGHT_DECAY] != 0.0)


@jit
def _adam_hyper_constants(param, hyper, step):
    dt = param.dtype.type
    decoupled = hyper[DECOUPLED_WEIGHT_DECAY] != 0.0
    # AdamW's factor is computed in float64 and rounded once, as torch's
    # param.mul_(1 - lr * weight_decay) does
    decay = dt(1.0 - hyper[LR] * hyper[WEIGHT_DECAY])
    eps = hyper[EPS] / np.sqrt(1.0 - hyper[BETA2] ** step) if hyper[EPS_HAT] != 0.0 else hyper[EPS]
    w1, beta2, w2, eps, neg_step, bc2_sqrt = _adam_constants(param, hyper[LR], hyper[BETA1], hyper[BETA2],
                                                             eps, step)
    return (dt(hyper[WEIGHT_DECAY]), decay, w1, beta2, w2, eps, neg_step, bc2_sqrt,
            hyper[WEIGHT_DECAY] != 0.0, decoupled)


@jit
def update(kind, hyper, step, param, grad, state0, state1):
    if kind == ADAM:
        wd, decay, w1, beta2, w2, eps, neg_step, bc2_sqrt, has_decay, decoupled = _adam_hyper_constants(
            param, hyper, step)
        for i in range(param.shape[0]):
            param[i], state0[i], state1[i] = _adam_element(
                param[i], grad[i], state0[i], state1[i], wd, decay, w1, beta2, w2, eps, neg_step, bc2_sqrt,
                has_decay, decoupled)
        return
    lr, momentum, wd, nesterov, has_momentum, has_decay = _sgd_constants(param, hyper)
    if has_momentum:
        for i in range(param.shape[0]):
            param[i], state0[i] = _sgd_element(param[i], grad[i], state0[i], lr, momentum, wd, nesterov,
                                               True, has_decay)
    else:
        for i in range(param.shape[0]):
            param[i] = _sgd_element(param[i], grad[i], grad[i], lr, momentum, wd, nesterov, False,
                                    has_decay)[0]


# True when every value `update` would write is finite; writes nothing.
@jit_sum
def update_is_finite(kind, hyper, step, param, grad, state0, state1):
    bad = param.dtype.type(0)
    if kind == ADAM:
        wd, decay, w1, beta2, w2, eps, neg_step, bc2_sqrt, has_decay, decoupled = _adam_hyper_constants(
            param, hyper, step)
        for i in range(param.shape[0]):
            p, m, v = _adam_element(param[i], grad[i], state0[i], state1[i], wd, decay, w1, beta2, w2, eps,
                                    neg_step, bc2_sqrt, has_decay, decoupled)
            bad += (p - p) + (m - m) + (v - v)
        return bad == 0
    lr, momentum, wd, nesterov, has_momentum, has_decay = _sgd_constants(param, hyper)
    if has_momentum:
        for i in range(param.shape[0]):
            p, b = _sgd_element(param[i], grad[i], state0[i], lr, momentum, wd, nesterov, True, has_decay)
            bad += (p - p) + (b - b)
    else:
        for i in range(param.shape[0]):
            p = _sgd_element(param[i], grad[i], grad[i], lr, momentum, wd, nesterov, False, has_decay)[0]
            bad += p - p
    return bad == 0


# Gradient clipping by global norm, torch.nn.utils.clip_grad_norm_'s rule:
# the norm of every gradient together, sqrt(sum of sum_of_squares) over the
# parameters in order (in float64); then each gradient is multiplied by
# clip_coefficient (max_norm / (norm + 1e-6), when that is below 1).
@jit_sum
def sum_of_squares(x):
    total = 0.0
    for i in range(x.shape[0]):
        total += np.float64(x[i]) * np.float64(x[i])
    return total


@jit
def clip_coefficient(total_squares, max_norm):
    """The factor the gradients are scaled by; 1.0 when their norm is within max_norm."""
    coef = max_norm / (np.sqrt(total_squares) + 1e-6)
    return coef if coef < 1.0 else 1.0


@jit
def scale(x, coef):
    coef_t = x.dtype.type(coef)
    for i in range(x.shape[0]):
        x[i] *= coef_t


# scikit-learn's L2 penalty (its MLP's `alpha`) on one weight matrix, flat:
# grad += grad_scale * weights (grad_scale = alpha / batch under a mean
# reduction, alpha under a sum); returns sum(weights ** 2) in float64, which
# the caller turns into the loss term 0.5 * alpha * sum / batch (or / 1).
@jit
def l2_loss_term(l2, total_squares, rows):
    """0.5 * alpha * sum(W ** 2) / rows, the loss term of add_l2's penalty."""
    return 0.5 * l2 * total_squares / rows


@jit
def add_l2(weights, grad, grad_scale):
    scale_t = weights.dtype.type(grad_scale)
    for i in range(weights.shape[0]):
        grad[i] += scale_t * weights[i]
    return sum_of_squares(weights)
