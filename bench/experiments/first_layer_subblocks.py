"""The first layer's two sparse products with W's rows split finer than the kernel's parts: does
keeping a block of W (or dW) in L1 while every sample of the batch passes over it gain?

    FASTMLP_DATA=../shared/data/mnist python bench/experiments/first_layer_subblocks.py [BATCH] [ROUNDS]

Float32, 784-128-10's first layer (128 units, rows of 512 bytes), one thread, batches of BATCH
(256) MNIST rows drawn from the first 20,000, twenty batches a round. Two questions:

- "sub-blocks": each of the kernel's PARTS blocks of W's rows (196 rows, 98 KB: L2) split into S
  sub-blocks (S = 2, 4, 7: 98, 49, 28 rows, the last two within a 32 KB L1), and the batch's
  rows looped inside each sub-block. The forward keeps a sample's sums in registers within a
  sub-block (``linear.sparse_forward_block``) and stores them between sub-blocks, so it adds the
  same terms in the same order; the weight gradient adds each row's terms over the samples in
  batch order (``minibatch._sparse_gradient``) either way. The script checks both are bit for
  bit those of S = 1 (the kernel's loops).
- "parts": the same loops over 4 (the kernel's), 2 or 1 block of W's rows: fewer, longer runs
  of nonzeros per sample (the forward's partial sums would then be added in another order).

Each case is printed as its time for the round and its speed against the first case of its
question, as the median (and range) of the rounds' ratios, alternating the cases in each round.
"""

import os
import sys
import time

import numpy as np
from numba import njit

import fastmlp
from fastmlp.kernels._config import KERNEL_OPTIONS
from fastmlp.kernels.codes import PARTS
from fastmlp.kernels.linear import sparse_forward_block, sparse_rows
from fastmlp.kernels.minibatch import _sparse_gradient

H = 128


@njit(**KERNEL_OPTIONS)
def forward(P, W, ptr, indices, values, batch, scale, n_parts, sub):
    """P[part, r] = x[batch[r]] @ W over the part's nonzeros, a sub-block at a time."""
    empty = W[0, :0]
    for part in range(n_parts):
        for s in range(sub):
            k = part * sub + s
            for r in range(batch.shape[0]):
                lo = ptr[batch[r] * n_parts * sub + k]
                hi = ptr[batch[r] * n_parts * sub + k + 1]
                z = P[part, r]
                if s == 0:
                    sparse_forward_block(z, W, empty, indices[lo:hi], values[lo:hi], scale, 0, P.shape[2])
                elif lo < hi:  # on from the sums stored so far
                    sparse_forward_block(z, W, z, indices[lo:hi], values[lo:hi], scale, 0, P.shape[2])


@njit(**KERNEL_OPTIONS)
def gradient(dW, dz, ptr, indices, values, batch, scale, n_parts, sub):
    """dW[j] += x[batch[r], j] dz[r], a sub-block of dW's rows at a time."""
    for part in range(n_parts):
        for s in range(sub):
            k = part * sub + s
            for r in range(batch.shape[0]):
                lo = ptr[batch[r] * n_parts * sub + k]
                hi = ptr[batch[r] * n_parts * sub + k + 1]
                if lo < hi:
                    _sparse_gradient(dW, dz[r], indices[lo:hi], values[lo:hi], scale)


def _timed(call):
    tic = time.perf_counter()
    call()
    return time.perf_counter() - tic


def main():
    B = int(sys.argv[1]) if len(sys.argv) > 1 else 256
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 9
    X = fastmlp.load_mnist(os.environ.get("FASTMLP_DATA"), download=False)[0][:20000]
    rng = np.random.default_rng(0)
    W = rng.standard_normal((784, H)).astype(np.float32)
    scale = np.float32(1 / 255)
    batches = [rng.choice(len(X), B, replace=False).astype(np.int64) for _ in range(20)]
    dz = (rng.standard_normal((B, H)) * 1e-3).astype(np.float32)
    P = np.zeros((PARTS, B, H), np.float32)
    dW = np.zeros((784, H), np.float32)
    # (name, parts, sub-blocks per part)
    questions = {"sub-blocks": [(f"S = {s} ({784 // (PARTS * s)} rows)", PARTS, s) for s in (1, 2, 4, 7)],
                 "parts": [(f"{n} part(s)", n, 1) for n in (PARTS, 2, 1)]}
    pointers = {n: sparse_rows(X, parts=n)[:3] for n in {p * s for cases in questions.values() for _, p, s in cases}}

    reference = None
    for _, n_parts, sub in questions["sub-blocks"]:
        ptr, indices, values = pointers[n_parts * sub]
        P[...] = np.nan
        forward(P, W, ptr, indices, values, batches[0], scale, n_parts, sub)
        dW[...] = 0
        gradient(dW, dz, ptr, indices, values, batches[0], scale, n_parts, sub)
        if reference is None:
            reference = (P.copy(), dW.copy())
        assert np.array_equal(reference[0], P) and np.array_equal(reference[1], dW), "not the same sums"

    times = {}
    for _ in range(rounds):
        for question, cases in questions.items():
            for name, n_parts, sub in cases:
                ptr, indices, values = pointers[n_parts * sub]
                for kind, run in (("forward", forward), ("gradient", gradient)):
                    out = P if kind == "forward" else dW
                    other = W if kind == "forward" else dz
                    times.setdefault((question, kind, name), []).append(_timed(
                        lambda: [run(out, other, ptr, indices, values, b, scale, n_parts, sub) for b in batches]))
    print(f"float32, {H} units, batches of {B}, one thread; medians of {rounds} rounds")
    for question, cases in questions.items():
        for kind in ("forward", "gradient"):
            base = np.array(times[(question, kind, cases[0][0])])
            for name, _, _ in cases:
                t = np.array(times[(question, kind, name)])
                ratio = base / t
                print(f"{question:10s} {kind:8s} {name:18s} {np.median(t) * 1e3:7.2f} ms  "
                      f"speed {np.median(ratio):.3f}x ({ratio.min():.2f}-{ratio.max():.2f})")


if __name__ == "__main__":
    main()
