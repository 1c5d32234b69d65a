"""fastbp.plots writes its PNG files."""
import sys

import numpy as np
import pytest

import fastbp


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
