"""The mini-batch kernel's thread count, chosen by measured speed (fastmlp._adaptive).

The choice may change between any two batches; what is learned must not: the weights, the
optimizer state and the reported losses are bitwise those of a run on a fixed thread count.
"""

import numba
import numpy as np
import pytest

from fastmlp import MLP
from fastmlp._adaptive import MAX_PROBE_EVERY, PROBE_SAMPLES, PROBE_SECONDS, ThreadChooser


CPUS = 2


class FakeClock:
    """Wall time, and the machine's idle and this process's CPU seconds, as ``advance`` moves
    them."""

    def __init__(self):
        self.now = 0.0
        self.idle = 0.0  # the machine's idle seconds (all CPUS cores)
        self.own = 0.0  # this process's CPU seconds

    def __call__(self):
        return self.now

    def advance(self, seconds, threads, others):
        """``seconds`` pass with this process running ``threads`` threads and other processes
        keeping ``others`` cores busy: this process gets the cores the others leave."""
        self.now += seconds
        self.own += seconds * min(threads, CPUS - others)
        self.idle += seconds * max(0, CPUS - others - threads)


def run_chunk(chooser, n_samples, batch_size, seconds_per_sample, call_seconds=0.0):
    """Play one chunk through the chooser: a call of n samples takes n * seconds_per_sample[count]
    (plus call_seconds, a call's own cost, on any count); seconds_per_sample[count] may also be
    a function (clock, n) -> the call's seconds."""
    calls = []

    def call(count, start, n):
        assert start == sum(m for _, m in calls)  # the chunk in order, nothing skipped or repeated
        assert 0 < n and start + n <= n_samples  # and nothing outside it
        speed = seconds_per_sample[count]
        seconds = call_seconds + (speed(chooser.clock.now, n) if callable(speed) else n * speed)
        chooser.clock.advance(seconds, count, seconds_per_sample.get("others", 0))
        calls.append((count, n))
        return n

    assert chooser.run(n_samples, batch_size, call) == n_samples
    assert sum(n for _, n in calls) == n_samples
    assert all(n % batch_size == 0 for _, n in calls[:-1])  # split in whole batches only
    return calls


def chooser(most=2, idle_known=True, clock=None):
    clock = clock or FakeClock()
    return ThreadChooser(most, clock=clock, idle=(lambda: clock.idle) if idle_known else (lambda: None),
                         own=lambda: clock.own, cpus=CPUS)


# seconds per sample on 1 and 2 threads (measured, 784-100-10 relu batch 200), and the cores
# other processes keep busy
QUIET = {1: 1 / 180_000, 2: 1 / 250_000, "others": 0}
BUSY = {1: 1 / 180_000, 2: 1 / 12_300, "others": 1}


def test_a_busy_machine_from_the_start_costs_two_batches():
    c = chooser()
    calls = run_chunk(c, 8192, 32, BUSY)
    assert calls[:2] == [(1, PROBE_SAMPLES), (2, 64)] and calls[-1][0] == 1 and c.current == 1
    assert sum(n for count, n in calls if count == 2) == 64


def test_two_threads_win_on_a_quiet_machine_and_probes_back_off():
    c = chooser()
    first = run_chunk(c, 8192, 32, QUIET)
    # one thread timed in one call, then two threads in calls of two batches, four, eight ...
    # for at least PROBE_SECONDS (here the rest of the chunk)
    assert first == [(1, PROBE_SAMPLES), (2, 64), (2, 128), (2, 256), (2, 512), (2, 1024), (2, 2048),
                     (2, 8192 - PROBE_SAMPLES - 4032)]
    assert c.current == 2 and c.switches == 0
    probes = 0
    for _ in range(200):
        calls = run_chunk(c, 8192, 32, QUIET)
        probes += len(calls) > 1
        assert calls[-1][0] == 2
        if len(calls) > 1:  # a probe of one thread: PROBE_SAMPLES, then the rest on two
            assert calls == [(1, PROBE_SAMPLES), (2, 8192 - PROBE_SAMPLES)]
    assert c.current == 2 and c.switches == 0
    assert c.probe_every == MAX_PROBE_EVERY
    assert probes <= 200 // MAX_PROBE_EVERY + 4  # after 1, 4, 16, ... chunks, then one in 64


def per_sample_chooser(clock=None):
    """threads="auto"'s per-sample chooser (NumbaBackend.persample_chooser) on a fake clock."""
    clock = clock or FakeClock()
    return ThreadChooser(2, clock=clock, idle=lambda: clock.idle, own=lambda: clock.own, cpus=CPUS,
                         probe_in_two_calls=True, retry_sooner=True)


# per-sample 784-128-10 on 1 and 2 threads (AMD EPYC Zen 4, a noisy minute: two threads 1.14x in
# whole chunks), and a call's own cost on two
CALL_SECONDS = 4e-4
PER_SAMPLE = {1: 2.5e-6, 2: lambda now, n: CALL_SECONDS + n * 2.2e-6, "others": 0}


def test_a_per_sample_probe_is_two_calls_and_is_not_lost_to_the_calls_own_cost():
    # a call on two threads costs 0.3-0.5 ms of its own: in calls doubling from 512 samples two
    # threads measured slower than one (each call paid it); two calls: 512 samples (where a busy
    # machine aborts), then the rest of the chunk
    c = per_sample_chooser()
    first = run_chunk(c, 8192, 256, PER_SAMPLE)
    assert first == [(1, 1024), (2, 512), (2, 8192 - 1024 - 512)] and c.current == 2
    doubling = chooser()
    run_chunk(doubling, 8192, 256, PER_SAMPLE)
    assert doubling.current == 1  # the mini-batch chooser's probe, for contrast
    busy = per_sample_chooser()
    calls = run_chunk(busy, 8192, 256, {1: 2.5e-6, 2: lambda now, n: CALL_SECONDS + n * 8e-6, "others": 1})
    assert calls[:2] == [(1, 1024), (2, 512)] and calls[2:] == [(1, 8192 - 1536)] and busy.current == 1


