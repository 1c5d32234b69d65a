"""Losses and their gradients against torch.nn.functional."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, strategies as st
from numba import njit

import fastbp
from fastbp import kernels
from fastbp.kernels.activations import exp_nonpositive_float64
from fastbp.kernels.losses import softmax_cross_entropy_forward_backward
from conftest import DTYPES, LAYOUTS, assert_close, ref, with_layout

shapes = st.tuples(st.integers(1, 200), st.integers(1, 12))
common = dict(shape=shapes, dtype=st.sampled_from(DTYPES), layout=st.sampled_from(LAYOUTS),
              seed=st.integers(0, 2**32 - 1))


def check(loss, pred, target, torch_value_fn, dtype):
    value = loss.forward(pred, target)
    grad = loss.backward()
    tp = ref(pred)
    tvalue = torch_value_fn(tp)
    tvalue.backward()
    assert isinstance(value, float)
    assert grad.dtype == dtype and grad.shape == pred.shape
    np.testing.assert_allclose(value, tvalue.item(), rtol=1e-5 if dtype == np.float32 else 1e-12)
    assert_close(grad, tp.grad, dtype)


@given(reduction=st.sampled_from(["mean", "sum", "half_sum"]), **common)
def test_mse(shape, dtype, layout, seed, reduction):
    rng = np.random.default_rng(seed)
    pred = with_layout(rng.standard_normal(shape).astype(dtype), layout)
    target = with_layout(rng.standard_normal(shape).astype(dtype), layout)
    torch_reduction = "sum" if reduction == "half_sum" else reduction
    factor = 0.5 if reduction == "half_sum" else 1.0
    check(fastbp.MSELoss(reduction), pred, target,
          lambda tp: factor * F.mse_loss(tp, torch.tensor(target.astype(np.float64)),
                                         reduction=torch_reduction), dtype)


@given(reduction=st.sampled_from(["mean", "sum"]), **common)
def test_bce(shape, dtype, layout, seed, reduction):
    rng = np.random.default_rng(seed)
    pred = with_layout(rng.uniform(0.01, 0.99, shape).astype(dtype), layout)
    target = with_layout(rng.integers(0, 2, shape).astype(dtype), layout)
    check(fastbp.BCELoss(reduction), pred, target,
          lambda tp: F.binary_cross_entropy(tp, torch.tensor(target.astype(np.float64)),
                                            reduction=reduction), dtype)


@given(reduction=st.sampled_from(["mean", "sum"]), scale=st.sampled_from([1.0, 50.0]), **common)
def test_bce_with_logits(shape, dtype, layout, seed, reduction, scale):
    rng = np.random.default_rng(seed)
    logits = with_layout((scale * rng.standard_normal(shape)).astype(dtype), layout)
    target = with_layout(rng.uniform(0, 1, shape).astype(dtype), layout)
    check(fastbp.BCEWithLogitsLoss(reduction), logits, target,
          lambda tp: F.binary_cross_entropy_with_logits(
              tp, torch.tensor(target.astype(np.float64)), reduction=reduction), dtype)


@given(reduction=st.sampled_from(["mean", "sum"]), scale=st.sampled_from([1.0, 50.0]),
       soft=st.booleans(), **common)
def test_cross_entropy(shape, dtype, layout, seed, reduction, scale, soft):
    rng = np.random.default_rng(seed)
    logits = with_layout((scale * rng.standard_normal(shape)).astype(dtype), layout)
    labels = rng.integers(0, shape[1], shape[0])
    target = with_layout(rng.dirichlet(np.ones(shape[1]), shape[0]).astype(dtype), layout) if soft else labels
    torch_target = torch.tensor(np.asarray(target, dtype=np.float64)) if soft else torch.tensor(labels)
    check(fastbp.CrossEntropyLoss(reduction), logits, target,
          lambda tp: F.cross_entropy(tp, torch_target, reduction=reduction), dtype)


def test_cross_entropy_one_hot_equals_labels():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((9, 4))
    labels = rng.integers(0, 4, 9)
    a, b = fastbp.CrossEntropyLoss(), fastbp.CrossEntropyLoss()
    np.testing.assert_allclose(a(logits, labels), b(logits, fastbp.one_hot(labels, 4)), rtol=1e-14)
    np.testing.assert_allclose(a.backward(), b.backward(), rtol=1e-13, atol=1e-16)


@pytest.mark.parametrize("dtype,big", [(np.float32, 1e4), (np.float64, 1e300)])
def test_losses_finite_at_extreme_inputs(dtype, big):
    logits = np.array([[-big, big, 0.0], [big, -big, 1.0]], dtype)
    with np.errstate(all="raise"):
        for loss, target in [(fastbp.BCEWithLogitsLoss(), np.array([[0, 1, 1], [1, 0, 0]], dtype)),
                             (fastbp.CrossEntropyLoss(), np.array([1, 2]))]:
            value = loss(logits, target)
            grad = loss.backward()
            assert np.isfinite(value) and np.all(np.isfinite(grad))
    probs = np.array([0.0, 1.0, 0.5], dtype)
    bce = fastbp.BCELoss()
    value = bce(probs, np.array([1.0, 0.0, 1.0], dtype))
    expected = F.binary_cross_entropy(torch.tensor(probs), torch.tensor([1.0, 0.0, 1.0], dtype=torch.tensor(probs).dtype))
    np.testing.assert_allclose(value, expected.item(), rtol=1e-6)
    assert np.all(np.isfinite(bce.backward()))


@njit(error_model="numpy")
def _exp_nonpositive(x, out):
    for i in range(x.shape[0]):
        out[i] = exp_nonpositive_float64(x[i])


def test_softmax_exp_is_within_one_ulp_of_exact():
    # softmax's exponentials (kernels/activations.py exp_nonpositive_float64)
    # against exp in x87 extended precision, rounded once; [-1080, 0] covers
    # the subnormal results down to underflow
    rng = np.random.default_rng(0)
    x = np.concatenate([-np.linspace(0, 1080, 1_000_001), -rng.uniform(0, 1, 300_000) ** 3 * 745.2,
                        -rng.uniform(0, 1e-6, 100_000), [0.0, -0.0, -5e-324, -745.1332191019411,
                                                         -745.1332191019412, -708.3964185322641]])
    out = np.empty_like(x)
    _exp_nonpositive(x, out)
    exact = np.exp(x.astype(np.longdouble))
    ulp = np.abs(out.astype(np.longdouble) - exact) / np.spacing(exact.astype(np.float64)).astype(np.longdouble)
    assert ulp.max() <= 1.0
    assert np.mean(out != exact.astype(np.float64)) < 0.1
    assert out[-3] == 5e-324 and out[-2] == 0.0  # the smallest subnormal, then underflow
    special = np.array([np.nan, -1080.0])
    _exp_nonpositive(special, special)
    assert np.isnan(special[0]) and special[1] == 0.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_cross_entropy_in_one_pass_equals_forward_then_backward(dtype):
    rng = np.random.default_rng(3)
    logits = (rng.standard_normal((37, 10)) * 20).astype(dtype)
    logits[3] = [np.inf] + [0.0] * 9
    logits[5, 2] = -np.inf
    logits[7, 4] = np.nan
    labels = rng.integers(0, 10, 37)
    for reduction in range(3):
        grad, grad_fused = np.empty_like(logits), np.empty_like(logits)
        value = kernels.softmax_cross_entropy_forward(logits, labels, reduction)
        kernels.softmax_cross_entropy_backward(logits, labels, reduction, grad)
        fused = softmax_cross_entropy_forward_backward(logits, labels, reduction, grad_fused)
        np.testing.assert_array_equal(grad_fused, grad)
        assert np.isnan(value) and np.isnan(fused)
        finite = np.setdiff1d(np.arange(37), [3, 7])
        sub = np.ascontiguousarray(logits[finite])
        g1, g2 = np.empty_like(sub), np.empty_like(sub)
        kernels.softmax_cross_entropy_backward(sub, labels[finite], reduction, g1)
        assert softmax_cross_entropy_forward_backward(sub, labels[finite], reduction, g2) == \
            kernels.softmax_cross_entropy_forward(sub, labels[finite], reduction)
        np.testing.assert_array_equal(g1, g2)
        assert np.all(np.isfinite(g1))
