"""Element-wise learnable weights: out = x * weights, one weight per feature
(the seed-002 notebook's `L1A * w2`).

Shapes: N batch, S features (any feature shape, flattened).
"""
from ._jit import jit


# x (N, S), weights (S,) -> out (N, S)
@jit
def scale_forward(x, weights, out):
    for n in range(x.shape[0]):
        for s in range(x.shape[1]):
            out[n, s] = x[n, s] * weights[s]


# x (N, S), weights (S,), grad_out (N, S) -> grad_weights (S,), grad_x (N, S)
@jit
def scale_backward(x, weights, grad_out, grad_weights, grad_x):
    grad_weights[:] = grad_weights.dtype.type(0)
    for n in range(x.shape[0]):
        for s in range(x.shape[1]):
            grad_weights[s] += grad_out[n, s] * x[n, s]
            grad_x[n, s] = grad_out[n, s] * weights[s]
