"""The CUDA path against the CPU path and torch, in numba's CUDA simulator
(NUMBA_ENABLE_CUDASIM=1, set in conftest.py) on small shapes; on a real GPU
tests/test_cuda_gpu.py runs this same module without the simulator."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import cuda

import fastbp
from fastbp import kernels
from fastbp.kernels.cuda import dense as cuda_dense
from fastbp.kernels.cuda import losses as cuda_losses
from conftest import DTYPES, assert_close, ref

ACTS = ["identity", "sigmoid", "relu", "tanh"]
TORCH_ACT = {"identity": lambda z: z, "relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}


@settings(max_examples=12)
@given(batch=st.integers(0, 9), n_in=st.integers(1, 9), n_out=st.integers(1, 9),
       act=st.integers(0, 3), dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**32 - 1))
def test_dense_kernels_match_the_cpu_kernels_over_several_blocks(batch, n_in, n_out, act, dtype, seed):
    # tile 4: several blocks per launch, partial tiles at every edge
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, n_in)).astype(dtype)
    w = rng.standard_normal((n_in, n_out)).astype(dtype)
    b = rng.standard_normal(n_out).astype(dtype)
    g = rng.standard_normal((batch, n_out)).astype(dtype)
    out = np.empty((batch, n_out), dtype)
    delta, gw, gb, gx = np.empty_like(out), np.empty_like(w), np.empty_like(b), np.empty_like(x)
    kernels.dense_forward(x, w, b, act, out)
    kernels.dense_backward(x, w, out, g, act, True, delta, gw, gb, gx)

    dx, dw, db = cuda.to_device(x), cuda.to_device(w), cuda.to_device(b)
    dout = cuda.device_array((batch, n_out), dtype)
    cuda_dense.dense_forward(dx, dw, db, act, dout, tile=4)
    d_delta, d_gw = cuda.device_array((batch, n_out), dtype), cuda.device_array((n_in, n_out), dtype)
    d_gb, d_gx = cuda.device_array(n_out, dtype), cuda.device_array((batch, n_in), dtype)
    cuda_dense.dense_backward(dx, dw, dout, cuda.to_device(g), act, True, d_delta, d_gw, d_gb, d_gx,
                              tile=4)
    for cpu, gpu in [(out, dout), (gw, d_gw), (gb, d_gb), (gx, d_gx)]:
        assert_close(gpu.copy_to_host(), cpu, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTS)
def test_linear_on_cuda_matches_torch(dtype, activation):
    rng = np.random.default_rng(0)
    layer = fastbp.Linear(5, 4, activation=activation, dtype=dtype, rng=rng, device="cuda")
    x = rng.standard_normal((6, 5)).astype(dtype)
    out = layer.forward(x)
    assert fastbp._cuda.is_device_array(out)  # outputs stay on the device
    grad_out = rng.standard_normal((6, 4)).astype(dtype)
    grad_x = layer.backward(grad_out)

    tx, tw, tb = ref(x), ref(fastbp.to_numpy(layer.weights)), ref(fastbp.to_numpy(layer.bias))
    t_out = TORCH_ACT[activation](tx @ tw + tb)
    t_out.backward(torch.from_numpy(grad_out.astype(np.float64)))
    assert_close(fastbp.to_numpy(out), t_out, dtype)
    assert_close(fastbp.to_numpy(grad_x), tx.grad, dtype)
    assert_close(fastbp.to_numpy(layer.grad_weights), tw.grad, dtype)
    assert_close(fastbp.to_numpy(layer.grad_bias), tb.grad, dtype)


@pytest.mark.parametrize("loss, target_kind", [
    (fastbp.MSELoss(), "float"), (fastbp.MSELoss("half_sum"), "float"), (fastbp.BCELoss(), "prob"),
    (fastbp.BCEWithLogitsLoss(reduction="sum"), "prob"), (fastbp.CrossEntropyLoss(), "labels"),
    (fastbp.CrossEntropyLoss(), "prob_rows")])
@pytest.mark.parametrize("dtype", DTYPES)
def test_losses_on_cuda_match_the_cpu(loss, target_kind, dtype):
    rng = np.random.default_rng(1)
    pred = rng.standard_normal((7, 3)).astype(dtype)
    if isinstance(loss, fastbp.BCELoss):
        pred = 1 / (1 + np.exp(-pred))
    target = {"float": rng.standard_normal((7, 3)), "prob": rng.uniform(0, 1, (7, 3)),
              "labels": rng.integers(0, 3, 7), "prob_rows": rng.dirichlet(np.ones(3), 7)}[target_kind]
    if target_kind != "labels":
        target = target.astype(dtype)
    cpu_value = loss.forward(pred, target)
    cpu_grad = loss.backward()
    gpu_value = loss.forward(cuda.to_device(pred), target)
    gpu_grad = fastbp.to_numpy(loss.backward())
    np.testing.assert_allclose(gpu_value, cpu_value, rtol=1e-12)  # both accumulate in float64
    assert_close(gpu_grad, cpu_grad, dtype)


def test_device_sum_is_exact_and_order_fixed_over_many_blocks():
    terms = np.random.default_rng(0).standard_normal(5000)
    first = cuda_losses.device_sum(cuda.to_device(terms), threads=8)
    assert first == cuda_losses.device_sum(cuda.to_device(terms), threads=8)
    np.testing.assert_allclose(first, terms.sum(), rtol=1e-12)


@pytest.mark.parametrize("dtype, big", [(np.float64, 1e16), (np.float64, 1e300), (np.float32, 3e38)])
@pytest.mark.parametrize("soft", [False, True])
def test_cross_entropy_gradient_on_cuda_with_tied_huge_logits(dtype, big, soft):
    # softmax as exp(z - max) / sum: exp(z - logsumexp) turned the tied 0.5s into 1
    logits = np.array([[big, big, 0.0], [0.0, 1.0, 2.0]], dtype)
    labels = np.array([0, 2])
    target = cuda.to_device(fastbp.one_hot(labels, 3, dtype)) if soft else labels
    loss = fastbp.CrossEntropyLoss()
    loss.forward(cuda.to_device(logits), target)
    cpu = fastbp.CrossEntropyLoss()
    cpu.forward(logits, labels)
    np.testing.assert_allclose(fastbp.to_numpy(loss.backward()), cpu.backward(), rtol=1e-6, atol=0)
    assert fastbp.to_numpy(loss.backward())[0, 1] == pytest.approx(0.25, rel=1e-6)
    # rounded once: no float32(1/B) - 1/B residue on the true class of a one-class row
    loss.forward(cuda.to_device(np.zeros((3, 1), dtype)), np.zeros(3, np.int64))
    assert np.all(fastbp.to_numpy(loss.backward()) == 0)


def test_invalid_gpu_labels_give_nan_not_a_stray_read():
    logits = cuda.to_device(np.zeros((2, 3)))
    labels = cuda.to_device(np.array([0, 7]))
    assert np.isnan(fastbp.CrossEntropyLoss().forward(logits, labels))


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_a_model_trains_the_same_on_cuda_as_on_the_cpu(momentum):
    def build():
        rng = np.random.default_rng(0)
        return fastbp.Sequential(fastbp.Linear(2, 5, activation="sigmoid", rng=rng),
                                 fastbp.Linear(5, 3, activation="sigmoid", rng=rng))
    (x, labels), _ = fastbp.gaussian_blobs(n_train=24, n_test=3)
    y = fastbp.one_hot(labels, 3, np.float32)
    cpu_model = build()
    gpu_model = build().to("cuda")
    assert gpu_model.fused is None and gpu_model.device == "cuda"
    cpu_opt = fastbp.SGD(cpu_model.parameters(), lr=0.5, momentum=momentum)
    gpu_opt = fastbp.SGD(gpu_model.parameters(), lr=0.5, momentum=momentum)
    for step in range(3):
        batch = slice(8 * step, 8 * step + 8)
        cpu_loss = cpu_model.train_step(x[batch], y[batch], fastbp.MSELoss(), cpu_opt)
        gpu_loss = gpu_model.train_step(x[batch], y[batch], fastbp.MSELoss(), gpu_opt)
        np.testing.assert_allclose(gpu_loss, cpu_loss, rtol=1e-5)
    for cpu_p, gpu_p in zip(cpu_model.parameters(), gpu_model.parameters()):
        assert_close(fastbp.to_numpy(gpu_p.value), cpu_p.value, np.float32)
    back = gpu_model.to("cpu")
    assert back.fused is not None  # fused again on the CPU
    np.testing.assert_allclose(back.predict(x), cpu_model.predict(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layer_cls", [fastbp.ReLU, fastbp.Sigmoid, fastbp.Tanh])
def test_activation_layers_on_gpu_arrays_match_the_cpu(layer_cls, dtype):
    # 300 values: two blocks of 256 threads, the second partial; (0, 3): no launch at all
    rng = np.random.default_rng(0)
    for shape in [(60, 5), (0, 3)]:
        x = (rng.standard_normal(shape) * 3).astype(dtype)
        g = rng.standard_normal(shape).astype(dtype)
        cpu, gpu = layer_cls(), layer_cls()
        out = gpu.forward(cuda.to_device(x))
        assert_close(fastbp.to_numpy(out), cpu.forward(x), dtype)
        assert_close(fastbp.to_numpy(gpu.backward(cuda.to_device(g))), cpu.backward(g), dtype)


def test_seed000_on_cuda_matches_the_cpu_run_of_the_notebook():
    # tests/test_seeds.py checks the CPU run against the notebook's printed numbers
    def run(device):
        net = fastbp.Sequential(
            fastbp.Linear(2, 2, activation="sigmoid", bias=False, dtype=np.float64),
            fastbp.Linear(2, 1, activation="sigmoid", bias=False, dtype=np.float64)).to(device)
        net[0].weights = [[0.1, 0.4], [0.8, 0.6]]
        net[1].weights = [[0.3], [0.9]]
        loss = fastbp.MSELoss(reduction="half_sum")
        out = net.forward(np.array([[0.35, 0.9]]))
        value = loss(out, np.array([[0.5]]))
        net.backward(loss.backward())
        return [fastbp.to_numpy(out), value] + [fastbp.to_numpy(p.grad) for p in net.parameters()]
    for gpu, cpu in zip(run("cuda"), run("cpu")):
        np.testing.assert_allclose(gpu, cpu, rtol=1e-14)
    np.testing.assert_allclose(run("cuda")[0], [[0.69028349]], atol=5e-9)  # the notebook's output


def test_fit_and_evaluate_on_cuda():
    (x, labels), (x_test, labels_test) = fastbp.gaussian_blobs(n_train=30, n_test=9)
    model = fastbp.Sequential(fastbp.Linear(2, 4, activation="tanh", rng=0), fastbp.Linear(4, 3, rng=1))
    model.to("cuda")
    history = model.fit(x, labels, loss=fastbp.CrossEntropyLoss(), optimizer=fastbp.SGD(model.parameters(), lr=0.05),
                        epochs=2, batch_size=15, validation_data=(x_test, labels_test), progress=False)
    assert len(history["loss"]) == 2 and history["val_accuracy"][-1] is not None


def test_device_arrays_are_used_without_a_copy_and_checked():
    layer = fastbp.Linear(3, 2, rng=0, device="cuda")
    x = cuda.to_device(np.ones((4, 3), np.float32))
    out = layer.forward(x)
    assert layer.input is x
    assert out.shape == (4, 2)
    with pytest.raises(TypeError, match="must be a float32 GPU array, got float64"):
        layer.forward(cuda.to_device(np.ones((4, 3))))
    with pytest.raises(ValueError, match=r"x must have shape \(\*, 3\), got \(4, 2\)"):
        layer.forward(cuda.to_device(np.ones((4, 2), np.float32)))
    with pytest.raises(ValueError, match="device must be one of 'cpu', 'cuda'; got 'tpu'"):
        fastbp.Linear(3, 2, device="tpu")
    with pytest.raises(TypeError, match="Conv2D, which runs on the CPU only"):
        fastbp.Sequential(fastbp.Conv2D(1, 1, 2)).to("cuda")
    with pytest.raises(RuntimeError, match="Adam runs on the CPU only"):
        fastbp.Adam(layer.parameters())


def test_without_a_gpu_the_reason_is_clear():
    import subprocess
    import sys

    code = ("import fastbp\n"
            "try:\n    fastbp.Linear(2, 2, device='cuda')\n"
            "except RuntimeError as e:\n    print(e)\n")
    env = {k: v for k, v in __import__("os").environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if "unavailable" not in done.stdout:  # a machine with a GPU: nothing to explain
        assert done.stdout == "" and done.returncode == 0, done.stderr
    else:
        assert "no usable NVIDIA GPU" in done.stdout
