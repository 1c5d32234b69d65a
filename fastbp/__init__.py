"""fastbp: backpropagation for dense neural networks, compiled with Numba.

The arithmetic lives in `fastbp.kernels` (pure compiled functions on arrays);
this package adds validation, state and the layer API of the seed notebooks.
"""
from . import datasets, kernels
from .conv import Conv2D, Flatten, Scale
from .datasets import gaussian_blobs, one_hot
from .layers import Layer, Linear, LinearLayer, Parameter, ReLU, Sigmoid, Tanh
from .losses import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from .model import Sequential
from .optim import SGD, Adam
from .threads import get_num_threads, set_num_threads

__version__ = "0.1.0"

__all__ = [
    "kernels", "datasets", "gaussian_blobs", "one_hot",
    "Layer", "Linear", "LinearLayer", "Parameter", "ReLU", "Sigmoid", "Tanh",
    "Conv2D", "Scale", "Flatten",
    "Sequential", "MSELoss", "BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss",
    "SGD", "Adam", "set_num_threads", "get_num_threads",
]
