"""The mini-batch first layer's forward (784-128-10, float32) by column blocks of W: can rows of W
come from L1 if each pass holds only 16 of the 128 units? (issue 12)

    FASTMLP_DATA=../shared/data/mnist python bench/experiments/column_blocks.py [BATCH]

AVX-512 only (a block is one 16-lane vector). W is copied block-major (8 blocks of 784 rows x 64 B,
50 KB each), and every sample of the batch passes over one block before the next. One thread,
BATCH (128) images drawn from the first 20,000, W random; microseconds per sample, five rounds
(a new batch for each case):

- block8: the kernel's order (all 128 sums of a sample in eight vectors, one row of W from L2
  per pixel; ``bench/experiments/sparse_forward_orders.py``);
- col1: one block at a time, a sample's 16 sums in one vector over its pixels;
- col4: the same with four samples' chains interleaved (the latency hidden);
- colh: col1 over the rows in two halves (392 rows, 25 KB: within a 32 KB L1), the sums stored
  and reloaded between them, x scaled ahead.

All give block8's bits (each sum over the sample's pixels in ascending order).
"""
import sys, time
import numpy as np
from numba import njit
from fastmlp.data import load_mnist
from fastmlp.kernels._config import KERNEL_OPTIONS
from fastmlp.kernels.linear import sparse_rows, _row
from fastmlp.kernels.vectors import lanes, vfma, vload, vsplat, vstore
sys.path.insert(0, "/work/main/bench/experiments")
from sparse_forward_orders import block8


@njit(**KERNEL_OPTIONS)
def col1(out, Wc, indptr, indices, values, scale, batch):
    L = lanes(out[0])
    nb = Wc.shape[0]
    for c in range(nb):
        Wb = Wc[c]
        for r in range(batch.shape[0]):
            i = batch[r]
            a = vsplat(out[0], 0)
            for q in range(indptr[i], indptr[i + 1]):
                a = vfma(vsplat(out[0], values[q] * scale), vload(_row(Wb, indices[q]), 0), a)
            vstore(out[r], c * L, a)


@njit(**KERNEL_OPTIONS)
def col4(out, Wc, indptr, indices, values, scale, batch):
    """four samples' chains interleaved up to the shortest, then each alone"""
    L = lanes(out[0])
    nb = Wc.shape[0]
    n = batch.shape[0]
    for c in range(nb):
        Wb = Wc[c]
        r = 0
        while r + 3 < n:
            s0 = indptr[batch[r]]; s1 = indptr[batch[r + 1]]; s2 = indptr[batch[r + 2]]; s3 = indptr[batch[r + 3]]
            e0 = indptr[batch[r] + 1]; e1 = indptr[batch[r + 1] + 1]; e2 = indptr[batch[r + 2] + 1]; e3 = indptr[batch[r + 3] + 1]
            m = min(min(e0 - s0, e1 - s1), min(e2 - s2, e3 - s3))
            a0 = vsplat(out[0], 0); a1 = a0; a2 = a0; a3 = a0
            for q in range(m):
                a0 = vfma(vsplat(out[0], values[s0 + q] * scale), vload(_row(Wb, indices[s0 + q]), 0), a0)
                a1 = vfma(vsplat(out[0], values[s1 + q] * scale), vload(_row(Wb, indices[s1 + q]), 0), a1)
                a2 = vfma(vsplat(out[0], values[s2 + q] * scale), vload(_row(Wb, indices[s2 + q]), 0), a2)
                a3 = vfma(vsplat(out[0], values[s3 + q] * scale), vload(_row(Wb, indices[s3 + q]), 0), a3)
            for q in range(s0 + m, e0):
                a0 = vfma(vsplat(out[0], values[q] * scale), vload(_row(Wb, indices[q]), 0), a0)
            for q in range(s1 + m, e1):
                a1 = vfma(vsplat(out[0], values[q] * scale), vload(_row(Wb, indices[q]), 0), a1)
            for q in range(s2 + m, e2):
                a2 = vfma(vsplat(out[0], values[q] * scale), vload(_row(Wb, indices[q]), 0), a2)
            for q in range(s3 + m, e3):
                a3 = vfma(vsplat(out[0], values[q] * scale), vload(_row(Wb, indices[q]), 0), a3)
            vstore(out[r], c * L, a0); vstore(out[r + 1], c * L, a1)
            vstore(out[r + 2], c * L, a2); vstore(out[r + 3], c * L, a3)
            r += 4
        while r < n:
            i = batch[r]
            a = vsplat(out[0], 0)
            for q in range(indptr[i], indptr[i + 1]):
                a = vfma(vsplat(out[0], values[q] * scale), vload(_row(Wb, indices[q]), 0), a)
            vstore(out[r], c * L, a)
            r += 1


