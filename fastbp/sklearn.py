"""scikit-learn's MLPClassifier and MLPRegressor, trained by fastbp's compiled step.

    from fastbp.sklearn import MLPClassifier   # instead of sklearn.neural_network

These are scikit-learn's own estimators (subclasses of
`sklearn.neural_network.MLPClassifier` / `MLPRegressor`): the same
constructor parameters, defaults, input checks, errors, initialisation from
`random_state`, shuffling, early stopping, learning-rate schedules, fitted
attributes, `partial_fit`, `predict_proba` and tags. What changes is the
arithmetic:

- `solver="sgd"` and `"adam"`: each epoch is one compiled call over fastbp's
  flat parameter buffer (kernels/network.py network_train_epoch) instead of a
  numpy forward and backward per batch; scikit-learn's loss and L2 penalty
  (kernels/losses.py SKLEARN), its momentum (as torch's, with the velocity
  rescaled when the learning rate changes) and its Adam (the epsilon-hat form,
  kernels/optim.py EPS_HAT);
- `solver="lbfgs"`: scipy's L-BFGS-B as scikit-learn calls it, with the loss
  and gradient of the whole network in one compiled call;
- prediction goes through fastbp's fused dense layers.

Given the same parameters and `random_state` the loss curve is scikit-learn's
to float rounding (tests/test_sklearn.py). Sparse input is densified;
`MLPRegressor(loss="poisson")` trains through scikit-learn's own code.

`dtype` (fastbp's one extra parameter): None trains float32 input in float32
and anything else in float64, as scikit-learn does; np.float32 or np.float64
trains in that dtype whatever the input.
"""
import warnings

import numpy as np
import scipy.optimize
import scipy.sparse
import sklearn
from sklearn.base import is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as _MLPClassifier
from sklearn.neural_network import MLPRegressor as _MLPRegressor
from sklearn.neural_network._base import ACTIVATIONS as _OUTPUT_ACTIVATIONS
from sklearn.neural_network._stochastic_optimizers import AdamOptimizer, SGDOptimizer
from sklearn.utils._param_validation import Options, StrOptions
from sklearn.utils.optimize import _check_optimize_result
from sklearn.utils.validation import validate_data

try:  # scikit-learn's way of passing iprint to whichever scipy is installed
    from sklearn.utils.fixes import _get_additional_lbfgs_options_dict
except ImportError:  # older scikit-learn: the option as scipy took it then
    def _get_additional_lbfgs_options_dict(key, value):
        return {key: value}

from . import kernels
from .layers import Linear
from .losses import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from .model import Sequential
from .optim import SGD, Adam

# The private methods overridden here (_fit_stochastic, _fit_lbfgs,
# _forward_pass_fast) and the helpers imported above have these signatures
# from scikit-learn 1.7 (sample_weight in fit) on.
if tuple(int(part) for part in sklearn.__version__.split(".")[:2]) < (1, 7):
    raise ImportError(f"fastbp.sklearn needs scikit-learn >= 1.7, found {sklearn.__version__}")

_HIDDEN = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
_DTYPES = {None: None, "float32": np.float32, "float64": np.float64, np.float32: np.float32,
           np.float64: np.float64}
_NON_FINITE = ("Solver produced non-finite parameter weights. The input data may contain large values and "
               "need to be preprocessed.")


def _shuffle(sample_idx, random_state):
    """sklearn.utils.shuffle(sample_idx, random_state=random_state): the same
    permutation from the same draws of the stream (resample without
    replacement shuffles an arange), without its checks of the input, which
    cost about 1 ms an epoch, a sixth of a digits fit (`python -m fastbp bench
    --only sklearn`); tests/test_sklearn.py's loss curves, equal to
    scikit-learn's, hold it to the same permutations."""
    order = np.arange(sample_idx.shape[0])
    random_state.shuffle(order)
    return sample_idx[order]


def _kernel_array(a, dtype):
    """`a` as a writeable, C-contiguous ndarray of `dtype` (sparse input
    densified), copied only when it is not one: a read-only or memory-mapped
    array would make numba compile the whole step once more for its type."""
    if scipy.sparse.issparse(a):
        a = a.toarray()
    a = np.ascontiguousarray(a, dtype=dtype)
    if type(a) is not np.ndarray or not a.flags.writeable:
        a = np.array(a, dtype=dtype, order="C", copy=True)
    return a


