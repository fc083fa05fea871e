"""What bounds the first layer's sparse products: one core's multiply-add rate against the rate
the kernel's register block reaches when W's rows come from L1, from L2, and from MNIST batches;
and the same for a block that shares each row of W between two samples.

    FASTMLP_DATA=../shared/data/mnist python bench/experiments/first_layer_bandwidth.py [H]

Float32, H = 128 units by default (784-128-10, the network of the roofline target). The
mini-batch kernel's first layer (``linear.sparse_forward_block``: H <= 8 vectors of sums in
registers, one vector multiply-add per 64-byte vector of W loaded) is timed on one thread over
nonzero "pixels" whose W rows are:

- one row, every time (its eight vectors stay in L1: the loop's own ceiling);
- 16 rows at random (8 KB at H = 128: L1);
- all 784 rows at random (392 KB at H = 128: L2, not L1);
- the nonzero pixels of MNIST images, batches of 256 drawn from the first 20,000, part by part
  (PARTS blocks of W's rows, as the kernel's step 1 runs them; the CSR rows themselves a cache
  miss, as an epoch meets them: the kernel prefetches them, this loop does not).

"gradient": the kernel's first-layer weight gradient at 128 units the same way, row by row
(``minibatch._sparse_gradient``: dz in registers, each row of dW read and written once per
input); "pair gradient" two rows at a time over their union, dW's row read and written once for
both; "fwd + grad": both products of a batch, the pair's with one merge per pair for the two, or
each from the bit masks; "masks built in the pass": the pair gradient building each pair's masks
from its CSR spans as it goes, as a kernel without a stored mask array would (session 67; the
batches' CSR rows are cache misses here, as they are not in the kernel, whose forward pass has
just read them: ``bench/experiments/pair-gradient.patch`` is the kernel's version).

"pair": the same rows for two samples at once (sixteen vectors of sums in registers, each vector
of W loaded once for both; AVX-512 only): on the synthetic rows both samples light every row;
on MNIST, consecutive rows of the batch over the union of their pixels in the part (0 where a
sample's pixel is zero: the same sums, bit for bit), merged beforehand ("merged ahead") or, as a
kernel would have to, per pair ("merge included").

Each is given in useful vector multiply-adds per nanosecond (a pair's zero terms not counted), as
a share of the core's own rate (twelve independent chains of register-only multiply-adds,
measured in the same run), and in bytes of W loaded per nanosecond. Seven alternating rounds,
medians.
"""

import os
import sys
import time

import numpy as np
from numba import njit
from numba.cpython.unsafe.numbers import trailing_zeros

import fastmlp
from fastmlp.kernels._config import KERNEL_OPTIONS
from fastmlp.kernels.codes import PARTS
from fastmlp.kernels.linear import _row, sparse_forward_block, sparse_rows
from fastmlp.kernels.minibatch import _sparse_gradient
from fastmlp.kernels.vectors import REGISTER_BLOCK, VECTOR_BYTES, lanes, vfma, vload, vload_part, vsplat, vstore, vstore_part

ROUNDS = 7
SYNTHETIC = 100_000  # nonzeros of the synthetic rows
PEAK_N = 2_000_000


@njit(**KERNEL_OPTIONS)
def _peak(z, n):
    """n x 12 vector multiply-adds in 12 independent chains, registers only; z [12 vectors]."""
    L = lanes(z)
    x = vload(z, 0)
    a0 = vload(z, L)
    a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11 = a0, a0, a0, a0, a0, a0, a0, a0, a0, a0, a0
    for _ in range(n):
        a0 = vfma(x, a0, x)
        a1 = vfma(x, a1, x)
        a2 = vfma(x, a2, x)
        a3 = vfma(x, a3, x)
        a4 = vfma(x, a4, x)
        a5 = vfma(x, a5, x)
        a6 = vfma(x, a6, x)
        a7 = vfma(x, a7, x)
        a8 = vfma(x, a8, x)
        a9 = vfma(x, a9, x)
        a10 = vfma(x, a10, x)
        a11 = vfma(x, a11, x)
    for k, a in enumerate((a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11)):
        vstore(z, k * L, a)


