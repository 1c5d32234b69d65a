"""Issue 6: hostile input, non-finite losses, determinism, threads, deployment.

The fuzz tests throw random arrays (any dtype, shape, order, strides, views,
zero-size) at every public call and accept exactly two outcomes: a documented
exception (ValueError / TypeError / RuntimeError with a message) or a result
equal to a numpy reference. A crash would take the whole test run down.
"""
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastbp

DOCUMENTED = (ValueError, TypeError, RuntimeError)
FUZZ = settings(max_examples=150, suppress_health_check=list(HealthCheck))
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

NUMERIC_DTYPES = [np.bool_, np.int8, np.int64, np.uint16, np.float16, np.float32, np.float64]
HOSTILE_DTYPES = [np.complex64, np.complex128, np.dtype("U3"), np.dtype("S2"), np.dtype("M8[s]")]


def _elements(dtype):
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return st.floats(-1e3, 1e3, width=min(dtype.itemsize * 8, 64))
    if dtype.kind in "iu":
        return st.integers(max(np.iinfo(dtype).min, -1000), min(np.iinfo(dtype).max, 1000))
    return None


@st.composite
def hostile_arrays(draw, max_dims=4):
    """Arrays of any dtype and shape (zero-size included), as C, F, transposed or strided views."""
    dtype = draw(st.sampled_from(NUMERIC_DTYPES + HOSTILE_DTYPES))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=0, max_side=5))
    arr = draw(hnp.arrays(dtype, shape, elements=_elements(dtype)))
    layout = draw(st.sampled_from(["C", "F", "T", "step"]))
    if layout == "F":
        arr = np.asfortranarray(arr)
    elif layout == "T":
        arr = arr.T
    elif layout == "step" and arr.ndim:
        arr = np.repeat(arr, 2, axis=-1)[..., ::2]
    return arr


def _numpy_float(x, dtype):
    return np.asarray(x).astype(dtype)


def _check(call, reference):
    """Run call(); a documented exception with a message passes, otherwise the
    result must equal reference() (which may itself raise to say "must fail")."""
    try:
        result = call()
    except DOCUMENTED as exc:
        assert str(exc), f"{type(exc).__name__} without a message"
        return "refused"
    expected = reference()
    np.testing.assert_allclose(np.asarray(result, dtype=np.float64), np.asarray(expected, np.float64),
                               rtol=1e-4, atol=1e-4, equal_nan=True)
    return "computed"


NUMPY_ACT = {"identity": lambda z: z, "relu": lambda z: np.maximum(z, 0),
             "sigmoid": lambda z: 1 / (1 + np.exp(-z)), "tanh": np.tanh}


@FUZZ
@given(x=hostile_arrays(), activation=st.sampled_from(sorted(NUMPY_ACT)))
def test_fuzz_linear_forward_and_backward(x, activation):
    layer = fastbp.Linear(3, 2, activation=activation, rng=0)

    def reference():
        assert x.ndim == 2 and x.shape[1] == 3 and x.dtype.kind in "biuf", "should have been refused"
        with np.errstate(over="ignore"):  # the reference's own exp, not fastbp's
            return NUMPY_ACT[activation](_numpy_float(x, np.float32) @ layer.weights + layer.bias)
    if _check(lambda: layer.forward(x), reference) == "computed":
        grad = np.ones((x.shape[0], 2), np.float32)
        grad_x = layer.backward(grad)
        assert grad_x.shape == x.shape and np.all(np.isfinite(grad_x))
    # the layer is still usable after whatever happened
    assert layer.forward(np.ones((2, 3))).shape == (2, 2)


@FUZZ
@given(x=hostile_arrays(), layer_cls=st.sampled_from([fastbp.ReLU, fastbp.Sigmoid, fastbp.Tanh]))
def test_fuzz_activation_layers(x, layer_cls):
    layer = layer_cls()
    act = {fastbp.ReLU: "relu", fastbp.Sigmoid: "sigmoid", fastbp.Tanh: "tanh"}[layer_cls]

    def reference():
        assert x.dtype.kind in "biuf", "should have been refused"
        dtype = np.float32 if x.dtype == np.float32 else np.float64
        with np.errstate(over="ignore"):
            return NUMPY_ACT[act](_numpy_float(x, dtype))
    if _check(lambda: layer.forward(x), reference) == "computed":
        assert layer.backward(np.ones(x.shape)).shape == x.shape


