"""Gathering each MNIST row's nonzeros, four ways (session 61; kernels.dense_rows_forward took
the branch-free one):

    FASTMLP_DATA=../shared/data/mnist python bench/experiments/row_gather.py

Over the 10,000 test rows, one thread, fastest of 20: with a branch per input, without one (every
input written, the count moved on past the nonzero ones), in chunks of 16 inputs skipped when
blank, and by 8-byte words skipped when zero.
"""

import time

import numpy as np
from numba import njit

import fastmlp

X, y, Xt, _ = fastmlp.load_mnist()
Xt = np.ascontiguousarray(Xt)
@njit(nogil=True, fastmath=True)
def branchy(x, indices, values):
    tot = 0
    for r in range(x.shape[0]):
        n = 0
        for j in range(x.shape[1]):
            if x[r, j] != 0:
                indices[n] = j; values[n] = x[r, j]; n += 1
        tot += n
    return tot
@njit(nogil=True, fastmath=True)
def branchless(x, indices, values):
    tot = 0
    for r in range(x.shape[0]):
        n = 0
        for j in range(x.shape[1]):
            v = x[r, j]
            indices[n] = j; values[n] = v; n += v != 0
        tot += n
    return tot
@njit(nogil=True, fastmath=True)
def chunked(x, indices, values):
    tot = 0
    D = x.shape[1]
    for r in range(x.shape[0]):
        n = 0
        for j0 in range(0, D, 16):
            j1 = min(j0 + 16, D)
            lit = 0
            for j in range(j0, j1):
                lit |= x[r, j]
            if lit != 0:
                for j in range(j0, j1):
                    v = x[r, j]
                    indices[n] = j; values[n] = v; n += v != 0
        tot += n
    return tot
ind = np.empty(800, np.int32); val = np.empty(800, np.uint8)
for f in (branchy, branchless, chunked):
    f(Xt[:10], ind, val)
    best = 1e9
    for _ in range(20):
        s = time.perf_counter(); t = f(Xt, ind, val); best = min(best, time.perf_counter() - s)
    print(f.__name__, round(best * 1e3, 2), "ms", t)
@njit(nogil=True, fastmath=True)
def words(x, w, indices, values):
    tot = 0
    D = x.shape[1]
    per = D // w.shape[1]
    for r in range(x.shape[0]):
        n = 0
        for k in range(w.shape[1]):
            if w[r, k] != 0:
                for j in range(k * per, k * per + per):
                    v = x[r, j]
                    indices[n] = j; values[n] = v; n += v != 0
        tot += n
    return tot
W8 = Xt.view(np.uint64)
words(Xt[:10], W8[:10], ind, val)
best = 1e9
for _ in range(20):
    s = time.perf_counter(); t = words(Xt, W8, ind, val); best = min(best, time.perf_counter() - s)
print("words", round(best * 1e3, 2), "ms", t, "zero words", (W8 == 0).mean())