@njit(**KERNEL_OPTIONS)
def _rows(P, W, part_ptr, indices, values, batch, scale, n_parts):
    """P[part, r] = x[batch[r]] @ W over its nonzeros in the part, by the kernel's register block."""
    for part in range(n_parts):
        for r in range(batch.shape[0]):
            lo = part_ptr[batch[r] * n_parts + part]
            hi = part_ptr[batch[r] * n_parts + part + 1]
            sparse_forward_block(P[part, r], W, W[0, :0], indices[lo:hi], values[lo:hi], scale, 0, P.shape[2])


@njit(**KERNEL_OPTIONS)
def _pair_block(z, y, W, rows, x0, x1, m, scale):
    """z, y = the sums of x0 and of x1 over W[rows[:m]], each vector of W loaded once for both."""
    L = lanes(z)
    n = z.shape[0]
    a0 = vsplat(z, 0)
    a1, a2, a3, a4, a5, a6, a7 = a0, a0, a0, a0, a0, a0, a0
    b0, b1, b2, b3, b4, b5, b6, b7 = a0, a0, a0, a0, a0, a0, a0, a0
    for q in range(m):
        x = vsplat(z, x0[q] * scale)
        u = vsplat(z, x1[q] * scale)
        w = _row(W, rows[q])
        v = vload_part(w, 0, n)
        a0, b0 = vfma(x, v, a0), vfma(u, v, b0)
        v = vload_part(w, L, n - L)
        a1, b1 = vfma(x, v, a1), vfma(u, v, b1)
        v = vload_part(w, 2 * L, n - 2 * L)
        a2, b2 = vfma(x, v, a2), vfma(u, v, b2)
        v = vload_part(w, 3 * L, n - 3 * L)
        a3, b3 = vfma(x, v, a3), vfma(u, v, b3)
        v = vload_part(w, 4 * L, n - 4 * L)
        a4, b4 = vfma(x, v, a4), vfma(u, v, b4)
        v = vload_part(w, 5 * L, n - 5 * L)
        a5, b5 = vfma(x, v, a5), vfma(u, v, b5)
        v = vload_part(w, 6 * L, n - 6 * L)
        a6, b6 = vfma(x, v, a6), vfma(u, v, b6)
        v = vload_part(w, 7 * L, n - 7 * L)
        a7, b7 = vfma(x, v, a7), vfma(u, v, b7)
    for k, (a, b) in enumerate(((a0, b0), (a1, b1), (a2, b2), (a3, b3), (a4, b4), (a5, b5), (a6, b6), (a7, b7))):
        vstore_part(z, k * L, a, n - k * L)
        vstore_part(y, k * L, b, n - k * L)


@njit(**KERNEL_OPTIONS)
def _merge(rows, x0, x1, indices, values, a, b, c, d, n_rows):
    """indices[a:b] and indices[c:d] (ascending) merged into rows[:m], their values in x0, x1 (0
    where one does not light the row); m."""
    zero = values.dtype.type(0)
    p, q, m = a, c, 0
    while p < b or q < d:
        r0 = indices[p] if p < b else n_rows
        r1 = indices[q] if q < d else n_rows
        k = min(r0, r1)
        rows[m] = k
        x0[m] = zero
        x1[m] = zero
        if r0 == k:
            x0[m] = values[p]
            p += 1
        if r1 == k:
            x1[m] = values[q]
            q += 1
        m += 1
    return m


