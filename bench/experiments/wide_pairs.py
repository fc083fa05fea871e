"""The first layer's sparse forward for wide rows (more than eight vectors of units: 784-500-150-10,
784-800-10), two samples at a time over the union of their pixels.

    FASTMLP_DATA=../shared/data/mnist python bench/experiments/wide_pairs.py [H] [ROUNDS]

Float32, H = 800 units by default, one thread, batches of 256 MNIST rows drawn from the first
20,000 images, part by part (PARTS blocks of W's rows, as the mini-batch kernel's step 1 runs
them). Three ways to compute the partial sums P[part, r] = x[r, part's inputs] @ W[part's rows]:

- "today": ``minibatch._sparse_forward8`` (eight rows of W per pass over z in memory), what the
  kernel runs for rows wider than eight vectors;
- "one row, register blocks": ``linear.sparse_forward_block`` per block of eight vectors (the
  sums in registers, one load of W per multiply-add; tried in session 31 inside the kernel:
  0.85-1.0x);
- "pair": two neighbouring rows of the batch at once over the union of their pixels in the part
  (merged per pair; 0 where a row does not light a pixel), sixteen vectors of sums in registers,
  each vector of W loaded once for both rows. Each row's sums take its pixels in the same order
  as the register block's, and a pixel it does not light adds 0 * w = 0: the same bits.

Needs AVX-512 (sixteen 64-byte accumulators plus a vector of W: 17 of its 32 registers).
Prints microseconds per sample (median of the alternated rounds) and the ratio to today's.
"""

import os
import statistics
import sys
import time

import numpy as np
from numba import njit

import fastmlp
from fastmlp.kernels._config import KERNEL_OPTIONS
from fastmlp.kernels.codes import PARTS
from fastmlp.kernels.linear import _row, sparse_forward_block, sparse_rows
from fastmlp.kernels.minibatch import _sparse_forward8
from fastmlp.kernels.vectors import REGISTER_BLOCK, lanes, vfma, vload, vload_part, vsplat, vstore, vstore_part


@njit(**KERNEL_OPTIONS)
def _today(P, W, part_ptr, indices, values, batch, scale):
    for part in range(PARTS):
        for r in range(batch.shape[0]):
            lo = part_ptr[batch[r] * PARTS + part]
            hi = part_ptr[batch[r] * PARTS + part + 1]
            _sparse_forward8(P[part, r], W, indices[lo:hi], values[lo:hi], scale)


@njit(**KERNEL_OPTIONS)
def _blocks(P, W, part_ptr, indices, values, batch, scale):
    L = lanes(W[0])
    H = W.shape[1]
    for part in range(PARTS):
        for r in range(batch.shape[0]):
            lo = part_ptr[batch[r] * PARTS + part]
            hi = part_ptr[batch[r] * PARTS + part + 1]
            for c in range(0, H, 8 * L):
                m = min(8 * L, H - c)
                if m > 4 * L:
                    sparse_forward_block(P[part, r], W, W[0, :0], indices[lo:hi], values[lo:hi], scale, c, m)
                else:
                    _block4(P[part, r], W, indices[lo:hi], values[lo:hi], scale, c, m)


@njit(**KERNEL_OPTIONS)
def _block4(z, W, indices, values, scale, c, m):
    """sparse_forward_block (no bias) for 0 < m <= 4L, every vector masked (it loads and stores
    its first four vectors whole)."""
    L = lanes(z)
    a0 = vsplat(z, 0)
    a1, a2, a3 = a0, a0, a0
    for p in range(indices.shape[0]):
        x = vsplat(z, values[p] * scale)
        w = _row(W, indices[p])
        a0 = vfma(x, vload_part(w, c, m), a0)
        a1 = vfma(x, vload_part(w, c + L, m - L), a1)
        a2 = vfma(x, vload_part(w, c + 2 * L, m - 2 * L), a2)
        a3 = vfma(x, vload_part(w, c + 3 * L, m - 3 * L), a3)
    vstore_part(z, c, a0, m)
    vstore_part(z, c + L, a1, m - L)
    vstore_part(z, c + 2 * L, a2, m - 2 * L)
    vstore_part(z, c + 3 * L, a3, m - 3 * L)


@njit(**KERNEL_OPTIONS)
def _merge_spans(rows, x0, x1, indices, values, scale, a, b, c, d):
    """indices[a:b] and indices[c:d] (each ascending) merged into rows[:m], the inputs (values *
    scale) in x0 and x1, 0 where a row does not light the input; m."""
    zero = x0.dtype.type(0)
    p, q, m = a, c, 0
    while p < b and q < d:
        i0 = indices[p]
        i1 = indices[q]
        if i0 == i1:
            rows[m] = i0
            x0[m] = values[p] * scale
            x1[m] = values[q] * scale
            p += 1
            q += 1
        elif i0 < i1:
            rows[m] = i0
            x0[m] = values[p] * scale
            x1[m] = zero
            p += 1
        else:
            rows[m] = i1
            x0[m] = zero
            x1[m] = values[q] * scale
            q += 1
        m += 1
    while p < b:
        rows[m] = indices[p]
        x0[m] = values[p] * scale
        x1[m] = zero
        p += 1
        m += 1
    while q < d:
        rows[m] = indices[q]
        x0[m] = zero
        x1[m] = values[q] * scale
        q += 1
        m += 1
    return m


