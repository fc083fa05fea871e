"""The mini-batch kernel's first-layer forward sums (784-128-10, float32) in five orders of
work that all give the kernel's bits: which one is fastest on this CPU?

    FASTMLP_DATA=../shared/data/mnist python bench/experiments/sparse_forward_orders.py [BATCH]

One thread, a batch of BATCH (128) images drawn from the first 20,000, W random; microseconds
per sample of the whole batch's sums, three rounds:

- block4 x2: the kernel without AVX-512 (``_sparse_forward_block4`` per four vectors of sums in
  registers, each sample's nonzero pixels in CSR order);
- block8: one block of eight vectors (unmasked: all 128 sums in registers);
- two samples: two samples' blocks of four at once (eight independent chains);
- by input: the batch's nonzeros sorted by pixel (a counting sort), each pixel's row of W in
  registers, added to the rows of sums that pixel lights (read, add, store); pixels two at a time
  over the merged list of their images ("pairs", the kernel's ``_merge_inputs``); the sort and
  the merge timed separately;
- sharing rows: two samples over the union of their pixels, each vector of W loaded once for both
  (0 where a sample's pixel is dark: the same sums).

Every order sums each output over the sample's pixels in ascending order, so each prints "same
bits". (bench/experiments/first_layer_bandwidth.py measures what bounds the loops.)
"""

import sys
import time

import numpy as np
from numba import njit

from fastmlp.data import load_mnist
from fastmlp.kernels._config import KERNEL_OPTIONS
from fastmlp.kernels.linear import _row, _sparse_forward_block4, sparse_rows
from fastmlp.kernels.minibatch import _merge_inputs
from fastmlp.kernels.vectors import lanes, vfma, vload, vsplat, vstore


@njit(**KERNEL_OPTIONS)
def block8(z, W, indices, values, scale):
    L = lanes(z)
    a0 = vsplat(z, 0); a1 = a0; a2 = a0; a3 = a0; a4 = a0; a5 = a0; a6 = a0; a7 = a0
    for p in range(indices.shape[0]):
        x = vsplat(z, values[p] * scale)
        w = _row(W, indices[p])
        a0 = vfma(x, vload(w, 0), a0)
        a1 = vfma(x, vload(w, L), a1)
        a2 = vfma(x, vload(w, 2 * L), a2)
        a3 = vfma(x, vload(w, 3 * L), a3)
        a4 = vfma(x, vload(w, 4 * L), a4)
        a5 = vfma(x, vload(w, 5 * L), a5)
        a6 = vfma(x, vload(w, 6 * L), a6)
        a7 = vfma(x, vload(w, 7 * L), a7)
    vstore(z, 0, a0); vstore(z, L, a1); vstore(z, 2 * L, a2); vstore(z, 3 * L, a3)
    vstore(z, 4 * L, a4); vstore(z, 5 * L, a5); vstore(z, 6 * L, a6); vstore(z, 7 * L, a7)

