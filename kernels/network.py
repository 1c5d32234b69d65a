"""A whole network of dense layers in one compiled call: forward, loss,
backward and the optimizer's update, per step or per epoch of mini-batches.

It calls the very kernels the layer-by-layer API calls, in the same order;
what it removes is the Python between them (a few microseconds per layer,
which is the whole cost of a small net). In the batch-major layout the two
give the same bits; the batch-inner layout of narrow networks
(kernels/narrow.py) sums in another order and agrees to float rounding.

Layout. All parameters live in one flat buffer `params` (P,), with gradients
in `grads` (P,) and the optimizer's state in `state0`, `state1` (P,) or (0,)
when unused (kernels/optim.py says which optimizer keeps what there);
`kind`, `hyper` and `step` name the optimizer, its hyper-parameters and the
step being taken, as kernels/optim.py `update` reads them. `table` (L, TABLE_COLUMNS) int64, built by `layer_table`, has one
row per layer, read by the column names below:
    IN_FEATURES, OUT_FEATURES  the layer's widths
    ACTIVATION                 its activation code (kernels/activations.py)
    HAS_BIAS                   1 or 0
    WEIGHTS_OFFSET             where its weights start in params, stored (in, out) C-ordered
    BIAS_OFFSET                where its bias starts (0 when it has none)
    DROPOUT_THRESHOLD          0, or the dropout on the layer's output (kernels/dropout.py)
    DROPOUT_SEED               that dropout's seed
    DROPOUT_FORWARDS           its training forwards so far: the one column the kernels
                               write (each forward advances it; the Dropout layer reads a view)
Workspaces live in one flat buffer `work` (B * workspace_per_row(table)
values for a batch of B, so one sized for the largest batch serves them all;
one array rather than six saves argument unboxing on every call),
carved by split_workspace into
    outs (B * sum of out_features): every layer's output, layer after layer
    delta, grad_a, grad_b (B * max width): reused by every layer
    grad_top (B * out_L): the loss gradient; x_t (B * in_0): x transposed
and then (dropped_workspace) the dropped-out outputs of the layers with a
dropout, B * their out_features each: the next layer's input.
"""
from typing import NamedTuple

import numpy as np

from ._jit import inline, jit, ravel, view1d, view2d
from .dense import dense_backward, dense_forward
from .dropout import dropout_backward, dropout_batch_inner, dropout_forward
from .narrow import NARROW_MAX_WIDTH, narrow_backward, narrow_forward, to_batch_inner
from .losses import (MEAN, SKLEARN, bce_backward, bce_forward, bce_with_logits_backward,
                     bce_with_logits_forward,
                     mse_backward, mse_forward, soft_cross_entropy_backward,
                     soft_cross_entropy_forward, softmax_cross_entropy_forward_backward,
                     weighted_loss_forward_backward)
from .losses import BCE, BCE_WITH_LOGITS, CROSS_ENTROPY_LABELS, CROSS_ENTROPY_SOFT, MSE  # noqa: F401
from .optim import (LR, MAX_GRAD_NORM, add_l2, l2_loss_term, clip_coefficient, scale, sum_of_squares, update,
                    update_is_finite)

(IN_FEATURES, OUT_FEATURES, ACTIVATION, HAS_BIAS, WEIGHTS_OFFSET, BIAS_OFFSET, DROPOUT_THRESHOLD, DROPOUT_SEED,
 DROPOUT_FORWARDS) = range(9)
TABLE_COLUMNS = 9


def layer_table(layers):
    """(table, P) for layers given as (in_features, out_features, activation
    code, has_bias[, dropout threshold, dropout seed, forwards so far]): each
    layer's weights, then its bias, one after another."""
    table = np.zeros((len(layers), TABLE_COLUMNS), np.int64)
    offset = 0
    for l, (n_in, n_out, activation, has_bias, *dropout) in enumerate(layers):
        table[l, IN_FEATURES], table[l, OUT_FEATURES] = n_in, n_out
        table[l, ACTIVATION], table[l, HAS_BIAS] = activation, int(has_bias)
        if dropout:
            table[l, DROPOUT_THRESHOLD], table[l, DROPOUT_SEED], table[l, DROPOUT_FORWARDS] = dropout
        table[l, WEIGHTS_OFFSET] = offset
        offset += n_in * n_out
        if has_bias:
            table[l, BIAS_OFFSET] = offset
            offset += n_out
    return table, offset


