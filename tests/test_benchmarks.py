"""The asv benchmarks and `fastbp bench` stay runnable: each benchmark class's
setup and methods run once per implementation on its smallest parameters, and
the three implementations of a training step compute the same loss."""
import importlib
import inspect

import numpy as np
import pytest

import fastbp
from fastbp.cli import bench

MODULES = ["benchmarks.bench_dense", "benchmarks.bench_train", "benchmarks.bench_conv", "benchmarks.bench_sklearn"]


def _classes():
    for name in MODULES:
        module = importlib.import_module(name)
        for cls_name, cls in vars(module).items():
            if inspect.isclass(cls) and cls.__module__ == module.__name__ and hasattr(cls, "params"):
                yield pytest.param(cls, id=cls_name)


@pytest.mark.parametrize("cls", list(_classes()))
def test_benchmark_runs_for_every_impl(cls):
    params = cls.params if isinstance(cls.params[0], (list, tuple)) else (cls.params,)
    smallest = [min(values, key=lambda v: (isinstance(v, str), v if not isinstance(v, str) else 0))
                for values in params[1:]]
    if cls.param_names[0] == "impl":  # a comparison: fastbp beside its peers
        assert "fastbp" in params[0] and {"torch", "sklearn"} & set(params[0])
    for impl in params[0]:
        bench_obj = cls()
        bench_obj.setup(impl, *smallest)
        methods = [m for m in dir(cls) if m.startswith(("time_", "peakmem_"))]
        assert methods
        for method in methods:
            getattr(bench_obj, method)(impl, *smallest)


def test_training_baselines_agree_with_fastbp():
    # the implementations the benchmarks compare do the same arithmetic
    from benchmarks.bench_train import FusedTrainStep, LayerTrainStep

    losses = {}
    for cls in (FusedTrainStep, LayerTrainStep):
        for impl in ("fastbp", "numpy", "torch", "jax"):
            b = cls()
            b.setup(impl, "2-5-3 b210")
            losses[cls.__name__, impl] = b.step()  # second step: after one identical update
    first = losses["FusedTrainStep", "fastbp"]
    for key, value in losses.items():
        np.testing.assert_allclose(value, first, rtol=1e-5, err_msg=str(key))


def test_conv_benchmark_impls_agree():
    from benchmarks.bench_conv import Conv2DForwardBackward

    grads = {}
    for impl in ("fastbp", "torch"):
        b = Conv2DForwardBackward()
        b.setup(impl, 4)
        grads[impl] = np.asarray(b.run())
    np.testing.assert_allclose(grads["fastbp"], grads["torch"], rtol=1e-4, atol=1e-5)


def test_bench_tables_run_on_small_cases():
    steps = bench.time_steps((2, 5, 3), ("sigmoid", "sigmoid"), 16, budget_s=0.01)
    assert set(steps) == {"fused", "layers", "numpy", "torch", "jax", "GEMMs", "torch GEMMs"}
    assert all(v > 0 for v in steps.values())
    forward = bench.time_forward(16, 8, "sigmoid", budget_s=0.01)
    assert set(forward) == {"fastbp", "numpy", "torch", "jax"}
    assert "cores; fastbp's BLAS openblas" in bench.machine()


def test_epochs_table_times_fit_its_products_and_fit_beside_a_busy_process():
    epochs = bench.time_epochs((8, 16, 4), 8, budget_s=0.06, steps=2)
    assert set(epochs) == {"fastbp", "fastbp 1 thread", "jax", "torch", "GEMMs", "quiet", "busy"}
    assert all(v > 0 for v in epochs.values())
    assert bench.gemm_gflops(64, budget_s=0.01) > 0


