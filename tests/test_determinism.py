"""Bit-identical training: same seed and threads, deterministic mode at any
thread count, networks too small for BLAS at any thread count."""
import os
import subprocess
import sys

import numba
import numpy as np
import pytest

import fastbp
from conftest import run_training_process, train_medium


def test_same_seed_and_thread_count_same_parameters_bit_for_bit():
    threads = fastbp.get_num_threads()["numba"]
    by_threads = {}
    try:
        for n in sorted({1, threads}):
            fastbp.set_num_threads(n)
            first, second = train_medium(), train_medium()
            np.testing.assert_array_equal(first, second)
            by_threads[n] = first
    finally:
        fastbp.set_num_threads(threads)
    # Across thread counts OpenBLAS's threaded GEMM adds in another order
    # (README, "Guarantees"): equal to float32 rounding, not bit for bit.
    for result in by_threads.values():
        np.testing.assert_allclose(result, by_threads[1], rtol=1e-5, atol=1e-6)


def test_deterministic_mode_is_bit_identical_whatever_the_threads():
    threads = fastbp.get_num_threads()["numba"]
    before = fastbp.get_num_threads()["blas"]
    results = []
    try:
        fastbp.set_deterministic(True)
        for n in sorted({1, threads, 2}):
            if n <= numba.config.NUMBA_NUM_THREADS:
                fastbp.set_num_threads(n)  # numba's pool follows n, BLAS stays on one thread
                assert fastbp.get_num_threads()["blas"] == [1] * len(before)
                results.append(train_medium())
    finally:
        fastbp.set_deterministic(False)
        fastbp.set_num_threads(threads)
    assert fastbp.get_num_threads()["deterministic"] is False
    for other in results[1:]:
        np.testing.assert_array_equal(other, results[0])


def test_deterministic_mode_restores_the_blas_limits_it_replaced():
    threads = fastbp.get_num_threads()
    try:
        fastbp.set_deterministic(True)
        fastbp.set_deterministic(True)  # twice: still one limit to undo
        assert fastbp.get_num_threads()["deterministic"] is True
    finally:
        fastbp.set_deterministic(False)
    assert fastbp.get_num_threads() == threads
    with pytest.raises(TypeError, match="enabled must be True or False, got 'yes'"):
        fastbp.set_deterministic("yes")


def test_deterministic_mode_from_the_environment_across_thread_counts():
    low = run_training_process({"FASTBP_DETERMINISTIC": "1", "NUMBA_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"})
    high = run_training_process({"FASTBP_DETERMINISTIC": "1", "NUMBA_NUM_THREADS": "8", "OPENBLAS_NUM_THREADS": "8"})
    assert low == high
    env = dict(os.environ, FASTBP_DETERMINISTIC="yes")
    done = subprocess.run([sys.executable, "-c", "import fastbp"], env=env, capture_output=True, text=True)
    assert done.returncode != 0 and "FASTBP_DETERMINISTIC must be 0 or 1, got 'yes'" in done.stderr


def test_networks_without_blas_calls_are_bit_identical_whatever_the_threads():
    # fastbp's own kernels are serial with a fixed summation order; only BLAS
    # threads can reorder sums, and seed-sized layers use no BLAS
    threads = fastbp.get_num_threads()["numba"]
    results = []
    try:
        for n in sorted({1, threads}):
            fastbp.set_num_threads(n)
            (x, labels), _ = fastbp.gaussian_blobs()
            model = fastbp.Sequential(fastbp.Linear(2, 5, activation="sigmoid", rng=0),
                                      fastbp.Linear(5, 3, activation="sigmoid", rng=1))
            model.fit(x, fastbp.one_hot(labels), loss=fastbp.MSELoss(), epochs=20, batch_size=4, rng=0,
                      optimizer=fastbp.SGD(model.parameters(), lr=0.1), progress=False)
            results.append(np.concatenate([p.value.ravel() for p in model.parameters()]))
    finally:
        fastbp.set_num_threads(threads)
    for other in results[1:]:
        np.testing.assert_array_equal(other, results[0])
