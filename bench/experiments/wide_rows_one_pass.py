"""Rows of 256 float32 (the per-sample momentum kernel's modal first layer at 128 units): the
sparse forward and update as the kernels run them (two passes of eight 64-byte vectors over each
sample's rows) against one pass of sixteen vectors (session 64; AVX-512 only, slower there and not
kept). 20,000 MNIST samples a round; function time per sample, the rounds' ratios, and whether
both give the same bits.

    FASTMLP_DATA=... python bench/experiments/wide_rows_one_pass.py [ROUNDS]
"""
import sys, time
import numpy as np
from numba import njit
from fastmlp.kernels._config import KERNEL_OPTIONS
from fastmlp.kernels.linear import sparse_row_forward, sparse_row_update, _row
from fastmlp.kernels.vectors import lanes, vload, vstore, vfma, vsplat
from fastmlp import load_mnist
from fastmlp.kernels import sparse_rows

@njit(**KERNEL_OPTIONS)
def forward16(z, W, indices, values, scale):
    L = lanes(z)
    a0 = vsplat(z, 0); a1 = a0; a2 = a0; a3 = a0; a4 = a0; a5 = a0; a6 = a0; a7 = a0
    a8 = a0; a9 = a0; a10 = a0; a11 = a0; a12 = a0; a13 = a0; a14 = a0; a15 = a0
    for p in range(indices.shape[0]):
        x = vsplat(z, values[p] * scale)
        w = _row(W, indices[p])
        a0 = vfma(x, vload(w, 0), a0); a1 = vfma(x, vload(w, L), a1)
        a2 = vfma(x, vload(w, 2 * L), a2); a3 = vfma(x, vload(w, 3 * L), a3)
        a4 = vfma(x, vload(w, 4 * L), a4); a5 = vfma(x, vload(w, 5 * L), a5)
        a6 = vfma(x, vload(w, 6 * L), a6); a7 = vfma(x, vload(w, 7 * L), a7)
        a8 = vfma(x, vload(w, 8 * L), a8); a9 = vfma(x, vload(w, 9 * L), a9)
        a10 = vfma(x, vload(w, 10 * L), a10); a11 = vfma(x, vload(w, 11 * L), a11)
        a12 = vfma(x, vload(w, 12 * L), a12); a13 = vfma(x, vload(w, 13 * L), a13)
        a14 = vfma(x, vload(w, 14 * L), a14); a15 = vfma(x, vload(w, 15 * L), a15)
    vstore(z, 0, a0); vstore(z, L, a1); vstore(z, 2 * L, a2); vstore(z, 3 * L, a3)
    vstore(z, 4 * L, a4); vstore(z, 5 * L, a5); vstore(z, 6 * L, a6); vstore(z, 7 * L, a7)
    vstore(z, 8 * L, a8); vstore(z, 9 * L, a9); vstore(z, 10 * L, a10); vstore(z, 11 * L, a11)
    vstore(z, 12 * L, a12); vstore(z, 13 * L, a13); vstore(z, 14 * L, a14); vstore(z, 15 * L, a15)

