"""2-D convolution (cross-correlation, as torch's conv2d) on NCHW batches, as
im2col onto one GEMM with the dense layer's fused epilogue and fused delta pass.

Shapes: N batch, C in channels, H x W input, O out channels, KH x KW kernel,
OH x OW output, P = OH * OW positions, K = C * KH * KW values under the kernel.
    x (N, C, H, W), weights (O, K) (torch's (O, C, KH, KW), C-ordered),
    bias (O,) or (0,), out (N, O, OH, OW)
    cols (N * P, K): row n * P + p holds the input values under the kernel at
        output position p of sample n (zeros where it overhangs the padding)
    rows (N * P, O): the GEMM's output, position-major
    geometry: (KH, KW, stride_h, stride_w, pad_h, pad_w), zero padding
One GEMM over the whole batch keeps BLAS busy where per-sample products of a
few channels would not; the epilogue that adds the bias and applies the
activation also transposes into NCHW, so the output is touched once.
"""
import numpy as np

from ._jit import jit
from .activations import activate, activation_grad


# x (N, C, H, W) -> cols (N * P, K)
@jit
def im2col(x, geometry, cols):
    kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w = geometry
    n_batch, n_chan, height, width = x.shape
    out_h = (height + 2 * pad_h - kernel_h) // stride_h + 1
    out_w = (width + 2 * pad_w - kernel_w) // stride_w + 1
    zero = cols.dtype.type(0)
    for n in range(n_batch):
        for oh in range(out_h):
            for ow in range(out_w):
                row = (n * out_h + oh) * out_w + ow
                col = 0
                for c in range(n_chan):
                    for kh in range(kernel_h):
                        h = oh * stride_h - pad_h + kh
                        for kw in range(kernel_w):
                            w = ow * stride_w - pad_w + kw
                            if 0 <= h < height and 0 <= w < width:
                                cols[row, col] = x[n, c, h, w]
                            else:
                                cols[row, col] = zero
                            col += 1


# cols-shaped gradient (N * P, K) -> grad_x (N, C, H, W), overlapping windows summed
@jit
def col2im(grad_cols, geometry, grad_x):
    kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w = geometry
    n_batch, n_chan, height, width = grad_x.shape
    out_h = (height + 2 * pad_h - kernel_h) // stride_h + 1
    out_w = (width + 2 * pad_w - kernel_w) // stride_w + 1
    grad_x[...] = grad_x.dtype.type(0)
    for n in range(n_batch):
        for oh in range(out_h):
            for ow in range(out_w):
                row = (n * out_h + oh) * out_w + ow
                col = 0
                for c in range(n_chan):
                    for kh in range(kernel_h):
                        h = oh * stride_h - pad_h + kh
                        for kw in range(kernel_w):
                            w = ow * stride_w - pad_w + kw
                            if 0 <= h < height and 0 <= w < width:
                                grad_x[n, c, h, w] += grad_cols[row, col]
                            col += 1


# x (N, C, H, W), weights (O, K), bias (O,) or (0,), act -> out (N, O, OH, OW);
# cols (N * P, K) and rows (N * P, O) are workspaces that backward reads again
@jit
def conv2d_forward(x, weights, bias, act, geometry, cols, rows, out):
    n_batch, n_out, out_h, out_w = out.shape
    positions = out_h * out_w
    has_bias = bias.shape[0] != 0
    im2col(x, geometry, cols)
    np.dot(cols, weights.T, rows)
    for n in range(n_batch):
        for o in range(n_out):
            for p in range(positions):
                z = rows[n * positions + p, o]
                if has_bias:
                    z += bias[o]
                out[n, o, p // out_w, p % out_w] = activate(z, act)


# weights, cols from conv2d_forward, out (N, O, OH, OW), grad_out like out
#   -> delta (N * P, O), grad_weights (O, K), grad_bias (O,) or (0,),
#      grad_cols (N * P, K) workspace, grad_x (N, C, H, W) unless not compute_grad_x
@jit
def conv2d_backward(weights, cols, out, grad_out, act, geometry, compute_grad_x,
                    delta, grad_weights, grad_bias, grad_cols, grad_x):
    n_batch, n_out, out_h, out_w = out.shape
    positions = out_h * out_w
    has_bias = grad_bias.shape[0] != 0
    grad_bias[:] = grad_bias.dtype.type(0)
    for n in range(n_batch):
        for o in range(n_out):
            for p in range(positions):
                oh, ow = p // out_w, p % out_w
                d = grad_out[n, o, oh, ow] * activation_grad(out[n, o, oh, ow], act)
                delta[n * positions + p, o] = d
                if has_bias:
                    grad_bias[o] += d
    np.dot(delta.T, cols, grad_weights)
    if compute_grad_x:
        np.dot(delta, weights, grad_cols)
        col2im(grad_cols, geometry, grad_x)
