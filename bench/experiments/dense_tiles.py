"""The first layer's two sparse products with the densest pixels as a dense tile: tried, not kept.

    FASTMLP_DATA=../shared/data/mnist python bench/experiments/dense_tiles.py [BATCH] [T] [ROUNDS]

784-128-10, float32, one thread, batches drawn from the first 20,000 MNIST images. The pixels
lit in more than a fraction T (default 0.3) of the images are "dense columns": 234 at T = 0.3,
with 81% of the nonzeros, each lit in 52% of the images on average. They are copied once per
dataset into a uint8 matrix (a row of 236 bytes per image), the other nonzeros into CSR rows of
their own, per part (``PARTS`` ranges of inputs, as the kernel's step 1 runs them).

- forward: four rows of the batch at a time, the part's dense columns times the matching rows of
  W (gathered) with 4 x 4 vectors of sums in registers, each vector of W loaded once for the
  four rows (zeros included); then each row's other nonzeros by ``sparse_forward_block``;
- gradient: dW's rows of four dense columns at a time, 4 x 4 vectors in registers over the
  batch's rows in order (each dz vector loaded once for the four columns), then the other
  nonzeros by the kernel's input-by-input ``_csc_sparse_gradient`` (the same bits as the kernel:
  adding 0 * dz changes no finite sum; the forward's sums come in another order).

Against the kernel's own loops over the whole CSR rows (``fwd base``, ``grad base``; without
their prefetches in both), in microseconds per sample, with each path's tile and rest alone.
AVX-512 only (REGISTER_BLOCK 8): 16 vectors of sums would spill AVX2's sixteen ymm registers.
"""
import sys
import time

import numpy as np
from numba import njit

from fastmlp.data import load_mnist
from fastmlp.kernels._config import KERNEL_OPTIONS
from fastmlp.kernels.codes import PARTS
from fastmlp.kernels.linear import sparse_forward_block, sparse_rows, _sparse_forward_block4
from fastmlp.kernels.minibatch import _csc_sparse_gradient
from fastmlp.kernels.vectors import REGISTER_BLOCK, lanes, vfma, vload, vsplat, vstore


@njit(**KERNEL_OPTIONS)
def fwd_base(partials, spans, W, part_ptr, indices, values, batch, scale):
    no_bias = W[0, :0]
    for part in range(PARTS):
        for r in range(batch.shape[0]):
            lo = part_ptr[batch[r] * PARTS + part]
            hi = part_ptr[batch[r] * PARTS + part + 1]
            spans[r, part, 0] = lo
            spans[r, part, 1] = hi
            z = partials[part, r]
            if REGISTER_BLOCK == 8:
                sparse_forward_block(z, W, no_bias, indices[lo:hi], values[lo:hi], scale, 0, z.shape[0])
            else:
                for c in range(0, 8 * lanes(z), 4 * lanes(z)):
                    _sparse_forward_block4(z, W, no_bias, indices[lo:hi], values[lo:hi], scale, c)


@njit(**KERNEL_OPTIONS)
def grad_base(dW, deltas, spans, indices, values, scale):
    for part in range(PARTS):
        _csc_sparse_gradient(dW, dW.shape[1], deltas, spans, part, indices, values, scale, dW[:0], dW[0])


@njit(**KERNEL_OPTIONS)
def _tile4x4u(z0, z1, z2, z3, Wc, x0, x1, x2, x3, scale, c, kc):
    L = lanes(z0)
    zero = vsplat(z0, 0)
    a00 = zero; a01 = zero; a02 = zero; a03 = zero
    a10 = zero; a11 = zero; a12 = zero; a13 = zero
    a20 = zero; a21 = zero; a22 = zero; a23 = zero
    a30 = zero; a31 = zero; a32 = zero; a33 = zero
    for k in range(kc):
        w = Wc[k]
        w0 = vload(w, c); w1 = vload(w, c + L); w2 = vload(w, c + 2 * L); w3 = vload(w, c + 3 * L)
        x = vsplat(z0, x0[k] * scale)
        a00 = vfma(x, w0, a00); a01 = vfma(x, w1, a01); a02 = vfma(x, w2, a02); a03 = vfma(x, w3, a03)
        x = vsplat(z0, x1[k] * scale)
        a10 = vfma(x, w0, a10); a11 = vfma(x, w1, a11); a12 = vfma(x, w2, a12); a13 = vfma(x, w3, a13)
        x = vsplat(z0, x2[k] * scale)
        a20 = vfma(x, w0, a20); a21 = vfma(x, w1, a21); a22 = vfma(x, w2, a22); a23 = vfma(x, w3, a23)
        x = vsplat(z0, x3[k] * scale)
        a30 = vfma(x, w0, a30); a31 = vfma(x, w1, a31); a32 = vfma(x, w2, a32); a33 = vfma(x, w3, a33)
    vstore(z0, c, a00); vstore(z0, c + L, a01); vstore(z0, c + 2 * L, a02); vstore(z0, c + 3 * L, a03)
    vstore(z1, c, a10); vstore(z1, c + L, a11); vstore(z1, c + 2 * L, a12); vstore(z1, c + 3 * L, a13)
    vstore(z2, c, a20); vstore(z2, c + L, a21); vstore(z2, c + 2 * L, a22); vstore(z2, c + 3 * L, a23)
    vstore(z3, c, a30); vstore(z3, c + L, a31); vstore(z3, c + 2 * L, a32); vstore(z3, c + 3 * L, a33)