@FUZZ
@given(pred=hostile_arrays(max_dims=3), target=hostile_arrays(max_dims=3),
       loss_cls=st.sampled_from([fastbp.MSELoss, fastbp.BCEWithLogitsLoss, fastbp.CrossEntropyLoss]))
def test_fuzz_losses(pred, target, loss_cls):
    loss = loss_cls()

    def reference():
        assert pred.dtype.kind in "biuf" and target.dtype.kind in "biuf", "should have been refused"
        p = pred.astype(np.float64)
        if loss_cls is fastbp.MSELoss:
            assert p.shape == target.shape
            return np.mean((p - target) ** 2) if p.size else np.nan  # torch's mean of nothing
        if loss_cls is fastbp.BCEWithLogitsLoss:
            assert p.shape == target.shape
            t = target.astype(np.float64)
            return np.mean(np.maximum(p, 0) - p * t + np.log1p(np.exp(-np.abs(p)))) if p.size else np.nan
        assert p.ndim == 2
        shifted = p - p.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        if target.ndim == 1:
            assert target.dtype.kind in "iu" and target.shape == (p.shape[0],)
            return -np.mean(log_probs[np.arange(p.shape[0]), target]) if p.shape[0] else np.nan
        assert target.shape == p.shape
        return -np.mean(np.sum(target * log_probs, axis=1)) if p.shape[0] else np.nan
    if _check(lambda: loss.forward(pred, target), reference) == "computed":
        assert np.asarray(loss.backward()).shape == pred.shape


@FUZZ
@given(x=hostile_arrays(max_dims=5))
def test_fuzz_conv_scale_flatten(x):
    conv = fastbp.Conv2D(2, 3, 2, padding=1, rng=0)

    def conv_reference():
        import torch

        assert x.ndim == 4 and x.shape[1] == 2 and x.dtype.kind in "biuf", "should have been refused"
        assert min(x.shape[2:]) + 2 >= 2
        out = torch.nn.functional.conv2d(torch.from_numpy(x.astype(np.float64)),
                                         torch.from_numpy(conv.weights.astype(np.float64)),
                                         torch.from_numpy(conv.bias.astype(np.float64)), padding=1)
        return out.numpy()
    _check(lambda: conv.forward(x), conv_reference)

    scale = fastbp.Scale(3, init=[1.0, -2.0, 0.5])

    def scale_reference():
        assert x.ndim == 2 and x.shape[1] == 3 and x.dtype.kind in "biuf", "should have been refused"
        return x.astype(np.float32) * np.float32([1.0, -2.0, 0.5])
    _check(lambda: scale.forward(x), scale_reference)

    flat = fastbp.Flatten()

    def flat_reference():
        assert x.ndim >= 1 and x.dtype.kind in "biuf", "should have been refused"
        return x.reshape(x.shape[0], int(np.prod(x.shape[1:])))
    _check(lambda: flat.forward(x), flat_reference)


@FUZZ
@given(x=hostile_arrays(max_dims=3), y=hostile_arrays(max_dims=3), fused=st.booleans())
def test_fuzz_sequential_train_step_and_fit(x, y, fused):
    model = fastbp.Sequential(fastbp.Linear(3, 4, activation="tanh", rng=0), fastbp.Linear(4, 2, rng=1))
    params = model.parameters()
    before = [p.value.copy() for p in params]
    opt = fastbp.SGD(params, lr=0.01)
    loss = fastbp.MSELoss()
    try:
        value = model.train_step(x, y, loss, opt, fused=None if fused else False)
    except DOCUMENTED as exc:
        assert str(exc)
        for p, old in zip(params, before):  # a refused step changes nothing
            np.testing.assert_array_equal(p.value, old)
    else:
        assert x.ndim == 2 and x.shape[1] == 3 and y.shape == (x.shape[0], 2)
        assert np.isfinite(value) or not np.all(np.isfinite(x))
    try:
        model.fit(x, y, loss=loss, optimizer=opt, epochs=1, batch_size=2, progress=False,
                  fused=None if fused else False)
    except (*DOCUMENTED, fastbp.NonFiniteLossError) as exc:
        assert str(exc)


