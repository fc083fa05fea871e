"""The mini-batch thread chooser's calls, round by round, beside a fixed two threads (quiet machine).

    FASTMLP_DATA=../shared/data/mnist python bench/experiments/chooser_calls.py BATCH_SIZE

``bench/test_busy.py``'s quiet case unrolled (784-128-10 sigmoid, float32; 60 rounds of 10,000
samples, "auto" and ``threads=2`` in turn, one backend): per round the ratio of the two rounds'
times, the chooser's looks at the machine, each of its calls (threads, samples, us a sample) and
the fixed runner's, its latest rates and probe interval. At the end the whole fit's ratio, and the
ratio over the rounds in which "auto" made no probe: what host noise alone does to a fit (session 69:
0.979-1.003x in four fits).
"""

import sys
import time

import numpy as np

from fastmlp import load_mnist, trainer
from fastmlp._adaptive import ThreadChooser
from fastmlp.backends import make_backend
from fastmlp.network import Architecture, init_params


def logged(chooser, calls):
    timed = chooser._timed

    def log(call, count, start, n):
        result = timed(call, count, start, n)
        calls.append((count, n, round(result[1] / n * 1e6, 2)))
        return result

    chooser._timed = log


def main(batch_size):
    X, y, _, _ = load_mnist()
    arch = Architecture((784, 128, 10), "sigmoid", "cross_entropy", dtype="float32")
    backend = make_backend("numba", arch, "auto")
    data = backend.prepare(X)
    params = init_params(arch, "xavier", seed=0)
    backend.warmup(params, data, y, batch_size)
    order = np.random.default_rng(0).permutation(len(y)).astype(np.int64)
    rounds = [order[i:i + 10_000] for i in range(0, 60_000, 10_000)]
    auto, fixed = ThreadChooser(backend.minibatch_threads.most), ThreadChooser(2, fixed=True)
    looks, auto_calls, fixed_calls = [], [], []
    look = auto._spare_core
    auto._spare_core = lambda: looks.append(look()) or looks[-1]
    logged(auto, auto_calls)
    logged(fixed, fixed_calls)
    total = {"auto": 0.0, "fixed": 0.0}
    plain = {"auto": 0.0, "fixed": 0.0}
    for r in range(60):
        seconds = {}
        looks.clear(), auto_calls.clear(), fixed_calls.clear()
        for name, chooser in (("auto", auto), ("fixed", fixed))[:: 1 if r % 2 == 0 else -1]:
            backend.minibatch_threads = chooser
            tic = time.perf_counter()
            trainer.train_epoch(backend, params, data, y, rounds[r % 6], 0.05, batch_size)
            seconds[name] = time.perf_counter() - tic
            total[name] += seconds[name]
        if all(count == 2 for count, _, _ in auto_calls) and len(auto_calls) == len(fixed_calls):
            for name in plain:
                plain[name] += seconds[name]
        print(r, f"ratio {seconds['fixed'] / seconds['auto']:.2f}", "looks", looks, "calls", auto_calls,
              "fixed", fixed_calls, "rate", {k: round(v * 1e6, 2) for k, v in auto.rate.items()},
              "every", auto.probe_every)
    print("fit ratio", round(total["fixed"] / total["auto"], 4),
          "rounds without probes", round(plain["fixed"] / plain["auto"], 4))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 32)
