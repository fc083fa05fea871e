"""Per-sample SGD on two threads with the hidden units split unevenly (issue 11): when the host
slows one core, would giving its thread fewer units pay? And does pinning each thread to a CPU?

    FASTMLP_DATA=../shared/data/mnist python bench/experiments/unit_splits.py splits [ROUNDS]
    FASTMLP_DATA=../shared/data/mnist python bench/experiments/unit_splits.py pinning [ROUNDS]

784-128-10 sigmoid, float32, lr 0.1; each round trains chunks of 8,192 MNIST samples (the
trainer's chunk) one after another, as ``sgd_persample_chunk_threaded`` runs them but with the
split given: ``splits``: thread 0 on units [0, s) and thread 1 on [s, 128) for s = 64, 48, 80, 32,
96, each thread pinned to its own CPU, then one thread pinned to CPU 0, to CPU 1 and unpinned;
``pinning``: the even split pinned and as the library runs it (unpinned), then the same one-thread
chunks. Prints each round's microseconds per sample and the medians; a round whose even split
is slow while one CPU's thread alone is slow is the case an uneven split would be for.
"""

import os
import sys
import time

import numpy as np

from fastmlp import load_mnist
from fastmlp.backends import make_backend
from fastmlp.kernels import sgd
from fastmlp.kernels._threads import abort_flag, cache_aligned, mailbox, run_workers
from fastmlp.network import Architecture, init_params

CHUNK = 8192
X, y, _, _ = load_mnist()
arch = Architecture([784, 128, 10], "sigmoid", "cross_entropy", dtype="float32")
backend = make_backend("numba", arch, 2)
data = backend.prepare(X)
params = init_params(arch, "xavier", seed=0)
backend.warmup(params.copy(), data, y, 1)
labels = y.astype(np.int64)
targets = np.empty((0, 10), np.float32)
order = np.random.default_rng(0).permutation(len(y)).astype(np.int64)
sizes, w_off, b_off = backend.layer_sizes, backend.w_offsets, backend.b_offsets
stats = np.zeros(3)
everywhere = os.sched_getaffinity(0)


def two_threads(params, start, stop, split, pin):
    """``sgd_persample_chunk_threaded``'s two threads, thread 0 on units [0, split)."""
    n_in, n_hidden, n_out = 784, 128, 10
    W1 = params[w_off[0] : w_off[0] + n_in * n_hidden].reshape(n_in, n_hidden)
    W2 = params[w_off[1] : w_off[1] + n_hidden * n_out].reshape(n_hidden, n_out)
    b1 = params[b_off[0] : b_off[0] + n_hidden]
    b2 = params[b_off[1] : b_off[1] + n_out]
    units = [(0, split), (split, n_hidden)]
    blocks = [tuple(cache_aligned(a) for a in (np.zeros(3), W1[:, f:l], b1[f:l], W2[f:l].T, b2)) for f, l in units]
    counts, slots = mailbox(2, n_out, params.dtype)
    abort = abort_flag()

    def work(thread):
        if pin:
            os.sched_setaffinity(0, {thread})
        sgd._split_hidden_worker(*blocks[thread], counts, slots, abort, thread, arch.activation_code, arch.loss_code,
                                 0.1, data.indptr, data.indices, data.values, data.input_scale, labels, targets,
                                 order, start, stop)

    os.sched_setaffinity(0, everywhere)  # a new thread inherits its creator's mask
    tic = time.perf_counter()
    run_workers(work, 2, abort)
    seconds = time.perf_counter() - tic
    os.sched_setaffinity(0, everywhere)
    for (f, l), (_, W1_block, b1_block, W2t_block, _) in zip(units, blocks):
        W1[:, f:l] = W1_block
        b1[f:l] = b1_block
        W2[f:l] = W2t_block.T
    b2[:] = blocks[0][4]
    return seconds


def one_thread(params, start, stop, cpu=None):
    os.sched_setaffinity(0, everywhere if cpu is None else {cpu})
    tic = time.perf_counter()
    sgd.sgd_persample_chunk(params, stats, sizes, w_off, b_off, arch.activation_code, arch.loss_code, 0.1,
                            data.indptr, data.indices, data.values, data.input_scale, labels, targets, order,
                            start, stop)
    seconds = time.perf_counter() - tic
    os.sched_setaffinity(0, everywhere)
    return seconds


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "splits"
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    if mode == "splits":
        cases = [(f"{s}/{128 - s} pinned", s, True) for s in (64, 48, 80, 32, 96)]
    else:
        cases = [("64/64 pinned", 64, True), ("64/64 as the library runs", 64, False)]
    names = [name for name, _, _ in cases] + ["one thread on CPU 0", "on CPU 1", "unpinned"]
    print(f"{mode}: us a sample per chunk of {CHUNK}:", " | ".join(names))
    p = params.copy()
    rows = []
    for r in range(rounds):
        start = (r * CHUNK) % (len(y) - CHUNK)
        stop = start + CHUNK
        row = [two_threads(p, start, stop, split, pin) for _, split, pin in cases]
        row += [one_thread(p, start, stop, 0), one_thread(p, start, stop, 1), one_thread(p, start, stop)]
        rows.append(np.array(row) / CHUNK * 1e6)
        print(time.strftime("%H:%M:%S"), " ".join(f"{v:5.2f}" for v in rows[-1]), flush=True)
    a = np.array(rows)
    print("medians:", " | ".join(f"{name} {m:.3f}" for name, m in zip(names, np.median(a, 0))))
    n = len(cases)
    best = a[:, :n].argmin(1)
    print(f"the even split ({names[0]}) fastest of the two-thread cases in {int((best == 0).sum())} of {rounds} "
          f"rounds; one thread's CPUs apart by more than 15% in "
          f"{int((np.abs(a[:, n] - a[:, n + 1]) > 0.15 * a[:, n:n + 2].min(1)).sum())}")


if __name__ == "__main__":
    main()
