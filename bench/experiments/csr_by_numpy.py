"""The conversion to CSR rows, compiled against NumPy's (``sparse_rows(..., compiled=False)``).

    FASTMLP_DATA=../shared/data/mnist python bench/experiments/csr_by_numpy.py

The 60,000 MNIST training images as uint8, float32 and float64 pixels, split at the mini-batch
kernel's parts: the compiled kernels on two threads and on one, and NumPy, milliseconds (median of
5 alternating rounds), after checking that all three give the same arrays.
"""

import time

import numpy as np

from fastmlp.data import load_mnist
from fastmlp.kernels import PARTS, linear


def main():
    X = load_mnist(download=False)[0]
    ways = {
        "compiled, 2 threads": lambda x: linear.sparse_rows(x, 2, parts=PARTS),
        "compiled, 1 thread": lambda x: linear.sparse_rows(x, 1, parts=PARTS),
        "NumPy": lambda x: linear.sparse_rows(x, parts=PARTS, compiled=False),
    }
    for dtype in (np.uint8, np.float32, np.float64):
        x = X if dtype == np.uint8 else (X / 255).astype(dtype)
        results = [way(x) for way in ways.values()]
        same = all(np.array_equal(a, b) and a.dtype == b.dtype for other in results[1:]
                   for a, b in zip(results[0], other))
        times = {name: [] for name in ways}
        for _ in range(5):
            for name, way in ways.items():
                tic = time.perf_counter()
                way(x)
                times[name].append(time.perf_counter() - tic)
        print(f"{np.dtype(dtype).name}: " + ", ".join(f"{name} {np.median(t) * 1e3:.0f} ms" for name, t in times.items())
              + f"; same arrays: {same}")


if __name__ == "__main__":
    main()
