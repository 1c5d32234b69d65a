"""inf and NaN: a non-finite loss or update changes nothing, fit stops with
NonFiniteLossError keeping the last good parameters, values propagate as in numpy."""

import numpy as np
import pytest

import fastbp


@pytest.mark.parametrize("fused", [True, False])
def test_fit_stops_at_the_first_non_finite_batch_keeping_the_last_good_parameters(fused):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 3))
    y = rng.standard_normal((40, 2))
    x[21, 1] = np.nan  # batch 2 (rows 16..23) of the unshuffled first epoch

    def build():
        model = fastbp.Sequential(fastbp.Linear(3, 5, activation="tanh", rng=1), fastbp.Linear(5, 2, rng=2))
        params = model.parameters()
        return model, params
    model, params = build()
    opt = fastbp.SGD(params, lr=0.01)
    assert model.fused.uses(opt)
    with pytest.raises(fastbp.NonFiniteLossError, match=r"became nan at epoch 0, batch 2") as info:
        model.fit(x, y, loss=fastbp.MSELoss(), optimizer=opt, epochs=3, batch_size=8, shuffle=False,
                  progress=False, fused=None if fused else False)
    assert (info.value.epoch, info.value.batch) == (0, 2)

    # the same two good batches, step by step
    reference, ref_params = build()
    opt = fastbp.SGD(ref_params, lr=0.01)
    for lo in (0, 8):
        reference.train_step(x[lo:lo + 8], y[lo:lo + 8], fastbp.MSELoss(), opt)
    for got, want in zip(model.parameters(), reference.parameters()):
        np.testing.assert_array_equal(got.value, want.value)
        assert np.all(np.isfinite(got.value))


def test_fit_stops_when_training_diverges():
    (x, labels), _ = fastbp.gaussian_blobs()
    model = fastbp.Sequential(fastbp.Linear(2, 8, activation="relu", rng=0), fastbp.Linear(8, 3, rng=1))
    with pytest.raises(fastbp.NonFiniteLossError, match="Lower the learning rate") as info:
        model.fit(x * 1e3, fastbp.one_hot(labels) * 1e3, loss=fastbp.MSELoss(),
                  optimizer=fastbp.SGD(model.parameters(), lr=10.0), epochs=50, progress=False)
    assert all(np.all(np.isfinite(p.value)) for p in model.parameters())
    assert len(info.value.history["loss"]) == info.value.epoch


@pytest.mark.parametrize("fused", [True, False])
def test_a_step_on_a_nan_loss_changes_nothing(fused):
    model = fastbp.Sequential(fastbp.Linear(2, 2, rng=0))
    params = model.parameters()
    before = [p.value.copy() for p in params]
    value = model.train_step(np.array([[np.inf, 1.0]]), np.zeros((1, 2)), fastbp.MSELoss(),
                             fastbp.SGD(params, lr=0.1), fused=None if fused else False)
    assert not np.isfinite(value)
    for p, old in zip(params, before):
        np.testing.assert_array_equal(p.value, old)


def test_nan_and_inf_propagate_like_numpy():
    layer = fastbp.Linear(2, 2, activation="relu", rng=0)
    x = np.array([[np.nan, 1.0], [np.inf, 0.0], [1.0, 2.0]], np.float32)
    with np.errstate(invalid="ignore"):
        expected = np.maximum(x @ layer.weights + layer.bias, 0)
    np.testing.assert_array_equal(np.isnan(layer.forward(x)), np.isnan(expected))
