"""Averaged weights for the 784-128-10 sigmoid per-sample row (issue 9's 1.7% target): tried, not kept.

    FASTMLP_DATA=../shared/data/mnist python bench/experiments/weight_averaging.py SEED LR MOMENTUM SCHEDULE ['{options}']

Trains 784-128-10 sigmoid per-sample SGD for 5 epochs (Nesterov when MOMENTUM > 0; extra fit
options as a Python dict), and after every chunk of 8,192 samples keeps exponential moving averages
of the weights (decays 0.5, 0.8, 0.9, 0.95 per chunk) and the mean of the last epoch's chunks (tail
averaging). Prints the MNIST test error of the final weights and of each average.
"""

import ast
import sys

import numpy as np

import fastmlp
from fastmlp import _numba_backend
from fastmlp.data import load_mnist

DECAYS = (0.5, 0.8, 0.9, 0.95)
EPOCHS = 5


def main():
    if len(sys.argv) < 5 or sys.argv[1] in ("-h", "--help"):
        raise SystemExit(__doc__)
    seed, lr, momentum, schedule = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    extra = ast.literal_eval(sys.argv[5]) if len(sys.argv) > 5 else {}
    X, y, X_test, y_test = load_mnist(download=False)
    averages, tail, chunks = {}, [], []
    chunks_per_epoch = -(-len(y) // 8192)
    train_chunk = _numba_backend.NumbaBackend.train_chunk

    def averaging(self, params, *args, **kwargs):
        result = train_chunk(self, params, *args, **kwargs)
        if len(args[2]) <= 2:  # the fit's warm-up call on two samples (on a copy)
            return result
        chunks.append(1)
        for decay in DECAYS:
            averages[decay] = params.astype(np.float64) if decay not in averages else (
                decay * averages[decay] + (1 - decay) * params)
        if len(chunks) > (EPOCHS - 1) * chunks_per_epoch:
            tail.append(params.astype(np.float64))
        return result

    _numba_backend.NumbaBackend.train_chunk = averaging
    model = fastmlp.MLP([784, 128, 10], activation="sigmoid", backend="numba", seed=seed, threads=1)
    options = dict(epochs=EPOCHS, batch_size=1, lr=lr, lr_schedule=schedule, progress=False, **extra)
    if momentum:
        options.update(momentum=momentum, nesterov=True)
    model.fit(X, y, **options)
    errors = {"final": 1 - model.score(X_test, y_test)}
    for name, weights in [*((f"ema {d}", a) for d, a in averages.items()), ("last epoch's mean", np.mean(tail, axis=0))]:
        model.params_[...] = weights.astype(model.params_.dtype)
        errors[name] = 1 - model.score(X_test, y_test)
    print(f"seed {seed}, lr {lr}, momentum {momentum}, {schedule}, {extra}: "
          + ", ".join(f"{name} {100 * error:.2f}%" for name, error in errors.items()))


if __name__ == "__main__":
    main()
