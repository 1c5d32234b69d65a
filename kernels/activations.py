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

from ._jit import const_like, float_bits, float_from_bits, fma, inline, jit, ravel

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


# float32 sigmoid and tanh run in float32 with a polynomial exp that LLVM
# vectorises 8 lanes wide, with FMA: numba cannot vectorise libm's expf (no
# SVML here). Measured on a 1.3M-point grid (tests/test_activations.py),
# against the float64 result rounded once: sigmoid within 2 ulp (15% of
# values not correctly rounded), tanh within 1 ulp (9%); numpy's and torch's
# float32 sigmoid are 0 or 1 where the exact value is a tiny normal or
# subnormal number (2 million ulp off), and wrong in the last bit for 25-31%
# of values. Vectorised, they are several times faster than the
# float64-evaluated version they replaced (within 1 ulp) and than numpy's sigmoid.
# float64 keeps libm.
_LOG2E_32 = np.float32(1.4426950408889634)
_ROUND_SHIFT_32 = np.float32(12582912.0)  # 1.5 * 2**23: x + this rounds x to an integer
_ROUND_SHIFT_32_BITS = 0x4B400000  # its bits: n sits in the low bits of x + shift
_LN2_HI_32 = np.float32(0.693359375)  # ln 2 split (Cody-Waite) so that n * _LN2_HI_32 is exact
_LN2_LO_32 = np.float32(-2.12194440e-4)
# Cephes' expf polynomial: exp(r) = 1 + r + r^2 P(r) for |r| <= ln2 / 2
_EXP_P = tuple(np.float32(c) for c in (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3,
                                       4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1))
_P0, _P1, _P2, _P3, _P4, _P5 = _EXP_P
_ONE_32 = np.float32(1.0)


@inline
def exp_nonpositive_float32(x):
    """exp(x) for a float32 x in [-104, 0], within ~1 ulp; subnormal results
    included (2^n is built as two normal factors, since n reaches -151)."""
    shifted = x * _LOG2E_32 + _ROUND_SHIFT_32
    n = shifted - _ROUND_SHIFT_32
    r = fma(-n, _LN2_LO_32, x - n * _LN2_HI_32)
    poly = fma(fma(fma(fma(fma(_P0, r, _P1), r, _P2), r, _P3), r, _P4), r, _P5)
    exp_r = fma(poly, r * r, r) + _ONE_32
    k = float_bits(shifted) - _ROUND_SHIFT_32_BITS  # n as an integer
    half = k >> 1
    return (exp_r * float_from_bits((half + 127) << 23, x)) * float_from_bits((k - half + 127) << 23, x)


# The float64 twin, for softmax: libm's exp is a call that keeps the loop
# scalar. exp(r) on |r| <= ln2 / 2 by its Taylor series to r^13 (the first
# term left out, r^14 / 14!, is below 2^-60 there), ln 2 split as fdlibm
# splits it. Within 1 ulp of the exact value on tests/test_losses.py's grid.
_LOG2E_64 = 1.4426950408889634
_ROUND_SHIFT_64 = 6755399441055744.0  # 1.5 * 2**52
_ROUND_SHIFT_64_BITS = 0x4338000000000000
_LN2_HI_64 = 6.93147180369123816490e-01  # its low 32 bits are 0: n * _LN2_HI_64 is exact
_LN2_LO_64 = 1.90821492927058770002e-10
_EXP_TAYLOR_64 = tuple(1.0 / math.factorial(k) for k in range(13, 1, -1))  # 1/13! .. 1/2!
(_T13, _T12, _T11, _T10, _T9, _T8, _T7, _T6, _T5, _T4, _T3, _T2) = _EXP_TAYLOR_64


@inline
def exp_nonpositive_float64(x):
    """exp(x) for a float64 x in [-1080, 0] (or NaN, which it returns), within
    1 ulp; subnormal results included (2^n as two normal factors)."""
    shifted = x * _LOG2E_64 + _ROUND_SHIFT_64
    n = shifted - _ROUND_SHIFT_64
    r = fma(-n, _LN2_LO_64, fma(-n, _LN2_HI_64, x))
    poly = fma(fma(fma(fma(fma(fma(fma(fma(fma(fma(fma(_T13, r, _T12), r, _T11), r, _T10), r, _T9), r, _T8),
                                        r, _T7), r, _T6), r, _T5), r, _T4), r, _T3), r, _T2)
    exp_r = fma(poly, r * r, r) + 1.0
    k = float_bits(shifted) - _ROUND_SHIFT_64_BITS  # n as an integer
    half = k >> 1
    return (exp_r * float_from_bits((half + 1023) << 52, x)) * float_from_bits((k - half + 1023) << 52, x)


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
            a = np.abs(z)
            if a > np.float32(104.0):  # sigmoid(-104) rounds to 0 in float32; NaN passes through
                a = np.float32(104.0)
            e = exp_nonpositive_float32(-a)
            # z < 0: e / (1 + e) in one division; never exp of a positive number, which could overflow
            return (_ONE_32 if z >= np.float32(0) else e) / (_ONE_32 + e)
        return sigmoid_float32
    if isinstance(z, types.Float):
        def sigmoid_libm(z):
            # exp of a non-positive number cannot overflow: stable for any z.
            one = const_like(z, 1)
            e = np.exp(-np.abs(z))
            s = one / (one + e)
            return s if z >= const_like(z, 0) else e * s
        return sigmoid_libm


