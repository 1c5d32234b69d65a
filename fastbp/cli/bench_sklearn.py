"""The `sklearn` table of `python -m fastbp bench` and asv's SklearnFit: a
whole `fit` of scikit-learn's MLPClassifier against fastbp.sklearn's, the
same network, data, batch, learning rate and epochs (plain SGD, softmax or
logistic output), and each one's accuracy on held-out rows."""
import time

import numpy as np

# name -> (data, hidden_layer_sizes, activation, batch_size, epochs, learning_rate_init)
SKLEARN_CASES = {
    "2-5-3 b8, 100 epochs (blobs)": ("blobs", (5,), "logistic", 8, 100, 0.1),
    "64-128-10 b32, 30 epochs (digits)": ("digits", (128,), "relu", 32, 30, 0.1),
    "784-256-256-10 b256, 5 epochs": ("wide", (256, 256), "relu", 256, 5, 0.05),
}
IMPLS = ("sklearn", "fastbp", "fastbp float32")


def sklearn_data(name):
    """(x_train, y_train, x_test, y_test) for a case's data: fastbp's
    three-cluster blobs (210 + 90 rows), scikit-learn's digits scaled to
    [0, 1] (1,500 + 297 rows), or a 784-feature, 10-class problem from
    make_classification (5,000 + 1,000 rows)."""
    from sklearn.datasets import load_digits, make_classification

    if name == "blobs":
        from ..datasets import gaussian_blobs
        (x, y), (xt, yt) = gaussian_blobs()
        return x.astype(np.float64), y, xt.astype(np.float64), yt
    if name == "digits":
        x, y = load_digits(return_X_y=True)
        x = x / 16.0
        return x[:1500], y[:1500], x[1500:], y[1500:]
    x, y = make_classification(6000, 784, n_informative=64, n_classes=10, random_state=0)
    return x[:5000], y[:5000], x[5000:], y[5000:]


def estimator(impl, case):
    """The unfitted classifier for `impl` and a case of SKLEARN_CASES."""
    import sklearn.neural_network

    from .. import sklearn as fastbp_sklearn

    _, hidden, activation, batch, epochs, lr = SKLEARN_CASES[case]
    # plain SGD for every epoch: no momentum, no early stop on a flat loss
    params = dict(hidden_layer_sizes=hidden, activation=activation, solver="sgd", batch_size=batch,
                  max_iter=epochs, learning_rate_init=lr, momentum=0.0, n_iter_no_change=np.inf, random_state=0)
    if impl == "sklearn":
        return sklearn.neural_network.MLPClassifier(**params)
    return fastbp_sklearn.MLPClassifier(**params, dtype="float32" if impl == "fastbp float32" else None)


def time_sklearn(case, rounds=3):
    """{impl: (median seconds of a whole fit, test accuracy)}, the rounds
    interleaved so that a slow spell of the machine hits every impl."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    x, y, xt, yt = sklearn_data(SKLEARN_CASES[case][0])
    times = {impl: [] for impl in IMPLS}
    accuracy = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for impl in IMPLS[1:]:  # compiled before timing, on rows that may be fewer than a batch
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                estimator(impl, case).fit(x[:64], y[:64])
        for _ in range(rounds):
            for impl in IMPLS:
                model = estimator(impl, case)
                start = time.perf_counter()
                model.fit(x, y)
                times[impl].append(time.perf_counter() - start)
                accuracy[impl] = model.score(xt, yt)
    return {impl: (float(np.median(times[impl])), accuracy[impl]) for impl in IMPLS}
