"""Checkpoints: round trips, atomic saves, refusal of damaged files."""
import os
import zipfile

import numpy as np
import pytest

import fastbp


def _trained_model():
    rng = np.random.default_rng(0)
    model = fastbp.Sequential(fastbp.Linear(2, 6, activation="tanh", rng=rng),
                              fastbp.Linear(6, 3, activation="identity", bias=False, rng=rng))
    (x, labels), _ = fastbp.gaussian_blobs(n_train=50, n_test=3)
    model.fit(x, labels, loss=fastbp.CrossEntropyLoss(), optimizer=fastbp.SGD(model.parameters(), lr=0.01),
              epochs=3, progress=False)
    return model, x


def test_checkpoint_round_trip_reproduces_predictions_bit_for_bit(tmp_path):
    model, x = _trained_model()
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = fastbp.load(path)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert [type(a) for a in loaded] == [type(a) for a in model]
    assert loaded[1].bias is None and loaded[0].activation == "tanh"
    assert loaded.fused is not None  # trains as fast as the original
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o666 & ~_umask())
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]  # no temporary file left


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_checkpoint_of_conv_scale_and_activation_layers(tmp_path):
    rng = np.random.default_rng(0)
    model = fastbp.Sequential(fastbp.Conv2D(1, 2, 2, stride=(1, 2), padding=1, activation="relu", rng=rng),
                              fastbp.Tanh(), fastbp.Flatten(), fastbp.Scale(2 * 4 * 3), fastbp.Sigmoid())
    model[3].weights = rng.standard_normal(24)
    x = rng.standard_normal((3, 1, 3, 4)).astype(np.float32)
    model.save(tmp_path / "m.npz")
    np.testing.assert_array_equal(fastbp.load(tmp_path / "m.npz").predict(x), model.predict(x))


def test_an_interrupted_save_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    model, x = _trained_model()
    path = tmp_path / "model.npz"
    model.save(path)
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(np, "savez", fail)
    with pytest.raises(KeyboardInterrupt):
        model.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]


