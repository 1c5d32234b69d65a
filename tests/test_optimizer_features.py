"""Nesterov momentum, weight decay, Adam / AdamW, gradient clipping and the
L2 penalty: against torch (and scikit-learn's formulas), on the fused
whole-network step and on the layer-by-layer path, which must agree."""
import numpy as np
import pytest
import torch

import fastbp
from conftest import assert_close

OPTIMIZERS = {
    "sgd": (lambda p: fastbp.SGD(p, lr=0.05), lambda p: torch.optim.SGD(p, lr=0.05)),
    "momentum": (lambda p: fastbp.SGD(p, lr=0.05, momentum=0.9),
                 lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9)),
    "nesterov": (lambda p: fastbp.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
                 lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True)),
    "sgd_decay": (lambda p: fastbp.SGD(p, lr=0.05, momentum=0.5, weight_decay=0.1),
                  lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.5, weight_decay=0.1)),
    "adam": (lambda p: fastbp.Adam(p, lr=0.01, betas=(0.8, 0.99), eps=1e-7),
             lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.8, 0.99), eps=1e-7)),
    "adam_decay": (lambda p: fastbp.Adam(p, lr=0.01, weight_decay=0.05),
                   lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=0.05)),
    "adamw": (lambda p: fastbp.AdamW(p, lr=0.01, weight_decay=0.1),
              lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1)),
}
RTOL = {np.float32: 2e-5, np.float64: 1e-11}
WIDTHS = [10, 16, 12]  # wider than 8: the fused step takes the batch-major layout


def _layers(dtype, seed=3):
    rng = np.random.default_rng(seed)
    return [fastbp.Linear(10, 16, activation="tanh", dtype=dtype, rng=rng),
            fastbp.Linear(16, 12, dtype=dtype, rng=rng)]


def _torch_net(layers):
    net = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.Tanh(), torch.nn.Linear(16, 12))
    dtype = torch.float64 if layers[0].dtype == np.float64 else torch.float32
    net = net.to(dtype)
    with torch.no_grad():
        for mod, layer in zip([net[0], net[2]], layers):
            mod.weight.copy_(torch.from_numpy(layer.weights.T.copy()))
            mod.bias.copy_(torch.from_numpy(layer.bias.copy()))
    return net


def _batches(dtype, steps, batch=9):
    rng = np.random.default_rng(11)
    return [(rng.standard_normal((batch, 10)).astype(dtype), rng.standard_normal((batch, 12)).astype(dtype))
            for _ in range(steps)]


def _torch_params(net):
    return [net[0].weight.detach().numpy().T, net[0].bias.detach().numpy(),
            net[2].weight.detach().numpy().T, net[2].bias.detach().numpy()]


