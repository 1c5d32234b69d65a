"""Run by tests/test_distributed.py under `mpiexec -n 2`: one scenario per
call, its findings written by rank 0 as JSON to argv[2]."""
import hashlib
import json
import os
import signal
import sys
import time

import numpy as np
from mpi4py import MPI

import fastbp
from fastbp.distributed import DataParallel

COMM = MPI.COMM_WORLD
RANK = COMM.Get_rank()


def data(n=103, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6))
    return x, (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1).astype(np.int64)


def model_and_optimizer(kind="sgd"):
    model = fastbp.Sequential(fastbp.Linear(6, 16, activation="relu", dtype=np.float64, rng=1),
                              fastbp.Linear(16, 3, dtype=np.float64, rng=2))
    if kind == "adam":
        return model, fastbp.Adam(model.parameters(), lr=0.01, max_grad_norm=1.0)
    return model, fastbp.SGD(model.parameters(), lr=0.1, momentum=0.9, max_grad_norm=1.0)


def digest(model):
    return hashlib.sha256(model.fused.params.tobytes()).hexdigest()


def run(kind, epochs, comm=COMM, deterministic=False, shards=None, local_sgd=None, batch=8, initial=None,
        overlap=False, **fit):
    model, opt = model_and_optimizer(kind) if initial is None else initial
    trainer = DataParallel(model, opt, comm, deterministic=deterministic, shards=shards, local_sgd=local_sgd,
                           overlap=overlap)
    digests = []
    x, y = data()
    history = trainer.fit(x, y, loss=fastbp.CrossEntropyLoss(), epochs=epochs, batch_size=batch, rng=0,
                          l2=1e-3, callback=lambda epoch, history: digests.append(digest(model)), **fit)
    return model, history, digests, trainer


def equivalence(out):
    found = {}
    for kind in ("sgd", "adam"):
        model, history, digests, _ = run(kind, 3)
        every_rank = COMM.gather(digests)
        det, det_history, det_digests, _ = run(kind, 3, deterministic=True)
        every_rank_det = COMM.gather(det_digests)
        local, local_history, local_digests, _ = run(kind, 3, local_sgd=2)
        every_rank_local = COMM.gather(local_digests)
        # overlap: the same bits as the default mode, also with a last step
        # of one row (103 = 3 * 34 + 1), where rank 1 has none
        _, overlap_history, overlap_digests, _ = run(kind, 3, overlap=True)
        every_rank_overlap = COMM.gather(overlap_digests)
        _, _, one_row_digests, _ = run(kind, 2, batch=17)
        _, _, one_row_overlap_digests, _ = run(kind, 2, batch=17, overlap=True)
        if RANK == 0:
            # one process: fit with the global batch, and deterministic with two shards
            single, single_opt = model_and_optimizer(kind)
            x, y = data()
            single_history = single.fit(x, y, loss=fastbp.CrossEntropyLoss(), optimizer=single_opt, epochs=3,
                                        batch_size=16, rng=0, l2=1e-3, progress=False)
            one, one_history, _, _ = run(kind, 3, comm=MPI.COMM_SELF, deterministic=True, shards=2)
            found[kind] = dict(
                ranks_identical=all(d == every_rank[0] for d in every_rank),
                ranks_identical_deterministic=all(d == every_rank_det[0] for d in every_rank_det),
                ranks_identical_local_sgd=all(d == every_rank_local[0] for d in every_rank_local),
                ranks_identical_overlap=all(d == every_rank_overlap[0] for d in every_rank_overlap),
                overlap_equals_default=overlap_digests == digests and overlap_history["loss"] == history["loss"],
                overlap_equals_default_one_row=one_row_overlap_digests == one_row_digests,
                epochs=len(every_rank[0]),
                max_diff_single=float(np.max(np.abs(model.fused.params - single.fused.params))),
                loss=history["loss"], single_loss=single_history["loss"],
                # the ranks' counts of right predictions, summed: one process's
                accuracy=history["accuracy"], single_accuracy=single_history["accuracy"],
                overlap_accuracy=overlap_history["accuracy"], deterministic_accuracy=det_history["accuracy"],
                one_process_accuracy=one_history["accuracy"], local_sgd_accuracy=local_history["accuracy"],
                deterministic_equals_one_process=bool(np.array_equal(det.fused.params, one.fused.params)),
                local_sgd_diff=float(np.max(np.abs(local.fused.params - single.fused.params))))
    return found


