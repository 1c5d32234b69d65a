"""The helpers every comparison uses: one MLP builder, and the timers.

Timings on a shared machine drift for seconds at a time, so every table is
built from these: medians of repeats (`median_us`), passes spread over the
whole run (`side_by_side`), or the best of a few repeats of a fixed number of
calls (`best_us`) where the minimum is the figure wanted (a kernel's own cost).
"""
import statistics
import time

import numpy as np


def build(widths, activations, seed=0, dtype=np.float32, dropout=0.0):
    """A Sequential of Linear layers with these widths and one activation per
    layer, initialised from one generator seeded with `seed` (an int or a
    np.random.Generator); with `dropout`, a Dropout of that rate after each
    hidden layer."""
    from .. import Dropout, Linear, Sequential

    rng = np.random.default_rng(seed)
    layers = []
    for i, (a, b, act) in enumerate(zip(widths, widths[1:], activations)):
        layers.append(Linear(a, b, activation=act, rng=rng, dtype=dtype))
        if dropout and i < len(widths) - 2:
            layers.append(Dropout(dropout, seed=i))
    return Sequential(*layers)


def median_us(step, budget_s=1.0):
    """Median time of `step()` in microseconds, after two warm-up calls."""
    step()
    step()
    start = time.perf_counter()
    step()
    once = max(time.perf_counter() - start, 1e-7)
    inner = max(1, int(0.02 / once))
    samples = []
    deadline = time.perf_counter() + budget_s
    while time.perf_counter() < deadline or len(samples) < 5:
        start = time.perf_counter()
        for _ in range(inner):
            step()
        samples.append((time.perf_counter() - start) / inner)
    return statistics.median(samples) * 1e6


def side_by_side(steps, budget_s=1.0, rounds=3):
    """{name: us} for {name: step}: `rounds` passes over all the steps, each
    step timed for budget_s / rounds per pass (median_us), and the median of
    its passes reported. On a shared machine whose speed drifts for seconds at
    a time, this spreads each implementation over the whole run instead of
    one window of it. Steps are not interleaved finer than that: numpy's and
    numba's OpenBLAS threads keep spinning ~0.1 s after a call and would slow
    whichever implementation came next."""
    passes = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            passes[name].append(median_us(step, budget_s / rounds))
    return {name: statistics.median(times) for name, times in passes.items()}


def best_us(calls, n, repeat=7):
    """Best over `repeat` runs of `calls(n)` (which makes n calls), in us per
    call, after one warm-up run of a single call."""
    calls(1)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        calls(n)
        best = min(best, (time.perf_counter() - start) / n)
    return best * 1e6


def repeated(fn):
    """fn as `calls(n)` for best_us: n calls of fn()."""
    def calls(n):
        for _ in range(n):
            fn()
    return calls


def median_seconds(fn, samples):
    """Median of `samples` timed calls of fn(), in seconds."""
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))