def test_a_close_call_is_probed_again_soon_and_a_slower_thread_makes_a_probe_due():
    # two threads losing by a few percent on a machine with a core to spare (a noisy minute) must
    # not wait 4, 16, 64 chunks for the next look: two threads may be faster by then
    c = per_sample_chooser()
    close = {1: 2.5e-6, 2: 2.55e-6, "others": 0}
    for _ in range(3):
        run_chunk(c, 8192, 256, close)
    assert c.current == 1 and c.probe_every == 1
    plain = chooser()
    for _ in range(3):
        run_chunk(plain, 8192, 256, close)
    assert plain.current == 1 and plain.probe_every >= 4  # (the mini-batch chooser backs off)
    # on one thread, with probes backed off by a clear loss, one thread then slows below two
    # threads' last rate: the next chunk probes two threads (a core being spare)
    c = per_sample_chooser()
    for _ in range(3):
        run_chunk(c, 8192, 256, {1: 2.0e-6, 2: 3.0e-6, "others": 0})
    assert c.current == 1 and c.probe_every > 1
    run_chunk(c, 8192, 256, {1: 3.5e-6, 2: 1.7e-6, "others": 0})  # one thread slower than two last ran
    calls = run_chunk(c, 8192, 256, {1: 3.5e-6, 2: 1.7e-6, "others": 0})
    assert calls[0][0] == 2 and c.current == 2, calls


def flickering(fast, slow, window=0.004, period=0.012):
    """Two threads beside another busy process: at full speed (``fast`` seconds per sample)
    for ``window`` seconds in every ``period`` (between the other process's turns), else
    ``slow``. Returns the call's seconds for (clock, n)."""

    def seconds(now, n):
        t = now
        while n > 0:
            phase = t % period
            rate, until = (fast, window - phase) if phase < window else (slow, period - phase)
            k = min(n, max(1, int(until / rate)))
            t += k * rate
            n -= k
        return t - now

    return seconds


@pytest.mark.parametrize("window, period", [(0.004, 0.012), (0.008, 0.024)])
def test_two_threads_fast_between_another_process_s_turns_do_not_win(window, period):
    """Seen on the Intel Xeon (2026-12-01) with a busy loop on one of two cores: two threads ran
    at full speed for 3-5 ms at a time, so a probe of 1,024 samples (4 ms at batch 32) won, and
    the chunk after it ran at a third of one thread's speed. A probe of two threads now lasts at
    least PROBE_SECONDS, longer than such a window, and one thread stays."""
    assert window < PROBE_SECONDS
    load = {1: 1 / 180_000, 2: flickering(1 / 250_000, 1 / 12_300, window, period)}
    c = chooser(idle_known=False)  # every probe the interval allows
    for _ in range(40):
        calls = run_chunk(c, 8192, 32, load)
        assert calls[-1][0] == 1
        assert sum(n for count, n in calls if count == 2) < 8192 // 2
    assert c.current == 1 and c.switches == 1


def test_two_threads_must_be_clearly_faster():
    from fastmlp._adaptive import MARGIN

    for speedup, chosen in [(MARGIN * 0.98, 1), (MARGIN * 1.02, 2)]:
        c, load = chooser(), {1: 1 / 180_000, 2: 1 / (180_000 * speedup), "others": 0}
        run_chunk(c, 8192, 32, load)  # one thread, then two (here to the chunk's end)
        assert c.current == chosen and run_chunk(c, 8192, 32, load)[-1][0] == chosen


def test_a_moment_s_stall_of_two_threads_does_not_move_to_one():
    """One chunk at half speed (the host stalled), then quiet again: the probe that follows
    measures both counts afresh, so two threads stay (the stalled chunk's speed against a
    fresh single thread made one thread win, and the chooser spent chunks on it)."""
    c = chooser()
    for _ in range(10):
        run_chunk(c, 8192, 32, QUIET)
    assert c.current == 2 and c.switches == 0
    run_chunk(c, 8192, 32, {1: QUIET[1], 2: 2 * QUIET[2], "others": 0})  # the stall
    after = run_chunk(c, 8192, 32, QUIET)
    assert after[0] == (1, PROBE_SAMPLES) and after[1][0] == 2  # both measured again
    assert c.current == 2 and c.switches == 0


def test_one_thread_running_slower_does_not_probe_two():
    """A slower single thread means a busier machine: no reason to try two threads sooner."""
    c = chooser(idle_known=False)  # probes by the interval alone
    for _ in range(12):
        run_chunk(c, 8192, 32, BUSY)
    assert c.current == 1
    every = c.probe_every
    assert every > 2
    run_chunk(c, 8192, 32, {1: 3 / 180_000, 2: 1 / 12_300})  # one thread three times slower
    assert c.probe_every == every
    for _ in range(every - 2 - c.since_probe):
        assert len(run_chunk(c, 8192, 32, BUSY)) == 1  # still no probe until it is due


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


def test_no_probe_of_two_threads_while_no_core_is_idle():
    c = chooser()
    first = run_chunk(c, 8192, 32, BUSY)
    assert sum(n for count, n in first if count == 2) == 64  # the first chunk's probe
    for _ in range(100):
        assert run_chunk(c, 8192, 32, BUSY) == [(1, 8192)]  # ~1.5 s of training, no probe
    # the load ends: one thread's chunks leave a core idle, and once that has been seen over
    # IDLE_WINDOW (a chunk here is 45 ms) a probe moves to two threads
    quiet = [run_chunk(c, 8192, 32, QUIET) for _ in range(3)]
    assert quiet[0] == [(1, 8192)] and quiet[-1][-1][0] == 2
    assert c.current == 2 and c.switches == 2