@njit(**KERNEL_OPTIONS)
def _pair_block(z, y, W, rows, x0, x1, n, c, m):
    """z[c:c+m] = sum_q x0[q] W[rows[q], c:c+m] and y[c:c+m] likewise with x1, q < n; 4L < m <= 8L
    (the first four vectors whole, the last four masked)."""
    L = lanes(z)
    a0 = vsplat(z, 0)
    a1, a2, a3, a4, a5, a6, a7 = a0, a0, a0, a0, a0, a0, a0
    b0, b1, b2, b3, b4, b5, b6, b7 = a0, a0, a0, a0, a0, a0, a0, a0
    for q in range(n):
        w = _row(W, rows[q])
        u = vsplat(z, x0[q])
        v = vsplat(z, x1[q])
        t = vload(w, c)
        a0, b0 = vfma(u, t, a0), vfma(v, t, b0)
        t = vload(w, c + L)
        a1, b1 = vfma(u, t, a1), vfma(v, t, b1)
        t = vload(w, c + 2 * L)
        a2, b2 = vfma(u, t, a2), vfma(v, t, b2)
        t = vload(w, c + 3 * L)
        a3, b3 = vfma(u, t, a3), vfma(v, t, b3)
        t = vload_part(w, c + 4 * L, m - 4 * L)
        a4, b4 = vfma(u, t, a4), vfma(v, t, b4)
        t = vload_part(w, c + 5 * L, m - 5 * L)
        a5, b5 = vfma(u, t, a5), vfma(v, t, b5)
        t = vload_part(w, c + 6 * L, m - 6 * L)
        a6, b6 = vfma(u, t, a6), vfma(v, t, b6)
        t = vload_part(w, c + 7 * L, m - 7 * L)
        a7, b7 = vfma(u, t, a7), vfma(v, t, b7)
    vstore(z, c, a0)
    vstore(z, c + L, a1)
    vstore(z, c + 2 * L, a2)
    vstore(z, c + 3 * L, a3)
    vstore_part(z, c + 4 * L, a4, m - 4 * L)
    vstore_part(z, c + 5 * L, a5, m - 5 * L)
    vstore_part(z, c + 6 * L, a6, m - 6 * L)
    vstore_part(z, c + 7 * L, a7, m - 7 * L)
    vstore(y, c, b0)
    vstore(y, c + L, b1)
    vstore(y, c + 2 * L, b2)
    vstore(y, c + 3 * L, b3)
    vstore_part(y, c + 4 * L, b4, m - 4 * L)
    vstore_part(y, c + 5 * L, b5, m - 5 * L)
    vstore_part(y, c + 6 * L, b6, m - 6 * L)
    vstore_part(y, c + 7 * L, b7, m - 7 * L)


@njit(**KERNEL_OPTIONS)
def _pair_block4(z, y, W, rows, x0, x1, n, c, m):
    """_pair_block for 0 < m <= 4L, every vector masked."""
    L = lanes(z)
    a0 = vsplat(z, 0)
    a1, a2, a3 = a0, a0, a0
    b0, b1, b2, b3 = a0, a0, a0, a0
    for q in range(n):
        w = _row(W, rows[q])
        u = vsplat(z, x0[q])
        v = vsplat(z, x1[q])
        t = vload_part(w, c, m)
        a0, b0 = vfma(u, t, a0), vfma(v, t, b0)
        t = vload_part(w, c + L, m - L)
        a1, b1 = vfma(u, t, a1), vfma(v, t, b1)
        t = vload_part(w, c + 2 * L, m - 2 * L)
        a2, b2 = vfma(u, t, a2), vfma(v, t, b2)
        t = vload_part(w, c + 3 * L, m - 3 * L)
        a3, b3 = vfma(u, t, a3), vfma(v, t, b3)
    vstore_part(z, c, a0, m)
    vstore_part(z, c + L, a1, m - L)
    vstore_part(z, c + 2 * L, a2, m - 2 * L)
    vstore_part(z, c + 3 * L, a3, m - 3 * L)
    vstore_part(y, c, b0, m)
    vstore_part(y, c + L, b1, m - L)
    vstore_part(y, c + 2 * L, b2, m - 2 * L)
    vstore_part(y, c + 3 * L, b3, m - 3 * L)


@njit(**KERNEL_OPTIONS)
def _pairs(P, W, part_ptr, indices, values, batch, scale, rows, x0, x1):
    L = lanes(W[0])
    H = W.shape[1]
    for part in range(PARTS):
        for r in range(0, batch.shape[0] - 1, 2):
            n = _merge_spans(rows, x0, x1, indices, values, scale,
                             part_ptr[batch[r] * PARTS + part], part_ptr[batch[r] * PARTS + part + 1],
                             part_ptr[batch[r + 1] * PARTS + part], part_ptr[batch[r + 1] * PARTS + part + 1])
            for c in range(0, H, 8 * L):
                m = min(8 * L, H - c)
                if m > 4 * L:
                    _pair_block(P[part, r], P[part, r + 1], W, rows, x0, x1, n, c, m)
                else:
                    _pair_block4(P[part, r], P[part, r + 1], W, rows, x0, x1, n, c, m)


