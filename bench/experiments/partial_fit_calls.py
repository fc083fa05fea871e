"""The time of a partial_fit call of 32 samples, batch by batch, once warm (session 60).

    python bench/experiments/partial_fit_calls.py [ROUNDS]

784-128-10 float32 on synthetic MNIST-like uint8 rows (19% nonzero); each round is 100 calls on
consecutive slices of 3,200 rows; prints the rounds' minimum and median per call, and an epoch of
``fit`` over the same rows divided into 100 (the same batches' training without the per-call work).
"""

import sys
import time

import numpy as np

import fastmlp

rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
rng = np.random.default_rng(0)
X = ((rng.random((3200, 784)) < 0.19) * rng.integers(1, 256, (3200, 784))).astype(np.uint8)
y = rng.integers(0, 10, 3200)
model = fastmlp.MLP([784, 128, 10], seed=0)
model.partial_fit(X[:32], y[:32], batch_size=32, progress=False)
per_call = []
for _ in range(rounds):
    tic = time.perf_counter()
    for i in range(100):
        model.partial_fit(X[32 * i : 32 * i + 32], y[32 * i : 32 * i + 32], batch_size=32, progress=False)
    per_call.append((time.perf_counter() - tic) / 100 * 1e3)
whole = fastmlp.MLP([784, 128, 10], seed=0)
whole.fit(X, y, epochs=1, batch_size=32, progress=False)
tic = time.perf_counter()
whole.fit(X, y, epochs=1, batch_size=32, progress=False)
epoch = (time.perf_counter() - tic) / 100 * 1e3
per_call.sort()
print(f"partial_fit of 32 samples: min {per_call[0]:.3f} ms, median {per_call[len(per_call) // 2]:.3f} ms a call; "
      f"fit's epoch per 32 samples {epoch:.3f} ms")
