"""The threading runtime of the per-sample trainer (kernels/_threads.py): mailbox, abort, start
failures, cache alignment."""

import threading

import numba
import numpy as np
import pytest

from fastmlp import kernels
from fastmlp.backends import make_backend
from fastmlp.kernels import _threads, sgd
from fastmlp.network import Architecture, init_params

pytestmark = pytest.mark.skipif(
    numba.config.DISABLE_JIT, reason="atomics and spin waits exist only in compiled code (NUMBA_DISABLE_JIT=1)"
)

N_VALUES = 3


@numba.njit(nogil=True)
def exchange(out, counts, slots, abort, thread, steps):
    """Each step: post (thread, step, 1), then out[step] = sum of what every thread posted."""
    mine = np.empty(N_VALUES)
    for step in range(steps):
        mine[0] = thread
        mine[1] = step
        mine[2] = 1.0
        _threads.post(counts, slots, thread, step, mine)
        total = np.zeros(N_VALUES)
        for t in range(slots.shape[1]):
            if not _threads.wait_posted(counts, slots, abort, t, step):
                return False
            share = _threads.posted(slots, t, step)
            for k in range(N_VALUES):
                total[k] += share[k]
        out[step] = total
    return True


def run_in_background(function, timeout=60):
    """function()'s result or exception, or a failure if it does not return in time (a hang)."""
    outcome = {}

    def target():
        try:
            outcome["value"] = function()
        except BaseException as error:  # noqa: BLE001 - handed back to the test
            outcome["error"] = error

    runner = threading.Thread(target=target, daemon=True)
    runner.start()
    runner.join(timeout)
    assert not runner.is_alive(), f"still running after {timeout} s: a thread waits forever"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@pytest.mark.parametrize("threads", [2, 3])
def test_every_thread_reads_every_posted_step(threads):
    steps = 20000  # slots are reused every other step: a missing wait shows as a wrong sum
    counts, slots = _threads.mailbox(threads, N_VALUES, np.float64)
    abort = _threads.abort_flag()
    out = np.zeros((threads, steps, N_VALUES))
    finished = []

    def work(thread):
        finished.append(exchange(out[thread], counts, slots, abort, thread, steps))

    assert run_in_background(lambda: _threads.run_workers(work, threads, abort)) is True
    assert finished == [True] * threads
    expected = np.stack([np.full(steps, sum(range(threads))), threads * np.arange(steps), np.full(steps, threads)], 1)
    for thread in range(threads):
        np.testing.assert_array_equal(out[thread], expected)


def test_a_failing_worker_releases_the_others_and_is_reported(monkeypatch):
    reported = []
    monkeypatch.setattr(threading, "excepthook", lambda hook_args: reported.append(hook_args.exc_value))
    counts, slots = _threads.mailbox(2, N_VALUES, np.float64)
    abort = _threads.abort_flag()
    out = np.zeros((2, 100, N_VALUES))
    returned = []

    def work(thread):
        if thread == 1:
            raise ValueError("worker 1 broke")
        returned.append(exchange(out[0], counts, slots, abort, 0, 100))  # waits for thread 1

    with pytest.raises(_threads.WorkerFailed, match="worker thread failed"):
        run_in_background(lambda: _threads.run_workers(work, 2, abort))
    assert returned == [False]  # thread 0 stopped waiting
    assert [str(error) for error in reported] == ["worker 1 broke"]  # the helper's traceback


def test_a_failing_calling_thread_raises_its_own_error():
    abort = _threads.abort_flag()
    counts, slots = _threads.mailbox(2, N_VALUES, np.float64)
    out = np.zeros((2, 100, N_VALUES))

    def work(thread):
        if thread == 0:
            raise KeyError("thread 0 broke")
        exchange(out[1], counts, slots, abort, 1, 100)

    with pytest.raises(KeyError, match="thread 0 broke"):
        run_in_background(lambda: _threads.run_workers(work, 2, abort))
    assert abort[0] == 1


def refuse_threads_after(monkeypatch, allowed):
    """Make threading.Thread.start raise, as when the system refuses a thread, after ``allowed`` starts."""
    start = threading.Thread.start
    started = []

    def limited_start(self):
        if len(started) >= allowed:
            raise RuntimeError("can't start new thread")
        started.append(self)
        start(self)

    monkeypatch.setattr(threading.Thread, "start", limited_start)
    return started


def test_a_refused_thread_releases_the_started_ones(monkeypatch):
    counts, slots = _threads.mailbox(3, N_VALUES, np.float64)
    abort = _threads.abort_flag()
    out = np.zeros((3, 100, N_VALUES))
    ran = []

    def work(thread):
        ran.append(thread)
        exchange(out[thread], counts, slots, abort, thread, 100)

    started = refuse_threads_after(monkeypatch, allowed=2)  # the runner, then helper 1
    assert run_in_background(lambda: _threads.run_workers(work, 3, abort)) is False
    monkeypatch.undo()
    assert ran == [1] and not started[1].is_alive()  # helper 1 was released and joined


