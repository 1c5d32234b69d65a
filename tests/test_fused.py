"""The fused whole-network step and epoch against the layer-by-layer API.

Both run the same kernels in the same order, so in the batch-major layout
they give the same bits. (They once differed by 1 ulp: numba's cache kept
dense.py's code compiled with an older activations.py, numba#1833; the
cache is now stamped with every kernel file.) The batch-inner layout of
narrow networks sums in another order and agrees to float rounding.
"""
import numpy as np
import pytest

import fastbp
from fastbp.kernels import network
from conftest import assert_close

# a few ulp after several steps with momentum
RTOL = {np.float32: 1e-5, np.float64: 1e-12}

LOSSES = {
    "mse": (lambda: fastbp.MSELoss(), "float"),
    "mse_half_sum": (lambda: fastbp.MSELoss("half_sum"), "float"),
    "bce": (lambda: fastbp.BCELoss(), "binary"),
    "bce_logits": (lambda: fastbp.BCEWithLogitsLoss(reduction="sum"), "binary"),
    "ce_labels": (lambda: fastbp.CrossEntropyLoss(), "labels"),
    "ce_soft": (lambda: fastbp.CrossEntropyLoss(), "soft"),
}


def make_model(dtype, widths=(3, 40, 30, 4), last="sigmoid", seed=0):
    rng = np.random.default_rng(seed)
    acts = ["relu", "tanh", last]
    return fastbp.Sequential(*[fastbp.Linear(a, b, activation=act, dtype=dtype, rng=rng, bias=i != 1)
                               for i, (a, b, act) in enumerate(zip(widths, widths[1:], acts))])


def make_targets(kind, rng, n, classes):
    if kind == "float":
        return rng.standard_normal((n, classes))
    if kind == "binary":
        return rng.integers(0, 2, (n, classes)).astype(float)
    if kind == "labels":
        return rng.integers(0, classes, n)
    return rng.dirichlet(np.ones(classes), n)


def layer_by_layer_step(model, x, y, loss, optimizer):
    value = loss.forward(model.forward(x), y)
    model.backward(loss.backward())
    optimizer.step()
    return value


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("loss_name", sorted(LOSSES))
def test_fused_step_matches_layer_by_layer(dtype, momentum, loss_name):
    make_loss, kind = LOSSES[loss_name]
    rng = np.random.default_rng(1)
    fused, plain = make_model(dtype), make_model(dtype)
    assert fused.fused is not None
    fused_opt = fastbp.SGD(fused.parameters(), lr=0.05, momentum=momentum)
    # in any order the parameters are the model's: SGD is told to update its flat buffers
    plain_opt = fastbp.SGD(plain.parameters(), lr=0.05, momentum=momentum)
    assert fused.fused.uses(fused_opt) and plain.fused.uses(plain_opt)
    loss_a, loss_b = make_loss(), make_loss()
    for batch in (16, 16, 5, 1, 16):  # varying batch sizes reuse the workspace
        x = rng.standard_normal((batch, 3)).astype(dtype)
        y = make_targets(kind, rng, batch, 4)
        value_fused = fused.train_step(x, y, loss_a, fused_opt)
        value_plain = layer_by_layer_step(plain, x, y, loss_b, plain_opt)
        assert value_fused == value_plain
    for a, b in zip(fused.parameters(), plain.parameters()):
        np.testing.assert_array_equal(a.value, b.value)
        np.testing.assert_array_equal(a.grad, b.grad)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("widths, acts", [((2, 5, 3), ("sigmoid", "sigmoid")),
                                          ((3, 8, 8, 2), ("tanh", "relu", "identity"))])
