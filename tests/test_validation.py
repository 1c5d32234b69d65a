"""Bad input at the public boundary: clear exceptions naming the argument."""
import numpy as np
import pytest

import fastbp


@pytest.mark.parametrize("kwargs,exc,words", [
    (dict(in_features=0, out_features=3), ValueError, ["in_features", "positive", "0"]),
    (dict(in_features=2.5, out_features=3), TypeError, ["in_features", "float"]),
    (dict(in_features=2, out_features=3, activation="softplus"), ValueError, ["activation", "'relu'", "softplus"]),
    (dict(in_features=2, out_features=3, dtype=np.int32), TypeError, ["dtype", "float32", "int32"]),
])
def test_linear_constructor(kwargs, exc, words):
    with pytest.raises(exc) as info:
        fastbp.Linear(**kwargs)
    for w in words:
        assert w in str(info.value)


def test_forward_shape_and_dtype_errors():
    layer = fastbp.Linear(3, 2)
    with pytest.raises(ValueError, match=r"x must have shape \(\*, 3\), got \(4, 5\)"):
        layer.forward(np.ones((4, 5)))
    with pytest.raises(ValueError, match=r"x must have shape"):
        layer.forward(np.ones(3))
    with pytest.raises(TypeError, match="x must be a real numeric array, got dtype complex128"):
        layer.forward(np.ones((2, 3), complex))
    with pytest.raises(TypeError, match="dtype <U1"):
        layer.forward(np.array([["a", "b", "c"]]))


def test_backward_errors_leave_the_layer_usable():
    layer = fastbp.Linear(3, 2, rng=0)
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.ones((1, 2)))
    layer.forward(np.ones((4, 3)))
    with pytest.raises(ValueError, match=r"grad_out must have shape \(4, 2\), got \(3, 2\)"):
        layer.backward(np.ones((3, 2)))
    assert layer.backward(np.ones((4, 2))).shape == (4, 3)


def test_parameter_assignment_is_validated_and_copied():
    layer = fastbp.Linear(3, 2)
    before = layer.weights.copy()
    with pytest.raises(ValueError, match=r"weights must have shape \(3, 2\), got \(2, 3\)"):
        layer.weights = np.ones((2, 3))
    np.testing.assert_array_equal(layer.weights, before)
    new = np.arange(6.0).reshape(3, 2)
    layer.weights = new
    new[0, 0] = 99
    assert layer.weights[0, 0] == 0 and layer.weights.dtype == np.float32
    with pytest.raises(ValueError, match="bias=False"):
        fastbp.Linear(3, 2, bias=False).bias = np.ones(2)


def test_integer_input_is_cast_and_empty_batch_is_defined():
    layer = fastbp.Linear(3, 2, rng=0)
    np.testing.assert_allclose(layer.forward(np.array([[1, 2, 3]])), layer.forward(np.array([[1.0, 2, 3]])))
    out = layer.forward(np.empty((0, 3)))
    assert out.shape == (0, 2)
    assert layer.backward(np.empty((0, 2))).shape == (0, 3)
    assert not layer.grad_weights.any()


def test_loss_and_optimizer_errors():
    with pytest.raises(ValueError, match="reduction must be one of 'mean', 'sum'; got 'avg'"):
        fastbp.BCELoss(reduction="avg")
    with pytest.raises(ValueError, match=r"target must have shape \(4, 1\), got \(4,\)"):
        fastbp.MSELoss()(np.ones((4, 1)), np.ones(4))
    with pytest.raises(ValueError, match=r"pred must hold probabilities in \[0, 1\]"):
        fastbp.BCELoss()(np.array([1.5]), np.array([1.0]))
    with pytest.raises(ValueError, match=r"class indices must lie in \[0, 2\]"):
        fastbp.CrossEntropyLoss()(np.ones((2, 3)), np.array([0, 3]))
    with pytest.raises(RuntimeError, match="before forward"):
        fastbp.MSELoss().backward()
    layer = fastbp.Linear(2, 2)
    with pytest.raises(ValueError, match="lr must be finite, got nan"):
        fastbp.SGD(layer.parameters(), lr=float("nan"))
    with pytest.raises(TypeError, match=r"params\[0\] must be a fastbp Parameter"):
        fastbp.SGD([np.ones(3)], lr=0.1)


class _Subclass(np.ndarray):
    pass


def test_as_float_array_returns_ready_arrays_as_they_are_and_converts_the_rest():
    from fastbp._validation import as_float_array

    f32 = np.dtype(np.float32)
    ready = np.ones((4, 3), np.float32)
    assert as_float_array(ready, "x", f32, (None, 3)) is ready
    # anything else is converted to a C-ordered float32 copy, equal in value
    for other in (np.ones((4, 3)), np.ones((3, 4), np.float32).T, np.ones((4, 6), np.float32)[:, ::2],
                  np.ones((4, 3), np.int64), np.ones((4, 3), ">f4"), [[1, 1, 1]] * 4,
                  np.ones((4, 3), np.float32).view(_Subclass)):
        out = as_float_array(other, "x", f32, (None, 3))
        assert type(out) is np.ndarray and out.dtype == f32 and out.flags.c_contiguous
        assert out is not other and np.array_equal(out, np.ones((4, 3)))
    # the shape is checked on both paths, with the same message
    for bad in (ready, ready.astype(np.float64)):
        with pytest.raises(ValueError, match=r"x must have shape \(\*, 5\), got \(4, 3\)"):
            as_float_array(bad, "x", f32, (None, 5))
        with pytest.raises(ValueError, match=r"x must have shape \(\*, \*, 3\), got \(4, 3\)"):
            as_float_array(bad, "x", f32, (None, None, 3))
