"""The mini-batch kernel over a whole epoch: 60,000 distinct images against 20,000 three times.

    FASTMLP_DATA=../shared/data/mnist python bench/experiments/epoch_pool.py [BATCH] [THREADS] [LR]

784-128-10 sigmoid, float32, plain SGD (lr 0.1 by default), uint8 pixels; one epoch of 60,000
samples in one random order, in chunks of 8,192 as the trainer calls the kernel, from the same
initial weights each time, on THREADS Numba threads (default 2): once over the 60,000 training
images, once over the first 20,000 repeated three times (the same count of samples, a third of the
CSR rows to read). Seven alternating rounds; samples/s median and range.
"""

import sys
import time

import numba
import numpy as np

from fastmlp import optim
from fastmlp.backends import make_backend
from fastmlp.data import load_mnist
from fastmlp.kernels import minibatch as mb
from fastmlp.network import Architecture, init_params


def main():
    batch = int(sys.argv[1]) if len(sys.argv) > 1 else 128
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    lr = float(sys.argv[3]) if len(sys.argv) > 3 else 0.1
    X, y, _, _ = load_mnist(download=False)
    arch = Architecture((784, 128, 10), "sigmoid", "cross_entropy", dtype="float32")
    backend = make_backend("numba", arch, 1)
    start = init_params(arch, "xavier", seed=0)
    sizes, w_offsets, b_offsets = backend.layer_sizes, backend.w_offsets, backend.b_offsets
    hyper = optim.Optimizer().hyper(lr)
    pools = {"60,000 images": (backend.prepare(X), y),
             "20,000 x 3": (backend.prepare(np.concatenate([X[:20000]] * 3)), np.concatenate([y[:20000]] * 3))}
    order = np.random.default_rng(0).permutation(60000).astype(np.int64)

    def epoch(data, labels):
        params = start.copy()
        scratch = mb.minibatch_scratch(params, sizes, batch, 0)
        slots = np.zeros((0, params.size), params.dtype)
        numba.set_num_threads(threads)
        tic = time.perf_counter()
        for first in range(0, len(order), 8192):
            mb.minibatch_sgd_chunk(params, np.zeros(4), *scratch, sizes, w_offsets, b_offsets, arch.activation_code,
                                   arch.loss_code, hyper, slots, np.zeros(3, np.int64), data.part_ptr, data.indices,
                                   data.values, data.input_scale, labels, np.empty((0, 10), np.float32),
                                   np.empty(0, np.float32), order, first, min(first + 8192, len(order)), batch)
        return len(order) / (time.perf_counter() - tic)

    for data, labels in pools.values():
        epoch(data, labels)  # compile or load
    rates = {name: [] for name in pools}
    for _ in range(7):
        for name, (data, labels) in pools.items():
            rates[name].append(epoch(data, labels))
    for name, values in rates.items():
        print(f"batch {batch}, {threads} thread(s), lr {lr:g}, {name}: median {np.median(values) / 1e3:.0f}k "
              f"samples/s ({min(values) / 1e3:.0f}k-{max(values) / 1e3:.0f}k)")


if __name__ == "__main__":
    main()