@pytest.mark.parametrize("loss_name", ["mse_half_sum", "ce_labels", "bce_logits"])
def test_narrow_batch_inner_step_matches_layer_by_layer(dtype, widths, acts, loss_name):
    # widths <= 8 take kernels/narrow.py's transposed layout, at every batch size
    make_loss, kind = LOSSES[loss_name]
    rng = np.random.default_rng(3)

    def build():
        r = np.random.default_rng(0)
        return fastbp.Sequential(*[fastbp.Linear(a, b, activation=act, dtype=dtype, rng=r, bias=i != 1)
                                   for i, (a, b, act) in enumerate(zip(widths, widths[1:], acts))])
    fused, plain = build(), build()
    # small enough that half_sum over 210 rows does not diverge
    fused_opt = fastbp.SGD(fused.parameters(), lr=1e-3, momentum=0.9)
    plain_opt = fastbp.SGD(plain.parameters(), lr=1e-3, momentum=0.9)
    loss_a, loss_b = make_loss(), make_loss()
    batches = (210, 33, 16, 15, 4, 3, 1, 210)  # odd tails of vector lanes
    assert network.is_narrow(fused.fused.table)
    assert fused.fused.kernels.train_step is network.narrow_network_train_step
    for batch in batches:
        x = rng.standard_normal((batch, widths[0])).astype(dtype)
        y = make_targets(kind, rng, batch, widths[-1])
        value_fused = fused.train_step(x, y, loss_a, fused_opt)
        value_plain = layer_by_layer_step(plain, x, y, loss_b, plain_opt)
        np.testing.assert_allclose(value_fused, value_plain, rtol=RTOL[dtype])
    for a, b in zip(fused.parameters(), plain.parameters()):
        assert_close(a.value, b.value, dtype, rtol=RTOL[dtype])
        assert_close(a.grad, b.grad, dtype, rtol=RTOL[dtype] * 10)


@pytest.mark.parametrize("shuffle", [False, True])
def test_fused_fit_epoch_matches_a_python_loop(shuffle):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((50, 3))
    y = rng.integers(0, 4, 50)
    fused, plain = make_model(np.float32, last="identity"), make_model(np.float32, last="identity")
    opt = fastbp.SGD(fused.parameters(), lr=0.1, momentum=0.5)
    history = fused.fit(x, y, loss=fastbp.CrossEntropyLoss(), optimizer=opt, epochs=3, batch_size=8,
                        shuffle=shuffle, rng=7)
    plain_opt = fastbp.SGD(plain.parameters(), lr=0.1, momentum=0.5)
    order_rng = np.random.default_rng(7)
    losses = []
    for _ in range(3):
        order = order_rng.permutation(50) if shuffle else np.arange(50)
        total = 0.0
        for lo in range(0, 50, 8):
            idx = order[lo:lo + 8]
            total += layer_by_layer_step(plain, x[idx], y[idx], fastbp.CrossEntropyLoss(), plain_opt) * len(idx)
        losses.append(total / 50)
    np.testing.assert_allclose(history["loss"], losses, rtol=1e-5)
    for a, b in zip(fused.parameters(), plain.parameters()):
        assert_close(a.value, b.value, np.float32, rtol=1e-5)


def test_packed_layers_stay_usable_one_by_one_and_share_nothing_unexpected():
    model = make_model(np.float64)
    first = model[0]
    assert first.weights.base is model.fused.params
    first.weights = np.ones((3, 40))
    assert np.all(model.fused.params[:120] == 1)
    # a layer already packed by one model is not repacked by another
    other = fastbp.Sequential(first, fastbp.Linear(40, 2, dtype=np.float64))
    assert other.fused is None and first.weights.base is model.fused.params
    out = other.forward(np.ones((2, 3)))
    assert out.shape == (2, 2)


