"""fit's early stopping, validation split, metrics, callbacks that stop,
resuming from initial_epoch, and the classifier outputs predict_proba /
predict_classes."""
import numpy as np
import pytest
import scipy.special
import torch

import fastbp


def _model(out=3, last="identity", dtype=np.float64, fusable=True):
    rng = np.random.default_rng(0)
    if fusable:
        return fastbp.Sequential(fastbp.Linear(2, 8, activation="tanh", dtype=dtype, rng=rng),
                                 fastbp.Linear(8, out, activation=last, dtype=dtype, rng=rng))
    return fastbp.Sequential(fastbp.Linear(2, 8, dtype=dtype, rng=rng), fastbp.Tanh(),
                             fastbp.Linear(8, out, activation=last, dtype=dtype, rng=rng))


def _blobs(n=90, seed=0):
    (x, y), _ = fastbp.gaussian_blobs(n, 1, seed=seed)
    return x, y


@pytest.mark.parametrize("fusable", [True, False])
def test_early_stopping_stops_and_restores_the_best_epoch(fusable):
    x, y = _blobs()
    rng = np.random.default_rng(3)
    x_val, y_val = x + rng.normal(0, 2.0, x.shape), y  # noisy: val_loss turns up while training goes on
    model = _model(fusable=fusable)
    stopper = fastbp.EarlyStopping(monitor="val_loss", patience=3, min_delta=0.0)
    snapshots = []
    history = model.fit(x, y, loss=fastbp.CrossEntropyLoss(), optimizer=fastbp.Adam(model.parameters(), lr=0.1),
                        epochs=200, batch_size=10, validation_data=(x_val, y_val), early_stopping=stopper,
                        progress=False, rng=0,
                        callback=lambda e, h: snapshots.append([p.value.copy() for p in model.parameters()]))
    best = history["best_epoch"]
    assert len(history["loss"]) < 200 and "early stopping" in history["stop_reason"]
    assert best == int(np.argmin(history["val_loss"])) and len(history["loss"]) == best + 1 + 3
    for p, kept in zip(model.parameters(), snapshots[best]):
        np.testing.assert_array_equal(p.value, kept)
    assert model.evaluate(x_val, y_val, fastbp.CrossEntropyLoss())[0] == history["val_loss"][best]


def test_validation_split_holds_out_the_last_rows_like_keras():
    x, y = _blobs()
    one, two = _model(), _model()
    h1 = one.fit(x, y, loss=fastbp.CrossEntropyLoss(), optimizer=fastbp.SGD(one.parameters(), lr=0.1), epochs=3,
                 validation_split=0.2, shuffle=False, progress=False)
    h2 = two.fit(x[:72], y[:72], loss=fastbp.CrossEntropyLoss(), optimizer=fastbp.SGD(two.parameters(), lr=0.1),
                 epochs=3, validation_data=(x[72:], y[72:]), shuffle=False, progress=False)
    assert h1["loss"] == h2["loss"] and h1["val_loss"] == h2["val_loss"]
    with pytest.raises(ValueError, match="validation_data or validation_split, not both"):
        one.fit(x, y, loss=fastbp.CrossEntropyLoss(), optimizer=fastbp.SGD(one.parameters(), lr=0.1),
                validation_split=0.2, validation_data=(x, y))
    with pytest.raises(ValueError, match="leaves 0 to train on"):
        one.fit(x[:1], y[:1], loss=fastbp.CrossEntropyLoss(), optimizer=fastbp.SGD(one.parameters(), lr=0.1),
                validation_split=0.4)


def test_metrics_are_recorded_for_training_and_validation_data():
    from sklearn.metrics import log_loss

    x, y = _blobs()
    model = _model()
    calls = []

    def top_class_rate(y_true, y_pred):
        calls.append(y_pred.shape)
        return float(np.mean(np.argmax(y_pred, axis=1) == y_true))

    history = model.fit(x, y, loss=fastbp.CrossEntropyLoss(), optimizer=fastbp.SGD(model.parameters(), lr=0.1),
                        epochs=2, validation_data=(x[:30], y[:30]), progress=False,
                        metrics={"rate": top_class_rate,
                                 "log_loss": lambda t, p: log_loss(t, scipy.special.softmax(p, axis=1))})
    # the metric on all of x after each epoch; the accuracy as the epoch trained
    assert history["rate"][-1] == float(np.mean(np.argmax(model.forward(x), axis=1) == y))
    assert history["val_rate"] == history["val_accuracy"]
    assert calls == [(90, 3), (30, 3)] * 2
    assert history["log_loss"][-1] == pytest.approx(model.evaluate(x, y, fastbp.CrossEntropyLoss())[0], rel=1e-9)
    with pytest.raises(ValueError, match="'loss' is a name the history uses"):
        model.fit(x, y, loss=fastbp.CrossEntropyLoss(), optimizer=fastbp.SGD(model.parameters(), lr=0.1),
                  metrics={"loss": top_class_rate})


