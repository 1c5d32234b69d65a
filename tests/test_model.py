"""Sequential models of depth 1..4 against torch.nn, and the float64 finite-difference check."""
import numpy as np
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


def test_fit_runs_the_accuracy_forward_only_for_classification():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 2)).astype(np.float32)
    cases = [(fastbp.MSELoss(), rng.standard_normal((40, 3)), False),
             (fastbp.MSELoss(), np.eye(3)[rng.integers(0, 3, 40)], True),  # one-hot rows
             (fastbp.CrossEntropyLoss(), rng.integers(0, 3, 40), True)]
    for loss, y, classification in cases:
        model = random_model(np.random.default_rng(1), [2, 5, 3], ["tanh", "identity"], np.float32)
        forwards = []
        plain_forward = model._forward
        model._forward = lambda inputs: forwards.append(len(inputs)) or plain_forward(inputs)
        history = model.fit(x, y, loss=loss, optimizer=fastbp.SGD(model.parameters(), lr=0.01), epochs=2,
                            batch_size=8, progress=False)
        if classification:
            assert forwards == [40, 40] and all(0 <= a <= 1 for a in history["accuracy"])
        else:
            assert forwards == [] and history["accuracy"] == [None, None]
