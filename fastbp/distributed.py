"""Data-parallel training over MPI (the `mpi` extra: mpi4py and an MPI library).

    # mpiexec -n 4 python train.py
    from fastbp.distributed import DataParallel
    trainer = DataParallel(model, optimizer)          # rank 0's parameters, everywhere
    history = trainer.fit(x, y, loss=fastbp.CrossEntropyLoss(), epochs=10, batch_size=256,
                          rng=0, checkpoint="run.npz")

Every rank holds the whole data set and the same model. Each step takes the
next `size * batch_size` rows of the epoch's permutation (the same seeded
permutation on every rank), and rank r trains on rows r, r + size, ... of them
(torch's DistributedSampler's strided shards; the shards differ by at most a
row, and a rank may have none in an epoch's last step). A step is then

  1. the compiled forward + backward on the rank's shard (FusedNetwork.forward_backward),
  2. its gradient scaled by its share of the step's rows (or of their weights),
  3. one in-place Allreduce (sum) of the 1-element loss, so that a non-finite
     loss on any rank stops every rank at the same step, then one of the
     whole flat gradient buffer: the global batch's mean gradient,
  4. the L2 penalty and the compiled update (clipping, every optimizer) on every rank,

so every rank applies the same update to the same parameters and the ranks
stay bit-identical, and N ranks with batch b train as one process with batch
N * b up to the summation order. `deterministic=True` fixes that order: the
shards' gradients are gathered (Allgather) and summed in rank order, whatever
MPI's reduction algorithm, and one process with `shards=N` sums its N shards
the same way, so the two agree bit for bit. `local_sgd=k` instead trains
each rank on its own shards and averages the parameters every k steps and at
the end of every epoch (for networks so small that one Allreduce costs more
than a step). `overlap=True` splits steps 1 and 3: the forward pass and the
loss's Allreduce, then the backward pass layer by layer from the last, each
layer's gradient slice posted as a non-blocking Iallreduce as soon as it is
written, all waited on before the update (the same bits as one Allreduce).

Everything of `Sequential.fit` works: schedules, clipping, L2, sample
weights, validation (on every rank, so early stopping decides alike
everywhere), callbacks. `checkpoint=path` writes the model, the optimizer
and the epoch after every epoch from rank 0 only, atomically, then waits at a
barrier; `fastbp.load_training(path)` and `fit(..., initial_epoch=...)`
resume with the same or another number of ranks.

No rank waits forever: an exception on one rank that the others cannot know
of aborts the whole job (MPI_Abort) after printing it; a killed rank ends the
job through mpiexec; and a rank that waits longer than `timeout` seconds in
one collective (another rank hung, deadlocked or stopped) aborts the job
with a message naming the collective, as torch.distributed's timeout does
(and with its default, 30 minutes).
"""
import os
import sys
import threading
import time
import traceback
import weakref

import numpy as np

from . import training
from .kernels import network as network_kernels

# seconds in one collective before a rank aborts the job: torch.distributed's default
DEFAULT_TIMEOUT = 1800.0
# mpiexec's proxy stops forwarding a rank's stderr once it handles that
# rank's MPI_Abort, and on a busy host it can handle the abort before the
# message that explains it: a rank that aborts first waits this long, so the
# reason reaches the terminal (tests/test_distributed.py checks it does).
ABORT_GRACE_SECONDS = 1.0

# an exception every rank raises at the same point (the loss is reduced
# before anyone acts on it), so it needs no abort
COLLECTIVE_ERRORS = (training.NonFiniteLossError,)


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError:
        raise ImportError("fastbp.distributed needs mpi4py and an MPI library: pip install 'fastbp[mpi]' "
                          "(mpi4py and the mpich wheel)") from None
    return MPI