# Cephes' tanhf: an odd polynomial below 0.625, where 1 - 2 / (exp(2a) + 1)
# would lose bits to cancellation
_TANH_Q = tuple(np.float32(c) for c in (-5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2,
                                        1.33314422036e-1, -3.33332819422e-1))
_Q0, _Q1, _Q2, _Q3, _Q4 = _TANH_Q


@overload(tanh)
def _tanh(z):
    if z == types.float32:
        def tanh_float32(z):
            a = np.abs(z)
            if a > np.float32(10.0):  # tanh(10) rounds to 1 in float32; NaN passes through
                a = np.float32(10.0)
            w = a * a
            small = fma(fma(fma(fma(fma(_Q0, w, _Q1), w, _Q2), w, _Q3), w, _Q4) * w, a, a)
            e = exp_nonpositive_float32(np.float32(-2.0) * a)
            t = small if a < np.float32(0.625) else (_ONE_32 - e) / (_ONE_32 + e)
            # odd, -0.0 stays -0.0, and NaN stays NaN
            return np.float32(math.copysign(t, z)) if z == z else z
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


@inline
def activate_in_place(flat, act):
    """flat (n,) -> act(flat), in place. Sigmoid and tanh only: an in-place
    ReLU becomes masked stores (kernels/narrow.py). In place rather than
    through activation_forward(x, act, out) with out = x: LLVM's check that
    two arrays do not overlap fails for one array, and the loop ran scalar."""
    for k in range(flat.shape[0]):
        flat[k] = activate(flat[k], act)


# Loops over many elements branch on the activation once, outside the loop:
# each branch passes a constant code, so after inlining every loop body is
# straight-line code that LLVM vectorises (a code that varies inside the loop
# would keep the float32 sigmoid and tanh scalar, 3x slower).
@inline
def _add_bias_activate(out, bias, act):
    batch, n_out = out.shape
    if act == SIGMOID or act == TANH:
        # The bias row by row, then the activation over the whole array as one
        # flat loop: a row of 3 or 5 values is too short for the vector loop,
        # and the polynomial then ran scalar (float32 sigmoid, ns per value,
        # one pass vs two: 9.8 vs 2.8 at 3 columns, 11.4 vs 2.1 at 5, 1.4 vs
        # 1.5 at 8, 1.6 vs 1.3 at 64). Same rounding: out + bias is stored
        # in out's dtype either way.
        if bias.shape[0] != 0:
            for i in range(batch):
                row = out[i]
                for j in range(n_out):
                    row[j] += bias[j]
        activate_in_place(ravel(out), act)
    elif bias.shape[0] != 0:
        # Row views: indexing out[i, j] beside bias[j] kept the loop slower.
        # ReLU is never a flat in-place pass (kernels/narrow.py: masked stores).
        for i in range(batch):
            row = out[i]
            for j in range(n_out):
                row[j] = activate(row[j] + bias[j], act)
    elif act != IDENTITY:
        for i in range(batch):
            row = out[i]
            for j in range(n_out):
                row[j] = activate(row[j], act)


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
        # rows summed in order, so the result never depends on threads; the
        # bias sum in a loop of its own, row by row while the row is in cache:
        # inside the delta loop it halved that loop's speed (python
        # benchmarks/step_costs.py times the pass)
        for i in range(batch):
            out_row, grad_row, delta_row = out[i], grad_out[i], delta[i]
            for j in range(n_out):
                delta_row[j] = grad_row[j] * activation_grad(out_row[j], act)
            for j in range(n_out):
                grad_bias[j] += delta_row[j]
    else:
        for i in range(batch):
            out_row, grad_row, delta_row = out[i], grad_out[i], delta[i]
            for j in range(n_out):
                delta_row[j] = grad_row[j] * activation_grad(out_row[j], act)


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


@inline
def _activation_forward(x, act, out):
    for i in range(x.shape[0]):
        out[i] = activate(x[i], act)


# x, out: (n,) flat views of same-shaped arrays
@jit
def activation_forward(x, act, out):
    # out of place: an in-place ReLU would become masked stores (kernels/narrow.py)
    if act == SIGMOID:
        _activation_forward(x, SIGMOID, out)
    elif act == RELU:
        _activation_forward(x, RELU, out)
    elif act == TANH:
        _activation_forward(x, TANH, out)
    else:
        _activation_forward(x, IDENTITY, out)


# out, grad_out, grad_x: (n,)
@jit
def activation_backward(out, grad_out, act, grad_x):
    n = out.shape[0]
    delta_bias_grad(out.reshape((1, n)), grad_out.reshape((1, n)), act, grad_x.reshape((1, n)), out[:0])
