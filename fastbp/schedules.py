"""Learning-rate schedules and early stopping for `Sequential.fit`.

A schedule sets the optimizer's `lr` between compiled epochs; one with
`per_step = True` hands the compiled epoch one learning rate per batch, so
no step leaves compiled code. The rules are torch.optim.lr_scheduler's
(StepLR, ExponentialLR, CosineAnnealingLR, ReduceLROnPlateau) and
scikit-learn's MLP (`invscaling`, `adaptive`). Each keeps what it has
learnt in `state_dict()`, which checkpoints save, so a resumed fit goes on
exactly where the first stopped.
"""
import math

import numpy as np

from ._validation import check_choice, check_finite_float, check_positive_int


class Schedule:
    """What fit calls: `start` once per fit, then `lr(epoch)` before each
    epoch (or `step_lrs(epoch, steps)` when `per_step`), then `end_epoch`,
    which may change the learning rate or return why training should stop."""

    per_step = False

    def __init__(self):
        self.base_lr = None  # the optimizer's lr when the schedule first started

    def start(self, optimizer):
        if self.base_lr is None:
            self.base_lr = optimizer.lr

    def lr(self, epoch):
        return self.base_lr

    def step_lrs(self, epoch, steps):
        return np.full(steps, self.lr(epoch))

    def end_epoch(self, epoch, history, optimizer, samples):
        """After an epoch's history is written; returns a reason to stop, or None."""
        return None

    def state_dict(self):
        return {key: value for key, value in vars(self).items()}

    def load_state_dict(self, state):
        unknown = set(state) - set(vars(self))
        if unknown:
            raise ValueError(f"{type(self).__name__}.load_state_dict: unknown entries {sorted(unknown)}")
        vars(self).update(state)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_") and k != "base_lr")
        return f"{type(self).__name__}({args})"


class StepLR(Schedule):
    """lr = base_lr * gamma ** (epoch // step_size), torch's StepLR."""

    def __init__(self, step_size, gamma=0.1):
        super().__init__()
        self.step_size = check_positive_int(step_size, "step_size")
        self.gamma = check_finite_float(gamma, "gamma", positive=True)

    def lr(self, epoch):
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class ExponentialLR(Schedule):
    """lr = base_lr * gamma ** epoch, torch's ExponentialLR."""

    def __init__(self, gamma):
        super().__init__()
        self.gamma = check_finite_float(gamma, "gamma", positive=True)

    def lr(self, epoch):
        return self.base_lr * self.gamma ** epoch


class CosineAnnealingLR(Schedule):
    """Cosine annealing from base_lr to eta_min over T_max epochs (or steps,
    with per_step=True), after `warmup` epochs (steps) of linear warm-up:

        t < warmup:  lr = base_lr * (t + 1) / warmup
        else:        lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * (t - warmup) / (T_max - warmup))) / 2

    With warmup=0 this is torch's CosineAnnealingLR (its closed form).
    """

    def __init__(self, T_max, eta_min=0.0, warmup=0, per_step=False):
        super().__init__()
        self.T_max = check_positive_int(T_max, "T_max")
        self.eta_min = check_finite_float(eta_min, "eta_min", minimum=0.0)
        self.warmup = 0 if warmup == 0 else check_positive_int(warmup, "warmup")
        if self.warmup >= self.T_max:
            raise ValueError(f"warmup must be < T_max ({self.T_max}), got {warmup}")
        if not isinstance(per_step, bool):
            raise TypeError(f"per_step must be True or False, got {per_step!r}")
        self.per_step = per_step

    def _at(self, t):
        if t < self.warmup:
            return self.base_lr * (t + 1) / self.warmup
        span = self.T_max - self.warmup
        return self.eta_min + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * (t - self.warmup) / span)) / 2

    def lr(self, epoch):
        return self._at(epoch)

    def step_lrs(self, epoch, steps):
        return np.array([self._at(epoch * steps + i) for i in range(steps)])


def _improved(value, best, mode, delta, relative):
    if mode == "min":
        return value < (best * (1 - delta) if relative else best - delta)
    return value > (best * (1 + delta) if relative else best + delta)


def _monitored(history, monitor, who):
    values = history.get(monitor)
    if not values or values[-1] is None:
        raise ValueError(f"{who}: monitor={monitor!r} has no value in the history (known: "
                         f"{', '.join(k for k, v in history.items() if isinstance(v, list) and v and v[-1] is not None)})")
    return values[-1]


class _LearnedLR(Schedule):
    """A schedule whose learning rate follows the history (`current_lr`),
    starting from the optimizer's."""

    def __init__(self):
        super().__init__()
        self.current_lr = None

    def start(self, optimizer):
        super().start(optimizer)
        if self.current_lr is None:
            self.current_lr = optimizer.lr

    def lr(self, epoch):
        return self.current_lr


