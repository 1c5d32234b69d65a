"""The flat-buffer form of a Sequential of Linear layers, for kernels/network.py.

`FusedNetwork` is the one owner of the flat buffers: `pack` moves every
layer's weights, bias and gradients into views of two flat buffers (values
kept), so the layers keep working one by one while a single compiled call can
also train them all; `unpack` gives each layer its own arrays back (for
`Sequential.to`). It prepares a step and an epoch, and tells an SGD built on
exactly its parameters (in any order) to update them in one call.
"""
import math

import numba
import numpy as np

from .kernels import network
from ._validation import as_float_array, check_batch
from .layers import Dropout, Linear
from .optim import SGD, Adam, AdamW
from .threads import blas_threads_for

_INT64 = np.dtype(np.int64)

FUSED_OPTIMIZERS = (SGD, Adam, AdamW)


def pack(layers):
    """A FusedNetwork for `layers`, or None when they cannot be fused: not
    Linear layers (each optionally followed by one Dropout), mixed dtypes,
    mismatched widths, a layer on the GPU, or a layer already packed by
    another model (whose buffers it must keep using)."""
    linears, dropouts = [], []  # dropouts[k]: the Dropout after linears[k], or None
    for layer in layers:
        if isinstance(layer, Linear):
            linears.append(layer)
            dropouts.append(None)
        elif type(layer) is Dropout and linears and dropouts[-1] is None:
            dropouts[-1] = layer
        else:
            return None
    if not linears or any(layer._packed_in is not None for layer in layers):
        return None
    if len({layer.dtype for layer in linears}) != 1 or any(layer.device != "cpu" for layer in linears):
        return None
    if any(a.out_features != b.in_features for a, b in zip(linears, linears[1:])):
        return None
    return FusedNetwork(layers, linears, dropouts)


def _kernel_ready(arr, dtype):
    """True when `arr` can go to a compiled kernel as it is: a writeable,
    aligned, C-contiguous 2-D ndarray of `dtype` (the types of every array the
    fused step was compiled for)."""
    return type(arr) is np.ndarray and arr.dtype == dtype and arr.ndim == 2 and arr.flags.carray


def _class_indices(loss, y):
    """y as an array, and whether `loss` reads it as class indices."""
    y_arr = y if isinstance(y, np.ndarray) else np.asarray(y)
    return y_arr, loss.reads_labels(y_arr)


def _entry_point(dispatcher, args):
    """The compiled function behind `dispatcher` for these argument types,
    callable without the dispatcher's type resolution (a visible share of a
    seed-sized step; benchmarks/step_costs.py). Only called with arguments of
    these exact types: `_kernel_ready` checks the arrays that come from the user, the rest are
    the network's own. None if numba compiled for other types than expected
    (the dispatcher then keeps doing the work)."""
    compiled = dispatcher.overloads.get(tuple(numba.typeof(a) for a in args))
    return None if compiled is None else compiled.entry_point


