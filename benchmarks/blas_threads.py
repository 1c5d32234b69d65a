"""Where two BLAS threads start to pay in `fit`: whole epochs of 64-w-w-10
(ReLU, softmax cross-entropy, SGD with momentum) for widths 16-1024 and
batches 1-4096, with one and with two OpenBLAS threads, side by side, and
the same with a second process busy on one core.

    python benchmarks/blas_threads.py [--docs docs/performance.md]
    python benchmarks/blas_threads.py --calls

--calls times only what setting the threads costs per epoch: threadpoolctl's
limit() against fastbp.threads.blas_threads_for, beside a whole 100-epoch
fit of a 64-16-10 net (batch 8) that pays it once an epoch.

fastbp/threads.py ONE_BLAS_THREAD_BELOW_MACS is chosen from this table: the
multiply-adds of one forward pass (batch x sum of in x out over the layers)
below which one thread is as fast as two on a quiet machine, or nearly; two
threads lose 2-3x as soon as another process wants a core, one does not.
"""
import sys
import time

import numpy as np

import fastbp
import fastbp.threads
from fastbp.cli.bench import beside_a_busy_process, forward_macs, machine, write_section
from fastbp.cli.timing import build, side_by_side
from fastbp.threads import _blas_controller

WIDTHS = (16, 64, 128, 256, 512, 1024)
BATCHES = (1, 8, 32, 256, 1024, 4096)
STEPS = 4


def epoch(widths, batch):
    rng = np.random.default_rng(0)
    n = STEPS * batch
    x = rng.standard_normal((n, widths[0])).astype(np.float32)
    labels = rng.integers(0, widths[-1], n)
    model = build(widths, ["relu"] * (len(widths) - 2) + ["identity"])
    opt = fastbp.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    loss = fastbp.CrossEntropyLoss()
    return lambda: model.fit(x, labels, loss=loss, optimizer=opt, epochs=1, batch_size=batch, rng=0,
                             progress=False)


def table(budget_s=0.15):
    controller = _blas_controller()
    rows = []
    for width in WIDTHS:
        for batch in BATCHES:
            widths = (64, width, width, 10)
            run = epoch(widths, batch)

            def with_threads(n):
                def timed():
                    with controller.limit(limits=n, user_api="blas"):
                        run()
                return timed
            r = side_by_side({1: with_threads(1), 2: with_threads(2)}, budget_s)
            rows.append((widths, batch, forward_macs(widths, batch), r[1] / STEPS, r[2] / STEPS))
    return rows


def call_costs():
    from fastbp import SGD, CrossEntropyLoss

    fastbp.set_num_threads(2)
    controller = _blas_controller()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((210, 64)).astype(np.float32)
    labels = rng.integers(0, 10, 210)
    model = build((64, 16, 10), ("relu", "identity"))
    opt = SGD(model.parameters(), lr=0.01)

    def limit():
        with controller.limit(limits=1, user_api="blas"):
            pass

    def blas_threads_for():
        with fastbp.threads.blas_threads_for(0):
            pass

    def fit():
        model.fit(x, labels, loss=CrossEntropyLoss(), optimizer=opt, epochs=100, batch_size=8, rng=0,
                  progress=False)
    times = side_by_side({"threadpoolctl limit()": limit, "blas_threads_for": blas_threads_for,
                          "100-epoch fit": fit}, 3.0)
    print(f"us per call; {machine()}:")
    for name, us in times.items():
        print(f"  {name:24s} {us:10.1f}")


def main():
    if sys.argv[1:2] == ["--calls"]:
        call_costs()
        return
    fastbp.set_num_threads(2)
    fastbp.threads.ONE_BLAS_THREAD_BELOW_MACS = 0  # the threads this table sets, not fit's rule
    quiet = table()
    with beside_a_busy_process():
        time.sleep(0.5)
        loaded = table()
    lines = [f"fit, us per step ({STEPS} steps an epoch), one and two OpenBLAS threads, then the same beside a "
             f"process busy on one core; {machine()}:", "",
             "| network | batch | forward MACs | 1 thread | 2 threads | 2 / 1 | busy: 1 thread | busy: 2 threads |",
             "|---|---|---|---|---|---|---|---|"]
    for (widths, batch, macs, one, two), (_, _, _, busy_one, busy_two) in zip(quiet, loaded):
        lines.append(f"| {'-'.join(map(str, widths))} | {batch} | {macs:.3g} | {one:.1f} | {two:.1f} | "
                     f"{two / one:.2f} | {busy_one:.1f} | {busy_two:.1f} |")
    print("\n".join(lines))
    if sys.argv[1:2] == ["--docs"]:
        write_section(sys.argv[2], "\n".join(lines), "--docs", "<!-- blas-threads:start -->",
                      "<!-- blas-threads:end -->")


if __name__ == "__main__":
    main()
