"""What splitting a batch across the two cores could give a training step.

fastbp's step calls OpenBLAS once per product, on the whole batch; at
tabular sizes two OpenBLAS threads barely beat one. The other way to use two
cores is to give each a half of the batch: each half's forward and backward
products on one OpenBLAS thread, in numba threads side by side, then the
halves' weight gradients added in a fixed order (so the bits would not depend
on the thread count). This times only the products of one step (float32,
the network's three forward products, three weight-gradient products and two
input-gradient ones), the three ways, quiet and beside a process busy on one
core. The step itself does not split: the halves' sum would change its bits
against the layer path, and each half's loss would need the whole batch's
scale.

    python benchmarks/batch_split.py        (about a minute)

Medians of interleaved rounds; the machine is shared, so compare within one run.
"""

import numba
import numpy as np
import threadpoolctl
from numba import njit, prange

import fastbp
from fastbp.cli.bench import beside_a_busy_process
from common import best_us, machine

CASES = [((64, 128, 128, 10), 64), ((64, 128, 128, 10), 256), ((64, 512, 512, 10), 256),
         ((784, 256, 256, 10), 256)]


@njit
def _step_products(x0, x1, x2, x3, w0, w1, w2, grad_w0, grad_w1, grad_w2, grad_x1, grad_x2):
    np.dot(x0, w0, x1)
    np.dot(x1, w1, x2)
    np.dot(x2, w2, x3)
    np.dot(x2.T, x3, grad_w2)
    np.dot(x3, w2.T, grad_x2)
    np.dot(x1.T, grad_x2, grad_w1)
    np.dot(grad_x2, w1.T, grad_x1)
    np.dot(x0.T, grad_x1, grad_w0)


@njit
def whole_batch(n, x0, x1, x2, x3, w0, w1, w2, grad_w0, grad_w1, grad_w2, grad_x1, grad_x2):
    for _ in range(n):
        _step_products(x0, x1, x2, x3, w0, w1, w2, grad_w0, grad_w1, grad_w2, grad_x1, grad_x2)


@njit
def _add_second_half(halves):
    first, second = halves[0].ravel(), halves[1].ravel()
    for k in range(first.shape[0]):
        first[k] += second[k]


# grad_w*: (2, in, out), one per half
@njit(parallel=True)
def split_batch(n, x0, x1, x2, x3, w0, w1, w2, grad_w0, grad_w1, grad_w2, grad_x1, grad_x2):
    half = x0.shape[0] // 2
    for _ in range(n):
        for t in prange(2):
            rows = slice(t * half, (t + 1) * half)
            _step_products(x0[rows], x1[rows], x2[rows], x3[rows], w0, w1, w2, grad_w0[t], grad_w1[t],
                           grad_w2[t], grad_x1[rows], grad_x2[rows])
        _add_second_half(grad_w0)
        _add_second_half(grad_w1)
        _add_second_half(grad_w2)


def case_arrays(widths, batch):
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((batch, w)).astype(np.float32) for w in widths]
    weights = [rng.standard_normal((a, b)).astype(np.float32) for a, b in zip(widths, widths[1:])]
    grad_xs = [np.empty_like(xs[1]), np.empty_like(xs[2])]
    whole = (*xs, *weights, *[np.empty_like(w) for w in weights], *grad_xs)
    split = (*xs, *weights, *[np.empty((2,) + w.shape, np.float32) for w in weights], *grad_xs)
    return whole, split


def time_case(widths, batch, rounds=3):
    whole, split = case_arrays(widths, batch)
    calls = max(20, int(4e9 / (6 * batch * sum(a * b for a, b in zip(widths, widths[1:])))))
    times = {"2 BLAS threads": [], "1 BLAS thread": [], "halves": []}
    for _ in range(rounds):
        fastbp.set_num_threads(2)
        times["2 BLAS threads"].append(best_us(lambda n: whole_batch(n, *whole), calls, 3))
        with threadpoolctl.threadpool_limits(1, "blas"):
            times["1 BLAS thread"].append(best_us(lambda n: whole_batch(n, *whole), calls, 3))
            times["halves"].append(best_us(lambda n: split_batch(n, *split), calls, 3))
    return {name: float(np.median(t)) for name, t in times.items()}


def main():
    numba.set_num_threads(2)
    for widths, batch in CASES:  # compiled before timing
        whole, split = case_arrays(widths, batch)
        whole_batch(1, *whole)
        split_batch(1, *split)
    quiet = [time_case(widths, batch) for widths, batch in CASES]
    with beside_a_busy_process():
        loaded = [time_case(widths, batch) for widths, batch in CASES]
    print(f"One training step's products (float32, us), the whole batch on two and on one OpenBLAS "
          f"thread, and two halves on two numba threads (one OpenBLAS thread each, then the weight "
          f"gradients summed); quiet, then beside a process busy on one core; {machine()}:\n")
    print("| network, batch | 2 BLAS threads | 1 BLAS thread | halves | 2 threads / halves "
          "| busy: 2 BLAS threads | busy: 1 BLAS thread | busy: halves |")
    print("|---|---|---|---|---|---|---|---|")
    for (widths, batch), q, b in zip(CASES, quiet, loaded):
        print(f"| {'-'.join(map(str, widths))} b{batch} | {q['2 BLAS threads']:.1f} | {q['1 BLAS thread']:.1f} "
              f"| {q['halves']:.1f} | {q['2 BLAS threads'] / q['halves']:.2f}x | {b['2 BLAS threads']:.1f} "
              f"| {b['1 BLAS thread']:.1f} | {b['halves']:.1f} |")


if __name__ == "__main__":
    main()
