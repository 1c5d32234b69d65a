"""Where a fused training step's time goes, for the limits stated in the README.

Seed-sized nets (float32, MSE half-sum, SGD): the whole `Sequential.train_step`
against `FusedNetwork.step` (without the lock), the compiled entry point called
directly, the step timed inside one compiled loop (no dispatch at all), and a
no-op compiled function taking the entry point's 16 arguments (numba's dispatch
floor). A net with ReLU in place of sigmoid shows the sigmoids' share.

Classifiers on int64 class indices (CrossEntropyLoss): `Sequential.train_step`
against its compiled entry point and the step in one compiled loop, the
share of a step that train_step's fast path for labels leaves to Python.

GEMM-bound net (784-256-256-10, batch 256): the step's GEMMs alone against the
same GEMMs each followed by one serial read-modify-write pass over its output
(what an epilogue, a delta pass or the SGD update adds), at 1 and 2 threads.

The element-wise passes around the GEMMs (64-128-10 and 64-128-128-10
sizes): softmax cross-entropy's forward + backward on (B, 10) logits against
the same work with libm's exp once per value, and the delta pass (delta and
the bias gradient) against that pass with the bias sum inside the delta loop.

Run: python benchmarks/step_costs.py (about a minute). Medians of interleaved
rounds; the machine is shared, so compare within one run.
"""
import numpy as np
from numba import njit

import fastbp
from common import best_us, build, side_by_side
from fastbp import SGD, MSELoss

SEED_CASES = [((2, 4, 1), ("relu", "sigmoid"), 8),
              ((2, 5, 3), ("sigmoid", "sigmoid"), 210),
              ((2, 5, 3), ("relu", "relu"), 210)]


@njit
def _noop(table, params, grads, state0, state1, x, target, labels, weights, loss_code, reduction, l2, kind,
          hyper, step, work):
    return 0.0


@njit
def _steps_in_kernel(train_step, n, table, params, grads, state0, state1, x, target, labels, weights, loss_code,
                     reduction, l2, kind, hyper, step, work):
    # train_step: the network's layout's compiled step (kernels/network.py entry_points)
    total = 0.0
    for _ in range(n):
        total += train_step(table, params, grads, state0, state1, x, target, labels, weights, loss_code,
                            reduction, l2, kind, hyper, step, work)
    return total


def medians(timers, rounds=5, budget_s=0.3):
    """{name: median us} over `rounds` passes of `budget_s` seconds each."""
    return side_by_side(timers, budget_s * rounds, rounds)


def seed_costs(widths, activations, batch):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, widths[0])).astype(np.float32)
    y = rng.uniform(0, 1, (batch, widths[-1])).astype(np.float32)
    loss = MSELoss("half_sum")
    model = build(widths, activations)
    optimizer = SGD(model.parameters(), lr=1e-5)
    model.train_step(x, y, loss, optimizer)
    fused = model.fused
    args = (fused.table, fused.params, fused.grads, *optimizer.flat_state, x, y, fused._empty_labels,
            fused._empty_weights, fused._fast_code, loss._reduction, 0.0, optimizer.kind, optimizer.hyper, 1,
            fused.work)
    entry = fused._step_entry
    _noop(*args)
    _steps_in_kernel(fused.kernels.train_step, 1, *args)

    times = medians({"train_step": lambda: model.train_step(x, y, loss, optimizer),
                     "fused.step": lambda: fused.step(x, y, loss, optimizer),
                     "entry point": lambda: entry(*args),
                     "no-op, same arguments": lambda: _noop(*args)})
    times["in-kernel"] = best_us(lambda n: _steps_in_kernel(fused.kernels.train_step, n, *args), 2000)
    return times


LABEL_CASES = [((2, 5, 3), ("relu", "identity"), 8), ((64, 32, 10), ("relu", "identity"), 32)]


