"""Issue 5's workflow: data helpers, fit's history and progress bar, plots,
checkpoints, torch interop and the `train` command."""
import csv
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

import fastbp
from fastbp.cli import main as cli
from conftest import assert_close


# -- data -----------------------------------------------------------------------
def test_csv_round_trip_in_the_seed004_layout(tmp_path):
    (x, labels), _ = fastbp.gaussian_blobs(n_train=20, n_test=5, seed=1)
    path = tmp_path / "train.csv"
    fastbp.save_csv(path, x, labels)
    first = path.read_text().splitlines()[0].split(",")
    assert len(first) == 3 and first[2] in "012"  # x, y, label; no header
    x2, labels2 = fastbp.load_csv(path)
    np.testing.assert_array_equal(x2, x)
    np.testing.assert_array_equal(labels2, labels)
    assert labels2.dtype == np.int64


@pytest.mark.parametrize("text, match", [
    ("x,y,label\n1,2,0\n", "comma-separated numbers"),
    ("1,2,0.5\n", "line 1 has 0.5$"),
    ("1,2,-1\n", "class labels"),
    ("1,nan,0\n", "line 1 has a feature that is not a finite number"),
    ("1\n2\n", "at least 2 columns"),
    ("", "no samples"),
])
def test_load_csv_refuses_what_it_cannot_read(tmp_path, text, match):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        fastbp.load_csv(path)


def test_train_test_split_partitions_the_samples():
    x = np.arange(20.0).reshape(10, 2)
    y = np.arange(10)
    (x_tr, y_tr), (x_te, y_te) = fastbp.train_test_split(x, y, 0.3, rng=0)
    assert len(y_te) == 3 and len(y_tr) == 7
    assert sorted(np.concatenate([y_tr, y_te])) == list(range(10))
    np.testing.assert_array_equal(x_tr[:, 0], 2 * y_tr)  # rows stay paired
    with pytest.raises(ValueError, match="test_fraction"):
        fastbp.train_test_split(x, y, 1.0)


def test_batches_cover_every_sample_once_and_views_without_shuffle():
    x = np.arange(22.0).reshape(11, 2)
    y = np.arange(11)
    plain = list(fastbp.batches(x, y, 4, shuffle=False))
    assert [len(b[1]) for b in plain] == [4, 4, 3]
    assert all(np.shares_memory(bx, x) for bx, _ in plain)
    shuffled = list(fastbp.batches(x, y, 4, rng=0))
    seen = np.concatenate([by for _, by in shuffled])
    assert sorted(seen) == list(range(11)) and list(seen) != list(range(11))
    for bx, by in shuffled:
        np.testing.assert_array_equal(bx[:, 0], 2 * by)


# -- fit ------------------------------------------------------------------------
def test_seed004_setup_reaches_95_percent_test_accuracy():
    (x, labels), (x_test, labels_test) = fastbp.gaussian_blobs(n_train=210, n_test=90, seed=0)
    model = fastbp.Sequential(fastbp.Linear(2, 5, activation="sigmoid", rng=0),
                              fastbp.Linear(5, 3, activation="sigmoid", rng=1))
    history = model.fit(x, fastbp.one_hot(labels, 3), loss=fastbp.MSELoss(),
                        optimizer=fastbp.SGD(model.parameters(), lr=0.1), epochs=400, batch_size=8,
                        progress=False, rng=0)
    predicted = np.argmax(model.predict(x_test), axis=1)
    assert np.mean(predicted == labels_test) >= 0.95
    assert history["accuracy"][-1] >= 0.95


