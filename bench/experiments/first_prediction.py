"""A first prediction's compile on an empty Numba cache (session 61):

    NUMBA_CACHE_DIR=$(mktemp -d) FASTMLP_BACKGROUND_COMPILE=0 python bench/experiments/first_prediction.py

784-32-10 sigmoid, per-sample training on 64 synthetic rows first (which compiles the training
kernels), then the first `predict`: its time and what it added to `compile_seconds_`.
"""

import time

import numpy as np

import fastmlp

rng = np.random.default_rng(0)
X = rng.integers(0, 256, size=(64, 784)).astype(np.uint8)
X[rng.random(X.shape) < 0.8] = 0
y = rng.integers(0, 10, 64)
model = fastmlp.MLP([784, 32, 10], seed=0, threads=1)
model.fit(X, y, epochs=1, batch_size=1, progress=False)
before = model.compile_seconds_
tic = time.perf_counter()
model.predict(X)
print(f"first predict {time.perf_counter() - tic:.2f} s (compile_seconds_ +{model.compile_seconds_ - before:.2f} s)")
