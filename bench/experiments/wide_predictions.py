"""Small predictions of wide networks (audit 64's script): python bench/experiments/wide_predictions.py

784-512-512-10, 784-1024-1024-10 and 784-2048-2048-10 (initialised, not trained; threads=1)
predict one row and 16 rows of 64 synthetic rows of 784 inputs (80% zero): the best of 30 calls.
"""

import time

import numpy as np

from fastmlp import MLP

rng = np.random.default_rng(0)
X = rng.integers(0, 256, size=(64, 784)).astype(np.uint8)
X[rng.random(X.shape) < 0.8] = 0


def fastest(call, rounds=30):
    best = float("inf")
    for _ in range(rounds):
        tic = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - tic)
    return best * 1e3


for layers in ([784, 512, 512, 10], [784, 1024, 1024, 10], [784, 2048, 2048, 10]):
    model = MLP(layers, seed=0, threads=1).initialize()
    model.predict(X[:1])
    print(layers, " ".join(f"predict({n} rows) {fastest(lambda: model.predict(X[:n])):.2f} ms" for n in (1, 16)))