@njit(**KERNEL_OPTIONS)
def pair4(z, y, W, i1, v1, i2, v2, scale, c):
    """Two samples' column block c (four vectors) at once: eight independent chains."""
    L = lanes(z)
    a0 = vsplat(z, 0); a1 = a0; a2 = a0; a3 = a0
    b0 = a0; b1 = a0; b2 = a0; b3 = a0
    n = min(i1.shape[0], i2.shape[0])
    for p in range(n):
        x = vsplat(z, v1[p] * scale)
        w = _row(W, i1[p])
        t = vsplat(z, v2[p] * scale)
        u = _row(W, i2[p])
        a0 = vfma(x, vload(w, c), a0)
        b0 = vfma(t, vload(u, c), b0)
        a1 = vfma(x, vload(w, c + L), a1)
        b1 = vfma(t, vload(u, c + L), b1)
        a2 = vfma(x, vload(w, c + 2 * L), a2)
        b2 = vfma(t, vload(u, c + 2 * L), b2)
        a3 = vfma(x, vload(w, c + 3 * L), a3)
        b3 = vfma(t, vload(u, c + 3 * L), b3)
    for p in range(n, i1.shape[0]):
        x = vsplat(z, v1[p] * scale)
        w = _row(W, i1[p])
        a0 = vfma(x, vload(w, c), a0)
        a1 = vfma(x, vload(w, c + L), a1)
        a2 = vfma(x, vload(w, c + 2 * L), a2)
        a3 = vfma(x, vload(w, c + 3 * L), a3)
    for p in range(n, i2.shape[0]):
        t = vsplat(z, v2[p] * scale)
        u = _row(W, i2[p])
        b0 = vfma(t, vload(u, c), b0)
        b1 = vfma(t, vload(u, c + L), b1)
        b2 = vfma(t, vload(u, c + 2 * L), b2)
        b3 = vfma(t, vload(u, c + 3 * L), b3)
    vstore(z, c, a0); vstore(z, c + L, a1); vstore(z, c + 2 * L, a2); vstore(z, c + 3 * L, a3)
    vstore(y, c, b0); vstore(y, c + L, b1); vstore(y, c + 2 * L, b2); vstore(y, c + 3 * L, b3)

@njit(**KERNEL_OPTIONS)
def run(kind, out, W, indptr, indices, values, scale, batch, reps):
    H = out.shape[1]
    L = lanes(out[0])
    no_bias = W[0, :0]
    for _ in range(reps):
        if kind == 0:
            for r in range(batch.shape[0]):
                i = batch[r]
                for c in range(0, H, 4 * L):
                    _sparse_forward_block4(out[r], W, no_bias, indices[indptr[i]:indptr[i + 1]],
                                           values[indptr[i]:indptr[i + 1]], scale, c)
        elif kind == 1:
            for r in range(batch.shape[0]):
                i = batch[r]
                block8(out[r], W, indices[indptr[i]:indptr[i + 1]], values[indptr[i]:indptr[i + 1]], scale)
        else:
            r = 0
            while r + 1 < batch.shape[0]:
                i = batch[r]; k = batch[r + 1]
                for c in range(0, H, 4 * L):
                    pair4(out[r], out[r + 1], W, indices[indptr[i]:indptr[i + 1]], values[indptr[i]:indptr[i + 1]],
                          indices[indptr[k]:indptr[k + 1]], values[indptr[k]:indptr[k + 1]], scale, c)
                r += 2


@njit(**KERNEL_OPTIONS)
def csc_build(starts, rows, xs, indptr, indices, values, scale, batch, j0, j1):
    """counting sort of the batch's nonzeros in [j0, j1) by input; rows ascending within an input."""
    width = j1 - j0
    starts[: width + 1] = 0
    for r in range(batch.shape[0]):
        i = batch[r]
        for p in range(indptr[i], indptr[i + 1]):
            j = indices[p]
            if j0 <= j < j1:
                starts[j - j0 + 1] += 1
    for j in range(width):
        starts[j + 1] += starts[j]
    fill = starts[:width].copy()
    for r in range(batch.shape[0]):
        i = batch[r]
        for p in range(indptr[i], indptr[i + 1]):
            j = indices[p]
            if j0 <= j < j1:
                q = fill[j - j0]
                rows[q] = r
                xs[q] = values[p] * scale
                fill[j - j0] = q + 1


@njit(**KERNEL_OPTIONS)
def pairs_build(pstart, prow, px0, px1, starts, rows, xs, width, n_rows):
    n_pairs = (width + 1) // 2
    m = 0
    pstart[0] = 0
    for k in range(n_pairs):
        j = 2 * k
        a = starts[j]
        b = starts[j + 1]
        c = starts[j + 2] if j + 1 < width else b
        m += _merge_inputs(prow[m:], px0[m:], px1[m:], rows, xs, a, b, c, n_rows)
        pstart[k + 1] = m