def labels_costs(widths, activations, batch):
    """A classifier's step on int64 class indices (CrossEntropyLoss): the
    whole `Sequential.train_step` against its compiled entry point called
    directly and the step inside one compiled loop."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, widths[0])).astype(np.float32)
    labels = rng.integers(0, widths[-1], batch)
    loss = fastbp.CrossEntropyLoss()
    model = build(widths, activations)
    optimizer = SGD(model.parameters(), lr=1e-5)
    model.train_step(x, labels, loss, optimizer)
    fused = model.fused
    args = (fused.table, fused.params, fused.grads, *optimizer.flat_state, x, fused._empty_target, labels,
            fused._empty_weights, fastbp.kernels.CROSS_ENTROPY_LABELS, loss._reduction, 0.0, optimizer.kind,
            optimizer.hyper, 1, fused.work)
    entry = fused.kernels.train_step
    _steps_in_kernel(entry, 1, *args)
    times = medians({"train_step": lambda: model.train_step(x, labels, loss, optimizer),
                     "entry point": lambda: entry(*args)})
    times["in-kernel"] = best_us(lambda n: _steps_in_kernel(entry, n, *args), 2000)
    return times


@njit
def _scale_in_place(a):
    flat = a.ravel()
    for i in range(flat.shape[0]):
        flat[i] = flat[i] * np.float32(0.5)


@njit
def _gemm_nn(a, b, out, then_pass):
    np.dot(a, b, out)
    if then_pass:
        _scale_in_place(out)


@njit
def _gemm_tn(a, b, out, then_pass):
    np.dot(a.T, b, out)
    if then_pass:
        _scale_in_place(out)


@njit
def _gemm_nt(a, b, out, then_pass):
    np.dot(a, b.T, out)
    if then_pass:
        _scale_in_place(out)


def gemm_pass_costs(widths=(784, 256, 256, 10), batch=256):
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((batch, w)).astype(np.float32) for w in widths]
    weights = [rng.standard_normal((a, b)).astype(np.float32) for a, b in zip(widths, widths[1:])]
    grad_weights = [np.empty_like(w) for w in weights]
    grad_xs = [np.empty_like(x) for x in xs]

    def step(then_pass):
        for l, w in enumerate(weights):
            _gemm_nn(xs[l], w, xs[l + 1], then_pass)
        for l in reversed(range(len(weights))):
            _gemm_tn(xs[l], xs[l + 1], grad_weights[l], then_pass)
            if l:
                _gemm_nt(xs[l + 1], weights[l], grad_xs[l], then_pass)

    def passes_alone():
        for out in xs[1:] + grad_weights + grad_xs[1:-1]:
            _scale_in_place(out)
    rows = {}
    for threads in (1, 2):
        fastbp.set_num_threads(threads)
        rows[threads] = medians({"GEMMs": lambda: step(False), "GEMMs + passes": lambda: step(True),
                                 "passes alone": passes_alone}, rounds=5, budget_s=0.2)
    return rows


@njit(error_model="numpy")
def _softmax_libm(logits, labels, grad, unused):
    """softmax cross-entropy's forward + backward with libm's exp, one call per value."""
    value = 0.0
    for i in range(logits.shape[0]):
        row_max = -np.inf
        for c in range(logits.shape[1]):
            row_max = max(row_max, np.float64(logits[i, c]))
        total = 0.0
        for c in range(logits.shape[1]):
            e = np.exp(np.float64(logits[i, c]) - row_max)
            grad[i, c] = e
            total += e
        value += row_max + np.log(total) - np.float64(logits[i, labels[i]])
        for c in range(logits.shape[1]):
            grad[i, c] = (grad[i, c] / total - (1.0 if c == labels[i] else 0.0)) / logits.shape[0]
    return value / logits.shape[0]


@njit(error_model="numpy")
def _delta_pass_one_loop(out, grad_out, delta, grad_bias):
    grad_bias[:] = 0
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            d = grad_out[i, j] if out[i, j] > 0 else out.dtype.type(0)
            delta[i, j] = d
            grad_bias[j] += d


@njit
def _repeat(n, kernel, a, b, c, d):
    for _ in range(n):
        kernel(a, b, c, d)


def pass_costs():
    from fastbp.kernels.activations import RELU, delta_bias_grad
    from fastbp.kernels.losses import CROSS_ENTROPY_LABELS, MEAN
    from fastbp.kernels.network import loss_forward_backward

    @njit
    def loss_pass(logits, labels, grad, no_target):
        loss_forward_backward(CROSS_ENTROPY_LABELS, MEAN, logits, no_target, labels, np.empty(0), grad)

    @njit
    def delta_pass(out, grad_out, delta, grad_bias):
        delta_bias_grad(out, grad_out, RELU, delta, grad_bias)

    rng = np.random.default_rng(0)
    rows = {}
    for batch, width, dtype in ((32, 10, np.float64), (256, 10, np.float32)):
        logits = rng.standard_normal((batch, width)).astype(dtype)
        labels, grad = rng.integers(0, width, batch), np.empty_like(logits)
        no_target = np.empty((0, 0), dtype)
        rows[f"softmax cross-entropy {batch}x{width} {np.dtype(dtype).name}"] = {
            "fastbp": best_us(lambda n: _repeat(n, loss_pass, logits, labels, grad, no_target), 2000),
            "libm exp": best_us(lambda n: _repeat(n, _softmax_libm, logits, labels, grad, no_target), 2000)}
    for batch, width, dtype in ((32, 128, np.float64), (256, 128, np.float32)):
        out = np.maximum(rng.standard_normal((batch, width)), 0).astype(dtype)
        grad_out, delta, grad_bias = rng.standard_normal((batch, width)).astype(dtype), np.empty_like(out), \
            np.empty(width, dtype)
        rows[f"delta pass {batch}x{width} {np.dtype(dtype).name}"] = {
            "fastbp": best_us(lambda n: _repeat(n, delta_pass, out, grad_out, delta, grad_bias), 2000),
            "one loop": best_us(lambda n: _repeat(n, _delta_pass_one_loop, out, grad_out, delta, grad_bias), 2000)}
    return rows


def main():
    print("Seed nets, us per step (float32):")
    for widths, activations, batch in SEED_CASES:
        times = seed_costs(widths, activations, batch)
        name = "-".join(map(str, widths)) + f" {'/'.join(activations)} b{batch}"
        print(f"  {name:28s} " + "  ".join(f"{k} {v:.2f}" for k, v in times.items()))
    print("Class indices (CrossEntropyLoss, int64 labels), us per step (float32):")
    for widths, activations, batch in LABEL_CASES:
        times = labels_costs(widths, activations, batch)
        name = f"{'-'.join(map(str, widths))} b{batch}"
        print(f"  {name:28s} " + "  ".join(f"{k} {v:.2f}" for k, v in times.items()))
    print("Element-wise passes, us:")
    for name, times in pass_costs().items():
        print(f"  {name:36s} " + "  ".join(f"{k} {v:.2f}" for k, v in times.items()))
    print("784-256-256-10 b256 GEMMs with and without a serial pass over each output, us:")
    for threads, times in gemm_pass_costs().items():
        extra = times["GEMMs + passes"] - times["GEMMs"]
        print(f"  {threads} thread(s): " + "  ".join(f"{k} {v:.0f}" for k, v in times.items())
              + f"  -> the passes add {extra:.0f} ({times['GEMMs + passes'] / times['GEMMs']:.3f}x)")


if __name__ == "__main__":
    main()