@jit
def _weights(table, params, l):
    n_in, n_out, w_off = table[l, IN_FEATURES], table[l, OUT_FEATURES], table[l, WEIGHTS_OFFSET]
    return view2d(params, w_off, n_in, n_out)


@jit
def _bias(table, params, l):
    if table[l, HAS_BIAS] == 0:
        return view1d(params, 0, 0)
    return view1d(params, table[l, BIAS_OFFSET], table[l, OUT_FEATURES])


@jit
def _output(table, outs, batch, l):
    off = 0
    for k in range(l):
        off += batch * table[k, OUT_FEATURES]
    return view2d(outs, off, batch, table[l, OUT_FEATURES])


@jit
def _widths(table):
    """(sum of out_features, the largest in or out width)"""
    sum_out = 0
    widest = 0
    for l in range(table.shape[0]):
        sum_out += table[l, OUT_FEATURES]
        widest = max(widest, table[l, IN_FEATURES], table[l, OUT_FEATURES])
    return sum_out, widest


@jit
def _dropped_per_row(table):
    total = 0
    for l in range(table.shape[0]):
        if table[l, DROPOUT_THRESHOLD] != 0:
            total += table[l, OUT_FEATURES]
    return total


@jit
def workspace_per_row(table):
    """Workspace values per row of the batch."""
    sum_out, widest = _widths(table)
    return (sum_out + 3 * widest + table[table.shape[0] - 1, OUT_FEATURES] + table[0, IN_FEATURES]
            + _dropped_per_row(table))


# work (>= batch * workspace_per_row) -> outs, delta, grad_a, grad_b, grad_top, x_t
@jit
def split_workspace(table, batch, work):
    sum_out, widest = _widths(table)
    sizes = (batch * sum_out, batch * widest, batch * widest, batch * widest,
             batch * table[table.shape[0] - 1, OUT_FEATURES], batch * table[0, IN_FEATURES])
    a = sizes[0]
    b = a + sizes[1]
    c = b + sizes[2]
    d = c + sizes[3]
    e = d + sizes[4]
    return work[:a], work[a:b], work[b:c], work[c:d], work[d:e], work[e:e + sizes[5]]


# the dropped-out outputs' region of work (after split_workspace's six)
@jit
def dropped_workspace(table, batch, work):
    start = batch * (workspace_per_row(table) - _dropped_per_row(table))
    return view1d(work, start, batch * _dropped_per_row(table))


@jit
def _dropped_offset(table, batch, l):
    """Where layer l's dropped-out output starts in the dropped region."""
    off = 0
    for k in range(l):
        if table[k, DROPOUT_THRESHOLD] != 0:
            off += batch * table[k, OUT_FEATURES]
    return off


@jit
def _dropped(table, dropped, batch, l):
    return view2d(dropped, _dropped_offset(table, batch, l), batch, table[l, OUT_FEATURES])


@jit
def _layer_input(table, x, outs, dropped, batch, l):
    """What layer l reads: x, the previous layer's output, or its dropped-out copy."""
    if l == 0:
        return x
    if table[l - 1, DROPOUT_THRESHOLD] != 0:
        return _dropped(table, dropped, batch, l - 1)
    return _output(table, outs, batch, l - 1)


# x (B, in_0) -> every layer's output in outs (and the dropped-out ones in
# dropped, each dropout's forward count advanced); the prediction (B, out_L)
# is then _layer_input(table, x, outs, dropped, batch, L). Nothing returned:
# a view of outs (kernels/_jit.py) must not reach Python.
@jit
def network_forward(table, params, x, outs, dropped):
    batch = x.shape[0]
    inp = x
    for l in range(table.shape[0]):
        out = _output(table, outs, batch, l)
        dense_forward(inp, _weights(table, params, l), _bias(table, params, l), table[l, ACTIVATION], out)
        inp = out
        threshold = table[l, DROPOUT_THRESHOLD]
        if threshold != 0:
            inp = _dropped(table, dropped, batch, l)
            counter = table[l, DROPOUT_FORWARDS]
            table[l, DROPOUT_FORWARDS] = counter + 1
            dropout_forward(out, table[l, DROPOUT_SEED], counter, threshold, inp)


