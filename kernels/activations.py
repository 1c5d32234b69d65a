"""Activations: scalar forms used inside the fused dense kernels, and the
element-wise kernels behind the stand-alone activation layers.

Activations are passed as small integer codes so that one compiled kernel
serves all four; LLVM hoists the branch out of the loop (measured: within 15%
of a loop specialised for ReLU, 6x faster than numpy's ``maximum(x + b, 0)``).

Derivatives are computed from the activation's *output* y, not its input, as
scikit-learn does: the forward pass keeps one array per layer and the backward
pass recomputes nothing.
"""
import math

import numpy as np
from numba import types
from numba.extending import overload

from ._jit import const_like, float64_bits, float64_from_bits, inline, jit

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
        return sigmoid(z)
    if act == TANH:
        return tanh(z)
    return z


# float32 sigmoid and tanh are evaluated in float64 with a polynomial exp that
# LLVM vectorises, then rounded once: within 1 ulp of the exact value (the
# float64 result's own error is < 1e-9 relative, so only the final rounding
# can differ), and 1.5x (sigmoid) to 9x (tanh) faster than libm's scalar
# expf / tanhf, which numba cannot vectorise (no SVML here). float64 keeps
# libm. tests/test_activations.py checks the ulp bound on a dense grid.
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # ln 2 split so that n * _LN2_HI is exact
_LN2_LO = 1.90821492927058770002e-10
_ROUND_SHIFT = 6755399441055744.0  # 1.5 * 2**52: x + this rounds x to an integer


@inline
def exp_for_float32(x):
    """exp(x) for a float64 x in [-200, 200], relative error < 3e-10."""
    shifted = x * _LOG2E + _ROUND_SHIFT
    n = shifted - _ROUND_SHIFT  # round(x / ln 2), exactly
    r = (x - n * _LN2_HI) - n * _LN2_LO  # |r| <= ln2 / 2
    r2 = r * r
    r4 = r2 * r2
    # Taylor series to degree 8 (error r^9 / 9! < 2e-10), in Estrin's scheme
    # to keep dependency chains short
    low = (1.0 + r) + r2 * (0.5 + r * 0.16666666666666666)
    high = ((0.041666666666666664 + r * 0.008333333333333333)
            + r2 * (0.001388888888888889 + r * 0.0001984126984126984) + r4 * 2.48015873015873e-05)
    # 2^n built from its bits: n sits in the low bits of `shifted`
    return (low + r4 * high) * float64_from_bits((float64_bits(shifted) + 1023) << 52)


def sigmoid(z):
    """1 / (1 + exp(-z)) for one float32 or float64 scalar, in its precision."""
    raise NotImplementedError("compiled only")


def tanh(z):
    """tanh(z) for one float32 or float64 scalar, in its precision."""
    raise NotImplementedError("compiled only")


@overload(sigmoid)
def _sigmoid(z):
    if z == types.float32:
        def sigmoid_float32(z):
            x = -np.float64(z)
            # beyond +-200 the float32 result is 0 or 1 anyway; NaN passes through
            if x > 200.0:
                x = 200.0
            elif x < -200.0:
                x = -200.0
            return np.float32(1.0 / (1.0 + exp_for_float32(x)))
        return sigmoid_float32
    if isinstance(z, types.Float):
        def sigmoid_libm(z):
            # exp of a non-positive number cannot overflow: stable for any z.
            one = const_like(z, 1)
            e = np.exp(-np.abs(z))
            s = one / (one + e)
            return s if z >= const_like(z, 0) else e * s
        return sigmoid_libm


@overload(tanh)
def _tanh(z):
    if z == types.float32:
        def tanh_float32(z):
            x = np.float64(z)
            a = np.abs(x)
            if a > 10.0:  # tanh(10) rounds to 1 in float32
                a = 10.0
            t = 1.0 - 2.0 / (exp_for_float32(2.0 * a) + 1.0)
            if a < 1e-5:  # 1 - 2/(e+1) loses bits to cancellation; tanh(a) = a to 1e-10
                t = a
            # odd, -0.0 stays -0.0, and NaN stays NaN (a NaN fails every test above)
            return np.float32(math.copysign(t, x) if x == x else x)
        return tanh_float32
    if isinstance(z, types.Float):
        return lambda z: np.tanh(z)


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


# Loops over many elements branch on the activation once, outside the loop:
# each branch passes a constant code, so after inlining every loop body is
# straight-line code that LLVM vectorises (a code that varies inside the loop
# would keep the float32 sigmoid and tanh scalar, 3x slower).
@inline
def _add_bias_activate(out, bias, act):
    batch, n_out = out.shape
    if bias.shape[0] != 0:
        for i in range(batch):
            for j in range(n_out):
                out[i, j] = activate(out[i, j] + bias[j], act)
    elif act != IDENTITY:
        for i in range(batch):
            for j in range(n_out):
                out[i, j] = activate(out[i, j], act)


# out (B, O) holding x @ W -> act(out + bias), in place; bias (O,) or (0,)
@jit
def add_bias_activate(out, bias, act):
    if act == SIGMOID:
        _add_bias_activate(out, bias, SIGMOID)
    elif act == RELU:
        _add_bias_activate(out, bias, RELU)
    elif act == TANH:
        _add_bias_activate(out, bias, TANH)
    else:
        _add_bias_activate(out, bias, IDENTITY)


@inline
def _delta_bias_grad(out, grad_out, act, delta, grad_bias):
    batch, n_out = out.shape
    if grad_bias.shape[0] != 0:
        grad_bias[:] = 0
        # one pass; rows summed in order, so the result never depends on threads
        for i in range(batch):
            for j in range(n_out):
                d = grad_out[i, j] * activation_grad(out[i, j], act)
                delta[i, j] = d
                grad_bias[j] += d
    else:
        for i in range(batch):
            for j in range(n_out):
                delta[i, j] = grad_out[i, j] * activation_grad(out[i, j], act)


# out, grad_out (B, O) -> delta = grad_out * act'(out) (B, O), grad_bias = sum of delta rows
@jit
def delta_bias_grad(out, grad_out, act, delta, grad_bias):
    if act == SIGMOID:
        _delta_bias_grad(out, grad_out, SIGMOID, delta, grad_bias)
    elif act == RELU:
        _delta_bias_grad(out, grad_out, RELU, delta, grad_bias)
    elif act == TANH:
        _delta_bias_grad(out, grad_out, TANH, delta, grad_bias)
    else:
        _delta_bias_grad(out, grad_out, IDENTITY, delta, grad_bias)


# x, out: (n,) flat views of same-shaped arrays
@jit
def activation_forward(x, act, out):
    out[:] = x
    add_bias_activate(out.reshape((1, out.shape[0])), x[:0], act)


# out, grad_out, grad_x: (n,)
@jit
def activation_backward(out, grad_out, act, grad_x):
    n = out.shape[0]
    delta_bias_grad(out.reshape((1, n)), grad_out.reshape((1, n)), act, grad_x.reshape((1, n)), out[:0])