@pytest.mark.parametrize("value", [None, "abc", 3, [[1, 2, 3]], [[1, "a", 3]], object(), {"a": 1},
                                   np.array([[None, None, None]], dtype=object), np.float64(2.0)])
def test_non_arrays_are_refused_or_converted(value):
    layer = fastbp.Linear(3, 2, rng=0)
    try:
        out = layer.forward(value)
    except DOCUMENTED as exc:
        assert str(exc)
    else:
        np.testing.assert_allclose(out, np.asarray(value, np.float32) @ layer.weights + layer.bias, rtol=1e-5)


def test_backward_twice_gives_the_same_gradients():
    layer = fastbp.Linear(3, 2, activation="sigmoid", rng=0)
    layer.forward(np.arange(6.0).reshape(2, 3))
    first = layer.backward(np.ones((2, 2))), layer.grad_weights.copy()
    second = layer.backward(np.ones((2, 2))), layer.grad_weights.copy()
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])


def test_fit_refuses_an_empty_data_set():
    model = fastbp.Sequential(fastbp.Linear(3, 2))
    with pytest.raises(ValueError, match="x has no samples"):
        model.fit(np.empty((0, 3)), np.empty((0, 2)), loss=fastbp.MSELoss(),
                  optimizer=fastbp.SGD(model.parameters(), lr=0.1))


# -- non-finite losses ------------------------------------------------------------
@pytest.mark.parametrize("fused", [True, False])
def test_fit_stops_at_the_first_non_finite_batch_keeping_the_last_good_parameters(fused):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 3))
    y = rng.standard_normal((40, 2))
    x[21, 1] = np.nan  # batch 2 (rows 16..23) of the unshuffled first epoch

    def build():
        model = fastbp.Sequential(fastbp.Linear(3, 5, activation="tanh", rng=1), fastbp.Linear(5, 2, rng=2))
        params = model.parameters()
        return model, params
    model, params = build()
    opt = fastbp.SGD(params, lr=0.01)
    assert model.fused.uses(opt)
    with pytest.raises(fastbp.NonFiniteLossError, match=r"became nan at epoch 0, batch 2") as info:
        model.fit(x, y, loss=fastbp.MSELoss(), optimizer=opt, epochs=3, batch_size=8, shuffle=False,
                  progress=False, fused=None if fused else False)
    assert (info.value.epoch, info.value.batch) == (0, 2)

    # the same two good batches, step by step
    reference, ref_params = build()
    opt = fastbp.SGD(ref_params, lr=0.01)
    for lo in (0, 8):
        reference.train_step(x[lo:lo + 8], y[lo:lo + 8], fastbp.MSELoss(), opt)
    for got, want in zip(model.parameters(), reference.parameters()):
        np.testing.assert_array_equal(got.value, want.value)
        assert np.all(np.isfinite(got.value))


def test_fit_stops_when_training_diverges():
    (x, labels), _ = fastbp.gaussian_blobs()
    model = fastbp.Sequential(fastbp.Linear(2, 8, activation="relu", rng=0), fastbp.Linear(8, 3, rng=1))
    with pytest.raises(fastbp.NonFiniteLossError, match="Lower the learning rate") as info:
        model.fit(x * 1e3, fastbp.one_hot(labels) * 1e3, loss=fastbp.MSELoss(),
                  optimizer=fastbp.SGD(model.parameters(), lr=10.0), epochs=50, progress=False)
    assert all(np.all(np.isfinite(p.value)) for p in model.parameters())
    assert len(info.value.history["loss"]) == info.value.epoch


