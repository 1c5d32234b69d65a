"""Optimizers against torch.optim, several steps."""
import numpy as np
import pytest
import torch

import fastbp
from conftest import assert_close


def run_both(make_ours, make_torch, dtype, steps=5):
    rng = np.random.default_rng(7)
    layer = fastbp.Linear(6, 4, dtype=dtype, rng=rng)
    tw = torch.tensor(layer.weights.copy(), requires_grad=True)
    tb = torch.tensor(layer.bias.copy(), requires_grad=True)
    ours, theirs = make_ours(layer.parameters()), make_torch([tw, tb])
    for _ in range(steps):
        x = rng.standard_normal((10, 6)).astype(dtype)
        g = rng.standard_normal((10, 4)).astype(dtype)
        layer.forward(x)
        layer.backward(g)
        ours.step()
        theirs.zero_grad()
        (torch.tensor(x) @ tw + tb).mul(torch.tensor(g)).sum().backward()
        theirs.step()
    assert_close(layer.weights, tw, dtype, rtol=1e-5 if dtype == np.float32 else 1e-12)
    assert_close(layer.bias, tb, dtype, rtol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sgd(dtype, momentum):
    run_both(lambda p: fastbp.SGD(p, lr=0.05, momentum=momentum),
             lambda p: torch.optim.SGD(p, lr=0.05, momentum=momentum), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam(dtype):
    run_both(lambda p: fastbp.Adam(p, lr=0.01, betas=(0.8, 0.99), eps=1e-7),
             lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.8, 0.99), eps=1e-7), dtype, steps=8)


def test_zero_grad():
    layer = fastbp.Linear(3, 2, rng=0)
    layer.forward(np.ones((2, 3)))
    layer.backward(np.ones((2, 2)))
    opt = fastbp.SGD(layer.parameters(), lr=0.1)
    opt.zero_grad()
    assert not layer.grad_weights.any() and not layer.grad_bias.any()


def test_sgd_per_parameter_follows_arrays_rebound_after_construction():
    # a bare layer, in no model: SGD updates parameter by parameter, keeping
    # 1-D views of what it last saw; a layer given new arrays must be followed
    layer = fastbp.Linear(3, 2, rng=0)
    opt = fastbp.SGD(layer.parameters()[::-1], lr=0.5)
    assert opt.flat_params is None
    opt.step()
    weights = opt.params[1]
    layer._bind(np.zeros((3, 2), np.float32), np.ones((3, 2), np.float32), layer.bias, layer.grad_bias)
    opt.step()
    np.testing.assert_array_equal(weights.value, np.full((3, 2), -0.5))


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sgd_over_a_models_flat_buffers_equals_sgd_parameter_by_parameter(momentum):
    rng = np.random.default_rng(0)
    bare = [fastbp.Linear(3, 4, activation="tanh", rng=1), fastbp.Linear(4, 2, rng=2)]
    model = fastbp.Sequential(fastbp.Linear(3, 4, activation="tanh", rng=1), fastbp.Linear(4, 2, rng=2))
    per_parameter = fastbp.SGD([p for layer in bare for p in layer.parameters()], lr=0.1, momentum=momentum)
    flat = fastbp.SGD(model.parameters()[::-1], lr=0.1, momentum=momentum)  # any order: the model's
    assert per_parameter.flat_params is None and flat.flat_params is model.fused.params
    for _ in range(4):
        grads = [rng.standard_normal(p.value.shape).astype(np.float32) for p in model.parameters()]
        for p, q, g in zip(model.parameters(), per_parameter.params, grads):
            p.grad[...] = g
            q.grad[...] = g
        flat.step()
        per_parameter.step()
    for p, q in zip(model.parameters(), per_parameter.params):
        np.testing.assert_array_equal(p.value, q.value)
