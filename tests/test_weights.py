"""Per-row weights (sample_weight, class_weight) in every loss, against
torch's weighted losses, on the fused step and the layer path."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fastbp
from conftest import assert_close

RTOL = {np.float32: 1e-5, np.float64: 1e-12}


def _torch_weighted(kind, pred, target, weights, reduction):
    """sum_i w_i l_i, divided under "mean" by sum_i w_i (times the outputs per
    row for element-wise losses); torch's CrossEntropyLoss(weight=) rule."""
    if kind == "mse":
        per = F.mse_loss(pred, target, reduction="none").sum(1)
    elif kind == "bce":
        per = F.binary_cross_entropy(pred, target, reduction="none").sum(1)
    elif kind == "bce_logits":
        per = F.binary_cross_entropy_with_logits(pred, target, reduction="none").sum(1)
    else:
        per = F.cross_entropy(pred, target, reduction="none")
    total = (weights * per).sum()
    if reduction == "half_sum":
        return 0.5 * total
    if reduction == "mean":
        return total / (weights.sum() * (pred.shape[1] if kind in ("mse", "bce", "bce_logits") else 1))
    return total


LOSSES = {"mse": fastbp.MSELoss, "bce": fastbp.BCELoss, "bce_logits": fastbp.BCEWithLogitsLoss,
          "labels": fastbp.CrossEntropyLoss, "soft": fastbp.CrossEntropyLoss}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("kind", sorted(LOSSES))
def test_weighted_losses_and_gradients_match_torch(kind, reduction, dtype):
    rng = np.random.default_rng(0)
    batch, width = 7, 4
    pred = rng.standard_normal((batch, width)).astype(dtype)
    if kind == "bce":
        pred = 1 / (1 + np.exp(-pred))
    if kind == "labels":
        target = rng.integers(0, width, batch)
    elif kind == "soft":
        target = rng.dirichlet(np.ones(width), batch).astype(dtype)
    else:
        target = rng.uniform(0, 1, (batch, width)).astype(dtype)
    weights = rng.uniform(0, 2, batch)
    weights[2] = 0.0
    loss = LOSSES[kind](reduction=reduction)
    value = loss.forward(pred, target, weights)
    grad = loss.backward()
    tp = torch.tensor(pred, requires_grad=True)
    expected = _torch_weighted(kind if kind not in ("labels", "soft") else "ce", tp, torch.tensor(target),
                               torch.tensor(weights, dtype=tp.dtype), reduction)
    expected.backward()
    assert value == pytest.approx(expected.item(), rel=RTOL[dtype] * 10)
    assert_close(grad, tp.grad, dtype, rtol=RTOL[dtype] * 10)
    assert not grad[2].any()  # a zero weight: no gradient


