"""Losses: `forward(pred, target)` returns the loss as a Python float,
`backward()` returns d loss / d pred with pred's shape and dtype.
Defaults follow torch.nn's (reduction="mean").
"""
import numpy as np

from . import kernels
from ._cuda import as_device_array, as_device_labels, is_device_array
from ._cuda import empty as device_empty
from ._validation import as_float_array, check_choice, check_dtype, check_labels, float_dtype_of


def _device_dtype(pred):
    return check_dtype(pred.dtype, "pred's dtype")


class Loss:
    reductions = ("mean", "sum")

    def __init__(self, reduction="mean"):
        self.reduction = reduction
        self.pred = None
        self.target = None
        self._device_grad = None

    @property
    def reduction(self):
        return self._reduction_name

    @reduction.setter
    def reduction(self, value):
        # the kernels read the code, fit's history the name: both change together
        self._reduction = kernels.REDUCTIONS.index(check_choice(value, "reduction", self.reductions))
        self._reduction_name = value

    def __call__(self, pred, target):
        return self.forward(pred, target)

    def _check(self, pred, target):
        dtype = float_dtype_of(pred, "pred")
        pred = as_float_array(pred, "pred", dtype)
        target = as_float_array(target, "target", dtype, pred.shape)
        return pred, target

    def forward(self, pred, target):
        self._device_grad = None
        if is_device_array(pred):
            return self._forward_on_device(pred, target)
        self.pred, self.target = self._check(pred, target)
        return float(self._forward(self.pred.reshape(-1), self.target.reshape(-1), self._reduction))

    def _forward_on_device(self, pred, target):
        # one kernel gives the loss and its gradient; backward hands the gradient out
        from .kernels.cuda import losses as cuda_losses

        pred = as_device_array(pred, "pred", _device_dtype(pred))
        target = as_device_array(target, "target", pred.dtype, tuple(pred.shape))
        grad = device_empty(pred.shape, pred.dtype)
        n = int(np.prod(pred.shape))
        value = cuda_losses.elementwise_loss(self.code, pred.reshape(n), target.reshape(n),
                                             self._reduction, grad.reshape(n))
        self.pred, self.target, self._device_grad = pred, target, grad
        return value

    def backward(self):
        if self.pred is None:
            raise RuntimeError("backward called before forward: call loss(pred, target) first")
        if self._device_grad is not None:
            return self._device_grad
        grad = np.empty_like(self.pred)
        self._backward(self.pred.reshape(-1), self.target.reshape(-1), self._reduction,
                       grad.reshape(-1))
        return grad

    def fused_code(self, labels, last_activation):
        """The loss code (kernels/losses.py) the whole-network step computes
        this loss with, for class-index targets or not and the network's last
        activation; None when it cannot (then the model goes layer by layer).
        Only the classes that name a `code` themselves: a subclass may compute
        something else."""
        return type(self).__dict__.get("code")

    def __repr__(self):
        return f"{type(self).__name__}(reduction={self.reduction!r})"


class MSELoss(Loss):
    """Squared error (pred - target)^2, reduced by "mean" (torch's default),
    "sum", or "half_sum" (0.5 * sum, the seed notebooks' loss)."""

    reductions = ("mean", "sum", "half_sum")
    code = kernels.MSE
    _forward = staticmethod(kernels.mse_forward)
    _backward = staticmethod(kernels.mse_backward)


class BCELoss(Loss):
    """Binary cross-entropy on probabilities in [0, 1]; logs are clamped at
    -100 as in torch, so p = 0 or 1 gives a finite loss. On the GPU pred is not
    range-checked (that would copy it back): a value outside [0, 1] gives NaN."""

    code = kernels.BCE
    _forward = staticmethod(kernels.bce_forward)
    _backward = staticmethod(kernels.bce_backward)

    def fused_code(self, labels, last_activation):
        # the compiled step does not range-check pred: only a sigmoid output
        # is sure to be a probability
        return super().fused_code(labels, last_activation) if last_activation == kernels.SIGMOID else None

    def _check(self, pred, target):
        pred, target = super()._check(pred, target)
        if pred.size and (np.nanmin(pred) < 0 or np.nanmax(pred) > 1):
            raise ValueError(f"pred must hold probabilities in [0, 1], got values in "
                             f"[{np.nanmin(pred)}, {np.nanmax(pred)}]; use BCEWithLogitsLoss for logits")
        return pred, target


class BCEWithLogitsLoss(Loss):
    """Binary cross-entropy on logits: sigmoid and BCE in one stable formula."""

    code = kernels.BCE_WITH_LOGITS
    _forward = staticmethod(kernels.bce_with_logits_forward)
    _backward = staticmethod(kernels.bce_with_logits_backward)


class CrossEntropyLoss(Loss):
    """Softmax cross-entropy on logits (batch, classes) with targets given as
    class indices (batch,) or as class probabilities / one-hot rows (batch, classes)."""

    code = kernels.CROSS_ENTROPY_SOFT

    def fused_code(self, labels, last_activation):
        if type(self) is not CrossEntropyLoss:
            return None
        return kernels.CROSS_ENTROPY_LABELS if labels else kernels.CROSS_ENTROPY_SOFT

    def forward(self, pred, target):
        self._device_grad = None
        if is_device_array(pred):
            return self._forward_on_device(pred, target)
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

    def _forward_on_device(self, pred, target):
        from .kernels.cuda import losses as cuda_losses

        pred = as_device_array(pred, "pred", _device_dtype(pred), (None, None))
        grad = device_empty(pred.shape, pred.dtype)
        target_dtype = target.dtype if hasattr(target, "dtype") else np.asarray(target).dtype
        if np.dtype(target_dtype).kind in "iu":
            labels = as_device_labels(target, "target", pred.shape[0], pred.shape[1])
            value = cuda_losses.cross_entropy_loss(pred, labels, None, self._reduction, grad)
        else:
            target = as_device_array(target, "target", pred.dtype, tuple(pred.shape))
            value = cuda_losses.cross_entropy_loss(pred, None, target, self._reduction, grad)
        self.pred, self._device_grad = pred, grad
        return value

    def backward(self):
        if self.pred is None:
            raise RuntimeError("backward called before forward: call loss(pred, target) first")
        if self._device_grad is not None:
            return self._device_grad
        grad = np.empty_like(self.pred)
        if self._labels:
            kernels.softmax_cross_entropy_backward(self.pred, self.target, self._reduction, grad)
        else:
            kernels.soft_cross_entropy_backward(self.pred, self.target, self._reduction, grad)
        return grad
