"""Optimizers over a list of `Parameter`s, updating the layers' arrays in place
with torch's update rules (torch.optim.SGD, Adam, AdamW).

Hyper-parameters (`lr`, `momentum`, `betas`, `weight_decay`, ...) may be
changed between steps, as a schedule or a warm-up does; each assignment is
validated like the constructor's argument, and state buffers follow (setting
a momentum on an SGD built without one starts a zero velocity, as torch's
first momentum step does).

Every optimizer goes through one compiled update (kernels/optim.py `update`):
over exactly the parameters of a Sequential of Linear layers (in any order,
whenever the optimizer was built), the model tells it so and it updates the
model's flat buffers in one call, gradient clipping included; otherwise it
updates parameter by parameter with the same arithmetic.

`step()` applies an update only when every value it would write is finite;
otherwise it changes nothing and raises `NonFiniteUpdateError`.
"""
import math

import numpy as np

from . import _cuda
from ._backend import backend_of
from .kernels import network as network_kernels
from .kernels import optim as optim_kernels
from .kernels.optim import (BETA1, BETA2, DECOUPLED_WEIGHT_DECAY, EPS, LR, MAX_GRAD_NORM, MOMENTUM,
                            NESTEROV, WEIGHT_DECAY)
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


def _hyper_property(index, name, doc, **limits):
    """A validated hyper-parameter stored in the vector the kernels read."""
    def get(self):
        return float(self.hyper[index])

    def set(self, value):
        value = check_finite_float(value, name, **limits)
        self._check_hyper(index, value)
        self.hyper[index] = value
        self._hyper_changed()

    return property(get, set, doc=doc)


