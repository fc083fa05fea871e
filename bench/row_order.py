"""What the random order of the samples costs the mini-batch kernel, in one process.

    FASTMLP_DATA=../shared/data/mnist python bench/row_order.py \
        [--layers 784,128,10] [--activation sigmoid] [--batch-size 1024] [--threads 2] \
        [--optimizer sgd|adam] [--weight-decay 0] [--float-input] [--samples 60000] [--rounds 9]

Training visits the samples in a random order, so each batch's CSR rows come from all over an
array far larger than the caches. This trains the same epoch (same initial weights, same
batches in the same order) twice per round, alternating: on the rows as stored, with a random
``order``; and on a copy of the rows stored in that order, visited 0, 1, 2, ... Both give the
same bits (checked); the ratio of their speeds is what the scattered rows cost. Float32, one
epoch of ``--samples`` MNIST images per run, ``minibatch_sgd_chunk`` on ``--threads`` threads.
"""

from __future__ import annotations

import argparse
import time

import numba
import numpy as np

from ab_kernels import mnist_problem  # a sibling script (run as python bench/row_order.py)
from fastmlp import kernels, optim
from fastmlp.bench.machine import cpu_name
from fastmlp.kernels import minibatch


def pointers(X):
    """The kernel's input rows: (the rows' pointers split at the kernel's parts, indices, values)."""
    return kernels.sparse_rows(X, parts=minibatch.PARTS)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", default="784,128,10")
    parser.add_argument("--activation", default="sigmoid")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=numba.config.NUMBA_NUM_THREADS)
    parser.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--float-input", action="store_true", help="float32 pixels / 255 instead of uint8")
    parser.add_argument("--samples", type=int, default=60_000)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()

    layers, X, y, arch, start = mnist_problem(args, "float32")
    layout = arch.layout()
    optimizer = optim.Optimizer(optimizer=args.optimizer, weight_decay=args.weight_decay)
    hyper = optimizer.hyper(1e-3 if args.optimizer == "adam" else 0.01)
    scale = 1 / 255 if X.dtype == np.uint8 else 1.0
    targets, weights = np.empty((0, layers[-1]), np.float32), np.empty(0, np.float32)
    order = np.random.default_rng(0).permutation(len(y)).astype(np.int64)
    runs = {
        "as stored": (pointers(X), y, order),
        "in visiting order": (pointers(np.ascontiguousarray(X[order])), y[order], np.arange(len(y), dtype=np.int64)),
    }

    def epoch(rows, labels, visit):
        params = start.copy()
        scratch = minibatch.minibatch_scratch(start, layout.sizes, args.batch_size, optimizer.n_slots)
        slots = np.zeros((optimizer.n_slots, params.size), np.float32)
        numba.set_num_threads(args.threads)
        tic = time.perf_counter()
        minibatch.minibatch_sgd_chunk(
            params, np.zeros(4), *scratch, layout.sizes, layout.w_offsets, layout.b_offsets, arch.activation_code,
            arch.loss_code, hyper, slots, np.zeros(3, np.int64), *rows, scale, labels, targets, weights, visit, 0,
            len(visit), args.batch_size)
        return len(visit) / (time.perf_counter() - tic), params

    for run in runs.values():
        epoch(*run)  # compile or load
    rates = {name: [] for name in runs}
    for _ in range(args.rounds):
        trained = {}
        for name, run in runs.items():
            rate, trained[name] = epoch(*run)
            rates[name].append(rate)
        same = np.array_equal(*trained.values())
        if not same:
            raise SystemExit("the two orders trained to different weights: the comparison is void")
    ratios = [b / a for a, b in zip(rates["as stored"], rates["in visiting order"])]
    print(f"{cpu_name()}: {'-'.join(map(str, layers))} {args.activation}, batch {args.batch_size}, float32, "
          f"{args.optimizer}{f', weight decay {args.weight_decay:g}' if args.weight_decay else ''}, "
          f"{'float32' if args.float_input else 'uint8'} pixels, {args.threads} thread(s), {len(y):,} samples")
    print(f"as stored (random order): {np.median(rates['as stored']):,.0f} samples/s; in visiting order: "
          f"{np.median(rates['in visiting order']):,.0f}; in order / random: median of rounds {np.median(ratios):.3f} "
          f"(rounds: {' '.join(f'{r:.2f}' for r in ratios)}); same bits: True")


if __name__ == "__main__":
    main()
