"""Optimizers over a list of `Parameter`s, updating the layers' arrays in place
with torch's update rules.

Hyper-parameters (`lr`, `momentum`, `betas`, `eps`) may be changed between
steps, as a schedule or a warm-up does; each assignment is validated like the
constructor's argument, and state buffers follow (setting a momentum on an
SGD built without one starts a zero velocity, as torch's first momentum step
does).

`step()` applies an update only when every value it would write is finite;
otherwise it changes nothing and raises `NonFiniteUpdateError`.
"""
import numpy as np

from . import _cuda, kernels
from ._backend import backend_of
from .kernels import network as network_kernels
from ._validation import check_finite_float
from .layers import Parameter


class NonFiniteUpdateError(FloatingPointError):
    """An optimizer step would have written inf or NaN; nothing was changed."""


def _check_params(params):
    if hasattr(params, "parameters"):
        params = params.parameters()
    params = list(params)
    for i, p in enumerate(params):
        if not isinstance(p, Parameter):
            raise TypeError(f"params[{i}] must be a fastbp Parameter (from model.parameters()), "
                            f"got {type(p).__name__}")
    if not params:
        raise ValueError("params is empty: the optimizer has nothing to update")
    return params


def _on_device(param):
    return backend_of(param.value).device != "cpu"


class Optimizer:
    def __init__(self, params):
        self.params = _check_params(params)

    @property
    def lr(self):
        return self._lr

    @lr.setter
    def lr(self, value):
        self._lr = check_finite_float(value, "lr", minimum=0.0)

    def zero_grad(self):
        for p in self.params:
            backend_of(p.grad).fill_zero(p.grad)

    def step(self):
        """Update every parameter from its gradient; raises
        NonFiniteUpdateError, changing nothing, if a new value would not be finite."""
        if not self._step():
            raise NonFiniteUpdateError(
                f"{type(self).__name__}.step: the update would make a parameter or the optimizer's "
                f"state inf or NaN (gradients overflowed or the learning rate is too large); "
                f"nothing was changed")