def features(out):
    """A schedule, held-out rows and early stopping: every rank decides as one process does."""
    def options():
        return dict(validation_split=0.25, schedule=fastbp.StepLR(1, gamma=0.5),
                    early_stopping=fastbp.EarlyStopping(monitor="val_loss", patience=1, min_delta=0.05))
    model, history, digests, _ = run("sgd", 30, **options())
    every_rank = COMM.gather((history["epochs"], history["stop_reason"], history["lr"], digests))
    if RANK == 0:
        single, opt = model_and_optimizer()
        x, y = data()
        alone = single.fit(x, y, loss=fastbp.CrossEntropyLoss(), optimizer=opt, epochs=30, batch_size=16, rng=0,
                           l2=1e-3, progress=False, **options())
        return {"ranks_agree": all(r == every_rank[0] for r in every_rank),
                "epochs": history["epochs"], "single_epochs": alone["epochs"],
                "lr": history["lr"], "single_lr": alone["lr"],
                "max_diff_single": float(np.max(np.abs(model.fused.params - single.fused.params)))}


def non_finite(out):
    x, y = data()
    x[57, 2] = np.inf  # on one rank's shard only
    model, opt = model_and_optimizer()
    trainer = DataParallel(model, opt)
    before = None
    try:
        trainer.fit(x, y, loss=fastbp.CrossEntropyLoss(), epochs=2, batch_size=8, shuffle=False)
        raised = None
    except fastbp.NonFiniteLossError as exc:
        raised = [exc.epoch, exc.batch]
        before = digest(model)
    found = COMM.gather({"raised": raised, "digest": before, "finite": bool(np.isfinite(model.fused.params).all())})
    return {"ranks": found} if RANK == 0 else None


def checkpoint(out):
    path = os.path.join(os.path.dirname(out), "run.npz")
    full, _, _, _ = run("adam", 4, deterministic=True)
    run("adam", 2, deterministic=True, checkpoint=path)
    if RANK == 0:
        state = fastbp.load_training(path)
        resumed, _, _, _ = run("adam", 4, comm=MPI.COMM_SELF, deterministic=True, shards=2,
                               initial=(state.model, state.optimizer), initial_epoch=state.epoch)
        return {"epoch": state.epoch, "resumed_equals_uninterrupted":
                bool(np.array_equal(resumed.fused.params, full.fused.params))}


def dies(out):
    def callback(epoch, history):
        if RANK == 1 and epoch == 1:
            if sys.argv[3] == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise ValueError("rank 1's callback failed")
    model, opt = model_and_optimizer()
    x, y = data()
    DataParallel(model, opt).fit(x, y, loss=fastbp.CrossEntropyLoss(), epochs=50, batch_size=4, rng=0,
                                 callback=callback)
    return {"finished": True}


def hangs(out):
    def callback(epoch, history):
        if RANK == 1 and epoch == 1:
            print("rank 1 stops answering", file=sys.stderr, flush=True)
            time.sleep(600)
    model, opt = model_and_optimizer()
    x, y = data()
    DataParallel(model, opt, timeout=float(sys.argv[3])).fit(x, y, loss=fastbp.CrossEntropyLoss(), epochs=50,
                                                            batch_size=4, rng=0, callback=callback)
    return {"finished": True}


if __name__ == "__main__":
    result = globals()[sys.argv[1]](sys.argv[2])
    if RANK == 0:
        with open(sys.argv[2], "w") as f:
            json.dump(result, f)
