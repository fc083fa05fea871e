"""The per-sample first layer alone: an epoch's forward sums and steps over rows of 128 and 256.

    FASTMLP_DATA=../shared/data/mnist python bench/experiments/first_layer_rows.py

``linear.sparse_row_forward`` and ``sparse_row_update`` over the nonzero pixels of the 60,000
MNIST images in a random order, on a float32 first layer of 784 rows of 128 (plain SGD's) and 256
(the momentum kernel's modal rows c1 | c2), nothing else: forward only, step only, and both, as
microseconds per sample (median of 5 rounds). The steps are tiny (lr 1e-9), so the weights stay put.
"""

import os
import statistics
import time

import numpy as np
from numba import njit

import fastmlp
from fastmlp.kernels.linear import sparse_row_forward, sparse_row_update, sparse_rows

MODES = {0: "forward", 1: "step", 2: "forward + step"}


@njit
def first_layer_epoch(W, z, dz, indptr, indices, values, order, scale, mode):
    for s in range(order.shape[0]):
        i = order[s]
        rows, pixels = indices[indptr[i] : indptr[i + 1]], values[indptr[i] : indptr[i + 1]]
        if mode != 1:
            sparse_row_forward(z, W, z[:0], rows, pixels, scale)
        if mode != 0:
            sparse_row_update(W, dz[:0], dz, rows, pixels, scale, np.float32(1e-9))
        dz[0] = z[0] * np.float32(1e-3)  # each sample's step depends on its forward sum


def main():
    X, _, _, _ = fastmlp.load_mnist(os.environ.get("FASTMLP_DATA"), download=False)
    indptr, indices, values = sparse_rows(X)
    order = np.random.default_rng(0).permutation(len(X)).astype(np.int64)
    scale = np.float32(1 / 255)
    times = {}
    for r in range(6):  # round 0 compiles and warms up
        for width in (128, 256):
            W = np.random.default_rng(1).standard_normal((784, width)).astype(np.float32) * 0.01
            z, dz = np.zeros(width, np.float32), np.full(width, 1e-3, np.float32)
            for mode in MODES:
                tic = time.perf_counter()
                first_layer_epoch(W, z, dz, indptr, indices, values, order if r else order[:100], scale, mode)
                if r:
                    times.setdefault((width, mode), []).append((time.perf_counter() - tic) / len(order))
    for (width, mode), seconds in sorted(times.items()):
        print(f"rows of {width}: {MODES[mode]:15s} {statistics.median(seconds) * 1e6:.2f} us per sample")


if __name__ == "__main__":
    main()
