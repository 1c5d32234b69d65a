"""Dense layer: out = act(x @ weights + bias), and its backward pass.

Shapes: B = batch, I = in_features, O = out_features.
Arrays are C-contiguous and share one floating dtype; `bias` has shape (0,)
when the layer has none. The public layer API guarantees all of that.

Two paths, chosen per call by the work, batch * in * out multiply-adds:
- tiny calls run direct loops that fuse everything into one sweep over the
  batch (a BLAS call's overhead is more than the whole layer; the switch point
  is measured by benchmarks/crossover.py);
- larger ones call BLAS GEMM (scipy's OpenBLAS, reached through numba's
  np.dot, which passes transposes as flags rather than copying) and touch the
  output exactly once more: bias and activation in one pass after the GEMM,
  delta and the bias gradient in one pass before the backward GEMMs.
"""
import numpy as np

from ._jit import jit
from .activations import activate, activation_grad, add_bias_activate, delta_bias_grad

# Direct loops up to this many multiply-adds (B * I * O), BLAS above.
# Measured (float32, relu, us, direct vs BLAS; `python benchmarks/crossover.py`):
#   B=8   2x5    80 MACs: fwd 0.79 vs 0.89, bwd 1.10 vs 1.35  -> direct
#   B=8   5x3   120 MACs: fwd 0.67 vs 0.81, bwd 1.14 vs 1.41  -> direct
#   B=64  2x5   640 MACs: fwd 1.36 vs 1.12, bwd 2.44 vs 1.93  -> BLAS
#   B=8  16x16 2048 MACs: fwd 1.30 vs 1.02, bwd 2.27 vs 1.73  -> BLAS
#   B=210 5x3  3150 MACs: fwd 6.77 vs 1.96, bwd 9.27 vs 4.51  -> BLAS
# Loops over 3 to 5 outputs do not vectorise, so BLAS wins early.
DIRECT_LOOP_MAX_MACS = 256


# x (B, I), weights (I, O), bias (O,) or (0,), act: code -> out (B, O)
@jit
def dense_forward(x, weights, bias, act, out):
    batch, n_in = x.shape
    n_out = weights.shape[1]
    has_bias = bias.shape[0] != 0
    zero = out.dtype.type(0)
    if batch * n_in * n_out <= DIRECT_LOOP_MAX_MACS:
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
    add_bias_activate(out, bias, act)


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
    if batch * n_in * n_out <= DIRECT_LOOP_MAX_MACS:
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
    delta_bias_grad(out, grad_out, act, delta, grad_bias)
    np.dot(x.T, delta, grad_weights)
    if compute_grad_x:
        np.dot(delta, weights.T, grad_x)
