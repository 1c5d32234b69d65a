"""Data: the seed-004 CSV layout, train/test split, mini-batches."""

import numpy as np
import pytest

import fastbp


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
