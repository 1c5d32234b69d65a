"""Sequential.fit: the seed-004 job, the epoch loss, the progress bar, shuffling."""
import subprocess
import sys

import numpy as np
import pytest

import fastbp


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
