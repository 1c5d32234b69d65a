"""fastbp.set_num_threads, and what importing fastbp does (and does not do)."""
import subprocess
import sys

import numba
import pytest

import fastbp


def test_set_num_threads_limits_numba_and_every_blas():
    before = fastbp.get_num_threads()
    try:
        fastbp.set_num_threads(1)
        now = fastbp.get_num_threads()
        assert now["numba"] == 1
        assert now["blas"] and all(n == 1 for n in now["blas"])
    finally:
        fastbp.set_num_threads(before["numba"])
    assert fastbp.get_num_threads()["numba"] == before["numba"]


@pytest.mark.parametrize("bad", [0, -1, 2.5, "2", True])
def test_set_num_threads_refuses_bad_counts(bad):
    with pytest.raises((ValueError, TypeError), match="n must"):
        fastbp.set_num_threads(bad)


def test_set_num_threads_refuses_more_than_numbas_pool():
    with pytest.raises(ValueError, match="NUMBA_NUM_THREADS"):
        fastbp.set_num_threads(numba.config.NUMBA_NUM_THREADS + 1)


def test_import_neither_imports_torch_nor_compiles():
    code = """
import sys
import fastbp
from numba.core.registry import CPUDispatcher
assert "torch" not in sys.modules, "importing fastbp imported torch"
compiled = [f"{m}.{name}" for m, mod in list(sys.modules.items()) if m.startswith("fastbp")
            for name, obj in vars(mod).items()
            if isinstance(obj, CPUDispatcher) and obj.signatures]
assert not compiled, compiled
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_cached_kernels_are_stamped_with_every_kernel_file():
    # dense.py's compiled code inlines activations.py: its cache must go stale
    # when activations.py changes, not only when dense.py does (numba#1833)
    import numpy as np

    from fastbp.kernels import _jit, dense

    assert _jit.CACHE  # a writable checkout, or one of the fallback folders
    fastbp.Linear(2, 3, rng=0).forward(np.ones((4, 2), np.float32))
    locator = dense.dense_forward._cache._impl._locator
    assert type(locator).__name__.startswith("Kernel")
    assert locator.get_source_stamp() == _jit._KERNELS_HASH == _jit.kernel_sources_hash()


def test_kernel_sources_hash_follows_every_file_and_ignores_caches(tmp_path):
    import shutil

    from fastbp.kernels import _jit

    copy = tmp_path / "kernels"
    shutil.copytree(_jit._KERNELS_FOLDER, copy, ignore=shutil.ignore_patterns("__pycache__"))
    first = _jit.kernel_sources_hash(str(copy))
    assert first == _jit.kernel_sources_hash(_jit._KERNELS_FOLDER)
    (copy / "__pycache__").mkdir()
    (copy / "__pycache__" / "x.nbi").write_bytes(b"cache")
    assert _jit.kernel_sources_hash(str(copy)) == first
    nested = copy / "cuda" / "optim.py"
    nested.write_text(nested.read_text() + "\n# edited\n")
    assert _jit.kernel_sources_hash(str(copy)) != first
