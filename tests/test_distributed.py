"""fastbp.distributed: two ranks under `mpiexec -n 2` on localhost
(tests/mpi_worker.py) against one process, and the job ending when a rank
dies or raises."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from mpi4py import MPI

import fastbp
from fastbp.distributed import DataParallel

WORKER = Path(__file__).with_name("mpi_worker.py")
MPIEXEC = Path(sys.executable).with_name("mpiexec")  # the mpich wheel's, beside the interpreter


def _mpiexec(tmp_path, scenario, *extra, ranks=2, timeout=240):
    out = tmp_path / f"{scenario}.json"
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    done = subprocess.run([str(MPIEXEC), "-n", str(ranks), sys.executable, str(WORKER), scenario, str(out), *extra],
                          capture_output=True, text=True, timeout=timeout, env=env)
    return done, (json.loads(out.read_text()) if out.exists() else None)


def test_two_ranks_train_as_one_process_and_stay_identical(tmp_path):
    done, found = _mpiexec(tmp_path, "equivalence")
    assert done.returncode == 0, done.stderr
    for kind in ("sgd", "adam"):
        result = found[kind]
        assert result["epochs"] == 3
        # every rank holds the same parameters after every epoch, in every mode
        assert result["ranks_identical"] and result["ranks_identical_deterministic"]
        assert result["ranks_identical_local_sgd"] and result["ranks_identical_overlap"]
        # overlap: each layer's slice reduced on its own, to the same bits
        assert result["overlap_equals_default"] and result["overlap_equals_default_one_row"]
        # default mode: one process with the global batch, to float rounding
        assert result["max_diff_single"] < 1e-12
        np.testing.assert_allclose(result["loss"], result["single_loss"], rtol=1e-12)
        # the training accuracy, counted on each rank's shards and summed
        assert result["accuracy"] == result["single_accuracy"] == result["overlap_accuracy"]
        assert result["deterministic_accuracy"] == result["one_process_accuracy"]
        assert len(result["local_sgd_accuracy"]) == 3 and all(0 < a <= 1 for a in result["local_sgd_accuracy"])
        # deterministic: one process with shards=2 bit for bit
        assert result["deterministic_equals_one_process"]
        # local SGD trains something else, but not something far off
        assert 0 < result["local_sgd_diff"] < 1.0


def test_schedules_and_early_stopping_decide_alike_on_every_rank(tmp_path):
    done, found = _mpiexec(tmp_path, "features")
    assert done.returncode == 0, done.stderr
    assert found["ranks_agree"]
    assert found["epochs"] == found["single_epochs"] and len(found["epochs"]) < 30  # it stopped early
    assert found["lr"] == found["single_lr"] and found["lr"][1] == found["lr"][0] / 2
    assert found["max_diff_single"] < 1e-12


def test_a_non_finite_loss_on_one_rank_stops_every_rank_at_the_same_step(tmp_path):
    done, found = _mpiexec(tmp_path, "non_finite")
    assert done.returncode == 0, done.stderr
    first, second = found["ranks"]
    assert first["raised"] == second["raised"] == [0, 3]  # the batch holding the inf row
    assert first["digest"] == second["digest"] and first["finite"] and second["finite"]


def test_a_checkpoint_from_two_ranks_resumes_on_one_bit_for_bit(tmp_path):
    done, found = _mpiexec(tmp_path, "checkpoint")
    assert done.returncode == 0, done.stderr
    assert found == {"epoch": 2, "resumed_equals_uninterrupted": True}


@pytest.mark.parametrize("how", ["kill", "raise"])
def test_a_rank_that_dies_or_raises_ends_the_job(tmp_path, how):
    done, found = _mpiexec(tmp_path, "dies", how, timeout=120)  # a hang fails on the timeout
    assert done.returncode != 0 and found is None
    if how == "raise":
        assert "rank 1 of 2 raised; aborting every rank" in done.stderr
        assert "ValueError: rank 1's callback failed" in done.stderr
    else:
        assert "BAD TERMINATION" in done.stdout + done.stderr


def test_a_rank_that_stops_answering_ends_the_job_after_the_timeout(tmp_path):
    start = time.monotonic()
    done, found = _mpiexec(tmp_path, "hangs", "10", timeout=200)  # rank 1 sleeps 600 s
    assert done.returncode != 0 and found is None
    assert time.monotonic() - start < 150
    assert "rank 1 stops answering" in done.stderr
    assert "rank 0 of 2 waited more than 10 s in Allreduce" in done.stderr
    assert "aborting every rank" in done.stderr


def test_data_parallel_refuses_what_it_cannot_train():
    model = fastbp.Sequential(fastbp.Linear(3, 4, rng=0), fastbp.ReLU(), fastbp.Linear(4, 2, rng=1))
    opt = fastbp.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="fused step"):
        DataParallel(model, opt, MPI.COMM_SELF)
    fused = fastbp.Sequential(fastbp.Linear(3, 2, rng=0))
    opt = fastbp.SGD(fused.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="shards must be a positive multiple"):
        DataParallel(fused, opt, MPI.COMM_SELF, deterministic=True, shards=0)
    with pytest.raises(ValueError, match="deterministic=True only"):
        DataParallel(fused, opt, MPI.COMM_SELF, shards=2)
    with pytest.raises(ValueError, match="local_sgd must be"):
        DataParallel(fused, opt, MPI.COMM_SELF, local_sgd=0)
    with pytest.raises(ValueError, match="overlap applies to the default mode only"):
        DataParallel(fused, opt, MPI.COMM_SELF, deterministic=True, overlap=True)
    with pytest.raises(ValueError, match="overlap is for networks wider than 8"):
        DataParallel(fused, opt, MPI.COMM_SELF, overlap=True)
    with pytest.raises(TypeError, match="overlap must be True or False"):
        DataParallel(fused, opt, MPI.COMM_SELF, overlap="yes")
    for timeout in (0, -1.0, float("nan"), float("inf"), "60", True):
        with pytest.raises(ValueError, match="timeout must be None or a positive number of seconds"):
            DataParallel(fused, opt, MPI.COMM_SELF, timeout=timeout)
    trainer = DataParallel(fused, opt, MPI.COMM_SELF)
    with pytest.raises(TypeError, match="rng must be an int seed"):
        trainer.fit(np.zeros((4, 3)), np.zeros((4, 2)), loss=fastbp.MSELoss(), rng=np.random.default_rng(0))
    # one rank: an ordinary fused fit
    x = np.random.default_rng(0).standard_normal((20, 3)).astype(np.float32)
    y = x[:, :2] * 2
    history = trainer.fit(x, y, loss=fastbp.MSELoss(), epochs=3, batch_size=5, rng=1, progress=False)
    reference = fastbp.Sequential(fastbp.Linear(3, 2, rng=0))
    ref_opt = fastbp.SGD(reference.parameters(), lr=0.1)
    ref_history = reference.fit(x, y, loss=fastbp.MSELoss(), optimizer=ref_opt, epochs=3, batch_size=5, rng=1,
                                progress=False)
    np.testing.assert_allclose(history["loss"], ref_history["loss"], rtol=1e-6)


def test_the_train_command_runs_data_parallel(tmp_path):
    (x, y), _ = fastbp.gaussian_blobs()
    fastbp.save_csv(tmp_path / "blobs.csv", x, y)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    done = subprocess.run([str(MPIEXEC), "-n", "2", sys.executable, "-m", "fastbp", "train", "--csv",
                           str(tmp_path / "blobs.csv"), "--distributed", "--epochs", "20", "--no-progress",
                           "--no-plots", "--out", str(tmp_path / "run")], capture_output=True, text=True,
                          timeout=120, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("data-parallel over 2 ranks, batch 8 per rank") == 1  # rank 0 alone logs
    model = fastbp.load(tmp_path / "run" / "model.npz")
    assert model.predict(x).shape == (len(x), 3)
