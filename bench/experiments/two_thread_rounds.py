"""Per-sample SGD on one and two threads, round by round (session 64, issue 11's 1.4x).

    FASTMLP_DATA=... python bench/experiments/two_thread_rounds.py widths [ROUNDS] [H,H,...]
    FASTMLP_DATA=... python bench/experiments/two_thread_rounds.py pinned [ROUNDS]
    FASTMLP_DATA=... python bench/experiments/two_thread_rounds.py per-cpu [ROUNDS]
    FASTMLP_DATA=... python bench/experiments/two_thread_rounds.py alone [ROUNDS]
    FASTMLP_DATA=... python bench/experiments/two_thread_rounds.py latency [ROUNDS]
    FASTMLP_DATA=... python bench/experiments/two_thread_rounds.py pair [ROUNDS]
    FASTMLP_DATA=... python bench/experiments/two_thread_rounds.py chunks [ROUNDS]

``widths``: 784-H-10 sigmoid, float32, one MNIST epoch a round, one thread then two alternating;
the best epoch of each (microseconds a sample) and every round's ratio, sorted. ``pinned``: at
128 units, one thread, two threads as the library runs them, and two threads each pinned to a
CPU of its own (``os.sched_setaffinity`` in each worker), alternating. ``per-cpu``: one thread
pinned to each CPU in turn, 20,000 samples a round, with the time: whether one core runs slower
at times. ``alone``: two-thread rounds at 128 units one after another, each with the 4 KiB
offsets of the arrays the threaded kernel copies for its threads in its first call (whether a slow round goes with
an alignment). ``latency``: each round the mailbox's round trip between the two threads
(``post`` then ``wait_posted`` for the other's post, 100,000 steps, the exchange the threaded kernel makes once
a sample), then a two-thread and a one-thread epoch at 128 units: whether slow two-thread rounds
go with a slow exchange. ``pair``: each round a register-only loop of multiply-adds on one thread
alone, then on two threads at once (each its own), then a two-thread epoch: what one vCPU's
work costs while the other works too (two vCPUs on one physical core would each run at about half
speed). ``chunks``: two-thread epochs at 128 units, each chunk's milliseconds (``train_epoch``'s
``on_chunk``): whether a slow epoch is slow throughout or in bursts. Ratios measured side by side, round by round, as ``bench/test_throughput.py`` does.
"""
import os
import sys
import time

import numpy as np
from numba import njit

from fastmlp import load_mnist, trainer
from fastmlp.backends import make_backend
from fastmlp.kernels import _threads
from fastmlp.kernels import sgd
from fastmlp.network import Architecture, init_params

X, y, _, _ = load_mnist()
ORDER = np.random.default_rng(0).permutation(len(y)).astype(np.int64)


def setup(hidden, threads):
    arch = Architecture([784, hidden, 10], "sigmoid", "cross_entropy", dtype="float32")
    start = init_params(arch, "xavier", seed=0)
    backend = make_backend("numba", arch, threads)
    data = backend.prepare(X)
    backend.warmup(start.copy(), data, y, 1)
    return backend, data, start


def epoch(side, order=ORDER):
    backend, data, start = side
    params = start.copy()
    tic = time.perf_counter()
    trainer.train_epoch(backend, params, data, y, order, 0.1, 1)
    return time.perf_counter() - tic


def pinned_run_workers(work, threads, abort):
    cpus = sorted(os.sched_getaffinity(0))

    def pinned(thread):
        before = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {cpus[thread % len(cpus)]})  # this thread's alone (Linux)
        try:
            work(thread)
        finally:
            os.sched_setaffinity(0, before)

    return _threads.run_workers(pinned, threads, abort)


def report(name, one, other):
    ratios = sorted(a / b for a, b in zip(one, other))
    print(f"  {name}: best {min(other) * 1e6 / len(y):.3f} us/sample (one thread {min(one) * 1e6 / len(y):.3f}), "
          f"round ratios {' '.join(f'{r:.2f}' for r in ratios)}", flush=True)


def widths(rounds, hidden_sizes):
    for hidden in hidden_sizes:
        one, two = setup(hidden, 1), setup(hidden, 2)
        times = {1: [], 2: []}
        for _ in range(rounds):
            times[1].append(epoch(one))
            times[2].append(epoch(two))
        print(f"784-{hidden}-10:")
        report("two threads", times[1], times[2])


def pinned(rounds):
    one, two = setup(128, 1), setup(128, 2)
    times = {"one": [], "two": [], "pinned": []}
    try:
        for _ in range(rounds):
            for name in times:
                sgd.run_workers = pinned_run_workers if name == "pinned" else _threads.run_workers
                times[name].append(epoch(one if name == "one" else two))
    finally:
        sgd.run_workers = _threads.run_workers
    print("784-128-10:")
    report("two threads", times["one"], times["two"])
    report("two threads, pinned", times["one"], times["pinned"])