class _Network:
    """The fastbp network behind an estimator's coefs_ and intercepts_, which
    are views of its flat parameter buffer while it is in use."""

    def __init__(self, estimator, dtype):
        hidden = _HIDDEN[estimator.activation]
        sizes = [coef.shape[0] for coef in estimator.coefs_] + [estimator.coefs_[-1].shape[1]]
        last = len(sizes) - 2
        self.model = Sequential(*[Linear(n_in, n_out, activation=None if l == last else hidden, dtype=dtype, rng=0)
                                  for l, (n_in, n_out) in enumerate(zip(sizes, sizes[1:]))])
        self.fused = self.model.fused
        self.dtype = dtype
        layers = self.model.layers
        for layer, coef, intercept in zip(layers, estimator.coefs_, estimator.intercepts_):
            layer.weights[...] = coef
            layer.bias[...] = intercept
        self.coefs = [layer.weights for layer in layers]
        self.intercepts = [layer.bias for layer in layers]
        estimator.coefs_, estimator.intercepts_ = list(self.coefs), list(self.intercepts)

    def serves(self, estimator, dtype):
        """True while the estimator's arrays are still this network's views."""
        return (self.dtype == dtype and len(estimator.coefs_) == len(self.coefs)
                and all(a is b for a, b in zip(estimator.coefs_, self.coefs))
                and all(a is b for a, b in zip(estimator.intercepts_, self.intercepts)))

    def flat(self, per_parameter):
        """Arrays in coefs_ + intercepts_ order (scikit-learn's optimizer state)
        as one flat array in the network's layout."""
        out = np.empty_like(self.fused.params)
        n = len(self.coefs)
        for layer, coef, intercept in zip(self.model.layers, per_parameter[:n], per_parameter[n:]):
            for param, value in zip(layer.parameters(), (coef, intercept)):
                offset, size = self.fused.offset(param)
                out[offset:offset + size] = np.ravel(value)
        return out

    def unflat(self, flat, per_parameter):
        """Write a flat array back into coefs_ + intercepts_-ordered arrays."""
        n = len(self.coefs)
        for layer, coef, intercept in zip(self.model.layers, per_parameter[:n], per_parameter[n:]):
            for param, value in zip(layer.parameters(), (coef, intercept)):
                offset, size = self.fused.offset(param)
                value[...] = flat[offset:offset + size].reshape(value.shape)