class SGD(Optimizer):
    """p -= lr * v, with v = momentum * v + grad (v = grad when momentum is 0).

    This is torch's rule (its `dampening=0`, `nesterov=False`). Over exactly
    the parameters of a Sequential of Linear layers (in any order, whenever it
    was built), the model tells it so and it updates the model's flat
    buffers in one compiled call (`flat_params`, `flat_grads`,
    `flat_velocity`); otherwise it updates parameter by parameter.
    """

    def __init__(self, params, lr, momentum=0.0):
        super().__init__(params)
        self.lr = lr
        self._momentum = 0.0
        self._network = None  # the FusedNetwork whose flat buffers this updates, if any
        self.flat_params = self.flat_grads = None
        self.flat_velocity = np.zeros(0, self.params[0].value.dtype)
        # one velocity per parameter ((0,) while momentum is 0), or views of
        # flat_velocity once a network uses this optimizer
        self._velocity = [self._zeros(p, 0) for p in self.params]
        # per parameter, (value, grad, value 1-D, grad 1-D, backend) as last seen:
        # making the 1-D views each step costs more than a seed-sized update
        self._flat_views = [None] * len(self.params)
        self.momentum = momentum
        owner = getattr(self.params[0].layer, "_packed_in", None)
        if owner is not None:
            self._use_network(owner)

    @staticmethod
    def _zeros(p, size):
        return backend_of(p.value).zeros(size, p.value.dtype)

    @property
    def momentum(self):
        return self._momentum

    @momentum.setter
    def momentum(self, value):
        value = check_finite_float(value, "momentum", minimum=0.0)
        # The kernels read a velocity of every parameter's size when momentum
        # is on: a (0,) one would be written past its end. One that exists is
        # kept (momentum 0 leaves it alone), as torch keeps its buffer.
        if value and self._network is not None and self.flat_velocity.size == 0:
            self._set_flat_velocity(np.zeros(self.flat_params.size, self.flat_params.dtype))
        elif value:
            self._velocity = [v if v.size else self._zeros(p, p.value.size)
                              for p, v in zip(self.params, self._velocity)]
        self._momentum = value

    def _set_flat_velocity(self, velocity):
        self.flat_velocity = velocity
        if velocity.size:
            offsets = map(self._network.offset, self.params)
            self._velocity = [velocity[off:off + size] for off, size in offsets]

    def _use_network(self, network):
        """Update `network`'s flat buffers from now on, if this optimizer's
        parameters are exactly its parameters; the velocity so far is kept.
        True when it does."""
        if self._network is network and network.packed:
            return True
        if not network.covers(self.params):
            return False
        velocity = np.zeros(network.params.size if any(v.size for v in self._velocity) else 0, network.dtype)
        if velocity.size:
            for p, v in zip(self.params, self._velocity):
                off, size = network.offset(p)
                velocity[off:off + size] = _cuda.to_numpy(v).reshape(-1) if v.size else 0
        self._network = network
        self.flat_params, self.flat_grads = network.params, network.grads
        self._set_flat_velocity(velocity)
        return True

    def _step(self):
        lr, momentum = self._lr, self._momentum
        network = self._network
        if network is not None and network.packed:  # one buffer for the whole model, one kernel call
            return bool(network_kernels.network_sgd_update(self.flat_params, self.flat_grads, lr, momentum,
                                                           self.flat_velocity))
        if network is not None:  # the model gave its layers their own arrays back (Sequential.to)
            self._network = self.flat_params = self.flat_grads = None
            self._velocity = [np.array(v) for v in self._velocity]
            self.flat_velocity = np.zeros(0, self.flat_velocity.dtype)
        views = []
        for i, p in enumerate(self.params):
            value, grad = p.value, p.grad
            cached = self._flat_views[i]
            if cached is None or cached[0] is not value or cached[1] is not grad:
                backend = backend_of(value)
                cached = self._flat_views[i] = (value, grad, backend.flat(value), backend.flat(grad), backend)
            if not cached[4].sgd_update_is_finite(cached[2], cached[3], lr, momentum, self._velocity[i]):
                return False
            views.append(cached)
        for (_, _, value, grad, backend), v in zip(views, self._velocity):
            backend.sgd_update(value, grad, lr, momentum, v)
        return True


class Adam(Optimizer):
    """torch.optim.Adam without weight decay, in torch's order of operations."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        super().__init__(params)
        if any(_on_device(p) for p in self.params):
            raise RuntimeError("Adam runs on the CPU only for now; use SGD (with momentum) for a model "
                               "on 'cuda'")
        self.lr, self.betas, self.eps = lr, betas, eps
        self.step_count = 0
        self._exp_avg = [np.zeros(p.value.size, p.value.dtype) for p in self.params]
        self._exp_avg_sq = [np.zeros(p.value.size, p.value.dtype) for p in self.params]

    @property
    def betas(self):
        return self._betas

    @betas.setter
    def betas(self, value):
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            raise TypeError(f"betas must be a pair (beta1, beta2), got {value!r}")
        # beta < 1: at 1 the bias corrections 1 - beta**t are 0 and every step divides by them
        self._betas = (check_finite_float(value[0], "betas[0]", minimum=0.0, maximum=0.999999),
                       check_finite_float(value[1], "betas[1]", minimum=0.0, maximum=0.999999))

    @property
    def eps(self):
        return self._eps

    @eps.setter
    def eps(self, value):
        self._eps = check_finite_float(value, "eps", positive=True)

    def _step(self):
        step = self.step_count + 1
        args = [(p.value.reshape(-1), p.grad.reshape(-1), m, v)
                for p, m, v in zip(self.params, self._exp_avg, self._exp_avg_sq)]
        (beta1, beta2), lr, eps = self._betas, self._lr, self._eps
        for value, grad, m, v in args:
            if not kernels.adam_update_is_finite(value, grad, lr, beta1, beta2, eps, step, m, v):
                return False
        for value, grad, m, v in args:
            kernels.adam_update(value, grad, lr, beta1, beta2, eps, step, m, v)
        self.step_count = step
        return True
