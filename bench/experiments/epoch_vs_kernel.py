"""What an epoch costs beyond its kernel: ``train_epoch`` (as ``fastmlp bench`` times it) against
the mini-batch kernel called once over the same 60,000 samples (session 65).

Alternating in one process, one MNIST epoch each, a pause of 0.3 s before each: the trainer's
epoch on threads="auto", 2 and 1, and ``minibatch_sgd_chunk`` in one call on two threads and on
one, from the same weights and in the same order. Prints each one's samples/s and its ratio to
the kernel's one call on two threads, round by round (median): where the epoch reads as fast as
the kernel, the "% roof" of ``fastmlp bench`` is the kernel's own.

    FASTMLP_DATA=../shared/data/mnist python bench/experiments/epoch_vs_kernel.py [BATCH] [ROUNDS]

784-128-10 sigmoid, float32, plain SGD at lr 0.1.
"""
import statistics
import sys
import time

import numba
import numpy as np

from fastmlp import optim
from fastmlp.backends import make_backend
from fastmlp.bench.machine import cpu_name
from fastmlp.data import load_mnist
from fastmlp.kernels import minibatch as mb
from fastmlp.network import Architecture, init_params
from fastmlp.trainer import train_epoch


def main():
    batch_size = int(sys.argv[1]) if len(sys.argv) > 1 else 128
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    X, y, _, _ = load_mnist()
    arch = Architecture((784, 128, 10), "sigmoid", "cross_entropy", dtype="float32")
    init = init_params(arch, "auto", 0)
    optimizer = optim.Optimizer()
    order = np.random.default_rng(0).permutation(len(X)).astype(np.int64)
    most = numba.get_num_threads()
    backends = {}
    for threads in ("auto", 2, 1):
        backend = make_backend("numba", arch, threads)
        data = backend.prepare(X)
        backend.warmup(init.copy(), data, y, batch_size, optimizer, optim.State.fresh(optimizer, init, 0))
        backends[threads] = (backend, data)
    kernel_backend, kernel_data = backends[2]
    labels = y.astype(np.int64)

    def epoch(threads):
        backend, data = backends[threads]
        params = init.copy()
        state = optim.State.fresh(optimizer, params, 0)
        tic = time.perf_counter()
        train_epoch(backend, params, data, y, order, 0.1, batch_size, optimizer=optimizer, state=state)
        return time.perf_counter() - tic

    def kernel(threads):
        params = init.copy()
        scratch = mb.minibatch_scratch(params, kernel_backend.layer_sizes, batch_size, 0, False)
        state = optim.State.fresh(optimizer, params, 0)
        numba.set_num_threads(threads)
        try:
            tic = time.perf_counter()
            mb.minibatch_sgd_chunk(
                params, np.zeros(4), *scratch, kernel_backend.layer_sizes, kernel_backend.w_offsets,
                kernel_backend.b_offsets, arch.activation_code, arch.loss_code, optimizer.hyper(0.1), state.slots,
                state.counters, kernel_data.part_ptr, kernel_data.indices, kernel_data.values, kernel_data.input_scale,
                labels, np.empty((0, 10), np.float32), np.empty(0, np.float32), order, 0, len(order), batch_size)
            return time.perf_counter() - tic
        finally:
            numba.set_num_threads(most)  # (threads="auto" keeps within a caller's limit: restore it)

    runs = {f"epoch, threads={t!r}": (lambda t=t: epoch(t)) for t in backends}
    runs["kernel in one call, 2 threads"] = lambda: kernel(2)
    runs["kernel in one call, 1 thread"] = lambda: kernel(1)
    for run in runs.values():
        run()
    seconds = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            time.sleep(0.3)
            seconds[name].append(run())
    base = seconds["kernel in one call, 2 threads"]
    print(f"{cpu_name()}: 784-128-10 sigmoid, batch {batch_size}, float32, {len(order):,} samples, {rounds} rounds")
    for name, times in seconds.items():
        ratio = statistics.median(b / t for b, t in zip(base, times))
        print(f"{name:32s} {len(order) / statistics.median(times):10,.0f} samples/s   {ratio:.3f}x the kernel on 2 threads")


if __name__ == "__main__":
    main()
