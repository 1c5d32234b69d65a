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

from ._jit import jit, jit_sum


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
