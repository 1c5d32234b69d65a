"""Parameter updates, in place, with torch's update rules.

Shapes: param, grad and each state buffer are flat (n,) views of one
parameter. Hyper-parameters arrive as Python floats and are rounded to the
parameter's dtype once, as torch does for float32 parameters.
"""
import numpy as np

from ._jit import jit


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


# param (n,), grad (n,), step >= 1, exp_avg (n,), exp_avg_sq (n,)
# torch.optim.Adam without weight decay or amsgrad.
@jit
def adam_update(param, grad, lr, beta1, beta2, eps, step, exp_avg, exp_avg_sq):
    bias_correction1 = 1.0 - beta1 ** step
    bias_correction2_sqrt = np.sqrt(1.0 - beta2 ** step)
    step_size = param.dtype.type(lr / bias_correction1)
    beta1_t = param.dtype.type(beta1)
    beta2_t = param.dtype.type(beta2)
    one = param.dtype.type(1)
    eps_t = param.dtype.type(eps)
    bc2_t = param.dtype.type(bias_correction2_sqrt)
    for i in range(param.shape[0]):
        g = grad[i]
        m = beta1_t * exp_avg[i] + (one - beta1_t) * g
        v = beta2_t * exp_avg_sq[i] + (one - beta2_t) * g * g
        exp_avg[i] = m
        exp_avg_sq[i] = v
        param[i] -= step_size * m / (np.sqrt(v) / bc2_t + eps_t)
