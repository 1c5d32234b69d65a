"""Data-parallel epochs: one process with 2 BLAS threads against 2 MPI ranks
with 1 thread each (fastbp.distributed), the same global batches.

    python benchmarks/distributed.py          # needs the mpi extra

Prints, per network: seconds per epoch (median of 3 after a warm-up epoch)
for both, the ranks' share of the epoch spent in MPI calls (Allreduce of the
loss and of the flat gradient buffer), the gradient message size, and the
step time each rank computes.
"""
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

# name -> widths, activations, batch per rank, rows
CASES = {
    "784-256-256-10 b256/rank": ((784, 256, 256, 10), ("relu", "relu", "identity"), 256, 4096),
    "1024-1024-1024 b512/rank": ((1024, 1024, 1024), ("relu", "identity"), 512, 4096),
}


def _setup(name):
    import fastbp
    from fastbp.cli.timing import build

    widths, acts, batch, rows = CASES[name]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, widths[0])).astype(np.float32)
    labels = rng.integers(0, widths[-1], rows)
    model = build(widths, acts, seed=0)
    return model, fastbp.SGD(model.parameters(), lr=0.01, momentum=0.9), x, labels, batch


def _epoch_seconds(fit_one_epoch):
    fit_one_epoch()  # compiles, warms the BLAS
    times = []
    for _ in range(3):
        start = time.perf_counter()
        fit_one_epoch()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def single(name, ranks=2):
    """One process, the global batch (ranks * batch per rank)."""
    import fastbp

    model, opt, x, labels, batch = _setup(name)
    return _epoch_seconds(lambda: model.fit(x, labels, loss=fastbp.CrossEntropyLoss(), optimizer=opt, epochs=1,
                                            batch_size=ranks * batch, rng=0, progress=False))


def worker(name):
    """Run under mpiexec: (epoch seconds, communication share) on rank 0."""
    import fastbp
    from fastbp.distributed import DataParallel

    model, opt, x, labels, batch = _setup(name)
    trainer = DataParallel(model, opt)
    seconds = _epoch_seconds(lambda: trainer.fit(x, labels, loss=fastbp.CrossEntropyLoss(), epochs=1,
                                                 batch_size=batch, rng=0, progress=False))
    trainer.communication_seconds = 0.0
    start = time.perf_counter()
    trainer.fit(x, labels, loss=fastbp.CrossEntropyLoss(), epochs=1, batch_size=batch, rng=0, progress=False)
    share = trainer.communication_seconds / (time.perf_counter() - start)
    if trainer.rank == 0:
        print(json.dumps({"seconds": seconds, "share": share, "grad_bytes": model.fused.grads.nbytes,
                          "steps": -(-x.shape[0] // (batch * trainer.size))}))


def main():
    import fastbp

    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    rows = []
    for name in CASES:
        fastbp.set_num_threads(2)
        one = single(name)
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
        done = subprocess.run([mpiexec, "-n", "2", sys.executable, __file__, "--worker", name], env=env,
                              capture_output=True, text=True, check=True)
        two = json.loads(done.stdout.strip().splitlines()[-1])
        step = two["seconds"] / two["steps"]
        rows.append(f"| {name} | {one:.3f} | {two['seconds']:.3f} | {one / two['seconds']:.2f}x | "
                    f"{100 * two['share']:.1f}% | {two['grad_bytes'] / 1e6:.2f} MB | {1e3 * step:.1f} ms |")
    print("| network | 1 rank x 2 threads (s/epoch) | 2 ranks x 1 thread (s/epoch) | speed-up | "
          "communication share | gradient message | step (2 ranks) |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(sys.argv[2])
    else:
        main()