@pytest.mark.parametrize("busy", [True, False])
def test_a_machine_busy_while_the_fit_sets_up_starts_on_one_thread(busy):
    c = chooser()
    load = BUSY if busy else QUIET
    # the fit's set-up: the input converted on all cores (on a quiet machine no core is idle
    # then: only other processes' time counts as load), the kernels loaded
    c.clock.advance(0.2, CPUS, load["others"])
    first = run_chunk(c, 8192, 32, load)
    if busy:
        assert first == [(1, 8192)]  # no probe of two threads at all
        for _ in range(10):
            assert run_chunk(c, 8192, 32, BUSY) == [(1, 8192)]
        quiet = [run_chunk(c, 8192, 32, QUIET) for _ in range(3)]  # the load ends
        assert quiet[0] == [(1, 8192)] and quiet[-1][-1][0] == 2 and c.current == 2
    else:
        assert first[0] == (1, PROBE_SAMPLES) and first[1][0] == 2 and c.current == 2


def test_the_next_fit_starts_from_the_last_look_at_the_machine():
    """A grid search's next candidate: a new chooser whose first chunk comes too soon after its
    set-up to tell from the idle time starts on one thread when the process saw no spare core
    in the last VERDICT_SECONDS, and probes as usual when that look is older."""
    from fastmlp._adaptive import VERDICT_SECONDS

    clock = FakeClock()
    first = chooser(clock=clock)
    for _ in range(3):
        run_chunk(first, 8192, 32, BUSY)
    nxt = chooser(clock=clock)
    assert run_chunk(nxt, 8192, 32, BUSY) == [(1, 8192)]
    clock.advance(VERDICT_SECONDS, 1, BUSY["others"])
    late = chooser(clock=clock)
    assert [count for count, _ in run_chunk(late, 8192, 32, BUSY)[:2]] == [1, 2]


def test_without_idle_times_probes_go_by_the_interval():
    c = chooser(idle_known=False)
    probes = [sum(n for count, n in run_chunk(c, 8192, 32, BUSY) if count == 2) for _ in range(200)]
    assert set(probes) == {0, 64} and 6 <= probes.count(64) <= 200 // MAX_PROBE_EVERY + 8
    assert c.current == 1


def test_idle_seconds_and_cpus_from_proc_stat(tmp_path, monkeypatch):
    import sys
    import types

    from fastmlp import _adaptive
    from fastmlp._adaptive import _TICKS, _count_cpus, idle_seconds

    monkeypatch.setitem(sys.modules, "psutil", None)  # (not installed)
    monkeypatch.setattr(_adaptive, "_PSUTIL", [])  # (looked for once: afresh here)
    stat = tmp_path / "stat"
    stat.write_text("cpu  598 56 21 4736 76 0 55 164 0 0\ncpu0 2953350 285830 106531 2404493 4923 0 2521 8449 0 0\n")
    assert idle_seconds(str(stat)) == (4736 + 76) / _TICKS
    stat.write_text("")
    assert idle_seconds(str(stat)) is None
    assert idle_seconds(str(tmp_path / "missing")) is None
    # no /proc/stat (macOS, Windows): psutil's where it is installed (audit 41), even so /proc's first
    times = types.SimpleNamespace(idle=12.5, user=3.0)  # (no iowait: macOS, Windows)
    monkeypatch.setitem(sys.modules, "psutil", types.SimpleNamespace(cpu_times=lambda: times))
    assert idle_seconds(str(tmp_path / "missing")) is None  # (looked for once, not at every chunk)
    monkeypatch.setattr(_adaptive, "_PSUTIL", [])
    assert idle_seconds(str(tmp_path / "missing")) == 12.5
    times.iowait = 0.25
    assert idle_seconds(str(tmp_path / "missing")) == 12.75
    stat.write_text("cpu  598 56 21 4736 76 0 55 164 0 0\n")
    assert idle_seconds(str(stat)) == (4736 + 76) / _TICKS
    stat.write_text("cpu  1 2 3 4 5 6 7\ncpu0 1 2 3 4 5 6 7\ncpu1 1 2 3 4 5 6 7\nintr 5\n")
    assert _count_cpus(str(stat)) == 2


@pytest.mark.parametrize("batch_size", [8192, 60000])  # a chunk per batch; full batch: a chunk per epoch
def test_chunks_of_one_large_batch_are_compared_across_chunks(batch_size):
    # such a chunk cannot hold two probes: "auto" ran every one on two threads, about twice as
    # slow as one on a machine with a core busy
    quiet = chooser()
    runs = [run_chunk(quiet, batch_size, batch_size, QUIET) for _ in range(60)]
    assert runs[0] == [(1, batch_size)] and runs[1] == [(2, batch_size)]  # one thread first, then all
    assert all(len(calls) == 1 for calls in runs)  # never split
    assert sum(calls[0][0] == 1 for calls in runs) <= 4 and quiet.current == 2 and quiet.probe_every > 4
    busy = chooser()
    runs = [run_chunk(busy, batch_size, batch_size, BUSY) for _ in range(30)]
    assert busy.current == 1 and sum(calls[0][0] == 2 for calls in runs) <= 1  # at most one chunk on two
    for _ in range(40):  # the machine gets busy: one slow chunk, then one thread
        run_chunk(quiet, batch_size, batch_size, QUIET)
    slowed = [run_chunk(quiet, batch_size, batch_size, BUSY) for _ in range(10)]
    assert [calls[0][0] for calls in slowed[:3]] == [2, 1, 1] and quiet.current == 1
    assert all(calls[0][0] == 1 for calls in slowed[1:])  # no core spare: no look at two threads


