"""The mini-batch kernel's first-layer forward sums for a wide layer (500 units: 784-500-150-10)
in other orders and layouts, against the kernel's own: which would pay on this CPU?

    FASTMLP_DATA=../shared/data/mnist python bench/experiments/wide_sparse_forward.py [H] [PART] [ROUNDS]

Float32, one thread, W random [784, H] (H = 500 by default), a batch of 1,024 images drawn from
the first 20,000, in sub-batches of 64 rows (the kernel's at 500 units) over one of the PARTS
blocks of W's rows (PART = 1: inputs 196-391, about 56 nonzero pixels per image). Microseconds
per image of each order's sums (median of five passes over the batch, the orders alternated,
ROUNDS = 3 rounds):

- kernel: what ``minibatch._part_forward`` runs for this width (``_sparse_forward8``: eight rows of
  W per pass over the sums in memory; for 64 < H <= 128 one register block);
- kernel, padded rows: the same on a copy of W whose rows are padded to 528 floats (every row on
  a cache line, 33 lines: no power-of-two stride); H = 500's rows start 16, 32 or 48 bytes off a
  line, so many of the loads of them split across two lines;
- register blocks: each image's sums in blocks of eight 64-byte vectors held in registers over all
  its pixels (``linear.sparse_forward_block``), one block after the other;
- four images in registers: the union of four images' pixels (0 where an image's pixel is dark: the
  same sums), four vectors of each image's sums in registers, each vector of W loaded once for the
  four; the union's construction included;
- kernel, W in L1: the kernel's loop with every pixel's row taken among eight rows (W then comes
  from L1): how much of its time is W's loads from L2.

Orders that sum each output over the pixels in order print "same sums" against the register
blocks (the kernel's ``_sparse_forward8`` groups its terms by eight: other bits); the last is a
bound, not a result. Session 57 (BENCHMARKS.md) has the figures on an Intel Xeon.
"""

import sys
import time

import numpy as np
from numba import njit

from fastmlp.data import load_mnist
from fastmlp.kernels._config import KERNEL_OPTIONS
from fastmlp.kernels.linear import _sparse_forward_block4, sparse_forward_block
from fastmlp.kernels.minibatch import PARTS, _sparse_forward8
from fastmlp.kernels.vectors import lanes, vfma, vload_part, vsplat, vstore_part

SUB_ROWS = 64
PADDED = 528


@njit(**KERNEL_OPTIONS)
def kernel(partials, W, ptr, indices, values, scale, j0, j1):
    for r in range(partials.shape[0]):
        z = partials[r]
        lo, hi = ptr[r], ptr[r + 1]
        if 4 * lanes(z) < z.shape[0] <= 8 * lanes(z):
            sparse_forward_block(z, W, W[0, :0], indices[lo:hi], values[lo:hi], scale, 0, z.shape[0])
        else:
            _sparse_forward8(z, W, indices[lo:hi], values[lo:hi], scale)


@njit(**KERNEL_OPTIONS)
def register_blocks(partials, W, ptr, indices, values, scale, j0, j1):
    for r in range(partials.shape[0]):
        z = partials[r]
        lo, hi = ptr[r], ptr[r + 1]
        L = lanes(z)
        n = z.shape[0]
        for c in range(0, n, 8 * L):
            m = min(8 * L, n - c)
            if m > 4 * L:
                sparse_forward_block(z, W, W[0, :0], indices[lo:hi], values[lo:hi], scale, c, m)
            elif m == 4 * L:
                _sparse_forward_block4(z, W, W[0, :0], indices[lo:hi], values[lo:hi], scale, c)
            else:  # a short last block: one vector at a time
                for c1 in range(c, n, L):
                    k = n - c1
                    a = vsplat(z, 0)
                    for p in range(lo, hi):
                        a = vfma(vsplat(z, values[p] * scale), vload_part(W[np.uint32(indices[p])], c1, k), a)
                    vstore_part(z, c1, a, k)


