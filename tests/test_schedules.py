"""Learning-rate schedules against torch.optim.lr_scheduler and scikit-learn's
formulas, applied by fit between compiled epochs or per step, on both paths."""
import math

import numpy as np
import pytest
import torch

import fastbp


def _model(fusable=True, dtype=np.float64):
    rng = np.random.default_rng(0)
    if fusable:
        return fastbp.Sequential(fastbp.Linear(3, 6, activation="tanh", dtype=dtype, rng=rng),
                                 fastbp.Linear(6, 2, dtype=dtype, rng=rng))
    return fastbp.Sequential(fastbp.Linear(3, 6, dtype=dtype, rng=rng), fastbp.Tanh(),
                             fastbp.Linear(6, 2, dtype=dtype, rng=rng))


def _data(n=40):
    rng = np.random.default_rng(1)
    return rng.standard_normal((n, 3)), rng.standard_normal((n, 2))


def _torch_lrs(make_scheduler, epochs, metrics=None):
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.1)
    scheduler = make_scheduler(opt)
    lrs = []
    for epoch in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step(*([metrics[epoch]] if metrics is not None else []))
    return lrs


@pytest.mark.parametrize("fusable", [True, False])
@pytest.mark.parametrize("ours, theirs", [
    (lambda: fastbp.StepLR(3, gamma=0.5), lambda o: torch.optim.lr_scheduler.StepLR(o, 3, gamma=0.5)),
    (lambda: fastbp.ExponentialLR(0.8), lambda o: torch.optim.lr_scheduler.ExponentialLR(o, 0.8)),
    (lambda: fastbp.CosineAnnealingLR(6, eta_min=0.01),
     lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 6, eta_min=0.01)),
])
def test_epoch_schedules_follow_torch(ours, theirs, fusable):
    x, y = _data()
    model = _model(fusable)
    history = model.fit(x, y, loss=fastbp.MSELoss(), optimizer=fastbp.SGD(model.parameters(), lr=0.1), epochs=8,
                        batch_size=16, progress=False, schedule=ours())
    np.testing.assert_allclose(history["lr"], _torch_lrs(theirs, 8), rtol=1e-12)


def test_reduce_on_plateau_follows_torch():
    x, y = _data()
    model = _model()
    schedule = fastbp.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, threshold=0.05, cooldown=1)
    history = model.fit(x, y, loss=fastbp.MSELoss(), optimizer=fastbp.SGD(model.parameters(), lr=0.1),
                        epochs=12, batch_size=8, progress=False, schedule=schedule)
    expected = _torch_lrs(lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(
        o, factor=0.5, patience=1, threshold=0.05, cooldown=1), 12, history["loss"])
    assert history["lr"] == pytest.approx(expected, rel=1e-12)
    assert history["lr"][-1] < 0.1  # it did reduce


def test_invscaling_is_scikit_learns():
    # scikit-learn's SGDOptimizer.iteration_ends(t): lr = lr_init / (t + 1) ** power_t, t = samples seen
    from sklearn.neural_network._stochastic_optimizers import SGDOptimizer

    x, y = _data(30)
    model = _model()
    history = model.fit(x, y, loss=fastbp.MSELoss(), optimizer=fastbp.SGD(model.parameters(), lr=0.2), epochs=5,
                        batch_size=7, progress=False, schedule=fastbp.InvScaling(power_t=0.4))
    reference = SGDOptimizer([np.zeros(1)], learning_rate_init=0.2, lr_schedule="invscaling", power_t=0.4)
    expected = []
    for epoch in range(5):
        expected.append(reference.learning_rate)
        reference.iteration_ends((epoch + 1) * 30)
    np.testing.assert_allclose(history["lr"], expected, rtol=1e-12)


def test_adaptive_divides_by_five_and_then_stops_like_scikit_learn():
    x, y = _data()
    model = _model()
    # lr 0 keeps the loss flat: no epoch improves, so lr is divided by 5
    # after every patience + 1 epochs, until it is below 1e-6
    schedule = fastbp.Adaptive(tol=1e-4, patience=1)
    history = model.fit(x, y, loss=fastbp.MSELoss(), optimizer=fastbp.SGD(model.parameters(), lr=1e-5),
                        epochs=40, batch_size=40, progress=False, schedule=schedule, shuffle=False)
    lrs = history["lr"]
    assert lrs[:3] == pytest.approx([1e-5, 1e-5, 1e-5])
    assert lrs[3] == pytest.approx(2e-6) and lrs[5] == pytest.approx(4e-7)
    assert "learning rate reached" in history["stop_reason"] and len(lrs) < 40


@pytest.mark.parametrize("fusable", [True, False])
def test_a_per_step_cosine_with_warmup_changes_lr_every_step_inside_the_epoch(fusable):
    x, y = _data(40)
    steps_per_epoch = 5
    schedule = fastbp.CosineAnnealingLR(T_max=15, warmup=3, per_step=True)
    model = _model(fusable)
    reference = _model(fusable)
    opt = fastbp.SGD(model.parameters(), lr=0.1, momentum=0.9)
    ref_opt = fastbp.SGD(reference.parameters(), lr=0.1, momentum=0.9)
    history = model.fit(x, y, loss=fastbp.MSELoss(), optimizer=opt, epochs=3, batch_size=8, shuffle=False,
                        progress=False, schedule=schedule)
    expected = []
    for t in range(3 * steps_per_epoch):
        lr = 0.1 * (t + 1) / 3 if t < 3 else 0.5 * 0.1 * (1 + math.cos(math.pi * (t - 3) / 12))
        expected.append(lr)
        ref_opt.lr = lr
        lo = (t % steps_per_epoch) * 8
        reference.train_step(x[lo:lo + 8], y[lo:lo + 8], fastbp.MSELoss(), ref_opt)
    assert history["lr"] == pytest.approx(expected[steps_per_epoch - 1::steps_per_epoch], rel=1e-12)
    for p, q in zip(model.parameters(), reference.parameters()):
        np.testing.assert_array_equal(p.value, q.value)


def test_schedule_arguments_are_checked():
    with pytest.raises(ValueError, match="step_size must be a positive int"):
        fastbp.StepLR(0)
    with pytest.raises(ValueError, match="warmup must be < T_max"):
        fastbp.CosineAnnealingLR(5, warmup=5)
    with pytest.raises(TypeError, match="schedule must be a fastbp schedule"):
        model = _model()
        model.fit(*_data(), loss=fastbp.MSELoss(), optimizer=fastbp.SGD(model.parameters(), lr=0.1),
                  schedule=lambda epoch: 0.1, progress=False)
    model = _model()
    before = [p.value.copy() for p in model.parameters()]
    with pytest.raises(ValueError, match="schedule monitors 'val_loss', which needs validation_data"):
        model.fit(*_data(), loss=fastbp.MSELoss(), optimizer=fastbp.SGD(model.parameters(), lr=0.1),
                  schedule=fastbp.ReduceLROnPlateau(), progress=False)
    assert all(np.array_equal(p.value, b) for p, b in zip(model.parameters(), before))
    with pytest.raises(ValueError, match="monitor='accuracy' has no value"):  # regression: no accuracy
        model.fit(*_data(), loss=fastbp.MSELoss(), optimizer=fastbp.SGD(model.parameters(), lr=0.1),
                  schedule=fastbp.ReduceLROnPlateau(monitor="accuracy"), progress=False)