def test_small_calls_and_single_threads_are_never_split():
    assert run_chunk(chooser(), 2, 200, QUIET) == [(2, 2)]  # the warm-up's two samples
    assert run_chunk(chooser(), 3 * PROBE_SAMPLES // 2, 32, QUIET) == [(2, 3 * PROBE_SAMPLES // 2)]
    one = chooser(1)
    assert [run_chunk(one, 8192, 32, BUSY) for _ in range(3)] == [[(1, 8192)]] * 3
    two = ThreadChooser(2, clock=FakeClock(), fixed=True)  # threads=2: a count the user chose
    assert [run_chunk(two, 8192, 32, BUSY) for _ in range(3)] == [[(2, 8192)]] * 3


def test_a_thread_count_given_is_kept_and_auto_adapts():
    X, y = np.zeros((64, 3), np.float32), np.arange(64) % 2
    for threads, adaptive in [("auto", numba.config.NUMBA_NUM_THREADS > 1 and not numba.config.DISABLE_JIT),
                              (1, False), (2, False)]:
        model = MLP([3, 2], threads=threads)
        model.fit(X, y, batch_size=8)
        assert model.backend_.minibatch_threads.adaptive == adaptive, threads


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2 or numba.config.DISABLE_JIT, reason="needs two Numba threads")
def test_auto_keeps_within_the_callers_numba_set_num_threads(monkeypatch):
    # an application that keeps Numba to one thread (to spare its own pool) had a mini-batch fit
    # on two all the same (audit 51); a number given is what the user asked fastmlp for
    monkeypatch.setattr(ThreadChooser, "run", lambda self, n_samples, batch_size, call: call(self.most, 0, n_samples))
    rng = np.random.default_rng(0)
    X, y = rng.integers(0, 256, (8192, 20)).astype(np.uint8), rng.integers(0, 3, 8192)
    free = MLP([20, 16, 3], seed=0)
    free.fit(X, y, batch_size=32, epochs=1, progress=False)
    if free.backend_.threads_used < 2:
        pytest.skip("the fit ran the cold start's one-thread kernel (the parallel one still compiling)")
    outer = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        limited = MLP([20, 16, 3], seed=0)
        limited.fit(X, y, batch_size=32, epochs=1, progress=False)
        assert limited.backend_.threads_used == 1 and numba.get_num_threads() == 1
        asked = MLP([20, 16, 3], seed=0, threads=2)
        asked.fit(X, y, batch_size=32, epochs=1, progress=False)
        assert asked.backend_.threads_used == 2 and numba.get_num_threads() == 1
    finally:
        numba.set_num_threads(outer)
    assert limited.params_.tobytes() == free.params_.tobytes() == asked.params_.tobytes()


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
        return 5  # a non-finite loss in the first call

    assert c.run(8192, 32, call) == 5
    assert calls == [(1, 0, PROBE_SAMPLES)]  # the first chunk's measure of one thread

    c, calls = chooser(), []

    def stops_in_the_probe_of_two_threads(count, start, n):
        calls.append((count, start, n))
        return n if start < PROBE_SAMPLES + 64 else 5

    assert c.run(8192, 32, stops_in_the_probe_of_two_threads) == PROBE_SAMPLES + 64 + 5
    assert calls[-2:] == [(2, PROBE_SAMPLES, 64), (2, PROBE_SAMPLES + 64, 128)]


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
def test_results_do_not_depend_on_the_thread_choices(batch_size, recipe, monkeypatch):
    # Every fit compiles its kernel here: on a cold cache a second process would compile the
    # parallel kernel while all but the one-thread fit trained on the interpreted kernel, and
    # the thread choices compared would be those of the interpreted kernel (and the cold-start
    # test below compiled the same kernel here while that process still ran: 31 s of CPU twice,
    # 2026-12-02, AMD EPYC Zen 3). The second process is tests/test_prewarm.py's.
    from fastmlp import kernels

    monkeypatch.setenv("FASTMLP_BACKGROUND_COMPILE", "0")
    used = set()

    class Counted:  # the parallel kernel, noting which run called it
        def __call__(self, *args):
            used.add(name)
            return parallel(*args)

        def __getattr__(self, attribute):  # its signatures and cache, as the backend reads them
            return getattr(parallel, attribute)

    parallel = kernels.minibatch_sgd_chunk
    monkeypatch.setattr(kernels, "minibatch_sgd_chunk", Counted())
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
    if numba.config.NUMBA_NUM_THREADS >= 2:  # with one thread in all, the serial twin may run instead
        assert {"fixed 2", "auto", "alternating"} <= used, used


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="threads only exist compiled")
def test_per_sample_results_do_not_depend_on_the_thread_choices(monkeypatch):
    # issue 11: per sample, "auto" chooses one or two threads chunk by chunk (as mini-batch does)
    # where the network's one thread sums its logits in the two threads' halves
    # (kernels.logits_in_halves): the choices, forced here at every call, change no bit
    from fastmlp import kernels

    if kernels.usable_threads(2, (64, 128, 10)) < 2:
        pytest.skip("one core: per-sample training runs on one thread whatever is asked")
    monkeypatch.setenv("FASTMLP_BACKGROUND_COMPILE", "0")  # (compiled here: tests/test_prewarm.py has the cold start)
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(20_000, 64)).astype(np.uint8)  # three trainer chunks
    X[rng.random(X.shape) < 0.7] = 0
    y = rng.integers(0, 10, size=len(X))
    runs, used = {}, {}
    for name in ("fixed 1", "fixed 2", "auto", "alternating", "auto under set_num_threads(1)"):
        threads = {"fixed 1": 1, "fixed 2": 2}.get(name, "auto")
        model = MLP([64, 128, 10], activation="relu", seed=1, threads=threads)
        model.fit(X[:500], y[:500], epochs=1, batch_size=1)  # builds the backend
        if name.startswith("alternating") or name.endswith("set_num_threads(1)"):
            model.backend_.persample_threads = Alternating(2)  # (two threads whenever it is asked)
        outer = numba.get_num_threads()
        if name.endswith("set_num_threads(1)"):
            numba.set_num_threads(1)
        try:
            history = model.partial_fit(X, y, epochs=2)
        finally:
            numba.set_num_threads(outer)
        runs[name], used[name] = (model.params_.copy(), history.loss[-2:]), model.backend_.threads_used
    for name, (params, losses) in runs.items():
        np.testing.assert_array_equal(params, runs["fixed 1"][0], err_msg=name)
        assert losses == runs["fixed 1"][1], name
    assert used["fixed 2"] == used["alternating"] == 2 and used["fixed 1"] == 1, used
    assert used["auto under set_num_threads(1)"] == 1, used  # a caller's limit holds per sample too


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="threads only exist compiled")
def test_per_sample_calls_too_small_for_two_threads_run_on_one(monkeypatch):
    # partial_fit's small calls (streaming data): a call on two threads costs 0.22 ms of its own,
    # more than a second thread saves on fewer than about 300 samples; the chooser, on two threads
    # here, is not asked below PERSAMPLE_FEWEST samples
    from fastmlp import kernels
    from fastmlp._numba_backend import NumbaBackend

    if kernels.usable_threads(2, (64, 128, 10)) < 2:
        pytest.skip("one core: per-sample training runs on one thread whatever is asked")
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(2000, 64)).astype(np.uint8)
    y = rng.integers(0, 10, size=len(X))
    model = MLP([64, 128, 10], seed=1)
    model.fit(X[:600], y[:600], epochs=1, batch_size=1)
    model.backend_.persample_threads = Alternating(2)  # two threads whenever it is asked
    small = NumbaBackend.PERSAMPLE_FEWEST - 1
    for start in range(0, 3 * small, small):
        model.partial_fit(X[start:start + small], y[start:start + small])
        assert model.backend_.threads_used == 1
    model.partial_fit(X[:NumbaBackend.PERSAMPLE_FEWEST], y[:NumbaBackend.PERSAMPLE_FEWEST])
    assert model.backend_.threads_used == 2


