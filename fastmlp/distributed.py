"""Data-parallel synchronous SGD on MPI: one training run spread over the processes of ``mpiexec``.

    mpiexec -n 4 fastmlp train --distributed --batch-size 512 [train options]
    model.fit(X, y, batch_size=512, distributed=True)       # in a script started by mpiexec

Every process (rank) holds the whole model, reads the whole dataset and draws the same shuffled
order from the seed, so the global batches are those of one process. A global batch of B
samples, order[s : s + B], is cut into p contiguous shares (p ranks), rank r taking its rows
[r B / p, (r + 1) B / p). Each rank computes

    grad_r = (1 / B) * sum of the per-sample gradients of its rows      (kernels.batch_gradient)

``Allreduce`` sums them into the batch mean, the same on every rank, and every rank takes the
same optimizer step from it (``kernels.gradient_step``). The ranks therefore hold the same
weights and optimizer state throughout, and the run equals one process with the same batch
size to rounding (the batch sum runs in another order): momentum, Adam, weight decay, dropout
(masks keyed by the global sample number), schedules, early stopping and checkpoints work as
in one process, since the trainer's loop runs unchanged on every rank and sees the same
numbers everywhere. Only rank 0 draws progress and writes checkpoints (``MLP.fit``).

Per-sample SGD (batch size 1) is sequential by nature, each step needs the weights the
previous one left, so there is nothing to share out: it is refused. The numba backend only.

mpi4py (with an MPI library: the ``mpich`` wheel) is imported when a distributed run starts:
``pip install "fastmlp[mpi]"``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import zlib

import numpy as np

from . import kernels, network, optim
from ._validation import plain_bool
from .kernels.optimizer import N_STEP_SCALARS
from .network import aligned_copy, aligned_empty

EXTRA = 'pip install "fastmlp[mpi]"'
PER_SAMPLE_IS_SEQUENTIAL = (
    "per-sample SGD (batch size 1) is sequential by nature: each step needs the weights the previous "
    "sample's step left, so there is no batch to share among processes"
)


class DistributedWarning(UserWarning):
    """``distributed=True`` that trains in one process after all (no MPI, or a single rank)."""


# What MPI launchers tell each process they start: (the size variable, the rank variable).
# MPICH's Hydra (and Slurm's srun --mpi=pmi2) set PMI_*, Open MPI's mpirun OMPI_COMM_WORLD_*.
LAUNCHER_VARIABLES = (("PMI_SIZE", "PMI_RANK"), ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"))


def launched_as(environ=None):
    """``(size, rank, variable)`` when an MPI launcher started this process as one of ``size``
    > 1 processes (its environment says so, mpi4py or not), else None."""
    environ = os.environ if environ is None else environ
    for size_name, rank_name in LAUNCHER_VARIABLES:
        try:
            size, rank = int(environ.get(size_name, "")), int(environ.get(rank_name, "0"))
        except ValueError:
            continue
        if size > 1:
            return size, rank, size_name
    return None


def communicator(distributed):
    """``(comm, note)`` for the ``distributed`` argument of ``MLP.fit``: the mpi4py communicator
    to train over, or None to train in this process as usual, and why not when it was asked
    for (a note for the user), else None.

    ``distributed``: False or None, True (``MPI.COMM_WORLD``) or an mpi4py communicator.
    """
    distributed = plain_bool(distributed)
    if distributed is None or distributed is False:
        return None, None
    if distributed is True:
        try:
            from mpi4py import MPI
        except (ImportError, RuntimeError) as error:  # mpi4py absent, or no MPI library for it
            launched = launched_as()
            if launched is not None:  # each of the N would train alone (or the others wait for this one)
                size, rank, variable = launched
                raise RuntimeError(
                    f"distributed training needs mpi4py and an MPI library ({error}; {EXTRA}), and this process "
                    f"(rank {rank}) was started as one of {size} MPI processes ({variable}={size}): it does not train "
                    f"alone as if it were the only one"
                ) from None
            return None, (f"distributed training needs mpi4py and an MPI library ({error}; {EXTRA}): "
                          f"training in this one process as usual")
        comm = MPI.COMM_WORLD
    elif callable(getattr(distributed, "Allreduce", None)) and callable(getattr(distributed, "Get_size", None)):
        comm = distributed
        if _is_null(comm):  # (its Get_size raised mpi4py's bare "Invalid communicator"; audit 61)
            raise ValueError("distributed is MPI.COMM_NULL: this process is in no communicator (a rank a Split left "
                             "out); pass False to train it alone, or a communicator it belongs to")
    else:
        raise TypeError(f"distributed must be True, False or an mpi4py communicator; got {distributed!r}")
    if comm.Get_size() == 1:
        launched = launched_as() if distributed is True else None
        if launched is not None:
            # the launcher started N processes, but their MPI library is another one than the
            # launcher's (mpi4py on the mpich wheel under Open MPI's mpiexec, say): each sees one
            # rank, and trained the whole run alone, printing and writing --save (audit 61)
            size, rank, variable = launched
            raise RuntimeError(
                f"this process (rank {rank}) was started as one of {size} MPI processes ({variable}={size}), but MPI "
                f"sees a single rank: mpi4py's MPI library is not the launcher's (build mpi4py against the MPI whose "
                f"mpiexec starts the job; README, \"Scaling out\"); it does not train alone as if it were the only one"
            )
        return None, ("distributed training on a single MPI rank (start it with mpiexec -n N): "
                      "training in this one process as usual")
    return comm, None


def _is_null(comm):
    """Whether ``comm`` is mpi4py's COMM_NULL."""
    try:
        from mpi4py import MPI
    except (ImportError, RuntimeError):
        return False
    return comm == MPI.COMM_NULL


