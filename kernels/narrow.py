"""Dense layer in a batch-inner layout, for networks whose every width is small.

With 2 to 8 features per layer, the batch-major loops of kernels/dense.py run
over 2 to 8 outputs at a time, too few to vectorise, and BLAS calls cost
more than the arithmetic. Storing each layer's activations transposed,
(features, batch), makes every inner loop run over the batch: contiguous,
long, and vectorised by LLVM.

Shapes: I in_features, O out_features, B batch; `_t` names a transposed
array: in_t (I, B), out_t, grad_t, delta_t (O, B), grad_in_t (I, B);
weights (I, O) and bias (O,) or (0,) as everywhere else.

Sums over the batch (bias and weight gradients) are vectorised by letting
LLVM split them into lanes (`jit_sum`): 2x faster than 8 explicit scalar
accumulators, which LLVM left scalar. The split is fixed at compile time, so
the result never depends on the thread count.
"""
from ._jit import inline, jit, jit_sum
from .activations import IDENTITY, RELU, SIGMOID, TANH, activate, delta_bias_grad

NARROW_MAX_WIDTH = 8  # chosen in kernels/network.py, with NARROW_MIN_BATCH


# a (n,), b (n,) -> sum of a * b, in vector lanes (see jit_sum)
@jit_sum
def batch_dot(a, b):
    total = a.dtype.type(0)
    for i in range(a.shape[0]):
        total += a[i] * b[i]
    return total


# a (n,) -> sum of a, in vector lanes
@jit_sum
def batch_sum(a):
    total = a.dtype.type(0)
    for i in range(a.shape[0]):
        total += a[i]
    return total


@inline
def _narrow_forward(in_t, weights, bias, act, out_t):
    n_in, batch = in_t.shape
    has_bias = bias.shape[0] != 0
    for j in range(weights.shape[1]):
        row = out_t[j]
        row[:] = bias[j] if has_bias else out_t.dtype.type(0)
        for k in range(n_in - 1):  # k in order, as the direct loops of kernels/dense.py
            w = weights[k, j]
            src = in_t[k]
            for i in range(batch):
                row[i] += w * src[i]
        # The last input's product and the activation in one pass. Not an
        # in-place activation pass: LLVM turns an in-place ReLU into masked
        # stores ("store 0 where negative"), microcoded and ~10x slower on AMD Zen.
        w = weights[n_in - 1, j]
        src = in_t[n_in - 1]
        for i in range(batch):
            row[i] = activate(row[i] + w * src[i], act)


# in_t (I, B), weights (I, O), bias (O,) or (0,), act -> out_t (O, B)
@jit
def narrow_forward(in_t, weights, bias, act, out_t):
    # a constant code per branch, so that each loop vectorises (kernels/activations.py)
    if act == SIGMOID:
        _narrow_forward(in_t, weights, bias, SIGMOID, out_t)
    elif act == RELU:
        _narrow_forward(in_t, weights, bias, RELU, out_t)
    elif act == TANH:
        _narrow_forward(in_t, weights, bias, TANH, out_t)
    else:
        _narrow_forward(in_t, weights, bias, IDENTITY, out_t)


# in_t (I, B), weights (I, O), out_t (O, B), grad_t (O, B), act
#   -> delta_t (O, B), grad_weights (I, O), grad_bias (O,) or (0,), grad_in_t (I, B)
@jit
def narrow_backward(in_t, weights, out_t, grad_t, act, compute_grad_x,
                    delta_t, grad_weights, grad_bias, grad_in_t):
    n_in, batch = in_t.shape
    n_out = weights.shape[1]
    delta_bias_grad(out_t, grad_t, act, delta_t, grad_bias[:0])  # delta only
    for j in range(grad_bias.shape[0]):
        grad_bias[j] = batch_sum(delta_t[j])
    for k in range(n_in):
        for j in range(n_out):
            grad_weights[k, j] = batch_dot(in_t[k], delta_t[j])
    if compute_grad_x:
        for k in range(n_in):
            row = grad_in_t[k]
            w = weights[k, 0]
            d = delta_t[0]
            for i in range(batch):  # j = 0 writes, saving a pass of zeros
                row[i] = w * d[i]
            for j in range(1, n_out):
                w = weights[k, j]
                d = delta_t[j]
                for i in range(batch):
                    row[i] += w * d[i]