class CompilingWorker:
    """A second process compiling the two-thread worker, until ``done``."""

    def __init__(self):
        self.done = False

    def poll(self):
        return 0 if self.done else None


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="threads only exist compiled")
@pytest.mark.parametrize("second_process", [True, False])
def test_a_cold_two_thread_worker_is_compiled_aside_while_one_thread_trains(monkeypatch, second_process):
    # On a cold cache "auto" must not stop a fit to compile the two-thread worker (2.8 s here): a
    # second process compiles it (plan "two-threads") while one thread trains, and the chooser
    # takes over once it is stored; where no second process can start, it is compiled at once.
    from fastmlp import _numba_backend, kernels

    if kernels.usable_threads(2, (64, 128, 10)) < 2:
        pytest.skip("one core: per-sample training runs on one thread whatever is asked")
    process, started, stored = CompilingWorker(), [], []
    monkeypatch.setattr(_numba_backend, "compiled_here", lambda kernel, *a, **k: bool(stored))
    monkeypatch.setattr(_numba_backend, "cache_is_cold", lambda kernel, *a, **k: not stored)

    def start(plan, dtype, values_dtype):
        if plan != "two-threads":
            return None  # (the kernel's own cold start: not this test's)
        started.append((plan, np.dtype(dtype).name, np.dtype(values_dtype).name))
        return process if second_process else None

    monkeypatch.setattr(_numba_backend, "start_prewarm", start)
    calls = []
    threaded = kernels.sgd_persample_chunk_threaded

    def counted(*args, threads):
        calls.append(threads)
        stored.append(True)  # (compiled or loaded by this call)
        return threaded(*args, threads=threads)

    monkeypatch.setattr(kernels, "sgd_persample_chunk_threaded", counted)
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(3000, 64)).astype(np.uint8)
    y = rng.integers(0, 10, size=len(X))
    model = MLP([64, 128, 10], seed=1)
    model.fit(X, y, epochs=1, batch_size=1)
    assert started == [("two-threads", "float32", "uint8")]
    if second_process:
        assert calls == [] and model.backend_.threads_used == 1  # one thread while it compiles
        model.partial_fit(X, y, epochs=1)
        assert calls == []
        process.done = True
        stored.append(True)
    model.partial_fit(X, y, epochs=1)
    # the worker loaded (or compiled) outside the chooser's timing, then the chunk on its choice
    assert calls[0] == 2 and len(calls) >= 2, calls
    assert started == [("two-threads", "float32", "uint8")]  # started once


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
def test_a_cold_start_trains_on_the_interpreted_kernel_until_the_parallel_one_is_compiled(monkeypatch):
    from fastmlp import kernels

    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(20_000, 64)).astype(np.uint8)  # three trainer chunks per epoch
    X[rng.random(X.shape) < 0.7] = 0
    y = rng.integers(0, 10, size=len(X))
    monkeypatch.setenv("FASTMLP_BACKGROUND_COMPILE", "0")  # the real second process: tests/test_prewarm.py
    used = []
    for name in ("interpreted", "parallel"):
        kernel = getattr(kernels, "minibatch_sgd_chunk" + ("_interpreted" if name == "interpreted" else ""))

        def counted(*args, kernel=kernel, name=name):
            used.append(name)
            return kernel(*args)

        monkeypatch.setattr(kernels, "minibatch_sgd_chunk" + ("_interpreted" if name == "interpreted" else ""), counted)
    runs = {}
    for name in ("fixed 1", "compiling"):
        model = MLP([64, 32, 10], activation="relu", seed=1, threads=1 if name == "fixed 1" else "auto")
        model.fit(X[:500], y[:500], epochs=1, batch_size=32, momentum=0.9)  # builds the backend
        if name == "compiling":
            used.clear()
            model.backend_._parallel_compiling = Compiling(4)  # done after 4 of the 6 chunks
        history = model.partial_fit(X, y, epochs=2)
        runs[name] = (model.params_.copy(), model.optimizer_state_.slots.copy(), history.loss[-2:])
    # one call per chunk on the interpreted kernel while compiling, then the thread chooser's calls
    assert used[:4] == ["interpreted"] * 4 and "interpreted" not in used[4:] and "parallel" in used[4:]
    np.testing.assert_array_equal(runs["compiling"][0], runs["fixed 1"][0])
    np.testing.assert_array_equal(runs["compiling"][1], runs["fixed 1"][1])
    assert runs["compiling"][2] == runs["fixed 1"][2]


def case_data(case, spec, n_samples, layers):
    """Seeded (X, y) for one of the interpreted-kernel cases below: pixels, 60% of them zero (as
    floats in [0, 1] with ``floats``), and targets for the case's loss (class labels by default)."""
    rng = np.random.default_rng(len(case))
    X = rng.integers(0, 256, size=(n_samples, layers[0])).astype(np.uint8)
    X[rng.random(X.shape) < 0.6] = 0
    if spec.get("floats"):
        X = X / np.float32(255)
    loss = spec.get("loss", "cross_entropy")
    if loss == "mse":
        return X, rng.normal(size=(n_samples, layers[-1]))
    if loss == "binary_cross_entropy":
        return X, rng.random((n_samples, layers[-1])) < 0.3
    return X, rng.integers(0, layers[-1], size=n_samples)