@pytest.mark.parametrize("reduction", ["mean", "sum", "half_sum"])
@pytest.mark.parametrize("fused", [True, False])
def test_fit_epoch_loss_is_the_batches_combined_in_the_reduction(reduction, fused):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((10, 3)).astype(np.float32)
    y = rng.standard_normal((10, 2)).astype(np.float32)
    model = fastbp.Sequential(fastbp.Linear(3, 2, rng=0))
    history = model.fit(x, y, loss=fastbp.MSELoss(reduction), optimizer=fastbp.SGD(model.parameters(), lr=0.0),
                        epochs=1, batch_size=4, shuffle=False, progress=False, fused=fused)
    # lr 0: the parameters never move, so the epoch loss is the loss of all the data
    assert history["loss"][0] == pytest.approx(fastbp.MSELoss(reduction)(model.predict(x), y), rel=1e-6)


def test_progress_bar_is_quiet_when_not_a_terminal_and_when_asked(capfd):
    (x, labels), _ = fastbp.gaussian_blobs(n_train=30, n_test=3)
    model = fastbp.Sequential(fastbp.Linear(2, 3, rng=0))
    for progress in (True, False):
        model.fit(x, labels, loss=fastbp.CrossEntropyLoss(), optimizer=fastbp.SGD(model.parameters(), lr=0.01),
                  epochs=3, progress=progress)
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""


