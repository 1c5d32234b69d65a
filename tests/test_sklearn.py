"""fastbp.sklearn: scikit-learn's estimator checks, the same loss curves as
scikit-learn's MLP, its inputs, and the ways its users scale a search."""
import pickle
import warnings

import distributed
import joblib
import numpy as np
import pandas as pd
import pytest
import scipy.sparse
import sklearn.neural_network as skl
from sklearn.base import clone
from sklearn.datasets import load_digits, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import fastbp
from fastbp.sklearn import MLPClassifier, MLPRegressor


def _digits(n=300):
    x, y = load_digits(return_X_y=True)
    return x[:n] / 16.0, y[:n]


def _regression(n=200, targets=3):
    x, y = make_regression(n, 8, n_targets=targets, noise=0.1, random_state=0)
    return x, y / 100.0


def _quiet(fit):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fit()


@parametrize_with_checks([MLPClassifier(max_iter=100), MLPRegressor(max_iter=100)])
def test_scikit_learn_estimator_checks(estimator, check):
    # scikit-learn's own MLP runs these with max_iter=100 too; every check
    # passes, so no expected failures are declared
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


def _curves(sk, fb, x, y, **fit):
    _quiet(lambda: sk.fit(x, y, **fit))
    _quiet(lambda: fb.fit(x, y, **fit))
    return sk, fb


CLASSIFIER_CASES = {
    "sgd nesterov invscaling": dict(solver="sgd", learning_rate="invscaling", power_t=0.3, learning_rate_init=0.2),
    "sgd momentum adaptive": dict(solver="sgd", learning_rate="adaptive", nesterovs_momentum=False,
                                  n_iter_no_change=2, tol=0.5, learning_rate_init=0.1),
    "sgd no momentum": dict(solver="sgd", momentum=0.0, learning_rate_init=0.3),
    "adam": dict(solver="adam", learning_rate_init=0.01, alpha=0.01),
    "adam early stopping": dict(solver="adam", learning_rate_init=0.01, early_stopping=True, n_iter_no_change=3),
    "lbfgs": dict(solver="lbfgs", alpha=0.01),
}


