"""Dropout: inverted dropout with a hashed mask, on the layer path and inside
the fused step (the same bits), off in evaluation; its expectation and
gradient against torch's rule."""
import pickle

import numpy as np
import pytest
import torch

import fastbp
from fastbp.kernels import dropout as dropout_kernels


def _make(dtype=np.float64, last_dropout=True):
    rng = np.random.default_rng(1)
    layers = [fastbp.Linear(10, 16, activation="relu", dtype=dtype, rng=rng), fastbp.Dropout(0.3, seed=7),
              fastbp.Linear(16, 12, activation="tanh", dtype=dtype, rng=rng), fastbp.Dropout(0.5, seed=9),
              fastbp.Linear(12, 4, dtype=dtype, rng=rng)]
    return layers + [fastbp.Dropout(0.2, seed=3)] if last_dropout else layers


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mask_rate_scale_and_expectation_follow_torchs_rule(dtype):
    # torch: out = x * bernoulli(1 - p) / (1 - p), so E[out] = x and a kept
    # element is x / (1 - p); the gradient is the same mask and scale
    p, n = 0.3, 200_000
    x = np.random.default_rng(0).standard_normal(n).astype(dtype)
    layer = fastbp.Dropout(p, seed=11)
    out = layer.forward_pass(x.reshape(-1, 500)).reshape(-1)  # rows share hashes in blocks of four
    kept = out != 0
    assert abs(kept.mean() - (1 - p)) < 5 * np.sqrt(p * (1 - p) / n)
    np.testing.assert_allclose(out[kept], x[kept] / (1 - p), rtol=1e-6 if dtype == np.float32 else 1e-9)
    tx = torch.tensor(x, requires_grad=True)
    (tx * torch.tensor(kept, dtype=tx.dtype) / (1 - p)).sum().backward()
    grad = layer.backward(np.ones((n // 500, 500), dtype)).reshape(-1)
    np.testing.assert_allclose(grad, tx.grad.numpy(), rtol=1e-6 if dtype == np.float32 else 1e-9)
    draws = np.mean([layer.forward_pass(np.ones((1, 64), dtype))[0] for _ in range(4000)], axis=0)
    assert np.all(np.abs(draws - 1.0) < 5 * np.sqrt(p / (1 - p) / 4000))  # E[out] = x
    assert np.isnan(fastbp.Dropout(0.5, seed=1).forward_pass(np.full((1, 64), np.nan))).all()  # NaN stays NaN


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_step_with_dropout_equals_the_layer_path_bit_for_bit(dtype):
    rng = np.random.default_rng(0)
    model, bare = fastbp.Sequential(*_make(dtype)), _make(dtype)
    assert model.fused is not None
    opt = fastbp.Adam(model.parameters(), lr=0.01)
    opt_bare = fastbp.Adam([p for layer in bare for p in layer.parameters()], lr=0.01)
    for _ in range(5):
        x = rng.standard_normal((9, 10)).astype(dtype)
        y = rng.standard_normal((9, 4)).astype(dtype)
        assert model.train_step(x, y, fastbp.MSELoss(), opt, fused=True) == fastbp._layer_path.train_step(
            bare, x, y, fastbp.MSELoss(), opt_bare)
    for p, q in zip(model.parameters(), opt_bare.params):
        np.testing.assert_array_equal(p.value, q.value)
    assert int(model.layers[1]._forwards[0]) == int(bare[1]._forwards[0]) == 5


def test_fit_with_dropout_is_reproducible_on_both_paths_and_off_in_prediction():
    (x, y), _ = fastbp.gaussian_blobs(60, 1, seed=0)
    x = np.hstack([x] * 5)  # 10 features

    def run(fused):
        layers = _make(last_dropout=False)
        layers[-1] = fastbp.Linear(12, 3, dtype=np.float64, rng=5)
        model = fastbp.Sequential(*layers)
        history = model.fit(x, y, loss=fastbp.CrossEntropyLoss(), optimizer=fastbp.SGD(model.parameters(), lr=0.1),
                            epochs=3, batch_size=8, rng=0, progress=False, fused=fused)
        return model, history

    (one, h1), (two, h2), (three, h3) = run(True), run(True), run(False)
    assert h1["loss"] == h2["loss"] == h3["loss"]
    np.testing.assert_array_equal(one.predict(x), two.predict(x))
    np.testing.assert_array_equal(one.predict(x), three.predict(x))
    np.testing.assert_array_equal(one.predict(x), one.predict(x))  # evaluation: no mask
    plain = fastbp.Sequential(*[layer for layer in one.layers if not isinstance(layer, fastbp.Dropout)])
    np.testing.assert_array_equal(plain.predict(x), one.predict(x))


def test_seeds_p_zero_and_the_fused_path_refusing_bce_after_a_dropout():
    x = np.random.default_rng(0).standard_normal((4, 6))
    a, b, c = fastbp.Dropout(0.5, seed=1), fastbp.Dropout(0.5, seed=1), fastbp.Dropout(0.5, seed=2)
    np.testing.assert_array_equal(a.forward_pass(x), b.forward_pass(x))
    assert not np.array_equal(a.forward_pass(x), c.forward_pass(x))
    np.testing.assert_array_equal(fastbp.Dropout(0.0).forward_pass(x), x)
    with pytest.raises(ValueError, match="p must be <= 0.999"):
        fastbp.Dropout(1.0)
    model = fastbp.Sequential(fastbp.Linear(6, 1, activation="sigmoid", rng=0), fastbp.Dropout(0.5, seed=0))
    with pytest.raises(ValueError, match="BCELoss is computed layer by layer"):
        model.train_step(x, np.ones((4, 1)), fastbp.BCELoss(), fastbp.SGD(model.parameters(), lr=0.1),
                         fused=True)


def test_dropout_saves_pickles_and_converts(tmp_path):
    rng = np.random.default_rng(0)
    model = fastbp.Sequential(*_make())
    x = rng.standard_normal((5, 10))
    model.train_step(x, rng.standard_normal((5, 4)), fastbp.MSELoss(), fastbp.SGD(model.parameters(), lr=0.1))
    model.save(tmp_path / "m.npz")
    for restored in (fastbp.load(tmp_path / "m.npz"), pickle.loads(pickle.dumps(model))):
        assert [type(layer) for layer in restored.layers] == [type(layer) for layer in model.layers]
        assert restored.layers[1].seed == 7 and int(restored.layers[1]._forwards[0]) == 1
        assert restored.fused is not None
        # the next training forward draws the mask of the second forward of its seed
        reference = fastbp.Dropout(0.3, seed=7)
        reference.forward_pass(np.ones((5, 16)))
        np.testing.assert_array_equal(restored.layers[1].forward_pass(np.ones((5, 16))),
                                      reference.forward_pass(np.ones((5, 16))))
    net = model.to_torch()
    assert [type(m).__name__ for m in net] == ["Linear", "ReLU", "Dropout", "Linear", "Tanh", "Dropout", "Linear",
                                              "Dropout"]
    back = fastbp.from_torch(net)
    assert [type(layer).__name__ for layer in back.layers] == ["Linear", "Dropout", "Linear", "Dropout", "Linear",
                                                             "Dropout"]
    assert dropout_kernels.dropout_scale(0) == 1.0


def test_narrow_networks_take_dropout_in_their_batch_inner_layout():
    # widths <= 8: the batch-inner layout, which sums in another order
    def make():
        rng = np.random.default_rng(2)
        return [fastbp.Linear(3, 6, activation="tanh", dtype=np.float64, rng=rng), fastbp.Dropout(0.4, seed=5),
                fastbp.Linear(6, 2, dtype=np.float64, rng=rng), fastbp.Dropout(0.25, seed=6)]

    model, bare = fastbp.Sequential(*make()), make()
    assert fastbp.kernels.network.is_narrow(model.fused.table)
    opt = fastbp.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt_bare = fastbp.SGD([p for layer in bare for p in layer.parameters()], lr=0.1, momentum=0.9)
    rng = np.random.default_rng(3)
    for loss in (fastbp.MSELoss(), fastbp.CrossEntropyLoss()):
        for _ in range(4):
            x = rng.standard_normal((9, 3))
            y = rng.standard_normal((9, 2)) if isinstance(loss, fastbp.MSELoss) else rng.integers(0, 2, 9)
            value = model.train_step(x, y, loss, opt, fused=True)
            assert value == pytest.approx(fastbp._layer_path.train_step(bare, x, y, loss, opt_bare), rel=1e-12)
    for p, q in zip(model.parameters(), opt_bare.params):
        np.testing.assert_allclose(p.value, q.value, rtol=1e-12, atol=1e-14)
