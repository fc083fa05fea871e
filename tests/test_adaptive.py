"""The mini-batch kernel's thread count, chosen by measured speed (fastmlp._adaptive).

The choice may change between any two batches; what is learned must not: the weights, the
optimizer state and the reported losses are bitwise those of a run on a fixed thread count.
"""

import numba
import numpy as np
import pytest

from fastmlp import MLP
from fastmlp._adaptive import MAX_PROBE_EVERY, PROBE_SAMPLES, ThreadChooser


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def run_chunk(chooser, n_samples, batch_size, seconds_per_sample, call_seconds=0.0):
    """Play one chunk through the chooser: a call of n samples takes n * seconds_per_sample[count]
    (plus call_seconds, a call's own cost, on any count)."""
    calls = []

    def call(count, start, n):
        assert start == sum(m for _, m in calls)  # the chunk in order, nothing skipped or repeated
        assert 0 < n and start + n <= n_samples  # and nothing outside it
        chooser.clock.now += call_seconds + n * seconds_per_sample[count]
        calls.append((count, n))
        return n

    assert chooser.run(n_samples, batch_size, call) == n_samples
    assert sum(n for _, n in calls) == n_samples
    assert all(n % batch_size == 0 for _, n in calls[:-1])  # split in whole batches only
    return calls


def chooser(most=2):
    return ThreadChooser(most, clock=FakeClock())


def test_a_busy_machine_from_the_start_costs_two_batches():
    c = chooser()
    calls = run_chunk(c, 8192, 32, BUSY)
    assert calls[0] == (2, 64) and calls[-1][0] == 1 and c.current == 1
    assert sum(n for count, n in calls if count == 2) == 64


QUIET = {1: 1 / 180_000, 2: 1 / 250_000}  # measured, 784-100-10 relu batch 200
BUSY = {1: 1 / 180_000, 2: 1 / 12_300}


def test_two_threads_win_on_a_quiet_machine_and_probes_back_off():
    c = chooser()
    first = run_chunk(c, 8192, 32, QUIET)
    # two threads timed over two batches, one thread probed in calls of two batches, then the rest
    assert first[0] == (2, 64)
    assert {count for count, _ in first[1:-1]} == {1} and sum(n for _, n in first[1:-1]) == PROBE_SAMPLES
    assert first[-1] == (2, 8192 - 64 - PROBE_SAMPLES)
    probes = 0
    for _ in range(200):
        calls = run_chunk(c, 8192, 32, QUIET)
        probes += len(calls) > 1
        assert calls[-1][0] == 2
    assert c.current == 2 and c.switches == 0
    assert c.probe_every == MAX_PROBE_EVERY
    assert probes <= 200 // MAX_PROBE_EVERY + 6  # 1, 2, 4, ... then one in 32


def test_a_busy_machine_moves_to_one_thread_within_a_chunk_and_back_when_quiet():
    c = chooser()
    for _ in range(40):
        run_chunk(c, 8192, 32, QUIET)
    assert c.current == 2
    run_chunk(c, 8192, 32, BUSY)  # the load starts: this chunk is slow ...
    nxt = run_chunk(c, 8192, 32, BUSY)  # ... and the next one probes and moves
    assert nxt[0][0] == 1 and nxt[-1][0] == 1 and c.current == 1
    for _ in range(30):
        calls = run_chunk(c, 8192, 32, BUSY)
        assert calls[-1][0] == 1
        # a probe of two threads stops after its first call: far slower than one thread
        assert [n for count, n in calls if count == 2] in ([], [64])
    for _ in range(MAX_PROBE_EVERY + 2):  # the load ends: the next probe of 2 threads wins
        run_chunk(c, 8192, 32, QUIET)
    assert c.current == 2 and c.switches == 2