# Layer l's share of network_backward: its gradients in grads, and (l > 0)
# the gradient of its input, which layer l - 1 reads. Layer l reads its
# output's gradient from grad_top (the last layer) or from the buffer layer
# l + 1 wrote: the layers ping-pong between grad_a and grad_b.
@inline
def _backward_layer(table, params, grads, x, outs, dropped, grad_top, delta, grad_a, grad_b, l):
    batch = x.shape[0]
    n_layers = table.shape[0]
    n_in, n_out = table[l, IN_FEATURES], table[l, OUT_FEATURES]
    if l == n_layers - 1:
        grad_out = grad_top
    else:
        grad_out = view2d(grad_a if (n_layers - 2 - l) % 2 == 0 else grad_b, 0, batch, n_out)
    threshold = table[l, DROPOUT_THRESHOLD]
    if threshold != 0:  # through the dropout first, in place, with the forward's mask
        dropout_backward(grad_out, table[l, DROPOUT_SEED], table[l, DROPOUT_FORWARDS] - 1, threshold, grad_out)
    inp = _layer_input(table, x, outs, dropped, batch, l)
    grad_x = view2d(grad_a if (n_layers - 1 - l) % 2 == 0 else grad_b, 0, batch, n_in)
    dense_backward(inp, _weights(table, params, l), _output(table, outs, batch, l), grad_out,
                   table[l, ACTIVATION], l > 0, view2d(delta, 0, batch, n_out),
                   _weights(table, grads, l), _bias(table, grads, l), grad_x)


# grad_top (B, out_L) -> grads of every layer; the input's gradient is skipped
@jit
def network_backward(table, params, grads, x, outs, dropped, grad_top, delta, grad_a, grad_b):
    for l in range(table.shape[0] - 1, -1, -1):
        _backward_layer(table, params, grads, x, outs, dropped, grad_top, delta, grad_a, grad_b, l)


# pred (B, C), target (B, C) floats or labels (B,) ints, weights (B,) per-row
# weights or (0,) for none -> loss; grad_pred written
@jit
def loss_forward_backward(loss_code, reduction, pred, target, labels, weights, grad_pred):
    if weights.shape[0] != 0 or reduction == SKLEARN:
        return weighted_loss_forward_backward(loss_code, reduction, pred, target, labels, weights, grad_pred)
    flat_pred = ravel(pred)
    flat_grad = ravel(grad_pred)
    if loss_code == MSE:
        flat_target = ravel(target)
        value = mse_forward(flat_pred, flat_target, reduction)
        mse_backward(flat_pred, flat_target, reduction, flat_grad)
    elif loss_code == BCE:
        flat_target = ravel(target)
        value = bce_forward(flat_pred, flat_target, reduction)
        bce_backward(flat_pred, flat_target, reduction, flat_grad)
    elif loss_code == BCE_WITH_LOGITS:
        flat_target = ravel(target)
        value = bce_with_logits_forward(flat_pred, flat_target, reduction)
        bce_with_logits_backward(flat_pred, flat_target, reduction, flat_grad)
    elif loss_code == CROSS_ENTROPY_LABELS:
        value = softmax_cross_entropy_forward_backward(pred, labels, reduction, grad_pred)
    else:
        value = soft_cross_entropy_forward(pred, target, reduction)
        soft_cross_entropy_backward(pred, target, reduction, grad_pred)
    return value


# The batch-inner path (kernels/narrow.py) is the layout of every network no
# wider than NARROW_MAX_WIDTH (8), at every batch size: a property of the
# network, so that a network compiles one path only and its results never
# depend on which batch sizes it met before. Measured with
# `python benchmarks/narrow.py` (float32, us per step, batch-major vs batch-inner):
#   2-4-1      b1 2.07 vs 1.63   b2 2.13 vs 1.67   b4 2.19 vs 1.65   b8 2.53 vs 1.77   b210 9.58 vs 2.42
#   2-5-3      b1 2.09 vs 1.93   b2 2.72 vs 1.90   b4 3.39 vs 2.34   b8 4.19 vs 2.53   b210 10.6 vs 4.38
#   4-8-8-2    b1 2.86 vs 2.64   b2 4.03 vs 2.90   b4 3.77 vs 3.11   b8 5.03 vs 3.01   b210 15.2 vs 9.14
#   8-16-16-4  b1 2.89 vs 5.36   b4 3.96 vs 4.52   b210 21.7 vs 57.6
# At width <= 8 it wins at every batch size (an earlier form of its forward
# lost by up to 22% at batch 1); at width 16 it loses (its forward then has
# no constant width).
def is_narrow(table):
    """Whether the network of `table` takes the batch-inner layout (plain Python:
    the layout is chosen before any kernel is called)."""
    widths = table[:, [IN_FEATURES, OUT_FEATURES]]
    return bool((widths <= NARROW_MAX_WIDTH).all())