def is_lead(comm):
    """Whether this process prints and writes files: rank 0, or the only process."""
    return comm is None or comm.Get_rank() == 0


def share(n_rows, rank, size):
    """[first, last) of the rows of an n_rows batch that ``rank`` of ``size`` computes."""
    return n_rows * rank // size, n_rows * (rank + 1) // size


def _crc(array):
    return zlib.crc32(np.ascontiguousarray(array))


# The training calls of this process that have not met the other ranks yet (in check_same_run):
# an exception in one of them is told to the other ranks there (``agreeing``).
_UNMET = []
_FAILED = "failed before training"


class RanksFailed(ValueError):
    """Raised on every rank, alike, when the ranks' training calls differ or one of them failed
    before training: no rank waits for the others. ``failed``: [(rank, its error)] of the ranks
    that failed before training; ``size``: the ranks."""

    failed = ()
    size = 0


# The communicators whose caller stops every rank itself when an error of this rank ends its
# training call after the ranks met (the command line: ``cli._stop_other_ranks``, with its
# exit status and account of the run); ``ending_the_job`` leaves those to it.
_CALLER_STOPS = []


@contextlib.contextmanager
def caller_stops_ranks(comm):
    """Within it, ``ending_the_job`` raises errors as they are: the caller ends the job."""
    _CALLER_STOPS.append(comm)
    try:
        yield
    finally:
        _CALLER_STOPS.remove(comm)


@contextlib.contextmanager
def ending_the_job(comm, meeting):
    """Around a distributed training call (``meeting``: its ``agreeing``'s), once the ranks have met
    to train (``meeting["agreed"]``): an exception raised on
    this rank alone (out of memory, a Ctrl-C that reached the ranks at different moments, a
    failed write) would leave the other ranks waiting for it in a collective, each spinning on a
    core, for ever (audit 39: a script's fit under mpiexec hung that way). The rank prints it and
    MPI_Abort ends every rank (status 130 for an interrupt, else 1), as ``python -m mpi4py``
    does for an uncaught exception. What every rank raises alike (RanksFailed, a divergence at
    the same sample, an error of on_epoch or of rank 0's checkpoint, which every rank was told)
    is raised as it is."""
    from .trainer import DivergenceError

    try:
        yield
    except (RanksFailed, DivergenceError):
        raise
    except BaseException as error:
        if (not meeting["agreed"] or getattr(error, "_told_every_rank", False) or _CALLER_STOPS
                or comm.Get_size() < 2):
            raise  # (before the ranks met, ``agreeing`` tells the others)
        import sys
        import traceback

        interrupted = isinstance(error, KeyboardInterrupt)
        traceback.print_exc()
        print(f"fastmlp: rank {comm.Get_rank()} of {comm.Get_size()}: {_one_line(error)}; the other ranks wait for "
              f"this one in the training call, so MPI_Abort ends every rank", file=sys.stderr, flush=True)
        abort(comm, 130 if interrupted else 1)
        raise