def test_small_calls_and_single_threads_are_never_split():
    assert run_chunk(chooser(), 2, 200, QUIET) == [(2, 2)]  # the warm-up's two samples
    assert run_chunk(chooser(), 3 * PROBE_SAMPLES // 2, 32, QUIET) == [(2, 3 * PROBE_SAMPLES // 2)]
    one = chooser(1)
    assert [run_chunk(one, 8192, 32, BUSY) for _ in range(3)] == [[(1, 8192)]] * 3


def test_the_warm_up_call_does_not_count_as_a_speed():
    """A fit's warm-up trains two samples through the chooser: its time is nearly all the call's
    own (about 0.3 ms here against 2-4 us per sample), so as a speed it made two threads look
    100 times slower than they are, and the fit's first chunk ran on one thread (seen on every
    scikit-learn-default fit on the Intel Xeon of 2026-12-01: one chunk in 81, a probe more)."""
    c = chooser()
    assert run_chunk(c, 2, 200, QUIET, call_seconds=3e-4) == [(2, 2)]
    for _ in range(3):
        run_chunk(c, 8192, 200, QUIET, call_seconds=3e-4)
    assert c.current == 2 and c.switches == 0


@pytest.mark.parametrize("batch_size", [32, 200, 1024, 4096])
def test_every_call_stays_inside_the_chunk(batch_size):
    c = chooser()
    for load in (QUIET, BUSY, QUIET):
        for _ in range(5):
            run_chunk(c, 8192, batch_size, load)  # checks the calls tile the chunk exactly


def test_a_call_that_stops_the_chunk_stops_the_probe_too():
    c = chooser()
    calls = []

    def call(count, start, n):
        calls.append((count, start, n))
        return n if start < 128 else 5  # a non-finite loss in the third call

    assert c.run(8192, 32, call) == 128 + 5
    assert calls == [(2, 0, 64), (1, 64, 64), (1, 128, 64)]


class Alternating(ThreadChooser):
    """Splits every chunk into three calls on all, one and all threads."""

    def run(self, n_samples, batch_size, call):
        third = max(1, n_samples // batch_size // 3) * batch_size
        if 2 * third >= n_samples:
            return call(self.most, 0, n_samples)
        done = 0
        for count, n in [(self.most, third), (1, third), (self.most, n_samples - 2 * third)]:
            n_done = call(count, done, n)
            done += n_done
            if n_done < n:
                break
        return done


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="threads only exist compiled")
@pytest.mark.parametrize("batch_size, recipe", [(32, {}), (200, {"optimizer": "adam", "lr": 0.01, "dropout": 0.1})])
def test_results_do_not_depend_on_the_thread_choices(batch_size, recipe):
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(20_000, 64)).astype(np.uint8)  # three trainer chunks
    X[rng.random(X.shape) < 0.7] = 0
    y = rng.integers(0, 10, size=len(X))
    runs = {}
    for name in ("fixed 1", "fixed 2", "auto", "alternating"):
        threads = {"fixed 1": 1, "fixed 2": 2}.get(name, "auto")
        model = MLP([64, 32, 10], activation="relu", seed=1, threads=threads)
        model.fit(X[:500], y[:500], epochs=1, batch_size=batch_size, **recipe)  # builds the backend
        if name == "alternating":
            model.backend_.minibatch_threads = Alternating(max(2, numba.config.NUMBA_NUM_THREADS))
        history = model.partial_fit(X, y, epochs=2)
        runs[name] = (model.params_.copy(), model.optimizer_state_.slots.copy(), history.loss[-2:])
    for name, (params, slots, losses) in runs.items():
        np.testing.assert_array_equal(params, runs["fixed 1"][0], err_msg=name)
        np.testing.assert_array_equal(slots, runs["fixed 1"][1], err_msg=name)
        assert losses == runs["fixed 1"][2], name


def test_threads_is_auto_or_a_positive_integer():
    X, y = np.zeros((4, 3), np.float32), np.array([0, 1, 0, 1])
    for bad, error in [(0, ValueError), (-1, ValueError), ("two", TypeError), (1.5, TypeError), (True, TypeError)]:
        with pytest.raises(error, match="threads must be 'auto' or a positive integer"):
            MLP([3, 2], threads=bad).fit(X, y)
    assert MLP([3, 2]).threads == "auto"


class Compiling:
    """Stands in for the second process compiling the parallel kernel: running for the first
    ``calls`` polls, then done."""

    def __init__(self, calls):
        self.calls = calls

    def poll(self):
        self.calls -= 1
        return None if self.calls >= 0 else 0


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="one Python function under NUMBA_DISABLE_JIT=1")
def test_a_cold_start_trains_on_the_serial_kernel_until_the_parallel_one_is_compiled(monkeypatch):
    from fastmlp import kernels

    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(20_000, 64)).astype(np.uint8)  # three trainer chunks per epoch
    X[rng.random(X.shape) < 0.7] = 0
    y = rng.integers(0, 10, size=len(X))
    monkeypatch.setenv("FASTMLP_BACKGROUND_COMPILE", "0")  # the real second process: tests/test_prewarm.py
    used = []
    for name in ("serial", "parallel"):
        kernel = getattr(kernels, "minibatch_sgd_chunk" + ("_serial" if name == "serial" else ""))

        def counted(*args, kernel=kernel, name=name):
            used.append(name)
            return kernel(*args)

        monkeypatch.setattr(kernels, kernel.py_func.__name__, counted)
    runs = {}
    for name in ("fixed 1", "compiling"):
        model = MLP([64, 32, 10], activation="relu", seed=1, threads=1 if name == "fixed 1" else "auto")
        model.fit(X[:500], y[:500], epochs=1, batch_size=32, momentum=0.9)  # builds the backend
        if name == "compiling":
            used.clear()
            model.backend_._parallel_compiling = Compiling(4)  # done after 4 of the 6 chunks
        history = model.partial_fit(X, y, epochs=2)
        runs[name] = (model.params_.copy(), model.optimizer_state_.slots.copy(), history.loss[-2:])
    # one call per chunk on the serial kernel while compiling, then the thread chooser's calls
    assert used[:4] == ["serial"] * 4 and "serial" not in used[4:] and "parallel" in used[4:]
    np.testing.assert_array_equal(runs["compiling"][0], runs["fixed 1"][0])
    np.testing.assert_array_equal(runs["compiling"][1], runs["fixed 1"][1])
    assert runs["compiling"][2] == runs["fixed 1"][2]


def test_a_model_pickles_while_the_parallel_kernel_compiles():
    import copy
    import pickle
    import subprocess
    import sys

    rng = np.random.default_rng(0)
    X, y = rng.integers(0, 256, size=(64, 12)).astype(np.uint8), rng.integers(0, 3, size=64)
    model = MLP([12, 8, 3], seed=1)
    model.fit(X, y, epochs=1, batch_size=8)
    compiling = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        model.backend_._parallel_compiling = compiling  # as on a cold start, still running
        copies = [pickle.loads(pickle.dumps(model)), copy.deepcopy(model)]
        assert model.backend_._parallel_compiling is compiling  # the original keeps its own
        for restored in copies:
            assert restored.backend_._parallel_compiling is None
            np.testing.assert_array_equal(restored.predict(X), model.predict(X))
            restored.partial_fit(X, y, epochs=1)  # and trains on
        np.testing.assert_array_equal(copies[0].params_, copies[1].params_)
    finally:
        compiling.kill()
        compiling.wait()
