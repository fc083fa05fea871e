"""The compiled backend: hands prepared arrays to the Numba kernels in ``fastmlp.kernels``.

Same contract as ``backends.NumpyBackend`` (``prepare`` also takes ``compiled``, and the
members the model and CLI read where a backend has them: ``threads_used``, ``call_ended``,
``compiling_for_later``). The dataset is prepared once per ``fit``: images
stay uint8 and are turned into CSR rows (zero pixels skipped exactly, scaled by 1/255 inside
the kernels); float data goes the same way with scale 1.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from dataclasses import dataclass

import numba
import numpy as np

from . import kernels, network, optim
from ._adaptive import ThreadChooser
from ._prewarm import cache_is_cold, compiled_here, kernel_dtypes, share
from ._prewarm import start as start_prewarm
from .backends import INFERENCE_BLOCK, INFERENCE_SPLIT_ROWS
from .kernels._threads import available_cores
from .network import SIGMOID_BCE, Architecture, aligned_copy
from .reference import PIXEL_SCALE

_PLAIN = optim.Optimizer()
_compiling_ahead = False  # within compiling_ahead()
# The longest `fastmlp warmup` waits for the second process to store the parallel mini-batch
# kernel before compiling it itself (its compile takes 15-30 s by machine kind, up to 60 s busy)
AHEAD_WAIT_SECONDS = 180.0
_openmp_inherited = False  # forked from a process whose OpenMP threads had started (_after_fork)


def _after_fork():
    """In a child forked (multiprocessing's default start on Linux before Python 3.14) from a
    process that had started Numba's OpenMP threading layer (a mini-batch fit: the parallel
    kernel): the layer cannot be used again here (GNU OpenMP's threads are not in the child;
    Numba ends the process, "Terminating: fork() called from a process already using GNU OpenMP",
    and a multiprocessing Pool waited for its workers for ever). Mini-batch training then runs on
    the serial twin (the same bits). TBB and workqueue layers survive a fork."""
    global _openmp_inherited
    try:
        from numba.np.ufunc import parallel
    except ImportError:
        return
    if getattr(parallel, "_is_initialized", False) and getattr(parallel, "_threading_layer", None) == "omp":
        _openmp_inherited = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)

_WORKQUEUE_LOCK = threading.Lock()


def _one_caller_at_a_time(kernel):
    """A lock for a call of ``kernel`` if it is the parallel mini-batch kernel and Numba's
    threading layer is workqueue (the one left where neither OpenMP nor TBB is installed, or
    chosen by NUMBA_THREADING_LAYER): two threads inside it at once end the process ("Concurrent
    access has been detected"; fits in a thread pool, a sweep's ThreadPoolExecutor). OpenMP and
    TBB take calls from several threads at once. Call after numba.set_num_threads, which starts
    the layer."""
    if kernel is kernels.minibatch_sgd_chunk:
        try:
            if numba.threading_layer() == "workqueue":
                return _WORKQUEUE_LOCK
        except ValueError:  # no layer started (NUMBA_DISABLE_JIT)
            pass
    return contextlib.nullcontext()


@contextlib.contextmanager
def compiling_ahead():
    """Within it, training compiles (or loads) its kernel itself (mini-batch: the parallel one)
    and never trains on the serial twin or an interpreted kernel. For ``fastmlp warmup``: on a
    cold cache a first fit trains on an interpreted kernel while a second process compiles the
    kernel (``_prewarm``), so a warm-up that only fitted could end before the kernel later fits
    train on is stored."""
    global _compiling_ahead
    previous, _compiling_ahead = _compiling_ahead, True
    try:
        yield
    finally:
        _compiling_ahead = previous


@dataclass
class Prepared:
    """A dataset as the kernels read it."""

    X: np.ndarray  # [N, D] uint8 or float, as validated
    indptr: np.ndarray  # int64 [N+1]
    indices: np.ndarray  # int32 [nnz]
    values: np.ndarray  # [nnz], X's dtype
    input_scale: float
    # int64 [N * PARTS + 1]: the rows' pointers split where the mini-batch kernel's parts' inputs
    # begin (``kernels.sparse_rows(X, parts=PARTS)``), which mini-batch training reads; None where
    # nothing will (``prepare(X, batches=False)``: per-sample training, predictions)
    part_ptr: np.ndarray | None = None

    def __len__(self):
        return len(self.X)


def _csr_ready(values_dtype):
    """Whether the compiled conversion to CSR rows (``kernels.sparse_rows``) for inputs of
    ``values_dtype`` is compiled in this process or stored in the cache (its second kernel, which
    a first conversion compiles last)."""
    from .kernels.linear import _gather_row_nonzeros as kernel

    try:
        return (compiled_here(kernel, argument_dtypes={"values": values_dtype})
                or not cache_is_cold(kernel, argument_dtypes={"values": values_dtype}))
    except (OSError, AttributeError):  # a Numba without these cache attributes: compile as before
        return True


def _plain_kernel(optimizer, weighted):
    """Whether per-sample training runs the plain kernel (``sgd_persample_chunk``): plain SGD
    without sample weights; anything else runs the general one (``persample_chunk``)."""
    return optimizer.is_plain and not weighted


class NumbaBackend:
    name = "numba"

    def __init__(self, arch: Architecture, threads="auto"):
        """``threads``: "auto" (mini-batch on one or all Numba threads, whichever measures faster,
        re-checked as training goes: ``ThreadChooser``; on ``numba.get_num_threads()`` where the
        caller set fewer with numba.set_num_threads; plain per-sample SGD the same way on one or
        two threads where they give the same bits, ``kernels.logits_in_halves``, on layers of
        PERSAMPLE_AUTO_UNITS or more, else on one)
        or a number n (per-sample on n threads where the network allows, mini-batch on
        min(n, NUMBA_NUM_THREADS): the number asked for, whatever numba.set_num_threads says)."""
        self.arch = arch
        layout = arch.layout()
        self.layer_sizes = layout.sizes
        self.w_offsets = layout.w_offsets
        self.b_offsets = layout.b_offsets
        most = 1 if numba.config.DISABLE_JIT else numba.config.NUMBA_NUM_THREADS
        # threads="auto" per sample: one or two threads chunk by chunk (``ThreadChooser``) where
        # the two train to the same bits (``kernels.logits_in_halves``) and the layer is wide
        # enough for two to pay (PERSAMPLE_AUTO_UNITS), else one
        self.persample_threads = None
        if threads == "auto":
            self.threads = 1
            self.minibatch_threads = ThreadChooser(most)
            if (most >= 2 and kernels.logits_in_halves(arch.layers) and arch.layers[1] >= self.PERSAMPLE_AUTO_UNITS
                    and kernels.usable_threads(2, tuple(arch.layers)) == 2):
                self.persample_threads = self.persample_chooser()
        else:
            self.threads = kernels.usable_threads(threads, tuple(arch.layers))
            self.minibatch_threads = ThreadChooser(min(int(threads), most), fixed=True)
        self.compile_seconds = 0.0
        self._inference_ready = set()  # _inference_key()s of the data for which the forward pass of logits is compiled (or loaded)
        self._stats = np.zeros(3, np.float64)
        self._targets_for = (None, None)
        self._minibatch = None  # (largest batch, its kind, scratch arrays) of the mini-batch kernel
        self._minibatch_stats = np.zeros(4, np.float64)
        self._parallel_compiling = None  # the second process compiling the parallel mini-batch kernel
        self._persample_compiling = None  # the second process compiling the plain per-sample kernel
        self._two_threads_compiling = None  # the second process compiling the two-thread worker (``_two_threads_ready``)
        self._two_threads = set()  # input dtypes for which this process holds the two-thread worker
        self._background = None  # the second process of this backend's latest cold start (any plan)
        self._serial = {}  # per input dtype: one thread and no parallel kernel anywhere: the serial twin (decided once)
        self._warmed = set()  # warmup's keys (_warm_key) whose kernels this process holds: nothing left to load
        # the most threads training took at once so far (per-sample: its loop's; mini-batch:
        # the kernel's, which "auto" chooses chunk by chunk); reset by ``start_compiling`` (a new fit)
        self.threads_used = 1
        self._minibatch_threads_counted = False

    SCRATCH_KEPT_BYTES = 16 << 20  # the most mini-batch scratch kept between training calls

    def call_ended(self):
        """At the end of a training call: let go of the mini-batch kernel's scratch if it is large
        (it grows with the batch: 75 MB after a full-batch fit on MNIST, held by the model for as
        long as it lived); a small one is kept for the next call (``partial_fit`` batch by batch)."""
        if self._minibatch is not None:
            held = sum(array.nbytes for array in self._minibatch[2])
            if held > self.SCRATCH_KEPT_BYTES:
                self._minibatch = None

    def __getstate__(self):
        # a model is pickled (or deep-copied) whole; the second compiling process is this
        # process's, not the copy's (and a process handle does not pickle)
        state = self.__dict__.copy()
        state["_parallel_compiling"] = None
        state["_persample_compiling"] = None
        state["_two_threads_compiling"] = None
        state["_two_threads"] = set()
        state["_background"] = None
        state["_serial"] = {}  # decided again where it is loaded (another cache)
        state["_warmed"] = set()  # (another process: its kernels to load)
        state["_inference_ready"] = set()
        # scratch and converted targets, made again by the next call: the mini-batch kernel's
        # scratch grows with the batch (a full-batch fit's on 6,000 MNIST rows made a pickle of
        # 9.1 MB around 0.4 MB of weights)
        state["_minibatch"] = None
        state["_targets_for"] = (None, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if not isinstance(self.__dict__.get("_serial"), dict):  # pickled by an earlier version
            self._serial = {}
        self.__dict__.setdefault("_persample_compiling", None)  # pickled by an earlier version
        self.__dict__.setdefault("persample_threads", None)
        self.__dict__.setdefault("_two_threads_compiling", None)
        self.__dict__.setdefault("_two_threads", set())
        self.__dict__.setdefault("_background", None)
        self.__dict__.setdefault("_warmed", set())
        if not isinstance(self.__dict__.get("_inference_ready"), set):  # a bool, pickled by an earlier version
            self._inference_ready = set()
        self.__dict__.setdefault("threads_used", self.__dict__.get("per_sample_threads_used", 1))
        self.__dict__.setdefault("_minibatch_threads_counted", False)

    def prepare(self, X, *, batches=True, compiled=None):
        """``X`` as the kernels read it (``Prepared``). ``compiled``: convert with the compiled
        kernels (True) or NumPy (False); by default NumPy only while this backend's second
        process will compile them (``_sparse_rows``). ``batches``: whether mini-batch training
        will read it (the part pointers, 4 x 8 bytes a row: twice a million 4-feature float32
        rows' own size, audit 36); per-sample training and predictions read the plain ones."""
        # a new call's data: its targets too may be new, even in the same array (a buffer refilled
        # between partial_fit calls), so the converted targets are made again
        self._targets_for = (None, None)
        threads = self._row_threads()
        # the rows' pointers split at the mini-batch kernel's parts, counted as the rows are
        # converted (a search of each row per part and batch cost 1.05-1.11x: BENCHMARKS.md,
        # session 20); every 4th is the plain CSR pointer
        scale = PIXEL_SCALE if X.dtype == np.uint8 else 1.0
        if not batches:
            indptr, indices, values = self._sparse_rows(X, threads, 1, compiled)
            return Prepared(X, indptr, indices, values, scale)
        part_ptr, indices, values = self._sparse_rows(X, threads, kernels.PARTS, compiled)
        indptr = np.ascontiguousarray(part_ptr[::kernels.PARTS])
        return Prepared(X, indptr, indices, values, scale, part_ptr)

    def _row_threads(self):
        """The threads of work shared out by rows outside the kernels (the conversion to CSR rows,
        predictions): as many as mini-batch training may use (one with threads=1), under "auto"
        within a caller's numba.set_num_threads(n), as training (audit 51; predictions took two
        beside it: audit 64), and the cores this process may run on."""
        chooser = self.minibatch_threads
        most = chooser.most if chooser.fixed else min(chooser.most, numba.get_num_threads())
        return min(most, available_cores())

    def _sparse_rows(self, X, threads=1, parts=1, compiled=None):
        """``kernels.sparse_rows``: by NumPy while this backend's second process, still running,
        will compile its kernels and neither this process nor the cache has them for X's dtype (a
        cold start: ``_prewarm`` compiles them last, about 0.4 s of compile this process then
        does not wait for before its own share; BENCHMARKS.md, session 30), else by the compiled
        kernels (compiled here if need be, as on one core, with the second process switched off,
        or in ``compiling_ahead``: ``fastmlp warmup`` leaves them in the cache). The two give the
        same arrays."""
        if compiled is None:
            # a second process still running (one that ended stored them, or never will; there
            # is none under NUMBA_DISABLE_JIT)
            background = self._background is not None and self._background.poll() is None
            compiled = _compiling_ahead or not background or _csr_ready(X.dtype)
        return kernels.sparse_rows(X, threads, parts=parts, compiled=compiled)

    def _labels_and_targets(self, targets):
        """The kernels' (labels int64 [N], targets dtype [N, K]) pair; the unused one is empty."""
        cached, converted = self._targets_for
        if cached is targets:
            return converted
        K = self.arch.layers[-1]
        empty_labels = np.empty(0, np.int64)
        # Numba types a read-only array (a memory-mapped y) apart from a writeable one: passed on
        # as it is, it would compile every kernel it reaches again and cache a second copy
        given = targets if targets.flags.writeable else targets.copy()
        if not self.arch.is_classifier:
            converted = (empty_labels, given)
        elif self.arch.loss_code == SIGMOID_BCE:
            converted = (empty_labels, np.ascontiguousarray(given.astype(self.arch.dtype).reshape(len(given), -1)))
        else:
            converted = (given, np.empty((0, K), self.arch.dtype))
        self._targets_for = (targets, converted)
        return converted

    def start_compiling(self, input_dtype, batch_size, optimizer=None, sample_weight=None):
        """Before training (and before ``prepare``): on a cold cache, have a second process compile
        part of what training will need (``_prewarm``: per-sample and mini-batch training)."""
        plain = _plain_kernel(_PLAIN if optimizer is None else optimizer, sample_weight is not None)
        self._background = None
        self.threads_used, self._minibatch_threads_counted = 1, False  # a new fit counts its own
        if batch_size == 1 and plain and self.threads == 1 and not _compiling_ahead:
            # it compiles half of the helpers, then the kernel; this process the other half,
            # then trains on the interpreted kernel meanwhile (not for `fastmlp warmup`, which
            # compiles the kernel here: that process compiled it a second time, beside the
            # mini-batch kernel's process warmup starts first)
            process = self._background = start_prewarm("per-sample", self.arch.dtype, input_dtype)
            if process is not None:
                self._persample_compiling = process
        elif batch_size > 1:
            # it compiles half of the helpers, then the parallel kernel; this process the other
            # half, then trains on the interpreted kernel meanwhile
            process = self._background = start_prewarm("mini-batch", self.arch.dtype, input_dtype)
            if process is not None:
                self._parallel_compiling = process
        elif not plain:
            # the general kernel: it compiles the helpers this process's compile of the kernel
            # reaches last, and this process finds them in the cache
            self._background = start_prewarm("general", self.arch.dtype, input_dtype)

    def compiling_for_later(self):
        """The second process of this backend's cold start, if it is still compiling the kernel
        that training here ran without (the plain per-sample one, or the parallel mini-batch
        one), else None. Told to finish it when this process exits normally (``_prewarm``), it
        goes on in the background; a run started meanwhile trains on the interpreted kernel until it
        is stored (it takes that process for its own: ``_prewarm.compiling_elsewhere``)."""
        for process in (self._persample_compiling, self._parallel_compiling):
            if process is not None and process.poll() is None:
                return process
        return None

    def warmup(self, params, data, targets, batch_size, optimizer=None, state=None, sample_weight=None,
               inference=True):
        """Compile (or load from the on-disk cache) what training will call, on two samples, and with
        ``inference`` the forward pass of ``logits`` too (a fit that evaluates nothing while it trains
        leaves that to its first prediction)."""
        key = self._warm_key(data, batch_size, optimizer, sample_weight)
        if key in self._warmed:
            # partial_fit's calls, batch after batch: their kernels are this process's already
            # (two samples trained on a copy: 0.14-0.16 ms, a sixth of a call of 32 samples)
            if batch_size == 1:  # (a first call too small for the two-thread worker, a later one not)
                self._warm_two_threads(params, data, targets, optimizer, sample_weight)
            if inference and (np.dtype(data.X.dtype).name, False) not in self._inference_ready:
                self._warm_inference(params, self.for_inference(data.X[:1]))
            return
        tic = time.perf_counter()
        scratch = aligned_copy(params)  # (an unaligned one would be copied again to train: train_chunk)
        order = np.arange(min(2, len(data)), dtype=np.int64)
        counted = self.threads_used, self._minibatch_threads_counted  # two samples: not training's threads
        self.train_chunk(scratch, data, targets, order, 1e-3, batch_size, optimizer,
                         None if state is None else state.copy(), sample_weight)
        self.threads_used, self._minibatch_threads_counted = counted
        self.compile_seconds += time.perf_counter() - tic
        if batch_size == 1:  # after the one-thread kernel (a caller without start_compiling, on a
            # cold cache, has just compiled it here: the worker's second process must not start first)
            self._warm_two_threads(params, data, targets, optimizer, sample_weight)
        if inference and (np.dtype(data.X.dtype).name, False) not in self._inference_ready:
            self._warm_inference(scratch, self.for_inference(data.X[:1]))  # (predictions' and validation's form)
        if (self._background is None or self._background.poll() is not None) and self.compiling_for_later() is None:
            # (not on a cold start's interpreted kernels, this call's or, still compiling, an
            # earlier call's of other inputs: the next call loads the compiled ones; audit 63)
            self._warmed.add(key)

    def _warm_two_threads(self, params, data, targets, optimizer, sample_weight):
        """Per sample under threads="auto", where the chooser may call the two-thread worker (plain SGD,
        ``PERSAMPLE_FEWEST`` samples or more, two Numba threads): hold it from here, with the
        one-thread kernel (``_two_threads_ready``: loaded from the cache, or its second process
        started on a cold one), at every warm-up of such a call (a partial_fit whose first call
        had too few samples gets it at its first large one). Left to the first chunk, its load
        (30-40 ms) was paid inside the fit's training time: a 10,000-sample round of
        ``bench/test_busy.py``'s quiet case at 0.32-0.44x of ``threads=2``'s, 2-3% of the whole run
        (AMD EPYC Zen 4, 2026-12-07). Not while the one-thread kernel compiles in a second process
        (a cold start: the first chunks wait for it first)."""
        if (self.persample_threads is None or len(data) < self.PERSAMPLE_FEWEST or numba.get_num_threads() < 2
                or np.dtype(data.values.dtype).name in self._two_threads
                or not _plain_kernel(_PLAIN if optimizer is None else optimizer, sample_weight is not None)):
            return
        compiling = self._persample_compiling
        if compiling is not None and compiling.poll() is None:
            return
        labels, target_rows = self._labels_and_targets(targets)
        self._two_threads_ready(params, data, labels, target_rows)

    def _warm_key(self, data, batch_size, optimizer, sample_weight):
        """What decides which compiled kernels training runs: the inputs' dtype (the parameters'
        is the network's), per-sample or mini-batch, per-sample's plain or general kernel, the
        Numba threads a mini-batch call may take (the serial twin's choice) and an inherited
        OpenMP pool (``_after_fork``: the serial kernel)."""
        plain = _plain_kernel(_PLAIN if optimizer is None else optimizer, sample_weight is not None)
        return (np.dtype(data.values.dtype).name, batch_size == 1, plain, numba.get_num_threads(), _openmp_inherited)

    def for_inference(self, X):
        """``X`` as ``logits`` reads it for predictions: the rows as they are, a read-only view in
        native byte order (each row's nonzeros are found as its forward pass reads it:
        ``kernels.dense_rows_forward``), without converting them to CSR rows first."""
        X = kernels.kernel_rows(X)  # (one compiled kernel for writeable and read-only inputs)
        return Prepared(X, None, None, None, PIXEL_SCALE if X.dtype == np.uint8 else 1.0)

    def _inference_key(self, data):
        """``_inference_ready``'s key of ``data``: its inputs' dtype, and whether they are CSR rows."""
        return np.dtype(data.X.dtype).name, data.indptr is not None

    def _warm_inference(self, params, data):
        """Compile (or load) the forward pass of ``logits`` for ``data``'s input dtype and form on
        one row, timed as compile time (another input dtype's compiled in a prediction counted as
        prediction: audit 63)."""
        tic = time.perf_counter()
        self._inference_ready.add(self._inference_key(data))
        one = data.X[:1]
        self.logits(params, Prepared(one, None, None, None, data.input_scale) if data.indptr is None
                    else Prepared(one, *self._sparse_rows(one), data.input_scale))
        self.compile_seconds += time.perf_counter() - tic

    def train_chunk(self, params, data, targets, order, lr, batch_size, optimizer=None, state=None,
                    sample_weight=None):
        labels, target_rows = self._labels_and_targets(targets)
        if optimizer is None:
            optimizer = _PLAIN
            state = optim.State(np.empty((0, params.size), params.dtype), np.zeros(3, np.int64))
        weights = np.empty(0, params.dtype) if sample_weight is None else sample_weight
        with network.aligned_for_training(params, len(order)) as params:
            if batch_size == 1:
                return self._train_per_sample(params, data, labels, target_rows, weights, order, lr, optimizer, state)
            return self._train_minibatch(params, data, labels, target_rows, weights, order, lr, batch_size, optimizer,
                                         state)

    def train_per_sample_on(self, kernel, params, data, targets, optimizer, state, sample_weight=None):
        """Per-sample training over every row of ``data`` on ``kernel``, a form of the general
        per-sample kernel (``fastmlp._prewarm``'s plan "general"), with ``optimizer``."""
        labels, target_rows = self._labels_and_targets(targets)
        weights = np.empty(0, params.dtype) if sample_weight is None else sample_weight
        return self._train_per_sample(params, data, labels, target_rows, weights, np.arange(len(data), dtype=np.int64),
                                      0.1, optimizer, state, kernel)

    def _train_per_sample(self, params, data, labels, target_rows, weights, order, lr, optimizer, state,
                          kernel=None):
        if kernel is not None or not _plain_kernel(optimizer, weights.size > 0):
            # the general kernel: any optimizer, and sample weights (the plain one has neither); one thread
            (kernels.persample_chunk if kernel is None else kernel)(
                params, self._stats, self.layer_sizes, self.w_offsets, self.b_offsets,
                self.arch.activation_code, self.arch.loss_code, optimizer.hyper(lr), state.slots, state.counters,
                data.indptr, data.indices, data.values, data.input_scale,
                labels, target_rows, weights, order, 0, len(order),
            )
            loss_sum, n_correct, n_done = self._stats
            n_done = int(n_done)
            return float(loss_sum), int(n_correct), n_done, (n_done if n_done < len(order) else -1)
        args = (
            params, self._stats, self.layer_sizes, self.w_offsets, self.b_offsets,
            self.arch.activation_code, self.arch.loss_code, float(lr),
            data.indptr, data.indices, data.values, data.input_scale,
            labels, target_rows, order, 0, len(order),
        )
        compiling = self._persample_compiling
        # the most threads the fit's chunks took (reset by start_compiling: a new fit); the
        # chooser's calls count theirs (audit 76: set per chunk, a last chunk on one thread said 1)
        self.threads_used = max(self.threads_used, self.threads)
        self._stats[0] = 0.0  # (the plain kernels add the chunk's losses on to it)
        if self.threads > 1:
            kernels.sgd_persample_chunk_threaded(*args, threads=self.threads)
        elif not _compiling_ahead and compiling is not None and compiling.poll() is None:
            # a cold start: the interpreted kernel, bitwise the same, while the second process
            # compiles the kernel
            kernels.sgd_persample_chunk_interpreted(*args)
        elif (self.persample_threads is not None and len(order) >= self.PERSAMPLE_FEWEST
              and numba.get_num_threads() >= 2 and self._two_threads_ready(params, data, labels, target_rows)):
            self._persample_compiling = None
            self._per_sample_on_chosen_threads(args)
        else:
            self._persample_compiling = None  # stored in the cache by now (or it failed: compiled here)
            kernels.sgd_persample_chunk(*args)
        loss_sum, n_correct, n_done = self._stats
        n_done = int(n_done)
        state.counters[optim.STEPS] += n_done
        state.counters[optim.SAMPLES] += n_done
        return float(loss_sum), int(n_correct), n_done, (n_done if n_done < len(order) else -1)

    PERSAMPLE_PROBE_UNIT = 256  # samples: the "batch" of per-sample calls in ThreadChooser's probes
    # the fewest samples a call trains through the chooser: fewer go on one thread (the
    # warm-up's two, partial_fit's small calls), where a call on two threads would cost more
    # of its own (0.22 ms) than a second thread saves (0.5-0.8 us a sample at 784-128-10)
    PERSAMPLE_FEWEST = 512
    # the fewest hidden units on which "auto" tries two threads per sample (``threads=2`` splits
    # from 32): below, two threads ran at 0.70-1.20x one thread (README, "Per-sample threads=2";
    # 1.34-1.37x at 112 units, 1.48x at 128), and a chooser whose probes find the counts within
    # 10% of each other probes again every chunk (``retry_sooner``), each probe the rest of a
    # chunk on two threads: a few percent lost where nothing can be won
    PERSAMPLE_AUTO_UNITS = 112

    @staticmethod
    def persample_chooser():
        """threads="auto"'s chooser of one or two threads per sample (``_per_sample_on_chosen_threads``)."""
        return ThreadChooser(2, probe_in_two_calls=True, retry_sooner=True)

    def _per_sample_on_chosen_threads(self, args):
        """Plain per-sample SGD over the chunk ``args`` describe (into ``_stats``) on one or two threads, as
        ``persample_threads`` chooses from their measured speed (as for mini-batch training:
        ``fastmlp._adaptive``). The network's logits are summed in halves on one thread too
        (``kernels.logits_in_halves``), so the result is the same bits on either count.

        A call on two threads has a cost of its own: it starts a thread and copies the first
        layer's columns into each thread's block and back (0.3-0.5 ms at 784-128-10, AMD EPYC
        Zen 4, 2026-12-07, about what 200 samples take; 0.22 ms since the blocks are reused from
        call to call). In the mini-batch chooser's probe (calls
        of two batches, then each twice the last) with batches of 256 samples, two threads
        measured slower than one, which they beat by 1.25x in whole chunks; so a probe of two
        threads here is two calls (``probe_in_two_calls``): 512 samples, after which a busy
        machine aborts it (3.6 against 1.3 ms beside a busy-loop process), then the rest of the
        chunk. A probe that two threads lose by less than 10% (a noisy minute on a machine with
        a core to spare) comes again as soon, and one thread running slower than two threads
        last did makes one due (``retry_sooner``): two threads lost by 2-5% twice, the chooser
        waited 16 chunks to look again, and in 15 of them two threads would have run 1.5x faster
        (``bench/test_busy.py``'s quiet case at 0.87x of ``threads=2``)."""
        head, (order, _, n_samples) = args[:-3], args[-3:]
        stats = self._stats
        counts = [0, 0]  # correct, trained (the loss sum carries on in stats[0] from call to call)

        def call(count, start, n):
            kernels.sgd_persample_chunk_threaded(*head, order, start, start + n, threads=count)
            self.threads_used = max(self.threads_used, count)
            counts[0] += int(stats[1])
            counts[1] += int(stats[2])
            return int(stats[2])

        self.persample_threads.run(n_samples, self.PERSAMPLE_PROBE_UNIT, call)
        stats[1:] = counts  # (as one call's: the loss sum, the number correct and the samples trained)

    def _two_threads_ready(self, params, data, labels, target_rows):
        """Whether this process holds the two-thread worker for ``data``'s inputs, so that
        ``threads="auto"`` may choose it (it trains to the one-thread kernel's bits): compiled
        here, or loaded from the cache now (a two-sample run on a copy of ``params``, about 30 ms,
        timed as compile time and not as a probe's). On a cold cache it is not compiled in the
        middle of a fit: a second process compiles it (``_prewarm``'s plan "two-threads"), and
        training stays on one thread until that has stored it; where none can start
        (``FASTMLP_BACKGROUND_COMPILE=0``, a frozen application), it is compiled here, once."""
        values_dtype = data.values.dtype
        key = np.dtype(values_dtype).name
        if key in self._two_threads:
            return True
        from .kernels import sgd

        worker = sgd._split_hidden_worker
        dtypes = kernel_dtypes("two-threads", self.arch.dtype, values_dtype)
        if not compiled_here(worker, argument_dtypes=dtypes):
            compiling = self._two_threads_compiling
            if compiling is not None and compiling.poll() is None:
                return False  # a second process is compiling it
            self._two_threads_compiling = None
            try:
                cold = cache_is_cold(worker, argument_dtypes=dtypes)
            except (OSError, AttributeError):  # a Numba without these cache attributes
                cold = False
            if cold and compiling is None and not _compiling_ahead:
                self._two_threads_compiling = start_prewarm("two-threads", self.arch.dtype, values_dtype)
                if self._two_threads_compiling is not None:
                    return False
        tic = time.perf_counter()
        scratch = aligned_copy(params)
        order = np.arange(2, dtype=np.int64)
        kernels.sgd_persample_chunk_threaded(
            scratch, np.zeros(3), self.layer_sizes, self.w_offsets, self.b_offsets, self.arch.activation_code,
            self.arch.loss_code, 0.0, data.indptr, data.indices, data.values, data.input_scale, labels, target_rows,
            order, 0, 2, threads=2)
        self.compile_seconds += time.perf_counter() - tic
        self._two_threads.add(key)
        return True

    def train_chunk_on(self, kernel, params, data, targets, batch_size):
        """Plain mini-batch SGD over every row of ``data`` on ``kernel``, a form of the mini-batch
        kernel (``fastmlp._prewarm``'s compile share), on one thread."""
        labels, target_rows = self._labels_and_targets(targets)
        state = optim.State(np.empty((0, params.size), params.dtype), np.zeros(3, np.int64))
        return self._train_minibatch(params, data, labels, target_rows, np.empty(0, params.dtype),
                                     np.arange(len(data), dtype=np.int64), 1e-3, batch_size, _PLAIN, state, kernel)

    def _train_minibatch(self, params, data, labels, target_rows, weights, order, lr, batch_size, optimizer, state,
                         kernel=None):
        largest = min(batch_size, len(order))
        kind = (optimizer.n_slots, optimizer.dropout > 0)
        if self._minibatch is None or self._minibatch[0] < largest or self._minibatch[1] != kind:
            # scratch for the largest batch so far, allocated once per fit, reused by every chunk
            self._minibatch = (largest, kind, kernels.minibatch_scratch(params, self.layer_sizes, largest, *kind))
        stats = self._minibatch_stats
        hyper = optimizer.hyper(lr)
        totals = {"correct": 0, "nonfinite_at": -1}
        stats[0] = 0.0  # the kernel adds on to it: a split chunk sums its losses as one call does
        part_ptr = data.part_ptr

        def call(count, start, n_samples, kernel=kernels.minibatch_sgd_chunk):
            # Split in whole batches and on any thread count, the chunk trains exactly as in
            # one call on all threads (the kernel's results depend on neither).
            numba.set_num_threads(count)
            used = self.threads_used if self._minibatch_threads_counted else 0
            self.threads_used, self._minibatch_threads_counted = max(used, count), True
            with contextlib.ExitStack() as held:
                with self.minibatch_threads.waiting():  # (another fit's call under workqueue)
                    held.enter_context(_one_caller_at_a_time(kernel))
                kernel(
                    params, stats, *self._minibatch[2], self.layer_sizes, self.w_offsets, self.b_offsets,
                    self.arch.activation_code, self.arch.loss_code, hyper, state.slots, state.counters,
                    part_ptr, data.indices, data.values, data.input_scale,
                    labels, target_rows, weights, order, start, start + n_samples, batch_size,
                )
            totals["correct"] += int(stats[1])
            if stats[3] >= 0:
                totals["nonfinite_at"] = start + int(stats[3])
            return int(stats[2])

        outer = numba.get_num_threads()
        try:
            compiling = self._parallel_compiling is not None and self._parallel_compiling.poll() is None
            if compiling and _compiling_ahead and kernel is None and not _openmp_inherited:
                # `fastmlp warmup` on a cold cache: the second process compiles the parallel
                # kernel, so this one compiles its share of the helpers and then loads the kernel
                # that process stores, instead of compiling the same kernel beside it (a core's
                # 14-16 s on an Intel Xeon; session 59). If it failed, the call below compiles.
                share(self._parallel_compiling)
                try:
                    self._parallel_compiling.wait(timeout=AHEAD_WAIT_SECONDS)
                except subprocess.TimeoutExpired:
                    pass  # stopped or stuck (another program's, say): compiled here, as alone (audit 61)
                compiling = False
            if kernel is not None:
                n_done = call(1, 0, len(order), kernel)
            elif _openmp_inherited:  # the parallel kernel would end this process (_after_fork)
                n_done = call(1, 0, len(order), kernels.minibatch_sgd_chunk_serial)
            elif not _compiling_ahead and compiling:
                # A cold start: the interpreted kernel, bitwise the same, on one thread, while
                # the second process compiles the parallel kernel (first, this process's share
                # of the helpers: _prewarm).
                share(self._parallel_compiling)
                n_done = call(1, 0, len(order), kernels.minibatch_sgd_chunk_interpreted)
            elif not _compiling_ahead and self._serial_only(data.values.dtype, outer):
                # the serial twin, bitwise the same: one thread, no parallel kernel
                n_done = call(1, 0, len(order), kernels.minibatch_sgd_chunk_serial)
            elif not self.minibatch_threads.fixed and outer < self.minibatch_threads.most:
                # threads="auto" under a caller's numba.set_num_threads(n): within its limit, as
                # Numba's own parallel code (an application that keeps Numba to one thread, to
                # spare its own pool, trained on two; audit 51)
                self._parallel_compiling = None
                n_done = call(outer, 0, len(order))
            else:
                self._parallel_compiling = None  # stored in the cache by now (or it failed: compiled here)
                n_done = self.minibatch_threads.run(len(order), batch_size, call)
        finally:
            numba.set_num_threads(outer)
        return float(stats[0]), totals["correct"], n_done, totals["nonfinite_at"]

    def _serial_only(self, values_dtype, outer):
        """Whether mini-batch training on inputs of ``values_dtype`` runs on the serial twin: at
        most one thread (``threads=1``, ``NUMBA_NUM_THREADS=1``: sweep workers; ``"auto"`` while
        the caller keeps Numba to ``outer`` = 1 thread with numba.set_num_threads), and the
        parallel kernel neither compiled in this process nor in the cache for these types when
        first asked (decided once: the twin stays, for as long as one thread is all there is).
        The twin takes the same steps and compiles in about half the time; a cache that holds
        the parallel kernel (a ``fastmlp warmup`` with two threads, say) is used as it is."""
        chooser = self.minibatch_threads
        if (chooser.most if chooser.fixed else min(chooser.most, outer)) > 1:
            return False
        key = np.dtype(values_dtype).name
        if key not in self._serial:
            kernel = kernels.minibatch_sgd_chunk
            try:
                # (compiled here for any types: a process that compiled the parallel kernel once
                # compiles it for other types too, rather than add the twin: asked for these types,
                # the test suite compiled the twin a third time, 6-16 s more; session 60)
                self._serial[key] = (not numba.config.DISABLE_JIT and not kernel.signatures
                                     and cache_is_cold(kernel, self.arch.dtype, values_dtype))
            except (OSError, AttributeError):  # a Numba without these cache attributes
                self._serial[key] = False
        return self._serial[key]

    def logits(self, params, data):
        """z[N, K] of the output layer for ``data`` (``for_inference``'s rows, or ``prepare``'s CSR
        rows: the same bits), block by block; a prediction of ``INFERENCE_SPLIT_ROWS`` rows or
        more on ``_row_threads()``, each a share of the rows: every row's bits are the same on
        any number of threads."""
        if self._inference_key(data) not in self._inference_ready:
            self._warm_inference(params, data)  # so that compile_seconds counts the first compile
        arch = self.arch
        views = arch.layout().views(params)
        z = np.empty((len(data), arch.layers[-1]), arch.dtype)
        n = len(data)
        shares = max(1, min(self._row_threads(), n // INFERENCE_SPLIT_ROWS))
        # (NumPy's overflow warnings of the kernels run as Python, NUMBA_DISABLE_JIT=1: an
        # overflow is said once, by the model, model._say_non_finite)
        with np.errstate(over="ignore", invalid="ignore"):
            kernels.in_blocks(shares, lambda r0, r1: self._forward_rows(z, r0, r1, data, views),
                              [n * k // shares for k in range(shares + 1)])
        return z

    def _forward_rows(self, z, first, last, data, views):
        """z[first:last] of ``logits``, INFERENCE_BLOCK rows at a time."""
        arch = self.arch
        n_layers = arch.n_layers
        no_bias = np.empty(0, arch.dtype)
        for start in range(first, last, INFERENCE_BLOCK):
            stop = min(start + INFERENCE_BLOCK, last)
            W, b = views[0]
            out = np.empty((stop - start, W.shape[1]), arch.dtype)
            code = arch.activation_code if n_layers > 1 else 0
            if data.indptr is None:
                kernels.dense_rows_forward(out, data.X[start:stop], W, no_bias if b is None else b, data.input_scale,
                                           code)
            else:
                kernels.sparse_linear_forward(
                    out, np.arange(start, stop, dtype=np.int64), data.indptr, data.indices, data.values,
                    data.input_scale, W, no_bias if b is None else b, code,
                )
            for l in range(1, n_layers):
                W, b = views[l]
                nxt = np.empty((stop - start, W.shape[1]), arch.dtype)
                code = arch.activation_code if l < n_layers - 1 else 0
                kernels.linear_forward(nxt, out, W, no_bias if b is None else b, code)
                out = nxt
            z[start:stop] = out