class _FastbpMLP:
    """What both estimators change in scikit-learn's BaseMultilayerPerceptron."""

    def _train_dtype(self, X):
        dtype = _DTYPES[self.dtype]
        return np.dtype(X.dtype if dtype is None else dtype)

    def _network(self, dtype):
        net = getattr(self, "_fastbp_network", None)
        if net is None or not net.serves(self, dtype):
            net = self._fastbp_network = _Network(self, dtype)
        return net

    def __getstate__(self):
        # the network is rebuilt from coefs_ after unpickling: a pickled copy
        # of its buffer would no longer be what coefs_ views
        state = super().__getstate__()
        state.pop("_fastbp_network", None)
        return state

    def _uses_own_code(self):
        return getattr(self, "loss", None) == "poisson"

    def _loss_and_targets(self, y):
        """The fastbp loss for scikit-learn's, in its SKLEARN reduction, and y
        in the form that loss reads."""
        if not is_classifier(self):
            loss, target = MSELoss(), y
        elif self.out_activation_ == "softmax":
            loss, target = CrossEntropyLoss(), np.argmax(y, axis=1).astype(np.int64)
        else:
            loss, target = BCEWithLogitsLoss(), y
        loss._reduction = kernels.SKLEARN
        return loss, target

    def _prepare(self, X, y, sample_weight, dtype):
        """X, the targets and the weights as the compiled epoch takes them,
        and the loss."""
        loss, target = self._loss_and_targets(y)
        weights = None if sample_weight is None else _kernel_array(sample_weight, np.float64)
        return _kernel_array(X, dtype), _kernel_array(target, target.dtype if target.dtype.kind == "i" else dtype), \
            weights, loss

    # -- sgd and adam --------------------------------------------------------

    def _fit_stochastic(self, X, y, sample_weight, activations, deltas, coef_grads, intercept_grads,
                        layer_units, incremental):
        if self._uses_own_code():
            return super()._fit_stochastic(X, y, sample_weight, activations, deltas, coef_grads,
                                           intercept_grads, layer_units, incremental)
        dtype = self._train_dtype(X)
        net = self._network(dtype)
        params = self.coefs_ + self.intercepts_
        if not incremental or not hasattr(self, "_optimizer"):
            # scikit-learn's optimizer objects keep the learning rate, its
            # schedule and the state between calls (and pickle with the
            # estimator); the compiled step works on a flat copy of the state
            if self.solver == "sgd":
                self._optimizer = SGDOptimizer(params, self.learning_rate_init, self.learning_rate,
                                               self.momentum, self.nesterovs_momentum, self.power_t)
            else:
                self._optimizer = AdamOptimizer(params, self.learning_rate_init, self.beta_1, self.beta_2,
                                                self.epsilon)
        sk_opt = self._optimizer
        if self.solver == "sgd":
            # scikit-learn's v = momentum v - lr g, p += v (or p += momentum v - lr g)
            # is torch's b = momentum b + g, p -= lr b (or lr (g + momentum b))
            # with v = -lr b
            opt = SGD(net.model.parameters(), lr=sk_opt.learning_rate, momentum=self.momentum,
                      nesterov=self.nesterovs_momentum and self.momentum > 0)
            if self.momentum > 0:
                opt.flat_state[0][...] = net.flat(sk_opt.velocities) / -sk_opt.learning_rate
        else:
            opt = Adam(net.model.parameters(), lr=self.learning_rate_init, betas=(self.beta_1, self.beta_2),
                       eps=self.epsilon)
            opt.hyper[kernels.EPS_HAT] = 1.0
            opt.step_count = sk_opt.t
            opt.flat_state[0][...] = net.flat(sk_opt.ms)
            opt.flat_state[1][...] = net.flat(sk_opt.vs)

        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        early_stopping = self.early_stopping
        if early_stopping:
            # scikit-learn's split, drawn from the same random state
            stratify = y if is_classifier(self) and self.n_outputs_ == 1 else None
            if sample_weight is None:
                X_train, X_val, y_train, y_val = train_test_split(
                    X, y, random_state=self._random_state, test_size=self.validation_fraction, stratify=stratify)
                sample_weight_train = sample_weight_val = None
            else:
                X_train, X_val, y_train, y_val, sample_weight_train, sample_weight_val = train_test_split(
                    X, y, sample_weight, random_state=self._random_state, test_size=self.validation_fraction,
                    stratify=stratify)
            if X_val.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase 'validation_fraction' or the size of "
                                 "your dataset.")
            if is_classifier(self):
                y_val = self._label_binarizer.inverse_transform(y_val)
        else:
            X_train, y_train, sample_weight_train = X, y, sample_weight
            X_val = y_val = sample_weight_val = None

        n_samples = X_train.shape[0]
        sample_idx = np.arange(n_samples, dtype=np.int64)
        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped")
            batch_size = int(np.clip(self.batch_size, 1, n_samples))

        x_train, target, weights, loss = self._prepare(X_train, y_train, sample_weight_train, dtype)
        epochs = net.fused.epochs(x_train, target, loss, opt, batch_size, l2=self.alpha, weights=weights)
        try:
            self.n_iter_ = 0
            for it in range(self.max_iter):
                if self.shuffle:
                    sample_idx = _shuffle(sample_idx, self._random_state)
                if self.solver == "sgd" and opt.lr != sk_opt.learning_rate:
                    if self.momentum > 0:  # keep v = -lr b across the change
                        velocity = opt.flat_state[0]
                        velocity *= opt.lr / sk_opt.learning_rate
                    opt.lr = sk_opt.learning_rate
                total, bad_batch, _ = epochs.run(sample_idx if self.shuffle else None, None)
                if bad_batch >= 0:
                    # the parameters are those before the batch that went
                    # non-finite; scikit-learn raises this after such a fit
                    raise ValueError(_NON_FINITE)
                self.n_iter_ += 1
                self.loss_ = total / n_samples
                self.t_ += n_samples
                self.loss_curve_.append(self.loss_)
                if self.verbose:
                    print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))
                self._update_no_improvement_count(early_stopping, X_val, y_val, sample_weight_val)
                sk_opt.iteration_ends(self.t_)
                if self._no_improvement_count > self.n_iter_no_change:
                    if early_stopping:
                        msg = ("Validation score did not improve more than tol=%f for %d consecutive epochs."
                               % (self.tol, self.n_iter_no_change))
                    else:
                        msg = ("Training loss did not improve more than tol=%f for %d consecutive epochs."
                               % (self.tol, self.n_iter_no_change))
                    if sk_opt.trigger_stopping(msg, self.verbose):
                        break
                    self._no_improvement_count = 0
                if incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn("Stochastic Optimizer: Maximum iterations (%d) reached and the optimization "
                                  "hasn't converged yet." % self.max_iter, ConvergenceWarning)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")
        finally:
            # the state back into scikit-learn's optimizer, as its own update would leave it
            if self.solver == "sgd":
                if self.momentum > 0:
                    net.unflat(opt.flat_state[0] * -opt.lr, sk_opt.velocities)
            else:
                sk_opt.t = opt.step_count
                net.unflat(opt.flat_state[0], sk_opt.ms)
                net.unflat(opt.flat_state[1], sk_opt.vs)
                if sk_opt.t:
                    sk_opt.learning_rate = (self.learning_rate_init * np.sqrt(1 - self.beta_2 ** sk_opt.t)
                                            / (1 - self.beta_1 ** sk_opt.t))
        if early_stopping:
            self.coefs_ = self._best_coefs
            self.intercepts_ = self._best_intercepts

    # -- lbfgs ---------------------------------------------------------------

    def _fit_lbfgs(self, X, y, sample_weight, activations, deltas, coef_grads, intercept_grads, layer_units):
        if self._uses_own_code():
            return super()._fit_lbfgs(X, y, sample_weight, activations, deltas, coef_grads, intercept_grads,
                                      layer_units)
        dtype = self._train_dtype(X)
        net = self._network(dtype)
        fused = net.fused
        x, target, weights, loss = self._prepare(X, y, sample_weight, dtype)

        def loss_and_grad(flat_params):
            fused.params[...] = flat_params
            value = fused.forward_backward(x, target, loss, l2=self.alpha, weights=weights)
            return value, fused.grads.astype(np.float64)

        # L-BFGS-B over the network's flat layout rather than scikit-learn's
        # coefs-then-intercepts order: the method only takes dot products of
        # the whole vector, so the order changes nothing but rounding
        iprint = 1 if self.verbose is True or self.verbose >= 1 else -1
        opt_res = scipy.optimize.minimize(
            loss_and_grad, fused.params.astype(np.float64), method="L-BFGS-B", jac=True,
            options={"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol,
                     **_get_additional_lbfgs_options_dict("iprint", iprint)})
        self.n_iter_ = _check_optimize_result("lbfgs", opt_res, self.max_iter)
        self.loss_ = opt_res.fun
        fused.params[...] = opt_res.x

    # -- prediction ----------------------------------------------------------

    def _forward_pass_fast(self, X, check_input=True):
        if check_input:
            X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)
        net = self._network(self.coefs_[0].dtype)
        out = net.model.predict(_kernel_array(X, net.dtype))
        if out.dtype != X.dtype and X.dtype.kind == "f":
            out = out.astype(np.result_type(X.dtype, out.dtype), copy=False)
        _OUTPUT_ACTIVATIONS[self.out_activation_](out)
        return out

    def _validate_input(self, X, y, incremental, reset):
        X, y = super()._validate_input(X, y, incremental, reset)
        dtype = _DTYPES[self.dtype]
        return (X if dtype is None or scipy.sparse.issparse(X) else X.astype(dtype, copy=False)), y


