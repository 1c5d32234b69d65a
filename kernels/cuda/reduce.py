"""Block-wide sums in a fixed order, shared by the CUDA kernels."""
from numba import cuda


# partial: a shared array of `threads` values (a power of two), one per
# thread; returns with partial[0] holding their sum, added pairwise in a tree
# whose shape depends only on `threads`: the same sum on every run.
@cuda.jit(device=True, inline=True)
def block_tree_sum(partial, tid, threads):
    cuda.syncthreads()
    step = threads // 2
    while step > 0:
        if tid < step:
            partial[tid] += partial[tid + step]
        cuda.syncthreads()
        step //= 2
