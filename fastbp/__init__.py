"""fastbp: backpropagation for dense neural networks, compiled with Numba.

The arithmetic lives in `fastbp.kernels` (pure compiled functions on arrays);
this package adds validation, state and the layer API of the seed notebooks.
"""
from ._environment import check_environment, check_installed

check_environment()  # before numba reads NUMBA_NUM_THREADS / NUMBA_DISABLE_JIT
check_installed(__path__)  # kernels/ is fastbp.kernels only once installed

from . import datasets, kernels  # noqa: E402
from ._cuda import to_numpy
from .conv import Conv2D, Flatten, Scale
from .datasets import batches, gaussian_blobs, load_csv, one_hot, save_csv, train_test_split
from .layers import Dropout, Layer, Linear, LinearLayer, Parameter, ReLU, Sigmoid, Tanh
from .losses import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from .model import Sequential, TrainingState, from_torch, load, load_training, save, to_torch
from .schedules import (Adaptive, CosineAnnealingLR, EarlyStopping, ExponentialLR, InvScaling, ReduceLROnPlateau,
                        StepLR, StopTraining)
from .training import NonFiniteLossError
from .onnx_export import to_onnx
from .optim import SGD, Adam, AdamW, NonFiniteUpdateError, clip_grad_norm_
from .threads import _from_environment, get_num_threads, set_deterministic, set_num_threads

__version__ = "0.1.0"

_from_environment()  # FASTBP_DETERMINISTIC=1

__all__ = [
    "kernels", "datasets", "gaussian_blobs", "one_hot", "load_csv", "save_csv", "train_test_split",
    "batches", "to_onnx", "load", "load_training", "TrainingState", "save", "from_torch", "to_torch", "to_numpy",
    "Layer", "Linear", "LinearLayer", "Parameter", "ReLU", "Sigmoid", "Tanh",
    "Conv2D", "Scale", "Flatten", "Dropout",
    "Sequential", "NonFiniteLossError", "MSELoss", "BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss",
    "SGD", "Adam", "AdamW", "clip_grad_norm_", "NonFiniteUpdateError",
    "StepLR", "ExponentialLR", "CosineAnnealingLR", "ReduceLROnPlateau", "InvScaling", "Adaptive",
    "EarlyStopping", "StopTraining",
    "set_num_threads", "get_num_threads", "set_deterministic",
]
