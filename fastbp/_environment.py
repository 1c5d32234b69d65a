"""What `import fastbp` checks before anything else: the environment
variables numba reads (so a bad value is reported by name instead of failing
deep inside numba), and that the package is installed."""
import importlib.util
import os


def check_installed(package_path):
    """The top-level kernels/ folder becomes fastbp.kernels when the project is
    installed (pyproject.toml maps it); imported straight from a source
    checkout, fastbp has no kernels, and Python's own error blames a circular
    import. Say what to run instead."""
    if importlib.util.find_spec("fastbp.kernels") is not None:
        return
    root = os.path.dirname(os.path.abspath(package_path[0]))
    raise ImportError(f"fastbp is being imported from the source checkout {root} without being installed, "
                      f"so its kernels/ folder is not fastbp.kernels yet. Install it first: "
                      f"pip install -e {root} (or bash scripts/setup.sh there, which makes .venv)")


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