def test_unfusable_cases_fall_back():
    model = fastbp.Sequential(fastbp.Linear(2, 3), fastbp.ReLU(), fastbp.Linear(3, 1))
    assert model.fused is None
    x, y = np.ones((4, 2)), np.ones((4, 1))
    assert np.isfinite(model.train_step(x, y, fastbp.MSELoss(), fastbp.SGD(model.parameters(), lr=0.1)))
    # BCE on a non-sigmoid output is checked by BCELoss itself, not fused
    linear = fastbp.Sequential(fastbp.Linear(2, 1, rng=0))
    with pytest.raises(ValueError, match="probabilities"):
        linear.train_step(np.full((4, 2), 10.0), np.ones((4, 1)), fastbp.BCELoss(),
                          fastbp.SGD(linear.parameters(), lr=0.1))
    # Adam is not fused but works through the same train_step
    model2 = make_model(np.float32)
    assert np.isfinite(model2.train_step(np.ones((4, 3)), np.ones((4, 4)) / 2, fastbp.BCELoss(),
                                         fastbp.Adam(model2.parameters())))


def test_fused_step_validates_its_input():
    model = make_model(np.float32)
    opt = fastbp.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"x must have shape \(\*, 3\), got \(4, 2\)"):
        model.train_step(np.ones((4, 2)), np.ones((4, 4)), fastbp.MSELoss(), opt)
    with pytest.raises(ValueError, match=r"target must have shape \(4, 4\), got \(4, 3\)"):
        model.train_step(np.ones((4, 3)), np.ones((4, 3)), fastbp.MSELoss(), opt)
    with pytest.raises(ValueError, match=r"class indices must lie in \[0, 3\]"):
        model.train_step(np.ones((2, 3)), np.array([0, 4]), fastbp.CrossEntropyLoss(), opt)


@pytest.mark.parametrize("widths", [(3, 40, 30, 4), (2, 5, 3)])  # batch-major and batch-inner
def test_steady_state_fast_path_hands_shape_changes_to_the_checked_path(widths):
    # After a first step the fast path checks types only; the kernel checks
    # shapes and raises ShapeMismatch, changing nothing, and the checked path
    # then grows the workspace or reports the argument.
    rng = np.random.default_rng(4)
    fused, plain = make_model(np.float32, widths), make_model(np.float32, widths)
    fused_opt = fastbp.SGD(fused.parameters(), lr=0.1)
    plain_opt = fastbp.SGD(plain.parameters(), lr=0.1)
    loss = fastbp.MSELoss()
    n_in, n_out = widths[0], widths[-1]

    def data(batch, cols_x=n_in, rows_y=None, cols_y=n_out):
        x = rng.standard_normal((batch, cols_x)).astype(np.float32)
        y = rng.standard_normal((batch if rows_y is None else rows_y, cols_y)).astype(np.float32)
        return x, y

    for batch in (8, 8, 300, 5):  # 300 outgrows the workspace sized for 8
        x, y = data(batch)
        assert fused.train_step(x, y, loss, fused_opt) == pytest.approx(
            layer_by_layer_step(plain, x, y, loss, plain_opt), rel=1e-5)
    assert fused.fused._step_entry is not None  # the fast path was taken
    before = fused.fused.params.copy()
    for (x, y), words in [(data(8, cols_x=n_in + 1), r"x must have shape \(\*, %d\)" % n_in),
                          (data(8, cols_y=n_out + 1), r"target must have shape \(8, %d\)" % n_out),
                          (data(8, rows_y=7), r"target must have shape \(8, %d\), got \(7, " % n_out)]:
        with pytest.raises(ValueError, match=words):
            fused.train_step(x, y, loss, fused_opt)
    assert np.array_equal(fused.fused.params, before)
    for a, b in zip(fused.parameters(), plain.parameters()):
        assert_close(a.value, b.value, np.float32, rtol=1e-5)


