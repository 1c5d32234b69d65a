"""The layer-by-layer path: forward and backward through a list of layers,
one training step, and epochs for `fit`.

It takes every model the fused path does not (activation layers, Conv2D,
Scale, Flatten, a model on the GPU, optimizers other than SGD over exactly
the model's parameters, losses the compiled step does not compute).

`fit` trains through one of two objects with the same interface, built once
per call from checked data: `FusedEpochs` (fastbp/_fused.py) when the whole
network runs as one compiled call, `LayerEpochs` here otherwise. Each holds
`x`, `y`, `n` and `batch_size`, and `run(order, interrupt, lrs, accuracy)`
trains one epoch, returning the summed loss, the first batch whose loss or
update was not finite (-1 when none was) and the count of right predictions
(None when not counted).
"""
import math

import numpy as np

from ._cuda import to_numpy
from .kernels import optim as optim_kernels
from .kernels.network import BINARY_PROBABILITY, LABELS_ARGMAX, NO_ACCURACY, ONE_HOT_ARGMAX


def forward(layers, x, training=False):
    """x through every layer; training=True runs each layer's training
    forward (`forward_pass`: dropout on), else its evaluation one."""
    if training:
        for layer in layers:
            x = layer.forward_pass(x, True)
        return x
    for layer in layers:
        x = layer.forward(x)
    return x


def backward(layers, grad_out):
    for layer in reversed(layers):
        grad_out = layer.backward(grad_out)
    return grad_out


def add_l2(layers, l2, loss, rows):
    """scikit-learn's L2 penalty (`alpha`) after a backward pass: every
    layer's weights' gradient grows by l2 * W / rows (l2 * W under a sum
    reduction), biases are not penalised; returns the loss term
    0.5 * l2 * sum(W ** 2) / rows (or / 1), as kernels/network.py adds it."""
    rows = rows if loss.reduction == "mean" else 1
    total = 0.0
    for layer in layers:
        for p in layer.parameters():
            if p.name == "weights":
                total += optim_kernels.add_l2(p.value.reshape(-1), p.grad.reshape(-1), l2 / rows)
    return optim_kernels.l2_loss_term(l2, total, rows)


def train_step(layers, x, y, loss, optimizer, l2=0.0, weights=None):
    """forward, loss, backward (with the L2 penalty `l2`, scikit-learn's
    `alpha`, when it is not 0) and `optimizer`'s update; returns the loss.
    A loss that is not finite stops before the backward pass, and an update
    that would not be finite changes nothing and returns inf (as the fused
    step does). `weights`: per-row weights for the loss, or None."""
    return _train_step(layers, x, y, loss, optimizer, l2, weights)[0]


def _train_step(layers, x, y, loss, optimizer, l2, weights):
    """train_step's (loss, the forward pass's prediction)."""
    pred = forward(layers, x, training=True)
    value = loss.forward(pred, y, weights)
    if not math.isfinite(value):
        return value, pred
    backward(layers, loss.backward())
    if l2:
        value += add_l2(layers, l2, loss, pred.shape[0])
    return (value if optimizer._step() else math.inf), pred


def count_correct(pred, y, code):
    """kernels/network.py count_correct's rule (`code`) on arrays: how many of
    pred's (B, C) predictions are right against y's rows (B,) or (B, C); None
    when pred's shape does not fit the rule (a layer-path model may output
    anything)."""
    pred, y = to_numpy(pred), to_numpy(y)
    if code == NO_ACCURACY or pred.ndim != 2:
        return None
    if code == LABELS_ARGMAX:
        return int(np.count_nonzero(np.argmax(pred, axis=1) == y))
    if pred.shape != y.shape:
        return None
    if code == ONE_HOT_ARGMAX:
        return int(np.count_nonzero(np.argmax(pred, axis=1) == np.argmax(y, axis=1)))
    threshold = 0.5 if code == BINARY_PROBABILITY else 0.0
    return int(np.count_nonzero((pred > threshold) == (y > 0.5)))


class LayerEpochs:
    def __init__(self, layers, x, y, loss, optimizer, batch_size, l2=0.0, weights=None):
        self.layers, self.loss, self.optimizer, self.x, self.y, self.l2 = layers, loss, optimizer, x, y, l2
        self.weights = weights
        self.n = x.shape[0]
        self.batch_size = self.n if batch_size is None else batch_size

    def run(self, order, interrupt, lrs=None, accuracy=NO_ACCURACY):
        """One epoch over the rows in `order` (None: as stored), one
        `train_step` a batch; `lrs`: a learning rate per batch, or None for
        the optimizer's; `accuracy`: what FusedEpochs.run counts, counted
        alike. A Ctrl-C (`interrupt`) takes effect between two steps."""
        x, y, n, batch_size, loss = self.x, self.y, self.n, self.batch_size, self.loss
        total = 0.0
        correct = None if accuracy == NO_ACCURACY else 0
        for lo in range(0, n, batch_size):
            idx = slice(lo, lo + batch_size) if order is None else order[lo:lo + batch_size]
            if lrs is not None:
                self.optimizer.lr = lrs[lo // batch_size]
            batch_loss, pred = _train_step(self.layers, x[idx], y[idx], loss, self.optimizer, self.l2,
                                           None if self.weights is None else self.weights[idx])
            if not math.isfinite(batch_loss):
                return batch_loss, lo // batch_size, correct
            rows = min(lo + batch_size, n) - lo
            total += batch_loss * rows if loss.reduction == "mean" else batch_loss
            if correct is not None:
                batch_correct = count_correct(pred, y[idx], accuracy)
                correct = None if batch_correct is None else correct + batch_correct
            interrupt.raise_if_pending()
        return total, -1, correct