def test_a_callback_stops_training_by_returning_true_or_raising_stop_training():
    x, y = _blobs()
    model = _model()
    opt = fastbp.SGD(model.parameters(), lr=0.1)
    history = model.fit(x, y, loss=fastbp.CrossEntropyLoss(), optimizer=opt, epochs=50, progress=False,
                        callback=lambda epoch, h: epoch == 4)
    assert len(history["loss"]) == 5 and "callback returned True after epoch 4" in history["stop_reason"]

    def stop(epoch, h):
        if h["loss"][-1] < 2.0:
            raise fastbp.StopTraining("good enough")

    history = model.fit(x, y, loss=fastbp.CrossEntropyLoss(), optimizer=opt, epochs=50, progress=False,
                        callback=stop)
    assert history["stop_reason"] == "good enough" and len(history["loss"]) == 1
    fresh = _model()
    assert fresh.fit(x, y, loss=fastbp.CrossEntropyLoss(), optimizer=fastbp.SGD(fresh.parameters(), lr=0.1),
                     epochs=2, progress=False)["stop_reason"] == "ran every epoch up to 2"


@pytest.mark.parametrize("make_optimizer", [lambda p: fastbp.SGD(p, lr=0.1, momentum=0.9),
                                            lambda p: fastbp.Adam(p, lr=0.05)])
def test_fit_resumed_from_initial_epoch_equals_an_uninterrupted_fit(make_optimizer):
    x, y = _blobs()
    whole = _model()
    whole_opt = make_optimizer(whole.parameters())
    schedule = fastbp.StepLR(2, gamma=0.5)
    whole_history = whole.fit(x, y, loss=fastbp.CrossEntropyLoss(), optimizer=whole_opt, epochs=6, batch_size=16,
                              rng=5, progress=False, schedule=schedule)
    part = _model()
    part_opt = make_optimizer(part.parameters())
    part_schedule = fastbp.StepLR(2, gamma=0.5)
    first = part.fit(x, y, loss=fastbp.CrossEntropyLoss(), optimizer=part_opt, epochs=3, batch_size=16, rng=5,
                     progress=False, schedule=part_schedule)
    second = part.fit(x, y, loss=fastbp.CrossEntropyLoss(), optimizer=part_opt, epochs=6, batch_size=16, rng=5,
                      progress=False, schedule=part_schedule, initial_epoch=3)
    assert first["loss"] + second["loss"] == whole_history["loss"] and second["epochs"] == [3, 4, 5]
    np.testing.assert_array_equal(part.fused.params, whole.fused.params)


def test_predict_proba_and_classes_for_logits_sigmoid_and_binary_outputs():
    x, _ = _blobs()
    logits = _model(out=3)
    out = logits.predict(x)
    proba = logits.predict_proba(x)
    np.testing.assert_allclose(proba, torch.softmax(torch.from_numpy(out), dim=1).numpy(), rtol=1e-12)
    np.testing.assert_array_equal(logits.predict_classes(x), np.argmax(out, axis=1))
    binary = _model(out=1)
    p1 = scipy.special.expit(binary.predict(x)[:, 0])
    np.testing.assert_allclose(binary.predict_proba(x), np.stack([1 - p1, p1], axis=1), rtol=1e-12)
    np.testing.assert_array_equal(binary.predict_classes(x), (p1 >= 0.5).astype(np.int64))
    multilabel = _model(out=3, last="sigmoid")
    np.testing.assert_array_equal(multilabel.predict_proba(x), multilabel.predict(x))
    np.testing.assert_array_equal(multilabel.predict_classes(x), (multilabel.predict(x) >= 0.5).astype(np.int64))
    huge = _model(out=2, dtype=np.float32)
    huge.layers[-1].bias = [1e4, -1e4]  # float64-stable: no overflow to NaN
    assert np.all(np.isfinite(huge.predict_proba(x))) and huge.predict_proba(x).dtype == np.float64
