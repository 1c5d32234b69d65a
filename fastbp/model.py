"""Sequential model: layers in order, a training step and a fit loop."""
import contextlib
import signal
import sys
import threading
import time

import numpy as np
from tqdm import tqdm

from . import _fused, _layer_path, checkpoint, interop
from ._cuda import to_numpy
from ._validation import check_positive_int, check_rng, check_training_data, numeric_array
from .layers import Activation, Layer
from .losses import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, Loss
from .optim import Optimizer


class Sequential(Layer):
    """Layers applied in order; itself a layer (forward / backward / parameters)."""

    def __init__(self, *layers):
        seen = {}
        for i, layer in enumerate(layers):
            if not (hasattr(layer, "forward") and hasattr(layer, "backward")):
                raise TypeError(f"layers[{i}] must have forward and backward, got {type(layer).__name__}")
            if id(layer) in seen:
                # each layer keeps its own last input and output for backward,
                # so one object at two places would differentiate at the wrong
                # input (and two packed copies of one Linear would not stay tied)
                raise ValueError(f"layers[{i}] is the same {type(layer).__name__} object as "
                                 f"layers[{seen[id(layer)]}]; fastbp layers hold state between forward "
                                 f"and backward, so give each place its own instance (e.g. a new ReLU())")
            seen[id(layer)] = i
        self._layers = tuple(layers)
        # One thread at a time: the layers keep their last input and output,
        # and the fused path its workspaces, so two threads stepping one model
        # would mix their batches. Public methods take this lock (calls from
        # other threads wait their turn) and call the unlocked _methods.
        # Re-entrant, so that a fit callback may call evaluate, predict or
        # train_step on the model it is called from.
        self._lock = threading.RLock()
        self._device = "cpu"
        # A stack of Linear layers is packed into flat buffers so that
        # train_step and fit can run the whole network in one compiled call.
        self.fused = _fused.pack(self.layers)

    @property
    def layers(self):
        """The layers, as a tuple: the flat buffers and the fused step were
        built for exactly these, so build a new Sequential to change them."""
        return self._layers

    @property
    def device(self):
        """"cpu" or "cuda"; change it with `to`."""
        return self._device

    def __iter__(self):
        return iter(self.layers)

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, index):
        return self.layers[index]

    def __repr__(self):
        return "Sequential(\n" + "".join(f"  {layer!r},\n" for layer in self.layers) + ")"

    def to(self, device):
        """Move every layer to "cuda" or back to "cpu"; returns the model.

        On "cuda" the model trains layer by layer with the GPU kernels (the
        fused whole-network step is CPU only); its outputs stay on the GPU
        (fastbp.to_numpy brings them back). Build optimizers after moving.
        """
        from ._cuda import check_device

        device = check_device(device)
        with self._lock:
            for i, layer in enumerate(self.layers):
                if device == "cuda" and not (hasattr(layer, "to") or isinstance(layer, Activation)):
                    raise TypeError(f"layers[{i}] is a {type(layer).__name__}, which runs on the CPU only; "
                                    f"on 'cuda' fastbp has Linear, ReLU, Sigmoid and Tanh")
            if self.fused is not None:  # leave the flat buffers: each layer keeps a copy of its arrays
                self.fused.unpack()
                self.fused = None
            for layer in self.layers:
                if hasattr(layer, "to"):
                    layer.to(device)
            self._device = device
            self.fused = _fused.pack(self.layers)  # None on the GPU: pack takes CPU layers only
        return self

    def parameters(self):
        return [p for layer in self.layers for p in layer.parameters()]

    def forward(self, x):
        with self._lock:
            return self._forward(x)

    def _forward(self, x):
        return _layer_path.forward(self.layers, x)

    def backward(self, grad_out):
        with self._lock:
            return self._backward(grad_out)

    def _backward(self, grad_out):
        return _layer_path.backward(self.layers, grad_out)

    def predict(self, x):
        """The network's output for x, (batch, out_features)."""
        return self.forward(x)

    def train_step(self, x, y, loss, optimizer, *, fused=None):
        """One forward, loss, backward and update; returns the loss.

        For a stack of Linear layers trained by SGD over this model's
        parameters this is one compiled call with no allocation (the fused
        step); the result equals the layer-by-layer path (`forward`, `loss`,
        `backward`, `step`) bit for bit, or to float rounding for networks no
        wider than 8 (their batch-inner layout sums in another order;
        kernels/network.py). `fused`: None takes the fused step when it can,
        False always goes layer by layer, True raises ValueError saying why
        when it cannot.
        Either way, `backward` overwrites the gradients. A step whose loss is
        not finite (inf or NaN) changes no parameter: it returns the loss
        without a backward pass or an update. A step whose loss is finite but
        whose update is not (overflowing gradients) changes no parameter
        either and returns inf.
        """
        # acquire / release rather than `with`, and no helper method: at seed
        # sizes each would be a visible share of the step (benchmarks/step_costs.py)
        self._lock.acquire()
        try:
            if self.fused is not None and fused is not False:
                value = self.fused.step(x, y, loss, optimizer)
                if value is not None:
                    return value
            if fused:
                raise self._not_fused(loss, optimizer, y)
            return _layer_path.train_step(self.layers, x, y, loss, optimizer)
        finally:
            self._lock.release()

    def _not_fused(self, loss, optimizer, y):
        """The ValueError for fused=True when the fused path cannot take these arguments."""
        if self.fused is None:
            why = ("the model is not a stack of Linear layers of one dtype on the CPU (activation "
                   "layers, Conv2D, Scale or Flatten go layer by layer)")
        else:
            why = self.fused.why_not(loss, optimizer, y)
        return ValueError(f"fused=True: this cannot take the fused step: {why}")

    def save(self, path):
        """Write this model to `path` (.npz; layout in fastbp/checkpoint.py).
        `fastbp.load(path)` reads it back."""
        save(self, path)

    def to_torch(self):
        """An equivalent torch.nn.Sequential (needs torch)."""
        return to_torch(self)

    def evaluate(self, x, y, loss):
        """(loss, accuracy) on (x, y); accuracy is None for regression."""
        _check_loss(loss)
        with self._lock:
            return self._evaluate(x, y, loss)

    def _evaluate(self, x, y, loss):
        pred = self._forward(x)
        return loss.forward(pred, y), accuracy(pred, y, loss)

    def fit(self, x, y, *, loss, optimizer, epochs=1, batch_size=None, shuffle=True,
            validation_data=None, progress=True, rng=None, callback=None, fused=None):
        """Train with mini-batch gradient descent.

        Parameters
        ----------
        x : (n, in_features); y : targets for `loss`, n rows.
        batch_size : None (full batch, plain GD), 1 (SGD) or any size.
        shuffle : reshuffle the samples every epoch (with `rng`).
        rng : seed or np.random.Generator for the shuffle; None draws from
            one generator per process, seeded from OS entropy on first use.
        validation_data : optional (x_val, y_val) evaluated after each epoch.
        progress : show a tqdm progress bar on stderr; only when stderr is a
            terminal, and only for runs longer than half a second.
        callback : optional f(epoch, history) called after each epoch; it may
            call this model's methods.
        fused : None (the fused epoch when it can), False (layer by layer) or
            True (raise ValueError when it cannot), as in `train_step`.

        Everything is checked before the first update. Ctrl-C takes effect
        between two steps: the parameters are those after the last whole
        step, then KeyboardInterrupt is raised.

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
        "accuracy" (classification, after the epoch), "val_loss",
        "val_accuracy", "seconds".
        """
        with self._lock:
            return self._fit(x, y, loss, optimizer, epochs, batch_size, shuffle, validation_data,
                             progress, rng, callback, fused)

    def _fit(self, x, y, loss, optimizer, epochs, batch_size, shuffle, validation_data, progress, rng,
             callback, fused):
        _check_loss(loss)
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a fastbp optimizer, got {type(optimizer).__name__}")
        epochs = check_positive_int(epochs, "epochs")
        if batch_size is not None:
            batch_size = check_positive_int(batch_size, "batch_size")
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable as callback(epoch, history), got "
                            f"{type(callback).__name__}")
        rng = _shuffle_rng(rng) if shuffle or rng is not None else None
        # Everything is checked before the first update: an error never
        # leaves the model trained on part of the data.
        y = numeric_array(y, "y")
        fusing = fused is not False and self.fused is not None and self.fused.why_not(loss, optimizer, y) is None
        if fused and not fusing:
            raise self._not_fused(loss, optimizer, y)
        x, y = check_training_data(x, y, loss.reads_labels(y), self.fused.output_for if fusing else self._forward,
                                   self.fused.dtype if fusing else None)
        data = (self.fused.epochs(x, y, loss, optimizer, batch_size) if fusing
                else _layer_path.LayerEpochs(self.layers, x, y, loss, optimizer, batch_size))
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise TypeError(f"validation_data must be a pair (x_val, y_val), got "
                                f"{type(validation_data).__name__}"
                                + (f" of length {len(validation_data)}"
                                   if isinstance(validation_data, (tuple, list)) else ""))
            y_val = numeric_array(validation_data[1], "validation_data[1]")
            validation_data = check_training_data(validation_data[0], y_val, loss.reads_labels(y_val),
                                                  self._forward, None, "validation_data[0]",
                                                  "validation_data[1]", like_x=data.x.shape[1])
        history = {"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": [], "seconds": []}
        # a forward pass over all of x per epoch, only when it gives an accuracy
        has_accuracy = accuracy_kind(data.y, loss) is not None
        n = data.n
        with _progress_bar(progress, epochs) as bar, _HeldInterrupt() as interrupt:
            for epoch in range(epochs):
                start = time.perf_counter()
                total, bad_batch = data.run(rng.permutation(n) if shuffle else None, interrupt)
                if bad_batch >= 0:
                    raise NonFiniteLossError(epoch, bad_batch, data.batch_size, total, history)
                history["seconds"].append(time.perf_counter() - start)
                history["loss"].append(total / n if loss.reduction == "mean" else total)
                history["accuracy"].append(accuracy(self._forward(data.x), data.y, loss)
                                           if has_accuracy else None)
                if validation_data is not None:
                    val_loss, val_acc = self._evaluate(*validation_data, loss)
                    history["val_loss"].append(val_loss)
                    history["val_accuracy"].append(val_acc)
                bar.update()
                bar.set_postfix(loss=f"{history['loss'][-1]:.4g}", refresh=False)
                interrupt.raise_if_pending()
                if callback is not None:
                    with interrupt.released():
                        callback(epoch, history)
        return history