@njit(**KERNEL_OPTIONS)
def _four_block(partials, r0, W, union, xq, n, c):
    z0 = partials[np.uint32(r0)]
    z1 = partials[np.uint32(r0 + 1)]
    z2 = partials[np.uint32(r0 + 2)]
    z3 = partials[np.uint32(r0 + 3)]
    L = lanes(z0)
    m = z0.shape[0] - c
    a00 = vsplat(z0, 0)
    a01, a02, a03 = a00, a00, a00
    a10, a11, a12, a13 = a00, a00, a00, a00
    a20, a21, a22, a23 = a00, a00, a00, a00
    a30, a31, a32, a33 = a00, a00, a00, a00
    for q in range(n):
        w = W[np.uint32(union[q])]
        w0 = vload_part(w, c, m)
        w1 = vload_part(w, c + L, m - L)
        w2 = vload_part(w, c + 2 * L, m - 2 * L)
        w3 = vload_part(w, c + 3 * L, m - 3 * L)
        x = vsplat(z0, xq[q, 0])
        a00, a01, a02, a03 = vfma(x, w0, a00), vfma(x, w1, a01), vfma(x, w2, a02), vfma(x, w3, a03)
        x = vsplat(z0, xq[q, 1])
        a10, a11, a12, a13 = vfma(x, w0, a10), vfma(x, w1, a11), vfma(x, w2, a12), vfma(x, w3, a13)
        x = vsplat(z0, xq[q, 2])
        a20, a21, a22, a23 = vfma(x, w0, a20), vfma(x, w1, a21), vfma(x, w2, a22), vfma(x, w3, a23)
        x = vsplat(z0, xq[q, 3])
        a30, a31, a32, a33 = vfma(x, w0, a30), vfma(x, w1, a31), vfma(x, w2, a32), vfma(x, w3, a33)
    for z, b0, b1, b2, b3 in ((z0, a00, a01, a02, a03), (z1, a10, a11, a12, a13), (z2, a20, a21, a22, a23),
                              (z3, a30, a31, a32, a33)):
        vstore_part(z, c, b0, m)
        vstore_part(z, c + L, b1, m - L)
        vstore_part(z, c + 2 * L, b2, m - 2 * L)
        vstore_part(z, c + 3 * L, b3, m - 3 * L)


@njit(**KERNEL_OPTIONS)
def four_in_registers(partials, W, ptr, indices, values, scale, j0, j1):
    width = j1 - j0
    dense = np.zeros((width, 4), W.dtype)
    union = np.empty(width, np.int64)
    xq = np.empty((width, 4), W.dtype)
    L = lanes(xq[0])
    for r0 in range(0, partials.shape[0] - 3, 4):
        for k in range(4):
            for p in range(ptr[r0 + k], ptr[r0 + k + 1]):
                dense[indices[p] - j0, k] = values[p] * scale
        n = 0
        for j in range(width):
            if dense[j, 0] != 0 or dense[j, 1] != 0 or dense[j, 2] != 0 or dense[j, 3] != 0:
                union[n] = j0 + j
                for k in range(4):
                    xq[n, k] = dense[j, k]
                    dense[j, k] = 0
                n += 1
        for c in range(0, partials.shape[1], 4 * L):
            _four_block(partials, r0, W, union, xq, n, c)


def aligned(shape):
    """Zeros of float32 starting on a 64-byte boundary."""
    size = int(np.prod(shape))
    buffer = np.zeros(size + 16, np.float32)
    offset = (-buffer.ctypes.data % 64) // 4
    return buffer[offset : offset + size].reshape(shape)


def main():
    H = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    part = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    X = load_mnist()[0]
    rng = np.random.default_rng(0)
    j0, j1 = 784 * part // PARTS, 784 * (part + 1) // PARTS
    W = aligned((784, H))  # as the model's parameters start (fastmlp.network.vector_aligned)
    W[:] = rng.standard_normal((784, H)) * 0.05
    padded = aligned((784, max(PADDED, H)))
    padded[:, :H] = W
    batch = rng.permutation(20_000)[:1024]
    nonzero = [np.flatnonzero(X[s, j0:j1]) + j0 for s in batch]
    ptr = np.concatenate([[0], np.cumsum([nz.size for nz in nonzero])]).astype(np.int64)
    indices = np.concatenate(nonzero).astype(np.int32)
    values = np.concatenate([X[s, nz] for s, nz in zip(batch, nonzero)])
    in_l1 = (j0 + (indices - j0) % 8).astype(np.int32)
    scale = np.float32(1 / 255)
    print(f"H = {H}, part {part} (inputs {j0}-{j1 - 1}): {indices.size / batch.size:.1f} nonzero pixels per image")

    orders = {
        "kernel": (kernel, W, indices),
        "kernel, padded rows": (kernel, padded, indices),
        "register blocks": (register_blocks, W, indices),
        "four images in registers": (four_in_registers, W, indices),
        "kernel, W in L1 (bound)": (kernel, W, in_l1),
    }
    out = {name: np.zeros((SUB_ROWS, H), np.float32) for name in orders}

    def run(name):
        f, w, idx = orders[name]
        times = []
        for _ in range(5):
            tic = time.perf_counter()
            for g0 in range(0, batch.size, SUB_ROWS):
                f(out[name], w, ptr[g0 : g0 + SUB_ROWS + 1], idx, values, scale, j0, j1)
            times.append(time.perf_counter() - tic)
        return float(np.median(times)) / batch.size * 1e6

    for name in orders:
        run(name)  # compile
    for r in range(rounds):
        us = {name: run(name) for name in orders}
        print(f"round {r + 1}: " + "; ".join(f"{name} {t:.3f}" for name, t in us.items()) + " us per image")
    same = np.array_equal(out["register blocks"], out["four images in registers"])
    close = np.allclose(out["kernel"], out["register blocks"], rtol=1e-5, atol=1e-5)
    print(f"four images in registers {'same sums' if same else 'OTHER sums'} as register blocks; kernel "
          f"{'within 1e-5' if close else 'NOT within 1e-5'} of them")


if __name__ == "__main__":
    main()