class FusedNetwork:
    def __init__(self, layers, linears, dropouts):
        self.dtype = linears[0].dtype
        self.layers = tuple(layers)
        self.table, size = network.layer_table(
            [(layer.in_features, layer.out_features, layer._act, layer.bias is not None)
             + (() if drop is None else (drop._threshold, drop.seed, int(drop._forwards[0])))
             for layer, drop in zip(linears, dropouts)])
        self.params = np.empty(size, self.dtype)
        self.grads = np.zeros(size, self.dtype)
        self._offsets = {}  # (id(layer), parameter name) -> (offset, size) in the flat buffers
        for l, (layer, drop, row) in enumerate(zip(linears, dropouts, self.table)):
            if drop is not None:  # its forward count lives in the table, which the kernels advance
                drop._forwards = self.table[l, network.DROPOUT_FORWARDS:network.DROPOUT_FORWARDS + 1]
                drop._packed_in = self
            n_in, n_out = int(row[network.IN_FEATURES]), int(row[network.OUT_FEATURES])
            w_off, b_off = int(row[network.WEIGHTS_OFFSET]), int(row[network.BIAS_OFFSET])
            w_view = self.params[w_off:w_off + n_in * n_out].reshape(n_in, n_out)
            w_view[...] = layer.weights
            self._offsets[id(layer), "weights"] = (w_off, n_in * n_out)
            b_view = gb_view = None
            if row[network.HAS_BIAS]:
                b_view = self.params[b_off:b_off + n_out]
                b_view[...] = layer.bias
                gb_view = self.grads[b_off:b_off + n_out]
                self._offsets[id(layer), "bias"] = (b_off, n_out)
            layer._bind(w_view, self.grads[w_off:w_off + n_in * n_out].reshape(n_in, n_out), b_view, gb_view)
            layer._packed_in = self
        self.packed = True
        self.n_in, self.n_out = linears[0].in_features, linears[-1].out_features
        # a dropout after the last layer scales its output: BCELoss's "sigmoid
        # output" no longer holds
        self.last_activation = linears[-1]._act if dropouts[-1] is None else -1
        self.kernels = network.entry_points(self.table)  # this network's layout's compiled calls
        self.narrow = network.is_narrow(self.table)
        self._per_row = int(network.workspace_per_row(self.table))
        self.macs_per_row = sum(int(row[network.IN_FEATURES]) * int(row[network.OUT_FEATURES])
                                for row in self.table)  # of a forward pass
        self.capacity = -1
        self._empty_labels = np.empty(0, np.int64)
        self._empty_weights = np.empty(0, np.float64)
        self._empty_target = np.empty((0, 0), self.dtype)
        self._step_entry = self._fast_loss = self._fast_code = self._fast_optimizer = None
        self._labels_entry = self._labels_loss = self._labels_optimizer = None
        self._dtype = np.dtype(self.dtype)

    def unpack(self):
        """Give every layer its own copy of its arrays and leave the flat
        buffers (an optimizer told to use them falls back to its parameters)."""
        for layer in self.layers:
            if type(layer) is Dropout:
                layer._forwards = layer._forwards.copy()
                layer._packed_in = None
                continue
            layer._bind(layer.weights.copy(), layer.grad_weights.copy(),
                        None if layer.bias is None else layer.bias.copy(),
                        None if layer.bias is None else layer.grad_bias.copy())
            layer._packed_in = None
        self.packed = False
        self._fast_optimizer = self._labels_optimizer = None

    def offset(self, param):
        """(offset, size) of a Parameter in the flat buffers, or None when it is not one of these."""
        return self._offsets.get((id(param.layer), param.name))

    def covers(self, params):
        """True when `params` are exactly this network's parameters, in any order."""
        keys = {(id(p.layer), p.name) for p in params}
        return self.packed and len(params) == len(self._offsets) == len(keys) and keys == self._offsets.keys()

    def uses(self, optimizer):
        """True when `optimizer` is fastbp's SGD, Adam or AdamW (not a subclass,
        which may update otherwise) over exactly these parameters; it is told
        so (and updates the flat buffers in one call from then on)."""
        return type(optimizer) in FUSED_OPTIMIZERS and optimizer._use_network(self)

    def _why_not_optimizer(self, optimizer):
        return (f"the optimizer must be fastbp's SGD, Adam or AdamW over exactly this model's parameters, "
                f"got {type(optimizer).__name__} over {len(optimizer.params)} parameters")

    def why_not(self, loss, optimizer, y):
        """Why a step with these arguments cannot be fused, or None when it can."""
        if not self.uses(optimizer):
            return self._why_not_optimizer(optimizer)
        if self._loss_code(loss, y)[0] is None:
            return (f"{type(loss).__name__} is computed layer by layer here (BCELoss needs a sigmoid "
                    f"output layer; subclasses of fastbp's losses are never fused)")
        return None

    def _workspace(self, batch):
        # Grown to the largest batch seen, never per step: the kernels slice it.
        if batch > self.capacity:
            self.work = np.empty(max(batch, 1) * self._per_row, self.dtype)
            self.capacity = batch
        return self.work

    def _loss_code(self, loss, y):
        """(the loss code, whether y holds class indices); the code is None
        when this loss is not fused (the caller then goes layer by layer)."""
        y_arr, labels = _class_indices(loss, y)
        return loss.fused_code(labels, self.last_activation), labels

    def step(self, x, y, loss, optimizer, l2=0.0, weights=None):
        """One fused training step's loss, or None when this call cannot be
        fused (the caller then goes layer by layer).

        The first two branches are the steady state of a training loop (same
        loss and optimizer objects, arrays the kernel takes as they are: float
        targets, or int64 class indices for CrossEntropyLoss) and skip
        everything else: at seed sizes each check here is a visible share of
        the step (benchmarks/step_costs.py). They check the types the compiled
        entry point trusts; the kernel itself checks the shapes and the labels'
        range and raises ShapeMismatch before changing anything, which sends
        the call down the checked path to grow the workspace or name the bad
        argument. `dtype is` may miss an equal dtype object, which only sends
        the call down the checked path below.
        """
        if type(x) is np.ndarray and type(y) is np.ndarray and weights is None and x.dtype is self._dtype:
            if y.dtype is self._dtype:
                entry, target, labels, code = self._step_entry, y, self._empty_labels, self._fast_code
                fast = (loss is self._fast_loss and optimizer is self._fast_optimizer and y.ndim == 2)
            else:
                entry, target, labels, code = (self._labels_entry, self._empty_target, y,
                                               network.CROSS_ENTROPY_LABELS)
                fast = (loss is self._labels_loss and optimizer is self._labels_optimizer
                        and y.dtype is _INT64 and y.ndim == 1)
            if fast and x.ndim == 2 and x.flags.carray and y.flags.carray:
                # the types the entry point was compiled for; the kernel checks the shapes
                state0, state1 = optimizer.flat_state
                try:
                    value = entry(self.table, self.params, self.grads, state0, state1, x, target, labels,
                                  self._empty_weights, code, loss._reduction, l2,
                                  optimizer.kind, optimizer.hyper, optimizer.step_count + 1, self.work)
                except network.ShapeMismatch:
                    pass  # a batch larger than the workspace, or wrong shapes to report: below
                else:
                    if value - value == 0.0:  # finite: the parameters were updated
                        optimizer.step_count += 1
                    return value
        code, labels = self._loss_code(loss, y)
        if code is None or not self.uses(optimizer):
            return None
        ready = _kernel_ready(x, self.dtype) and (labels or _kernel_ready(y, self.dtype))
        x, target, labels, weights = check_batch(x, y, labels, self.dtype, self.n_in, self.n_out, weights)
        work = self._workspace(x.shape[0])
        args = (self.table, self.params, self.grads, optimizer.flat_state[0], optimizer.flat_state[1], x,
                self._empty_target if target is None else target,
                self._empty_labels if labels is None else labels,
                self._empty_weights if weights is None else weights, code, loss._reduction, float(l2),
                optimizer.kind, optimizer.hyper, optimizer.step_count + 1, work)
        value = self.kernels.train_step(*args)
        if math.isfinite(value):
            optimizer.step_count += 1
        if ready and weights is None:
            # the arguments the fast branches check for have exactly these types
            entry = _entry_point(self.kernels.train_step, args)
            if entry is not None and target is not None:
                self._step_entry, self._fast_loss, self._fast_code, self._fast_optimizer = (
                    entry, loss, code, optimizer)
            elif entry is not None and code == network.CROSS_ENTROPY_LABELS and y is labels:
                # y went to the kernel as it came: int64, (B,), C-contiguous
                self._labels_entry, self._labels_loss, self._labels_optimizer = entry, loss, optimizer
        return value

    def forward_backward(self, x, y, loss, l2=0.0, weights=None):
        """One batch's loss with every gradient written to `grads` (nothing
        updated), in one compiled call; for what sits between the gradients
        and the update (an allreduce, a clip). A non-finite loss writes nothing."""
        code, labels = self._loss_code(loss, y)
        if code is None:
            raise ValueError(f"{type(loss).__name__} is not computed by the fused step here")
        x, target, labels, weights = check_batch(x, y, labels, self.dtype, self.n_in, self.n_out, weights)
        work = self._workspace(x.shape[0])
        return self.kernels.forward_backward(
            self.table, self.params, self.grads, x, self._empty_target if target is None else target,
            self._empty_labels if labels is None else labels,
            self._empty_weights if weights is None else weights, code, loss._reduction, float(l2), work)

    def update(self, optimizer):
        """`optimizer`'s update of the flat buffers from `grads`, in one
        compiled call; False (nothing changed) when it would not be finite."""
        if not self.uses(optimizer):
            raise ValueError(self._why_not_optimizer(optimizer))
        return optimizer._step()

    def output_for(self, rows):
        """An (uninitialised) output for `rows` with its width checked as
        Linear.forward checks it, without a forward pass."""
        rows = as_float_array(rows, "x", self.dtype, (None, self.n_in))
        return np.empty((rows.shape[0], self.n_out), self.dtype)

    def epochs(self, x, y, loss, optimizer, batch_size, l2=0.0, weights=None):
        """`FusedEpochs` over (x, y) for `fit`: x and y as `check_training_data`
        returns them for this network's dtype, with `why_not` None for this
        loss and optimizer."""
        return FusedEpochs(self, x, y, loss, optimizer, batch_size, l2, weights)