@jit
def _dropped_t(table, dropped, batch, l):
    """_dropped's region in the batch-inner layout, (out_features, B)."""
    return view2d(dropped, _dropped_offset(table, batch, l), table[l, OUT_FEATURES], batch)


# batch_major_forward_backward in the batch-inner layout: every activation is
# stored (features, B) in the same workspaces; x_t (in_0 * B) holds x transposed.
@jit
def narrow_forward_backward(table, params, grads, x, target, labels, weights, loss_code, reduction,
                            outs, delta, grad_a, grad_b, grad_top, x_t, dropped):
    batch = x.shape[0]
    n_layers = table.shape[0]
    inp = view2d(x_t, 0, table[0, IN_FEATURES], batch)
    to_batch_inner(x, inp)
    x_in = inp
    offset = 0
    for l in range(n_layers):
        out_t = view2d(outs, offset, table[l, OUT_FEATURES], batch)
        narrow_forward(inp, _weights(table, params, l), _bias(table, params, l), table[l, ACTIVATION], out_t)
        inp = out_t
        offset += batch * table[l, OUT_FEATURES]
        threshold = table[l, DROPOUT_THRESHOLD]
        if threshold != 0:
            inp = _dropped_t(table, dropped, batch, l)
            counter = table[l, DROPOUT_FORWARDS]
            table[l, DROPOUT_FORWARDS] = counter + 1
            dropout_batch_inner(out_t, table[l, DROPOUT_SEED], counter, threshold, inp)
    n_last = table[n_layers - 1, OUT_FEATURES]
    grad_t = view2d(grad_a, 0, n_last, batch)
    if weights.shape[0] == 0 and reduction != SKLEARN and (loss_code == MSE or loss_code == BCE or loss_code == BCE_WITH_LOGITS):
        # Element-wise losses do not care about the layout as long as the
        # prediction and the target share it: transpose the target once
        # (into `delta`, free until the backward pass) and take the gradient
        # in the layout the backward pass reads.
        target_t = view2d(delta, 0, n_last, batch)
        to_batch_inner(target, target_t)
        value = loss_forward_backward(loss_code, reduction, inp, target_t, labels, weights, grad_t)
    else:
        # softmax cross-entropy and per-row weights work on (B, out) rows:
        # transpose the prediction in and its gradient out
        pred = view2d(delta, 0, batch, n_last)
        for i in range(batch):
            for j in range(n_last):
                pred[i, j] = inp[j, i]
        top = view2d(grad_top, 0, batch, n_last)
        value = loss_forward_backward(loss_code, reduction, pred, target, labels, weights, top)
        to_batch_inner(top, grad_t)
    if not np.isfinite(value):
        return value
    for l in range(n_layers - 1, -1, -1):
        n_in, n_out = table[l, IN_FEATURES], table[l, OUT_FEATURES]
        offset -= batch * n_out
        out_t = view2d(outs, offset, n_out, batch)
        threshold = table[l, DROPOUT_THRESHOLD]
        if threshold != 0:  # through the dropout first, in place, with the forward's mask
            dropout_batch_inner(grad_t, table[l, DROPOUT_SEED], table[l, DROPOUT_FORWARDS] - 1, threshold, grad_t)
        if l == 0:
            in_t = x_in
        elif table[l - 1, DROPOUT_THRESHOLD] != 0:
            in_t = _dropped_t(table, dropped, batch, l - 1)
        else:
            in_t = view2d(outs, offset - batch * n_in, n_in, batch)
        # ping-pong: the top gradient sits in grad_a, layer L-1 writes grad_b, ...
        grad_in_t = view2d(grad_b if (n_layers - 1 - l) % 2 == 0 else grad_a, 0, n_in, batch)
        narrow_backward(in_t, _weights(table, params, l), out_t, grad_t, table[l, ACTIVATION], l > 0,
                        view2d(delta, 0, n_out, batch), _weights(table, grads, l), _bias(table, grads, l),
                        grad_in_t)
        grad_t = grad_in_t
    return value


