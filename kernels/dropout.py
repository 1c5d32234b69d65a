"""Inverted dropout whose mask is a hash, not a stored array.

Element i (row-major over the layer's output) of training forward number
`counter` of a layer seeded `seed` is kept when the top 32 bits of
splitmix64(seed, counter, i) are at least `threshold` = round(p * 2**32), and
kept values are scaled by 1 / (1 - threshold / 2**32), so the output's
expectation is the input. The backward pass recomputes the same mask from the
same three numbers instead of storing it, the layer-by-layer path and the
fused whole-network step draw the same masks, and one seed fixes every mask of
a run whatever the threads or the batch order.

Shapes: x, out, grad_out, grad_x are flat (n,) views (dropout_batch_inner: (C, B)).
"""
import numpy as np

from ._jit import inline, jit

THRESHOLD_SCALE = 2.0 ** 32


@inline
def _kept(seed, counter, index, threshold):
    z = (np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(counter) * np.uint64(0xD1B54A32D192ED03)
         + np.uint64(index) * np.uint64(0x8CB92BA72F3D8DD7))
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(32)) >= np.uint64(threshold)


@jit
def dropout_scale(threshold):
    return 1.0 / (1.0 - threshold / THRESHOLD_SCALE)


@jit
def _masked(src, seed, counter, threshold, dst):
    scale = dst.dtype.type(dropout_scale(threshold))
    zero = dst.dtype.type(0)
    for i in range(src.shape[0]):
        # a product, not a select: NaN and inf stay NaN where dropped, as in torch
        dst[i] = src[i] * (scale if _kept(seed, counter, i, threshold) else zero)


# x (n,), seed, counter, threshold -> out (n,)
@jit
def dropout_forward(x, seed, counter, threshold, out):
    _masked(x, seed, counter, threshold, out)


# grad_out (n,), seed, counter, threshold -> grad_x (n,); may be the same
# array. The same mask and scale as the forward with this counter.
@jit
def dropout_backward(grad_out, seed, counter, threshold, grad_x):
    _masked(grad_out, seed, counter, threshold, grad_x)


# the same on batch-inner (features, B) arrays (kernels/narrow.py's layout):
# element (c, r) is row r's c-th output, index r * features + c as above.
# src_t (C, B) -> dst_t (C, B), which may be the same array
@jit
def dropout_batch_inner(src_t, seed, counter, threshold, dst_t):
    scale = dst_t.dtype.type(dropout_scale(threshold))
    zero = dst_t.dtype.type(0)
    features, batch = src_t.shape
    for c in range(features):
        for r in range(batch):
            dst_t[c, r] = src_t[c, r] * (scale if _kept(seed, counter, r * features + c, threshold) else zero)
