"""Inverted dropout whose mask is a hash, not a stored array.

The mask of a (rows, features) output in training forward number `counter`
of a layer seeded `seed`: rows go in blocks of four, and one splitmix64 of
(seed, counter, block * features + c) gives the four elements of column c in
that block 16 bits each (row 4 * block + lane reads bits 16 * lane upwards).
`threshold` is round(p * 2**32); an element is kept when its 16 bits are at
least round(threshold / 2**16), so the keep rate is 1 - p to within 2**-17,
and kept values are scaled by 1 / (1 - threshold / 2**32), which is
torch's 1 / (1 - p) to within 2**-32. The backward pass recomputes the same mask from the
same three numbers instead of storing it, the layer-by-layer path, the fused
whole-network step and the batch-inner layout of narrow networks draw the
same masks, and one seed fixes every mask of a run whatever the threads or
the batch order.

One hash for four elements rather than one each: the hash is the whole cost
of the pass, and sharing it makes the pass about 3.5x faster (2-5-3 network,
batch 210: `python -m fastbp bench --only optimizers`, row SGD+L2+clip+dropout).

Shapes: x, out, grad_out, grad_x are (rows, features); dropout_batch_inner's
src_t, dst_t are (features, rows).
"""
import numpy as np

from ._jit import inline, jit

THRESHOLD_SCALE = 2.0 ** 32
LANE_BITS = np.uint64(16)
LANE_MASK = np.uint64(0xFFFF)


@inline
def _hash(seed, counter, key):
    z = (np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(counter) * np.uint64(0xD1B54A32D192ED03)
         + np.uint64(key) * np.uint64(0x8CB92BA72F3D8DD7))
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@inline
def _lane_threshold(threshold):
    return (np.uint64(threshold) + np.uint64(1 << 15)) >> LANE_BITS


@inline
def _factor(z, lane, lane_threshold, scale, zero):
    # a product with this, not a select: NaN and inf stay NaN where dropped, as in torch
    return scale if ((z >> (LANE_BITS * np.uint64(lane))) & LANE_MASK) >= lane_threshold else zero


@jit
def dropout_scale(threshold):
    return 1.0 / (1.0 - threshold / THRESHOLD_SCALE)


@jit
def _masked(src, seed, counter, threshold, dst):
    scale = dst.dtype.type(dropout_scale(threshold))
    zero = dst.dtype.type(0)
    threshold = _lane_threshold(threshold)
    rows, features = src.shape
    full = rows // 4
    for block in range(full):
        r = 4 * block
        for c in range(features):
            z = _hash(seed, counter, block * features + c)
            dst[r, c] = src[r, c] * _factor(z, 0, threshold, scale, zero)
            dst[r + 1, c] = src[r + 1, c] * _factor(z, 1, threshold, scale, zero)
            dst[r + 2, c] = src[r + 2, c] * _factor(z, 2, threshold, scale, zero)
            dst[r + 3, c] = src[r + 3, c] * _factor(z, 3, threshold, scale, zero)
    for c in range(features):
        z = _hash(seed, counter, full * features + c)
        for lane in range(rows - 4 * full):
            dst[4 * full + lane, c] = src[4 * full + lane, c] * _factor(z, lane, threshold, scale, zero)


# x (rows, features), seed, counter, threshold -> out (rows, features)
@jit
def dropout_forward(x, seed, counter, threshold, out):
    _masked(x, seed, counter, threshold, out)


# grad_out (rows, features), seed, counter, threshold -> grad_x (rows,
# features); may be the same array. The same mask and scale as the forward
# with this counter.
@jit
def dropout_backward(grad_out, seed, counter, threshold, grad_x):
    _masked(grad_out, seed, counter, threshold, grad_x)


# the same on batch-inner (features, rows) arrays (kernels/narrow.py's
# layout): element (c, r) is row r's c-th output, with the mask above.
# src_t (C, B) -> dst_t (C, B), which may be the same array
@jit
def dropout_batch_inner(src_t, seed, counter, threshold, dst_t):
    scale = dst_t.dtype.type(dropout_scale(threshold))
    zero = dst_t.dtype.type(0)
    threshold = _lane_threshold(threshold)
    features, rows = src_t.shape
    full = rows // 4
    for c in range(features):
        for block in range(full):
            r = 4 * block
            z = _hash(seed, counter, block * features + c)
            dst_t[c, r] = src_t[c, r] * _factor(z, 0, threshold, scale, zero)
            dst_t[c, r + 1] = src_t[c, r + 1] * _factor(z, 1, threshold, scale, zero)
            dst_t[c, r + 2] = src_t[c, r + 2] * _factor(z, 2, threshold, scale, zero)
            dst_t[c, r + 3] = src_t[c, r + 3] * _factor(z, 3, threshold, scale, zero)
        z = _hash(seed, counter, full * features + c)
        for lane in range(rows - 4 * full):
            dst_t[c, 4 * full + lane] = src_t[c, 4 * full + lane] * _factor(z, lane, threshold, scale, zero)