def test_threaded_trainer_falls_back_to_one_thread_when_refused_a_thread(monkeypatch, synth, rng):
    if kernels.usable_threads(2, (784, 32, 10)) < 2:
        pytest.skip("needs 2 cores available to this process")
    X, labels = synth.digits(rng, 300)
    arch = Architecture((784, 32, 10))
    layout = arch.layout()
    data = (*kernels.sparse_rows(X), 1 / 255, labels, np.empty((0, 10), np.float32), np.arange(300), 0, 300)
    one_thread, refused = init_params(arch, seed=0), init_params(arch, seed=0)
    one_stats, refused_stats = np.zeros(3), np.zeros(3)
    common = (layout.sizes, layout.w_offsets, layout.b_offsets, arch.activation_code, arch.loss_code, 0.1)
    sgd.sgd_persample_chunk(one_thread, one_stats, *common, *data)
    refuse_threads_after(monkeypatch, allowed=0)
    sgd.sgd_persample_chunk_threaded(refused, refused_stats, *common, *data, threads=2)
    assert refused.tobytes() == one_thread.tobytes() and refused_stats.tolist() == one_stats.tolist()


def test_cache_aligned_copies_start_on_a_line_of_their_own():
    source = np.arange(37, dtype=np.float32).reshape(37, 1)[::2]  # not contiguous
    copies = [_threads.cache_aligned(source) for _ in range(20)]
    for copy in copies:
        assert copy.ctypes.data % _threads.LINE == 0
        np.testing.assert_array_equal(copy, source)
        assert copy.flags.c_contiguous and not np.shares_memory(copy, source)


@pytest.mark.parametrize("interrupted", ["start", "after start"])
def test_an_interrupt_while_starting_the_helpers_releases_them(monkeypatch, interrupted):
    """Ctrl-C inside Thread.start() (which waits for the new thread to run) or right after it,
    before the calling thread's own work: the helper already running must be released, not left
    waiting (and spinning) for ever (audit 38: 7 such threads after 150 interrupted fits)."""
    abort = _threads.abort_flag()
    start = threading.Thread.start
    helpers = []

    def interrupted_start(self):
        helpers.append(self)
        if interrupted == "start":
            self._started.wait = lambda *args: (_ for _ in ()).throw(KeyboardInterrupt)  # as an interrupt in wait()
        start(self)
        if interrupted == "after start":
            raise KeyboardInterrupt

    waited = threading.Event()

    def work(thread):
        assert thread == 1
        waited.set()
        while not abort[0]:  # as wait_posted does, for thread 0's posts
            pass

    monkeypatch.setattr(threading.Thread, "start", interrupted_start)
    with pytest.raises(KeyboardInterrupt):
        _threads.run_workers(work, 2, abort)
    monkeypatch.undo()
    assert abort[0] == 1
    assert waited.wait(30)  # the helper ran (its start() done, or not: then join() would refuse it)
    helpers[0].join(30)
    assert not helpers[0].is_alive()


def test_threaded_calls_in_several_python_threads_at_once_keep_their_own_blocks(rng):
    # sgd_persample_chunk_threaded reuses its per-thread blocks from one call to the next
    # (_thread_blocks: new ones cost half a call's own time), kept per calling Python thread: two
    # fits at once, of the same shapes, each on two threads, must not write into each other's
    if kernels.usable_threads(2, (30, 64, 4)) < 2:
        pytest.skip("one core: the threaded trainer runs on one thread")
    arch = Architecture([30, 64, 4], "tanh", "cross_entropy", dtype=np.float64)
    X = rng.integers(0, 256, size=(300, 30)).astype(np.uint8)
    X[rng.random(X.shape) < 0.6] = 0
    y = rng.integers(0, 4, 300).astype(np.int64)
    backend = make_backend("numba", arch, 2)
    data = backend.prepare(X)
    common = (backend.layer_sizes, backend.w_offsets, backend.b_offsets, arch.activation_code, arch.loss_code, 0.1)
    inputs = (data.indptr, data.indices, data.values, data.input_scale, y, np.empty((0, 4)))
    starts = [init_params(arch, "xavier", seed=seed) for seed in (0, 1)]

    def train(params, calls=60):
        for call in range(calls):  # 60 calls of 5 samples: the blocks reused 59 times
            order = np.arange(5 * call, 5 * call + 5, dtype=np.int64) % 300
            sgd.sgd_persample_chunk_threaded(params, np.zeros(3), *common, *inputs, order, 0, 5, threads=2)
        return params

    alone = [train(start.copy()) for start in starts]
    together = [start.copy() for start in starts]
    workers = [threading.Thread(target=train, args=(params,)) for params in together]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    for a, b in zip(alone, together):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(alone[0], alone[1])