@njit(**KERNEL_OPTIONS)
def pairs_forward(out, W, pstart, prow, px0, px1, j0, width):
    H = out.shape[1]
    L = lanes(out[0])
    n_pairs = (width + 1) // 2
    for c in range(0, H, 4 * L):
        for k in range(n_pairs):
            a = pstart[k]
            b = pstart[k + 1]
            if a == b:
                continue
            w = _row(W, j0 + 2 * k)
            v = _row(W, j0 + min(2 * k + 1, width - 1))
            w0 = vload(w, c); w1 = vload(w, c + L); w2 = vload(w, c + 2 * L); w3 = vload(w, c + 3 * L)
            v0 = vload(v, c); v1 = vload(v, c + L); v2 = vload(v, c + 2 * L); v3 = vload(v, c + 3 * L)
            for q in range(a, b):
                z = out[prow[q]]
                x = vsplat(z, px0[q])
                y = vsplat(z, px1[q])
                vstore(z, c, vfma(y, v0, vfma(x, w0, vload(z, c))))
                vstore(z, c + L, vfma(y, v1, vfma(x, w1, vload(z, c + L))))
                vstore(z, c + 2 * L, vfma(y, v2, vfma(x, w2, vload(z, c + 2 * L))))
                vstore(z, c + 3 * L, vfma(y, v3, vfma(x, w3, vload(z, c + 3 * L))))


@njit(**KERNEL_OPTIONS)
def merge_samples(mj, mxa, mxb, ia, va, ib, vb, scale):
    """the union of two samples' ascending inputs, with each one's value (0 where it is dark)."""
    zero = mxa.dtype.type(0)
    p = 0
    q = 0
    m = 0
    na = ia.shape[0]
    nb = ib.shape[0]
    while p < na and q < nb:
        ja = ia[p]
        jb = ib[q]
        if ja == jb:
            mj[m] = ja; mxa[m] = va[p] * scale; mxb[m] = vb[q] * scale; p += 1; q += 1
        elif ja < jb:
            mj[m] = ja; mxa[m] = va[p] * scale; mxb[m] = zero; p += 1
        else:
            mj[m] = jb; mxa[m] = zero; mxb[m] = vb[q] * scale; q += 1
        m += 1
    while p < na:
        mj[m] = ia[p]; mxa[m] = va[p] * scale; mxb[m] = zero; p += 1; m += 1
    while q < nb:
        mj[m] = ib[q]; mxa[m] = zero; mxb[m] = vb[q] * scale; q += 1; m += 1
    return m


@njit(**KERNEL_OPTIONS)
def shared4(z, y, W, mj, mxa, mxb, m, c):
    L = lanes(z)
    a0 = vsplat(z, 0); a1 = a0; a2 = a0; a3 = a0
    b0 = a0; b1 = a0; b2 = a0; b3 = a0
    for q in range(m):
        w = _row(W, mj[q])
        x = vsplat(z, mxa[q])
        t = vsplat(z, mxb[q])
        w0 = vload(w, c)
        a0 = vfma(x, w0, a0)
        b0 = vfma(t, w0, b0)
        w1 = vload(w, c + L)
        a1 = vfma(x, w1, a1)
        b1 = vfma(t, w1, b1)
        w2 = vload(w, c + 2 * L)
        a2 = vfma(x, w2, a2)
        b2 = vfma(t, w2, b2)
        w3 = vload(w, c + 3 * L)
        a3 = vfma(x, w3, a3)
        b3 = vfma(t, w3, b3)
    vstore(z, c, a0); vstore(z, c + L, a1); vstore(z, c + 2 * L, a2); vstore(z, c + 3 * L, a3)
    vstore(y, c, b0); vstore(y, c + L, b1); vstore(y, c + 2 * L, b2); vstore(y, c + 3 * L, b3)


