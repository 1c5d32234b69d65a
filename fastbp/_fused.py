"""The flat-buffer form of a Sequential of Linear layers, for kernels/network.py.

Packing moves every layer's weights, bias and gradients into views of two
flat buffers (values kept), so the layers keep working one by one while a
single compiled call can also train them all.
"""
import numba
import numpy as np

from . import kernels
from .kernels import network
from ._validation import as_float_array
from .layers import Linear
from ._validation import check_labels
from .losses import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from .optim import SGD


def pack(model, layers):
    """A FusedNetwork for `layers`, or None when they cannot be fused: not all
    Linear, mixed dtypes, mismatched widths, or a layer already packed by
    another model (whose buffers it must keep using)."""
    if not layers or not all(isinstance(layer, Linear) for layer in layers):
        return None
    if len({layer.dtype for layer in layers}) != 1 or any(layer.packed_by is not None for layer in layers):
        return None
    if any(a.out_features != b.in_features for a, b in zip(layers, layers[1:])):
        return None
    return FusedNetwork(model, layers)


def _kernel_ready(arr, dtype):
    """True when `arr` can go to a compiled kernel as it is: a writeable,
    aligned, C-contiguous 2-D ndarray of `dtype` (the types of every array the
    fused step was compiled for)."""
    return type(arr) is np.ndarray and arr.dtype == dtype and arr.ndim == 2 and arr.flags.carray


def _entry_point(dispatcher, args):
    """The compiled function behind `dispatcher` for these argument types,
    callable without the dispatcher's type resolution (~1 us of a 3 us step
    for 17 arguments). Only called with arguments of these exact types:
    `_kernel_ready` checks the arrays that come from the user, the rest are
    the network's own. None if numba compiled for other types than expected
    (the dispatcher then keeps doing the work)."""
    compiled = dispatcher.overloads.get(tuple(numba.typeof(a) for a in args))
    return None if compiled is None else compiled.entry_point


