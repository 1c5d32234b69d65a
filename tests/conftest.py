"""Shared test helpers. torch (float64) is the reference for every gradient."""
import os
import subprocess
import sys

# CUDA kernels run in numba's simulator unless asked for a real GPU
# (tests/test_cuda_gpu.py does so in a child process); set before numba loads.
if os.environ.get("FASTBP_TEST_REAL_GPU") != "1":
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import settings  # noqa: E402

settings.register_profile("fastbp", deadline=None, max_examples=30, derandomize=True,
                          print_blob=True)
settings.load_profile("fastbp")

torch.set_num_threads(1)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DTYPES = (np.float32, np.float64)
LAYOUTS = ("C", "F", "strided")
# float32 results are compared with torch in float64 from the same inputs:
# a dot product of K terms is off by ~sqrt(K) ulp, hence 1e-4 relative.
RTOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}


def with_layout(arr, layout):
    """The same values as `arr` in C order, Fortran order or as a strided view."""
    if layout == "C":
        return np.ascontiguousarray(arr)
    if layout == "F":
        return np.asfortranarray(arr)
    wide = np.zeros(arr.shape[:-1] + (2 * arr.shape[-1],), arr.dtype)
    wide[..., ::2] = arr
    view = wide[..., ::2]
    assert not view.flags.c_contiguous or arr.shape[-1] <= 1
    return view


def ref(arr):
    """A float64 torch leaf tensor with gradient tracking, from a numpy array."""
    return torch.tensor(np.asarray(arr, dtype=np.float64), requires_grad=True)


def assert_close(actual, expected, dtype=None, rtol=None):
    """Element-wise closeness relative to the largest magnitude of `expected`."""
    expected = expected.detach().numpy() if isinstance(expected, torch.Tensor) else np.asarray(expected)
    actual = np.asarray(actual)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    if rtol is None:
        rtol = RTOL[np.dtype(dtype if dtype is not None else actual.dtype)]
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * max(scale, 1e-3))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


TRAINING_PROCESS = """
import numpy as np, fastbp
rng = np.random.default_rng(0)
model = fastbp.Sequential(fastbp.Linear(32, 128, activation="relu", rng=rng), fastbp.Linear(128, 3, rng=rng))
x = rng.standard_normal((256, 32)).astype(np.float32)
history = model.fit(x, rng.integers(0, 3, 256), loss=fastbp.CrossEntropyLoss(),
                    optimizer=fastbp.SGD(model.parameters(), lr=0.05), epochs=3, batch_size=64, rng=0)
print(np.concatenate([p.value.ravel() for p in model.parameters()]).astype(np.float64).sum().hex())
"""


def run_training_process(env_changes, user=None):
    """A 32-128-3 fit in a fresh process with these environment changes (as
    `user`, when given); the hex of the sum of its parameters."""
    env = dict(os.environ, **env_changes)
    command = [sys.executable, "-c", TRAINING_PROCESS]
    if user is not None:
        command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] + command
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd="/")
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def train_medium(seed=0):
    """Parameters after 2 epochs of a 64-256-256-10 net, flat."""
    import fastbp

    rng = np.random.default_rng(seed)
    model = fastbp.Sequential(fastbp.Linear(64, 256, activation="relu", rng=rng),
                              fastbp.Linear(256, 256, activation="tanh", rng=rng),
                              fastbp.Linear(256, 10, rng=rng))
    x = rng.standard_normal((512, 64)).astype(np.float32)
    labels = rng.integers(0, 10, 512)
    model.fit(x, labels, loss=fastbp.CrossEntropyLoss(), optimizer=fastbp.SGD(model.parameters(), lr=0.01,
                                                                                momentum=0.9),
              epochs=2, batch_size=128, rng=seed, progress=False)
    return np.concatenate([p.value.ravel() for p in model.parameters()])


# The bounds-checked rerun of the kernel tests (tests/test_install.py) spends
# minutes compiling every kernel again, one core's work: started as soon as
# the tests are collected, it runs beside the rest of the suite, and its test
# goes last to collect the result.
BOUNDSCHECK_TEST = "test_kernels_stay_in_bounds_under_numba_boundscheck"
BOUNDSCHECK_MODULES = ["tests/test_dense.py", "tests/test_activations.py", "tests/test_losses.py",
                       "tests/test_optim.py", "tests/test_fused.py", "tests/test_conv.py", "tests/test_model.py",
                       "tests/test_seeds.py"]


def pytest_collection_modifyitems(config, items):
    checked = [item for item in items if item.name == BOUNDSCHECK_TEST]
    if not checked:
        return
    items[:] = [item for item in items if item.name != BOUNDSCHECK_TEST] + checked
    import tempfile

    folder = tempfile.mkdtemp(prefix="fastbp-boundscheck-")
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=os.path.join(folder, "cache"))
    out = open(os.path.join(folder, "out.txt"), "w+")
    process = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                                *BOUNDSCHECK_MODULES], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                               text=True)
    config.stash[BOUNDSCHECK_KEY] = (process, out, env, folder)


def pytest_unconfigure(config):
    # a test run that ended before the test collected it (-x, Ctrl-C): no orphan left running
    started = config.stash.get(BOUNDSCHECK_KEY, None)
    if started is not None:
        process, out, _, folder = started
        if process.poll() is None:
            process.kill()
            process.wait()
        out.close()
        import shutil

        shutil.rmtree(folder, ignore_errors=True)


BOUNDSCHECK_KEY = pytest.StashKey()
