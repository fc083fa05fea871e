"""Per-sample SGD at several hidden widths on threads=1, threads=2 and threads="auto", alternating.

    FASTMLP_DATA=../shared/data/mnist python bench/experiments/auto_widths.py [WIDTHS] [ROUNDS]

784-H-10 sigmoid, float32, for each H of WIDTHS (default 100,300,800,128): three backends, each
warmed up, train ROUNDS times (default 7) in turn the same 20,000 MNIST samples (8,192 from 500
units up) from where their last round left off. Prints each one's median samples/s, the medians of
the rounds' ratios of two threads and of "auto" to one thread, and the most threads "auto" used.
Since session 69 "auto" may take two threads per sample at every width of 32 units or more
(``kernels.logits_in_halves``); whether it does is its measurement's call.
"""

import statistics
import sys
import time

import numpy as np

from fastmlp import load_mnist, trainer
from fastmlp.backends import make_backend
from fastmlp.network import Architecture, init_params


def main(widths, rounds):
    X, y, _, _ = load_mnist()
    order = np.random.default_rng(0).permutation(len(y)).astype(np.int64)
    for hidden in widths:
        arch = Architecture((784, hidden, 10), "sigmoid", "cross_entropy", dtype="float32")
        runs = {}
        for threads in (1, 2, "auto"):
            backend = make_backend("numba", arch, threads)
            data = backend.prepare(X)
            params = init_params(arch, "xavier", seed=0)
            backend.warmup(params, data, y, 1)
            runs[threads] = (backend, data, params)
        n = 20_000 if hidden < 500 else 8_192
        seconds = {threads: [] for threads in runs}
        for _ in range(rounds):
            for threads, (backend, data, params) in runs.items():
                tic = time.perf_counter()
                trainer.train_epoch(backend, params, data, y, order[:n], 0.05, 1)
                seconds[threads].append(time.perf_counter() - tic)
        rates = {threads: round(n / statistics.median(s)) for threads, s in seconds.items()}
        two = statistics.median(a / b for a, b in zip(seconds[1], seconds[2]))
        auto = statistics.median(a / b for a, b in zip(seconds[1], seconds["auto"]))
        print(f"784-{hidden}-10: samples/s {rates}; two threads / one {two:.3f}; auto / one {auto:.3f}; "
              f"auto used up to {runs['auto'][0].threads_used} thread(s)")


if __name__ == "__main__":
    main([int(h) for h in sys.argv[1].split(",")] if len(sys.argv) > 1 else [100, 300, 800, 128],
         int(sys.argv[2]) if len(sys.argv) > 2 else 7)
