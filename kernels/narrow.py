"""Dense layer in a batch-inner layout, for networks whose every width is small.

With 2 to 8 features per layer, the batch-major loops of kernels/dense.py run
over 2 to 8 outputs at a time, too few to vectorise, and BLAS calls cost
more than the arithmetic. Storing each layer's activations transposed,
(features, batch), makes every inner loop run over the batch: contiguous,
long, and vectorised by LLVM.

Shapes: I in_features, O out_features, B batch; `_t` names a transposed
array: in_t (I, B), out_t, grad_t, delta_t (O, B), grad_in_t (I, B);
weights (I, O) and bias (O,) or (0,) as everywhere else.

Sums over the batch (bias and weight gradients) use 8 fixed accumulators
(i mod 8) combined in a fixed order: vectorisable without reassociating,
and the same result whatever the thread count.
"""
from ._jit import inline, jit
from .activations import add_bias_activate, delta_bias_grad

NARROW_MAX_WIDTH = 8  # chosen in kernels/network.py, with NARROW_MIN_BATCH


@inline
def _lane_dot(a, b, n):
    """sum_i a[i] * b[i] over i < n, as 8 interleaved partial sums."""
    zero = a.dtype.type(0)
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = zero
    full = n - n % 8
    for i in range(0, full, 8):
        s0 += a[i] * b[i]
        s1 += a[i + 1] * b[i + 1]
        s2 += a[i + 2] * b[i + 2]
        s3 += a[i + 3] * b[i + 3]
        s4 += a[i + 4] * b[i + 4]
        s5 += a[i + 5] * b[i + 5]
        s6 += a[i + 6] * b[i + 6]
        s7 += a[i + 7] * b[i + 7]
    tail = zero
    for i in range(full, n):
        tail += a[i] * b[i]
    return (((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))) + tail


@inline
def _lane_sum(a, n):
    zero = a.dtype.type(0)
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = zero
    full = n - n % 8
    for i in range(0, full, 8):
        s0 += a[i]
        s1 += a[i + 1]
        s2 += a[i + 2]
        s3 += a[i + 3]
        s4 += a[i + 4]
        s5 += a[i + 5]
        s6 += a[i + 6]
        s7 += a[i + 7]
    tail = zero
    for i in range(full, n):
        tail += a[i]
    return (((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))) + tail


# in_t (I, B), weights (I, O), bias (O,) or (0,), act -> out_t (O, B)
@jit
def narrow_forward(in_t, weights, bias, act, out_t):
    n_in, batch = in_t.shape
    n_out = weights.shape[1]
    has_bias = bias.shape[0] != 0
    for j in range(n_out):
        row = out_t[j]
        row[:] = bias[j] if has_bias else out_t.dtype.type(0)
        for k in range(n_in):  # k in order, as the direct loops of kernels/dense.py
            w = weights[k, j]
            src = in_t[k]
            for i in range(batch):
                row[i] += w * src[i]
    add_bias_activate(out_t, bias[:0], act)


# in_t (I, B), weights (I, O), out_t (O, B), grad_t (O, B), act
#   -> delta_t (O, B), grad_weights (I, O), grad_bias (O,) or (0,), grad_in_t (I, B)
@jit
def narrow_backward(in_t, weights, out_t, grad_t, act, compute_grad_x,
                    delta_t, grad_weights, grad_bias, grad_in_t):
    n_in, batch = in_t.shape
    n_out = weights.shape[1]
    delta_bias_grad(out_t, grad_t, act, delta_t, grad_bias[:0])  # delta only
    for j in range(grad_bias.shape[0]):
        grad_bias[j] = _lane_sum(delta_t[j], batch)
    for k in range(n_in):
        for j in range(n_out):
            grad_weights[k, j] = _lane_dot(in_t[k], delta_t[j], batch)
    if compute_grad_x:
        for k in range(n_in):
            row = grad_in_t[k]
            row[:] = 0
            for j in range(n_out):
                w = weights[k, j]
                d = delta_t[j]
                for i in range(batch):
                    row[i] += w * d[i]
