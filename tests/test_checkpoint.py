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
