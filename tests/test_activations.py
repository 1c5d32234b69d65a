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


def _ulp_distance(a, b):
    """|a - b| in units in the last place, for float32 arrays of equal sign layout."""
    def ordered(v):
        bits = v.view(np.int32).astype(np.int64)
        return np.where(bits < 0, -(bits & 0x7FFFFFFF), bits)
    return np.abs(ordered(a) - ordered(b))


@pytest.mark.parametrize("name, exact, max_ulp, wrong_last_bit", [
    ("sigmoid", lambda x: 1 / (1 + np.exp(-x)), 2, 0.16),
    ("tanh", np.tanh, 1, 0.10)])
def test_float32_sigmoid_and_tanh_are_within_a_few_ulp_of_exact(name, exact, max_ulp, wrong_last_bit):
    # the float32 versions use their own vectorisable exp (kernels/activations.py);
    # the reference is the float64 result rounded once
    rng = np.random.default_rng(0)
    x = np.concatenate([np.linspace(-110, 110, 1_000_001), rng.standard_normal(200_000) * 3,
                        rng.standard_normal(100_000) * 1e-4, [0.0, -0.0, 1e-30, -1e-30, 1e-5, -1e-5]]
                       ).astype(np.float32)
    layer = {"sigmoid": fastbp.Sigmoid, "tanh": fastbp.Tanh}[name]()
    out = layer.forward(x)
    with np.errstate(over="ignore"):
        expected = exact(x.astype(np.float64)).astype(np.float32)
        numpy_float32 = exact(x)
    ulp = _ulp_distance(out, expected)
    assert ulp.max() <= max_ulp
    assert np.mean(ulp != 0) < wrong_last_bit
    # never further off than numpy's or torch's own float32 on the same points
    torch_float32 = getattr(torch, name)(torch.from_numpy(x)).numpy()
    for reference in (numpy_float32, torch_float32):
        assert ulp.max() <= _ulp_distance(reference, expected).max()
    special_x = np.array([np.inf, -np.inf, np.nan, -0.0], np.float32)
    special = layer.forward(special_x)
    np.testing.assert_array_equal(special, exact(special_x.astype(np.float64)).astype(np.float32))
    assert np.signbit(special[3]) == np.signbit(exact(-0.0))
