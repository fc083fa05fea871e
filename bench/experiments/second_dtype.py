"""A process that fits 784-128-10 for each dtype in turn on one cache: each fit's wall time.

Session 60 (BENCHMARKS.md): a process that held a kernel for float32 (loaded from the cache)
compiled the float64 one in line, as if no second process could help. Run it once with
``DTYPES=float32`` to warm the cache for float32 (wait for its second process to end), then with
both::

    DTYPES=float32 NUMBA_CACHE_DIR=DIR python bench/experiments/second_dtype.py 32
    NUMBA_CACHE_DIR=DIR python bench/experiments/second_dtype.py 32

Prints {dtype: seconds} and the second processes this process started (plan, dtype, inputs).
Synthetic MNIST-like data: 3,000 uint8 images, 19% of pixels nonzero, two epochs.
"""

import json
import os
import sys
import time

import numpy as np

from fastmlp import MLP, _prewarm

batch = int(sys.argv[1]) if len(sys.argv) > 1 else 32
rng = np.random.default_rng(0)
X = ((rng.random((3000, 784)) < 0.19) * rng.integers(1, 256, (3000, 784))).astype(np.uint8)
y = rng.integers(0, 10, 3000)
seconds = {}
for dtype in os.environ.get("DTYPES", "float32,float64").split(","):
    tic = time.perf_counter()
    MLP([784, 128, 10], dtype=dtype, seed=0).fit(X, y, epochs=2, batch_size=batch, progress=False)
    seconds[dtype] = round(time.perf_counter() - tic, 2)
print(json.dumps(seconds))
print([getattr(process, "fastmlp_plan", None) for process in _prewarm._STARTED])
