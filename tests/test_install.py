"""Installation and start-up: import compiles nothing and imports no torch, the
kernel cache's stamp, read-only installs, thread counts from the environment,
bounds-checked kernels."""
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import pytest

import fastbp
from conftest import BOUNDSCHECK_KEY, REPO, run_training_process


def test_thread_counts_set_low_or_high_in_the_environment_work():
    low = run_training_process({"NUMBA_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"})
    high = run_training_process({"NUMBA_NUM_THREADS": "8", "OPENBLAS_NUM_THREADS": "8", "OMP_NUM_THREADS": "8"})
    assert abs(float.fromhex(low) - float.fromhex(high)) <= 1e-4 * abs(float.fromhex(low))
    assert run_training_process({"NUMBA_NUM_THREADS": "8", "OPENBLAS_NUM_THREADS": "8"}) == high  # reproducible


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0,
                    reason="needs root to run a child as an unprivileged user")
def test_works_from_a_read_only_install():
    # As `nobody`, the repository (and so kernels/__pycache__) is read-only and
    # HOME does not exist: numba alone would fail at import (no cache locator).
    # pytest's tmp_path lies in a folder only root may enter, hence mkdtemp.
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="fastbp-readonly-"))
    try:
        tmp.chmod(0o1777)
        env = {"HOME": "/nonexistent", "TMPDIR": str(tmp), "NUMBA_CACHE_DIR": "", "XDG_CACHE_HOME": ""}
        first = run_training_process(env, user=65534)
        second = run_training_process(env, user=65534)  # from the fallback cache
        assert first == second == run_training_process({})  # same threads as this process: same bits
        cached = list((tmp / "fastbp-numba-65534").rglob("*.nbi"))
        assert cached, "nothing was cached in the private fallback folder"
    finally:
        shutil.rmtree(tmp)


def test_kernels_stay_in_bounds_under_numba_boundscheck(request):
    # every kernel recompiled with bounds checks: an out-of-bounds access raises
    # IndexError instead of reading or corrupting memory. The run was started
    # when the tests were collected (conftest.py) and runs beside the others.
    process, out, env, _ = request.config.stash[BOUNDSCHECK_KEY]
    returncode = process.wait()
    out.seek(0)
    output = out.read()
    assert returncode == 0, output[-6000:]
    assert " passed" in output
    # and the checks were really on: a kernel handed an output too small raises
    probe = """
import numpy as np
from fastbp.kernels import dense_forward
x, w = np.ones((4, 3), np.float32), np.ones((3, 2), np.float32)
try:
    dense_forward(x, w, np.ones(2, np.float32), 0, np.empty((3, 2), np.float32))
except IndexError:
    print("checked")
"""
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True)
    assert done.stdout.strip() == "checked", done.stderr[-2000:]


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