def test_progress_bar_draws_on_a_terminal():
    # a pseudo-terminal on stderr: the bar appears on a run longer than its delay
    code = """
import sys, time, numpy as np, fastbp
class Tty:
    def __init__(self): self.parts = []
    def isatty(self): return True
    def write(self, s): self.parts.append(s)
    def flush(self): pass
tty = Tty()
sys.stderr = tty
(x, y), _ = fastbp.gaussian_blobs(n_train=30, n_test=3)
m = fastbp.Sequential(fastbp.Linear(2, 3, rng=0))
m.fit(x, y, loss=fastbp.CrossEntropyLoss(), optimizer=fastbp.SGD(m.parameters(), lr=0.01), epochs=40,
      callback=lambda e, h: time.sleep(0.02))
sys.__stdout__.write("epoch" if any("epoch" in p for p in tty.parts) else "nothing")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "epoch"


# -- plots ----------------------------------------------------------------------
def test_plots_are_written_as_png_files(tmp_path):
    (x, labels), (x_test, labels_test) = fastbp.gaussian_blobs(n_train=60, n_test=30)
    model = fastbp.Sequential(fastbp.Linear(2, 3, rng=0))
    history = model.fit(x, labels, loss=fastbp.CrossEntropyLoss(), optimizer=fastbp.SGD(model.parameters(), lr=0.01),
                        epochs=5, validation_data=(x_test, labels_test), progress=False)
    from fastbp.plots import plot_decision_regions, plot_history

    plot_history(history, tmp_path / "history.png")
    plot_decision_regions(model, x, labels, tmp_path / "regions.png")
    import matplotlib.image

    for name, (height, width) in [("history.png", (480, 1000)), ("regions.png", (480, 640))]:
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert matplotlib.image.imread(tmp_path / name).shape[:2] == (height, width)
    with pytest.raises(ValueError, match=r"x must have shape \(n, 2\)"):
        plot_decision_regions(model, np.zeros((3, 3)), np.zeros(3, int), tmp_path / "bad.png")
    assert "matplotlib.pyplot" not in sys.modules  # drawn without pyplot's GUI machinery


# -- checkpoints ----------------------------------------------------------------
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


# -- torch interop --------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_from_torch_and_back_give_the_same_outputs(dtype):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8, bias=False),
                              torch.nn.Tanh(), torch.nn.Sigmoid(), torch.nn.Linear(8, 3),
                              torch.nn.Identity()).to(dtype)
    model = fastbp.from_torch(net)
    assert [type(layer).__name__ for layer in model] == ["Linear", "Linear", "Sigmoid", "Linear"]
    assert model.fused is None  # a standalone Sigmoid layer in between
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32 if dtype == torch.float32 else np.float64)
    with torch.no_grad():
        expected = net(torch.from_numpy(x))
    assert_close(model.predict(x), expected)
    back = model.to_torch()
    with torch.no_grad():
        assert_close(back(torch.from_numpy(x)).numpy(), expected)


def test_from_torch_conv_net_and_refusals():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3, stride=2, padding=1), torch.nn.ReLU(),
                              torch.nn.Flatten(), torch.nn.Linear(3 * 3 * 3, 2))
    model = fastbp.from_torch(net)
    x = np.random.default_rng(0).standard_normal((2, 1, 5, 5)).astype(np.float32)
    with torch.no_grad():
        assert_close(model.predict(x), net(torch.from_numpy(x)))
        assert_close(model.to_torch()(torch.from_numpy(x)).numpy(), net(torch.from_numpy(x)))
    with pytest.raises(TypeError, match="module\\[0\\] is a LSTM"):
        fastbp.from_torch(torch.nn.LSTM(2, 2))
    with pytest.raises(ValueError, match="dilation"):
        fastbp.from_torch(torch.nn.Conv2d(1, 1, 3, dilation=2))
    with pytest.raises(TypeError, match="float32 or float64"):
        fastbp.from_torch(torch.nn.Linear(2, 2).to(torch.float16))
    with pytest.raises(TypeError, match="Scale has no torch module"):
        fastbp.Sequential(fastbp.Scale(2)).to_torch()


def test_from_torch_single_linear_trains_like_torch():
    torch.manual_seed(0)
    linear = torch.nn.Linear(3, 2)
    model = fastbp.from_torch(linear)
    np.testing.assert_array_equal(model[0].weights, linear.weight.detach().numpy().T)
    assert model.fused is not None


# -- the train command ------------------------------------------------------------
def test_train_command_writes_history_plots_and_checkpoint(tmp_path, capsys):
    (x, labels), (x_test, labels_test) = fastbp.gaussian_blobs()
    fastbp.save_csv(tmp_path / "train.csv", x, labels)
    fastbp.save_csv(tmp_path / "test.csv", x_test, labels_test)
    out = tmp_path / "run"
    assert cli(["train", "--csv", str(tmp_path / "train.csv"), "--test-csv", str(tmp_path / "test.csv"),
                "--epochs", "60", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["history.csv", "history.png", "model.npz", "regions.png"]
    with open(out / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 60 and float(rows[-1]["loss"]) < float(rows[0]["loss"])
    model = fastbp.load(out / "model.npz")
    accuracy = np.mean(np.argmax(model.predict(x_test.astype(np.float32)), axis=1) == labels_test)
    assert accuracy == pytest.approx(float(rows[-1]["test_accuracy"]))
    assert "test accuracy" in capsys.readouterr().out


def test_train_command_reports_bad_input(tmp_path, capsys):
    (tmp_path / "bad.csv").write_text("a,b,c\n")
    assert cli(["train", "--csv", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "o")]) == 2
    assert "comma-separated numbers" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli(["train", "--csv", "x.csv", "--hidden", "a,b"])


def test_fit_shuffles_reproducibly_with_a_seed_and_differently_without():
    (x, labels), _ = fastbp.gaussian_blobs(n_train=60, n_test=3)

    def trained(rng):
        model = fastbp.Sequential(fastbp.Linear(2, 3, rng=0))
        model.fit(x, labels, loss=fastbp.CrossEntropyLoss(), optimizer=fastbp.SGD(model.parameters(), lr=0.1),
                  epochs=2, batch_size=7, progress=False, rng=rng)
        return model.layers[0].weights.copy()
    np.testing.assert_array_equal(trained(3), trained(3))
    assert not np.array_equal(trained(3), trained(4))
    # rng=None: one generator per process, whose stream moves on between fits
    assert not np.array_equal(trained(None), trained(None))
    # a bad rng is refused even when there is nothing to shuffle
    model = fastbp.Sequential(fastbp.Linear(2, 3))
    with pytest.raises(TypeError, match="rng must be None, an int seed or a np.random.Generator, got str"):
        model.fit(x, labels, loss=fastbp.CrossEntropyLoss(), optimizer=fastbp.SGD(model.parameters(), lr=0.1),
                  shuffle=False, rng="not a seed", progress=False)
