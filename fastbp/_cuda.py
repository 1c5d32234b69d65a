"""Device dispatch for models on an NVIDIA GPU (numba.cuda, the `cuda` extra).

numba.cuda is imported on first use only. Arrays already on the GPU (numba
device arrays, or anything exposing ``__cuda_array_interface__``: CuPy, torch
CUDA tensors) are used without a copy; numpy input is copied over once.
"""
import sys

import numpy as np

from ._validation import _shape_text, as_float_array, check_labels

DEVICES = ("cpu", "cuda")


def cuda():
    """numba.cuda, or a RuntimeError saying why the GPU cannot be used."""
    try:
        from numba import cuda as numba_cuda
    except ImportError as exc:  # pragma: no cover - numba-cuda is a test dependency
        raise RuntimeError("device='cuda' needs numba-cuda: pip install 'fastbp[cuda]' "
                           f"({exc})") from None
    if not numba_cuda.is_available():
        raise RuntimeError("device='cuda' is unavailable: numba.cuda finds no usable NVIDIA GPU and "
                           "driver here (numba.cuda.is_available() is False; "
                           "NUMBA_ENABLE_CUDASIM=1 runs the CUDA kernels in numba's simulator)")
    return numba_cuda


def check_device(device):
    if device not in DEVICES:
        raise ValueError(f"device must be one of 'cpu', 'cuda'; got {device!r}")
    if device == "cuda":
        cuda()
    return device


def is_device_array(x):
    """True for GPU arrays. Never imports numba.cuda: if it is not imported,
    no numba device array can exist."""
    if type(x) is np.ndarray:
        return False
    if hasattr(x, "__cuda_array_interface__"):
        return True
    numba_cuda = sys.modules.get("numba.cuda")
    return numba_cuda is not None and numba_cuda.devicearray.is_cuda_ndarray(x)


def as_device_array(x, name, dtype, shape=None):
    """`x` as a C-contiguous device array of `dtype`: GPU arrays as they are
    (no copy; they must already have the dtype and layout), anything else
    validated like CPU input and copied to the GPU once."""
    numba_cuda = cuda()
    if not is_device_array(x):
        return numba_cuda.to_device(as_float_array(x, name, dtype, shape))
    arr = x if numba_cuda.devicearray.is_cuda_ndarray(x) else numba_cuda.as_cuda_array(x)
    if arr.dtype != dtype:
        raise TypeError(f"{name} must be a {np.dtype(dtype)} GPU array, got {arr.dtype} (cast it on the "
                        f"GPU, or pass a numpy array to have it converted while copied)")
    if shape is not None and (len(arr.shape) != len(shape) or any(
            want is not None and want != got for want, got in zip(shape, arr.shape))):
        raise ValueError(f"{name} must have shape {_shape_text(shape)}, got {tuple(arr.shape)}")
    if not arr.is_c_contiguous():
        raise ValueError(f"{name} must be C-contiguous on the GPU (fastbp does not copy GPU arrays)")
    return arr


def as_device_labels(x, name, batch, classes):
    numba_cuda = cuda()
    if is_device_array(x):
        arr = x if numba_cuda.devicearray.is_cuda_ndarray(x) else numba_cuda.as_cuda_array(x)
        if arr.dtype != np.int64 or tuple(arr.shape) != (batch,):
            raise TypeError(f"{name} must be int64 class indices of shape ({batch},) on the GPU, got "
                            f"{arr.dtype} {tuple(arr.shape)}")
        return arr
    return numba_cuda.to_device(check_labels(np.asarray(x), batch, classes))


def to_numpy(x):
    """Any fastbp result as a numpy array: GPU arrays are copied to the host."""
    if is_device_array(x):
        numba_cuda = cuda()
        arr = x if numba_cuda.devicearray.is_cuda_ndarray(x) else numba_cuda.as_cuda_array(x)
        return arr.copy_to_host()
    return np.asarray(x)


def empty(shape, dtype):
    return cuda().device_array(shape, dtype)