def test_train_step_kernel_refuses_shapes_that_do_not_fit():
    model = make_model(np.float32)
    opt = fastbp.SGD(model.parameters(), lr=0.1)
    x, y = np.ones((4, 3), np.float32), np.ones((4, 4), np.float32)
    model.train_step(x, y, fastbp.MSELoss(), opt)
    fused = model.fused
    before = fused.params.copy()
    labels = np.empty(0, np.int64)
    args = (fused.table, fused.params, fused.grads) + opt.flat_state
    step = (0.0, opt.kind, opt.hyper, 2)  # l2, the optimizer, the step number
    no_weights = np.empty(0)
    for bad_x, bad_y, work in [(np.ones((4, 2), np.float32), y, fused.work),
                               (x, np.ones((3, 4), np.float32), fused.work),
                               (x, np.ones((4, 5), np.float32), fused.work),
                               (x, y, fused.work[:10])]:
        with pytest.raises(network.ShapeMismatch):
            network.network_train_step(*args, bad_x, bad_y, labels, no_weights, network.MSE, 1, *step, work)
    for bad_labels in (np.zeros(3, np.int64),  # labels for a batch of 3, x of 4
                       np.array([0, 1, 4, 2]), np.array([0, -1, 2, 3])):  # classes are 0..3
        with pytest.raises(network.ShapeMismatch):
            network.network_train_step(*args, x, np.empty((0, 0), np.float32), bad_labels, no_weights,
                                       network.CROSS_ENTROPY_LABELS, 1, *step, fused.work)
    assert np.array_equal(fused.params, before)


@pytest.mark.parametrize("widths", [(3, 40, 30, 4), (2, 5, 3)])  # batch-major and batch-inner
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_steady_state_fast_path_for_class_indices_gives_the_checked_paths_bits(widths, dtype):
    # int64 labels in an ndarray take the fast path after a first step; the
    # same labels as a list go down the checked path every time
    rng = np.random.default_rng(5)
    fast, checked = make_model(dtype, widths, last="identity"), make_model(dtype, widths, last="identity")
    fast_opt = fastbp.SGD(fast.parameters(), lr=0.1, momentum=0.9)
    checked_opt = fastbp.SGD(checked.parameters(), lr=0.1, momentum=0.9)
    loss = fastbp.CrossEntropyLoss()
    n_in, n_classes = widths[0], widths[-1]
    for batch in (8, 8, 300, 5, 1):  # 300 outgrows the workspace sized for 8
        x = rng.standard_normal((batch, n_in)).astype(dtype)
        labels = rng.integers(0, n_classes, batch)
        assert fast.train_step(x, labels, loss, fast_opt) == checked.train_step(x, labels.tolist(), loss,
                                                                                checked_opt)
    assert fast.fused._labels_entry is not None and checked.fused._labels_entry is None
    assert fast_opt.step_count == checked_opt.step_count == 5
    for a, b in zip(fast.parameters(), checked.parameters()):
        assert np.array_equal(a.value, b.value)
    before = fast.fused.params.copy()
    x = rng.standard_normal((4, n_in)).astype(dtype)
    for labels, words in [(np.array([0, 1, n_classes, 0]), r"class indices must lie in \[0, %d\]" % (n_classes - 1)),
                          (np.array([0, -1, 1, 0]), r"class indices must lie in \[0, %d\]" % (n_classes - 1)),
                          (np.zeros(3, np.int64), r"class indices must have shape \(4,\), got \(3,\)")]:
        with pytest.raises(ValueError, match=words):
            fast.train_step(x, labels, loss, fast_opt)
    assert np.array_equal(fast.fused.params, before) and fast_opt.step_count == 5