def _rewrite(path, edit):
    """Rewrite the .npz at path with edit(dict of arrays) applied."""
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    edit(arrays)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def test_loading_a_truncated_foreign_or_tampered_file_raises_clearly(tmp_path):
    model, _ = _trained_model()
    good = tmp_path / "good.npz"
    model.save(good)
    data = good.read_bytes()

    cases = {}
    (tmp_path / "truncated.npz").write_bytes(data[:len(data) // 2])
    cases["truncated.npz"] = "not a valid fastbp checkpoint"
    (tmp_path / "text.npz").write_text("hello")
    cases["text.npz"] = "not a valid fastbp checkpoint"
    np.savez(tmp_path / "foreign.npz", a=np.zeros(3))
    cases["foreign.npz"] = "no fastbp.json"
    for name, edit, match in [
        ("values.npz", lambda a: a.__setitem__("layers.0.weights", a["layers.0.weights"] + 1), "checksum"),
        ("shape.npz", lambda a: a.__setitem__("layers.0.weights", np.zeros((3, 6), np.float32)), "architecture needs"),
        ("missing.npz", lambda a: a.pop("layers.0.bias"), "missing array layers.0.bias"),
        ("extra.npz", lambda a: a.__setitem__("evil", np.zeros(1)), "unexpected arrays"),
        ("kind.npz", lambda a: a.__setitem__("fastbp.json", np.array(str(a["fastbp.json"]).replace(
            '"Linear"', '"Lambda"', 1))), "unknown layer type 'Lambda'"),
        ("json.npz", lambda a: a.__setitem__("fastbp.json", np.array("{not json")), "not a valid"),
        # an object array is stored pickled: loading must refuse it, not unpickle it
        ("pickle.npz", lambda a: a.__setitem__("layers.0.weights", np.array([{"x": 1}], dtype=object)),
         "not a valid"),
    ]:
        (tmp_path / name).write_bytes(data)
        _rewrite(tmp_path / name, edit)
        cases[name] = match
    for name, match in cases.items():
        with pytest.raises(ValueError, match=match):
            fastbp.load(tmp_path / name)
    with pytest.raises(FileNotFoundError):
        fastbp.load(tmp_path / "absent.npz")
    assert zipfile.is_zipfile(good)


# -- resuming training -----------------------------------------------------------

def _resumable_model():
    rng = np.random.default_rng(0)
    return fastbp.Sequential(fastbp.Linear(2, 8, activation="tanh", rng=rng), fastbp.Linear(8, 3, rng=rng))


RESUMABLE = {
    "sgd": (lambda p: fastbp.SGD(p, lr=0.1, momentum=0.9, nesterov=True), lambda: fastbp.StepLR(2, gamma=0.5)),
    "adam": (lambda p: fastbp.AdamW(p, lr=0.05, max_grad_norm=1.0),
             lambda: fastbp.ReduceLROnPlateau(monitor="loss", patience=0, factor=0.5)),
    "cosine": (lambda p: fastbp.Adam(p, lr=0.05), lambda: fastbp.CosineAnnealingLR(12, warmup=2, per_step=True)),
}


@pytest.mark.parametrize("name", sorted(RESUMABLE))
def test_a_fit_interrupted_saved_and_resumed_equals_an_uninterrupted_one_bit_for_bit(tmp_path, name):
    make_optimizer, make_schedule = RESUMABLE[name]
    (x, y), _ = fastbp.gaussian_blobs(90, 1, seed=0)
    fit = dict(loss=fastbp.CrossEntropyLoss(), epochs=6, batch_size=16, rng=5, progress=False, l2=1e-3)
    whole = _resumable_model()
    whole_history = whole.fit(x, y, optimizer=make_optimizer(whole.parameters()), schedule=make_schedule(), **fit)

    model = _resumable_model()
    optimizer, schedule = make_optimizer(model.parameters()), make_schedule()
    path = tmp_path / "run.npz"

    def save_then_stop(epoch, history):
        # a checkpoint after every epoch, then Ctrl-C after the third
        model.save(path, optimizer=optimizer, schedule=schedule, epoch=epoch + 1)
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, optimizer=optimizer, schedule=schedule, callback=save_then_stop, **fit)
    state = fastbp.load_training(path)
    assert state.epoch == 3 and state.optimizer.step_count == optimizer.step_count == 18
    assert type(state.optimizer) is type(optimizer) and state.optimizer.config() == optimizer.config()
    rest = state.model.fit(x, y, optimizer=state.optimizer, schedule=state.schedule, initial_epoch=state.epoch,
                           **fit)
    assert rest["epochs"] == [3, 4, 5] and rest["loss"] == whole_history["loss"][3:]
    assert rest["lr"] == whole_history["lr"][3:]
    np.testing.assert_array_equal(state.model.fused.params, whole.fused.params)


def test_training_entries_are_checked_like_the_rest(tmp_path):
    model = _resumable_model()
    optimizer = fastbp.SGD(model.parameters(), lr=0.1, momentum=0.9)
    (x, y), _ = fastbp.gaussian_blobs(30, 1, seed=0)
    model.fit(x, y, loss=fastbp.CrossEntropyLoss(), optimizer=optimizer, epochs=2, progress=False)
    good = tmp_path / "good.npz"
    model.save(good, optimizer=optimizer, epoch=2)
    assert fastbp.load_training(good).schedule is None
    np.testing.assert_array_equal(fastbp.load_training(good).optimizer.flat_velocity, optimizer.flat_velocity)
    for name, edit, match in [
        ("velocity.npz", lambda a: a.__setitem__("optimizer.0.1", a["optimizer.0.1"] + 1), "checksum"),
        ("lr.npz", lambda a: a.__setitem__("fastbp.json", np.array(str(a["fastbp.json"]).replace(
            '"lr": 0.1', '"lr": 0.2'))), "checksum"),
        ("size.npz", lambda a: a.__setitem__("optimizer.0.0", np.zeros(3, np.float32)), "architecture needs"),
        ("lost.npz", lambda a: a.pop("optimizer.0.3"), "missing array optimizer.0.3"),
    ]:
        path = tmp_path / name
        path.write_bytes(good.read_bytes())
        _rewrite(path, edit)
        with pytest.raises(ValueError, match=match):
            fastbp.load_training(path)
    other = _resumable_model()
    with pytest.raises(ValueError, match="updates parameters that are not this model's"):
        model.save(tmp_path / "x.npz", optimizer=fastbp.SGD(other.parameters(), lr=0.1))
    assert fastbp.load_training(tmp_path / "good.npz").model.predict(x).shape == (30, 3)
