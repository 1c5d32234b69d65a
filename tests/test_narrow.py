"""kernels/narrow.py, the batch-inner layout of networks no wider than 8,
kernel by kernel: every width it specialises, against torch autograd."""
import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

from fastbp.kernels import IDENTITY, RELU, SIGMOID, TANH, narrow
from conftest import DTYPES, assert_close, ref

ACTS = {IDENTITY: lambda z: z, SIGMOID: torch.sigmoid, RELU: torch.relu, TANH: torch.tanh}
WIDTHS = st.integers(1, narrow.NARROW_MAX_WIDTH + 1)  # + 1: the branch without a constant width


@given(batch=st.integers(1, 70), n_cols=WIDTHS, dtype=st.sampled_from(DTYPES),
       seed=st.integers(0, 2**32 - 1))
def test_to_batch_inner_is_the_transpose(batch, n_cols, dtype, seed):
    src = np.random.default_rng(seed).standard_normal((batch, n_cols)).astype(dtype)
    dst = np.full((n_cols, batch), np.nan, dtype)
    narrow.to_batch_inner(src, dst)
    assert np.array_equal(dst, src.T)


@given(batch=st.integers(1, 70), n_in=WIDTHS, n_out=WIDTHS, act=st.sampled_from(list(ACTS)),
       bias=st.booleans(), dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**32 - 1))
def test_narrow_forward_and_backward_match_torch(batch, n_in, n_out, act, bias, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, n_in)).astype(dtype)
    weights = rng.standard_normal((n_in, n_out)).astype(dtype)
    b = rng.standard_normal(n_out if bias else 0).astype(dtype)
    grad_out = rng.standard_normal((batch, n_out)).astype(dtype)

    out_t = np.full((n_out, batch), np.nan, dtype)
    narrow.narrow_forward(np.ascontiguousarray(x.T), weights, b, act, out_t)
    delta_t = np.empty_like(out_t)
    grad_weights = np.full_like(weights, np.nan)
    grad_bias = np.full_like(b, np.nan)
    grad_in_t = np.full((n_in, batch), np.nan, dtype)
    narrow.narrow_backward(np.ascontiguousarray(x.T), weights, out_t, np.ascontiguousarray(grad_out.T),
                           act, True, delta_t, grad_weights, grad_bias, grad_in_t)

    tx, tw, tb = ref(x), ref(weights), ref(b)
    tout = ACTS[act](tx @ tw + (tb if bias else 0))
    (tout * torch.tensor(grad_out.astype(np.float64))).sum().backward()
    assert_close(out_t.T, tout, dtype)
    assert_close(grad_weights, tw.grad, dtype)
    assert_close(grad_in_t.T, tx.grad, dtype)
    if bias:
        assert_close(grad_bias, tb.grad, dtype)


@pytest.mark.parametrize("act", [SIGMOID, TANH, RELU])
def test_narrow_forward_equals_the_direct_loops_bit_for_bit(act):
    # Same summation order (k in order, bias first) as kernels/dense.py's
    # direct loops, which the layer-by-layer path runs at these sizes.
    from fastbp.kernels import dense

    rng = np.random.default_rng(5)
    for n_in in range(1, narrow.NARROW_MAX_WIDTH + 1):
        x = rng.standard_normal((4, n_in)).astype(np.float32)
        weights = rng.standard_normal((n_in, 8)).astype(np.float32)
        b = rng.standard_normal(8).astype(np.float32)
        assert x.size * 8 <= dense.DIRECT_LOOP_MAX_MACS
        expected = np.empty((4, 8), np.float32)
        dense.dense_forward(x, weights, b, act, expected)
        out_t = np.empty((8, 4), np.float32)
        narrow.narrow_forward(np.ascontiguousarray(x.T), weights, b, act, out_t)
        assert np.array_equal(out_t.T, expected), n_in
