"""The device seam: one backend object per device, with the same methods, each
delegating to kernels/ (CPU) or kernels/cuda/ (GPU).

The device is a property of the data: `backend_of(array)` gives the backend
an array lives on, `backend(device)` the one a layer was moved to, and the
layers, losses and optimizers call its methods without asking which it is.
The CUDA backend imports numba.cuda only when first used.
"""
import numpy as np

from . import _cuda, kernels
from ._validation import as_float_array, check_dtype, check_labels, float_dtype_of, numeric_array


class CPU:
    device = "cpu"

    # -- arrays -------------------------------------------------------------------
    @staticmethod
    def input(x, name, dtype, shape=None):
        """`x` as a C-contiguous array of `dtype` on this device, checked."""
        return as_float_array(x, name, dtype, shape)

    @staticmethod
    def float_dtype(x, name):
        """The float dtype `x` is computed in (float32 stays, anything else float64)."""
        return float_dtype_of(x, name)

    @staticmethod
    def labels(target, batch, classes):
        return check_labels(numeric_array(target, "target"), batch, classes)

    @staticmethod
    def is_labels(target):
        return numeric_array(target, "target").dtype.kind in "iu"

    empty = staticmethod(np.empty)

    @staticmethod
    def zeros(size, dtype):
        return np.zeros(size, dtype)

    @staticmethod
    def flat(arr):
        return arr.reshape(-1)

    @staticmethod
    def fill_zero(arr):
        arr.fill(0)

    @staticmethod
    def take(arr):
        """A copy of `arr` (from either device) on this device."""
        return _cuda.to_numpy(arr).copy()

    @staticmethod
    def assign(target, value, name, dtype, shape):
        """Copy `value` (from either device) into `target`, checked."""
        target[...] = as_float_array(_cuda.to_numpy(value), name, dtype, shape)

    @staticmethod
    def check_probabilities(pred):
        if pred.size and (np.nanmin(pred) < 0 or np.nanmax(pred) > 1):
            raise ValueError(f"pred must hold probabilities in [0, 1], got values in "
                             f"[{np.nanmin(pred)}, {np.nanmax(pred)}]; use BCEWithLogitsLoss for logits")

    # -- kernels: kernels/'s names and contracts ------------------------------------
    dense_forward = staticmethod(kernels.dense_forward)
    dense_backward = staticmethod(kernels.dense_backward)
    activation_forward = staticmethod(kernels.activation_forward)
    activation_backward = staticmethod(kernels.activation_backward)
    update = staticmethod(kernels.update)
    update_is_finite = staticmethod(kernels.update_is_finite)

    # loss code -> (forward, backward): on flat arrays, and on (B, C) rows
    _ELEMENTWISE = {
        kernels.MSE: (kernels.mse_forward, kernels.mse_backward),
        kernels.BCE: (kernels.bce_forward, kernels.bce_backward),
        kernels.BCE_WITH_LOGITS: (kernels.bce_with_logits_forward, kernels.bce_with_logits_backward),
    }
    _ROWS = {
        kernels.CROSS_ENTROPY_LABELS: (kernels.softmax_cross_entropy_forward,
                                       kernels.softmax_cross_entropy_backward),
        kernels.CROSS_ENTROPY_SOFT: (kernels.soft_cross_entropy_forward, kernels.soft_cross_entropy_backward),
    }

    @classmethod
    def loss_forward(cls, code, pred, target, reduction, weights=None):
        """(the loss, its gradient or None when `loss_backward` computes it
        later): the gradient is only computed when backward asks for it.
        `weights`: per-row weights (batch,) float64, or None."""
        if weights is not None:
            rows = pred.reshape(pred.shape[0], -1)
            grad = np.empty_like(rows)
            labels = target if code == kernels.CROSS_ENTROPY_LABELS else _NO_LABELS
            floats = _NO_TARGET[pred.dtype.type] if code == kernels.CROSS_ENTROPY_LABELS else target.reshape(
                rows.shape)
            value = kernels.weighted_loss_forward_backward(code, reduction, rows, floats, labels, weights, grad)
            return float(value), grad.reshape(pred.shape)
        if code in cls._ELEMENTWISE:
            return float(cls._ELEMENTWISE[code][0](pred.reshape(-1), target.reshape(-1), reduction)), None
        return float(cls._ROWS[code][0](pred, target, reduction)), None

    @classmethod
    def loss_backward(cls, code, pred, target, reduction):
        grad = np.empty_like(pred)
        if code in cls._ELEMENTWISE:
            cls._ELEMENTWISE[code][1](pred.reshape(-1), target.reshape(-1), reduction, grad.reshape(-1))
        else:
            cls._ROWS[code][1](pred, target, reduction, grad)
        return grad