@njit(**KERNEL_OPTIONS)
def fwd_u(partials, W, Wd, cptr, Xd, rest_ptr, rindices, rvalues, batch, scale, mode):
    H = partials.shape[2]
    L = lanes(partials[0, 0])
    nb = batch.shape[0]
    for part in range(PARTS):
        k0 = cptr[part]
        kc = cptr[part + 1] - k0
        Wc = Wd[k0:k0 + kc]
        for r0 in range(0, nb, 4):
            r1 = min(r0 + 1, nb - 1); r2 = min(r0 + 2, nb - 1); r3 = min(r0 + 3, nb - 1)
            if mode & 2:
                x0 = Xd[batch[r0], k0:k0 + kc]; x1 = Xd[batch[r1], k0:k0 + kc]
                x2 = Xd[batch[r2], k0:k0 + kc]; x3 = Xd[batch[r3], k0:k0 + kc]
                for c in range(0, H, 4 * L):
                    _tile4x4u(partials[part, r0], partials[part, r1], partials[part, r2], partials[part, r3],
                              Wc, x0, x1, x2, x3, scale, c, kc)
            if mode & 4:
                for r in range(r0, min(r0 + 4, nb)):
                    i = batch[r] * PARTS + part
                    s = rest_ptr[i]
                    hi = rest_ptr[i + 1]
                    z = partials[part, r]
                    if s < hi:
                        sparse_forward_block(z, W, z, rindices[s:hi], rvalues[s:hi], scale, 0, H)


@njit(**KERNEL_OPTIONS)
def _gtile4x4u(g0, g1, g2, g3, deltas, Xd, batch, k, c, nb, scale):
    L = lanes(g0)
    zero = vsplat(g0, 0)
    a00 = zero; a01 = zero; a02 = zero; a03 = zero
    a10 = zero; a11 = zero; a12 = zero; a13 = zero
    a20 = zero; a21 = zero; a22 = zero; a23 = zero
    a30 = zero; a31 = zero; a32 = zero; a33 = zero
    for r in range(nb):
        d = deltas[r]
        xr = Xd[batch[r]]
        d0 = vload(d, c); d1 = vload(d, c + L); d2 = vload(d, c + 2 * L); d3 = vload(d, c + 3 * L)
        x = vsplat(g0, xr[k] * scale)
        a00 = vfma(x, d0, a00); a01 = vfma(x, d1, a01); a02 = vfma(x, d2, a02); a03 = vfma(x, d3, a03)
        x = vsplat(g0, xr[k + 1] * scale)
        a10 = vfma(x, d0, a10); a11 = vfma(x, d1, a11); a12 = vfma(x, d2, a12); a13 = vfma(x, d3, a13)
        x = vsplat(g0, xr[k + 2] * scale)
        a20 = vfma(x, d0, a20); a21 = vfma(x, d1, a21); a22 = vfma(x, d2, a22); a23 = vfma(x, d3, a23)
        x = vsplat(g0, xr[k + 3] * scale)
        a30 = vfma(x, d0, a30); a31 = vfma(x, d1, a31); a32 = vfma(x, d2, a32); a33 = vfma(x, d3, a33)
    vstore(g0, c, a00); vstore(g0, c + L, a01); vstore(g0, c + 2 * L, a02); vstore(g0, c + 3 * L, a03)
    vstore(g1, c, a10); vstore(g1, c + L, a11); vstore(g1, c + 2 * L, a12); vstore(g1, c + 3 * L, a13)
    vstore(g2, c, a20); vstore(g2, c + L, a21); vstore(g2, c + 2 * L, a22); vstore(g2, c + 3 * L, a23)
    vstore(g3, c, a30); vstore(g3, c + L, a31); vstore(g3, c + 2 * L, a32); vstore(g3, c + 3 * L, a33)