# The interpreted kernel against the compiled ones, bitwise: every recipe, dtype, input type, loss
# and batch shape the kernel branches on, combined by hand so that each pair of them meets in some
# case (not the full product, whose compiles alone would take minutes). Hidden layers of 128 units
# take every first-layer path; batches of 300 run in two sub-batches of 256 rows. The serial twin
# (compiled for each dtype and input type it meets) joins in two of them.
INTERPRETED_CASES = {
    "plain, sigmoid, float32, pixels, batch 32": dict(serial=True),
    "momentum, relu, float64, float inputs, batch 300": dict(
        activation="relu", dtype="float64", floats=True, batch_size=300, fit=dict(momentum=0.9, weight_decay=1e-4)),
    "nesterov, tanh, dropout, mse regression, batch 7": dict(
        activation="tanh", loss="mse", batch_size=7,
        fit=dict(momentum=0.8, nesterov=True, dropout=0.2, input_dropout=0.1)),
    "adamw, relu, multilabel, sample weights, batch 300": dict(
        activation="relu", loss="binary_cross_entropy", batch_size=300, weighted=True,
        fit=dict(optimizer="adam", weight_decay=1e-3, decoupled_weight_decay=True)),
    "adam, sigmoid, float64, dropout, weights, batch 32": dict(
        dtype="float64", weighted=True, serial=True, fit=dict(optimizer="adam", dropout=0.3, lr=1e-3)),
    "plain, tanh, float inputs, full batch": dict(activation="tanh", floats=True, batch_size=None),
}


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="one Python function under NUMBA_DISABLE_JIT=1")
@pytest.mark.parametrize("case", list(INTERPRETED_CASES))
def test_the_interpreted_kernel_trains_to_the_compiled_kernels_bits(case, monkeypatch):
    # No second process: on a cold cache (as after any edit of the kernels) the fits below would
    # start one, and the compiled runs would then train on the interpreted kernel too
    import fastmlp.kernels as fastmlp_kernels

    monkeypatch.setenv("FASTMLP_BACKGROUND_COMPILE", "0")
    spec = INTERPRETED_CASES[case]
    loss = spec.get("loss", "cross_entropy")
    layers = [40, 128, {"mse": 3, "binary_cross_entropy": 5}.get(loss, 6)]
    X, y = case_data(case, spec, 700, layers)
    weights = np.random.default_rng(1).random(len(X)) + 0.5 if spec.get("weighted") else None
    options = dict(dict(lr=0.05), **spec.get("fit", {}))
    results = {}
    kernels = ("interpreted", "serial", "parallel") if spec.get("serial") else ("interpreted", "parallel")
    forms = {"interpreted": "minibatch_sgd_chunk_interpreted", "serial": "minibatch_sgd_chunk_serial",
             "parallel": "minibatch_sgd_chunk"}
    for name in kernels:
        model = MLP(layers, activation=spec.get("activation", "sigmoid"), loss=loss, dtype=spec.get("dtype", "float32"),
                    seed=2, threads=1)
        batch_size = spec.get("batch_size", 32)
        model.fit(X[:8], y[:8], epochs=1, batch_size=batch_size, **options)  # builds the backend
        backend = model.backend_
        if name == "interpreted":
            backend._parallel_compiling = Compiling(10**9)  # a cold start that never ends
        # the serial twin, or not even on one thread with no parallel kernel in the cache: run
        # alone on a cold cache, the "parallel" runs took the twin and compared it with itself
        backend._serial = {np.dtype(X.dtype).name: name == "serial"}
        calls = {form: 0 for form in forms.values()}
        with pytest.MonkeyPatch.context() as counting:
            for form in forms.values():
                def counted(*args, _form=form, _kernel=getattr(fastmlp_kernels, form)):
                    calls[_form] += 1
                    return _kernel(*args)
                counting.setattr(fastmlp_kernels, form, counted)
            history = model.partial_fit(X, y, weights, epochs=2, batch_size=batch_size)
        assert calls[forms[name]] > 0 and sum(calls.values()) == calls[forms[name]], (name, calls)
        results[name] = (model.params_.copy(), model.optimizer_state_.slots.copy(), history.loss[-2:])
    for name in kernels[1:]:
        np.testing.assert_array_equal(results["interpreted"][0], results[name][0])
        np.testing.assert_array_equal(results["interpreted"][1], results[name][1])
        assert results["interpreted"][2] == results[name][2]


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="one Python function under NUMBA_DISABLE_JIT=1")
@pytest.mark.parametrize("dtype, hidden, batch_sizes", [
    ("float32", 300, (108, 216)),  # the sub-batch (108 rows at 300 units) is the limit
    ("float32", 800, (64, 128)),  # the sub-batch again (64 rows)
    ("float64", 800, (40, 41, 64)),  # the input-by-input gradient's group (40 rows) is
])
def test_the_fused_first_layer_step_trains_to_the_bits_of_the_step_after_the_gradient(monkeypatch, dtype, hidden,
                                                                                     batch_sizes):
    # The chunk's FUSED_STEP (plain SGD, a wide first layer, a batch summed in one sub-batch and one
    # group) against the same kernel with every step taken after the gradient (the interpreted
    # kernel, told never to fuse), on both sides of each limit: taken past one, the sums of a
    # second sub-batch or group would meet a W already stepped (audit 53)
    import fastmlp.kernels as fastmlp_kernels
    from fastmlp.kernels import minibatch

    monkeypatch.setenv("FASTMLP_BACKGROUND_COMPILE", "0")
    unfused = minibatch.interpreted(
        _part_gradient_by_input=lambda *args: minibatch._part_gradient_by_input(*args[:-1], False),
        _part_update=lambda *args: minibatch._part_update(*args[:-1], False))
    rng = np.random.default_rng(3)
    X = rng.integers(0, 256, (432, 200)).astype(np.uint8)
    X[rng.random(X.shape) < 0.93] = 0  # inputs lit in one sub-batch or group of a batch and not the other
    y = rng.integers(0, 6, 432)
    for batch_size in batch_sizes:
        results = []
        for fused in (True, False):
            model = MLP([200, hidden, 6], activation="relu", dtype=dtype, seed=2, threads=1)
            model.fit(X[:8], y[:8], epochs=1, batch_size=batch_size, lr=0.05)  # builds the backend
            model.backend_._serial = {"uint8": False}
            with pytest.MonkeyPatch.context() as patch:
                if not fused:
                    for form in ("minibatch_sgd_chunk", "minibatch_sgd_chunk_serial", "minibatch_sgd_chunk_interpreted"):
                        patch.setattr(fastmlp_kernels, form, unfused)
                model.partial_fit(X, y, epochs=2, batch_size=batch_size)
            results.append(model.params_.copy())
        assert results[0].tobytes() == results[1].tobytes(), batch_size


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="one Python function under NUMBA_DISABLE_JIT=1")
@pytest.mark.parametrize("dtype, hidden, by_input", [
    ("float32", 223, False), ("float32", 224, True), ("float64", 111, False), ("float64", 112, True),
    ("float64", 100, False),  # (the scikit-learn drop-in's default on float64 data)
])
def test_a_first_layer_of_rows_of_896_bytes_or_more_sums_its_gradient_input_by_input(monkeypatch, dtype, hidden,
                                                                                     by_input):
    # Rows of 896 bytes to 1 KB went row by row until session 58; input by input they trained
    # 1.07-1.25x faster on an Intel Xeon (BENCHMARKS.md). Both ways give the same bits, so only the
    # calls of the interpreted kernel's helper tell which one a fit took.
    import fastmlp.kernels as fastmlp_kernels
    from fastmlp.kernels import minibatch

    calls = []

    def counted(*args):
        calls.append(args[6])  # (the part)
        return minibatch._part_gradient_by_input(*args)

    monkeypatch.setenv("FASTMLP_BACKGROUND_COMPILE", "0")
    rng = np.random.default_rng(5)
    X = rng.integers(0, 256, (96, 30)).astype(np.uint8)
    X[rng.random(X.shape) < 0.5] = 0
    y = rng.integers(0, 4, 96)
    model = MLP([30, hidden, 4], activation="relu", dtype=dtype, seed=0, threads=1)
    model.fit(X[:8], y[:8], epochs=1, batch_size=32, lr=0.05)  # builds the backend
    kernel = minibatch.interpreted(_part_gradient_by_input=counted)
    for form in ("minibatch_sgd_chunk", "minibatch_sgd_chunk_serial", "minibatch_sgd_chunk_interpreted"):
        monkeypatch.setattr(fastmlp_kernels, form, kernel)
    model.partial_fit(X, y, epochs=1, batch_size=32)
    assert bool(calls) == by_input, (dtype, hidden, len(calls))