@njit(**KERNEL_OPTIONS)
def run_pairs(out, W, indptr, indices, values, scale, batch, reps, stage):
    B = batch.shape[0]
    starts = np.zeros(W.shape[0] + 2, np.int64)
    rows = np.empty(B * W.shape[0], np.int32)
    xs = np.empty(B * W.shape[0], W.dtype)
    pstart = np.zeros(W.shape[0] + 2, np.int64)
    prow = np.empty(B * W.shape[0], np.int32)
    px0 = np.empty(B * W.shape[0], W.dtype)
    px1 = np.empty(B * W.shape[0], W.dtype)
    for _ in range(reps):
        out[:] = 0
        for part in range(2):
            j0 = W.shape[0] * part // 2
            j1 = W.shape[0] * (part + 1) // 2
            csc_build(starts, rows, xs, indptr, indices, values, scale, batch, j0, j1)
            if stage >= 1:
                pairs_build(pstart, prow, px0, px1, starts, rows, xs, j1 - j0, B)
            if stage >= 2:
                pairs_forward(out, W, pstart, prow, px0, px1, j0, j1 - j0)


@njit(**KERNEL_OPTIONS)
def run_shared(out, W, indptr, indices, values, scale, batch, reps, merge_only):
    H = out.shape[1]
    L = lanes(out[0])
    mj = np.empty(2 * W.shape[0], np.int32)
    mxa = np.empty(2 * W.shape[0], W.dtype)
    mxb = np.empty(2 * W.shape[0], W.dtype)
    total = 0
    for _ in range(reps):
        r = 0
        while r + 1 < batch.shape[0]:
            i = batch[r]; k = batch[r + 1]
            m = merge_samples(mj, mxa, mxb, indices[indptr[i]:indptr[i + 1]], values[indptr[i]:indptr[i + 1]],
                              indices[indptr[k]:indptr[k + 1]], values[indptr[k]:indptr[k + 1]], scale)
            total += m
            if not merge_only:
                for c in range(0, H, 4 * L):
                    shared4(out[r], out[r + 1], W, mj, mxa, mxb, m, c)
            r += 2
    return total


def main():
    batch_size = int(sys.argv[1]) if len(sys.argv) > 1 else 128
    X = load_mnist()[0][:20000]
    indptr, indices, values = sparse_rows(X)
    rng = np.random.default_rng(0)
    W = rng.normal(size=(784, 128)).astype(np.float32)
    batch = rng.choice(len(X), batch_size, replace=False).astype(np.int64)
    scale = np.float32(1 / 255)
    reps = 200
    outs = [np.zeros((batch_size, 128), np.float32) for _ in range(5)]
    for kind in range(3):
        run(kind, outs[kind], W, indptr, indices, values, scale, batch, 1)
    run_pairs(outs[3], W, indptr, indices, values, scale, batch, 1, 2)
    union = run_shared(outs[4], W, indptr, indices, values, scale, batch, 1, False)
    print(f"{batch_size} images, {len(indices) / len(X):.1f} nonzero pixels per image, two images light "
          f"{union / (batch_size // 2):.1f} together; same bits:", all(np.array_equal(outs[0], o) for o in outs[1:]))

    def per_sample(function, *args):
        start = time.perf_counter()
        function(*args)
        return (time.perf_counter() - start) / reps / batch_size * 1e6

    for _ in range(3):
        row = [per_sample(run, kind, outs[kind], W, indptr, indices, values, scale, batch, reps) for kind in range(3)]
        stages = [per_sample(run_pairs, outs[3], W, indptr, indices, values, scale, batch, reps, stage)
                  for stage in range(3)]
        merge = per_sample(run_shared, outs[4], W, indptr, indices, values, scale, batch, reps, True)
        shared = per_sample(run_shared, outs[4], W, indptr, indices, values, scale, batch, reps, False)
        print(f"us/sample: block4 x2 {row[0]:.3f}  block8 {row[1]:.3f}  two samples {row[2]:.3f}  "
              f"by input {stages[2]:.3f} (sort {stages[0]:.3f}, pairs {stages[1] - stages[0]:.3f})  "
              f"sharing rows {shared:.3f} (merge {merge:.3f})")


if __name__ == "__main__":
    main()
