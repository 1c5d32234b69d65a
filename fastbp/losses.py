"""Losses: `forward(pred, target)` returns the loss as a Python float,
`backward()` returns d loss / d pred with pred's shape and dtype.
Defaults follow torch.nn's (reduction="mean").
"""
import numpy as np

from . import kernels
from ._validation import as_float_array, check_choice, float_dtype_of


def check_labels(target, batch, classes):
    """Integer class indices as a (batch,) int64 array, each in [0, classes)."""
    labels = np.ascontiguousarray(target, dtype=np.int64)
    if labels.shape != (batch,):
        raise ValueError(f"target of class indices must have shape ({batch},), got {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise ValueError(f"target class indices must lie in [0, {classes - 1}], got "
                         f"values in [{labels.min()}, {labels.max()}]")
    return labels


class Loss:
    reductions = ("mean", "sum")

    def __init__(self, reduction="mean"):
        self.reduction = check_choice(reduction, "reduction", self.reductions)
        self._reduction = kernels.REDUCTIONS.index(reduction)
        self.pred = None
        self.target = None

    def __call__(self, pred, target):
        return self.forward(pred, target)

    def _check(self, pred, target):
        dtype = float_dtype_of(pred, "pred")
        pred = as_float_array(pred, "pred", dtype)
        target = as_float_array(target, "target", dtype, pred.shape)
        return pred, target

    def forward(self, pred, target):
        self.pred, self.target = self._check(pred, target)
        return float(self._forward(self.pred.reshape(-1), self.target.reshape(-1), self._reduction))

    def backward(self):
        if self.pred is None:
            raise RuntimeError("backward called before forward: call loss(pred, target) first")
        grad = np.empty_like(self.pred)
        self._backward(self.pred.reshape(-1), self.target.reshape(-1), self._reduction,
                       grad.reshape(-1))
        return grad

    def __repr__(self):
        return f"{type(self).__name__}(reduction={self.reduction!r})"


class MSELoss(Loss):
    """Squared error (pred - target)^2, reduced by "mean" (torch's default),
    "sum", or "half_sum" (0.5 * sum, the seed notebooks' loss)."""

    reductions = ("mean", "sum", "half_sum")
    _forward = staticmethod(kernels.mse_forward)
    _backward = staticmethod(kernels.mse_backward)


class BCELoss(Loss):
    """Binary cross-entropy on probabilities in [0, 1]; logs are clamped at
    -100 as in torch, so p = 0 or 1 gives a finite loss."""

    _forward = staticmethod(kernels.bce_forward)
    _backward = staticmethod(kernels.bce_backward)

    def _check(self, pred, target):
        pred, target = super()._check(pred, target)
        if pred.size and (np.nanmin(pred) < 0 or np.nanmax(pred) > 1):
            raise ValueError(f"pred must hold probabilities in [0, 1], got values in "
                             f"[{np.nanmin(pred)}, {np.nanmax(pred)}]; use BCEWithLogitsLoss for logits")
        return pred, target


class BCEWithLogitsLoss(Loss):
    """Binary cross-entropy on logits: sigmoid and BCE in one stable formula."""

    _forward = staticmethod(kernels.bce_with_logits_forward)
    _backward = staticmethod(kernels.bce_with_logits_backward)


class CrossEntropyLoss(Loss):
    """Softmax cross-entropy on logits (batch, classes) with targets given as
    class indices (batch,) or as class probabilities / one-hot rows (batch, classes)."""

    def forward(self, pred, target):
        dtype = float_dtype_of(pred, "pred")
        pred = as_float_array(pred, "pred", dtype, (None, None))
        target_arr = np.asarray(target)
        if target_arr.dtype.kind in "iu":
            labels = check_labels(target_arr, *pred.shape)
            self.pred, self.target, self._labels = pred, labels, True
            return float(kernels.softmax_cross_entropy_forward(pred, labels, self._reduction))
        target = as_float_array(target_arr, "target", dtype, pred.shape)
        self.pred, self.target, self._labels = pred, target, False
        return float(kernels.soft_cross_entropy_forward(pred, target, self._reduction))

    def backward(self):
        if self.pred is None:
            raise RuntimeError("backward called before forward: call loss(pred, target) first")
        grad = np.empty_like(self.pred)
        if self._labels:
            kernels.softmax_cross_entropy_backward(self.pred, self.target, self._reduction, grad)
        else:
            kernels.soft_cross_entropy_backward(self.pred, self.target, self._reduction, grad)
        return grad