def test_class_weights_equal_torchs_cross_entropy_weight():
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((9, 3))
    labels = rng.integers(0, 3, 9)
    class_weight = np.array([0.2, 1.0, 3.0])
    loss = fastbp.CrossEntropyLoss()
    value = loss.forward(logits, labels, class_weight[labels])
    t = torch.tensor(logits, requires_grad=True)
    expected = torch.nn.CrossEntropyLoss(weight=torch.tensor(class_weight))(t, torch.tensor(labels))
    expected.backward()
    assert value == pytest.approx(expected.item(), rel=1e-12)
    np.testing.assert_allclose(loss.backward(), t.grad.numpy(), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("widths", [(3, 6, 4), (12, 16, 5)])  # the batch-inner layout, and batch-major
@pytest.mark.parametrize("kind", ["mse", "labels"])
def test_fused_step_with_weights_matches_the_layer_path(widths, kind):
    rng = np.random.default_rng(2)
    make = lambda: [fastbp.Linear(widths[0], widths[1], activation="tanh", dtype=np.float64, rng=3),
                    fastbp.Linear(widths[1], widths[2], dtype=np.float64, rng=4)]
    model, bare = fastbp.Sequential(*make()), make()
    opt = fastbp.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt_bare = fastbp.SGD([p for layer in bare for p in layer.parameters()], lr=0.1, momentum=0.9)
    loss = fastbp.MSELoss() if kind == "mse" else fastbp.CrossEntropyLoss()
    for _ in range(4):
        x = rng.standard_normal((10, widths[0]))
        y = rng.standard_normal((10, widths[2])) if kind == "mse" else rng.integers(0, widths[2], 10)
        w = rng.uniform(0, 3, 10)
        value = model.train_step(x, y, loss, opt, fused=True, sample_weight=w)
        expected = fastbp._layer_path.train_step(bare, x, y, loss, opt_bare, 0.0, w)
        assert value == pytest.approx(expected, rel=1e-12)
    for p, q in zip(model.parameters(), opt_bare.params):
        if widths[1] > 8:
            np.testing.assert_array_equal(p.value, q.value)
        else:  # the batch-inner layout sums in another order
            np.testing.assert_allclose(p.value, q.value, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("fusable", [True, False])
def test_fit_class_weight_balanced_and_dict_equal_their_sample_weights(fusable):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((60, 2))
    y = np.where(rng.uniform(size=60) < 0.8, 0, rng.integers(1, 3, 60))  # imbalanced
    counts = np.bincount(y, minlength=3)

    def model():
        if fusable:
            return fastbp.Sequential(fastbp.Linear(2, 6, activation="tanh", dtype=np.float64, rng=0),
                                     fastbp.Linear(6, 3, dtype=np.float64, rng=1))
        return fastbp.Sequential(fastbp.Linear(2, 6, dtype=np.float64, rng=0), fastbp.Tanh(),
                                 fastbp.Linear(6, 3, dtype=np.float64, rng=1))

    fit = dict(loss=fastbp.CrossEntropyLoss(), epochs=3, batch_size=16, rng=0, progress=False)
    runs = {}
    for name, kwargs in {"balanced": {"class_weight": "balanced"},
                         "manual": {"sample_weight": (60 / (3 * counts))[y]},
                         "dict": {"class_weight": {1: 2.5}, "sample_weight": np.full(60, 0.5)},
                         "dict manual": {"sample_weight": np.where(y == 1, 2.5, 1.0) * 0.5}}.items():
        m = model()
        runs[name] = (m.fit(x, y, optimizer=fastbp.Adam(m.parameters(), lr=0.05), **fit, **kwargs)["loss"],
                      [p.value.copy() for p in m.parameters()])
    for a, b in (("balanced", "manual"), ("dict", "dict manual")):
        assert runs[a][0] == runs[b][0]
        for p, q in zip(runs[a][1], runs[b][1]):
            np.testing.assert_array_equal(p, q)
    m = model()
    unweighted = m.fit(x, y, optimizer=fastbp.Adam(m.parameters(), lr=0.05), **fit)["loss"]
    assert unweighted != runs["balanced"][0]


def test_weights_are_checked_before_training():
    model = fastbp.Sequential(fastbp.Linear(2, 3, rng=0))
    x, y = np.ones((4, 2)), np.array([0, 1, 2, 1])
    before = model.layers[0].weights.copy()
    fit = dict(loss=fastbp.CrossEntropyLoss(), optimizer=fastbp.SGD(model.parameters(), lr=0.1), progress=False)
    with pytest.raises(ValueError, match=r"sample_weight must have shape \(4,\)"):
        model.fit(x, y, sample_weight=np.ones(3), **fit)
    with pytest.raises(ValueError, match="sample_weight must be finite and >= 0"):
        model.fit(x, y, sample_weight=[1, -1, 1, 1], **fit)
    with pytest.raises(TypeError, match="class_weight must be a dict"):
        model.fit(x, y, class_weight="even", **fit)
    with pytest.raises(ValueError, match="class_weight needs a classification loss"):
        model.fit(x, np.ones((4, 3)), class_weight="balanced", loss=fastbp.MSELoss(),
                  optimizer=fastbp.SGD(model.parameters(), lr=0.1), progress=False)
    np.testing.assert_array_equal(model.layers[0].weights, before)