class FusedEpochs:
    """Epochs of the fused path over one data set: each is one compiled call
    (kernels/network.py network_train_epoch, or its narrow twin) that gathers every batch into
    buffers allocated here, once."""

    def __init__(self, network, x, y, loss, optimizer, batch_size, l2, weights):
        self.network, self.optimizer, self.x, self.y, self.l2 = network, optimizer, x, y, float(l2)
        self.n = x.shape[0]
        self.batch_size = self.n if batch_size is None else batch_size
        labels = loss.reads_labels(y)
        self._code, self._reduction = loss.fused_code(labels, network.last_activation), loss._reduction
        self._target = network._empty_target if labels else y
        self._labels = y if labels else network._empty_labels
        rows = min(self.batch_size, self.n)
        self._x_batch = np.empty((rows, network.n_in), network.dtype)
        self._target_batch = np.empty((0 if labels else rows, network.n_out), network.dtype)
        self._labels_batch = np.empty(rows if labels else 0, np.int64)
        self._weights = network._empty_weights if weights is None else weights
        self._weights_batch = np.empty(0 if weights is None else rows, np.float64)
        self._in_order = np.arange(self.n)
        self._rows = rows
        self._no_lrs = np.empty(0)
        # the batch-inner layout calls no BLAS: no thread limit to set around it
        self._forward_macs = math.inf if network.narrow else rows * network.macs_per_row

    def run(self, order, interrupt, lrs=None, accuracy=network.NO_ACCURACY):
        """One epoch over the rows in `order` (None: as stored); returns the
        summed loss, the index of the first batch whose loss or update was
        not finite (-1 when none was), and how many predictions were right
        under `accuracy` (a kernels/network.py count_correct code; None for
        NO_ACCURACY), each batch's before its update. `lrs`: a learning rate
        per batch, or None for the optimizer's. A Ctrl-C (`interrupt`) takes
        effect when the compiled call returns."""
        net, opt = self.network, self.optimizer
        state0, state1 = opt.flat_state
        with blas_threads_for(self._forward_macs):
            total, bad_batch, correct = net.kernels.train_epoch(
                net.table, net.params, net.grads, state0, state1, self.x, self._target, self._labels,
                self._weights, self._in_order if order is None else order, self.batch_size, self._code,
                self._reduction, self.l2,
                opt.kind, opt.hyper, opt.step_count + 1, self._no_lrs if lrs is None else lrs, self._x_batch,
                self._target_batch, self._labels_batch, self._weights_batch, net._workspace(self._rows),
                accuracy)
        steps = -(-self.n // self.batch_size) if bad_batch < 0 else bad_batch
        opt.step_count += steps
        if lrs is not None and steps:
            opt.lr = lrs[steps - 1]  # as the layer path leaves it
        return total, bad_batch, None if accuracy == network.NO_ACCURACY else int(correct)