@pytest.mark.parametrize("case", sorted(CLASSIFIER_CASES))
@pytest.mark.parametrize("activation", ["relu", "logistic"])
def test_classifier_loss_curve_is_scikit_learns(case, activation):
    x, y = _digits()
    params = dict(hidden_layer_sizes=(20, 12), activation=activation, batch_size=32, max_iter=12, random_state=3,
                  **CLASSIFIER_CASES[case])
    sk, fb = _curves(skl.MLPClassifier(**params), MLPClassifier(**params), x, y)
    if params["solver"] == "lbfgs":
        np.testing.assert_allclose(fb.loss_, sk.loss_, rtol=1e-9)
    else:
        np.testing.assert_allclose(fb.loss_curve_, sk.loss_curve_, rtol=1e-9)
    if params.get("early_stopping"):
        np.testing.assert_allclose(fb.validation_scores_, sk.validation_scores_)
        assert fb.best_validation_score_ == sk.best_validation_score_
    assert fb.n_iter_ == sk.n_iter_ and fb.t_ == sk.t_
    for a, b in zip(fb.coefs_ + fb.intercepts_, sk.coefs_ + sk.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(fb.predict_proba(x), sk.predict_proba(x), rtol=1e-7, atol=1e-12)
    np.testing.assert_array_equal(fb.predict(x), sk.predict(x))


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_binary_multilabel_and_weighted_losses_are_scikit_learns(solver):
    x, y = _digits()
    multilabel = np.c_[y % 2, y > 4, y == 3]
    rng = np.random.default_rng(0)
    weights = rng.uniform(0.1, 2.0, len(y))
    for target, fit in ((y % 2, {}), (multilabel, {}), (y, dict(sample_weight=weights))):
        params = dict(hidden_layer_sizes=(16,), solver=solver, batch_size=25, max_iter=8, random_state=1,
                      alpha=0.05, learning_rate_init=0.05)
        sk, fb = _curves(skl.MLPClassifier(**params), MLPClassifier(**params), x, target, **fit)
        np.testing.assert_allclose(getattr(fb, "loss_curve_", fb.loss_), getattr(sk, "loss_curve_", sk.loss_),
                                   rtol=1e-9)
        assert fb.out_activation_ == sk.out_activation_
        np.testing.assert_allclose(fb.predict_proba(x), sk.predict_proba(x), rtol=1e-7, atol=1e-12)
        np.testing.assert_allclose(fb.predict_log_proba(x), sk.predict_log_proba(x), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
@pytest.mark.parametrize("targets", [1, 3])
def test_regressor_loss_curve_is_scikit_learns(solver, targets):
    # multi-output squared error: scikit-learn reports the mean over outputs
    # while its gradient is their sum (kernels/losses.py SKLEARN keeps both)
    x, y = _regression(targets=targets)
    y = y.ravel() if targets == 1 else y
    weights = np.random.default_rng(1).uniform(0.5, 1.5, len(x))
    params = dict(hidden_layer_sizes=(12,), activation="tanh", solver=solver, batch_size=16, max_iter=10,
                  random_state=0, learning_rate_init=0.01, alpha=1e-3)
    for fit in ({}, dict(sample_weight=weights)):
        sk, fb = _curves(skl.MLPRegressor(**params), MLPRegressor(**params), x, y, **fit)
        np.testing.assert_allclose(getattr(fb, "loss_curve_", fb.loss_), getattr(sk, "loss_curve_", sk.loss_),
                                   rtol=1e-9)
        np.testing.assert_allclose(fb.predict(x), sk.predict(x), rtol=1e-7, atol=1e-9)
        assert fb.score(x, y) == pytest.approx(sk.score(x, y), rel=1e-9)


def test_same_initial_coefs_without_shuffling_give_scikit_learns_curve_in_float32_and_float64():
    x, y = _digits()
    for dtype, rtol in ((np.float64, 1e-9), (np.float32, 2e-4)):
        xd = x.astype(dtype)
        start = _quiet(lambda: skl.MLPClassifier(hidden_layer_sizes=(24,), max_iter=1, random_state=5).fit(xd, y))
        for solver in ("sgd", "adam"):
            params = dict(hidden_layer_sizes=(24,), solver=solver, shuffle=False, warm_start=True, max_iter=6,
                          batch_size=20, learning_rate_init=0.05)
            models = []
            for cls in (skl.MLPClassifier, MLPClassifier):
                model = cls(**params)
                model.coefs_ = [c.copy() for c in start.coefs_]
                model.intercepts_ = [b.copy() for b in start.intercepts_]
                # what warm_start reuses from an earlier fit
                model.classes_, model._label_binarizer = start.classes_, start._label_binarizer
                model.n_outputs_, model.n_layers_, model.out_activation_ = 10, 3, "softmax"
                model.n_iter_, model.t_, model.loss_curve_ = 0, 0, []
                model.best_loss_, model._no_improvement_count = np.inf, 0
                models.append(_quiet(lambda: model.fit(xd, y)))
            sk, fb = models
            assert fb.coefs_[0].dtype == dtype
            np.testing.assert_allclose(fb.loss_curve_, sk.loss_curve_, rtol=rtol)


def test_partial_fit_pickling_and_cloning_continue_as_scikit_learn_does():
    x, y = _digits()
    sk, fb = (cls(hidden_layer_sizes=(16,), solver="sgd", random_state=0, learning_rate_init=0.05)
              for cls in (skl.MLPClassifier, MLPClassifier))
    batches = np.array_split(np.arange(len(y)), 6)
    for i, rows in enumerate(batches):
        kw = dict(classes=np.arange(10)) if i == 0 else {}
        sk.partial_fit(x[rows], y[rows], **kw)
        fb.partial_fit(x[rows], y[rows], **kw)
        if i == 2:  # a pickled copy and a deep copy carry on the same way
            fb_copy = pickle.loads(pickle.dumps(fb))
    for rows in batches[3:]:
        fb_copy.partial_fit(x[rows], y[rows])
    np.testing.assert_allclose(fb.loss_curve_, sk.loss_curve_, rtol=1e-9)
    np.testing.assert_array_equal(fb_copy.loss_curve_, fb.loss_curve_)
    for a, b in zip(fb_copy.coefs_ + fb_copy.intercepts_, fb.coefs_ + fb.intercepts_):
        np.testing.assert_array_equal(a, b)
    fresh = clone(fb)
    assert fresh.get_params() == fb.get_params() and not hasattr(fresh, "coefs_")
    # coefs_ written by the user are what the next fit starts from
    fb.coefs_[0][...] = 0.0
    np.testing.assert_array_equal(fb._network(fb.coefs_[0].dtype).coefs[0], 0.0)


def test_inputs_scikit_learn_accepts_and_refuses():
    x, y = _digits(120)
    params = dict(hidden_layer_sizes=(8,), max_iter=5, random_state=0)
    reference = _quiet(lambda: MLPClassifier(**params).fit(x, y))
    frame = pd.DataFrame(x, columns=[f"pixel{i}" for i in range(64)])
    from_frame = _quiet(lambda: MLPClassifier(**params).fit(frame, pd.Series(y)))
    assert list(from_frame.feature_names_in_) == list(frame.columns)
    np.testing.assert_array_equal(from_frame.loss_curve_, reference.loss_curve_)
    for other in (x.tolist(), np.asfortranarray(x), x[:, ::-1][:, ::-1], scipy.sparse.csr_matrix(x)):
        fitted = _quiet(lambda: MLPClassifier(**params).fit(other, y.tolist()))
        np.testing.assert_allclose(fitted.loss_curve_, reference.loss_curve_, rtol=1e-12)
    np.testing.assert_allclose(reference.predict_proba(scipy.sparse.csr_matrix(x)), reference.predict_proba(x))
    as_float32 = _quiet(lambda: MLPClassifier(**params, dtype="float32").fit(x, y))
    assert as_float32.coefs_[0].dtype == np.float32
    assert as_float32.predict_proba(x).dtype == np.float64  # float64 input, as scikit-learn
    bad = x.copy()
    bad[3, 3] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        MLPClassifier(**params).fit(bad, y)
    with pytest.raises(ValueError, match="X has 63 features, but MLPClassifier is expecting 64"):
        reference.predict(x[:, :63])
    with pytest.raises(ValueError, match="The 'dtype' parameter"):
        MLPClassifier(dtype="int8").fit(x, y)
    with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        MLPClassifier(**params).fit(x, y)


def test_a_fit_that_goes_non_finite_raises_scikit_learns_error_and_keeps_finite_weights():
    x, y = _regression(targets=1)
    model = MLPRegressor(hidden_layer_sizes=(8,), solver="sgd", learning_rate_init=10.0, max_iter=50,
                         random_state=0)
    with pytest.raises(ValueError, match="Solver produced non-finite parameter weights"):
        _quiet(lambda: model.fit(x * 1e6, y.ravel() * 1e6))
    assert all(np.isfinite(c).all() for c in model.coefs_)


def test_poisson_regression_trains_through_scikit_learns_own_code():
    x, y = _regression(targets=1)
    y = np.exp(y.ravel())
    params = dict(loss="poisson", hidden_layer_sizes=(6,), max_iter=5, random_state=0)
    sk, fb = _curves(skl.MLPRegressor(**params), MLPRegressor(**params), x, y)
    np.testing.assert_allclose(fb.loss_curve_, sk.loss_curve_, rtol=1e-12)


def test_pipeline_and_grid_search_over_two_processes():
    x, y = _digits(200)
    pipe = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(8,), max_iter=15, random_state=0))
    grid = {"mlpclassifier__alpha": [1e-4, 1e-1], "mlpclassifier__solver": ["sgd", "adam"]}
    serial = _quiet(lambda: GridSearchCV(pipe, grid, cv=2).fit(x, y))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the workers' ConvergenceWarnings
        parallel = GridSearchCV(pipe, grid, cv=2, n_jobs=2).fit(x, y)  # loky worker processes
    np.testing.assert_array_equal(parallel.cv_results_["mean_test_score"], serial.cv_results_["mean_test_score"])
    assert parallel.best_params_ == serial.best_params_
    np.testing.assert_array_equal(parallel.predict(x), serial.predict(x))