# The optimizer's update of the whole network -> True when updated: the
# gradients clipped to hyper[MAX_GRAD_NORM] first when it is set (the
# parameters' sums of squares added layer by layer, weights then bias, as
# the layer-by-layer path adds them in model.parameters() order), then the
# update only when everything it writes is finite: a finite loss can still
# give gradients that overflow (a float64 loss of 9e61 while float32
# gradients reach inf); then nothing changes and the result is False.
@jit
def network_update(table, params, grads, state0, state1, kind, hyper, step):
    if hyper[MAX_GRAD_NORM] != 0.0:
        total = 0.0
        for l in range(table.shape[0]):
            total += sum_of_squares(ravel(_weights(table, grads, l)))
            total += sum_of_squares(_bias(table, grads, l))
        coef = clip_coefficient(total, hyper[MAX_GRAD_NORM])
        if coef < 1.0:
            scale(grads, coef)
    if not update_is_finite(kind, hyper, step, params, grads, state0, state1):
        return False
    update(kind, hyper, step, params, grads, state0, state1)
    return True


# scikit-learn's L2 penalty (`alpha`) on every layer's weights, biases not
# penalised: the weights' gradients grow by alpha * W / B (alpha * W under a
# sum reduction, alpha * W / sum_i w_i under SKLEARN with row weights, as
# scikit-learn divides by the batch's sample weights); returns the loss term
# 0.5 * alpha * sum(W ** 2) / B (or / 1, or / sum_i w_i).
@jit
def network_add_l2(table, params, grads, l2, reduction, weights, batch):
    rows = 1.0
    if reduction == MEAN or (reduction == SKLEARN and weights.shape[0] == 0):
        rows = np.float64(batch)
    elif reduction == SKLEARN:
        rows = 0.0
        for i in range(weights.shape[0]):
            rows += np.float64(weights[i])
    total = 0.0
    for l in range(table.shape[0]):
        total += add_l2(ravel(_weights(table, params, l)), ravel(_weights(table, grads, l)), l2 / rows)
    return l2_loss_term(l2, total, rows)


class ShapeMismatch(ValueError):
    """x, target, labels or work do not fit the network's table, or a label
    is not a class of its last layer. Raised before anything is changed, so
    that the Python layer can check its arguments only on its slow path and
    then report which one is wrong."""


@jit
def check_shapes(table, x, target, labels, weights, loss_code, work):
    batch = x.shape[0]
    if loss_code == CROSS_ENTROPY_LABELS:
        fits_target = labels.shape[0] == batch
        # the labels index the logits: checked here, so that a caller's
        # steady-state path may pass them unchecked (fastbp/_fused.py step)
        n_classes = table[table.shape[0] - 1, OUT_FEATURES]
        for i in range(labels.shape[0]):
            if labels[i] < 0 or labels[i] >= n_classes:
                fits_target = False
    else:
        fits_target = target.shape[0] == batch and target.shape[1] == table[table.shape[0] - 1, OUT_FEATURES]
    fits_weights = weights.shape[0] == 0 or weights.shape[0] == batch
    if (not fits_target or not fits_weights or x.shape[1] != table[0, IN_FEATURES]
            or work.shape[0] < batch * workspace_per_row(table)):
        raise ShapeMismatch("x, target, labels or work do not fit the network")


# the forward, loss and backward in the batch-major layout of kernels/dense.py
@jit
def batch_major_forward_backward(table, params, grads, x, target, labels, weights, loss_code, reduction,
                                 outs, delta, grad_a, grad_b, grad_top, dropped):
    batch = x.shape[0]
    n_last = table[table.shape[0] - 1, OUT_FEATURES]
    network_forward(table, params, x, outs, dropped)
    pred = _layer_input(table, x, outs, dropped, batch, table.shape[0])
    top = view2d(grad_top, 0, batch, n_last)
    value = loss_forward_backward(loss_code, reduction, pred, target, labels, weights, top)
    if not np.isfinite(value):
        # a step on an inf / NaN loss would poison every parameter: change nothing
        return value
    network_backward(table, params, grads, x, outs, dropped, top, delta, grad_a, grad_b)
    return value


