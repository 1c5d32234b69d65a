"""The one place the asv suite and the stand-alone probes in this folder take
their helpers from: the implementations of the same work (fastbp, textbook
numpy, torch eager, jitted JAX), built from one fastbp model so that they
start from equal parameters, and fastbp's timers."""
import numpy as np

from fastbp.cli.baselines import (NUMPY_ACTIVATIONS, NumpyMLP, jax_activation, jax_train_step,  # noqa: F401
                                   torch_train_step)
from fastbp.cli.bench import machine  # noqa: F401
from fastbp.cli.timing import best_us, build, median_us, repeated, side_by_side  # noqa: F401

IMPLS = ("fastbp", "numpy", "torch", "jax")

NETWORKS = {  # name -> widths, activations, batch
    "2-4-1 b8": ((2, 4, 1), ("relu", "sigmoid"), 8),
    "2-5-3 b210": ((2, 5, 3), ("sigmoid", "sigmoid"), 210),
    "784-256-256-10 b256": ((784, 256, 256, 10), ("relu", "relu", "identity"), 256),
}


def torch_threads():
    """Give torch the same thread count as numba and BLAS, and return torch."""
    import numba
    import torch

    torch.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    return torch


def dense_layer(batch, width, activation, seed=0):
    """A width x width fastbp Linear layer and a float32 input batch for it."""
    from fastbp import Linear

    layer = Linear(width, width, activation=activation, rng=seed)
    x = np.random.default_rng(seed + 1).standard_normal((batch, width)).astype(np.float32)
    return layer, x


def numpy_activation(name):
    return NUMPY_ACTIVATIONS[name]


def torch_activation(torch, name):
    return {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
            "identity": lambda z: z}[name]


def network(name, seed=0):
    widths, activations, batch = NETWORKS[name]
    return build(widths, activations, seed=seed), batch
