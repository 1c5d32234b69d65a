"""Sequential models of depth 1..4 against torch.nn, and the float64 finite-difference check."""
import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

import fastbp
from conftest import DTYPES, LAYOUTS, assert_close, with_layout

TORCH_ACT = {"identity": torch.nn.Identity, "sigmoid": torch.nn.Sigmoid, "relu": torch.nn.ReLU,
             "tanh": torch.nn.Tanh}


def torch_copy(model):
    mods = []
    for layer in model:
        lin = torch.nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None,
                              dtype=torch.float64)
        with torch.no_grad():
            lin.weight.copy_(torch.tensor(layer.weights.T.astype(np.float64)))
            if layer.bias is not None:
                lin.bias.copy_(torch.tensor(layer.bias.astype(np.float64)))
        mods += [lin, TORCH_ACT[layer.activation]()]
    return torch.nn.Sequential(*mods)


def random_model(rng, widths, activations, dtype, bias=True):
    return fastbp.Sequential(*[fastbp.Linear(a, b, activation=act, dtype=dtype, rng=rng, bias=bias)
                               for a, b, act in zip(widths, widths[1:], activations)])


@given(depth=st.integers(1, 4), data=st.data(), dtype=st.sampled_from(DTYPES),
       layout=st.sampled_from(LAYOUTS), seed=st.integers(0, 2**32 - 1))
def test_sequential_training_step_matches_torch(depth, data, dtype, layout, seed):
    rng = np.random.default_rng(seed)
    widths = data.draw(st.lists(st.integers(1, 300), min_size=depth + 1, max_size=depth + 1))
    batch = data.draw(st.integers(1, 500))
    acts = data.draw(st.lists(st.sampled_from(sorted(TORCH_ACT)), min_size=depth, max_size=depth))
    model = random_model(rng, widths, acts, dtype)
    tmodel = torch_copy(model)
    x = with_layout(rng.standard_normal((batch, widths[0])).astype(dtype), layout)
    y = rng.standard_normal((batch, widths[-1])).astype(dtype)

    loss = fastbp.MSELoss()
    value = model.train_step(x, y, loss, fastbp.SGD(model.parameters(), lr=0.1, momentum=0.5))
    tloss = torch.nn.functional.mse_loss(tmodel(torch.tensor(x.astype(np.float64))),
                                         torch.tensor(y.astype(np.float64)))
    tloss.backward()
    torch.optim.SGD(tmodel.parameters(), lr=0.1, momentum=0.5).step()

    np.testing.assert_allclose(value, tloss.item(), rtol=1e-4 if dtype == np.float32 else 1e-10)
    for layer, lin in zip(model, tmodel[::2]):
        assert_close(layer.grad_weights, lin.weight.grad.T, dtype, rtol=3e-4 if dtype == np.float32 else None)
        assert_close(layer.weights, lin.weight.T, dtype)
        assert_close(layer.bias, lin.bias, dtype)


def test_finite_differences_float64():
    rng = np.random.default_rng(11)
    model = random_model(rng, [5, 7, 6, 3], ["tanh", "sigmoid", "identity"], np.float64)
    x = rng.standard_normal((4, 5))
    labels = rng.integers(0, 3, 4)
    loss = fastbp.CrossEntropyLoss()

    loss(model.forward(x), labels)
    grad_x = model.backward(loss.backward())
    h = 1e-6
    for param in model.parameters():
        flat, grad = param.value.reshape(-1), param.grad.reshape(-1).copy()
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + h
            up = loss(model.forward(x), labels)
            flat[i] = old - h
            down = loss(model.forward(x), labels)
            flat[i] = old
            np.testing.assert_allclose(grad[i], (up - down) / (2 * h), rtol=1e-6, atol=1e-9)
    for i in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        numeric = (loss(model.forward(xp), labels) - loss(model.forward(xm), labels)) / (2 * h)
        np.testing.assert_allclose(grad_x[i], numeric, rtol=1e-6, atol=1e-9)


