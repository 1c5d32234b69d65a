"""Stand-alone activation layers against torch."""
import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

import fastbp
from conftest import DTYPES, LAYOUTS, assert_close, ref, with_layout

LAYERS = {"relu": (fastbp.ReLU, torch.relu), "sigmoid": (fastbp.Sigmoid, torch.sigmoid),
          "tanh": (fastbp.Tanh, torch.tanh)}


@given(name=st.sampled_from(sorted(LAYERS)), rows=st.integers(0, 60), cols=st.integers(1, 60),
       dtype=st.sampled_from(DTYPES), layout=st.sampled_from(LAYOUTS), scale=st.sampled_from([1.0, 30.0]),
       seed=st.integers(0, 2**32 - 1))
def test_activation_layer_matches_torch(name, rows, cols, dtype, layout, scale, seed):
    rng = np.random.default_rng(seed)
    layer_cls, torch_fn = LAYERS[name]
    x = with_layout((scale * rng.standard_normal((rows, cols))).astype(dtype), layout)
    g = with_layout(rng.standard_normal((rows, cols)).astype(dtype), layout)
    layer = layer_cls()
    out = layer.forward(x)
    grad_x = layer.backward(g)
    tx = ref(x)
    tout = torch_fn(tx)
    (tout * torch.tensor(g.astype(np.float64))).sum().backward()
    assert out.dtype == dtype and grad_x.dtype == dtype
    assert_close(out, tout, dtype)
    assert_close(grad_x, tx.grad, dtype)


@pytest.mark.parametrize("dtype,big", [(np.float32, 1e4), (np.float32, 3e38), (np.float64, 1e300)])
def test_activations_are_finite_at_extreme_inputs(dtype, big):
    x = np.array([-big, -1.0, 0.0, 1.0, big], dtype)
    with np.errstate(all="raise"):
        for name, (layer_cls, torch_fn) in LAYERS.items():
            out = layer_cls().forward(x)
            assert np.all(np.isfinite(out)), name
            np.testing.assert_allclose(out, torch_fn(torch.tensor(x)).numpy(), rtol=1e-6)


def test_nan_propagates_like_numpy():
    x = np.array([np.nan, 1.0], np.float32)
    for layer_cls in (fastbp.ReLU, fastbp.Sigmoid, fastbp.Tanh):
        out = layer_cls().forward(x)
        assert np.isnan(out[0]) and np.isfinite(out[1])


def test_integer_input_is_computed_in_float64():
    out = fastbp.Sigmoid().forward(np.array([[0, 1]]))
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, [[0.5, 1 / (1 + np.exp(-1))]])
