"""Fuzzing every public call with hypothesis: any dtype, shape, order, strides,
views and zero-size arrays. The accepted outcomes are exactly two: a documented
exception with a message, or a result equal to a numpy reference. A crash
would take the whole test run down.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastbp


DOCUMENTED = (ValueError, TypeError, RuntimeError)


FUZZ = settings(max_examples=150, suppress_health_check=list(HealthCheck))


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