def save(model, path):
    """Write `model` (a Sequential, or a single layer) to `path` (.npz; layout
    in fastbp/checkpoint.py), atomically; `fastbp.load(path)` reads it back.
    A Sequential is read under its lock, so saving while another thread
    trains it holds the parameters of one step."""
    if isinstance(model, Sequential):
        checkpoint.save(model.layers, path, model._lock)
    else:
        checkpoint.save([model], path)


def load(path):
    """The Sequential saved at `path` by `save`.

    Raises ValueError for anything that is not an intact fastbp checkpoint
    (truncated, another kind of file, edited architecture or values, sizes
    that do not match the file); OSError when the file cannot be opened."""
    return Sequential(*checkpoint.load(path))


def from_torch(module):
    """A fastbp Sequential computing what `module` computes.

    `module` is an nn.Linear, nn.Conv2d (zero padding, no dilation, no groups),
    nn.Flatten, nn.ReLU / Sigmoid / Tanh / Identity, or an nn.Sequential of
    them; subclasses are refused (their forward may differ). An activation
    right after a Linear or Conv2d is fused into it.
    """
    return Sequential(*interop.layers_from_torch(module))


def to_torch(model):
    """An nn.Sequential computing what `model` (a fastbp Sequential or layer)
    computes, with copies of its parameters (needs torch)."""
    return interop.to_torch(model.layers if isinstance(model, Sequential) else [model])


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

    def __enter__(self):
        self.pending = False
        self._installed = (threading.current_thread() is threading.main_thread()
                           and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
        if self._installed:
            signal.signal(signal.SIGINT, self._hold)
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
        signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, self._hold)

    def __exit__(self, exc_type, exc, tb):
        if self._installed:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        if exc_type is None:
            self.raise_if_pending()
        return False


def _check_loss(loss):
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


def accuracy(pred, y, loss):
    """Fraction of correct predictions, or None when the task is not classification.

    Class indices or one-hot rows are compared with pred's arg-max; a single
    output column with a binary loss is thresholded (0.5 on probabilities,
    0 on logits).
    """
    y = to_numpy(y)
    pred = to_numpy(pred)
    kind = accuracy_kind(y, loss)
    if kind == "binary":
        threshold = 0.5 if isinstance(loss, BCELoss) else 0.0
        return float(np.mean((pred > threshold) == (y > 0.5)))
    if kind == "labels" and pred.ndim == 2:
        return float(np.mean(np.argmax(pred, axis=1) == y))
    if kind == "one-hot" and pred.shape == y.shape:
        return float(np.mean(np.argmax(pred, axis=1) == np.argmax(y, axis=1)))
    return None
