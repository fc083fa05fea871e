"""A partial_fit call of 32 samples on the scikit-learn drop-in, beside scikit-learn's own
(session 60)::

    python bench/experiments/estimator_partial_fit.py [ROUNDS]

MLPClassifier(hidden_layer_sizes=(128,), batch_size=32, solver="sgd") on synthetic MNIST-like
rows (3,200 x 784 float32 in [0, 1], 19% nonzero); each round is 100 calls on consecutive slices;
prints each estimator's minimum and median per call over the rounds.
"""

import sys
import time

import numpy as np
from sklearn.neural_network import MLPClassifier

from fastmlp import estimators

rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
rng = np.random.default_rng(0)
X = ((rng.random((3200, 784)) < 0.19) * rng.integers(1, 256, (3200, 784))).astype(np.float32) / 255
y = rng.integers(0, 10, 3200)
for name, cls in [("scikit-learn", MLPClassifier), ("fastmlp", estimators.MLPClassifier)]:
    model = cls(hidden_layer_sizes=(128,), batch_size=32, solver="sgd", learning_rate_init=0.1, random_state=0)
    model.partial_fit(X[:32], y[:32], classes=np.arange(10))
    per_call = []
    for _ in range(rounds):
        tic = time.perf_counter()
        for i in range(100):
            model.partial_fit(X[32 * i : 32 * i + 32], y[32 * i : 32 * i + 32])
        per_call.append((time.perf_counter() - tic) / 100 * 1e3)
    per_call.sort()
    print(f"{name}: min {per_call[0]:.3f} ms, median {per_call[len(per_call) // 2]:.3f} ms a partial_fit of 32 samples")