class FusedNetwork:
    def __init__(self, model, layers):
        self.dtype = layers[0].dtype
        rows, offset = [], 0
        for layer in layers:
            n_in, n_out, has_bias = layer.in_features, layer.out_features, layer.bias is not None
            rows.append([n_in, n_out, layer._act, int(has_bias), offset, offset + n_in * n_out if has_bias else 0])
            offset += n_in * n_out + (n_out if has_bias else 0)
        self.table = np.array(rows, np.int64)
        self.params = np.empty(offset, self.dtype)
        self.grads = np.zeros(offset, self.dtype)
        for layer, (n_in, n_out, _, has_bias, w_off, b_off) in zip(layers, rows):
            w_view = self.params[w_off:w_off + n_in * n_out].reshape(n_in, n_out)
            w_view[...] = layer.weights
            b_view = gb_view = None
            if has_bias:
                b_view = self.params[b_off:b_off + n_out]
                b_view[...] = layer.bias
                gb_view = self.grads[b_off:b_off + n_out]
            layer._bind(w_view, self.grads[w_off:w_off + n_in * n_out].reshape(n_in, n_out), b_view, gb_view)
            layer.packed_by = model
        self.n_in, self.n_out = layers[0].in_features, layers[-1].out_features
        self.last_activation = layers[-1]._act
        self._per_row = int(network.workspace_per_row(self.table))
        self.capacity = -1
        self._empty_labels = np.empty(0, np.int64)
        self._empty_target = np.empty((0, 0), self.dtype)
        self._step_entry = self._fast_loss = self._fast_code = self._fast_optimizer = None
        self._dtype = np.dtype(self.dtype)

    def uses(self, optimizer):
        """True when `optimizer` is a plain SGD over exactly these buffers
        (also when it was built on the layers before they were packed)."""
        return type(optimizer) is SGD and optimizer._adopt_flat(self.params)

    def _workspace(self, batch):
        # Grown to the largest batch seen, never per step: the kernels slice it.
        if batch > self.capacity:
            self.work = np.empty(max(batch, 1) * self._per_row, self.dtype)
            self.capacity = batch
        return self.work

    def loss_args(self, loss, y, batch):
        """(loss_code, reduction, target, labels) with y validated, or None when
        this loss is not fused (the caller then goes layer by layer)."""
        reduction = loss._reduction
        if isinstance(loss, CrossEntropyLoss):
            y_arr = np.asarray(y)
            if y_arr.dtype.kind in "iu":
                labels = check_labels(y_arr, batch, self.n_out)
                return network.CROSS_ENTROPY_LABELS, reduction, self._empty_target, labels
            code = network.CROSS_ENTROPY_SOFT
        elif type(loss) is MSELoss:
            code = network.MSE
        elif type(loss) is BCEWithLogitsLoss:
            code = network.BCE_WITH_LOGITS
        elif type(loss) is BCELoss and self.last_activation == kernels.SIGMOID:
            code = network.BCE  # a sigmoid output is a probability: no range check needed
        else:
            return None
        if not (_kernel_ready(y, self.dtype) and y.shape == (batch, self.n_out)):
            y = as_float_array(y, "target", self.dtype, (batch, self.n_out))
        return code, reduction, y, self._empty_labels

    def check_input(self, x):
        """x as the kernels take it, (batch, n_in) C-contiguous in this dtype."""
        if _kernel_ready(x, self.dtype) and x.shape[1] == self.n_in:
            return x
        return as_float_array(x, "x", self.dtype, (None, self.n_in))

    def step(self, x, y, loss, optimizer):
        """One fused training step's loss, or None when this call cannot be
        fused (the caller then goes layer by layer).

        The first branch is the steady state of a training loop (same loss and
        optimizer objects, float targets, arrays the kernel takes as they are)
        and skips everything else: at seed sizes the whole step costs ~3-5 us,
        so each check here is a visible share of it. It checks the types the
        compiled entry point trusts; the kernel itself checks the shapes and
        raises ShapeMismatch before changing anything, which sends the call
        down the checked path to grow the workspace or name the bad argument.
        `dtype is` may miss an equal dtype object, which only sends the call
        down the checked path below.
        """
        if (loss is self._fast_loss and optimizer is self._fast_optimizer
                and type(x) is np.ndarray and type(y) is np.ndarray
                and x.dtype is self._dtype and y.dtype is self._dtype
                and x.ndim == 2 and y.ndim == 2 and x.flags.carray and y.flags.carray):
            # the types the entry point was compiled for; the kernel checks the shapes
            try:
                return self._step_entry(self.table, self.params, self.grads, optimizer.flat_velocity, x,
                                        y, self._empty_labels, self._fast_code, loss._reduction,
                                        optimizer._lr, optimizer._momentum, self.work)
            except network.ShapeMismatch:
                pass  # a batch larger than the workspace, or wrong shapes to report: below
        if not self.uses(optimizer):
            return None
        x = self.check_input(x)
        loss_args = self.loss_args(loss, y, x.shape[0])
        if loss_args is None:
            return None
        code, reduction, target, labels = loss_args
        args = (self.table, self.params, self.grads, optimizer.flat_velocity, x, target, labels, code,
                reduction, optimizer._lr, optimizer._momentum, self._workspace(x.shape[0]))
        value = network.network_train_step(*args)
        if code != network.CROSS_ENTROPY_LABELS and _kernel_ready(x, self.dtype) and _kernel_ready(
                target, self.dtype):
            # the arguments the fast branch checks for have exactly these types
            self._step_entry = _entry_point(network.network_train_step, args)
            if self._step_entry is not None:
                self._fast_loss, self._fast_code, self._fast_optimizer = loss, code, optimizer
        return value

    def train_epoch(self, x, loss_args, optimizer, order, batch_size):
        code, reduction, target, labels = loss_args
        rows = min(batch_size, x.shape[0])
        x_batch = np.empty((rows, self.n_in), self.dtype)
        target_batch = np.empty((rows if target.shape[0] else 0, target.shape[1]), self.dtype)
        labels_batch = np.empty(rows if labels.shape[0] else 0, np.int64)
        return network.network_train_epoch(
            self.table, self.params, self.grads, optimizer.flat_velocity, x, target, labels, order,
            batch_size, code, reduction, optimizer._lr, optimizer._momentum, x_batch, target_batch,
            labels_batch, self._workspace(rows))
