"""Dense layer: out = act(x @ weights + bias), and its backward pass.

Shapes: B = batch, I = in_features, O = out_features.
Arrays are C-contiguous and share one floating dtype; `bias` has shape (0,)
when the layer has none. The public layer API guarantees all of that.

Two paths, chosen per call by the size of the weight matrix:
- small layers run direct loops that fuse everything into one sweep over the
  batch (a BLAS call costs ~1 us of overhead, more than the whole layer);
- larger ones call BLAS GEMM (scipy's OpenBLAS, reached through numba's
  np.dot, which passes transposes as flags rather than copying) and touch the
  output exactly once more: bias and activation in one pass after the GEMM,
  delta and the bias gradient in one pass before the backward GEMMs.
"""
import numpy as np

from ._jit import jit
from .activations import activate, activation_grad

# Above this many weights (I * O) the BLAS path wins. Chosen by
# benchmarks/compare.py's crossover sweep; see README "Fast paths by size".
DIRECT_LOOP_MAX_WEIGHTS = 1024


# x (B, I), weights (I, O), bias (O,) or (0,), act: code -> out (B, O)
@jit
def dense_forward(x, weights, bias, act, out):
    batch, n_in = x.shape
    n_out = weights.shape[1]
    has_bias = bias.shape[0] != 0
    zero = out.dtype.type(0)
    if n_in * n_out <= DIRECT_LOOP_MAX_WEIGHTS or batch == 0:
        for i in range(batch):
            for j in range(n_out):
                out[i, j] = bias[j] if has_bias else zero
            for k in range(n_in):
                x_ik = x[i, k]
                for j in range(n_out):
                    out[i, j] += x_ik * weights[k, j]
            for j in range(n_out):
                out[i, j] = activate(out[i, j], act)
        return
    np.dot(x, weights, out)
    for i in range(batch):
        for j in range(n_out):
            z = out[i, j] + bias[j] if has_bias else out[i, j]
            out[i, j] = activate(z, act)


# x (B, I), weights (I, O), out (B, O) from dense_forward, grad_out (B, O), act
#   -> delta (B, O), grad_weights (I, O), grad_bias (O,) or (0,), grad_x (B, I)
# grad_x is skipped when compute_grad_x is False (a network's first layer).
@jit
def dense_backward(x, weights, out, grad_out, act, compute_grad_x,
                   delta, grad_weights, grad_bias, grad_x):
    batch, n_in = x.shape
    n_out = weights.shape[1]
    has_bias = grad_bias.shape[0] != 0
    zero = out.dtype.type(0)
    grad_bias[:] = zero
    if n_in * n_out <= DIRECT_LOOP_MAX_WEIGHTS or batch == 0:
        grad_weights[:, :] = zero
        for i in range(batch):
            for j in range(n_out):
                d = grad_out[i, j] * activation_grad(out[i, j], act)
                delta[i, j] = d
                if has_bias:
                    grad_bias[j] += d
            for k in range(n_in):
                x_ik = x[i, k]
                for j in range(n_out):
                    grad_weights[k, j] += x_ik * delta[i, j]
            if compute_grad_x:
                for k in range(n_in):
                    acc = zero
                    for j in range(n_out):
                        acc += delta[i, j] * weights[k, j]
                    grad_x[i, k] = acc
        return
    for i in range(batch):
        for j in range(n_out):
            d = grad_out[i, j] * activation_grad(out[i, j], act)
            delta[i, j] = d
            if has_bias:
                grad_bias[j] += d
    np.dot(x.T, delta, grad_weights)
    if compute_grad_x:
        np.dot(delta, weights.T, grad_x)