class ReduceLROnPlateau(_LearnedLR):
    """torch's ReduceLROnPlateau on a history entry ("val_loss" by default):
    when it has not improved by `threshold` (relative, or absolute with
    threshold_mode="abs") for more than `patience` epochs, lr = max(lr *
    factor, min_lr), then `cooldown` epochs without counting."""

    def __init__(self, monitor="val_loss", mode="min", factor=0.1, patience=10, threshold=1e-4,
                 threshold_mode="rel", cooldown=0, min_lr=0.0):
        super().__init__()
        self.monitor = monitor
        self.mode = check_choice(mode, "mode", ("min", "max"))
        self.factor = check_finite_float(factor, "factor", positive=True, maximum=0.999999)
        self.patience = int(check_finite_float(patience, "patience", minimum=0))
        self.threshold = check_finite_float(threshold, "threshold", minimum=0.0)
        self.threshold_mode = check_choice(threshold_mode, "threshold_mode", ("rel", "abs"))
        self.cooldown = int(check_finite_float(cooldown, "cooldown", minimum=0))
        self.min_lr = check_finite_float(min_lr, "min_lr", minimum=0.0)
        self.best = math.inf if mode == "min" else -math.inf
        self.bad_epochs = 0
        self.cooldown_left = 0

    def end_epoch(self, epoch, history, optimizer, samples):
        value = _monitored(history, self.monitor, "ReduceLROnPlateau")
        if _improved(value, self.best, self.mode, self.threshold, self.threshold_mode == "rel"):
            self.best, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.bad_epochs = 0
        if self.bad_epochs > self.patience:
            new_lr = max(self.current_lr * self.factor, self.min_lr)
            if self.current_lr - new_lr > 1e-8:  # torch's eps
                self.current_lr = new_lr
            self.cooldown_left, self.bad_epochs = self.cooldown, 0
        return None


class InvScaling(Schedule):
    """scikit-learn's learning_rate="invscaling": after each epoch,
    lr = base_lr / (t + 1) ** power_t, with t the samples seen so far."""

    def __init__(self, power_t=0.5):
        super().__init__()
        self.power_t = check_finite_float(power_t, "power_t", minimum=0.0)
        self.samples_seen = 0

    def lr(self, epoch):
        if self.samples_seen == 0:
            return self.base_lr
        return self.base_lr / (self.samples_seen + 1) ** self.power_t

    def end_epoch(self, epoch, history, optimizer, samples):
        self.samples_seen += samples
        return None


class Adaptive(_LearnedLR):
    """scikit-learn's learning_rate="adaptive": lr stays while the training
    loss keeps falling; when it has not fallen by `tol` below the best for
    more than `patience` epochs (scikit-learn's n_iter_no_change), lr is
    divided by 5, and training stops once lr would fall below 1e-6."""

    def __init__(self, tol=1e-4, patience=10, monitor="loss"):
        super().__init__()
        self.tol = check_finite_float(tol, "tol", minimum=0.0)
        self.patience = int(check_finite_float(patience, "patience", minimum=0))
        self.monitor = monitor
        self.best = math.inf
        self.no_improvement = 0

    def end_epoch(self, epoch, history, optimizer, samples):
        value = _monitored(history, self.monitor, "Adaptive")
        if value > self.best - self.tol:
            self.no_improvement += 1
        else:
            self.no_improvement = 0
        self.best = min(self.best, value)
        if self.no_improvement > self.patience:
            if self.current_lr <= 1e-6:
                return f"{self.monitor} did not improve by {self.tol} for {self.patience + 1} epochs and the " \
                       f"learning rate reached {self.current_lr:g}"
            self.current_lr /= 5.0
            self.no_improvement = 0
        return None


class StopTraining(Exception):
    """Raised by a fit callback to end training after this epoch; its message is the reason."""


class EarlyStopping:
    """Stop `fit` when a history entry ("val_loss" by default) has not
    improved by `min_delta` for `patience` epochs (Keras' rule), and with
    restore_best=True give the model back the parameters of its best epoch."""

    def __init__(self, monitor="val_loss", patience=10, min_delta=1e-4, mode="auto", restore_best=True):
        self.monitor = monitor
        self.patience = check_positive_int(patience, "patience")
        self.min_delta = check_finite_float(min_delta, "min_delta", minimum=0.0)
        mode = check_choice(mode, "mode", ("auto", "min", "max"))
        if mode == "auto":
            mode = "max" if "acc" in monitor else "min"
        self.mode = mode
        if not isinstance(restore_best, bool):
            raise TypeError(f"restore_best must be True or False, got {restore_best!r}")
        self.restore_best = restore_best
        self.best, self.best_epoch, self.wait, self._best_values = None, None, 0, None

    def start(self):
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch, self.wait, self._best_values = None, 0, None

    def end_epoch(self, epoch, history, model):
        value = _monitored(history, self.monitor, "EarlyStopping")
        if _improved(value, self.best, self.mode, self.min_delta, False):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best:
                self._best_values = [np.array(p.value) for p in model.parameters()]
            return None
        self.wait += 1
        if self.wait >= self.patience:
            return (f"early stopping: {self.monitor} did not improve by {self.min_delta} for {self.patience} "
                    f"epochs (best {self.best:.6g} at epoch {self.best_epoch})")
        return None

    def restore(self, model):
        """Give `model` the parameters of the best epoch, when they were kept."""
        if self._best_values is not None:
            for p, value in zip(model.parameters(), self._best_values):
                p.value[...] = value

    def __repr__(self):
        return (f"EarlyStopping(monitor={self.monitor!r}, patience={self.patience}, min_delta={self.min_delta}, "
                f"mode={self.mode!r}, restore_best={self.restore_best})")