def _layer_path_step(layers, x, y, loss, optimizer, l2=0.0):
    """The layer-by-layer path on layers in no model (updated parameter by parameter)."""
    return fastbp._layer_path.train_step(layers, x, y, loss, optimizer, l2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_fused_step_matches_torch_and_the_layer_path(name, dtype):
    ours, theirs = OPTIMIZERS[name]
    model = fastbp.Sequential(*_layers(dtype))
    bare = _layers(dtype)
    net = _torch_net(bare)
    opt_model, opt_bare, opt_torch = ours(model.parameters()), ours(
        [p for layer in bare for p in layer.parameters()]), theirs(net.parameters())
    assert opt_model.flat_params is model.fused.params and opt_bare.flat_params is None
    loss = fastbp.MSELoss()
    for x, y in _batches(dtype, 6):
        value = model.train_step(x, y, loss, opt_model, fused=True)
        assert _layer_path_step(bare, x, y, fastbp.MSELoss(), opt_bare) == value
        opt_torch.zero_grad()
        torch.nn.functional.mse_loss(net(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        opt_torch.step()
    assert opt_model.step_count == opt_bare.step_count == 6
    for p, q, t in zip(model.parameters(), [p for layer in bare for p in layer.parameters()],
                       _torch_params(net)):
        np.testing.assert_array_equal(p.value, q.value)  # the two paths: the same bits
        assert_close(p.value, t, dtype, rtol=RTOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["momentum", "adamw"])
def test_fused_epoch_matches_torch(name, dtype):
    ours, theirs = OPTIMIZERS[name]
    model = fastbp.Sequential(*_layers(dtype))
    net = _torch_net(model.layers)
    opt, opt_torch = ours(model.parameters()), theirs(net.parameters())
    x = np.concatenate([b[0] for b in _batches(dtype, 4)])
    y = np.concatenate([b[1] for b in _batches(dtype, 4)])
    history = model.fit(x, y, loss=fastbp.MSELoss(), optimizer=opt, epochs=2, batch_size=8, shuffle=False,
                        progress=False, fused=True)
    for _ in range(2):
        for lo in range(0, len(x), 8):
            opt_torch.zero_grad()
            torch.nn.functional.mse_loss(net(torch.from_numpy(x[lo:lo + 8])),
                                         torch.from_numpy(y[lo:lo + 8])).backward()
            opt_torch.step()
    assert opt.step_count == 2 * 5 and len(history["loss"]) == 2
    for p, t in zip(model.parameters(), _torch_params(net)):
        assert_close(p.value, t, dtype, rtol=RTOL[dtype])


def test_nesterov_equals_scikit_learns_formula_at_a_constant_learning_rate():
    # scikit-learn's SGDOptimizer (neural_network/_stochastic_optimizers.py):
    #   velocity = momentum * velocity - lr * grad
    #   update = momentum * velocity - lr * grad   (nesterov)
    from sklearn.neural_network import _stochastic_optimizers as sk
    rng = np.random.default_rng(0)
    layer = fastbp.Linear(5, 3, dtype=np.float64, rng=rng)
    values = [layer.weights.copy(), layer.bias.copy()]
    reference = sk.SGDOptimizer(values, learning_rate_init=0.1, momentum=0.9, nesterov=True)
    opt = fastbp.SGD(layer.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    for _ in range(10):
        grads = [rng.standard_normal(v.shape) for v in values]
        layer.grad_weights[...], layer.grad_bias[...] = grads
        opt.step()
        reference.update_params(values, grads)
    np.testing.assert_allclose(layer.weights, values[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.bias, values[1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("max_norm", [0.05, 1e3])  # clipping, and a norm already within the bound
def test_gradient_clipping_matches_torch_clip_grad_norm(dtype, max_norm):
    model = fastbp.Sequential(*_layers(dtype))
    bare = _layers(dtype)
    net = _torch_net(bare)
    opt = fastbp.SGD(model.parameters(), lr=0.1, momentum=0.9, max_grad_norm=max_norm)
    opt_bare = fastbp.SGD([p for layer in bare for p in layer.parameters()], lr=0.1, momentum=0.9,
                          max_grad_norm=max_norm)
    opt_torch = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    for x, y in _batches(dtype, 5):
        value = model.train_step(x, y, fastbp.MSELoss(), opt, fused=True)
        assert _layer_path_step(bare, x, y, fastbp.MSELoss(), opt_bare) == value
        opt_torch.zero_grad()
        torch.nn.functional.mse_loss(net(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), max_norm)
        opt_torch.step()
    for p, q, t in zip(model.parameters(), opt_bare.params, _torch_params(net)):
        np.testing.assert_array_equal(p.value, q.value)
        assert_close(p.value, t, dtype, rtol=RTOL[dtype] * 10)


def test_clip_grad_norm_function_matches_torch():
    rng = np.random.default_rng(2)
    layer = fastbp.Linear(4, 3, dtype=np.float64, rng=rng)
    layer.grad_weights[...] = rng.standard_normal((4, 3))
    layer.grad_bias[...] = rng.standard_normal(3)
    grads = [torch.from_numpy(layer.grad_weights.copy()), torch.from_numpy(layer.grad_bias.copy())]
    tensors = [torch.zeros_like(g, requires_grad=True) for g in grads]
    for t, g in zip(tensors, grads):
        t.grad = g
    norm = fastbp.clip_grad_norm_(layer.parameters(), 0.5)
    torch_norm = torch.nn.utils.clip_grad_norm_(tensors, 0.5)
    assert norm == pytest.approx(float(torch_norm), rel=1e-12)
    np.testing.assert_allclose(layer.grad_weights, tensors[0].grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(layer.grad_bias, tensors[1].grad.numpy(), rtol=1e-12)
    with pytest.raises(ValueError, match="max_norm must be > 0"):
        fastbp.clip_grad_norm_(layer.parameters(), 0.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_l2_penalty_is_scikit_learns_alpha(dtype, reduction):
    # scikit-learn's MLP: loss += 0.5 * alpha * sum(W ** 2) / batch, and each
    # weight gradient += alpha * W / batch; biases are not penalised. Written
    # here in torch, whose autograd then gives the gradients.
    alpha = 0.3
    model = fastbp.Sequential(*_layers(dtype))
    bare = _layers(dtype)
    net = _torch_net(bare)
    opt, opt_bare = fastbp.SGD(model.parameters(), lr=0.05), fastbp.SGD(
        [p for layer in bare for p in layer.parameters()], lr=0.05)
    opt_torch = torch.optim.SGD(net.parameters(), lr=0.05)
    for x, y in _batches(dtype, 4):
        loss = fastbp.MSELoss(reduction=reduction)
        value = model.train_step(x, y, loss, opt, fused=True, l2=alpha)
        assert _layer_path_step(bare, x, y, fastbp.MSELoss(reduction=reduction), opt_bare, alpha) == value
        opt_torch.zero_grad()
        rows = len(x) if reduction == "mean" else 1
        penalty = 0.5 * alpha * (net[0].weight.pow(2).sum() + net[2].weight.pow(2).sum()) / rows
        torch_loss = torch.nn.functional.mse_loss(net(torch.from_numpy(x)), torch.from_numpy(y),
                                                  reduction=reduction) + penalty
        torch_loss.backward()
        opt_torch.step()
        assert value == pytest.approx(torch_loss.item(), rel=RTOL[dtype] * 10)
    for p, q, t in zip(model.parameters(), opt_bare.params, _torch_params(net)):
        np.testing.assert_array_equal(p.value, q.value)
        assert_close(p.value, t, dtype, rtol=RTOL[dtype] * 10)


def test_fit_with_l2_equals_train_steps_with_l2():
    x, y = _batches(np.float64, 1, batch=20)[0]
    one, two = fastbp.Sequential(*_layers(np.float64)), fastbp.Sequential(*_layers(np.float64))
    opt_one, opt_two = fastbp.Adam(one.parameters(), lr=0.01), fastbp.Adam(two.parameters(), lr=0.01)
    history = one.fit(x, y, loss=fastbp.MSELoss(), optimizer=opt_one, epochs=3, batch_size=7, shuffle=False,
                      progress=False, l2=0.1)
    total = 0.0
    for lo in range(0, 20, 7):
        total += two.train_step(x[lo:lo + 7], y[lo:lo + 7], fastbp.MSELoss(), opt_two, l2=0.1) * len(
            x[lo:lo + 7])
    for _ in range(2):
        for lo in range(0, 20, 7):
            two.train_step(x[lo:lo + 7], y[lo:lo + 7], fastbp.MSELoss(), opt_two, l2=0.1)
    assert history["loss"][0] == pytest.approx(total / 20, rel=1e-12)
    np.testing.assert_array_equal(one.fused.params, two.fused.params)
    assert opt_one.step_count == opt_two.step_count == 9


def test_hyper_parameters_are_checked():
    layer = fastbp.Linear(2, 2, rng=0)
    with pytest.raises(ValueError, match="nesterov=True needs a momentum > 0"):
        fastbp.SGD(layer.parameters(), lr=0.1, nesterov=True)
    opt = fastbp.SGD(layer.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    with pytest.raises(ValueError, match="nesterov=True needs a momentum > 0"):
        opt.momentum = 0.0
    assert opt.momentum == 0.9 and opt.nesterov
    with pytest.raises(TypeError, match="nesterov must be True or False"):
        opt.nesterov = "yes"
    with pytest.raises(ValueError, match="weight_decay must be >= 0"):
        fastbp.AdamW(layer.parameters(), weight_decay=-1.0)
    with pytest.raises(ValueError, match="max_grad_norm must be > 0"):
        fastbp.Adam(layer.parameters(), max_grad_norm=0.0)
    with pytest.raises(ValueError, match="l2 must be >= 0"):
        fastbp.Sequential(layer).train_step(np.ones((1, 2)), np.ones((1, 2)), fastbp.MSELoss(),
                                            fastbp.SGD(layer.parameters(), lr=0.1), l2=-0.5)


def test_momentum_switched_on_later_in_a_fused_model_starts_from_zero_like_torch():
    model = fastbp.Sequential(*_layers(np.float64))
    net = _torch_net(model.layers)
    opt, opt_torch = fastbp.SGD(model.parameters(), lr=0.05), torch.optim.SGD(net.parameters(), lr=0.05)
    for i, (x, y) in enumerate(_batches(np.float64, 6)):
        if i == 3:
            opt.momentum = opt_torch.param_groups[0]["momentum"] = 0.9
            opt.nesterov = opt_torch.param_groups[0]["nesterov"] = True
        model.train_step(x, y, fastbp.MSELoss(), opt)
        opt_torch.zero_grad()
        torch.nn.functional.mse_loss(net(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        opt_torch.step()
    for p, t in zip(model.parameters(), _torch_params(net)):
        assert_close(p.value, t, np.float64, rtol=1e-11)
