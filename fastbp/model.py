"""Sequential model: layers in order, a training step and a fit loop."""
import time

import numpy as np
from tqdm import tqdm

from . import _fused
from ._validation import as_float_array, check_positive_int
from .layers import Layer
from .losses import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, Loss
from .optim import Optimizer


class Sequential(Layer):
    """Layers applied in order; itself a layer (forward / backward / parameters)."""

    def __init__(self, *layers):
        for i, layer in enumerate(layers):
            if not (hasattr(layer, "forward") and hasattr(layer, "backward")):
                raise TypeError(f"layers[{i}] must have forward and backward, got {type(layer).__name__}")
        self.layers = list(layers)
        # A stack of Linear layers is packed into flat buffers so that
        # train_step and fit can run the whole network in one compiled call.
        self.fused = _fused.pack(self, self.layers)

    def __iter__(self):
        return iter(self.layers)

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, index):
        return self.layers[index]

    def __repr__(self):
        return "Sequential(\n" + "".join(f"  {layer!r},\n" for layer in self.layers) + ")"

    def parameters(self):
        return [p for layer in self.layers for p in layer.parameters()]

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, grad_out):
        for layer in reversed(self.layers):
            grad_out = layer.backward(grad_out)
        return grad_out

    def predict(self, x):
        """The network's output for x, (batch, out_features)."""
        return self.forward(x)

    def train_step(self, x, y, loss, optimizer):
        """One forward, loss, backward and update; returns the loss.

        For a stack of Linear layers trained by SGD (built on this model's
        `parameters()`) this is one compiled call with no allocation; the
        result equals `forward`, `loss`, `backward`, `step` to float rounding.
        Either way, `backward` overwrites the gradients.
        """
        if self.fused is not None:
            value = self.fused.step(x, y, loss, optimizer)
            if value is not None:
                return value
        value = loss.forward(self.forward(x), y)
        self.backward(loss.backward())
        optimizer.step()
        return value

    def _fused_args(self, x, y, loss, optimizer):
        if self.fused is None or not self.fused.uses(optimizer):
            return None
        x = self.fused.check_input(x)
        loss_args = self.fused.loss_args(loss, y, x.shape[0])
        return None if loss_args is None else (x, loss_args)

    def save(self, path):
        """Write this model to `path` (.npz; layout in fastbp/checkpoint.py).
        `fastbp.load(path)` reads it back."""
        from .checkpoint import save

        save(self, path)

    def to_torch(self):
        """An equivalent torch.nn.Sequential (needs torch)."""
        from .interop import to_torch

        return to_torch(self)

    def evaluate(self, x, y, loss):
        """(loss, accuracy) on (x, y); accuracy is None for regression."""
        pred = self.forward(x)
        return loss.forward(pred, y), accuracy(pred, y, loss)

    def fit(self, x, y, *, loss, optimizer, epochs=1, batch_size=None, shuffle=True,
            validation_data=None, progress=True, rng=None, callback=None):
        """Train with mini-batch gradient descent.

        Parameters
        ----------
        x : (n, in_features); y : targets for `loss`, n rows.
        batch_size : None (full batch, plain GD), 1 (SGD) or any size.
        shuffle : reshuffle the samples every epoch (with `rng`).
        validation_data : optional (x_val, y_val) evaluated after each epoch.
        progress : show a tqdm progress bar on stderr; only when stderr is a
            terminal, and only for runs longer than half a second.
        callback : optional f(epoch, history) called after each epoch.

        Returns
        -------
        history : dict of per-epoch lists "loss" (the epoch's batch losses
        combined in the loss's reduction: the mean over all samples for "mean",
        the sum for "sum" / "half_sum"; parameters change between batches),
        "accuracy" (classification, after the epoch), "val_loss",
        "val_accuracy", "seconds".
        """
        if not isinstance(loss, Loss):
            raise TypeError(f"loss must be a fastbp loss (e.g. fastbp.MSELoss()), got {type(loss).__name__}")
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a fastbp optimizer, got {type(optimizer).__name__}")
        x = np.asarray(x)
        y = np.asarray(y)
        if x.ndim != 2:
            raise ValueError(f"x must have shape (n, in_features), got {x.shape}")
        if y.shape[:1] != x.shape[:1]:
            raise ValueError(f"y must have {x.shape[0]} rows like x, got shape {y.shape}")
        n = x.shape[0]
        epochs = check_positive_int(epochs, "epochs")
        batch_size = n if batch_size is None else check_positive_int(batch_size, "batch_size")
        rng = np.random.default_rng(rng)
        history = {"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": [], "seconds": []}
        # Fused: data validated once, then each epoch is one compiled call.
        fused = self._fused_args(x, y, loss, optimizer)
        with tqdm(total=epochs, unit="epoch", disable=None if progress else True, delay=0.5,
                  leave=False) as bar:
            for epoch in range(epochs):
                start = time.perf_counter()
                order = rng.permutation(n) if shuffle else None
                if fused is not None:
                    total = self.fused.train_epoch(fused[0], fused[1], optimizer,
                                                   np.arange(n) if order is None else order, batch_size)
                else:
                    total = 0.0
                    for lo in range(0, n, batch_size):
                        idx = slice(lo, lo + batch_size) if order is None else order[lo:lo + batch_size]
                        batch_loss = self.train_step(x[idx], y[idx], loss, optimizer)
                        rows = min(lo + batch_size, n) - lo
                        total += batch_loss * rows if loss.reduction == "mean" else batch_loss
                history["seconds"].append(time.perf_counter() - start)
                history["loss"].append(total / n if loss.reduction == "mean" else total)
                history["accuracy"].append(accuracy(self.forward(x), y, loss))
                if validation_data is not None:
                    val_loss, val_acc = self.evaluate(*validation_data, loss)
                    history["val_loss"].append(val_loss)
                    history["val_accuracy"].append(val_acc)
                bar.update()
                bar.set_postfix(loss=f"{history['loss'][-1]:.4g}", refresh=False)
                if callback is not None:
                    callback(epoch, history)
        return history


def accuracy(pred, y, loss):
    """Fraction of correct predictions, or None when the task is not classification.

    Class indices or one-hot rows are compared with pred's arg-max; a single
    output column with a binary loss is thresholded (0.5 on probabilities,
    0 on logits).
    """
    y = np.asarray(y)
    if isinstance(loss, (BCELoss, BCEWithLogitsLoss)):
        threshold = 0.5 if isinstance(loss, BCELoss) else 0.0
        return float(np.mean((pred > threshold) == (y > 0.5)))
    if y.ndim == 1 and y.dtype.kind in "iu" and pred.ndim == 2:
        return float(np.mean(np.argmax(pred, axis=1) == y))
    if y.ndim == 2 and y.shape[1] > 1 and pred.shape == y.shape and (
            isinstance(loss, CrossEntropyLoss) or np.all((y == 0) | (y == 1))):
        return float(np.mean(np.argmax(pred, axis=1) == np.argmax(y, axis=1)))
    return None