@njit(**KERNEL_OPTIONS)
def colh(out, Wc, indptr, indices, values, scale, batch, mid, xs):
    """col1 with the rows in two halves (392 rows x 64 B = 25 KB: L1), x pre-scaled"""
    L = lanes(out[0])
    nb = Wc.shape[0]
    n = batch.shape[0]
    for r in range(n):
        i = batch[r]
        lo = indptr[i]
        hi = indptr[i + 1]
        m = lo
        while m < hi and indices[m] < 392:
            m += 1
        mid[r] = m
    for c in range(nb):
        Wb = Wc[c]
        for r in range(n):
            i = batch[r]
            a = vsplat(out[0], 0)
            for q in range(indptr[i], mid[r]):
                a = vfma(vsplat(out[0], xs[q]), vload(_row(Wb, indices[q]), 0), a)
            vstore(out[r], c * L, a)
        for r in range(n):
            i = batch[r]
            a = vload(out[r], c * L)
            for q in range(mid[r], indptr[i + 1]):
                a = vfma(vsplat(out[0], xs[q]), vload(_row(Wb, indices[q]), 0), a)
            vstore(out[r], c * L, a)


@njit(**KERNEL_OPTIONS)
def run(kind, out, W, Wc, indptr, indices, values, scale, batch, reps, mid, xs):
    for _ in range(reps):
        if kind == 3:
            colh(out, Wc, indptr, indices, values, scale, batch, mid, xs)
        elif kind == 0:
            for r in range(batch.shape[0]):
                i = batch[r]
                block8(out[r], W, indices[indptr[i]:indptr[i + 1]], values[indptr[i]:indptr[i + 1]], scale)
        elif kind == 1:
            col1(out, Wc, indptr, indices, values, scale, batch)
        else:
            col4(out, Wc, indptr, indices, values, scale, batch)


def main():
    batch_size = int(sys.argv[1]) if len(sys.argv) > 1 else 128
    X = load_mnist()[0][:20000]
    indptr, indices, values = sparse_rows(X)
    rng = np.random.default_rng(0)
    W = rng.normal(size=(784, 128)).astype(np.float32)
    L = 16
    Wc = np.ascontiguousarray(W.reshape(784, 128 // L, L).transpose(1, 0, 2))
    scale = np.float32(1 / 255)
    reps = 50
    outs = [np.zeros((batch_size, 128), np.float32) for _ in range(4)]
    mid = np.zeros(batch_size, np.int64)
    xs = (values * scale).astype(np.float32)
    batch = rng.choice(len(X), batch_size, replace=False).astype(np.int64)
    for k in range(4):
        run(k, outs[k], W, Wc, indptr, indices, values, scale, batch, 1, mid, xs)
    print("same bits:", [np.array_equal(outs[0], o) for o in outs[1:]])
    for _ in range(5):
        t = []
        for k in range(4):
            batch = rng.choice(len(X), batch_size, replace=False).astype(np.int64)
            s = time.perf_counter()
            run(k, outs[k], W, Wc, indptr, indices, values, scale, batch, reps, mid, xs)
            t.append((time.perf_counter() - s) / reps / batch_size * 1e6)
        print("us/sample: block8 %.3f  col1 %.3f  col4 %.3f  colh %.3f" % tuple(t))


if __name__ == "__main__":
    main()