@njit(**KERNEL_OPTIONS)
def update16(W, dz, indices, values, scale, lr):
    L = lanes(dz)
    d0 = vload(dz, 0); d1 = vload(dz, L); d2 = vload(dz, 2 * L); d3 = vload(dz, 3 * L)
    d4 = vload(dz, 4 * L); d5 = vload(dz, 5 * L); d6 = vload(dz, 6 * L); d7 = vload(dz, 7 * L)
    d8 = vload(dz, 8 * L); d9 = vload(dz, 9 * L); d10 = vload(dz, 10 * L); d11 = vload(dz, 11 * L)
    d12 = vload(dz, 12 * L); d13 = vload(dz, 13 * L); d14 = vload(dz, 14 * L); d15 = vload(dz, 15 * L)
    for q in range(indices.shape[0] - 1, -1, -1):
        step = vsplat(dz, -(lr * (values[q] * scale)))
        w = _row(W, indices[q])
        vstore(w, 0, vfma(step, d0, vload(w, 0))); vstore(w, L, vfma(step, d1, vload(w, L)))
        vstore(w, 2 * L, vfma(step, d2, vload(w, 2 * L))); vstore(w, 3 * L, vfma(step, d3, vload(w, 3 * L)))
        vstore(w, 4 * L, vfma(step, d4, vload(w, 4 * L))); vstore(w, 5 * L, vfma(step, d5, vload(w, 5 * L)))
        vstore(w, 6 * L, vfma(step, d6, vload(w, 6 * L))); vstore(w, 7 * L, vfma(step, d7, vload(w, 7 * L)))
        vstore(w, 8 * L, vfma(step, d8, vload(w, 8 * L))); vstore(w, 9 * L, vfma(step, d9, vload(w, 9 * L)))
        vstore(w, 10 * L, vfma(step, d10, vload(w, 10 * L))); vstore(w, 11 * L, vfma(step, d11, vload(w, 11 * L)))
        vstore(w, 12 * L, vfma(step, d12, vload(w, 12 * L))); vstore(w, 13 * L, vfma(step, d13, vload(w, 13 * L)))
        vstore(w, 14 * L, vfma(step, d14, vload(w, 14 * L))); vstore(w, 15 * L, vfma(step, d15, vload(w, 15 * L)))

@njit(**KERNEL_OPTIONS)
def epoch_current(W, z, dz, b, indptr, indices, values, order, scale):
    for s in range(order.shape[0]):
        i = order[s]
        idx = indices[indptr[i]:indptr[i + 1]]; val = values[indptr[i]:indptr[i + 1]]
        sparse_row_forward(z, W, b, idx, val, scale)
        for k in range(dz.shape[0]):
            dz[k] = z[k] * np.float32(1e-6)
        sparse_row_update(W, b, dz, idx, val, scale, np.float32(1.0))

@njit(**KERNEL_OPTIONS)
def epoch_16(W, z, dz, b, indptr, indices, values, order, scale):
    for s in range(order.shape[0]):
        i = order[s]
        idx = indices[indptr[i]:indptr[i + 1]]; val = values[indptr[i]:indptr[i + 1]]
        forward16(z, W, idx, val, scale)
        for k in range(dz.shape[0]):
            dz[k] = z[k] * np.float32(1e-6)
        update16(W, dz, idx, val, scale, np.float32(1.0))

X, y, _, _ = load_mnist()
indptr, indices, values = sparse_rows(X)[:3]
rng = np.random.default_rng(0)
W0 = (rng.standard_normal((784, 256)) * 0.01).astype(np.float32)
order = rng.permutation(60000).astype(np.int64)[:20000]
b = np.empty(0, np.float32)
res = {}
for name, f in (("current", epoch_current), ("sixteen", epoch_16)):
    W = W0.copy(); z = np.empty(256, np.float32); dz = np.empty(256, np.float32)
    f(W, z, dz, b, indptr, indices, values, order[:10], np.float32(1 / 255))
    res[name] = (f, W, z, dz)
times = {n: [] for n in res}
for r in range(int(sys.argv[1]) if len(sys.argv) > 1 else 7):
    for name, (f, W, z, dz) in res.items():
        W[:] = W0
        tic = time.perf_counter(); f(W, z, dz, b, indptr, indices, values, order, np.float32(1 / 255))
        times[name].append((time.perf_counter() - tic) / len(order) * 1e9)
for name in res:
    print(name, "ns/sample best", round(min(times[name])), "median", round(sorted(times[name])[len(times[name]) // 2]))
ratios = sorted(a / b for a, b in zip(times["current"], times["sixteen"]))
print("current/sixteen round ratios", [round(r, 3) for r in ratios])
# same bits?
Wa = W0.copy(); Wb = W0.copy(); z = np.empty(256, np.float32); dz = np.empty(256, np.float32)
epoch_current(Wa, z, dz, b, indptr, indices, values, order, np.float32(1 / 255))
epoch_16(Wb, z, dz, b, indptr, indices, values, order, np.float32(1 / 255))
print("same bits:", Wa.tobytes() == Wb.tobytes())