# Seconds a rank waits between writing why it stops the job and MPI_Abort: mpiexec (MPICH's
# Hydra) forwards the ranks' output from pipes, and the job's end dropped what it had not read yet
# (a loaded machine: of a traceback and its one-line account, only the traceback's first line)
ABORT_GRACE_SECONDS = 0.5


def abort(comm, status):
    """MPI_Abort of every rank with ``status``, once this rank's output had time to reach mpiexec."""
    import sys
    import time

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    time.sleep(ABORT_GRACE_SECONDS)
    comm.Abort(status)


@contextlib.contextmanager
def agreeing(comm):
    """Run one rank's part of a distributed call (a ``fit``; the command line's set-up and
    fit) so that the ranks cannot hang: an exception raised on this rank before the ranks met
    in ``check_same_run`` is sent to them there (in the same collective), so every other rank
    raises ``RanksFailed`` naming it while this one raises its own. Nested uses meet once.
    Yields a dict whose "met" says, once the block has ended, whether the ranks met, and
    "agreed" whether they met to train (so that an exception after that may have left the others
    in a collective: see the command line's use); a meeting that told the ranks of a failure
    before training is "met" but not "agreed": every rank raised."""
    if comm is None:
        yield {"met": False, "agreed": False}
        return
    call = {"met": False, "agreed": False}
    _UNMET.append(call)
    try:
        yield call
    except Exception as error:
        if not call["met"]:
            mine = _one_line(error)
            try:
                check_same_run(comm, **{_FAILED: mine})
            except RanksFailed as told:  # this rank raises its own error
                alike = len(told.failed) == told.size and all(theirs == mine for _, theirs in told.failed)
                if alike and comm.Get_rank() != 0:
                    error._said_by_rank_0 = True  # every rank raised it: rank 0's account is enough (cli)
        raise
    finally:
        _UNMET.remove(call)


# How long a rank waits at the start of a distributed call for the others before it says so on
# stderr (then again each time the wait doubles). A rank whose script raised before its fit
# cannot tell the others, and plain ``mpiexec -n 2 python train.py`` then leaves them waiting in
# silence, spinning in MPI at full CPU (audit 78); ``python -m mpi4py train.py`` ends the job.
WAIT_NOTE_SECONDS = 60.0


def _all_arrived(comm):
    """Return once every rank of ``comm`` has reached this point: a non-blocking barrier polled
    from Python (pauses growing to 50 ms), so that a long wait says why on stderr
    (``WAIT_NOTE_SECONDS``), costs no CPU and can be interrupted (Ctrl-C), where a blocking
    collective spins inside MPI for ever and runs no signal handler."""
    ibarrier = getattr(comm, "Ibarrier", None)
    if ibarrier is None or comm.Get_size() == 1:
        return
    request = ibarrier()
    start = time.monotonic()
    note_at = WAIT_NOTE_SECONDS
    pause = 1e-4
    while not request.Test():
        waited = time.monotonic() - start
        if waited >= note_at:
            print(f"fastmlp: rank {comm.Get_rank()} has waited {waited:.0f} s for the other ranks to start this "
                  f"distributed training call; a rank whose script failed before its fit cannot tell the others: "
                  f"end the job (Ctrl-C) and start scripts as `mpiexec -n N python -m mpi4py script.py`, which "
                  f"ends every rank when one raises", file=sys.stderr, flush=True)
            note_at *= 2
        time.sleep(pause)
        pause = min(2 * pause, 0.05)


