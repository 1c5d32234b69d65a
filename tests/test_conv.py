"""Conv2D, Scale and Flatten against torch autograd (float64 reference)."""
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import fastbp
from conftest import DTYPES, LAYOUTS, assert_close, ref, with_layout

TORCH_ACT = {"identity": lambda z: z, "relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}


@st.composite
def conv_cases(draw):
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    # the input must hold at least one window
    height = draw(st.integers(max(1, kernel[0] - 2 * padding[0]), 9))
    width = draw(st.integers(max(1, kernel[1] - 2 * padding[1]), 9))
    return dict(batch=draw(st.integers(1, 4)), in_channels=draw(st.integers(1, 3)),
                out_channels=draw(st.integers(1, 4)), size=(height, width), kernel=kernel,
                stride=stride, padding=padding, activation=draw(st.sampled_from(sorted(TORCH_ACT))),
                bias=draw(st.booleans()), dtype=draw(st.sampled_from(DTYPES)),
                layout=draw(st.sampled_from(LAYOUTS)))


@given(conv_cases(), st.integers(0, 2**32 - 1))
def test_conv2d_matches_torch(case, seed):
    rng = np.random.default_rng(seed)
    layer = fastbp.Conv2D(case["in_channels"], case["out_channels"], case["kernel"], stride=case["stride"],
                          padding=case["padding"], activation=case["activation"], bias=case["bias"],
                          dtype=case["dtype"], rng=rng)
    x = rng.standard_normal((case["batch"], case["in_channels"]) + case["size"]).astype(case["dtype"])
    out = layer.forward(with_layout(x, case["layout"]))
    grad_out = rng.standard_normal(out.shape).astype(case["dtype"])
    grad_x = layer.backward(with_layout(grad_out, case["layout"]))

    tx, tw = ref(x), ref(layer.weights)
    tb = ref(layer.bias) if case["bias"] else None
    t_out = TORCH_ACT[case["activation"]](torch.nn.functional.conv2d(
        tx, tw, tb, stride=case["stride"], padding=case["padding"]))
    t_out.backward(torch.from_numpy(grad_out.astype(np.float64)))
    assert out.dtype == case["dtype"] and grad_x.dtype == case["dtype"]
    assert_close(out, t_out)
    assert_close(grad_x, tx.grad)
    assert_close(layer.grad_weights, tw.grad)
    if case["bias"]:
        assert_close(layer.grad_bias, tb.grad)


def test_conv2d_in_a_sequential_with_flatten_and_linear_matches_torch(rng):
    net = fastbp.Sequential(fastbp.Conv2D(2, 3, 3, padding=1, activation="relu", dtype=np.float64, rng=rng),
                            fastbp.Flatten(), fastbp.Linear(3 * 5 * 5, 4, dtype=np.float64, rng=rng))
    x = rng.standard_normal((6, 2, 5, 5))
    grad_out = rng.standard_normal((6, 4))
    out = net.forward(x)
    grad_x = net.backward(grad_out)
    tx, tw, tb = ref(x), ref(net[0].weights), ref(net[0].bias)
    tw2, tb2 = ref(net[2].weights), ref(net[2].bias)
    t_out = torch.relu(torch.nn.functional.conv2d(tx, tw, tb, padding=1)).flatten(1) @ tw2 + tb2
    t_out.backward(torch.from_numpy(grad_out))
    for actual, expected in [(out, t_out), (grad_x, tx.grad), (net[0].grad_weights, tw.grad),
                             (net[0].grad_bias, tb.grad), (net[2].grad_weights, tw2.grad)]:
        assert_close(actual, expected)


def test_conv2d_trains_with_sgd():
    # a parameter list the optimizers accept, and a loss that goes down
    rng = np.random.default_rng(0)
    net = fastbp.Sequential(fastbp.Conv2D(1, 4, 3, activation="tanh", rng=rng), fastbp.Flatten(),
                            fastbp.Linear(4 * 4 * 4, 1, rng=rng))
    x = rng.standard_normal((32, 1, 6, 6)).astype(np.float32)
    y = x[:, :, 1:5, 1:5].sum(axis=(1, 2, 3))[:, None] * 0.1
    loss, opt = fastbp.MSELoss(), fastbp.SGD(net.parameters(), lr=0.05)
    first = net.train_step(x, y, loss, opt)
    for _ in range(200):
        last = net.train_step(x, y, loss, opt)
    assert last < 0.2 * first


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_scale_matches_torch(dtype, layout, rng):
    layer = fastbp.Scale((3, 4), init=rng.standard_normal((3, 4)), dtype=dtype)
    x = rng.standard_normal((5, 3, 4)).astype(dtype)
    grad_out = rng.standard_normal((5, 3, 4)).astype(dtype)
    out = layer.forward(with_layout(x, layout))
    grad_x = layer.backward(with_layout(grad_out, layout))
    tx, tw = ref(x), ref(layer.weights)
    t_out = tx * tw
    t_out.backward(torch.from_numpy(grad_out.astype(np.float64)))
    assert_close(out, t_out)
    assert_close(grad_x, tx.grad)
    assert_close(layer.grad_weights, tw.grad)


def test_flatten_round_trip(rng):
    x = rng.standard_normal((2, 3, 4, 5))
    flat = fastbp.Flatten()
    assert flat.forward(x).shape == (2, 60)
    back = flat.backward(np.arange(120.0).reshape(2, 60))
    np.testing.assert_array_equal(back, np.arange(120.0).reshape(2, 3, 4, 5))
    with pytest.raises(ValueError, match=r"grad_out must have shape \(2, 60\)"):
        flat.backward(np.zeros((2, 59)))


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(kernel_size=0), ValueError, "kernel_size must be >= 1"),
    (dict(kernel_size=(2, 2, 2)), TypeError, "kernel_size must be an int or a pair"),
    (dict(kernel_size=2, stride=0), ValueError, "stride must be >= 1"),
    (dict(kernel_size=2, padding=-1), ValueError, "padding must be >= 0"),
    (dict(kernel_size=2.5), TypeError, "kernel_size"),
    (dict(kernel_size=2, activation="gelu"), ValueError, "activation must be one of"),
])
def test_conv2d_refuses_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        fastbp.Conv2D(1, 2, **kwargs)


def test_conv2d_refuses_bad_input():
    layer = fastbp.Conv2D(2, 3, 3)
    with pytest.raises(ValueError, match=r"x must have shape \(\*, 2, \*, \*\), got \(1, 3, 5, 5\)"):
        layer.forward(np.zeros((1, 3, 5, 5)))
    with pytest.raises(ValueError, match="smaller than"):
        layer.forward(np.zeros((1, 2, 2, 5)))
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.zeros((1, 3, 3, 3)))
    out = layer.forward(np.zeros((1, 2, 5, 5)))
    with pytest.raises(ValueError, match="grad_out must have shape"):
        layer.backward(np.zeros((1, 3, 3, 4)))
    assert out.shape == (1, 3, 3, 3)
