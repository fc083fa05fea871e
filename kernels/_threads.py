"""A small runtime for compiled workers that run on several Python threads at once.

Numba has no atomics and no barrier on the CPU; the threaded per-sample trainer (``sgd.py``)
needs only these:

- ``load_acquire`` / ``store_release``: the two atomic LLVM instructions a spin wait needs.
  Acquire/release also stop the compiler from moving the loads and stores of the data they
  guard across them.
- a mailbox (``mailbox``, ``post``, ``wait_posted``, ``posted``): per step, each thread posts a
  few numbers and waits until the others have posted theirs: one spin barrier per step.
- ``cache_aligned``, ``aligned_empty``: arrays on cache lines of their own.
- ``run_workers``: start the workers, join them, and release everyone when one fails.

Workers are ``nogil`` compiled functions; the waits spin, then yield the CPU, so an
oversubscribed machine slows the workers down but cannot deadlock them.
"""

import os
import threading

import numpy as np
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from ._config import KERNEL_OPTIONS

LINE = 128  # bytes: two cache lines, as Intel's adjacent-line prefetcher pulls pairs
SPINS_BEFORE_YIELD = 4096  # about 10 us: then the thread we wait for is probably descheduled


@intrinsic
def load_acquire(typingctx, array, index):
    """array[index] read with acquire ordering (int64 1-D array)."""
    if not (isinstance(array, types.Array) and array.dtype == types.int64 and array.ndim == 1):
        return None
    if not isinstance(index, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        array_type, index_type = signature.args
        ary = context.make_array(array_type)(context, builder, args[0])
        idx = context.cast(builder, args[1], index_type, types.intp)
        pointer = cgutils.get_item_pointer(context, builder, array_type, ary, [idx])
        return builder.load_atomic(pointer, ordering="acquire", align=8)

    return types.int64(array, index), codegen


@intrinsic
def store_release(typingctx, array, index, value):
    """array[index] = value with release ordering (int64 1-D array)."""
    if not (isinstance(array, types.Array) and array.dtype == types.int64 and array.ndim == 1):
        return None
    if not (isinstance(index, types.Integer) and isinstance(value, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        array_type, index_type, value_type = signature.args
        ary = context.make_array(array_type)(context, builder, args[0])
        idx = context.cast(builder, args[1], index_type, types.intp)
        pointer = cgutils.get_item_pointer(context, builder, array_type, ary, [idx])
        value = context.cast(builder, args[2], value_type, types.int64)
        builder.store_atomic(value, pointer, ordering="release", align=8)
        return context.get_dummy_value()

    return types.none(array, index, value), codegen


if hasattr(os, "sched_yield"):
    _sched_yield = types.ExternalFunction("sched_yield", types.int32())

    @njit(**KERNEL_OPTIONS)
    def yield_cpu():
        _sched_yield()

else:

    @njit(**KERNEL_OPTIONS)
    def yield_cpu():
        pass


def available_cores():
    """CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def aligned_empty(shape, dtype):
    """An uninitialised array occupying whole LINE-byte lines of its own (its first element on
    a line boundary)."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    buffer = np.empty(nbytes + 2 * LINE, np.uint8)
    first = -buffer.ctypes.data % LINE
    return buffer[first : first + nbytes].view(dtype).reshape(shape)


def cache_aligned(array):
    """A copy of ``array`` occupying whole LINE-byte lines of its own: the per-thread arrays
    are allocated together, and a line shared by two threads would bounce between cores."""
    array = np.asarray(array)
    out = aligned_empty(array.shape, array.dtype)
    out[...] = array
    return out


def abort_flag():
    """abort[0] != 0 tells waiting workers to return (a cache line of its own)."""
    return cache_aligned(np.zeros(LINE // 8, np.int64))


# ---------------------------------------------------------------------------------------------
# Mailbox. Slot (step % 2, thread) carries what ``thread`` posted at ``step`` (steps count from
# 0): two slots per thread let a thread post step s+1 while another still reads step s, so one
# wait per step suffices. A slot is whole LINEs: an int64 count (the number of steps posted so
# far), then the values, seen through two views of the same memory (``counts`` int64,
# ``slots`` float). Count and values share a cache line, so one line transfer carries both.


def mailbox(threads, n_values, dtype):
    """``(counts, slots)`` of a zeroed mailbox for ``threads`` threads posting ``n_values``
    values of ``dtype`` per step."""
    itemsize = np.dtype(dtype).itemsize
    slot_bytes = -(-(8 + n_values * itemsize) // LINE) * LINE
    memory = cache_aligned(np.zeros(2 * threads * slot_bytes, np.uint8))
    return memory.view(np.int64), memory.view(dtype).reshape(2, threads, slot_bytes // itemsize)


@njit(**KERNEL_OPTIONS)
def _count_index(slots, thread, step):
    """Where in ``counts`` the count of slot (step % 2, thread) is."""
    words_per_slot = slots.shape[2] * slots.itemsize // 8
    return ((step & 1) * slots.shape[1] + thread) * words_per_slot


@njit(**KERNEL_OPTIONS)
def posted(slots, thread, step):
    """The values ``thread`` posted at ``step`` (a view: read them after ``wait_posted``)."""
    return slots[step & 1, thread, 8 // slots.itemsize :]


@njit(**KERNEL_OPTIONS)
def post(counts, slots, thread, step, values):
    """Post values[n] as this thread's values of ``step``."""
    slot = posted(slots, thread, step)
    for k in range(values.shape[0]):
        slot[k] = values[k]
    store_release(counts, _count_index(slots, thread, step), step + 1)


@njit(**KERNEL_OPTIONS)
def wait_posted(counts, slots, abort, thread, step):
    """Wait until ``thread`` has posted ``step``; False if told to abort first."""
    count_index = _count_index(slots, thread, step)
    spins = 0
    while load_acquire(counts, count_index) < step + 1:
        spins += 1
        if spins == SPINS_BEFORE_YIELD:
            if load_acquire(abort, 0) != 0:
                return False
            yield_cpu()
            spins = 0
    return True


# ---------------------------------------------------------------------------------------------
# Starting and joining


class WorkerFailed(RuntimeError):
    """A worker on another thread raised (its traceback was printed by ``threading``)."""


def run_workers(work, threads, abort):
    """Run work(0), ..., work(threads - 1) at once and return when all have returned.

    work(0) runs on the calling thread, the others on new threads. A worker that raises sets
    abort[0] so that the others stop waiting for it; the exception of work(0) propagates, that
    of another thread is printed by ``threading`` and raised here as ``WorkerFailed``.

    Returns False if the system refused to start a thread: the workers already started have
    then been released through ``abort`` and joined, their work is incomplete, and the caller
    should do it another way. Returns True otherwise.
    """

    def guarded(thread):
        try:
            work(thread)
        except BaseException:
            abort[0] = 1  # release the threads waiting for this one
            raise

    helpers = [threading.Thread(target=guarded, args=(t,), daemon=True) for t in range(1, threads)]
    starting = []  # helpers whose start() was called: one may run though its start() was cut short
    try:
        try:
            for helper in helpers:
                starting.append(helper)
                helper.start()
        except RuntimeError:  # the system refused a thread
            abort[0] = 1
            return False
        guarded(0)
    except BaseException:
        # Ctrl-C (or the command line's SIGTERM) inside a start(), which waits for its thread to
        # run, or before work(0): the helpers would wait for thread 0 for ever, each spinning on
        # a core (audit 38)
        abort[0] = 1
        raise
    finally:
        for helper in starting:
            if helper.is_alive():
                helper.join()
    if abort[0]:
        raise WorkerFailed("a worker thread failed (traceback above)")
    return True
