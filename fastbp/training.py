"""`Sequential.fit`'s loop: data checked once, then epochs of the fused or
the layer-by-layer path (fastbp/_fused.py `FusedEpochs`,
fastbp/_layer_path.py `LayerEpochs`), with learning-rate schedules, early
stopping, validation, metrics and callbacks between them."""
import _signal  # signal's functions without its enum wrappers (see _HeldInterrupt)
import contextlib
import signal
import sys
import threading
import time

import numpy as np
from tqdm import tqdm

from . import _layer_path
from .kernels import network as network_kernels
from ._cuda import to_numpy
from ._validation import check_finite_float, check_positive_int, check_rng, check_training_data, numeric_array
from .losses import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, Loss
from .optim import Optimizer
from .schedules import EarlyStopping, Schedule, StopTraining


def fit(model, x, y, *, loss, optimizer, epochs=1, batch_size=None, shuffle=True, validation_data=None,
        validation_split=0.0, progress=True, rng=None, callback=None, fused=None, l2=0.0, schedule=None,
        early_stopping=None, metrics=None, initial_epoch=0, sample_weight=None, class_weight=None,
        _make_epochs=None):
    """Train `model` with mini-batch gradient descent.

    Parameters
    ----------
    x : (n, in_features); y : targets for `loss`, n rows.
    epochs : train epochs initial_epoch, ..., epochs - 1 (Keras' rule).
    batch_size : None (full batch, plain GD), 1 (SGD) or any size.
    shuffle : reshuffle the samples every epoch (with `rng`).
    rng : seed or np.random.Generator for the shuffle; None draws from one
        generator per process, seeded from OS entropy on first use. Epoch
        e's order is the e-th permutation drawn from it: with initial_epoch=k
        the first k are drawn and dropped, so a resumed fit with the same
        seed shuffles as an uninterrupted one.
    validation_data : optional (x_val, y_val) evaluated after each epoch.
    validation_split : or a fraction in (0, 1): the last rows of x, y
        (before any shuffle, as in Keras) are held out as validation data.
    progress : show a tqdm progress bar on stderr; only when stderr is a
        terminal, and only for runs longer than half a second.
    callback : optional f(epoch, history) called after each epoch; it may
        call the model's methods, and stops training by returning True or
        raising fastbp.StopTraining(reason).
    fused : None (the fused epoch when it can), False (layer by layer) or
        True (raise ValueError when it cannot), as in `train_step`.
    l2 : scikit-learn's `alpha` L2 penalty on the weights, as in `train_step`.
    schedule : a fastbp learning-rate schedule (fastbp/schedules.py).
    early_stopping : a fastbp.EarlyStopping.
    metrics : callables metric(y_true, y_pred) on the targets and the model's
        outputs, as a list (named by __name__) or a dict name -> callable;
        recorded for the training data after each epoch (a forward pass over
        all of x), and for the validation data as "val_<name>".
    initial_epoch : the first epoch's number, to resume a saved run.
    sample_weight : (n,) weights >= 0, one per row: each batch's loss is
        sum_i w_i l_i, divided by sum_i w_i under "mean" (times the outputs
        per row for element-wise losses; kernels/losses.py).
    class_weight : {class: weight} (classes not named weigh 1) or "balanced"
        (n / (classes * rows of the class), scikit-learn's rule), multiplied
        into sample_weight; the class of a row is its index, the arg-max of
        its one-hot or probability row, or for one output its target > 0.5.
        Validation losses are not weighted.

    Everything is checked before the first update. Ctrl-C takes effect
    between two steps: the parameters are those after the last whole step,
    then KeyboardInterrupt is raised.

    Raises
    ------
    NonFiniteLossError
        the first time a batch's loss is inf or NaN; that batch changed
        nothing, so the model keeps the parameters of the last good step,
        and the error carries the history so far.

    Returns
    -------
    history : dict of per-epoch lists "loss" (the epoch's batch losses
    combined in the loss's reduction: the mean over all samples for "mean",
    the sum for "sum" / "half_sum"; parameters change between batches),
    "accuracy" (classification: the fraction of the epoch's predictions
    that were right, each batch's from its step's forward pass before the
    update, as the loss is taken and as Keras reports it; no second pass
    over the data), "val_loss",
    "val_accuracy", "lr" (the learning rate of the epoch's last step),
    "seconds" and one list per metric; "epochs" (the epoch numbers run),
    "stop_reason" (why training ended) and "best_epoch" (early stopping's
    best epoch, whose parameters were restored when restore_best; else None).
    """
    check_loss(loss)
    l2 = check_finite_float(l2, "l2", minimum=0.0)
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be a fastbp optimizer, got {type(optimizer).__name__}")
    epochs = check_positive_int(epochs, "epochs")
    if isinstance(initial_epoch, (bool, np.bool_)) or not isinstance(initial_epoch, (int, np.integer)) or not (
            0 <= initial_epoch < epochs):
        raise ValueError(f"initial_epoch must be an int in [0, epochs) = [0, {epochs}), got {initial_epoch!r}")
    if batch_size is not None:
        batch_size = check_positive_int(batch_size, "batch_size")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable as callback(epoch, history), got {type(callback).__name__}")
    if schedule is not None and not isinstance(schedule, Schedule):
        raise TypeError(f"schedule must be a fastbp schedule (e.g. fastbp.StepLR(10)), got "
                        f"{type(schedule).__name__}")
    if early_stopping is not None and not isinstance(early_stopping, EarlyStopping):
        raise TypeError(f"early_stopping must be a fastbp.EarlyStopping, got {type(early_stopping).__name__}")
    metrics = _check_metrics(metrics)
    validation_split = check_finite_float(validation_split, "validation_split", minimum=0.0, maximum=0.999999)
    if validation_split and validation_data is not None:
        raise ValueError("give validation_data or validation_split, not both")
    rng = _shuffle_rng(rng) if shuffle or rng is not None else None
    # Everything is checked before the first update: an error never
    # leaves the model trained on part of the data.
    y = numeric_array(y, "y")
    fusing = fused is not False and model.fused is not None and model.fused.why_not(loss, optimizer, y) is None
    if fused and not fusing:
        raise model._not_fused(loss, optimizer, y)
    x, y, weights = check_training_data(
        x, y, loss.reads_labels(y), model.fused.output_for if fusing else model._forward,
        model.fused.dtype if fusing else None, sample_weight=sample_weight, class_weight=class_weight,
        classification=isinstance(loss, (CrossEntropyLoss, BCELoss, BCEWithLogitsLoss)))
    if validation_split:
        split_at = int(x.shape[0] * (1.0 - validation_split))
        if split_at == 0 or split_at == x.shape[0]:
            raise ValueError(f"validation_split={validation_split} of {x.shape[0]} samples leaves "
                             f"{split_at} to train on and {x.shape[0] - split_at} to validate on; both need one")
        # copies, so the training rows stay C-contiguous for the kernels
        validation_data = (x[split_at:].copy(), y[split_at:].copy())
        x, y = x[:split_at].copy(), y[:split_at].copy()
        weights = None if weights is None else weights[:split_at].copy()
    # _make_epochs: fastbp.distributed's epochs over several processes, in
    # place of the fused path's
    if _make_epochs is not None:
        data = _make_epochs(x, y, loss, optimizer, batch_size, l2, weights)
    else:
        data = (model.fused.epochs(x, y, loss, optimizer, batch_size, l2, weights) if fusing
                else _layer_path.LayerEpochs(model.layers, x, y, loss, optimizer, batch_size, l2, weights))
    if validation_data is not None and not validation_split:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise TypeError(f"validation_data must be a pair (x_val, y_val), got "
                            f"{type(validation_data).__name__}"
                            + (f" of length {len(validation_data)}"
                               if isinstance(validation_data, (tuple, list)) else ""))
        y_val = numeric_array(validation_data[1], "validation_data[1]")
        validation_data = check_training_data(validation_data[0], y_val, loss.reads_labels(y_val),
                                              model._forward, None, "validation_data[0]",
                                              "validation_data[1]", like_x=data.x.shape[1])[:2]
    for who, watcher in (("early_stopping", early_stopping), ("schedule", schedule)):
        monitor = getattr(watcher, "monitor", "")
        if monitor.startswith("val_") and validation_data is None:
            raise ValueError(f"{who} monitors {monitor!r}, which needs validation_data or validation_split")
    return _train(model, data, loss, optimizer, epochs, shuffle, rng, validation_data, progress, callback,
                  schedule, early_stopping, metrics, initial_epoch)


