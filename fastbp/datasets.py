"""Small data sets and helpers: the seed-004 kind of data, one-hot encoding."""
import numpy as np

from ._validation import check_positive_int

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
