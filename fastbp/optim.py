"""Optimizers over a list of `Parameter`s, updating the layers' arrays in place
with torch's update rules."""
import numpy as np

from . import _cuda, kernels
from ._validation import check_finite_float
from .layers import Parameter


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
    return _cuda.is_device_array(param.value)


def flat_buffer(arrays):
    """The 1-D buffer that `arrays` tile exactly and in order, or None.

    A Sequential of Linear layers keeps all parameters (and all gradients) in
    one such buffer, which lets an optimizer update them in one kernel call.
    """
    if not all(type(a) is np.ndarray for a in arrays):
        return None
    base = arrays[0].base
    if base is None or base.ndim != 1:
        return None
    offset = 0
    for a in arrays:
        if a.base is not base or a.ctypes.data != base.ctypes.data + offset * base.itemsize:
            return None
        offset += a.size
    return base if offset == base.size else None


class Optimizer:
    def __init__(self, params):
        self.params = _check_params(params)
        self.flat_params = flat_buffer([p.value for p in self.params])
        self.flat_grads = flat_buffer([p.grad for p in self.params])
        if self.flat_grads is None:
            self.flat_params = None

    def zero_grad(self):
        for p in self.params:
            if _on_device(p):
                p.grad.copy_to_device(np.zeros(p.grad.shape, p.grad.dtype))
            else:
                p.grad.fill(0)


class SGD(Optimizer):
    """p -= lr * v, with v = momentum * v + grad (v = grad when momentum is 0)."""

    def __init__(self, params, lr, momentum=0.0):
        super().__init__(params)
        self.lr = check_finite_float(lr, "lr", minimum=0.0)
        self.momentum = check_finite_float(momentum, "momentum", minimum=0.0)
        if self.flat_params is not None:
            # one buffer for the whole model, updated by one kernel call
            self.flat_velocity = np.zeros(self.flat_params.size if self.momentum else 0,
                                          self.flat_params.dtype)
            return
        self._velocity = []
        for p in self.params:
            velocity = np.zeros(p.value.size if self.momentum else 0, p.value.dtype)
            self._velocity.append(_cuda.cuda().to_device(velocity) if _on_device(p) else velocity)
        # per CPU parameter, (value, grad, value 1-D, grad 1-D) as last seen:
        # making the 1-D views each step was ~0.4 us a parameter, a quarter of
        # its update at seed sizes
        self._flat_views = [None] * len(self.params)

    def step(self):
        if self.flat_params is not None:
            kernels.sgd_update(self.flat_params, self.flat_grads, self.lr, self.momentum,
                               self.flat_velocity)
            return
        for i, (p, v) in enumerate(zip(self.params, self._velocity)):
            value, grad = p.value, p.grad
            if not _cuda.is_device_array(value):
                views = self._flat_views[i]
                if views is None or views[0] is not value or views[1] is not grad:
                    views = self._flat_views[i] = (value, grad, value.reshape(-1), grad.reshape(-1))
                kernels.sgd_update(views[2], views[3], self.lr, self.momentum, v)
            else:
                from .kernels.cuda import optim as cuda_optim

                n = value.size
                cuda_optim.sgd_update(value.reshape(n), grad.reshape(n), self.lr, self.momentum, v)


class Adam(Optimizer):
    """torch.optim.Adam without weight decay."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        super().__init__(params)
        if any(_on_device(p) for p in self.params):
            raise RuntimeError("Adam runs on the CPU only for now; use SGD (with momentum) for a model "
                               "on 'cuda'")
        self.lr = check_finite_float(lr, "lr", minimum=0.0)
        self.betas = (check_finite_float(betas[0], "betas[0]", minimum=0.0, maximum=0.999999),
                      check_finite_float(betas[1], "betas[1]", minimum=0.0, maximum=0.999999))
        self.eps = check_finite_float(eps, "eps", positive=True)
        self.step_count = 0
        self._exp_avg = [np.zeros(p.value.size, p.value.dtype) for p in self.params]
        self._exp_avg_sq = [np.zeros(p.value.size, p.value.dtype) for p in self.params]

    def step(self):
        self.step_count += 1
        for p, m, v in zip(self.params, self._exp_avg, self._exp_avg_sq):
            kernels.adam_update(p.value.reshape(-1), p.grad.reshape(-1), self.lr, self.betas[0],
                                self.betas[1], self.eps, self.step_count, m, v)