@njit(**KERNEL_OPTIONS)
def _pair_passes(z, y, W, rows, x0, x1, n):
    """z = sum_q x0[q] W[rows[q]], y likewise with x1, q < n, over z and y in memory: four rows of
    W per pass over them (each element of W loaded once for both sums; W's rows read whole, in
    order, as _sparse_forward8 reads them)."""
    z[:] = 0
    y[:] = 0
    q = 0
    while q + 4 <= n:
        a0, a1, a2, a3 = x0[q], x0[q + 1], x0[q + 2], x0[q + 3]
        b0, b1, b2, b3 = x1[q], x1[q + 1], x1[q + 2], x1[q + 3]
        w0 = W[rows[q]]
        w1 = W[rows[q + 1]]
        w2 = W[rows[q + 2]]
        w3 = W[rows[q + 3]]
        for k in range(z.shape[0]):
            t0, t1, t2, t3 = w0[k], w1[k], w2[k], w3[k]
            z[k] += (a0 * t0 + a1 * t1) + (a2 * t2 + a3 * t3)
            y[k] += (b0 * t0 + b1 * t1) + (b2 * t2 + b3 * t3)
        q += 4
    for q in range(q, n):
        a, b = x0[q], x1[q]
        w = W[rows[q]]
        for k in range(z.shape[0]):
            z[k] += a * w[k]
            y[k] += b * w[k]


@njit(**KERNEL_OPTIONS)
def _pairs_passes(P, W, part_ptr, indices, values, batch, scale, rows, x0, x1):
    for part in range(PARTS):
        for r in range(0, batch.shape[0] - 1, 2):
            n = _merge_spans(rows, x0, x1, indices, values, scale,
                             part_ptr[batch[r] * PARTS + part], part_ptr[batch[r] * PARTS + part + 1],
                             part_ptr[batch[r + 1] * PARTS + part], part_ptr[batch[r + 1] * PARTS + part + 1])
            _pair_passes(P[part, r], P[part, r + 1], W, rows, x0, x1, n)


def main():
    H = int(sys.argv[1]) if len(sys.argv) > 1 else 800
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    if REGISTER_BLOCK != 8:
        sys.exit("needs AVX-512 (REGISTER_BLOCK 8)")
    X, _, _, _ = fastmlp.load_mnist(os.environ.get("FASTMLP_DATA"), download=False)
    part_ptr, indices, values = sparse_rows(X[:20000], parts=PARTS)[:3]
    rng = np.random.default_rng(0)
    W = (rng.standard_normal((784, H)) * 0.05).astype(np.float32)
    scale = np.float32(1 / 255)
    batches = [rng.choice(20000, 256, replace=False).astype(np.int64) for _ in range(8)]
    outputs = {name: np.zeros((PARTS, 256, H), np.float32) for name in ("today", "blocks", "pair", "passes")}
    rows = np.empty(784, indices.dtype)
    x0 = np.empty(784, np.float32)
    x1 = np.empty(784, np.float32)
    cases = {
        "today (_sparse_forward8)": lambda: [_today(outputs["today"], W, part_ptr, indices, values, b, scale)
                                             for b in batches],
        "one row, register blocks": lambda: [_blocks(outputs["blocks"], W, part_ptr, indices, values, b, scale)
                                             for b in batches],
        "pair, merge included": lambda: [_pairs(outputs["pair"], W, part_ptr, indices, values, b, scale, rows, x0, x1)
                                         for b in batches],
        "pair, four rows per pass": lambda: [_pairs_passes(outputs["passes"], W, part_ptr, indices, values, b, scale,
                                                           rows, x0, x1) for b in batches],
    }
    for call in cases.values():
        call()
    assert np.array_equal(outputs["pair"], outputs["blocks"]), "the pair's sums differ from the register block's"
    assert np.allclose(outputs["pair"], outputs["today"], rtol=1e-5, atol=1e-5)
    assert np.allclose(outputs["passes"], outputs["today"], rtol=1e-5, atol=1e-5)
    seconds = {name: [] for name in cases}
    for _ in range(rounds):
        for name, call in cases.items():
            tic = time.perf_counter()
            call()
            seconds[name].append(time.perf_counter() - tic)
    samples = 256 * len(batches)
    base = statistics.median(seconds["today (_sparse_forward8)"])
    print(f"H = {H}, float32, one thread, {len(batches)} batches of 256 MNIST rows by part, {rounds} rounds")
    for name, s in seconds.items():
        med = statistics.median(s)
        print(f"{name:28s} {1e6 * med / samples:7.2f} us/sample  {base / med:5.3f}x today "
              f"(rounds {min(base / x for x in s):.3f}-{max(base / x for x in s):.3f})")


if __name__ == "__main__":
    main()