def test_grid_search_on_a_dask_local_cluster():
    x, y = _digits(200)
    model = MLPClassifier(hidden_layer_sizes=(8,), max_iter=15, random_state=0)
    grid = {"alpha": [1e-4, 1e-1]}
    serial = _quiet(lambda: GridSearchCV(model, grid, cv=2).fit(x, y))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster), joblib.parallel_backend("dask"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        on_cluster = GridSearchCV(model, grid, cv=2, n_jobs=-1).fit(x, y)
    np.testing.assert_array_equal(on_cluster.cv_results_["mean_test_score"], serial.cv_results_["mean_test_score"])


def test_fastbp_models_and_the_estimator_share_the_compiled_path():
    # the estimator's network is an ordinary fused fastbp model
    x, y = _digits(100)
    model = _quiet(lambda: MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(x, y))
    net = model._network(np.dtype(np.float64))
    assert isinstance(net.model, fastbp.Sequential) and net.model.fused is not None
    assert all(np.shares_memory(c, net.fused.params) for c in model.coefs_)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("loss_code", ["mse", "bce", "softmax"])
def test_sklearn_reduction_kernel_is_scikit_learns_loss_and_gradient(dtype, loss_code):
    from scipy.special import expit, softmax
    from sklearn.neural_network._base import LOSS_FUNCTIONS

    from fastbp.kernels import BCE_WITH_LOGITS, CROSS_ENTROPY_LABELS, MSE, SKLEARN
    from fastbp.kernels import weighted_loss_forward_backward as kernel

    rng = np.random.default_rng(7)
    for rows, width in ((1, 1), (9, 3), (33, 5)):
        logits = rng.standard_normal((rows, width)).astype(dtype)
        labels = rng.integers(0, width, rows)
        for weights in (None, rng.uniform(0.2, 2.0, rows)):
            grad = np.empty_like(logits)
            w = np.empty(0) if weights is None else weights
            if loss_code == "mse":
                target = rng.standard_normal((rows, width)).astype(dtype)
                value = kernel(MSE, SKLEARN, logits, target, np.empty(0, np.int64), w, grad)
                expected, out = LOSS_FUNCTIONS["squared_error"](target, logits, weights), logits
            elif loss_code == "bce":
                target = (rng.random((rows, width)) < 0.5).astype(dtype)
                value = kernel(BCE_WITH_LOGITS, SKLEARN, logits, target, np.empty(0, np.int64), w, grad)
                out = expit(logits.astype(np.float64))
                expected = LOSS_FUNCTIONS["binary_log_loss"](target, out, weights)
            else:
                target = np.eye(width)[labels]
                value = kernel(CROSS_ENTROPY_LABELS, SKLEARN, logits, np.empty((0, 0), dtype), labels, w, grad)
                out = softmax(logits.astype(np.float64), axis=1)
                expected = LOSS_FUNCTIONS["log_loss"](target, out, weights)
            # scikit-learn's delta: (output - target) * w / sum(w), its canonical output activations
            sw = np.ones(rows) if weights is None else weights
            expected_grad = (out - target) * sw[:, None] / sw.sum()
            tol = 1e-5 if dtype == np.float32 else 1e-12
            assert value == pytest.approx(expected, rel=tol)
            np.testing.assert_allclose(grad, expected_grad, rtol=tol, atol=tol)


def test_adam_eps_hat_is_scikit_learns_adam():
    from sklearn.neural_network._stochastic_optimizers import AdamOptimizer

    from fastbp import kernels

    rng = np.random.default_rng(0)
    for dtype, tol in ((np.float64, 1e-13), (np.float32, 1e-5)):
        param = rng.standard_normal(50).astype(dtype)
        ref_params = [param.astype(np.float64)]
        reference = AdamOptimizer(ref_params, 0.01, 0.9, 0.999, 1e-3)  # a large eps: visible
        hyper = np.zeros(kernels.HYPER_SIZE)
        hyper[[kernels.LR, kernels.BETA1, kernels.BETA2, kernels.EPS, kernels.EPS_HAT]] = 0.01, 0.9, 0.999, 1e-3, 1
        m, v = np.zeros_like(param), np.zeros_like(param)
        for step in range(1, 6):
            grad = rng.standard_normal(50).astype(dtype) * 1e-3
            reference.update_params(ref_params, [grad.astype(np.float64)])
            kernels.update(kernels.ADAM, hyper, step, param, grad, m, v)
            np.testing.assert_allclose(param, ref_params[0], rtol=tol, atol=tol)
