"""Data-parallel epochs: one process with 2 BLAS threads against 2 MPI ranks
with 1 thread each (fastbp.distributed), the same global batches.

    python benchmarks/distributed.py          # needs the mpi extra

Prints, per network: seconds per epoch (median of 3 after a warm-up epoch)
for one process and for 2 ranks, the ranks' share of the epoch spent in MPI
calls (Allreduce of the loss and of the flat gradient buffer), the gradient
message size, and the step time each rank computes; then the 2 ranks again
with overlap=True (each layer's gradient reduced while the layers below are
computed), with MPICH's default progress and with its progress thread
(MPIR_CVAR_ASYNC_PROGRESS=1).
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


def worker(name, overlap):
    """Run under mpiexec: (epoch seconds, communication share) on rank 0."""
    import fastbp
    from fastbp.distributed import DataParallel

    model, opt, x, labels, batch = _setup(name)
    trainer = DataParallel(model, opt, overlap=overlap)
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

    def two_ranks(name, overlap=False, **env):
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", NUMBA_NUM_THREADS="1", **env)
        done = subprocess.run([mpiexec, "-n", "2", sys.executable, __file__, "--worker", name, str(overlap)],
                              env=env, capture_output=True, text=True, check=True)
        return json.loads(done.stdout.strip().splitlines()[-1])

    rows, overlap_rows = [], []
    for name in CASES:
        fastbp.set_num_threads(2)
        one = single(name)
        two = two_ranks(name)
        step = two["seconds"] / two["steps"]
        rows.append(f"| {name} | {one:.3f} | {two['seconds']:.3f} | {one / two['seconds']:.2f}x | "
                    f"{100 * two['share']:.1f}% | {two['grad_bytes'] / 1e6:.2f} MB | {1e3 * step:.1f} ms |")
        overlapped = two_ranks(name, overlap=True)
        progressed = two_ranks(name, overlap=True, MPIR_CVAR_ASYNC_PROGRESS="1")
        overlap_rows.append(
            f"| {name} | {two['seconds']:.3f} | {overlapped['seconds']:.3f} "
            f"({100 * overlapped['share']:.1f}%) | {progressed['seconds']:.3f} ({100 * progressed['share']:.1f}%) | "
            f"{two['seconds'] / overlapped['seconds']:.2f}x / {two['seconds'] / progressed['seconds']:.2f}x |")
    print("| network | 1 rank x 2 threads (s/epoch) | 2 ranks x 1 thread (s/epoch) | speed-up | "
          "communication share | gradient message | step (2 ranks) |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print("\n2 ranks x 1 thread, s/epoch (communication share): one Allreduce after the backward pass, "
          "against overlap=True\n")
    print("| network | one Allreduce | overlap | overlap, MPIR_CVAR_ASYNC_PROGRESS=1 | speed-up of overlap |")
    print("|---|---|---|---|---|")
    print("\n".join(overlap_rows))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(sys.argv[2], sys.argv[3] == "True")
    else:
        main()