def test_fused_true_takes_the_fused_step_or_says_why_not():
    x = np.ones((4, 3), np.float32)
    y = np.ones((4, 4), np.float32)
    model = make_model(np.float32)
    assert np.isfinite(model.train_step(x, y, fastbp.MSELoss(), fastbp.SGD(model.parameters(), lr=0.1),
                                        fused=True))
    before = [p.value.copy() for p in model.parameters()]
    class MySGD(fastbp.SGD):  # a subclass may update otherwise: never fused
        pass

    with pytest.raises(ValueError, match="fused=True: .* SGD, Adam or AdamW over exactly this model's"):
        model.train_step(x, y, fastbp.MSELoss(), MySGD(model.parameters(), lr=0.1), fused=True)
    with pytest.raises(ValueError, match="fused=True: .* SGD, Adam or AdamW over exactly"):
        model.fit(x, y, loss=fastbp.MSELoss(), optimizer=fastbp.SGD(model.parameters()[:1], lr=0.1),
                  fused=True)
    assert all(np.array_equal(p.value, b) for p, b in zip(model.parameters(), before))
    layered = fastbp.Sequential(fastbp.Linear(3, 4), fastbp.ReLU(), fastbp.Linear(4, 4))
    with pytest.raises(ValueError, match="not a stack of Linear layers"):
        layered.train_step(x, y, fastbp.MSELoss(), fastbp.SGD(layered.parameters(), lr=0.1), fused=True)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_forward_backward_then_update_equals_one_fused_step(momentum):
    # the two halves of the compiled step, with room for an allreduce or a clip between them
    rng = np.random.default_rng(5)
    one, two = make_model(np.float32), make_model(np.float32)
    opt_one = fastbp.SGD(one.parameters(), lr=0.05, momentum=momentum)
    opt_two = fastbp.SGD(two.parameters(), lr=0.05, momentum=momentum)
    for batch in (16, 3, 16):
        x = rng.standard_normal((batch, 3)).astype(np.float32)
        y = rng.standard_normal((batch, 4)).astype(np.float32)
        value = one.train_step(x, y, fastbp.MSELoss(), opt_one)
        assert two.fused.forward_backward(x, y, fastbp.MSELoss()) == value
        assert two.fused.update(opt_two)
    np.testing.assert_array_equal(one.fused.params, two.fused.params)
    np.testing.assert_array_equal(one.fused.grads, two.fused.grads)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
@pytest.mark.parametrize("weighted", [False, True])
def test_forward_loss_then_each_layer_backward_equals_the_whole_backward(dtype, dropout, weighted):
    # the pieces fastbp.distributed overlaps with communication: the same
    # kernels in the same order as network_forward_backward, so the same bits
    rng = np.random.default_rng(6)

    def build():
        r = np.random.default_rng(1)
        layers = [fastbp.Linear(5, 24, activation="relu", dtype=dtype, rng=r)]
        if dropout:
            layers.append(fastbp.Dropout(dropout, seed=3))
        layers += [fastbp.Linear(24, 12, activation="tanh", dtype=dtype, rng=r, bias=False),
                   fastbp.Linear(12, 3, dtype=dtype, rng=r)]
        return fastbp.Sequential(*layers).fused

    whole, pieces = build(), build()
    assert not network.is_narrow(whole.table)
    labels = np.empty(0, np.int64)
    for batch in (9, 1, 17):
        x = rng.standard_normal((batch, 5)).astype(dtype)
        y = rng.standard_normal((batch, 3)).astype(dtype)
        weights = rng.uniform(0.1, 2.0, batch) if weighted else np.empty(0)
        work_a, work_b = whole._workspace(batch), pieces._workspace(batch)
        value = network.network_forward_backward(whole.table, whole.params, whole.grads, x, y, labels, weights,
                                                 network.MSE, 1, 0.0, work_a)
        pieces.grads[...] = np.nan  # every entry must be written
        piece_value = network.network_forward_loss(pieces.table, pieces.params, x, y, labels, weights, network.MSE,
                                                   1, work_b)
        for l in range(pieces.table.shape[0] - 1, -1, -1):
            network.network_backward_layer(pieces.table, pieces.params, pieces.grads, x, work_b, l)
        assert piece_value == value
        np.testing.assert_array_equal(pieces.grads, whole.grads)
        np.testing.assert_array_equal(pieces.table, whole.table)  # the dropout counters advanced alike
    with pytest.raises(network.ShapeMismatch):
        network.network_forward_loss(pieces.table, pieces.params, np.ascontiguousarray(x[:, :4]), y, labels,
                                     np.empty(0), network.MSE, 1, work_b)
