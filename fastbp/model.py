"""Sequential model: layers in order, a training step, predictions; `fit`
runs fastbp/training.py's loop."""
import collections
import math
import threading

import numpy as np
import scipy.special

from . import _fused, _layer_path, checkpoint, interop, kernels, training
from ._cuda import to_numpy
from ._validation import check_finite_float
from .layers import Activation, Layer


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

    def __getstate__(self):
        # pickle and copy.deepcopy: the layers (with arrays of their own), no
        # lock and no flat buffers; both are made again on the way back
        state = self.__dict__.copy()
        del state["_lock"]
        state["fused"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.RLock()
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

    def _ends_in_sigmoid(self):
        last = self.layers[-1] if self.layers else None
        return getattr(last, "_act", getattr(last, "_code", None)) == kernels.SIGMOID

    def predict_proba(self, x):
        """Class probabilities for x, in float64, as scikit-learn's classifiers give them.

        A model that ends in a sigmoid already outputs probabilities; any
        other output is read as logits: softmax over several outputs, the
        sigmoid of a single one. A single output (binary) gives (batch, 2)
        columns [P(0), P(1)]; several sigmoid outputs (multi-label) give
        each label's probability, (batch, labels); several logits give the
        softmax, (batch, classes). Computed with scipy.special's stable
        softmax and expit.
        """
        return self._probabilities(x)[0]

    def predict_classes(self, x):
        """The predicted class of every row, (batch,) int64: the most probable
        class (P(1) >= 0.5 for a single output); for several sigmoid outputs
        (multi-label), a (batch, labels) array of 0 / 1."""
        probabilities, multilabel = self._probabilities(x)
        if multilabel:
            return (probabilities >= 0.5).astype(np.int64)
        return np.argmax(probabilities, axis=1)

    def _probabilities(self, x):
        """(predict_proba's probabilities, whether they are multi-label)"""
        out = np.asarray(to_numpy(self.forward(x)), np.float64)
        if out.ndim != 2:
            raise ValueError(f"predict_proba needs outputs of shape (batch, outputs), got {out.shape}")
        last = self.layers[-1] if self.layers else None
        if getattr(last, "_act", getattr(last, "_code", None)) == kernels.SIGMOID:
            probabilities = out
        elif out.shape[1] == 1:
            probabilities = scipy.special.expit(out)
        else:
            return scipy.special.softmax(out, axis=1), False
        if out.shape[1] == 1:
            return np.hstack([1.0 - probabilities, probabilities]), False
        return probabilities, True

    def train_step(self, x, y, loss, optimizer, *, fused=None, l2=0.0, sample_weight=None):
        """One forward, loss, backward and update; returns the loss.

        `l2` is scikit-learn's `alpha`: 0.5 * l2 * sum(W ** 2) / batch is
        added to the loss (without "/ batch" under a sum reduction) and its
        gradient to every layer's weights; biases are not penalised.
        `sample_weight`: per-row weights for the loss (fastbp/training.py `fit`).

        For a stack of Linear layers trained by SGD, Adam or AdamW over this
        model's parameters this is one compiled call with no allocation (the
        fused step); the result equals the layer-by-layer path (`forward`, `loss`,
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
        if l2.__class__ is not float or not 0.0 <= l2 < math.inf:  # a plain float in range skips the call
            l2 = check_finite_float(l2, "l2", minimum=0.0)
        self._lock.acquire()
        try:
            if self.fused is not None and fused is not False:
                value = self.fused.step(x, y, loss, optimizer, l2, sample_weight)
                if value is not None:
                    return value
            if fused:
                raise self._not_fused(loss, optimizer, y)
            return _layer_path.train_step(self.layers, x, y, loss, optimizer, l2, sample_weight)
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

    def save(self, path, *, optimizer=None, schedule=None, epoch=None):
        """Write this model to `path` (.npz; layout in fastbp/checkpoint.py),
        with what resumes its training when given; as `fastbp.save`."""
        save(self, path, optimizer=optimizer, schedule=schedule, epoch=epoch)

    def to_torch(self):
        """An equivalent torch.nn.Sequential (needs torch)."""
        return to_torch(self)

    def evaluate(self, x, y, loss):
        """(loss, accuracy) on (x, y); accuracy is None for regression."""
        training.check_loss(loss)
        with self._lock:
            return self._evaluate(x, y, loss)

    def _evaluate(self, x, y, loss):
        pred = self._forward(x)
        return loss.forward(pred, y), training.accuracy(pred, y, loss)

    def fit(self, x, y, *, loss, optimizer, epochs=1, batch_size=None, shuffle=True, validation_data=None,
            validation_split=0.0, progress=True, rng=None, callback=None, fused=None, l2=0.0, schedule=None,
            early_stopping=None, metrics=None, initial_epoch=0, sample_weight=None, class_weight=None):
        """Train with mini-batch gradient descent; returns the history.

        Parameters are in fastbp/training.py `fit`, which this calls under
        the model's lock.
        """
        with self._lock:
            return training.fit(self, x, y, loss=loss, optimizer=optimizer, epochs=epochs,
                                batch_size=batch_size, shuffle=shuffle, validation_data=validation_data,
                                validation_split=validation_split, progress=progress, rng=rng,
                                callback=callback, fused=fused, l2=l2, schedule=schedule,
                                early_stopping=early_stopping, metrics=metrics, initial_epoch=initial_epoch,
                                sample_weight=sample_weight, class_weight=class_weight)


def save(model, path, *, optimizer=None, schedule=None, epoch=None):
    """Write `model` (a Sequential, or a single layer) to `path` (.npz; layout
    in fastbp/checkpoint.py), atomically; `fastbp.load(path)` reads it back.
    A Sequential is read under its lock, so saving while another thread
    trains it holds the parameters of one step.

    To resume training later, also give the `optimizer` (its hyper-parameters,
    state buffers and step count are kept), the `schedule` and `epoch`, the
    number of epochs done; `fastbp.load_training(path)` reads them back, and
    `fit(..., initial_epoch=epoch)` with the same seed continues to the same
    parameters, bit for bit, as a run that was never stopped.
    """
    if isinstance(model, Sequential):
        checkpoint.save(model.layers, path, model._lock, optimizer, schedule, epoch)
    else:
        checkpoint.save([model], path, None, optimizer, schedule, epoch)


class TrainingState(collections.namedtuple("TrainingState", "model optimizer schedule epoch")):
    """What `load_training` gives back: the model, and the optimizer, schedule
    and epochs done that were saved with it (None when not saved)."""


def load_training(path):
    """The model saved at `path` with what resumes its training, as a
    TrainingState(model, optimizer, schedule, epoch); checked as `load`
    checks, the optimizer built over the loaded model's parameters."""
    layers, training = checkpoint.load_training(path)
    model = Sequential(*layers)
    if training is None:
        return TrainingState(model, None, None, None)
    try:
        optimizer = (None if training["optimizer"] is None else
                     checkpoint.build_optimizer(training["optimizer"], training["arrays"], model.parameters()))
        schedule = None if training["schedule"] is None else checkpoint.build_schedule(training["schedule"])
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"{path} is not a valid fastbp checkpoint: malformed training entry "
                         f"({type(exc).__name__}: {exc})") from None
    return TrainingState(model, optimizer, schedule, training["epoch"])


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


