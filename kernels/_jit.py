"""The decorators every CPU kernel uses, and `const_like` for typed constants.

- ``cache=True``: compiled code is written next to the source (or to
  ``NUMBA_CACHE_DIR``) so a second process loads it in milliseconds.
- ``error_model="numpy"``: numba's default ("python") puts a zero-division
  check in every ``/``, which stops loops from vectorising (8x slower here).
- ``nogil=True``: two threads training two models run their kernels at once.
- No ``fastmath``: results must follow IEEE evaluation order, which the tests
  compare against torch, and NaN must propagate.
- No ``parallel=True``: on this 2-core machine a prange epilogue fought the
  threaded BLAS GEMM next to it and lost (field notes); the kernels stay
  serial and let BLAS own the threads.
"""
from numba import njit, types
from numba.extending import overload

jit = njit(cache=True, error_model="numpy", nogil=True)
inline = njit(inline="always", error_model="numpy")


def const_like(x, value):
    """`value` in the floating type of the scalar `x`.

    A bare literal would not do: numba types ``float32 - 1`` as float64, which
    silently doubles the cost of every float32 kernel that mentions a constant.
    """
    return type(x)(value)


@overload(const_like, inline="always")
def _const_like(x, value):
    if isinstance(x, types.Float):
        float_type = x

        def impl(x, value):
            return float_type(value)

        return impl