@pytest.mark.parametrize("fused", [True, False])
def test_a_step_on_a_nan_loss_changes_nothing(fused):
    model = fastbp.Sequential(fastbp.Linear(2, 2, rng=0))
    params = model.parameters()
    before = [p.value.copy() for p in params]
    value = model.train_step(np.array([[np.inf, 1.0]]), np.zeros((1, 2)), fastbp.MSELoss(),
                             fastbp.SGD(params, lr=0.1), fused=None if fused else False)
    assert not np.isfinite(value)
    for p, old in zip(params, before):
        np.testing.assert_array_equal(p.value, old)


def test_nan_and_inf_propagate_like_numpy():
    layer = fastbp.Linear(2, 2, activation="relu", rng=0)
    x = np.array([[np.nan, 1.0], [np.inf, 0.0], [1.0, 2.0]], np.float32)
    with np.errstate(invalid="ignore"):
        expected = np.maximum(x @ layer.weights + layer.bias, 0)
    np.testing.assert_array_equal(np.isnan(layer.forward(x)), np.isnan(expected))


# -- determinism and threads --------------------------------------------------------
def _train_medium(seed=0):
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


def test_same_seed_and_thread_count_same_parameters_bit_for_bit():
    threads = fastbp.get_num_threads()["numba"]
    by_threads = {}
    try:
        for n in sorted({1, threads}):
            fastbp.set_num_threads(n)
            first, second = _train_medium(), _train_medium()
            np.testing.assert_array_equal(first, second)
            by_threads[n] = first
    finally:
        fastbp.set_num_threads(threads)
    # Across thread counts OpenBLAS's threaded GEMM adds in another order
    # (README, "Guarantees"): equal to float32 rounding, not bit for bit.
    for result in by_threads.values():
        np.testing.assert_allclose(result, by_threads[1], rtol=1e-5, atol=1e-6)


def test_deterministic_mode_is_bit_identical_whatever_the_threads():
    threads = fastbp.get_num_threads()["numba"]
    before = fastbp.get_num_threads()["blas"]
    results = []
    try:
        fastbp.set_deterministic(True)
        for n in sorted({1, threads, 2}):
            if n <= numba.config.NUMBA_NUM_THREADS:
                fastbp.set_num_threads(n)  # numba's pool follows n, BLAS stays on one thread
                assert fastbp.get_num_threads()["blas"] == [1] * len(before)
                results.append(_train_medium())
    finally:
        fastbp.set_deterministic(False)
        fastbp.set_num_threads(threads)
    assert fastbp.get_num_threads()["deterministic"] is False
    for other in results[1:]:
        np.testing.assert_array_equal(other, results[0])


def test_deterministic_mode_restores_the_blas_limits_it_replaced():
    threads = fastbp.get_num_threads()
    try:
        fastbp.set_deterministic(True)
        fastbp.set_deterministic(True)  # twice: still one limit to undo
        assert fastbp.get_num_threads()["deterministic"] is True
    finally:
        fastbp.set_deterministic(False)
    assert fastbp.get_num_threads() == threads
    with pytest.raises(TypeError, match="enabled must be True or False, got 'yes'"):
        fastbp.set_deterministic("yes")


def test_deterministic_mode_from_the_environment_across_thread_counts():
    low = _run({"FASTBP_DETERMINISTIC": "1", "NUMBA_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"})
    high = _run({"FASTBP_DETERMINISTIC": "1", "NUMBA_NUM_THREADS": "8", "OPENBLAS_NUM_THREADS": "8"})
    assert low == high
    env = dict(os.environ, FASTBP_DETERMINISTIC="yes")
    done = subprocess.run([sys.executable, "-c", "import fastbp"], env=env, capture_output=True, text=True)
    assert done.returncode != 0 and "FASTBP_DETERMINISTIC must be 0 or 1, got 'yes'" in done.stderr