class Optimizer:
    """What every fastbp optimizer has: `params`, the hyper-parameter vector
    `hyper` (float64, read by kernels/optim.py's names), up to two state
    buffers per parameter, `step_count`, and `max_grad_norm`.

    Subclasses set `kind` (kernels/optim.py) and `_state_used()`, which says
    which of the two state buffers the current hyper-parameters need.
    """

    kind = None

    def __init__(self, params, max_grad_norm=None):
        self.params = _check_params(params)
        self.hyper = np.zeros(optim_kernels.HYPER_SIZE)
        self.step_count = 0
        self._network = None  # the FusedNetwork whose flat buffers this updates, if any
        self.flat_params = self.flat_grads = None
        dtype = self.params[0].value.dtype
        self._empty = np.zeros(0, dtype)
        self.flat_state = (self._empty, self._empty)
        # per parameter, its two state buffers ((0,), on the parameter's
        # device, while unused), or views of flat_state once a network uses
        # this optimizer
        self._state = [(empty, empty) for empty in (backend_of(p.value).zeros(0, dtype) for p in self.params)]
        # per parameter, (value, grad, value 1-D, grad 1-D, backend) as last seen:
        # making the 1-D views each step costs more than a seed-sized update
        self._flat_views = [None] * len(self.params)
        self._building = True
        self.max_grad_norm = max_grad_norm

    def _finish_init(self):
        """Called last by each subclass's __init__: state buffers, and the
        model's flat buffers when the parameters are packed in one."""
        self._building = False
        self._hyper_changed()
        owner = getattr(self.params[0].layer, "_packed_in", None)
        if owner is not None:
            self._use_network(owner)

    lr = _hyper_property(LR, "lr", "learning rate", minimum=0.0)

    @property
    def max_grad_norm(self):
        """Clip the gradients to this global norm before each update
        (torch.nn.utils.clip_grad_norm_'s rule), or None."""
        value = self.hyper[MAX_GRAD_NORM]
        return None if value == 0.0 else float(value)

    @max_grad_norm.setter
    def max_grad_norm(self, value):
        self.hyper[MAX_GRAD_NORM] = 0.0 if value is None else check_finite_float(
            value, "max_grad_norm", positive=True)
        self._hyper_changed()

    def _state_used(self):
        return (False, False)

    def _check_hyper(self, index, value):
        """Raise before hyper[index] = value when the combination is refused."""

    def _hyper_changed(self):
        """Start a zero buffer for state the hyper-parameters now need. One
        that exists is kept (momentum 0 leaves the velocity alone), as torch
        keeps its buffer."""
        if self._building:
            return
        self._check_device()
        used = self._state_used()
        if self._network is not None:
            size = self.flat_params.size
            if any(want and s.size == 0 for want, s in zip(used, self.flat_state)):
                self._set_flat_state(tuple(s if s.size or not want else np.zeros(size, self.flat_params.dtype)
                                           for want, s in zip(used, self.flat_state)))
            return
        self._state = [tuple(s if s.size or not want else backend_of(p.value).zeros(p.value.size, p.value.dtype)
                             for want, s in zip(used, state))
                       for p, state in zip(self.params, self._state)]

    def _check_device(self):
        """Raise when a parameter lives on the GPU and these settings have no GPU kernel."""
        if not any(backend_of(p.value).device != "cpu" for p in self.params):
            return
        unsupported = self._cpu_only()
        if unsupported:
            raise RuntimeError(f"{unsupported} runs on the CPU only for now; on 'cuda' use SGD with lr and "
                               f"momentum")

    def _cpu_only(self):
        """The settings, in words, that the GPU has no kernel for ("" when none)."""
        return f"{type(self).__name__} with max_grad_norm" if self.hyper[MAX_GRAD_NORM] else ""

    def _set_flat_state(self, state):
        self.flat_state = state
        offsets = [self._network.offset(p) for p in self.params]
        self._state = [tuple(s[off:off + size] if s.size else self._empty for s in state)
                       for off, size in offsets]

    def _use_network(self, network):
        """Update `network`'s flat buffers from now on, if this optimizer's
        parameters are exactly its parameters; the state so far is kept.
        True when it does."""
        if self._network is network and network.packed:
            return True
        if not network.covers(self.params):
            return False
        flat = []
        for k in range(2):
            if not any(state[k].size for state in self._state):
                flat.append(self._empty)
                continue
            buffer = np.zeros(network.params.size, network.dtype)
            for p, state in zip(self.params, self._state):
                off, size = network.offset(p)
                buffer[off:off + size] = _cuda.to_numpy(state[k]).reshape(-1) if state[k].size else 0
            flat.append(buffer)
        self._network = network
        self.flat_params, self.flat_grads = network.params, network.grads
        self._set_flat_state(tuple(flat))
        return True

    def _leave_network(self):
        """The model gave its layers their own arrays back (Sequential.to):
        keep the state as per-parameter copies."""
        self._network = self.flat_params = self.flat_grads = None
        self._state = [tuple(np.array(s) for s in state) for state in self._state]
        self.flat_state = (self._empty, self._empty)

    def config(self):
        """The constructor arguments that rebuild this optimizer (checkpoints)."""
        return {"lr": self.lr, "max_grad_norm": self.max_grad_norm}

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

    def _step(self):
        step = self.step_count + 1
        network = self._network
        if network is not None and network.packed:  # one buffer for the whole model, one kernel call
            done = network_kernels.network_update(network.table, self.flat_params, self.flat_grads,
                                                  self.flat_state[0], self.flat_state[1], self.kind,
                                                  self.hyper, step)
        else:
            if network is not None:
                self._leave_network()
            done = self._step_each(step)
        if done:
            self.step_count = step
        return bool(done)

    def _step_each(self, step):
        views = []
        for i, p in enumerate(self.params):
            value, grad = p.value, p.grad
            cached = self._flat_views[i]
            if cached is None or cached[0] is not value or cached[1] is not grad:
                backend = backend_of(value)
                cached = self._flat_views[i] = (value, grad, backend.flat(value), backend.flat(grad), backend)
            views.append(cached)
        if self.hyper[MAX_GRAD_NORM]:
            _clip([view[3] for view in views], self.hyper[MAX_GRAD_NORM])
        kind, hyper = self.kind, self.hyper
        for (_, _, value, grad, backend), (s0, s1) in zip(views, self._state):
            if not backend.update_is_finite(kind, hyper, step, value, grad, s0, s1):
                return False
        for (_, _, value, grad, backend), (s0, s1) in zip(views, self._state):
            backend.update(kind, hyper, step, value, grad, s0, s1)
        return True

    # pickling and copy.deepcopy: the state as plain per-parameter arrays; a
    # model restored beside this optimizer tells it its new flat buffers at
    # the next fused step
    def __getstate__(self):
        state = self.__dict__.copy()
        state.update(_network=None, flat_params=None, flat_grads=None, flat_state=(self._empty, self._empty),
                     _flat_views=[None] * len(self.params),
                     _state=[tuple(np.array(_cuda.to_numpy(s)) for s in pair) for pair in self._state])
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        owner = getattr(self.params[0].layer, "_packed_in", None)
        if owner is not None:
            self._use_network(owner)