def per_cpu(rounds):
    one = setup(128, 1)
    cpus = sorted(os.sched_getaffinity(0))
    try:
        for _ in range(rounds):
            row = []
            for cpu in cpus:
                os.sched_setaffinity(0, {cpu})
                row.append(epoch(one, ORDER[:20000]) * 1e6 / 20000)
            print(time.strftime("%H:%M:%S ") + "  ".join(f"cpu{c} {t:.3f} us/sample" for c, t in zip(cpus, row)),
                  flush=True)
    finally:
        os.sched_setaffinity(0, set(cpus))


def alone(rounds):
    two = setup(128, 2)
    offsets = []

    def logged(array):
        copy = _threads.cache_aligned(array)
        offsets.append(copy.ctypes.data % 4096)
        return copy

    sgd.cache_aligned = logged
    try:
        for _ in range(rounds):
            offsets.clear()
            seconds = epoch(two)
            # the first call's arrays (each thread's stats, W1, b1, W2t and b2 blocks); later calls repeat them here
            print(f"{seconds * 1e6 / len(y):.3f} us/sample, offsets {offsets[:10]}", flush=True)
    finally:
        sgd.cache_aligned = _threads.cache_aligned


@njit(nogil=True)
def _ping_pong(counts, slots, abort, thread, steps, values):
    for step in range(steps):
        _threads.post(counts, slots, thread, step, values)
        if not _threads.wait_posted(counts, slots, abort, 1 - thread, step):
            return


def exchange_ns(steps=100_000):
    """Nanoseconds a step of two threads posting 10 float32 each and waiting for the other's."""
    counts, slots = _threads.mailbox(2, 10, np.float32)
    abort = _threads.abort_flag()
    values = np.zeros(10, np.float32)
    tic = time.perf_counter()
    _threads.run_workers(lambda thread: _ping_pong(counts, slots, abort, thread, steps, values), 2, abort)
    return (time.perf_counter() - tic) / steps * 1e9


def latency(rounds):
    one, two = setup(128, 1), setup(128, 2)
    exchange_ns(1000)  # compiled
    for _ in range(rounds):
        ns = exchange_ns()
        two_seconds, one_seconds = epoch(two), epoch(one)
        print(f"{time.strftime('%H:%M:%S')} exchange {ns:6.0f} ns/step  two threads "
              f"{two_seconds * 1e6 / len(y):.3f} us/sample  one {one_seconds * 1e6 / len(y):.3f}  "
              f"ratio {one_seconds / two_seconds:.2f}", flush=True)


@njit(nogil=True, fastmath=True)
def _multiply_adds(n):
    a = np.zeros(16, np.float32) + np.float32(0.5)
    for _ in range(n):
        for k in range(16):
            a[k] = a[k] * np.float32(0.999999) + np.float32(1e-7)
    return a.sum()


def _timed_loops(threads, n=20_000_000):
    seconds = [0.0] * threads

    def one(thread):
        tic = time.perf_counter()
        _multiply_adds(n)
        seconds[thread] = time.perf_counter() - tic

    abort = _threads.abort_flag()
    _threads.run_workers(one, threads, abort)
    return max(seconds)


def pair(rounds):
    two = setup(128, 2)
    _multiply_adds(10)  # compiled
    for _ in range(rounds):
        alone, both = _timed_loops(1), _timed_loops(2)
        two_seconds = epoch(two)
        print(f"{time.strftime('%H:%M:%S')} loop alone {alone * 1e3:6.1f} ms, beside another {both * 1e3:6.1f} ms "
              f"({alone / both:.2f}x)  two-thread epoch {two_seconds * 1e6 / len(y):.3f} us/sample", flush=True)


def chunks(rounds):
    backend, data, start = setup(128, 2)
    for _ in range(rounds):
        params = start.copy()
        stamps = [time.perf_counter()]
        trainer.train_epoch(backend, params, data, y, ORDER, 0.1, 1,
                            on_chunk=lambda n_done, mean_loss: stamps.append(time.perf_counter()))
        print(f"{time.strftime('%H:%M:%S')} {(stamps[-1] - stamps[0]) * 1e6 / len(y):.3f} us/sample; chunks (ms): "
              + " ".join(f"{(b - a) * 1e3:.1f}" for a, b in zip(stamps, stamps[1:])), flush=True)


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "widths"
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    modes = {"pinned": pinned, "per-cpu": per_cpu, "alone": alone, "latency": latency, "pair": pair, "chunks": chunks}
    if mode == "widths":
        widths(rounds, [int(h) for h in sys.argv[3].split(",")] if len(sys.argv) > 3 else [32, 64, 128, 256, 512])
    elif mode in modes:
        modes[mode](rounds)
    else:
        sys.exit(f"unknown mode {mode!r}: widths, pinned, per-cpu, alone, latency, pair or chunks")