_NO_LABELS = np.empty(0, np.int64)
_NO_TARGET = {np.float32: np.empty((0, 0), np.float32), np.float64: np.empty((0, 0), np.float64)}


class CUDA:
    """kernels/cuda/ behind CPU's methods; GPU arrays are used without a copy,
    numpy input is copied over once (fastbp/_cuda.py)."""

    device = "cuda"

    @staticmethod
    def input(x, name, dtype, shape=None):
        return _cuda.as_device_array(x, name, dtype, None if shape is None else tuple(shape))

    @staticmethod
    def float_dtype(x, name):
        return check_dtype(x.dtype, f"{name}'s dtype")

    @staticmethod
    def labels(target, batch, classes):
        return _cuda.as_device_labels(target, "target", batch, classes)

    @staticmethod
    def is_labels(target):
        dtype = target.dtype if hasattr(target, "dtype") else np.asarray(target).dtype
        return np.dtype(dtype).kind in "iu"

    @staticmethod
    def empty(shape, dtype):
        return _cuda.empty(shape, dtype)

    @staticmethod
    def zeros(size, dtype):
        return _cuda.cuda().to_device(np.zeros(size, dtype))

    @staticmethod
    def flat(arr):
        return arr.reshape(int(np.prod(arr.shape)))

    @staticmethod
    def fill_zero(arr):
        arr.copy_to_device(np.zeros(arr.shape, arr.dtype))

    @staticmethod
    def take(arr):
        return _cuda.cuda().to_device(np.ascontiguousarray(_cuda.to_numpy(arr)))

    @staticmethod
    def assign(target, value, name, dtype, shape):
        target.copy_to_device(_cuda.as_device_array(value, name, dtype, shape))

    @staticmethod
    def check_probabilities(pred):
        pass  # would copy pred back; a value outside [0, 1] gives NaN instead

    @staticmethod
    def _dense():
        from .kernels.cuda import dense

        return dense

    def dense_forward(self, *args):
        self._dense().dense_forward(*args)

    def dense_backward(self, *args):
        self._dense().dense_backward(*args)

    def activation_forward(self, *args):
        self._dense().activation_forward(*args)

    def activation_backward(self, *args):
        self._dense().activation_backward(*args)

    @staticmethod
    def update(kind, hyper, step, param, grad, state0, state1):
        """SGD with lr and momentum (the optimizers refuse anything else on
        the GPU when they are built or changed)."""
        from .kernels.cuda import optim

        optim.sgd_update(param, grad, hyper[kernels.LR], hyper[kernels.MOMENTUM], state0)

    @staticmethod
    def update_is_finite(*args):
        return True  # not checked on the GPU: it would copy a flag back every step

    @staticmethod
    def loss_forward(code, pred, target, reduction, weights=None):
        """One kernel gives the loss and its gradient: (loss, gradient)."""
        if weights is not None:
            raise RuntimeError("per-row weights (sample_weight, class_weight) run on the CPU only for now")
        from .kernels.cuda import losses

        grad = _cuda.empty(pred.shape, pred.dtype)
        if code == kernels.CROSS_ENTROPY_LABELS:
            value = losses.cross_entropy_loss(pred, target, None, reduction, grad)
        elif code == kernels.CROSS_ENTROPY_SOFT:
            value = losses.cross_entropy_loss(pred, None, target, reduction, grad)
        else:
            n = int(np.prod(pred.shape))
            value = losses.elementwise_loss(code, pred.reshape(n), target.reshape(n), reduction,
                                            grad.reshape(n))
        return value, grad


CPU_BACKEND, CUDA_BACKEND = CPU(), CUDA()


def backend_of(x):
    """The backend of the device `x` lives on."""
    return CUDA_BACKEND if _cuda.is_device_array(x) else CPU_BACKEND


def backend(device):
    """The backend for a device name ("cpu" or "cuda"), checked."""
    return CUDA_BACKEND if _cuda.check_device(device) == "cuda" else CPU_BACKEND