def test_networks_without_blas_calls_are_bit_identical_whatever_the_threads():
    # fastbp's own kernels are serial with a fixed summation order; only BLAS
    # threads can reorder sums, and seed-sized layers use no BLAS
    threads = fastbp.get_num_threads()["numba"]
    results = []
    try:
        for n in sorted({1, threads}):
            fastbp.set_num_threads(n)
            (x, labels), _ = fastbp.gaussian_blobs()
            model = fastbp.Sequential(fastbp.Linear(2, 5, activation="sigmoid", rng=0),
                                      fastbp.Linear(5, 3, activation="sigmoid", rng=1))
            model.fit(x, fastbp.one_hot(labels), loss=fastbp.MSELoss(), epochs=20, batch_size=4, rng=0,
                      optimizer=fastbp.SGD(model.parameters(), lr=0.1), progress=False)
            results.append(np.concatenate([p.value.ravel() for p in model.parameters()]))
    finally:
        fastbp.set_num_threads(threads)
    for other in results[1:]:
        np.testing.assert_array_equal(other, results[0])


def test_two_threads_training_two_models_match_one_after_the_other():
    sequential = [_train_medium(0), _train_medium(1)]
    parallel = [None, None]

    def run(i):
        parallel[i] = _train_medium(i)
    workers = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    for got, want in zip(parallel, sequential):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("fused", [True, False])
def test_one_model_used_from_two_threads_is_serialised(fused):
    # both threads step with the same batch, so any order of whole steps gives
    # the same parameters; interleaved halves of steps would not
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 16)).astype(np.float32)
    y = rng.standard_normal((64, 4)).astype(np.float32)

    def build():
        model = fastbp.Sequential(fastbp.Linear(16, 32, activation="tanh", rng=1), fastbp.Linear(32, 4, rng=2))
        params = model.parameters()
        return model, fastbp.SGD(params, lr=1e-3)
    shared, opt = build()

    def work():
        for _ in range(200):
            shared.train_step(x, y, fastbp.MSELoss(), opt, fused=None if fused else False)
    workers = [threading.Thread(target=work) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    alone, alone_opt = build()
    for _ in range(400):
        alone.train_step(x, y, fastbp.MSELoss(), alone_opt)
    for got, want in zip(shared.parameters(), alone.parameters()):
        np.testing.assert_array_equal(got.value, want.value)


_RUN_AND_PRINT = """
import numpy as np, fastbp
rng = np.random.default_rng(0)
model = fastbp.Sequential(fastbp.Linear(32, 128, activation="relu", rng=rng), fastbp.Linear(128, 3, rng=rng))
x = rng.standard_normal((256, 32)).astype(np.float32)
history = model.fit(x, rng.integers(0, 3, 256), loss=fastbp.CrossEntropyLoss(),
                    optimizer=fastbp.SGD(model.parameters(), lr=0.05), epochs=3, batch_size=64, rng=0)
print(np.concatenate([p.value.ravel() for p in model.parameters()]).astype(np.float64).sum().hex())
"""


def _run(env_changes, user=None):
    env = dict(os.environ, **env_changes)
    command = [sys.executable, "-c", _RUN_AND_PRINT]
    if user is not None:
        command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] + command
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd="/")
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_thread_counts_set_low_or_high_in_the_environment_work():
    low = _run({"NUMBA_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"})
    high = _run({"NUMBA_NUM_THREADS": "8", "OPENBLAS_NUM_THREADS": "8", "OMP_NUM_THREADS": "8"})
    assert abs(float.fromhex(low) - float.fromhex(high)) <= 1e-4 * abs(float.fromhex(low))
    assert _run({"NUMBA_NUM_THREADS": "8", "OPENBLAS_NUM_THREADS": "8"}) == high  # reproducible


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
        first = _run(env, user=65534)
        second = _run(env, user=65534)  # from the fallback cache
        assert first == second == _run({})  # same threads as this process: same bits
        cached = list((tmp / "fastbp-numba-65534").rglob("*.nbi"))
        assert cached, "nothing was cached in the private fallback folder"
    finally:
        shutil.rmtree(tmp)


def test_kernels_stay_in_bounds_under_numba_boundscheck(tmp_path):
    # every kernel recompiled with bounds checks: an out-of-bounds access raises
    # IndexError instead of reading or corrupting memory
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
         "tests/test_dense.py", "tests/test_activations.py", "tests/test_losses.py", "tests/test_optim.py",
         "tests/test_fused.py", "tests/test_conv.py", "tests/test_model.py", "tests/test_seeds.py"],
        cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " passed" in done.stdout
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