@njit(**KERNEL_OPTIONS)
def grad_u(dW, deltas, cols, Xd, batch, rest_ptr, rindices, rvalues, scale, spans_rest, n_dense, mode):
    """n_dense padded to a multiple of 4 in Xd (zero columns, cols repeats a scratch row)."""
    nb = deltas.shape[0]
    H = dW.shape[1]
    L = lanes(deltas[0])
    if mode & 2:
        for k in range(0, n_dense, 4):
            for c in range(0, H, 4 * L):
                _gtile4x4u(dW[cols[k]], dW[cols[k + 1]], dW[cols[k + 2]], dW[cols[k + 3]], deltas, Xd, batch, k, c, nb, scale)
    if mode & 4:
        for r in range(nb):
            for part in range(PARTS):
                i = batch[r] * PARTS + part
                spans_rest[r, part, 0] = rest_ptr[i]
                spans_rest[r, part, 1] = rest_ptr[i + 1]
        for part in range(PARTS):
            _csc_sparse_gradient(dW, H, deltas, spans_rest, part, rindices, rvalues, scale, dW[:0], dW[0])


def main():
    if REGISTER_BLOCK != 8:
        raise SystemExit("dense_tiles.py needs AVX-512 (REGISTER_BLOCK 8)")
    B = int(sys.argv[1]) if len(sys.argv) > 1 else 128
    thr = float(sys.argv[2]) if len(sys.argv) > 2 else 0.3
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    X, y, _, _ = load_mnist(download=False)
    X = X[:20000]
    n, D = X.shape
    H = 128
    dens = (X != 0).mean(0)
    cols = np.flatnonzero(dens > thr).astype(np.int64)
    cptr = np.array([np.searchsorted(cols, D * k // PARTS) for k in range(PARTS + 1)], np.int64)
    pad = (-len(cols)) % 4
    Xd = np.zeros((n, len(cols) + pad), np.uint8); Xd[:, :len(cols)] = X[:, cols]
    Xr = X.copy(); Xr[:, cols] = 0
    rest_ptr, rindices, rvalues = sparse_rows(Xr, parts=PARTS)
    part_ptr, indices, values = sparse_rows(X, parts=PARTS)
    rng = np.random.default_rng(0)
    W = (rng.standard_normal((D, H)) * 0.05).astype(np.float32)
    Wd = np.ascontiguousarray(W[cols])
    scale = np.float32(1 / 255)
    perm = rng.permutation(n).astype(np.int64)
    batches = [perm[i:i + B] for i in range(0, n - B + 1, B)]
    partials = np.zeros((PARTS, B, H), np.float32); partials2 = np.zeros((PARTS, B, H), np.float32)
    spans = np.zeros((B, PARTS, 2), np.int64); spans_rest = np.zeros((B, PARTS, 2), np.int64)
    deltas = (rng.standard_normal((B, H)) * 0.1).astype(np.float32)
    dW = np.zeros((D + 1, H), np.float32); dW2 = np.zeros((D + 1, H), np.float32)
    colsp = np.concatenate([cols, np.full(pad, D)])
    print(f"batch {B}, threshold {thr}: {len(cols)} dense columns, Xd {Xd.nbytes / n:.0f} B/row, rest nnz {len(rindices) / n:.1f}/row of {len(indices) / n:.1f}")

    def fb(b): fwd_base(partials, spans, W, part_ptr, indices, values, b, scale)
    def gb(b): dW[:] = 0; grad_base(dW, deltas, spans, indices, values, scale)
    def fu(b, mode=6): fwd_u(partials2, W, Wd, cptr, Xd, rest_ptr, rindices, rvalues, b, scale, mode)
    def gu(b, mode=6): dW2[:] = 0; grad_u(dW2, deltas, colsp, Xd, b, rest_ptr, rindices, rvalues, scale, spans_rest, len(colsp), mode)
    b = batches[0]
    fb(b); fu(b); gb(b); gu(b)
    print("forward max diff", np.abs(partials - partials2).max(), "gradient bitwise", np.array_equal(dW[:D], dW2[:D]),
          np.abs(dW[:D] - dW2[:D]).max())
    cases = {"fwd base": lambda b: fb(b), "fwd dense": lambda b: fu(b), "fwd tile": lambda b: fu(b, 2), "fwd rest": lambda b: fu(b, 4),
             "grad base": lambda b: (fb(b), gb(b)), "grad dense": lambda b: (fb(b), gu(b)), "grad tile": lambda b: (fb(b), gu(b, 2)),
             "grad rest": lambda b: (fb(b), gu(b, 4)), "fwd only (for grad)": lambda b: fb(b)}
    res = {k: [] for k in cases}
    for _ in range(rounds):
        for k, f in cases.items():
            t0 = time.perf_counter()
            for b in batches:
                f(b)
            res[k].append(time.perf_counter() - t0)
    N = len(batches) * B
    med = {k: np.median(v) / N * 1e6 for k, v in res.items()}
    fo = med["fwd only (for grad)"]
    for k, v in med.items():
        print(f"{k:22s} {v - (fo if k.startswith('grad') else 0):.3f} us/sample")
    print("forward ratio %.3f, gradient ratio %.3f, both %.3f" % (
        med["fwd base"] / med["fwd dense"], (med["grad base"] - fo) / (med["grad dense"] - fo),
        (med["grad base"]) / (med["fwd dense"] + med["grad dense"] - fo)))


if __name__ == "__main__":
    main()
