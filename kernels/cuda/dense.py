"""Dense layer on the GPU: a tiled shared-memory GEMM whose epilogue applies
the bias and activation in registers (cuBLASLt's RELU_BIAS idea), and a fused
delta-and-bias-gradient kernel (DRELU_BGRAD); the weight and input gradients
are the same GEMM with transposed operands.

Shapes as in kernels/dense.py: x (B, I), weights (I, O), bias (O,) or (0,),
out, grad_out, delta (B, O), grad_weights (I, O), grad_x (B, I).
"""
import functools
import math

from numba import cuda, float32, float64

from ..activations import IDENTITY, RELU, SIGMOID, TANH
from .reduce import block_tree_sum

TILE = 16  # threads per block side; 16 x 16 = 256 threads, 2 x 16 x 16 floats of shared memory


@functools.lru_cache(maxsize=None)
def device_functions(dtype):
    """(activate, activation_grad) device functions for one dtype; every
    constant is of that dtype, since a bare 1 would make float32 work float64."""
    element = float32 if str(dtype) == "float32" else float64
    zero, one = element(0), element(1)

    @cuda.jit(device=True, inline=True)
    def activate(z, act):
        if act == RELU:
            return zero if z < zero else z  # NaN < 0 is False: NaN propagates
        if act == SIGMOID:
            if z >= zero:  # exp of a non-positive number: stable for any z
                return one / (one + math.exp(-z))
            e = math.exp(z)
            return e / (one + e)
        if act == TANH:
            return math.tanh(z)
        return z

    @cuda.jit(device=True, inline=True)
    def activation_grad(y, act):
        if act == RELU:
            return one if y > zero else zero
        if act == SIGMOID:
            return y * (one - y)
        if act == TANH:
            return one - y * y
        return one

    return activate, activation_grad


@functools.lru_cache(maxsize=None)
def gemm_kernel(dtype, tile=TILE):
    """out (M, N) = act(op(a) @ op(b) + bias), op = transpose where asked.

    Launch with blocks of (tile, tile) threads over ceil(N / tile) x ceil(M / tile).
    Each block stages a tile of op(a) and of op(b) in shared memory per step
    along K; each thread keeps its output element in a register until the
    epilogue. Sums run along K in order: the result does not depend on the
    launch configuration beyond the tile.
    """
    element = float32 if str(dtype) == "float32" else float64
    activate, _ = device_functions(str(dtype))

    @cuda.jit
    def gemm_bias_act(a, b, bias, act, trans_a, trans_b, out):
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        row = cuda.blockIdx.y * tile + ty
        col = cuda.blockIdx.x * tile + tx
        n_rows, n_cols = out.shape
        depth = a.shape[0] if trans_a else a.shape[1]
        # one shared array per line: the simulator tells them apart by line
        a_tile = cuda.shared.array((tile, tile), element)
        b_tile = cuda.shared.array((tile, tile), element)
        acc = element(0)
        for start in range(0, depth, tile):
            k_a = start + tx
            if row < n_rows and k_a < depth:
                a_tile[ty, tx] = a[k_a, row] if trans_a else a[row, k_a]
            else:
                a_tile[ty, tx] = 0
            k_b = start + ty
            if k_b < depth and col < n_cols:
                b_tile[ty, tx] = b[col, k_b] if trans_b else b[k_b, col]
            else:
                b_tile[ty, tx] = 0
            cuda.syncthreads()
            for k in range(tile):
                acc += a_tile[ty, k] * b_tile[k, tx]
            cuda.syncthreads()
        if row < n_rows and col < n_cols:
            if bias.shape[0] != 0:
                acc += bias[col]
            out[row, col] = activate(acc, act)

    return gemm_bias_act