def test_step_gemms_compiled_does_each_product_of_a_step():
    widths, batch = (5, 7, 3), 4
    xs, weights, grad_weights, grad_xs = bench.step_gemms(widths, batch, np.random.default_rng(0), arrays=True)
    grad_xs[1][:] = np.nan
    bench._step_gemms_compiled(1, xs, weights, grad_weights, grad_xs)
    for l in range(2):
        np.testing.assert_allclose(xs[l + 1], xs[l] @ weights[l], rtol=1e-5)
        np.testing.assert_allclose(grad_weights[l], xs[l].T @ xs[l + 1], rtol=1e-5)
    np.testing.assert_allclose(grad_xs[1], xs[2] @ weights[1].T, rtol=1e-5)
    # x W, x^T delta for both layers, delta W^T for the second: 2 * 4 * (2 * (35 + 21) + 21)
    assert bench.step_flops(widths, batch) == 2 * batch * (2 * (5 * 7 + 7 * 3) + 7 * 3)
    assert bench.forward_macs(widths, batch) == batch * (5 * 7 + 7 * 3)


def test_sklearn_table_fits_both_estimators_to_the_same_accuracy(monkeypatch):
    from fastbp.cli import bench_sklearn

    monkeypatch.setitem(bench_sklearn.SKLEARN_CASES, "tiny", ("blobs", (5,), "logistic", 8, 3, 0.1))
    result = bench_sklearn.time_sklearn("tiny", rounds=1)
    assert set(result) == set(bench_sklearn.IMPLS) and all(t > 0 for t, _ in result.values())
    # float64: the same training as scikit-learn's, so the same held-out accuracy
    assert result["fastbp"][1] == result["sklearn"][1]



def test_cuda_benchmarks_skip_cleanly_without_a_gpu():
    from benchmarks.bench_cuda import CudaMLP

    # in the simulator (conftest) or on a machine without a GPU: skipped, not run
    with pytest.raises(NotImplementedError, match="GPU|CUDA"):
        CudaMLP().setup("fastbp", 64, 2**12)


def test_jax_baselines_train_as_fastbp_does():
    import jax.numpy as jnp

    from fastbp.cli.baselines import jax_epoch, jax_train_step

    rng = np.random.default_rng(0)
    widths, acts = (6, 16, 4), ("relu", "identity")
    x = rng.standard_normal((48, 6)).astype(np.float32)
    labels = rng.integers(0, 4, 48)
    model = bench.build(widths, acts)
    run = jax_epoch(bench.build(widths, acts), 0.05, 0.9, 8)
    opt = fastbp.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(2):  # both in the stored order: the same 6 steps an epoch
        history = model.fit(x, labels, loss=fastbp.CrossEntropyLoss(), optimizer=opt, batch_size=8,
                            shuffle=False, progress=False)
        jax_loss = run(jnp.asarray(x), jnp.asarray(labels), jnp.arange(48))
        assert jax_loss == pytest.approx(history["loss"][0], rel=1e-5)
    step = jax_train_step(bench.build(widths, ("relu", "sigmoid")), 0.1)
    reference = bench.build(widths, ("relu", "sigmoid"))
    y = rng.uniform(0, 1, (48, 4)).astype(np.float32)
    ref_opt = fastbp.SGD(reference.parameters(), lr=0.1)
    for _ in range(3):
        assert step(x, y) == pytest.approx(reference.train_step(x, y, fastbp.MSELoss("half_sum"), ref_opt),
                                           rel=1e-5)


def test_blas_core_probe_times_each_core_type_in_its_own_process(monkeypatch):
    from benchmarks import blas_core

    monkeypatch.setattr(blas_core, "CASES", (((8, 4, 2), 3, "float32"), ((8, 4, 2), 3, "float64")))
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")  # dropped for the "unset" run
    own_arch, own_times = blas_core.run_with(None)
    forced_arch, forced_times = blas_core.run_with("Haswell")
    assert own_arch and forced_arch
    assert len(own_times) == len(forced_times) == 2 and min(own_times + forced_times) > 0
    with open("/proc/cpuinfo") as f:
        if " avx2" in f.read():
            assert forced_arch == "Haswell"
