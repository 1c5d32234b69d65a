"""Losses: `forward(pred, target)` returns the loss as a Python float,
`backward()` returns d loss / d pred with pred's shape and dtype.
Defaults follow torch.nn's (reduction="mean").
"""
from . import kernels
from ._backend import backend_of
from ._validation import check_choice, check_sample_weight


class Loss:
    """`forward(pred, target)` on either device (pred's), `backward()` after it.
    Subclasses name their kernels' `code` (kernels/losses.py) and may check
    their inputs further in `_check`."""

    reductions = ("mean", "sum")

    def __init__(self, reduction="mean"):
        self.reduction = reduction
        self.pred = None
        self.target = None
        self._grad = None

    @property
    def reduction(self):
        return self._reduction_name

    @reduction.setter
    def reduction(self, value):
        # the kernels read the code, fit's history the name: both change together
        self._reduction = kernels.REDUCTIONS.index(check_choice(value, "reduction", self.reductions))
        self._reduction_name = value

    def __call__(self, pred, target, weight=None):
        return self.forward(pred, target, weight)

    def _check(self, backend, pred, target):
        """(kernel code, pred, target) checked on pred's device."""
        dtype = backend.float_dtype(pred, "pred")
        pred = backend.input(pred, "pred", dtype)
        return self.code, pred, backend.input(target, "target", dtype, pred.shape)

    def forward(self, pred, target, weight=None):
        """The loss of pred against target; `weight`, per-row weights
        (batch,) >= 0 (sample or class weights), makes it sum_i w_i l_i,
        divided under "mean" by sum_i w_i (cross-entropy) or by sum_i w_i
        times the outputs per row (kernels/losses.py)."""
        backend = backend_of(pred)
        code, pred, target = self._check(backend, pred, target)
        if weight is not None:
            weight = check_sample_weight(weight, pred.shape[0] if pred.ndim else 0, "weight")
        value, self._grad = backend.loss_forward(code, pred, target, self._reduction, weight)
        self._backend, self._code, self.pred, self.target = backend, code, pred, target
        return value

    def backward(self):
        if self.pred is None:
            raise RuntimeError("backward called before forward: call loss(pred, target) first")
        if self._grad is not None:  # computed with the loss (on the GPU)
            return self._grad
        return self._backend.loss_backward(self._code, self.pred, self.target, self._reduction)

    def fused_code(self, labels, last_activation):
        """The loss code (kernels/losses.py) the whole-network step computes
        this loss with, for class-index targets or not and the network's last
        activation; None when it cannot (then the model goes layer by layer).
        Only the classes that name a `code` themselves: a subclass may compute
        something else."""
        return type(self).__dict__.get("code")

    def reads_labels(self, target):
        """True when this loss reads `target` (an array) as class indices."""
        return False

    def __repr__(self):
        return f"{type(self).__name__}(reduction={self.reduction!r})"


class MSELoss(Loss):
    """Squared error (pred - target)^2, reduced by "mean" (torch's default),
    "sum", or "half_sum" (0.5 * sum, the seed notebooks' loss)."""

    reductions = ("mean", "sum", "half_sum")
    code = kernels.MSE


class BCELoss(Loss):
    """Binary cross-entropy on probabilities in [0, 1]; logs are clamped at
    -100 as in torch, so p = 0 or 1 gives a finite loss. On the GPU pred is not
    range-checked (that would copy it back): a value outside [0, 1] gives NaN."""

    code = kernels.BCE

    def fused_code(self, labels, last_activation):
        # the compiled step does not range-check pred: only a sigmoid output
        # is sure to be a probability
        return super().fused_code(labels, last_activation) if last_activation == kernels.SIGMOID else None

    def _check(self, backend, pred, target):
        code, pred, target = super()._check(backend, pred, target)
        backend.check_probabilities(pred)
        return code, pred, target


class BCEWithLogitsLoss(Loss):
    """Binary cross-entropy on logits: sigmoid and BCE in one stable formula."""

    code = kernels.BCE_WITH_LOGITS


class CrossEntropyLoss(Loss):
    """Softmax cross-entropy on logits (batch, classes) with targets given as
    class indices (batch,) or as class probabilities / one-hot rows (batch, classes)."""

    code = kernels.CROSS_ENTROPY_SOFT

    def reads_labels(self, target):
        return target.dtype.kind in "iu"

    def fused_code(self, labels, last_activation):
        if type(self) is not CrossEntropyLoss:
            return None
        return kernels.CROSS_ENTROPY_LABELS if labels else kernels.CROSS_ENTROPY_SOFT

    def _check(self, backend, pred, target):
        dtype = backend.float_dtype(pred, "pred")
        pred = backend.input(pred, "pred", dtype, (None, None))
        if backend.is_labels(target):
            return kernels.CROSS_ENTROPY_LABELS, pred, backend.labels(target, *pred.shape)
        return kernels.CROSS_ENTROPY_SOFT, pred, backend.input(target, "target", dtype, pred.shape)
