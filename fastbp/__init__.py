"""fastbp: backpropagation for dense neural networks, compiled with Numba.

The arithmetic lives in `fastbp.kernels` (pure compiled functions on arrays);
this package adds validation, state and the layer API of the seed notebooks.
"""
from . import datasets, kernels
from .datasets import gaussian_blobs, one_hot
from .layers import Layer, Linear, LinearLayer, Parameter, ReLU, Sigmoid, Tanh
from .losses import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from .model import Sequential
from .optim import SGD, Adam

__version__ = "0.1.0"

__all__ = [
    "kernels", "datasets", "gaussian_blobs", "one_hot",
    "Layer", "Linear", "LinearLayer", "Parameter", "ReLU", "Sigmoid", "Tanh",
    "Sequential", "MSELoss", "BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss",
    "SGD", "Adam",
]