_FASTBP_CONSTRAINTS = {"dtype": [None, StrOptions({"float32", "float64"}), Options(type, {np.float32, np.float64})]}


class MLPClassifier(_FastbpMLP, _MLPClassifier):
    """scikit-learn's MLPClassifier (same parameters, attributes and results)
    trained by fastbp's compiled epoch; see the module docstring."""

    _parameter_constraints = {**_MLPClassifier._parameter_constraints, **_FASTBP_CONSTRAINTS}

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5, max_iter=200,
                 shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1, beta_1=0.9,
                 beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000, dtype=None):
        super().__init__(hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver, alpha=alpha,
                         batch_size=batch_size, learning_rate=learning_rate, learning_rate_init=learning_rate_init,
                         power_t=power_t, max_iter=max_iter, shuffle=shuffle, random_state=random_state, tol=tol,
                         verbose=verbose, warm_start=warm_start, momentum=momentum,
                         nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
                         validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                         n_iter_no_change=n_iter_no_change, max_fun=max_fun)
        self.dtype = dtype


class MLPRegressor(_FastbpMLP, _MLPRegressor):
    """scikit-learn's MLPRegressor (same parameters, attributes and results)
    trained by fastbp's compiled epoch; see the module docstring."""

    _parameter_constraints = {**_MLPRegressor._parameter_constraints, **_FASTBP_CONSTRAINTS}

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5,
                 max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000, dtype=None):
        super().__init__(loss=loss, hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
                         alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
                         learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter, shuffle=shuffle,
                         random_state=random_state, tol=tol, verbose=verbose, warm_start=warm_start,
                         momentum=momentum, nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
                         validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                         n_iter_no_change=n_iter_no_change, max_fun=max_fun)
        self.dtype = dtype
