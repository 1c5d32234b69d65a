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
from ._jit import inline, jit, jit_sum, ravel
from .activations import RELU, SIGMOID, TANH, activate_in_place, delta_bias_grad

NARROW_MAX_WIDTH = 8  # chosen in kernels/network.py (is_narrow)


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
def _to_batch_inner(src, n_cols, dst):
    for i in range(src.shape[0]):
        for j in range(n_cols):
            dst[j, i] = src[i, j]


# src (B, C) -> dst (C, B), for C <= NARROW_MAX_WIDTH
@jit
def to_batch_inner(src, dst):
    # Row by row with a constant width per branch: LLVM unrolls the columns
    # and reads each row with vector loads and shuffles. Measured (float32,
    # B = 210, ns, this form vs column by column): C=1 17 vs 10, C=2 36 vs
    # 132, C=3 68 vs 197, C=4 157 vs 263, C=5 216 vs 328, C=6 270 vs 398,
    # C=7 466 vs 461, C=8 696 vs 545.
    n_cols = src.shape[1]
    if n_cols == 2:
        _to_batch_inner(src, 2, dst)
    elif n_cols == 3:
        _to_batch_inner(src, 3, dst)
    elif n_cols == 4:
        _to_batch_inner(src, 4, dst)
    elif n_cols == 5:
        _to_batch_inner(src, 5, dst)
    elif n_cols == 6:
        _to_batch_inner(src, 6, dst)
    else:
        for j in range(n_cols):
            row = dst[j]
            for i in range(src.shape[0]):
                row[i] = src[i, j]


@inline
def _narrow_forward(in_t, weights, bias, n_in, relu, out_t):
    # With n_in a constant the k loop unrolls: each output row is one
    # vectorised pass over the batch, its n_in input rows read together.
    # ReLU (`relu`, the same for every element) is a select in the pass that
    # writes z: in place afterwards it would be masked stores, microcoded and
    # slow on AMD Zen.
    batch = in_t.shape[1]
    has_bias = bias.shape[0] != 0
    zero = out_t.dtype.type(0)
    for j in range(weights.shape[1]):
        b = bias[j] if has_bias else zero
        row = out_t[j]
        for i in range(batch):
            z = b
            for k in range(n_in):  # k in order, as the direct loops of kernels/dense.py
                z += weights[k, j] * in_t[k, i]
            if relu and z < zero:  # False for NaN, which propagates as in torch
                z = zero
            row[i] = z


# in_t (I, B), weights (I, O), bias (O,) or (0,), act -> out_t (O, B)
@jit
def narrow_forward(in_t, weights, bias, act, out_t):
    # A constant width per branch (see _narrow_forward): nine copies of a
    # loop with no activation code in it. With the activation inlined per
    # width as well, this was a cold start's longest compile, by far
    # (`python -m fastbp bench --only startup` lists each kernel's).
    relu = act == RELU
    n_in = in_t.shape[0]
    if n_in == 1:
        _narrow_forward(in_t, weights, bias, 1, relu, out_t)
    elif n_in == 2:
        _narrow_forward(in_t, weights, bias, 2, relu, out_t)
    elif n_in == 3:
        _narrow_forward(in_t, weights, bias, 3, relu, out_t)
    elif n_in == 4:
        _narrow_forward(in_t, weights, bias, 4, relu, out_t)
    elif n_in == 5:
        _narrow_forward(in_t, weights, bias, 5, relu, out_t)
    elif n_in == 6:
        _narrow_forward(in_t, weights, bias, 6, relu, out_t)
    elif n_in == 7:
        _narrow_forward(in_t, weights, bias, 7, relu, out_t)
    elif n_in == 8:
        _narrow_forward(in_t, weights, bias, 8, relu, out_t)
    else:
        _narrow_forward(in_t, weights, bias, n_in, relu, out_t)
    # Sigmoid and tanh as a second pass over the whole (O, B) output, in
    # place: one long loop, where a pass per row of B left a scalar tail per
    # row and held more registers. Same bits: z is stored in out's dtype
    # either way.
    if act == SIGMOID:
        activate_in_place(ravel(out_t), SIGMOID)
    elif act == TANH:
        activate_in_place(ravel(out_t), TANH)


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
