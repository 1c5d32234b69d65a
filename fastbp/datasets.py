"""Data: the seed-004 kind of data and its CSV layout, one-hot encoding,
train/test split and mini-batches."""
import warnings

import numpy as np

from ._validation import check_positive_int, check_rng, numeric_array

# The seed-004 notebook's three clusters sit near (0, 0), (10, 10) and (10, 0).
BLOB_CENTERS = np.array([[0.0, 0.0], [10.0, 10.0], [10.0, 0.0]])


def gaussian_blobs(n_train=210, n_test=90, seed=0, std=1.5):
    """Three 2-D Gaussian clusters, labels 0..2, split into train and test.

    Returns
    -------
    (x_train, y_train), (x_test, y_test) : x float64 (n, 2), y int64 (n,)
    """
    n_train = check_positive_int(n_train, "n_train")
    n_test = check_positive_int(n_test, "n_test")
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    labels = rng.permutation(np.arange(n) % len(BLOB_CENTERS))
    x = BLOB_CENTERS[labels] + rng.normal(scale=std, size=(n, 2))
    return (x[:n_train], labels[:n_train]), (x[n_train:], labels[n_train:])


def one_hot(labels, num_classes=None, dtype=np.float64):
    """(n,) integer labels -> (n, num_classes) rows of 0 and 1."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be a 1-D integer array, got shape {labels.shape} dtype {labels.dtype}")
    if num_classes is None:
        num_classes = int(labels.max()) + 1 if labels.size else 0
    num_classes = check_positive_int(num_classes, "num_classes")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes - 1}], got [{labels.min()}, {labels.max()}]")
    out = np.zeros((labels.shape[0], num_classes), dtype)
    out[np.arange(labels.shape[0]), labels] = 1
    return out


def load_csv(path):
    """Samples from a CSV file in the seed-004 notebook's layout: one sample per
    line, the features then an integer class label, comma-separated, no header.

    Returns
    -------
    x : (n, features) float64
    labels : (n,) int64
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # an empty file: reported below
            table = np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float64)
    except ValueError as exc:
        raise ValueError(f"{path}: expected comma-separated numbers (features..., label) on every "
                         f"line, without a header: {exc}") from None
    if table.shape[0] == 0:
        raise ValueError(f"{path}: no samples")
    if table.shape[1] < 2:
        raise ValueError(f"{path}: expected at least 2 columns (features..., label), got {table.shape[1]}")
    x, raw_labels = table[:, :-1], table[:, -1]
    labels = raw_labels.astype(np.int64)
    bad = np.flatnonzero((labels != raw_labels) | (raw_labels < 0))
    if bad.size:
        raise ValueError(f"{path}: the last column must hold class labels 0, 1, 2, ...; line {bad[0] + 1} "
                         f"has {float(raw_labels[bad[0]])!r}")
    if not np.all(np.isfinite(x)):
        line = int(np.flatnonzero(~np.all(np.isfinite(x), axis=1))[0]) + 1
        raise ValueError(f"{path}: line {line} has a feature that is not a finite number")
    return x, labels


def save_csv(path, x, labels):
    """Write (x, labels) in the layout `load_csv` reads."""
    # numeric_array first: a cast to float64 would keep complex values' real parts only
    x = numeric_array(x, "x").astype(np.float64)
    labels = numeric_array(labels, "labels")
    if x.ndim != 2 or labels.shape != (x.shape[0],) or labels.dtype.kind not in "iu":
        raise ValueError(f"x must be (n, features) and labels (n,) integers, got {x.shape} and "
                         f"{labels.shape} {labels.dtype}")
    table = np.column_stack([x, labels])
    np.savetxt(path, table, delimiter=",", fmt=["%.17g"] * x.shape[1] + ["%d"])


def train_test_split(x, y, test_fraction=0.3, rng=None):
    """Shuffle and split into (x_train, y_train), (x_test, y_test); the test part
    has round(n * test_fraction) samples, at least one of each part."""
    x, y = np.asarray(x), np.asarray(y)
    if y.shape[:1] != x.shape[:1]:
        raise ValueError(f"y must have {x.shape[0]} rows like x, got shape {y.shape}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction!r}")
    n = x.shape[0]
    n_test = int(round(n * test_fraction))
    if not 0 < n_test < n:
        raise ValueError(f"test_fraction={test_fraction} of {n} samples leaves an empty part")
    order = check_rng(rng).permutation(n)
    test, train = order[:n_test], order[n_test:]
    return (x[train], y[train]), (x[test], y[test])


def batches(x, y, batch_size, *, shuffle=True, rng=None):
    """Mini-batches (x_batch, y_batch) covering every sample once.

    Without shuffling the batches are views; with it each batch is gathered on
    its own, so an epoch never copies the whole data set.
    """
    x, y = np.asarray(x), np.asarray(y)
    if y.shape[:1] != x.shape[:1]:
        raise ValueError(f"y must have {x.shape[0]} rows like x, got shape {y.shape}")
    batch_size = check_positive_int(batch_size, "batch_size")
    n = x.shape[0]
    if not shuffle:
        for lo in range(0, n, batch_size):
            yield x[lo:lo + batch_size], y[lo:lo + batch_size]
        return
    order = check_rng(rng).permutation(n)
    for lo in range(0, n, batch_size):
        idx = order[lo:lo + batch_size]
        yield x[idx], y[idx]