# Plain per-sample SGD: the interpreted kernel for the first chunks (a cold start), then the
# compiled one, against the compiled one alone: the same bits. Cases over what the kernel's
# helpers branch on (activation, loss, dtype, input type, depth, biases), combined by hand.
PER_SAMPLE_CASES = {
    "sigmoid, cross-entropy, float32, pixels": dict(),
    "relu, float64, float inputs, two hidden layers": dict(
        activation="relu", dtype="float64", floats=True, layers=[40, 32, 16, 6]),
    "tanh, mse regression, no biases": dict(activation="tanh", loss="mse", bias=False),
    "relu, multilabel, float inputs": dict(activation="relu", loss="binary_cross_entropy", floats=True),
    # audit 77: a hidden layer the one-thread kernel sums in halves (kernels.logits_in_halves,
    # 32 units or more; 100 splits 48 + 52, through the first layer's loop): the cases above have
    # 24 units, and an interpreted kernel that split elsewhere passed every test
    "tanh, float inputs, logits in halves": dict(activation="tanh", floats=True, layers=[40, 100, 6]),
}


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="one Python function under NUMBA_DISABLE_JIT=1")
@pytest.mark.parametrize("case", list(PER_SAMPLE_CASES))
def test_a_cold_per_sample_start_trains_on_the_interpreted_kernel_to_the_compiled_kernels_bits(case, monkeypatch):
    from fastmlp import kernels

    monkeypatch.setenv("FASTMLP_BACKGROUND_COMPILE", "0")  # the real second process: tests/test_prewarm.py
    spec = PER_SAMPLE_CASES[case]
    loss = spec.get("loss", "cross_entropy")
    layers = spec.get("layers", [40, 24, 6])
    X, y = case_data(case, spec, 600, layers)
    used = []
    interpreted = kernels.sgd_persample_chunk_interpreted
    compiled = kernels.sgd_persample_chunk

    def counted(*args, kernel, name):
        used.append(name)
        return kernel(*args)

    monkeypatch.setattr(kernels, "sgd_persample_chunk_interpreted",
                        lambda *args: counted(*args, kernel=interpreted, name="interpreted"))
    monkeypatch.setattr(kernels, "sgd_persample_chunk", lambda *args: counted(*args, kernel=compiled, name="compiled"))
    runs = {}
    for name in ("compiled", "cold start"):
        model = MLP(layers, activation=spec.get("activation", "sigmoid"), loss=loss, bias=spec.get("bias", True),
                    dtype=spec.get("dtype", "float32"), seed=4, threads=1)
        model.fit(X[:2], y[:2], batch_size=1, lr=0.02)  # builds the backend
        used.clear()
        if name == "cold start":
            model.backend_._persample_compiling = Compiling(3)  # done after the first few chunks
        history = model.partial_fit(X, y, epochs=4)
        runs[name] = (model.params_.copy(), history.loss[-4:], list(used))
    np.testing.assert_array_equal(runs["cold start"][0], runs["compiled"][0])
    assert runs["cold start"][1] == runs["compiled"][1]
    # the interpreted kernel while compiling, then the compiled one for good
    sequence = runs["cold start"][2]
    assert sequence[0] == "interpreted" and sequence[-1] == "compiled", sequence
    assert sequence == sorted(sequence, key=lambda kernel: kernel == "compiled"), sequence
    assert set(runs["compiled"][2]) == {"compiled"}


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