# The batch-major forward + backward in pieces, for a caller that overlaps
# each layer's gradient with communication (fastbp/distributed.py,
# overlap=True): network_forward_loss, then network_backward_layer for
# l = L - 1 down to 0, run the same kernels in the same order as
# network_forward_backward (without L2), so they give the same bits.
# x, target, labels, weights, work as network_forward_backward's -> the loss,
# with its gradient left in work for the layers; raises ShapeMismatch.
@jit
def network_forward_loss(table, params, x, target, labels, weights, loss_code, reduction, work):
    check_shapes(table, x, target, labels, weights, loss_code, work)
    batch = x.shape[0]
    outs, delta, grad_a, grad_b, grad_top, x_t = split_workspace(table, batch, work)
    dropped = dropped_workspace(table, batch, work)
    network_forward(table, params, x, outs, dropped)
    pred = _layer_input(table, x, outs, dropped, batch, table.shape[0])
    top = view2d(grad_top, 0, batch, table[table.shape[0] - 1, OUT_FEATURES])
    return loss_forward_backward(loss_code, reduction, pred, target, labels, weights, top)


# layer l's gradients into grads, after network_forward_loss on the same x
# and work and network_backward_layer of every layer above l
@jit
def network_backward_layer(table, params, grads, x, work, l):
    batch = x.shape[0]
    outs, delta, grad_a, grad_b, grad_top, x_t = split_workspace(table, batch, work)
    top = view2d(grad_top, 0, batch, table[table.shape[0] - 1, OUT_FEATURES])
    _backward_layer(table, params, grads, x, outs, dropped_workspace(table, batch, work), top, delta, grad_a,
                    grad_b, l)


# The two halves of a training step, each one compiled call, so that
# something can sit between them (an allreduce of `grads`, a clip, another
# optimizer), and the train step, both in one call; then a whole epoch.
# Each comes twice, compiled apart: the batch-major entry points
# (network_forward_backward, network_train_step, network_train_epoch) and the
# batch-inner ones of narrow networks (narrow_network_*); `entry_points(table)`
# names a network's three. A network compiles only its own layout's kernels
# (each layout's kernels take 20-30 s of a cold start's compile: `python -m
# fastbp bench --only startup` lists them). The bodies are shared below, inlined by
# numba with the layout as a constant, which drops the other branch before
# it is typed, so it is never compiled.
#
# x (B, in_0), target (B, out_L) or (0, 0), labels (B,) or (0,), weights (B,)
# per-row weights or (0,) (kernels/losses.py weighted_loss_forward_backward) -> the loss,
# with scikit-learn's L2 penalty `l2` (its `alpha`; 0 for none) on the
# weights; grads written unless the loss is not finite (then nothing is written).
# work: >= B * workspace_per_row(table) values.
# Raises ShapeMismatch (changing nothing) when the shapes do not fit.
@inline
def _forward_backward(table, params, grads, x, target, labels, weights, loss_code, reduction, l2, work,
                      batch_inner):
    check_shapes(table, x, target, labels, weights, loss_code, work)
    outs, delta, grad_a, grad_b, grad_top, x_t = split_workspace(table, x.shape[0], work)
    if batch_inner:
        value = narrow_forward_backward(table, params, grads, x, target, labels, weights, loss_code, reduction,
                                        outs, delta, grad_a, grad_b, grad_top, x_t,
                                        dropped_workspace(table, x.shape[0], work))
    else:
        value = batch_major_forward_backward(table, params, grads, x, target, labels, weights, loss_code,
                                             reduction, outs, delta, grad_a, grad_b, grad_top,
                                             dropped_workspace(table, x.shape[0], work))
    if l2 != 0.0 and np.isfinite(value):
        value += network_add_l2(table, params, grads, l2, reduction, weights, x.shape[0])
    return value


