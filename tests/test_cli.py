"""The command line: `fastbp train`."""
import csv

import numpy as np
import pytest

import fastbp
from fastbp.cli import main as cli


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
