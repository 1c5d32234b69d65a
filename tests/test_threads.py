"""Threads: one thread count for numba and every BLAS, two models trained at
once, one model shared by two threads."""
import threading

import numba
import numpy as np
import pytest

import fastbp
from conftest import train_medium


def test_two_threads_training_two_models_match_one_after_the_other():
    sequential = [train_medium(0), train_medium(1)]
    parallel = [None, None]

    def run(i):
        parallel[i] = train_medium(i)
    workers = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    for got, want in zip(parallel, sequential):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("fused", [True, False])
def test_one_model_used_from_two_threads_is_serialised(fused):
    # both threads step with the same batch, so any order of whole steps gives
    # the same parameters; interleaved halves of steps would not
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 16)).astype(np.float32)
    y = rng.standard_normal((64, 4)).astype(np.float32)

    def build():
        model = fastbp.Sequential(fastbp.Linear(16, 32, activation="tanh", rng=1), fastbp.Linear(32, 4, rng=2))
        params = model.parameters()
        return model, fastbp.SGD(params, lr=1e-3)
    shared, opt = build()

    def work():
        for _ in range(200):
            shared.train_step(x, y, fastbp.MSELoss(), opt, fused=None if fused else False)
    workers = [threading.Thread(target=work) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    alone, alone_opt = build()
    for _ in range(400):
        alone.train_step(x, y, fastbp.MSELoss(), alone_opt)
    for got, want in zip(shared.parameters(), alone.parameters()):
        np.testing.assert_array_equal(got.value, want.value)


def test_set_num_threads_limits_numba_and_every_blas():
    before = fastbp.get_num_threads()
    try:
        fastbp.set_num_threads(1)
        now = fastbp.get_num_threads()
        assert now["numba"] == 1
        assert now["blas"] and all(n == 1 for n in now["blas"])
    finally:
        fastbp.set_num_threads(before["numba"])
    assert fastbp.get_num_threads()["numba"] == before["numba"]


@pytest.mark.parametrize("bad", [0, -1, 2.5, "2", True])
def test_set_num_threads_refuses_bad_counts(bad):
    with pytest.raises((ValueError, TypeError), match="n must"):
        fastbp.set_num_threads(bad)


def test_set_num_threads_refuses_more_than_numbas_pool():
    with pytest.raises(ValueError, match="NUMBA_NUM_THREADS"):
        fastbp.set_num_threads(numba.config.NUMBA_NUM_THREADS + 1)


def test_fit_trains_small_networks_on_one_blas_thread_and_restores_the_count(monkeypatch):
    from fastbp.kernels import network as network_kernels

    threads = numba.config.NUMBA_NUM_THREADS
    fastbp.set_num_threads(threads)
    seen = []
    real_epoch = network_kernels.network_train_epoch

    def recording_epoch(*args):
        seen.append(fastbp.get_num_threads()["blas"])
        return real_epoch(*args)
    monkeypatch.setattr(network_kernels, "network_train_epoch", recording_epoch)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 32)).astype(np.float32)
    labels = rng.integers(0, 4, 64)

    def fit():
        model = fastbp.Sequential(fastbp.Linear(32, 64, activation="relu", rng=0), fastbp.Linear(64, 4, rng=1))
        model.fit(x, labels, loss=fastbp.CrossEntropyLoss(), optimizer=fastbp.SGD(model.parameters(), lr=0.1),
                  epochs=2, batch_size=16, rng=0, progress=False)
        return model.fused.params.copy()
    small = fit()  # 16 * (32 * 64 + 64 * 4) multiply-adds a forward: below the threshold
    assert len(seen) == 2 and all(set(counts) == {1} for counts in seen)
    assert set(fastbp.get_num_threads()["blas"]) == {threads}
    seen.clear()
    monkeypatch.setattr(fastbp.threads, "ONE_BLAS_THREAD_BELOW_MACS", 1000)
    large = fit()
    assert len(seen) == 2 and all(set(counts) == {threads} for counts in seen)
    # the rule depends on the sizes only, so a fit's bits do too
    monkeypatch.setattr(fastbp.threads, "ONE_BLAS_THREAD_BELOW_MACS", 8_000_000)
    np.testing.assert_array_equal(fit(), small)
    assert large.shape == small.shape
