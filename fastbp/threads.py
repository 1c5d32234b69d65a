"""One thread count for everything fastbp runs: numba's threads and BLAS's,
and a deterministic mode whose results do not depend on it.

numba's `np.dot` calls scipy's OpenBLAS, numpy carries another, and numba has
its own thread pool; left alone each sizes itself to the machine, and a
process that uses two of them at once runs more threads than cores. fastbp's
kernels are serial around threaded BLAS calls (kernels/_jit.py says why), so
the BLAS libraries decide the parallelism and numba's pool must not add to it.

Determinism. fastbp's own kernels are serial with a fixed summation order, so
only BLAS can make a result depend on the thread count: OpenBLAS's threaded
float32 GEMM splits the output by thread count, and its kernels round the
parts differently (measured with scipy's OpenBLAS 0.3.30: 1 vs 2 threads
differ in 14% of the entries of a 128x64x256 product x^T delta, 5% at 512^3;
so do fixed column or row blocks computed on one thread; its float64 GEMM
agreed bit for bit in every case tried). Deterministic mode therefore runs BLAS on one thread.
Spreading fixed blocks over numba's threads, each on a one-thread BLAS, was
tried: bit-identical, but while OpenBLAS's own idle threads spun, each
parallel call stalled ~8 ms on 2 cores, so it is not used.
"""
import contextlib
import os

import numba
import threadpoolctl

from ._validation import check_positive_int

_deterministic = False
_blas_limiter = None  # restores the BLAS limits that deterministic mode replaced
_controller = None  # blas_threads_for's, made once: making one rescans every loaded library (~1 ms)
_libraries = None  # its BLAS libraries

# Below this many multiply-adds in one forward pass over a batch (the batch
# times the sum of in x out over the layers), `fit` trains on one BLAS thread
# whatever set_num_threads says. Chosen from `python benchmarks/blas_threads.py
# --docs docs/performance.md` (64-w-w-10 nets, widths 16-1024, batches 1-4096,
# one and two threads, quiet and beside a process busy on one core):
# - Intel Xeon (AVX-512): below it one thread was within ~6% of two on a quiet
#   machine in most cases (faster in several; 13-15% slower at widths 512-1024
#   with batches of 1-8), while two lost up to 2-3x beside a busy process. From
#   9e6 on (64-512-512-10 at batch 32, 64-1024-1024-10 at batch 8) two threads
#   were 9-25% faster, and from ~2e7 on 20-45%.
# - AMD EPYC (Zen 5, AVX-512; the table in docs/performance.md): two threads
#   pay sooner, 15-27% faster from ~2e6 on (64-128-128-10 at batch 256: 187
#   against 256 us a step), but beside a busy process they took 1.1-2.1x as
#   long as one there (500 against 284 us).
# Below 8e6 a busy machine costs two threads more than a quiet one gains them,
# on both. 0 turns the rule off.
ONE_BLAS_THREAD_BELOW_MACS = 8_000_000


@contextlib.contextmanager
def blas_threads_for(forward_macs):
    """BLAS on one thread meanwhile when `forward_macs` is below
    ONE_BLAS_THREAD_BELOW_MACS; the thread counts as they were afterwards.
    The choice depends on the sizes alone, so results stay reproducible."""
    if forward_macs >= ONE_BLAS_THREAD_BELOW_MACS or _deterministic:
        yield
        return
    # each library's own get / set calls, paid once an epoch: threadpoolctl's
    # limit() re-reads every library's state, 40 us a call against 15 here
    # (python benchmarks/blas_threads.py --calls)
    libraries = _blas_libraries()
    before = [library.get_num_threads() for library in libraries]
    for library, threads in zip(libraries, before):
        if threads != 1:
            library.set_num_threads(1)
    try:
        yield
    finally:
        for library, threads in zip(libraries, before):
            if threads != 1:
                library.set_num_threads(threads)


def _blas_libraries():
    global _controller, _libraries
    if _libraries is None:
        _controller = _controller or _blas_controller()
        _libraries = _controller.select(user_api="blas").lib_controllers
    return _libraries


def _blas_controller():
    # threadpoolctl only sees libraries already loaded: load scipy's BLAS, the
    # one numba's np.dot calls, before asking.
    import scipy.linalg.cython_blas  # noqa: F401

    return threadpoolctl.ThreadpoolController()


def set_num_threads(n):
    """Use at most `n` threads: numba's pool and every loaded BLAS library
    (BLAS stays on one thread in deterministic mode).

    `n` may not exceed numba's pool size (NUMBA_NUM_THREADS, by default the
    number of cores), since numba cannot grow its pool after start-up.
    """
    n = check_positive_int(n, "n")
    limit = numba.config.NUMBA_NUM_THREADS
    if n > limit:
        raise ValueError(f"n must be at most NUMBA_NUM_THREADS={limit} (numba's pool is sized at "
                         f"start-up; set that environment variable to allow more), got {n}")
    numba.set_num_threads(n)
    _blas_controller().limit(limits=1 if _deterministic else n, user_api="blas")


def get_num_threads():
    """{"numba": n, "blas": [n per loaded BLAS library], "deterministic": bool}."""
    return {"numba": numba.get_num_threads(),
            "blas": [info["num_threads"] for info in _blas_controller().info()
                     if info["user_api"] == "blas"],
            "deterministic": _deterministic}


def set_deterministic(enabled=True):
    """Make training bit-identical whatever the number of threads.

    Runs every loaded BLAS library on one thread until turned off (which
    restores the limits it replaced). Costs BLAS's parallelism: networks too
    small for BLAS (widths below ~16) lose nothing, large ones train up to
    `set_num_threads`-times slower. Without it, results are bit-identical for
    a given thread count only. Also turned on by FASTBP_DETERMINISTIC=1 at
    import.
    """
    global _deterministic, _blas_limiter
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be True or False, got {enabled!r}")
    if enabled and not _deterministic:
        _blas_limiter = _blas_controller().limit(limits=1, user_api="blas")
    elif not enabled and _deterministic:
        _blas_limiter.restore_original_limits()
        _blas_limiter = None
    _deterministic = enabled


def _from_environment():
    value = os.environ.get("FASTBP_DETERMINISTIC", "")
    if value not in ("", "0", "1"):
        raise ValueError(f"FASTBP_DETERMINISTIC must be 0 or 1, got {value!r}")
    if value == "1":
        set_deterministic(True)