@pytest.mark.parametrize("batch_size", [8, None])
def test_a_pickled_model_holds_its_weights_not_the_kernels_scratch(batch_size):
    # the mini-batch kernel's scratch went into every pickle and deep copy: 9.1 MB around 0.4 MB
    # of weights after a full-batch fit on 6,000 MNIST rows (audit 23)
    import copy
    import pickle

    rng = np.random.default_rng(0)
    X, y = rng.integers(0, 256, size=(2000, 12)).astype(np.uint8), rng.integers(0, 3, size=2000)
    model = MLP([12, 64, 3], seed=1)
    model.fit(X, y, epochs=1, batch_size=batch_size)
    copied = pickle.loads(pickle.dumps(model))
    assert len(pickle.dumps(model)) < model.params_.nbytes + 20_000
    twin = copy.deepcopy(model)
    for other in (copied, twin):  # and trains on to the same bits
        other.partial_fit(X, y, epochs=1)
    model.partial_fit(X, y, epochs=1)
    np.testing.assert_array_equal(copied.params_, model.params_)
    np.testing.assert_array_equal(twin.params_, model.params_)


def test_the_time_a_call_waits_to_start_is_left_out_of_its_timing():
    # fits in threads at once under Numba's workqueue layer take turns in the parallel kernel: a
    # call's wait for the other fit's counted as its own time, and the chooser took its thread
    # count for a slow one
    c = chooser()

    def call(count, start, n):
        with c.waiting():  # the other fit's call
            c.clock.advance(5.0, 0, 0)
        c.clock.advance(n * QUIET[count], count, 0)
        return n

    assert c._timed(call, 2, 0, 512) == (512, pytest.approx(512 * QUIET[2]))
    assert c._timed(call, 1, 512, 256) == (256, pytest.approx(256 * QUIET[1]))
    calls = run_chunk(c, 8192, 32, QUIET)  # and a chunk without waits is timed as before
    assert c.current == 2 and calls[-1][0] == 2


def test_a_mini_batch_fit_counts_its_wait_for_the_kernels_lock_as_waiting(monkeypatch):
    import contextlib
    import time

    from fastmlp import _numba_backend

    @contextlib.contextmanager
    def taken_by_another_fit(kernel):  # each call waits 0.2 s for the other fit's call to end
        time.sleep(0.2)
        yield

    monkeypatch.setattr(_numba_backend, "_one_caller_at_a_time", taken_by_another_fit)
    rng = np.random.default_rng(0)
    X, y = rng.integers(0, 256, size=(64, 12)).astype(np.uint8), rng.integers(0, 3, size=64)
    model = MLP([12, 8, 3], seed=1)
    history = model.fit(X, y, epochs=1, batch_size=8, progress=False)
    chooser = model.backend_.minibatch_threads
    assert chooser.waited >= 0.4 - 1e-3  # the warm-up's call and at least one of training's
    assert history.seconds[0] >= 0.2  # (the epoch's wall time holds its waits; the chooser's
    # timing leaves them out: the test above)


def test_a_large_mini_batch_scratch_is_let_go_at_the_end_of_a_call_and_a_small_one_kept(monkeypatch):
    # a full-batch fit's scratch (75 MB on MNIST) stayed with the model for as long as it lived
    from fastmlp import _numba_backend

    monkeypatch.setattr(_numba_backend.NumbaBackend, "SCRATCH_KEPT_BYTES", 200_000)
    rng = np.random.default_rng(0)
    X, y = rng.integers(0, 256, size=(2000, 12)).astype(np.uint8), rng.integers(0, 3, size=2000)
    model = MLP([12, 64, 3], seed=1)
    model.fit(X, y, epochs=1, batch_size=None, progress=False)
    assert model.backend_._minibatch is None
    model.fit(X, y, epochs=1, batch_size=16, progress=False)
    kept = model.backend_._minibatch
    assert kept is not None and sum(array.nbytes for array in kept[2]) <= 200_000
    model.partial_fit(X[:64], y[:64], epochs=1, progress=False)
    assert model.backend_._minibatch is kept  # reused, not made again


def test_chunks_too_small_to_probe_run_on_one_thread_while_no_core_is_spare():
    """A training set of fewer than 2 x PROBE_SAMPLES samples makes every epoch a chunk too
    small to probe: it ran on all threads beside a busy process, 153 times slower than on one
    (audit 34). Quiet, it runs on all threads as before; busy, on one; and the count comes back
    when the load ends."""
    c = chooser()
    c.clock.advance(0.2, CPUS, QUIET["others"])  # the fit's set-up
    epoch = 2 * PROBE_SAMPLES - 32
    assert [run_chunk(c, epoch, 32, QUIET) for _ in range(3)] == [[(2, epoch)]] * 3
    busy = [run_chunk(c, epoch, 32, BUSY) for _ in range(20)]
    # (the first busy epoch's look covers the quiet one before it: one epoch on two threads)
    assert busy[0] == [(2, epoch)] and busy[1:] == [[(1, epoch)]] * 19
    quiet = [run_chunk(c, epoch, 32, QUIET) for _ in range(6)]
    # (a look needs IDLE_WINDOW, 30 ms: up to three epochs of 11 ms on one thread, then all threads)
    ones = quiet.index([(2, epoch)])
    assert 1 <= ones <= 3 and quiet == [[(1, epoch)]] * ones + [[(2, epoch)]] * (6 - ones)
    assert c.current == 2  # (the choice itself: the small chunks only ran on one thread)
    # a fit busy from its set-up runs its first small epoch on one thread
    b = chooser()
    b.clock.advance(0.2, CPUS, BUSY["others"])
    assert run_chunk(b, epoch, 32, BUSY) == [(1, epoch)]