class SGD(Optimizer):
    """Stochastic gradient descent, torch.optim.SGD's rule (dampening 0):

        g = grad + weight_decay * p
        v = momentum * v + g                      (v = g at the first step)
        p -= lr * (g + momentum * v if nesterov else v)

    `nesterov=True` follows torch's formula. scikit-learn's
    (velocity = momentum * velocity - lr * grad; p += momentum * velocity -
    lr * grad) is the same update while lr stays constant.
    """

    kind = optim_kernels.SGD

    def __init__(self, params, lr, momentum=0.0, nesterov=False, weight_decay=0.0, max_grad_norm=None):
        super().__init__(params, max_grad_norm)
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.nesterov = nesterov
        self._finish_init()

    momentum = _hyper_property(MOMENTUM, "momentum", "momentum factor", minimum=0.0)
    weight_decay = _hyper_property(WEIGHT_DECAY, "weight_decay", "L2 penalty added to the gradient",
                                   minimum=0.0)

    @property
    def nesterov(self):
        return bool(self.hyper[NESTEROV])

    @nesterov.setter
    def nesterov(self, value):
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"nesterov must be True or False, got {type(value).__name__} {value!r}")
        self._check_hyper(NESTEROV, float(value))
        self.hyper[NESTEROV] = float(value)
        self._hyper_changed()

    def _check_hyper(self, index, value):
        nesterov = value if index == NESTEROV else self.hyper[NESTEROV]
        momentum = value if index == MOMENTUM else self.hyper[MOMENTUM]
        if nesterov and not momentum:
            raise ValueError("nesterov=True needs a momentum > 0 (as in torch); got momentum 0")

    def _state_used(self):
        return (self.hyper[MOMENTUM] != 0.0, False)

    def config(self):
        return {**super().config(), "momentum": self.momentum, "nesterov": self.nesterov,
                "weight_decay": self.weight_decay}

    def _cpu_only(self):
        words = [name for name, index in (("nesterov", NESTEROV), ("weight_decay", WEIGHT_DECAY),
                                          ("max_grad_norm", MAX_GRAD_NORM)) if self.hyper[index]]
        return f"SGD with {' and '.join(words)}" if words else ""

    @property
    def flat_velocity(self):
        """The velocity over the model's flat buffer ((0,) without momentum)."""
        return self.flat_state[0]


class Adam(Optimizer):
    """torch.optim.Adam (without amsgrad), in torch's order of operations;
    `weight_decay` adds weight_decay * p to the gradient, as torch's does."""

    kind = optim_kernels.ADAM
    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, max_grad_norm=None):
        super().__init__(params, max_grad_norm)
        self.hyper[DECOUPLED_WEIGHT_DECAY] = float(self._decoupled)
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self._finish_init()

    weight_decay = _hyper_property(WEIGHT_DECAY, "weight_decay", "weight decay", minimum=0.0)
    eps = _hyper_property(EPS, "eps", "term added to the denominator", positive=True)

    @property
    def betas(self):
        return (float(self.hyper[BETA1]), float(self.hyper[BETA2]))

    @betas.setter
    def betas(self, value):
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            raise TypeError(f"betas must be a pair (beta1, beta2), got {value!r}")
        # beta < 1: at 1 the bias corrections 1 - beta**t are 0 and every step divides by them
        beta1 = check_finite_float(value[0], "betas[0]", minimum=0.0, maximum=0.999999)
        beta2 = check_finite_float(value[1], "betas[1]", minimum=0.0, maximum=0.999999)
        self.hyper[BETA1], self.hyper[BETA2] = beta1, beta2
        self._hyper_changed()

    def _state_used(self):
        return (True, True)

    def config(self):
        return {**super().config(), "betas": list(self.betas), "eps": self.eps, "weight_decay": self.weight_decay}

    def _cpu_only(self):
        return "Adam"


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay, p *= 1 - lr *
    weight_decay before each Adam step (torch's default weight_decay 0.01)."""

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, max_grad_norm=None):
        super().__init__(params, lr, betas, eps, weight_decay, max_grad_norm)

    def _cpu_only(self):
        return "AdamW"


def clip_grad_norm_(params, max_norm):
    """Scale the gradients of `params` in place so that their global norm is
    at most `max_norm` (torch.nn.utils.clip_grad_norm_'s rule); returns the
    norm before clipping. For hand-written loops; an optimizer built with
    `max_grad_norm` does the same inside its compiled update."""
    params = _check_params(params)
    max_norm = check_finite_float(max_norm, "max_norm", positive=True)
    if any(backend_of(p.grad).device != "cpu" for p in params):
        raise RuntimeError("clip_grad_norm_ runs on the CPU only for now")
    return math.sqrt(_clip([p.grad.reshape(-1) for p in params], max_norm))


def _clip(grads, max_norm):
    """Scale the flat `grads` in place to a global norm of at most max_norm;
    returns their sum of squares before. The sums are added in the order
    given, as kernels/network.py network_update adds the flat buffer's."""
    total = 0.0
    for grad in grads:
        total += optim_kernels.sum_of_squares(grad)
    coef = optim_kernels.clip_coefficient(total, max_norm)
    if coef < 1.0:
        for grad in grads:
            optim_kernels.scale(grad, coef)
    return total
