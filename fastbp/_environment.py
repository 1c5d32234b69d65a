"""Environment variables fastbp depends on, checked before numba reads them,
so a bad value is reported by name instead of failing deep inside numba."""
import os


def check_environment(environ=os.environ):
    threads = environ.get("NUMBA_NUM_THREADS")
    if threads is not None and threads.strip():
        try:
            ok = int(threads) >= 1
        except ValueError:
            ok = False
        if not ok:
            raise ImportError(f"fastbp: the environment variable NUMBA_NUM_THREADS must be a positive "
                              f"integer (numba's thread pool size), got {threads!r}; unset it or set "
                              f"e.g. NUMBA_NUM_THREADS=2")
    disable = environ.get("NUMBA_DISABLE_JIT", "").strip()
    if disable not in ("", "0"):
        # the kernels rely on numba intrinsics (views of flat buffers, FMA,
        # bit casts) that exist only in compiled code
        raise ImportError(f"fastbp: NUMBA_DISABLE_JIT={disable!r} is set, but fastbp's kernels only run "
                          f"compiled; unset NUMBA_DISABLE_JIT (or set it to 0)")