@functools.lru_cache(maxsize=None)
def delta_bias_grad_kernel(dtype, threads=TILE * TILE):
    """delta = grad_out * act'(out) and grad_bias = column sums of delta, fused.

    One block per output column: its threads walk the rows with a fixed
    stride, then a tree reduction in shared memory adds their partial sums in
    a fixed order. No atomics, so the bias gradient is the same on every run.
    Launch with (n_out,) blocks of `threads` threads (a power of two).
    """
    element = float32 if str(dtype) == "float32" else float64
    _, activation_grad = device_functions(str(dtype))

    @cuda.jit
    def delta_bias_grad(out, grad_out, act, delta, grad_bias):
        col = cuda.blockIdx.x
        tid = cuda.threadIdx.x
        partial = cuda.shared.array(threads, element)
        acc = element(0)
        for row in range(tid, out.shape[0], threads):
            d = grad_out[row, col] * activation_grad(out[row, col], act)
            delta[row, col] = d
            acc += d
        partial[tid] = acc
        block_tree_sum(partial, tid, threads)
        if tid == 0 and grad_bias.shape[0] != 0:
            grad_bias[col] = partial[0]

    return delta_bias_grad


def _grid(rows, cols, tile):
    return (max(1, (cols + tile - 1) // tile), max(1, (rows + tile - 1) // tile)), (tile, tile)


# x (B, I), weights (I, O), bias (O,) or (0,), act -> out (B, O); all device arrays
def dense_forward(x, weights, bias, act, out, tile=TILE):
    if out.shape[0] == 0:
        return
    blocks, threads = _grid(out.shape[0], out.shape[1], tile)
    gemm_kernel(str(out.dtype), tile)[blocks, threads](x, weights, bias, act, False, False, out)


# the CPU dense_backward's contract, on device arrays
def dense_backward(x, weights, out, grad_out, act, compute_grad_x, delta, grad_weights, grad_bias,
                   grad_x, tile=TILE):
    gemm = gemm_kernel(str(out.dtype), tile)
    empty = bias_none(str(out.dtype))
    delta_bias_grad_kernel(str(out.dtype), tile * tile)[max(1, out.shape[1]), tile * tile](
        out, grad_out, act, delta, grad_bias)
    blocks, threads = _grid(grad_weights.shape[0], grad_weights.shape[1], tile)
    gemm[blocks, threads](x, delta, empty, IDENTITY, True, False, grad_weights)  # x^T delta
    if compute_grad_x and grad_x.shape[0]:
        blocks, threads = _grid(grad_x.shape[0], grad_x.shape[1], tile)
        gemm[blocks, threads](delta, weights, empty, IDENTITY, False, True, grad_x)  # delta W^T


@functools.lru_cache(maxsize=None)
def bias_none(dtype):
    """The (0,) device array that stands for "no bias"."""
    import numpy as np

    return cuda.to_device(np.empty(0, dtype))


@functools.lru_cache(maxsize=None)
def activation_kernel(dtype, backward):
    """Element-wise activation (forward) or its gradient (backward) on flat arrays."""
    activate, activation_grad = device_functions(str(dtype))

    @cuda.jit
    def forward(x, act, out):
        i = cuda.grid(1)
        if i < x.shape[0]:
            out[i] = activate(x[i], act)

    @cuda.jit
    def grad(out, grad_out, act, grad_x):
        i = cuda.grid(1)
        if i < out.shape[0]:
            grad_x[i] = grad_out[i] * activation_grad(out[i], act)

    return grad if backward else forward


# x, out: (n,) flat device arrays -> out = act(x); CPU activation_forward's contract
def activation_forward(x, act, out, threads=256):
    if x.shape[0]:
        activation_kernel(str(x.dtype), False)[(x.shape[0] + threads - 1) // threads, threads](x, act, out)


# out, grad_out, grad_x: (n,) flat device arrays; CPU activation_backward's contract
def activation_backward(out, grad_out, act, grad_x, threads=256):
    if out.shape[0]:
        activation_kernel(str(out.dtype), True)[(out.shape[0] + threads - 1) // threads, threads](
            out, grad_out, act, grad_x)