def _train(model, data, loss, optimizer, epochs, shuffle, rng, validation_data, progress, callback, schedule,
           early_stopping, metrics, initial_epoch):
    history = {"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": [], "lr": [], "seconds": [],
               "epochs": []}
    for name in metrics:
        history[name], history["val_" + name] = [], []
    history.update(stop_reason=f"ran every epoch up to {epochs}", best_epoch=None)
    # the accuracy is counted as the epoch trains; a forward pass over all of
    # x after the epoch only for the metrics
    n = data.n
    accuracy_rule = accuracy_code(data.y, loss)
    total_outputs = counted_outputs(accuracy_rule, n, data.y.shape[1] if data.y.ndim == 2 else 1)
    steps = -(-n // data.batch_size)
    if shuffle:
        for _ in range(initial_epoch):
            rng.permutation(n)
    if schedule is not None:
        schedule.start(optimizer)
    if early_stopping is not None:
        early_stopping.start()
    stop = None
    with _progress_bar(progress, epochs - initial_epoch) as bar, _HeldInterrupt() as interrupt:
        for epoch in range(initial_epoch, epochs):
            start = time.perf_counter()
            lrs = None
            if schedule is not None and schedule.per_step:
                lrs = np.ascontiguousarray(schedule.step_lrs(epoch, steps), np.float64)
            elif schedule is not None:
                optimizer.lr = schedule.lr(epoch)
            total, bad_batch, correct = data.run(rng.permutation(n) if shuffle else None, interrupt, lrs,
                                                 accuracy_rule)
            if bad_batch >= 0:
                raise NonFiniteLossError(epoch, bad_batch, data.batch_size, total, history)
            history["seconds"].append(time.perf_counter() - start)
            history["epochs"].append(epoch)
            history["lr"].append(optimizer.lr)
            history["loss"].append(total / n if loss.reduction == "mean" else total)
            history["accuracy"].append(None if correct is None else correct / total_outputs)
            if metrics:
                pred = to_numpy(model._forward(data.x))
                for name, metric in metrics.items():
                    history[name].append(metric(data.y, pred))
            if validation_data is not None:
                val_pred = model._forward(validation_data[0])
                history["val_loss"].append(loss.forward(val_pred, validation_data[1]))
                history["val_accuracy"].append(accuracy(val_pred, validation_data[1], loss))
                for name, metric in metrics.items():
                    history["val_" + name].append(metric(validation_data[1], to_numpy(val_pred)))
            bar.update()
            bar.set_postfix(loss=f"{history['loss'][-1]:.4g}", refresh=False)
            interrupt.raise_if_pending()
            if schedule is not None:
                stop = schedule.end_epoch(epoch, history, optimizer, n)
            if early_stopping is not None:
                stop = early_stopping.end_epoch(epoch, history, model) or stop
            if callback is not None:
                with interrupt.released():
                    try:
                        if callback(epoch, history) is True:
                            stop = stop or f"the callback returned True after epoch {epoch}"
                    except StopTraining as exc:
                        stop = str(exc) or f"the callback raised StopTraining after epoch {epoch}"
            if stop:
                history["stop_reason"] = stop
                break
    if early_stopping is not None:
        history["best_epoch"] = early_stopping.best_epoch
        if early_stopping.restore_best:
            early_stopping.restore(model)
    return history


def _check_metrics(metrics):
    """metrics as a dict name -> callable."""
    if metrics is None:
        return {}
    if isinstance(metrics, dict):
        named = dict(metrics)
    elif isinstance(metrics, (list, tuple)):
        named = {getattr(m, "__name__", type(m).__name__): m for m in metrics}
    else:
        raise TypeError(f"metrics must be a list of callables or a dict name -> callable, got "
                        f"{type(metrics).__name__}")
    for name, metric in named.items():
        if not isinstance(name, str) or not callable(metric):
            raise TypeError(f"metrics[{name!r}] must be a callable metric(y_true, y_pred), got "
                            f"{type(metric).__name__}")
        if name in ("loss", "accuracy", "lr", "seconds", "epochs", "stop_reason", "best_epoch"):
            raise ValueError(f"metrics: {name!r} is a name the history uses already; give it another")
    return named


class _NoBar:
    """tqdm's calls that fit makes, doing nothing."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False

    def update(self, n=1):
        pass

    def set_postfix(self, **kwargs):
        pass


def _progress_bar(progress, epochs):
    """A tqdm bar when it can show (asked for, stderr a terminal: tqdm's own
    rule for disable=None), else _NoBar: even a disabled tqdm costs a large
    share of a one-epoch fit of a seed-sized net to build."""
    stream = sys.stderr
    if not progress or stream is None or (hasattr(stream, "isatty") and not stream.isatty()):
        return _NoBar()
    return tqdm(total=epochs, unit="epoch", delay=0.5, leave=False, file=stream)


class _HeldInterrupt:
    """Ctrl-C (SIGINT) during `fit` takes effect between two steps, never
    inside one: a step updates several arrays (Adam's state, each layer's
    parameters), and stopping half-way would leave parameters that match no
    step. The handler is installed only from the main thread and only over
    Python's default one; elsewhere signals behave as usual."""

    # _signal's getsignal / signal, which the signal module wraps: its
    # wrappers turn the old handler into an enum member by trying (and
    # failing) the conversion, 6.9 us of every fit call against 0.5 us
    # (python -m timeit -s "import signal, _signal" and each module's
    # getsignal(2) plus a signal(2, h) and back), against 170-260 us for a
    # whole fit of a 64-32-32-10 net over 16 batches of 32 (python -m fastbp
    # bench --only epochs).
    def __enter__(self):
        self.pending = False
        self._installed = (threading.current_thread() is threading.main_thread()
                           and _signal.getsignal(signal.SIGINT) is signal.default_int_handler)
        if self._installed:
            _signal.signal(signal.SIGINT, self._hold)
        return self

    def _hold(self, signum, frame):
        self.pending = True

    def raise_if_pending(self):
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def released(self):
        """Signals as usual meanwhile (around a user's callback, which may block)."""
        if not self._installed:
            yield
            return
        _signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            yield
        finally:
            _signal.signal(signal.SIGINT, self._hold)

    def __exit__(self, exc_type, exc, tb):
        if self._installed:
            _signal.signal(signal.SIGINT, signal.default_int_handler)
        if exc_type is None:
            self.raise_if_pending()
        return False


def check_loss(loss):
    if not isinstance(loss, Loss):
        raise TypeError(f"loss must be a fastbp loss (e.g. fastbp.MSELoss()), got {type(loss).__name__} "
                        f"{loss!r}")


_default_rng = None


def _shuffle_rng(rng):
    """np.random.default_rng(rng), except that rng=None shares one generator
    per process: a fresh one would draw OS entropy on every fit call, which
    costs more than a short fit."""
    global _default_rng
    if rng is not None:
        return check_rng(rng)
    if _default_rng is None:
        _default_rng = np.random.default_rng()
    return _default_rng


class NonFiniteLossError(FloatingPointError):
    """`fit` met a loss that is inf or NaN, or an update that would have made
    a parameter so; the parameters are those from before that batch."""

    def __init__(self, epoch, batch, batch_size, loss, history):
        self.epoch, self.batch, self.loss, self.history = epoch, batch, loss, history
        super().__init__(
            f"the loss became {loss} at epoch {epoch}, batch {batch} (samples {batch * batch_size} to "
            f"{(batch + 1) * batch_size - 1} of the epoch's order), or it stayed finite and the update "
            f"it gave did not (inf then); training stopped with the parameters from before that "
            f"batch. Lower the learning rate or check the data for inf / NaN.")


def accuracy_kind(y, loss):
    """How `accuracy` compares predictions with targets y under `loss`:
    "binary", "labels", "one-hot", or None when the task is not classification."""
    if isinstance(loss, (BCELoss, BCEWithLogitsLoss)):
        return "binary"
    if y.ndim == 1 and y.dtype.kind in "iu":
        return "labels"
    if y.ndim == 2 and y.shape[1] > 1 and (isinstance(loss, CrossEntropyLoss) or np.all((y == 0) | (y == 1))):
        return "one-hot"
    return None


def accuracy_code(y, loss):
    """accuracy_kind as the code the compiled epoch counts by (kernels/network.py
    count_correct); NO_ACCURACY when the task is not classification."""
    kind = accuracy_kind(y, loss)
    if kind == "binary":
        return network_kernels.BINARY_PROBABILITY if isinstance(loss, BCELoss) else network_kernels.BINARY_LOGIT
    return {"labels": network_kernels.LABELS_ARGMAX, "one-hot": network_kernels.ONE_HOT_ARGMAX}.get(
        kind, network_kernels.NO_ACCURACY)


def accuracy(pred, y, loss):
    """Fraction of correct predictions, or None when the task is not classification.

    Class indices or one-hot rows are compared with pred's arg-max; a single
    output column with a binary loss is thresholded (0.5 on probabilities,
    0 on logits).
    """
    pred, y = to_numpy(pred), to_numpy(y)
    code = accuracy_code(y, loss)
    right = _layer_path.count_correct(pred, y, code)
    if right is None:
        return None
    counted = counted_outputs(code, pred.shape[0], pred.shape[1])
    return right / counted if counted else float("nan")


def counted_outputs(code, rows, width):
    """How many predictions count_correct counts in `rows` rows of `width`
    outputs: one a row, or each output under the binary rules."""
    binary = code in (network_kernels.BINARY_PROBABILITY, network_kernels.BINARY_LOGIT)
    return rows * width if binary else rows