class DataParallel:
    """Data-parallel training of a fused `model` with `optimizer` over `comm`.

    Parameters
    ----------
    model : a fastbp.Sequential that takes the fused step (Linear layers, each
        optionally followed by a Dropout).
    optimizer : a fastbp SGD, Adam or AdamW over exactly the model's parameters.
    comm : an mpi4py communicator; None for MPI.COMM_WORLD.
    deterministic : sum the shards' gradients in rank order (Allgather)
        instead of MPI's Allreduce, so the result does not depend on MPI.
    shards : with deterministic=True, the shards each step is split into;
        None for the number of ranks, or a multiple of it (one process with
        shards=N reproduces N ranks bit for bit).
    local_sgd : None, or k: train each rank alone and average the parameters
        every k steps and after every epoch.
    overlap : reduce each layer's gradient (a non-blocking Iallreduce) as
        soon as the backward pass has written it, while the layers below are
        computed, instead of one Allreduce after the whole backward pass.
        The same bits as without it (each element is reduced alike); for
        networks wider than 8 in the default mode. Whether it pays depends on
        the MPI library's progress (MPICH moves a non-blocking collective on
        inside MPI calls only, unless MPIR_CVAR_ASYNC_PROGRESS=1):
        `python benchmarks/distributed.py` times both.
    timeout : seconds a rank may wait in one collective before it aborts the
        job (a hung or stopped rank never reaches it); None waits forever.
    """

    def __init__(self, model, optimizer, comm=None, *, deterministic=False, shards=None, local_sgd=None,
                 overlap=False, timeout=DEFAULT_TIMEOUT):
        MPI = _mpi()
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        fused = getattr(model, "fused", None)
        if fused is None:
            raise ValueError("DataParallel trains models that take the fused step: a Sequential of Linear "
                             "layers (each optionally followed by a Dropout) on the CPU")
        if not fused.uses(optimizer):
            raise ValueError(fused._why_not_optimizer(optimizer))
        if deterministic and local_sgd is not None:
            raise ValueError("give deterministic=True or local_sgd, not both")
        if shards is None:
            shards = self.size
        if isinstance(shards, bool) or not isinstance(shards, (int, np.integer)) or shards < 1 or (
                shards % self.size):
            raise ValueError(f"shards must be a positive multiple of the number of ranks ({self.size}), got "
                             f"{shards!r}")
        if not deterministic and shards != self.size:
            raise ValueError("shards applies to deterministic=True only")
        if local_sgd is not None and (isinstance(local_sgd, bool) or not isinstance(local_sgd, (int, np.integer))
                                      or local_sgd < 1):
            raise ValueError(f"local_sgd must be None or a positive int (steps between averages), got "
                             f"{local_sgd!r}")
        if not isinstance(overlap, (bool, np.bool_)):
            raise TypeError(f"overlap must be True or False, got {type(overlap).__name__}")
        if overlap and (deterministic or local_sgd is not None):
            raise ValueError("overlap applies to the default mode only (not deterministic=True or local_sgd)")
        if overlap and network_kernels.is_narrow(fused.table):
            raise ValueError("overlap is for networks wider than 8, whose gradient is worth overlapping; "
                             f"this one's widths are all at most {network_kernels.NARROW_MAX_WIDTH}")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float, np.number))
                                    or not timeout > 0 or not np.isfinite(timeout)):
            raise ValueError(f"timeout must be None or a positive number of seconds, got {timeout!r}")
        self.model, self.optimizer, self.fused = model, optimizer, fused
        self.deterministic, self.shards, self.local_sgd = bool(deterministic), int(shards), local_sgd
        self.overlap = bool(overlap)
        self.timeout = None if timeout is None else float(timeout)
        self.communication_seconds = 0.0
        self._waiting = None  # (the collective, time.monotonic() when it began) while in one
        if self.size > 1 and self.timeout is not None:
            _start_watchdog(self)
        self.broadcast()

    def broadcast(self, root=0):
        """Every rank takes `root`'s parameters, optimizer state and step
        count, and dropout counters (done at construction)."""
        opt = self.optimizer
        for buffer in (self.fused.params, self.fused.table, *opt.flat_state):
            if buffer.size:
                self._collective("Bcast", self.comm.Bcast, buffer, root=root)
        opt.step_count = self._collective("bcast", self.comm.bcast, opt.step_count, root=root)
        opt.hyper[...] = self._collective("bcast", self.comm.bcast, opt.hyper, root=root)

    def fit(self, x, y, *, loss, epochs=1, batch_size=None, rng=None, checkpoint=None, callback=None, **fit_kwargs):
        """`Sequential.fit` (every keyword of it but optimizer and fused),
        data-parallel; batch_size is per rank, or per shard with `shards`
        (None: each one's share of the whole data set). `rng`: a seed, the
        same on every rank (None: rank 0 draws one). `checkpoint`: a path
        written after every epoch by rank 0. Returns the same history on
        every rank."""
        try:
            if rng is None:
                rng = self._collective("bcast", self.comm.bcast,
                                       int(np.random.default_rng().integers(2 ** 62)) if self.rank == 0 else None)
            elif not isinstance(rng, (int, np.integer)) or isinstance(rng, bool):
                raise TypeError(f"rng must be an int seed (the same on every rank) or None, got "
                                f"{type(rng).__name__}")
            rows = np.asarray(x).shape[0] if np.ndim(x) else 0
            global_batch = (-(-rows // self.shards) if batch_size is None else batch_size) * self.shards
            user_callback = callback

            def after_epoch(epoch, history):
                if checkpoint is not None:
                    self.save(checkpoint, epoch=epoch + 1, schedule=fit_kwargs.get("schedule"))
                return user_callback(epoch, history) if user_callback is not None else None

            def epochs_for(x, y, loss, optimizer, batch, l2, weights):
                return _ParallelEpochs(self, x, y, loss, global_batch, l2, weights)

            progress = fit_kwargs.pop("progress", self.rank == 0)  # one progress bar, not one per rank
            with self.model._lock:
                return training.fit(self.model, x, y, loss=loss, optimizer=self.optimizer, epochs=epochs,
                                    batch_size=global_batch, rng=int(rng), fused=True, callback=after_epoch,
                                    progress=progress, _make_epochs=epochs_for, **fit_kwargs)
        except COLLECTIVE_ERRORS:
            raise
        except BaseException as exc:
            self._abort(exc)
            raise

    def save(self, path, *, epoch=None, schedule=None):
        """The model, optimizer (and schedule, epoch) from rank 0 only,
        atomically (fastbp.save); every rank returns after it is written."""
        if self.rank == 0:
            self.model.save(path, optimizer=self.optimizer, schedule=schedule, epoch=epoch)
        self._collective("Barrier", self.comm.Barrier)

    def _abort(self, exc):
        if self.size > 1 and not isinstance(exc, KeyboardInterrupt):
            print(f"fastbp.distributed: rank {self.rank} of {self.size} raised; aborting every rank",
                  file=sys.stderr)
            traceback.print_exception(exc, file=sys.stderr)
            _abort_job(self.comm)

    def _collective(self, name, call, *args, **kwargs):
        """call(*args, **kwargs), a collective named `name`, timed into
        communication_seconds and watched against `timeout`."""
        start = time.perf_counter()
        self._waiting = (name, time.monotonic())
        try:
            return call(*args, **kwargs)
        finally:
            self._waiting = None
            self.communication_seconds += time.perf_counter() - start

    def _allreduce(self, buffer):
        MPI = _mpi()
        self._collective("Allreduce", self.comm.Allreduce, MPI.IN_PLACE, buffer, op=MPI.SUM)

    def _allgather(self, send, receive):
        self._collective("Allgather", self.comm.Allgather, send, receive)


def _abort_job(comm, from_thread=False):
    """Ends every rank of `comm`'s job, after what this rank wrote to stderr
    has had ABORT_GRACE_SECONDS to reach mpiexec. A thread other than the
    main one may call MPI only under MPI_THREAD_MULTIPLE; without it the
    process exits and mpiexec ends the other ranks."""
    sys.stderr.flush()
    time.sleep(ABORT_GRACE_SECONDS)
    if not from_thread or _mpi().Query_thread() == _mpi().THREAD_MULTIPLE:
        comm.Abort(1)
    os._exit(1)


def _start_watchdog(parallel):
    """A daemon thread that aborts the job when `parallel` has waited longer
    than its timeout in one collective; it ends with `parallel`. mpi4py
    releases the GIL inside MPI calls, so it runs while the main thread waits."""
    ref, timeout = weakref.ref(parallel), parallel.timeout
    poll = min(1.0, timeout / 10)

    def watch():
        while True:
            time.sleep(poll)
            parallel = ref()
            if parallel is None:
                return
            waiting = parallel._waiting
            if waiting is not None and time.monotonic() - waiting[1] > timeout:
                name, rank, size, comm = waiting[0], parallel.rank, parallel.size, parallel.comm
                print(f"fastbp.distributed: rank {rank} of {size} waited more than {timeout:g} s in {name} "
                      f"(another rank hung, stopped or died); aborting every rank", file=sys.stderr)
                _abort_job(comm, from_thread=True)
            del parallel

    threading.Thread(target=watch, name="fastbp-collective-watchdog", daemon=True).start()


class _ParallelEpochs:
    """FusedEpochs' interface (fastbp/training.py `_train` runs it) over the
    ranks: `run` is one epoch of data-parallel steps."""

    def __init__(self, parallel, x, y, loss, global_batch, l2, weights):
        self.parallel = parallel
        self.network, self.optimizer = parallel.fused, parallel.optimizer
        self.x, self.y, self.loss, self.l2, self.weights = x, y, loss, float(l2), weights
        self.n = x.shape[0]
        self.batch_size = min(global_batch, self.n)
        self._mean = loss._reduction == network_kernels.MEAN
        # what FusedEpochs gives the compiled step: x and y were checked once
        # by fit, so each step's shard goes to the kernel unchecked
        labels = loss.reads_labels(y)
        net = self.network
        self._code = loss.fused_code(labels, net.last_activation)
        self._labels = labels
        self._work = net._workspace(-(-self.batch_size // parallel.shards))
        self._loss_buffer = np.zeros(1)
        self._accuracy, self._correct = network_kernels.NO_ACCURACY, 0
        self._no_weights = np.empty(0, np.float64)
        self.comm = parallel.comm
        # each layer's weights and bias: one contiguous slice of the flat gradient buffer
        ends = [int(row[network_kernels.WEIGHTS_OFFSET]) for row in net.table[1:]] + [net.grads.size]
        self._layer_slices = [net.grads[int(row[network_kernels.WEIGHTS_OFFSET]):end]
                              for row, end in zip(net.table, ends)]
        size = parallel.size
        if parallel.deterministic:
            per_rank = parallel.shards // size
            self._gathered = np.empty((parallel.shards, self.network.grads.size), self.network.grads.dtype)
            self._mine = np.empty((per_rank, self.network.grads.size), self.network.grads.dtype)
            self._losses = np.empty(parallel.shards)
            self._my_losses = np.empty(per_rank)

    def _share(self, rows, shard_rows):
        """The shard's weight in the step's mean: its rows (or their weights) over the step's."""
        if not self._mean:
            return 1.0
        if self.weights is None:
            return len(shard_rows) / len(rows)
        total = float(np.sum(self.weights[rows]))
        return float(np.sum(self.weights[shard_rows])) / total if total > 0 else 0.0

    def _count(self, target, labels, work):
        """Add the shard's right predictions (kernels/network.py count_correct)
        after its forward pass in `work`; target, labels as _shard_targets gives them."""
        if self._accuracy != network_kernels.NO_ACCURACY:
            rows = labels.shape[0] if self._labels else target.shape[0]
            self._correct += network_kernels.count_correct(self.network.table, work, rows, self._accuracy,
                                                           target, labels, self.network.narrow)

    def _shard_targets(self, shard_rows):
        """(target, labels) of the shard's rows, as the compiled step takes them."""
        net, y = self.network, self.y[shard_rows]
        return (net._empty_target, y) if self._labels else (y, net._empty_labels)

    def _shard_arrays(self, shard_rows):
        """(x, target, labels, weights) of the shard's rows, as the compiled step takes them."""
        return (self.x[shard_rows], *self._shard_targets(shard_rows),
                self.network._empty_weights if self.weights is None else self.weights[shard_rows])

    def _shard_gradient(self, rows, shard_rows, grads):
        """The shard's scaled loss, with its scaled gradient in `grads`."""
        net = self.network
        if len(shard_rows) == 0:
            grads[...] = 0
            return 0.0
        shard = self._shard_arrays(shard_rows)
        value = net.kernels.forward_backward(net.table, net.params, net.grads, *shard, self._code,
                                             self.loss._reduction, 0.0, self._work)
        self._count(shard[1], shard[2], self._work)
        share = self._share(rows, shard_rows)
        if grads is not net.grads:
            grads[...] = net.grads
        grads *= grads.dtype.type(share)
        return value * share

    def _overlapped_gradient(self, rows, shard_rows):
        """_shard_gradient and the Allreduces of _step with overlap=True: the
        global loss, and (when it is finite) the global gradient in grads,
        each layer's slice reduced while the layers below it are computed."""
        MPI, parallel, net = _mpi(), self.parallel, self.network
        table, params, grads = net.table, net.params, net.grads
        has_rows = len(shard_rows) != 0
        value = 0.0
        if has_rows:
            shard = self._shard_arrays(shard_rows)
            x = shard[0]
            value = network_kernels.network_forward_loss(table, params, *shard, self._code, self.loss._reduction,
                                                         self._work)
            self._count(shard[1], shard[2], self._work)
        share = self._share(rows, shard_rows)
        self._loss_buffer[0] = value * share
        parallel._allreduce(self._loss_buffer)  # first, so that every rank stops on a non-finite loss
        value = float(self._loss_buffer[0])
        if not np.isfinite(value):
            return value
        requests = []
        for l in range(table.shape[0] - 1, -1, -1):
            layer = self._layer_slices[l]
            if has_rows:
                network_kernels.network_backward_layer(table, params, grads, x, self._work, l)
                layer *= layer.dtype.type(share)
            else:
                layer[...] = 0
            requests.append(parallel._collective("Iallreduce", self.comm.Iallreduce, MPI.IN_PLACE, layer,
                                                 op=MPI.SUM))
            parallel._collective("Testall", MPI.Request.Testall, requests)  # MPI's progress on the posted ones
        parallel._collective("Waitall", MPI.Request.Waitall, requests)
        return value

    def _step(self, rows):
        """One data-parallel step over `rows` (the step's global batch): the
        global loss, or a non-finite one (nothing updated)."""
        parallel, net = self.parallel, self.network
        size, rank = parallel.size, parallel.rank
        if parallel.deterministic:
            shards = parallel.shards
            per_rank = shards // size
            for k in range(per_rank):
                s = rank * per_rank + k
                self._my_losses[k] = self._shard_gradient(rows, rows[s::shards], self._mine[k])
            parallel._allgather(self._my_losses, self._losses)
            value = 0.0
            for s in range(shards):  # in shard order, as one process sums them
                value += self._losses[s]
            if not np.isfinite(value):
                return value
            parallel._allgather(self._mine, self._gathered)
            net.grads[...] = self._gathered[0]
            for s in range(1, shards):
                net.grads += self._gathered[s]
        elif parallel.overlap:
            value = self._overlapped_gradient(rows, rows[rank::size])
            if not np.isfinite(value):
                return value
        else:
            self._loss_buffer[0] = self._shard_gradient(rows, rows[rank::size], net.grads)
            parallel._allreduce(self._loss_buffer)
            value = float(self._loss_buffer[0])
            if not np.isfinite(value):
                return value
            parallel._allreduce(net.grads)
        if self.l2:
            value += network_kernels.network_add_l2(net.table, net.params, net.grads, self.l2,
                                                    self.loss._reduction, self._no_weights, len(rows))
        return value if net.update(self.optimizer) else np.inf

    def _local_step(self, rows):
        """local SGD: the rank's own step on its shard; returns its share of the global loss."""
        parallel, net = self.parallel, self.network
        mine = rows[parallel.rank::parallel.size]
        if len(mine) == 0:
            return 0.0
        weights = None if self.weights is None else self.weights[mine]
        value = net.step(self.x[mine], self.y[mine], self.loss, self.optimizer, self.l2, weights)
        if np.isfinite(value) and self._accuracy != network_kernels.NO_ACCURACY:
            self._count(*self._shard_targets(mine), net.work)
        return value * self._share(rows, mine) if np.isfinite(value) else value

    def _average(self, buffers):
        for buffer in buffers:
            if buffer.size:
                self.parallel._allreduce(buffer)
                buffer *= buffer.dtype.type(1.0 / self.parallel.size)

    def run(self, order, interrupt, lrs=None, accuracy=network_kernels.NO_ACCURACY):
        parallel = self.parallel
        order = np.arange(self.n) if order is None else order
        total = 0.0
        self._accuracy, self._correct = accuracy, 0
        for k, lo in enumerate(range(0, self.n, self.batch_size)):
            rows = order[lo:lo + self.batch_size]
            if lrs is not None:
                self.optimizer.lr = lrs[k]
            if parallel.local_sgd is None:
                value = self._step(rows)
            else:
                self._loss_buffer[0] = self._local_step(rows)
                parallel._allreduce(self._loss_buffer)  # every rank stops together
                value = float(self._loss_buffer[0])
                if np.isfinite(value) and (k + 1) % parallel.local_sgd == 0:
                    self._average([self.network.params])
            if not np.isfinite(value):
                return value, k, None
            total += value * len(rows) if self._mean else value
        if parallel.local_sgd is not None:
            # the ranks leave every epoch identical: parameters and optimizer
            # state averaged, the step count of the rank that took the most
            self._average([self.network.params, *self.optimizer.flat_state])
            self.optimizer.step_count = parallel._collective("allreduce", parallel.comm.allreduce,
                                                             self.optimizer.step_count, op=_mpi().MAX)
        if accuracy == network_kernels.NO_ACCURACY:
            return total, -1, None
        # each rank counted its shards' rows: the sum is every row's, once
        correct = parallel._collective("allreduce", parallel.comm.allreduce, self._correct, op=_mpi().SUM)
        return total, -1, int(correct)
