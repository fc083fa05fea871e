"""Epoch speed against where the parameters start: 0, 16, 32 or 48 bytes past a 64-byte boundary.

    FASTMLP_DATA=../shared/data/mnist python bench/experiments/alignment.py [ROUNDS] [--unguarded] \
        [--layers 784,128,10] [--activation sigmoid] [--samples 60000]

NumPy's arrays start on any multiple of 16 bytes; the kernels load the first layer's rows as
64-byte vectors (kernels/vectors.py), which split across two cache lines when a row starts off a
64-byte boundary. Float32, one MNIST epoch per measurement through the benchmark runner (as
``fastmlp bench`` trains), for per-sample SGD on one and two threads and mini-batch at 32, 128
and 1024 on two; in each round every mode trains once from each offset (the parameters copied
into a buffer at that offset). Prints each mode's median samples/s per offset and the median of
the rounds' ratios offset 0 / offset k.

By default the backend trains parameters off a boundary on an aligned copy (``fastmlp.network.
VECTOR_ALIGNMENT``: every offset should then train alike); ``--unguarded`` switches that off
(``fastmlp.network.VECTOR_ALIGNMENT`` taken as 16 bytes), which shows what the offsets cost the kernels, as
before session 53, when the model's own parameters started wherever NumPy put them.
"""

import argparse
import time

import numpy as np

import fastmlp
from fastmlp import network
from fastmlp.bench.dataset import Split
from fastmlp.bench.measure import sample_order
from fastmlp.bench.runners import FastmlpRunner
from fastmlp.network import Architecture, init_params

MODES = [(1, 1), (1, 2), (32, 2), (128, 2), (1024, 2)]  # (batch size, threads)
OFFSETS = (0, 16, 32, 48)


def at_offset(params, offset):
    buffer = np.empty(params.nbytes + 128, np.uint8)
    first = -buffer.ctypes.data % 64 + offset
    placed = buffer[first : first + params.nbytes].view(params.dtype)
    placed[:] = params
    return placed


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("rounds", type=int, nargs="?", default=5)
    parser.add_argument("--unguarded", action="store_true")
    parser.add_argument("--layers", default="784,128,10")
    parser.add_argument("--activation", default="sigmoid")
    parser.add_argument("--samples", type=int, default=60000)
    args = parser.parse_args()
    if args.unguarded:
        network.VECTOR_ALIGNMENT = 16
    X, y, _, _ = fastmlp.load_mnist()
    train = Split(X.reshape(len(X), -1)[: args.samples], y[: args.samples])
    layers = tuple(int(size) for size in args.layers.split(","))
    arch = Architecture(layers, args.activation, "cross_entropy", dtype="float32")
    init = init_params(arch, "auto", 0)
    order = sample_order(len(train), 0)
    runners = {}
    for batch_size, threads in MODES:
        runner = FastmlpRunner("numba", arch, 0.1 if args.activation == "sigmoid" else 0.05, batch_size, threads)
        runner.prepare(train)
        runner.warmup(init, order)
        runners[batch_size, threads] = runner
    rates = {(mode, offset): [] for mode in MODES for offset in OFFSETS}
    for _ in range(args.rounds):
        for mode in MODES:
            for offset in OFFSETS:
                params = at_offset(init, offset)
                assert params.ctypes.data % 64 == offset
                runners[mode].start(init, order)
                tic = time.perf_counter()
                runners[mode].train(params, order)
                rates[mode, offset].append(len(order) / (time.perf_counter() - tic))
    print(f"{args.layers} {args.activation}, float32, {len(order):,} samples, {args.rounds} rounds, "
          f"{'unguarded (the kernels on the offset parameters)' if args.unguarded else 'as the backend trains'}")
    print("samples/s (median) by offset in bytes; offset 0 / offset k, the rounds' median")
    for mode in MODES:
        medians = "  ".join(f"{offset}: {np.median(rates[mode, offset]) / 1e3:.0f}k" for offset in OFFSETS)
        ratios = " ".join(f"{np.median(np.divide(rates[mode, 0], rates[mode, offset])):.3f}" for offset in OFFSETS[1:])
        print(f"batch {mode[0]:4d}, {mode[1]} thread(s): {medians}   0/k: {ratios}")


if __name__ == "__main__":
    main()