def check_same_run(comm, **call):
    """Raise on every rank when the ranks were not given the same training call (data,
    options, weights, optimizer state) or one failed before it: they would otherwise wait for
    each other forever, or silently train different models. ``call``: JSON-able values; arrays
    are compared by CRC."""
    meeting = list(_UNMET)
    for unmet in meeting:
        unmet["met"] = True
    mine = {name: _crc(value) if isinstance(value, np.ndarray) else value for name, value in call.items()}
    mine = json.loads(json.dumps(mine, sort_keys=True, default=str))
    _all_arrived(comm)  # (then the allgather below cannot wait)
    everyone = comm.allgather(mine)
    failed = [(rank, theirs[_FAILED]) for rank, theirs in enumerate(everyone) if _FAILED in theirs]
    if failed:
        rank, error = failed[0]
        more = f" (and {len(failed) - 1} other rank{'s' if len(failed) > 2 else ''})" if len(failed) > 1 else ""
        told = RanksFailed(f"distributed training: rank {rank}{more} failed before training, so no rank trains: {error}")
        told.failed, told.size = failed, len(everyone)
        raise told
    for rank, theirs in enumerate(everyone):
        differing = sorted(name for name in mine if theirs.get(name) != everyone[0].get(name))
        if differing:
            raise RanksFailed(
                f"distributed training: rank {rank} differs from rank 0 in {', '.join(differing)}; every rank must "
                f"make the same training call (same data, options, seed or checkpoint)"
            )
    for call_ in meeting:
        call_["agreed"] = True


def _one_line(error):
    """``error`` as the other ranks are told it: its type and message on one line."""
    return f"{type(error).__name__}: {' '.join(str(error).split())}"


def lead_step(comm, step):
    """Run ``step()`` on rank 0 alone (writing a checkpoint) and tell every rank how it went: if
    it raised, every rank raises RanksFailed (rank 0's from its error), so that none waits for
    the others in the next collective. Every rank must call this at the same point."""
    error = None
    if is_lead(comm):
        try:
            step()
        except Exception as raised:  # noqa: BLE001 - told to every rank, then raised here too
            error = raised
    message = comm.bcast(None if error is None else _one_line(error), root=0)
    if message is not None:
        raise RanksFailed(f"distributed training: rank 0 failed during training, so every rank stops: {message}") from error


def each_rank_step(comm, step):
    """Run ``step()`` on every rank (a fit's ``on_epoch``) and tell every rank how it went on each:
    if it raised on some, every rank raises (those its own error, the others RanksFailed naming
    the first that raised), so that none waits for the others in the next collective. Every rank
    must call this at the same point."""
    error = None
    try:
        step()
    except Exception as raised:  # noqa: BLE001 - told to every rank, then raised here
        error = raised
    told = comm.allgather(None if error is None else _one_line(error))
    if error is not None:
        error._told_every_rank = True  # (the others raise RanksFailed: ending_the_job lets it go)
        raise error
    failed = [(rank, message) for rank, message in enumerate(told) if message is not None]
    if failed:
        rank, message = failed[0]
        raise RanksFailed(f"distributed training: rank {rank} failed during training, so every rank stops: {message}")


def warm_up_kernels(X, y, dtype):
    """Compile (or load from the cache) the kernels ``train --distributed`` calls, for ``dtype``
    and X's kind of input, in this process alone (``fastmlp warmup --distributed``): a tiny
    network's training call on MPI's one-rank communicator of this process."""
    try:
        from mpi4py import MPI
    except (ImportError, RuntimeError) as error:
        raise ImportError(f"warming up the distributed kernels needs mpi4py and an MPI library ({error}; {EXTRA})") from error
    from .backends import make_backend
    from .network import Architecture, init_params

    arch = Architecture([X.shape[1], 8, int(np.max(y)) + 1], dtype=dtype)
    backend = DistributedBackend(make_backend("numba", arch, 1), MPI.COMM_SELF)
    params = init_params(arch, "xavier", seed=0)
    backend.warmup(params, backend.prepare(X), np.asarray(y, np.int64), 2)