@njit(**KERNEL_OPTIONS)
def _pairs(P, W, part_ptr, indices, values, batch, scale, n_parts, m_rows, m_x0, m_x1, counts, merge):
    """_rows for an even batch, two rows at a time over the union of their pixels: merged now
    (merge True), or as merged before into m_rows[part, pair], m_x0, m_x1 and counts."""
    rows = np.empty(W.shape[0], indices.dtype)
    x0 = np.empty(W.shape[0], values.dtype)
    x1 = np.empty(W.shape[0], values.dtype)
    for part in range(n_parts):
        for i in range(batch.shape[0] // 2):
            r = 2 * i
            if merge:
                m = _merge(rows, x0, x1, indices, values, part_ptr[batch[r] * n_parts + part],
                           part_ptr[batch[r] * n_parts + part + 1], part_ptr[batch[r + 1] * n_parts + part],
                           part_ptr[batch[r + 1] * n_parts + part + 1], W.shape[0])
                _pair_block(P[part, r], P[part, r + 1], W, rows, x0, x1, m, scale)
            else:
                _pair_block(P[part, r], P[part, r + 1], W, m_rows[part, i], m_x0[part, i], m_x1[part, i],
                            counts[part, i], scale)


@njit(**KERNEL_OPTIONS)
def _masked_pairs(P, W, part_ptr, values, masks, batch, scale, n_parts):
    """_pairs with the union found from bit masks of each sample's pixels per part (masks[i,
    part] = 64-bit words, bit j of the part's row j), its rows in ascending order by the set bits
    of the two masks' OR, each sample's value by a running count into its CSR span (0 where its
    bit is clear: a select, no branch); values padded by one entry."""
    L = lanes(P)
    n = P.shape[2]
    zero = values.dtype.type(0)
    for part in range(n_parts):
        first = W.shape[0] * part // n_parts
        for i in range(batch.shape[0] // 2):
            z = P[part, 2 * i]
            y = P[part, 2 * i + 1]
            ma = masks[batch[2 * i], part]
            mb = masks[batch[2 * i + 1], part]
            ca = part_ptr[batch[2 * i] * n_parts + part]
            cb = part_ptr[batch[2 * i + 1] * n_parts + part]
            a0 = vsplat(z, 0)
            a1, a2, a3, a4, a5, a6, a7 = a0, a0, a0, a0, a0, a0, a0
            b0, b1, b2, b3, b4, b5, b6, b7 = a0, a0, a0, a0, a0, a0, a0, a0
            for k in range(ma.shape[0]):
                wa = ma[k]
                wb = mb[k]
                bits = wa | wb
                while bits != 0:
                    t = trailing_zeros(bits)
                    bits &= bits - np.uint64(1)
                    ia = (wa >> t) & np.uint64(1)
                    ib = (wb >> t) & np.uint64(1)
                    va = values[ca]
                    vb = values[cb]
                    ca += np.int64(ia)
                    cb += np.int64(ib)
                    x = vsplat(z, (va if ia else zero) * scale)
                    u = vsplat(z, (vb if ib else zero) * scale)
                    w = _row(W, first + 64 * k + np.int64(t))
                    v = vload_part(w, 0, n)
                    a0, b0 = vfma(x, v, a0), vfma(u, v, b0)
                    v = vload_part(w, L, n - L)
                    a1, b1 = vfma(x, v, a1), vfma(u, v, b1)
                    v = vload_part(w, 2 * L, n - 2 * L)
                    a2, b2 = vfma(x, v, a2), vfma(u, v, b2)
                    v = vload_part(w, 3 * L, n - 3 * L)
                    a3, b3 = vfma(x, v, a3), vfma(u, v, b3)
                    v = vload_part(w, 4 * L, n - 4 * L)
                    a4, b4 = vfma(x, v, a4), vfma(u, v, b4)
                    v = vload_part(w, 5 * L, n - 5 * L)
                    a5, b5 = vfma(x, v, a5), vfma(u, v, b5)
                    v = vload_part(w, 6 * L, n - 6 * L)
                    a6, b6 = vfma(x, v, a6), vfma(u, v, b6)
                    v = vload_part(w, 7 * L, n - 7 * L)
                    a7, b7 = vfma(x, v, a7), vfma(u, v, b7)
            for k, (a, b) in enumerate(((a0, b0), (a1, b1), (a2, b2), (a3, b3), (a4, b4), (a5, b5), (a6, b6),
                                        (a7, b7))):
                vstore_part(z, k * L, a, n - k * L)
                vstore_part(y, k * L, b, n - k * L)


@njit(**KERNEL_OPTIONS)
def _gradient_rows(dW, dz, part_ptr, indices, values, batch, scale, n_parts):
    """dW[j] += x[batch[r], j] dz[r] over each row's nonzeros, part by part, row by row: the
    kernel's first-layer weight gradient at 128 units (``minibatch._sparse_gradient``)."""
    for part in range(n_parts):
        for r in range(batch.shape[0]):
            lo = part_ptr[batch[r] * n_parts + part]
            hi = part_ptr[batch[r] * n_parts + part + 1]
            _sparse_gradient(dW, dz[r], indices[lo:hi], values[lo:hi], scale)


@njit(**KERNEL_OPTIONS)
def _pair_gradient(dW, da, db, rows, x0, x1, m, scale):
    """dW[rows[q]] += x0[q] da, then += x1[q] db, over q < m: da and db in registers, each row of
    dW read and written once for both samples (the same sums in the same order as row by row)."""
    L = lanes(da)
    n = da.shape[0]
    a0, a1, a2, a3 = vload(da, 0), vload(da, L), vload(da, 2 * L), vload(da, 3 * L)
    a4, a5 = vload_part(da, 4 * L, n - 4 * L), vload_part(da, 5 * L, n - 5 * L)
    a6, a7 = vload_part(da, 6 * L, n - 6 * L), vload_part(da, 7 * L, n - 7 * L)
    b0, b1, b2, b3 = vload(db, 0), vload(db, L), vload(db, 2 * L), vload(db, 3 * L)
    b4, b5 = vload_part(db, 4 * L, n - 4 * L), vload_part(db, 5 * L, n - 5 * L)
    b6, b7 = vload_part(db, 6 * L, n - 6 * L), vload_part(db, 7 * L, n - 7 * L)
    for q in range(m):
        x = vsplat(da, x0[q] * scale)
        u = vsplat(da, x1[q] * scale)
        g = _row(dW, rows[q])
        vstore(g, 0, vfma(u, b0, vfma(x, a0, vload(g, 0))))
        vstore(g, L, vfma(u, b1, vfma(x, a1, vload(g, L))))
        vstore(g, 2 * L, vfma(u, b2, vfma(x, a2, vload(g, 2 * L))))
        vstore(g, 3 * L, vfma(u, b3, vfma(x, a3, vload(g, 3 * L))))
        vstore(g, 4 * L, vfma(u, b4, vfma(x, a4, vload(g, 4 * L))))
        vstore(g, 5 * L, vfma(u, b5, vfma(x, a5, vload(g, 5 * L))))
        vstore(g, 6 * L, vfma(u, b6, vfma(x, a6, vload(g, 6 * L))))
        vstore(g, 7 * L, vfma(u, b7, vfma(x, a7, vload(g, 7 * L))))


@njit(**KERNEL_OPTIONS)
def _gradient_pairs(dW, dz, batch, scale, n_parts, m_rows, m_x0, m_x1, counts):
    """_gradient_rows two rows at a time over the pairs' unions merged before (as a forward
    pass that merged them would leave them)."""
    for part in range(n_parts):
        for i in range(batch.shape[0] // 2):
            _pair_gradient(dW, dz[2 * i], dz[2 * i + 1], m_rows[part, i], m_x0[part, i], m_x1[part, i],
                           counts[part, i], scale)


@njit(**KERNEL_OPTIONS)
def _merge_batch(m_rows, m_x0, m_x1, counts, part_ptr, indices, values, batch, n_parts, n_rows):
    """Every pair's union, part by part, into m_rows[part, pair], m_x0, m_x1 and counts."""
    for part in range(n_parts):
        for i in range(batch.shape[0] // 2):
            r = 2 * i
            counts[part, i] = _merge(m_rows[part, i], m_x0[part, i], m_x1[part, i], indices, values,
                                     part_ptr[batch[r] * n_parts + part], part_ptr[batch[r] * n_parts + part + 1],
                                     part_ptr[batch[r + 1] * n_parts + part],
                                     part_ptr[batch[r + 1] * n_parts + part + 1], n_rows)


@njit(**KERNEL_OPTIONS)
def _pair_union(dW, da, db, ma, mb, values, ca, cb, scale, first):
    """dW[j] += x_a[j] da, then += x_b[j] db over the union of the inputs the mask words ma and mb
    light (rows first + bit), each sample's value by a running count from ca and cb into its CSR
    span (0 where its pixel is dark): the pair gradient's loop, da and db in registers."""
    L = lanes(da)
    n = da.shape[0]
    zero = values.dtype.type(0)
    last = values.shape[0] - 1  # past a span the value read is another sample's, and not used
    a0, a1, a2, a3 = vload(da, 0), vload(da, L), vload(da, 2 * L), vload(da, 3 * L)
    a4, a5 = vload_part(da, 4 * L, n - 4 * L), vload_part(da, 5 * L, n - 5 * L)
    a6, a7 = vload_part(da, 6 * L, n - 6 * L), vload_part(da, 7 * L, n - 7 * L)
    b0, b1, b2, b3 = vload(db, 0), vload(db, L), vload(db, 2 * L), vload(db, 3 * L)
    b4, b5 = vload_part(db, 4 * L, n - 4 * L), vload_part(db, 5 * L, n - 5 * L)
    b6, b7 = vload_part(db, 6 * L, n - 6 * L), vload_part(db, 7 * L, n - 7 * L)
    for k in range(ma.shape[0]):
        wa = ma[k]
        wb = mb[k]
        bits = wa | wb
        while bits != 0:
            t = trailing_zeros(bits)
            bits &= bits - np.uint64(1)
            ia = (wa >> t) & np.uint64(1)
            ib = (wb >> t) & np.uint64(1)
            va = values[min(ca, last)]
            vb = values[min(cb, last)]
            ca += np.int64(ia)
            cb += np.int64(ib)
            x = vsplat(da, (va if ia else zero) * scale)
            u = vsplat(da, (vb if ib else zero) * scale)
            g = _row(dW, first + 64 * k + np.int64(t))
            vstore(g, 0, vfma(u, b0, vfma(x, a0, vload(g, 0))))
            vstore(g, L, vfma(u, b1, vfma(x, a1, vload(g, L))))
            vstore(g, 2 * L, vfma(u, b2, vfma(x, a2, vload(g, 2 * L))))
            vstore(g, 3 * L, vfma(u, b3, vfma(x, a3, vload(g, 3 * L))))
            vstore(g, 4 * L, vfma(u, b4, vfma(x, a4, vload(g, 4 * L))))
            vstore(g, 5 * L, vfma(u, b5, vfma(x, a5, vload(g, 5 * L))))
            vstore(g, 6 * L, vfma(u, b6, vfma(x, a6, vload(g, 6 * L))))
            vstore(g, 7 * L, vfma(u, b7, vfma(x, a7, vload(g, 7 * L))))


@njit(**KERNEL_OPTIONS)
def _masked_pair_gradient(dW, dz, part_ptr, values, masks, batch, scale, n_parts):
    """_gradient_pairs with each pair's union from the bit masks, as _masked_pairs finds it."""
    for part in range(n_parts):
        first = dW.shape[0] * part // n_parts
        for i in range(batch.shape[0] // 2):
            r, s = batch[2 * i], batch[2 * i + 1]
            _pair_union(dW, dz[2 * i], dz[2 * i + 1], masks[r, part], masks[s, part], values,
                        part_ptr[r * n_parts + part], part_ptr[s * n_parts + part], scale, first)


@njit(**KERNEL_OPTIONS)
def _four_words(out, indices, lo, hi, first):
    """out[:4] = the bit mask of rows indices[lo:hi] - first (all below 256), built in registers."""
    one = np.uint64(1)
    w0 = np.uint64(0)
    w1 = np.uint64(0)
    w2 = np.uint64(0)
    w3 = np.uint64(0)
    for q in range(lo, hi):
        j = indices[q] - first
        bit = one << np.uint64(j & 63)
        k = j >> 6
        w0 |= bit if k == 0 else np.uint64(0)
        w1 |= bit if k == 1 else np.uint64(0)
        w2 |= bit if k == 2 else np.uint64(0)
        w3 |= bit if k == 3 else np.uint64(0)
    out[0] = w0
    out[1] = w1
    out[2] = w2
    out[3] = w3


@njit(**KERNEL_OPTIONS)
def _built_pair_gradient(dW, dz, part_ptr, indices, values, batch, scale, n_parts, words):
    """_masked_pair_gradient with each pair's bit masks built from its CSR spans in the pass
    (``words`` [2, W] uint64 scratch), as a kernel without a stored mask array would."""
    for part in range(n_parts):
        first = dW.shape[0] * part // n_parts
        for i in range(batch.shape[0] // 2):
            r, s = batch[2 * i], batch[2 * i + 1]
            ca, ea = part_ptr[r * n_parts + part], part_ptr[r * n_parts + part + 1]
            cb, eb = part_ptr[s * n_parts + part], part_ptr[s * n_parts + part + 1]
            _four_words(words[0], indices, ca, ea, first)
            _four_words(words[1], indices, cb, eb, first)
            _pair_union(dW, dz[2 * i], dz[2 * i + 1], words[0], words[1], values, ca, cb, scale, first)

def _part_masks(X, n_parts):
    """[N, parts, words] uint64: bit j of word j // 64 set where the part's row j is nonzero."""
    bounds = [X.shape[1] * k // n_parts for k in range(n_parts + 1)]
    words = -(-max(b - a for a, b in zip(bounds, bounds[1:])) // 64)
    masks = np.zeros((X.shape[0], n_parts, words), np.uint64)
    for k in range(n_parts):
        lit = X[:, bounds[k]:bounds[k + 1]] != 0
        for j in range(lit.shape[1]):
            masks[:, k, j // 64] |= lit[:, j].astype(np.uint64) << np.uint64(j % 64)
    return masks


def _timed(call):
    tic = time.perf_counter()
    call()
    return time.perf_counter() - tic


def main():
    H = int(sys.argv[1]) if len(sys.argv) > 1 else 128
    X, _, _, _ = fastmlp.load_mnist(os.environ.get("FASTMLP_DATA"), download=False)
    part_ptr, indices, values = sparse_rows(X[:20000], parts=PARTS)[:3]
    rng = np.random.default_rng(0)
    W = rng.standard_normal((784, H)).astype(np.float32)
    scale = np.float32(1 / 255)
    L = VECTOR_BYTES // 4
    vectors = -(-H // L)
    if vectors > 8:
        sys.exit(f"H = {H}: the register block holds at most {8 * L} float32 units")
    pairs = REGISTER_BLOCK == 8  # sixteen vectors of sums and one of W: AVX-512's 32 registers

    one = np.array([0, SYNTHETIC], np.int64)
    pixels = rng.integers(1, 256, SYNTHETIC).astype(np.uint8)
    others = rng.integers(1, 256, SYNTHETIC).astype(np.uint8)
    synthetic = {"one row (L1)": np.full(SYNTHETIC, 3, np.int32),
                 "16 rows (L1)": rng.integers(0, 16, SYNTHETIC).astype(np.int32),
                 "784 rows (L2)": rng.integers(0, 784, SYNTHETIC).astype(np.int32)}
    batches = [rng.choice(20000, 256, replace=False).astype(np.int64) for _ in range(20)]
    P = np.zeros((PARTS, 256, H), np.float32)
    Q = np.zeros_like(P)
    zs = np.zeros((2, 1, 1, H), np.float32)
    nonzeros = sum(int((part_ptr[(b + 1) * PARTS] - part_ptr[b * PARTS]).sum()) for b in batches)
    # the pairs merged ahead, as floats (a pair's union is at most a part's rows)
    width = -(-784 // PARTS) + 1
    m_rows = np.zeros((len(batches), PARTS, 128, width), indices.dtype)
    m_x0 = np.zeros((len(batches), PARTS, 128, width), values.dtype)
    m_x1 = np.zeros_like(m_x0)
    counts = np.zeros((len(batches), PARTS, 128), np.int64)
    for n, b in enumerate(batches):
        for part in range(PARTS):
            for i in range(128):
                at = [part_ptr[b[2 * i + k] * PARTS + part + e] for k in (0, 1) for e in (0, 1)]
                counts[n, part, i] = _merge(m_rows[n, part, i], m_x0[n, part, i], m_x1[n, part, i], indices, values,
                                            *at, 784)
    z = np.full(12 * L, 0.5, np.float32)

    cases = {"core's own rate": (lambda: _peak(z, PEAK_N), 12 * PEAK_N, 12 * PEAK_N)}
    for name, rows_ in synthetic.items():
        cases[name] = (lambda r=rows_: _rows(zs[0], W, one, r, pixels, np.zeros(1, np.int64), scale, 1),
                       SYNTHETIC * vectors, SYNTHETIC * vectors)
    cases["MNIST, by part"] = (lambda: [_rows(P, W, part_ptr, indices, values, b, scale, PARTS) for b in batches],
                               nonzeros * vectors, nonzeros * vectors)
    if pairs:
        for name, rows_ in synthetic.items():
            cases["pair, " + name] = (lambda r=rows_: _pair_block(zs[0, 0, 0], zs[1, 0, 0], W, r, pixels, others,
                                                                  SYNTHETIC, scale),
                                      2 * SYNTHETIC * vectors, SYNTHETIC * vectors)
        union = int(counts.sum())
        cases["pair, MNIST, merged ahead"] = (
            lambda: [_pairs(Q, W, part_ptr, indices, values, b, scale, PARTS, m_rows[n], m_x0[n], m_x1[n], counts[n],
                            False) for n, b in enumerate(batches)],
            nonzeros * vectors, union * vectors)
        masks = _part_masks(X[:20000], PARTS)
        padded = np.append(values, values[:1])
        cases["pair, MNIST, bit-mask union"] = (
            lambda: [_masked_pairs(Q, W, part_ptr, padded, masks, b, scale, PARTS) for b in batches],
            nonzeros * vectors, union * vectors)
        dW = np.zeros((784, H), np.float32)
        dz = (rng.standard_normal((256, H)) * 1e-3).astype(np.float32)
        one_merge = (np.zeros((PARTS, 128, width), indices.dtype), np.zeros((PARTS, 128, width), values.dtype),
                     np.zeros((PARTS, 128, width), values.dtype), np.zeros((PARTS, 128), np.int64))
        cases["gradient, MNIST, by part"] = (
            lambda: [_gradient_rows(dW, dz, part_ptr, indices, values, b, scale, PARTS) for b in batches],
            nonzeros * vectors, nonzeros * vectors)
        cases["pair gradient, merged ahead"] = (
            lambda: [_gradient_pairs(dW, dz, b, scale, PARTS, m_rows[n], m_x0[n], m_x1[n], counts[n])
                     for n, b in enumerate(batches)],
            nonzeros * vectors, union * vectors)
        cases["fwd + grad, by part"] = (
            lambda: [(_rows(P, W, part_ptr, indices, values, b, scale, PARTS),
                      _gradient_rows(dW, dz, part_ptr, indices, values, b, scale, PARTS)) for b in batches],
            2 * nonzeros * vectors, 2 * nonzeros * vectors)
        cases["pair fwd + grad, one merge"] = (
            lambda: [(_merge_batch(*one_merge, part_ptr, indices, values, b, PARTS, 784),
                      _pairs(Q, W, part_ptr, indices, values, b, scale, PARTS, *one_merge, False),
                      _gradient_pairs(dW, dz, b, scale, PARTS, *one_merge)) for b in batches],
            2 * nonzeros * vectors, 2 * union * vectors)
        cases["pair gradient, bit masks"] = (
            lambda: [_masked_pair_gradient(dW, dz, part_ptr, padded, masks, b, scale, PARTS) for b in batches],
            nonzeros * vectors, union * vectors)
        words = np.zeros((2, -(-(-(-784 // PARTS)) // 64)), np.uint64)
        cases["pair gradient, masks built in the pass"] = (
            lambda: [_built_pair_gradient(dW, dz, part_ptr, indices, values, b, scale, PARTS, words) for b in batches],
            nonzeros * vectors, union * vectors)
        cases["pair fwd + grad, bit masks"] = (
            lambda: [(_masked_pairs(Q, W, part_ptr, padded, masks, b, scale, PARTS),
                      _masked_pair_gradient(dW, dz, part_ptr, padded, masks, b, scale, PARTS)) for b in batches],
            2 * nonzeros * vectors, 2 * union * vectors)
        cases["pair, MNIST, merge included"] = (
            lambda: [_pairs(Q, W, part_ptr, indices, values, b, scale, PARTS, m_rows[0], m_x0[0], m_x1[0], counts[0],
                            True) for b in batches],
            nonzeros * vectors, union * vectors)
    for call, _, _ in cases.values():
        call()
    _rows(P, W, part_ptr, indices, values, batches[0], scale, PARTS)
    if pairs:  # the same sums, bit for bit
        _pairs(Q, W, part_ptr, indices, values, batches[0], scale, PARTS, m_rows[0], m_x0[0], m_x1[0], counts[0], True)
        assert np.array_equal(P, Q)
        for check in (lambda: _pairs(Q, W, part_ptr, indices, values, batches[0], scale, PARTS, m_rows[0], m_x0[0],
                                     m_x1[0], counts[0], False),
                      lambda: _masked_pairs(Q, W, part_ptr, padded, masks, batches[0], scale, PARTS)):
            Q[...] = 0
            check()
            assert np.array_equal(P, Q)
        G = np.zeros((784, H), np.float32)
        _gradient_rows(G, dz, part_ptr, indices, values, batches[0], scale, PARTS)
        dW[...] = 0
        _gradient_pairs(dW, dz, batches[0], scale, PARTS, m_rows[0], m_x0[0], m_x1[0], counts[0])
        assert np.array_equal(G, dW)
        dW[...] = 0
        _masked_pair_gradient(dW, dz, part_ptr, padded, masks, batches[0], scale, PARTS)
        assert np.array_equal(G, dW)
        dW[...] = 0
        _built_pair_gradient(dW, dz, part_ptr, indices, values, batches[0], scale, PARTS, words)
        assert np.array_equal(G, dW)

    rates = {name: [] for name in cases}
    for _ in range(ROUNDS):
        for name, (call, useful, _) in cases.items():
            rates[name].append(useful / (_timed(call) * 1e9))

    peak = float(np.median(rates["core's own rate"]))
    print(f"float32, H = {H} ({vectors} vectors of {VECTOR_BYTES} bytes), one thread, {PARTS} parts; "
          f"medians of {ROUNDS} rounds")
    print(f"{'W rows':30s} {'useful FMA/ns':>14s} {'share':>6s} {'W bytes/ns':>11s} {'FMAs/useful':>12s}")
    for name, values_ in rates.items():
        rate = float(np.median(values_))
        _, useful, loads = cases[name]
        extra = "" if name == "core's own rate" else f"{rate * loads / useful * VECTOR_BYTES:11.0f}"
        work = "" if name == "core's own rate" else f"{(2 if name.startswith('pair') else 1) * loads / useful:12.2f}"
        print(f"{name:30s} {rate:14.2f} {rate / peak:6.0%} {extra:>11s} {work:>12s}  "
              f"({min(values_):.2f}-{max(values_):.2f})")
    print(f"(FMA: a vector multiply-add; a W row is {H * 4} bytes; share: of the core's own rate)")


if __name__ == "__main__":
    main()
