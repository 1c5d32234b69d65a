"""Linear (the fused dense kernels) against torch autograd."""
import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

import fastbp
from fastbp import kernels
from conftest import DTYPES, LAYOUTS, assert_close, ref, with_layout

TORCH_ACT = {"identity": lambda z: z, "sigmoid": torch.sigmoid, "relu": torch.relu,
             "tanh": torch.tanh}


def torch_dense(x, layer):
    """out, grads of x / W / b for loss = sum(out * grad_out), in float64 torch."""
    tx, tw = ref(x), ref(layer.weights)
    tb = ref(layer.bias) if layer.bias is not None else None
    z = tx @ tw + (tb if tb is not None else 0)
    return tx, tw, tb, TORCH_ACT[layer.activation](z)


@given(batch=st.integers(1, 500), n_in=st.integers(1, 300), n_out=st.integers(1, 300),
       activation=st.sampled_from(["identity", "sigmoid", "relu", "tanh"]),
       bias=st.booleans(), dtype=st.sampled_from(DTYPES), layout=st.sampled_from(LAYOUTS),
       seed=st.integers(0, 2**32 - 1))
def test_linear_matches_torch(batch, n_in, n_out, activation, bias, dtype, layout, seed):
    rng = np.random.default_rng(seed)
    layer = fastbp.Linear(n_in, n_out, activation=activation, bias=bias, dtype=dtype, rng=rng)
    x = with_layout(rng.standard_normal((batch, n_in)).astype(dtype), layout)
    grad_out = with_layout(rng.standard_normal((batch, n_out)).astype(dtype), layout)

    out = layer.forward(x)
    grad_x = layer.backward(grad_out)

    tx, tw, tb, tout = torch_dense(x, layer)
    (tout * torch.tensor(grad_out.astype(np.float64))).sum().backward()
    assert out.dtype == dtype and grad_x.dtype == dtype
    assert_close(out, tout, dtype)
    assert_close(grad_x, tx.grad, dtype)
    assert_close(layer.grad_weights, tw.grad, dtype)
    if bias:
        assert_close(layer.grad_bias, tb.grad, dtype)


@pytest.mark.parametrize("batch,n_in,n_out", [(17, 2, 4), (1, 16, 16), (17, 30, 30), (64, 64, 64)])
@pytest.mark.parametrize("activation", ["identity", "sigmoid", "relu", "tanh"])
def test_direct_loop_and_blas_paths_agree(batch, n_in, n_out, activation):
    """Shapes either side of DIRECT_LOOP_MAX_MACS match torch whichever path runs."""
    rng = np.random.default_rng(n_in * 7 + n_out)
    layer = fastbp.Linear(n_in, n_out, activation=activation, dtype=np.float64, rng=rng)
    x = rng.standard_normal((batch, n_in))
    grad_out = rng.standard_normal((batch, n_out))
    tx, tw, tb, tout = torch_dense(x, layer)
    (tout * torch.tensor(grad_out)).sum().backward()
    assert_close(layer.forward(x), tout)
    assert_close(layer.backward(grad_out), tx.grad)
    assert_close(layer.grad_weights, tw.grad)
    assert_close(layer.grad_bias, tb.grad)
    direct = batch * n_in * n_out <= kernels.DIRECT_LOOP_MAX_MACS
    assert direct == (n_in < 30)  # both paths are exercised


def test_backward_overwrites_gradients_like_the_notebooks():
    layer = fastbp.Linear(3, 2, rng=0)
    x = np.ones((4, 3))
    layer.forward(x)
    layer.backward(np.ones((4, 2)))
    first = layer.grad_weights.copy()
    layer.backward(np.ones((4, 2)))
    np.testing.assert_array_equal(layer.grad_weights, first)


def test_first_layer_can_skip_grad_x_in_the_kernel():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 3)).astype(np.float32)
    w = rng.standard_normal((3, 4)).astype(np.float32)
    out = np.empty((5, 4), np.float32)
    kernels.dense_forward(x, w, np.empty(0, np.float32), kernels.RELU, out)
    sentinel = np.full((5, 3), 7.0, np.float32)
    grad_w = np.empty_like(w)
    kernels.dense_backward(x, w, out, np.ones_like(out), kernels.RELU, False, np.empty_like(out),
                           grad_w, np.empty(0, np.float32), sentinel)
    np.testing.assert_array_equal(sentinel, 7.0)
    np.testing.assert_allclose(grad_w, x.T @ (out > 0), rtol=1e-5)


def test_layer_keeps_user_arrays_intact():
    rng = np.random.default_rng(3)
    layer = fastbp.Linear(4, 3, activation="tanh", rng=rng)
    x = rng.standard_normal((6, 4)).astype(np.float32)
    g = rng.standard_normal((6, 3)).astype(np.float32)
    x0, g0 = x.copy(), g.copy()
    out1 = layer.forward(x)
    keep = out1.copy()
    layer.forward(x * 2)
    layer.backward(g)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(g, g0)
    np.testing.assert_array_equal(out1, keep)