class DistributedBackend:
    """The numba backend's ``train_chunk`` spread over the ranks of ``comm`` (module docstring);
    data preparation and inference are the wrapped backend's, on every rank."""

    name = "numba"

    def __init__(self, local, comm):
        from mpi4py import MPI

        self.local = local
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.compile_seconds = 0.0
        self._MPI = MPI
        self._scratch = None  # ((dropout on, dtype), gradient, step scalars, kernels.gradient_scratch)
        self._stats = np.zeros(3, np.float64)
        self._totals = np.zeros(3, np.float64)

    def prepare(self, X, *, batches=True):
        return self.local.prepare(X)  # (every batch size trains on the mini-batch kernel here)

    def for_inference(self, X):
        return self.local.for_inference(X)

    def logits(self, params, data):
        return self.local.logits(params, data)

    def warmup(self, params, data, targets, batch_size, optimizer=None, state=None, sample_weight=None,
               inference=True):
        """Compile (or load from the on-disk cache) the kernels, on two samples: on every rank at
        once, as a training call is."""
        tic = time.perf_counter()
        scratch = aligned_copy(params)
        order = np.arange(min(2, len(data)), dtype=np.int64)
        self.train_chunk(scratch, data, targets, order, 1e-3, batch_size, optimizer,
                         None if state is None else state.copy(), sample_weight)
        if inference:  # (the form predictions and validation read)
            self.local.logits(scratch, self.local.for_inference(data.X[:1]))
        self.compile_seconds += time.perf_counter() - tic

    def train_chunk(self, params, data, targets, order, lr, batch_size, optimizer=None, state=None,
                    sample_weight=None):
        """Training over ``order`` in global batches of ``batch_size``, in place on ``params``
        and ``state``; returns ``(loss_sum, n_correct, n_done, nonfinite_at)`` of all ranks'
        rows, the same on every rank (the backends' contract)."""
        with network.aligned_for_training(params, len(order)) as params:
            return self._train_chunk(params, data, targets, order, lr, batch_size, optimizer, state, sample_weight)

    def _train_chunk(self, params, data, targets, order, lr, batch_size, optimizer, state, sample_weight):
        labels, target_rows = self.local._labels_and_targets(targets)
        if optimizer is None:
            optimizer = optim.Optimizer()
            state = optim.State(np.empty((0, params.size), params.dtype), np.zeros(3, np.int64))
        weights = np.empty(0, params.dtype) if sample_weight is None else sample_weight
        dropout = optimizer.dropout > 0 or optimizer.input_dropout > 0
        if self._scratch is None or self._scratch[0] != (dropout, params.dtype):
            grad = aligned_empty(params.shape, params.dtype)
            scalars = np.empty(N_STEP_SCALARS, params.dtype)
            self._scratch = ((dropout, params.dtype), grad, scalars,
                             kernels.gradient_scratch(params, self.local.layer_sizes, dropout))
        _, grad, scalars, scratch = self._scratch
        layout = (self.local.layer_sizes, self.local.w_offsets, self.local.b_offsets)
        arch = self.local.arch
        hyper = optimizer.hyper(lr)
        stats, totals = self._stats, self._totals
        sum_in_place = self._MPI.IN_PLACE
        loss_sum, n_correct, n_done = 0.0, 0, 0
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            first, last = share(len(batch), self.rank, self.size)
            kernels.batch_gradient(
                grad, stats, *scratch, params, *layout, arch.activation_code, arch.loss_code, hyper, state.counters,
                data.part_ptr, data.indices, data.values, data.input_scale, labels, target_rows, weights,
                batch[first:last], int(state.counters[optim.SAMPLES]) + first, len(batch),
            )
            totals[0] = stats[0]
            totals[1] = stats[1]
            totals[2] = stats[2] >= 0  # ranks that met a non-finite loss
            self.comm.Allreduce(sum_in_place, grad)
            self.comm.Allreduce(sum_in_place, totals)
            if totals[2] > 0:  # the batch's step is not taken; report its first bad sample
                mine = start + first + int(stats[2]) if stats[2] >= 0 else len(order)
                return loss_sum, n_correct, n_done, self.comm.allreduce(mine, op=self._MPI.MIN)
            kernels.gradient_step(params, state.slots, state.counters, scalars, grad, *layout, hyper, len(batch))
            loss_sum += float(totals[0])
            n_correct += int(totals[1])
            n_done += len(batch)
        return loss_sum, n_correct, n_done, -1