# _forward_backward, then network_update: the loss; the parameters
# updated unless the loss is not finite (returned as it is) or the update
# would not be (inf is returned), so a caller sees a non-finite step either way.
@inline
def _train_step(table, params, grads, state0, state1, x, target, labels, weights, loss_code, reduction,
                l2, kind, hyper, step, work, batch_inner):
    value = _forward_backward(table, params, grads, x, target, labels, weights, loss_code, reduction, l2,
                              work, batch_inner)
    if not np.isfinite(value):
        return value
    if not network_update(table, params, grads, state0, state1, kind, hyper, step):
        return np.inf
    return value


# One epoch: batches of `order`'s rows, each gathered into the x_batch /
# target_batch / labels_batch / weights_batch buffers (B rows), then one fused step, the
# first of them step number `step`. `lrs` (one learning rate per batch, for
# a schedule that changes it every step) or (0,) for hyper[LR] throughout.
# Returns (the sum over batches of loss * rows (reduction MEAN) or of loss,
# the index of the first batch whose loss was not finite, or -1, and the
# count_correct of every batch under `accuracy`, a code of the accuracy
# rules below). The epoch stops at that batch, whose step changed nothing.
@inline
def _train_epoch(table, params, grads, state0, state1, x, target, labels, weights, order, batch_size,
                 loss_code, reduction, l2, kind, hyper, step, lrs, x_batch, target_batch, labels_batch,
                 weights_batch, work, accuracy, batch_inner):
    n = order.shape[0]
    correct = 0
    has_target = target.shape[0] != 0
    has_labels = labels.shape[0] != 0
    has_weights = weights.shape[0] != 0
    step_hyper = hyper.copy()
    total = 0.0
    for lo in range(0, n, batch_size):
        rows = min(batch_size, n - lo)
        # element by element, not a slice assignment per row: at seed sizes
        # the per-row slices cost more than the step they feed
        for r in range(rows):
            src = order[lo + r]
            for c in range(x.shape[1]):
                x_batch[r, c] = x[src, c]
            if has_target:
                for c in range(target.shape[1]):
                    target_batch[r, c] = target[src, c]
            if has_labels:
                labels_batch[r] = labels[src]
            if has_weights:
                weights_batch[r] = weights[src]
        if lrs.shape[0] != 0:
            step_hyper[LR] = lrs[lo // batch_size]
        value = _train_step(
            table, params, grads, state0, state1, x_batch[:rows],
            target_batch[:rows] if has_target else target_batch[:0],
            labels_batch[:rows] if has_labels else labels_batch[:0],
            weights_batch[:rows] if has_weights else weights_batch[:0],
            loss_code, reduction, l2, kind, step_hyper, step + lo // batch_size, work, batch_inner)
        if not np.isfinite(value):
            return value, lo // batch_size, correct
        # the epoch's loss in the batches' reduction: a sum of sums, or a
        # sum of means weighted by rows (the caller divides by n)
        total += value * rows if reduction == MEAN or reduction == SKLEARN else value
        if accuracy != NO_ACCURACY:
            correct += count_correct(table, work, rows, accuracy, target_batch[:rows], labels_batch[:rows],
                                     batch_inner)
    return total, -1, correct


@jit
def network_forward_backward(table, params, grads, x, target, labels, weights, loss_code, reduction, l2, work):
    return _forward_backward(table, params, grads, x, target, labels, weights, loss_code, reduction, l2, work,
                             False)


@jit
def narrow_network_forward_backward(table, params, grads, x, target, labels, weights, loss_code, reduction, l2,
                                    work):
    return _forward_backward(table, params, grads, x, target, labels, weights, loss_code, reduction, l2, work,
                             True)


@jit
def network_train_step(table, params, grads, state0, state1, x, target, labels, weights, loss_code, reduction,
                       l2, kind, hyper, step, work):
    return _train_step(table, params, grads, state0, state1, x, target, labels, weights, loss_code, reduction,
                       l2, kind, hyper, step, work, False)


@jit
def narrow_network_train_step(table, params, grads, state0, state1, x, target, labels, weights, loss_code,
                              reduction, l2, kind, hyper, step, work):
    return _train_step(table, params, grads, state0, state1, x, target, labels, weights, loss_code, reduction,
                       l2, kind, hyper, step, work, True)


@jit
def network_train_epoch(table, params, grads, state0, state1, x, target, labels, weights, order, batch_size,
                        loss_code, reduction, l2, kind, hyper, step, lrs, x_batch, target_batch, labels_batch,
                        weights_batch, work, accuracy):
    return _train_epoch(table, params, grads, state0, state1, x, target, labels, weights, order, batch_size,
                        loss_code, reduction, l2, kind, hyper, step, lrs, x_batch, target_batch, labels_batch,
                        weights_batch, work, accuracy, False)


@jit
def narrow_network_train_epoch(table, params, grads, state0, state1, x, target, labels, weights, order,
                               batch_size, loss_code, reduction, l2, kind, hyper, step, lrs, x_batch,
                               target_batch, labels_batch, weights_batch, work, accuracy):
    return _train_epoch(table, params, grads, state0, state1, x, target, labels, weights, order, batch_size,
                        loss_code, reduction, l2, kind, hyper, step, lrs, x_batch, target_batch, labels_batch,
                        weights_batch, work, accuracy, True)


# -- accuracy, counted as an epoch trains ----------------------------------------
# Each batch's predictions from its step's forward pass (before the update),
# as the epoch's loss is taken: Keras's training accuracy, with no second
# pass over the data. The rule (fastbp/training.py accuracy_kind) as a code:
# the arg-max (numpy's: the first maximum, or the first NaN) against the
# label or the target row's arg-max, or each output against the target
# above 0.5, thresholded at 0.5 (probabilities) or 0 (logits).
NO_ACCURACY, LABELS_ARGMAX, ONE_HOT_ARGMAX, BINARY_PROBABILITY, BINARY_LOGIT = range(5)


@jit
def _argmax(rows, i, transposed):
    """numpy's argmax of row i of rows (B, C), or of column i of rows (C, B)."""
    width = rows.shape[0] if transposed else rows.shape[1]
    best = 0
    best_value = rows[0, i] if transposed else rows[i, 0]
    if best_value != best_value:
        return 0
    for c in range(1, width):
        value = rows[c, i] if transposed else rows[i, c]
        if value != value:
            return c
        if value > best_value:
            best, best_value = c, value
    return best


# work after a step on a batch of `batch` rows, target (B, out_L) or (0, 0),
# labels (B,) or (0,) -> how many of the batch's predictions are right under
# `accuracy` (a code above; for the binary rules, how many outputs)
@jit
def count_correct(table, work, batch, accuracy, target, labels, batch_inner):
    n_layers = table.shape[0]
    n_last = table[n_layers - 1, OUT_FEATURES]
    outs = split_workspace(table, batch, work)[0]
    if table[n_layers - 1, DROPOUT_THRESHOLD] != 0:
        dropped = dropped_workspace(table, batch, work)
        pred = _dropped_t(table, dropped, batch, n_layers - 1) if batch_inner else _dropped(
            table, dropped, batch, n_layers - 1)
    elif batch_inner:
        pred = view2d(outs, outs.shape[0] - batch * n_last, n_last, batch)
    else:
        pred = _output(table, outs, batch, n_layers - 1)
    correct = 0
    if accuracy == LABELS_ARGMAX or accuracy == ONE_HOT_ARGMAX:
        for i in range(batch):
            want = labels[i] if accuracy == LABELS_ARGMAX else _argmax(target, i, False)
            correct += _argmax(pred, i, batch_inner) == want
    elif accuracy == BINARY_PROBABILITY or accuracy == BINARY_LOGIT:
        threshold = pred.dtype.type(0.5 if accuracy == BINARY_PROBABILITY else 0.0)
        half = target.dtype.type(0.5)
        for i in range(batch):
            for c in range(n_last):
                value = pred[c, i] if batch_inner else pred[i, c]
                correct += (value > threshold) == (target[i, c] > half)
    return correct


class EntryPoints(NamedTuple):
    """A layout's compiled forward_backward, train_step and train_epoch."""
    forward_backward: object
    train_step: object
    train_epoch: object


def entry_points(table):
    """The EntryPoints of the network of `table`'s layout (see is_narrow),
    looked up when called, so that a kernel replaced in this module is the one used."""
    if is_narrow(table):
        return EntryPoints(narrow_network_forward_backward, narrow_network_train_step, narrow_network_train_epoch)
    return EntryPoints(network_forward_backward, network_train_step, network_train_epoch)
