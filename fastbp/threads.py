"""One thread count for everything fastbp runs: numba's threads and BLAS's.

numba's `np.dot` calls scipy's OpenBLAS, numpy carries another, and numba has
its own thread pool; left alone each sizes itself to the machine, and a
process that uses two of them at once runs more threads than cores. fastbp's
kernels are serial around threaded BLAS calls (kernels/_jit.py says why), so
the BLAS libraries decide the parallelism and numba's pool must not add to it.
"""
import numba
import threadpoolctl

from ._validation import check_positive_int


def _blas_controller():
    # threadpoolctl only sees libraries already loaded: load scipy's BLAS, the
    # one numba's np.dot calls, before asking.
    import scipy.linalg.cython_blas  # noqa: F401

    return threadpoolctl.ThreadpoolController()


def set_num_threads(n):
    """Use at most `n` threads: numba's pool and every loaded BLAS library.

    `n` may not exceed numba's pool size (NUMBA_NUM_THREADS, by default the
    number of cores), since numba cannot grow its pool after start-up.
    """
    n = check_positive_int(n, "n")
    limit = numba.config.NUMBA_NUM_THREADS
    if n > limit:
        raise ValueError(f"n must be at most NUMBA_NUM_THREADS={limit} (numba's pool is sized at "
                         f"start-up; set that environment variable to allow more), got {n}")
    numba.set_num_threads(n)
    _blas_controller().limit(limits=n, user_api="blas")


def get_num_threads():
    """{"numba": n, "blas": [n per loaded BLAS library]}."""
    return {"numba": numba.get_num_threads(),
            "blas": [info["num_threads"] for info in _blas_controller().info()
                     if info["user_api"] == "blas"]}