def test_fit_gd_sgd_and_minibatch_all_learn_blobs():
    (x, y), (x_test, y_test) = fastbp.gaussian_blobs(seed=3)
    # comparable numbers of updates: GD takes one step per epoch
    for batch_size, epochs in ((None, 300), (1, 5), (16, 30)):
        model = random_model(np.random.default_rng(0), [2, 8, 3], ["relu", "identity"], np.float32)
        history = model.fit(x, y, loss=fastbp.CrossEntropyLoss(), optimizer=fastbp.SGD(model.parameters(), lr=0.05),
                            epochs=epochs, batch_size=batch_size, rng=0, validation_data=(x_test, y_test))
        assert history["val_accuracy"][-1] >= 0.95, (batch_size, history["val_accuracy"][-1])
        assert len(history["loss"]) == epochs and history["loss"][-1] < history["loss"][0]


def _running_accuracy(model, x, y, loss, optimizer, batch_size, kind):
    """The accuracy fit reports, step by step: each batch's predictions
    before its update, counted with numpy."""
    right = total = 0
    for lo in range(0, len(x), batch_size):
        xb, yb = x[lo:lo + batch_size], y[lo:lo + batch_size]
        pred = model.forward(xb)
        if kind == "labels":
            right += np.count_nonzero(np.argmax(pred, axis=1) == yb)
        elif kind == "one-hot":
            right += np.count_nonzero(np.argmax(pred, axis=1) == np.argmax(yb, axis=1))
        else:
            right += np.count_nonzero((pred > 0.0) == (yb > 0.5))
        total += pred.size if kind == "binary" else len(xb)
        model.train_step(xb, yb, loss, optimizer)
    return right / total


@pytest.mark.parametrize("widths", [[2, 5, 3], [4, 24, 3]])  # the batch-inner and the batch-major layout
@pytest.mark.parametrize("fused", [None, False])
def test_fit_counts_the_accuracy_as_it_trains_with_no_second_forward(widths, fused):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((43, widths[0])).astype(np.float32)
    cases = [(fastbp.MSELoss(), rng.standard_normal((43, 3)), None),
             (fastbp.MSELoss(), np.eye(3)[rng.integers(0, 3, 43)], "one-hot"),
             (fastbp.CrossEntropyLoss(), rng.integers(0, 3, 43), "labels"),
             (fastbp.BCEWithLogitsLoss(), rng.integers(0, 2, (43, 3)).astype(np.float64), "binary")]
    for loss, y, kind in cases:
        model = random_model(np.random.default_rng(1), widths, ["tanh", "identity"], np.float32)
        twin = random_model(np.random.default_rng(1), widths, ["tanh", "identity"], np.float32)
        forwards = []
        plain_forward = model._forward
        model._forward = lambda inputs: forwards.append(len(inputs)) or plain_forward(inputs)
        history = model.fit(x, y, loss=loss, optimizer=fastbp.SGD(model.parameters(), lr=0.5), epochs=3,
                            batch_size=8, shuffle=False, progress=False, fused=fused)
        assert len(x) not in forwards  # (the layer path checks the output width on one row)
        if kind is None:
            assert history["accuracy"] == [None] * 3
            continue
        twin_optimizer = fastbp.SGD(twin.parameters(), lr=0.5)
        expected = [_running_accuracy(twin, x, y, loss, twin_optimizer, 8, kind) for _ in range(3)]
        assert history["accuracy"] == expected, (loss, kind)
        assert len(set(expected)) > 1  # it moved as the model trained


def test_the_running_accuracy_takes_nan_predictions_as_numpy_argmax_does():
    # a NaN in a row of predictions: numpy's arg-max is the first NaN's column
    from fastbp.kernels import network as network_kernels

    model = random_model(np.random.default_rng(1), [4, 24, 3], ["tanh", "identity"], np.float32)
    pred = np.array([[0.0, np.nan, 1.0], [np.nan, 2.0, 3.0], [1.0, 1.0, 0.0]], np.float32)
    table = model.fused.table
    work = np.zeros(3 * int(network_kernels.workspace_per_row(table)), np.float32)
    outs = network_kernels.split_workspace(table, 3, work)[0]
    outs[3 * 24:] = pred.ravel()
    for labels in ([1, 0, 0], [2, 1, 1], [0, 2, 1]):
        labels = np.array(labels)
        assert network_kernels.count_correct(table, work, 3, network_kernels.LABELS_ARGMAX,
                                             np.empty((0, 0), np.float32), labels, False) == \
            np.count_nonzero(np.argmax(pred, axis=1) == labels)
