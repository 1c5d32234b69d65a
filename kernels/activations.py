"""Activations: scalar forms used inside the fused dense kernels, and the
element-wise kernels behind the stand-alone activation layers.

Activations are passed as small integer codes so that one compiled kernel
serves all four; LLVM hoists the branch out of the loop (measured: within 15%
of a loop specialised for ReLU, 6x faster than numpy's ``maximum(x + b, 0)``).

Derivatives are computed from the activation's *output* y, not its input, as
scikit-learn does: the forward pass keeps one array per layer and the backward
pass recomputes nothing.
"""
import numpy as np

from ._jit import const_like, inline, jit

IDENTITY, SIGMOID, RELU, TANH = 0, 1, 2, 3
NAMES = ("identity", "sigmoid", "relu", "tanh")


@inline
def activate(z, act):
    """act(z) for one scalar, in z's precision."""
    zero = const_like(z, 0)
    if act == RELU:
        # `z < 0` is False for NaN, so NaN propagates as in numpy and torch.
        return zero if z < zero else z
    if act == SIGMOID:
        # exp of a non-positive number cannot overflow: stable for any z.
        one = const_like(z, 1)
        e = np.exp(-np.abs(z))
        s = one / (one + e)
        return s if z >= zero else e * s
    if act == TANH:
        return np.tanh(z)
    return z


@inline
def activation_grad(y, act):
    """d act / d z, expressed through the output y = act(z)."""
    one = const_like(y, 1)
    if act == RELU:
        return one if y > const_like(y, 0) else const_like(y, 0)
    if act == SIGMOID:
        return y * (one - y)
    if act == TANH:
        return one - y * y
    return one


# x, out: (n,) flat views of same-shaped arrays
@jit
def activation_forward(x, act, out):
    for i in range(x.shape[0]):
        out[i] = activate(x[i], act)


# out, grad_out, grad_x: (n,)
@jit
def activation_backward(out, grad_out, act, grad_x):
    for i in range(out.shape[0]):
        grad_x[i] = grad_out[i] * activation_grad(out[i], act)
