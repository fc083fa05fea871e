"""Per-sample epochs of plain SGD, the general kernel with weight decay, and momentum, alternating.

    FASTMLP_DATA=../shared/data/mnist python bench/experiments/momentum_parts.py [HIDDEN] [ROUNDS]

784-HIDDEN-10 sigmoid (default 128), float32, lr 0.01, one MNIST epoch per configuration per round
(default 5 rounds), the configurations in turn within each round, all in one process. Prints each
one's median samples/s and its ratio to plain SGD (the plain kernel). The general kernel with plain
SGD and weight decay keeps its first layer as modal rows of H, momentum as rows of 2H: the two ratios
apart are what the rows of 2H cost (BENCHMARKS.md, session 29).
"""

import os
import statistics
import sys
import time

import numpy as np

import fastmlp
from fastmlp import optim, trainer
from fastmlp.backends import make_backend
from fastmlp.network import Architecture, init_params

CONFIGS = {
    "plain (plain kernel)": None,
    "plain + wd 1e-4 (general kernel, one mode)": dict(weight_decay=1e-4),
    "momentum 0.9": dict(momentum=0.9),
    "momentum 0.9 + wd 1e-4": dict(momentum=0.9, weight_decay=1e-4),
}


def epoch_runner(arch, X, y, order, options):
    backend = make_backend("numba", arch, "auto")
    data = backend.prepare(X)
    start = init_params(arch, "xavier", seed=0)
    params = start.copy()
    chosen = None if options is None else optim.Optimizer(**options)
    if chosen is None:
        backend.warmup(params, data, y, 1)
    else:
        backend.warmup(params, data, y, 1, chosen, optim.State.fresh(chosen, params, seed=0))

    def run():
        params[...] = start
        extra = {} if chosen is None else dict(optimizer=chosen, state=optim.State.fresh(chosen, params, seed=0))
        tic = time.perf_counter()
        trainer.train_epoch(backend, params, data, y, order, 0.01, 1, **extra)
        return time.perf_counter() - tic

    return run


def main():
    hidden = int(sys.argv[1]) if len(sys.argv) > 1 else 128
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    X, y, _, _ = fastmlp.load_mnist(os.environ.get("FASTMLP_DATA"), download=False)
    arch = Architecture((784, hidden, 10), "sigmoid", "cross_entropy", dtype="float32")
    order = np.random.default_rng(0).permutation(len(y)).astype(np.int64)
    runs = {name: (epoch_runner(arch, X, y, order, options), []) for name, options in CONFIGS.items()}
    for _ in range(rounds):
        for run, times in runs.values():
            times.append(run())
    plain = statistics.median(runs["plain (plain kernel)"][1])
    for name, (_, times) in runs.items():
        median = statistics.median(times)
        print(f"{name:44s} {len(y) / median:10,.0f} samples/s  {median / len(y) * 1e6:6.2f} us/sample  "
              f"ratio {plain / median:.3f}")


if __name__ == "__main__":
    main()
