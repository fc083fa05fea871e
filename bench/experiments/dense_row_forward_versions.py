"""The per-sample dense forward's versions tried in session 63 on the way to the kept one
(``linear.dense_row_forward``), timed beside the loop before it, as BENCHMARKS.md's table gives them.

    python bench/experiments/dense_row_forward_versions.py [ROUNDS]

Each is called in a compiled loop on the same arrays (the weights borrowed), best ns a call over
ROUNDS (5), as ``dense_row_forward.py`` times the kept one. ``views``: one 64-byte vector per sum,
a view per row; ``two_vectors``: two per sum (even and odd input chunks); ``four_halves``: four
32-byte vectors per sum, a unit at a time (the AVX2 loop's shape); ``flat_reshape``: rows at
offsets of ``Wt.reshape(Wt.size)``; ``eight_units``: that, eight units a pass first. Not the same
bits as the kept version in every case (two_vectors and four_halves sum in other orders).
"""
import sys

from numba import njit

from fastmlp.bench.machine import cpu_name
from fastmlp.kernels import linear
from fastmlp.kernels._config import KERNEL_OPTIONS
from fastmlp.kernels.vectors import hload, hload_part, hzeros, lanes, vfma, vload, vload_part, vsplat, vsum

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from dense_row_forward import best_times, loop_before  # noqa: E402


@njit(**KERNEL_OPTIONS)
def views(z, Wt, b, a):
    """One 64-byte vector per sum, four units a pass, then two, one; a view per row (Wt[k])."""
    n_units = z.shape[0]
    n_in = a.shape[0]
    L = lanes(a)
    whole = n_in // L * L
    tail = n_in - whole  # the inputs after the last whole vector
    zero = z.dtype.type(0)
    k = 0
    while k + 4 <= n_units:
        w0 = Wt[k]
        w1 = Wt[k + 1]
        w2 = Wt[k + 2]
        w3 = Wt[k + 3]
        t0 = vsplat(a, zero)
        t1, t2, t3 = t0, t0, t0
        for j in range(0, whole, L):
            x = vload(a, j)
            t0 = vfma(x, vload(w0, j), t0)
            t1 = vfma(x, vload(w1, j), t1)
            t2 = vfma(x, vload(w2, j), t2)
            t3 = vfma(x, vload(w3, j), t3)
        if tail > 0:
            x = vload_part(a, whole, tail)
            t0 = vfma(x, vload_part(w0, whole, tail), t0)
            t1 = vfma(x, vload_part(w1, whole, tail), t1)
            t2 = vfma(x, vload_part(w2, whole, tail), t2)
            t3 = vfma(x, vload_part(w3, whole, tail), t3)
        z[k] = (b[k] if b.shape[0] > 0 else zero) + vsum(t0)
        z[k + 1] = (b[k + 1] if b.shape[0] > 0 else zero) + vsum(t1)
        z[k + 2] = (b[k + 2] if b.shape[0] > 0 else zero) + vsum(t2)
        z[k + 3] = (b[k + 3] if b.shape[0] > 0 else zero) + vsum(t3)
        k += 4
    if k + 2 <= n_units:
        w0 = Wt[k]
        w1 = Wt[k + 1]
        t0 = vsplat(a, zero)
        t1 = t0
        for j in range(0, whole, L):
            x = vload(a, j)
            t0 = vfma(x, vload(w0, j), t0)
            t1 = vfma(x, vload(w1, j), t1)
        if tail > 0:
            x = vload_part(a, whole, tail)
            t0 = vfma(x, vload_part(w0, whole, tail), t0)
            t1 = vfma(x, vload_part(w1, whole, tail), t1)
        z[k] = (b[k] if b.shape[0] > 0 else zero) + vsum(t0)
        z[k + 1] = (b[k + 1] if b.shape[0] > 0 else zero) + vsum(t1)
        k += 2
    if k < n_units:
        w0 = Wt[k]
        t0 = vsplat(a, zero)
        for j in range(0, whole, L):
            t0 = vfma(vload(a, j), vload(w0, j), t0)
        if tail > 0:
            t0 = vfma(vload_part(a, whole, tail), vload_part(w0, whole, tail), t0)
        z[k] = (b[k] if b.shape[0] > 0 else zero) + vsum(t0)




@njit(**KERNEL_OPTIONS)
def two_vectors(z, Wt, b, a):
    """Two 64-byte vectors per sum (even and odd chunks of the inputs), four units a pass, then one."""
    n_units = z.shape[0]
    n_in = a.shape[0]
    L = lanes(a)
    whole = n_in // L * L
    pairs = n_in // (2 * L) * (2 * L)
    tail = n_in - whole
    zero = z.dtype.type(0)
    one = vsplat(a, 1.0)
    k = 0
    while k + 4 <= n_units:
        w0 = Wt[k]
        w1 = Wt[k + 1]
        w2 = Wt[k + 2]
        w3 = Wt[k + 3]
        e0 = vsplat(a, zero)
        e1, e2, e3, o0, o1, o2, o3 = e0, e0, e0, e0, e0, e0, e0
        for j in range(0, pairs, 2 * L):
            x = vload(a, j)
            y = vload(a, j + L)
            e0 = vfma(x, vload(w0, j), e0)
            e1 = vfma(x, vload(w1, j), e1)
            e2 = vfma(x, vload(w2, j), e2)
            e3 = vfma(x, vload(w3, j), e3)
            o0 = vfma(y, vload(w0, j + L), o0)
            o1 = vfma(y, vload(w1, j + L), o1)
            o2 = vfma(y, vload(w2, j + L), o2)
            o3 = vfma(y, vload(w3, j + L), o3)
        if whole > pairs:
            x = vload(a, pairs)
            e0 = vfma(x, vload(w0, pairs), e0)
            e1 = vfma(x, vload(w1, pairs), e1)
            e2 = vfma(x, vload(w2, pairs), e2)
            e3 = vfma(x, vload(w3, pairs), e3)
            if tail > 0:
                x = vload_part(a, whole, tail)
                o0 = vfma(x, vload_part(w0, whole, tail), o0)
                o1 = vfma(x, vload_part(w1, whole, tail), o1)
                o2 = vfma(x, vload_part(w2, whole, tail), o2)
                o3 = vfma(x, vload_part(w3, whole, tail), o3)
        elif tail > 0:
            x = vload_part(a, whole, tail)
            e0 = vfma(x, vload_part(w0, whole, tail), e0)
            e1 = vfma(x, vload_part(w1, whole, tail), e1)
            e2 = vfma(x, vload_part(w2, whole, tail), e2)
            e3 = vfma(x, vload_part(w3, whole, tail), e3)
        z[k] = (b[k] if b.shape[0] > 0 else zero) + vsum(vfma(e0, one, o0))
        z[k + 1] = (b[k + 1] if b.shape[0] > 0 else zero) + vsum(vfma(e1, one, o1))
        z[k + 2] = (b[k + 2] if b.shape[0] > 0 else zero) + vsum(vfma(e2, one, o2))
        z[k + 3] = (b[k + 3] if b.shape[0] > 0 else zero) + vsum(vfma(e3, one, o3))
        k += 4
    while k < n_units:
        w0 = Wt[k]
        e0 = vsplat(a, zero)
        o0 = e0
        for j in range(0, pairs, 2 * L):
            e0 = vfma(vload(a, j), vload(w0, j), e0)
            o0 = vfma(vload(a, j + L), vload(w0, j + L), o0)
        if whole > pairs:
            e0 = vfma(vload(a, pairs), vload(w0, pairs), e0)
            if tail > 0:
                o0 = vfma(vload_part(a, whole, tail), vload_part(w0, whole, tail), o0)
        elif tail > 0:
            e0 = vfma(vload_part(a, whole, tail), vload_part(w0, whole, tail), e0)
        z[k] = (b[k] if b.shape[0] > 0 else zero) + vsum(vfma(e0, one, o0))
        k += 1


@njit(**KERNEL_OPTIONS)
def four_halves(z, Wt, b, a):
    """Per unit four 32-byte accumulators: chunk c of L inputs into accumulator c mod 4."""
    n_units = z.shape[0]
    n_in = a.shape[0]
    L = lanes(a) // 2
    L4 = 4 * L
    quads = n_in // L4 * L4
    zero = z.dtype.type(0)
    for k in range(n_units):
        w = Wt[k]
        t0 = hzeros(a)
        t1, t2, t3 = t0, t0, t0
        for j in range(0, quads, L4):
            t0 = vfma(hload(a, j), hload(w, j), t0)
            t1 = vfma(hload(a, j + L), hload(w, j + L), t1)
            t2 = vfma(hload(a, j + 2 * L), hload(w, j + 2 * L), t2)
            t3 = vfma(hload(a, j + 3 * L), hload(w, j + 3 * L), t3)
        rest = n_in - quads  # < 4 L: up to three whole chunks and a part, into t0, t1, t2, t3 in turn
        if rest > 0:
            t0 = vfma(hload_part(a, quads, rest), hload_part(w, quads, rest), t0)
        if rest > L:
            t1 = vfma(hload_part(a, quads + L, rest - L), hload_part(w, quads + L, rest - L), t1)
        if rest > 2 * L:
            t2 = vfma(hload_part(a, quads + 2 * L, rest - 2 * L), hload_part(w, quads + 2 * L, rest - 2 * L), t2)
        if rest > 3 * L:
            t3 = vfma(hload_part(a, quads + 3 * L, rest - 3 * L), hload_part(w, quads + 3 * L, rest - 3 * L), t3)
        z[k] = (b[k] if b.shape[0] > 0 else zero) + (vsum(t0) + vsum(t1)) + (vsum(t2) + vsum(t3))


@njit(**KERNEL_OPTIONS)
def flat_reshape(z, Wt, b, a):
    """The views' version with rows at offsets of Wt.reshape(Wt.size)."""
    n_units = z.shape[0]
    n_in = a.shape[0]
    L = lanes(a)
    whole = n_in // L * L
    tail = n_in - whole  # the inputs after the last whole vector
    zero = z.dtype.type(0)
    W = Wt.reshape(Wt.size)
    k = 0
    while k + 4 <= n_units:
        o0 = k * n_in
        o1 = o0 + n_in
        o2 = o1 + n_in
        o3 = o2 + n_in
        t0 = vsplat(a, zero)
        t1, t2, t3 = t0, t0, t0
        for j in range(0, whole, L):
            x = vload(a, j)
            t0 = vfma(x, vload(W, o0 + j), t0)
            t1 = vfma(x, vload(W, o1 + j), t1)
            t2 = vfma(x, vload(W, o2 + j), t2)
            t3 = vfma(x, vload(W, o3 + j), t3)
        if tail > 0:
            x = vload_part(a, whole, tail)
            t0 = vfma(x, vload_part(W, o0 + whole, tail), t0)
            t1 = vfma(x, vload_part(W, o1 + whole, tail), t1)
            t2 = vfma(x, vload_part(W, o2 + whole, tail), t2)
            t3 = vfma(x, vload_part(W, o3 + whole, tail), t3)
        z[k] = (b[k] if b.shape[0] > 0 else zero) + vsum(t0)
        z[k + 1] = (b[k + 1] if b.shape[0] > 0 else zero) + vsum(t1)
        z[k + 2] = (b[k + 2] if b.shape[0] > 0 else zero) + vsum(t2)
        z[k + 3] = (b[k + 3] if b.shape[0] > 0 else zero) + vsum(t3)
        k += 4
    if k + 2 <= n_units:
        o0 = k * n_in
        o1 = o0 + n_in
        t0 = vsplat(a, zero)
        t1 = t0
        for j in range(0, whole, L):
            x = vload(a, j)
            t0 = vfma(x, vload(W, o0 + j), t0)
            t1 = vfma(x, vload(W, o1 + j), t1)
        if tail > 0:
            x = vload_part(a, whole, tail)
            t0 = vfma(x, vload_part(W, o0 + whole, tail), t0)
            t1 = vfma(x, vload_part(W, o1 + whole, tail), t1)
        z[k] = (b[k] if b.shape[0] > 0 else zero) + vsum(t0)
        z[k + 1] = (b[k + 1] if b.shape[0] > 0 else zero) + vsum(t1)
        k += 2
    if k < n_units:
        o0 = k * n_in
        t0 = vsplat(a, zero)
        for j in range(0, whole, L):
            t0 = vfma(vload(a, j), vload(W, o0 + j), t0)
        if tail > 0:
            t0 = vfma(vload_part(a, whole, tail), vload_part(W, o0 + whole, tail), t0)
        z[k] = (b[k] if b.shape[0] > 0 else zero) + vsum(t0)




@njit(**KERNEL_OPTIONS)
def eight_units(z, Wt, b, a):
    """flat_reshape with eight units a pass first (AVX-512 or not)."""
    n_units = z.shape[0]
    n_in = a.shape[0]
    L = lanes(a)
    whole = n_in // L * L
    tail = n_in - whole  # the inputs after the last whole vector
    zero = z.dtype.type(0)
    W = Wt.reshape(Wt.size)
    k = 0
    while k + 8 <= n_units:
        o0 = k * n_in
        o1 = o0 + n_in
        o2 = o1 + n_in
        o3 = o2 + n_in
        o4 = o3 + n_in
        o5 = o4 + n_in
        o6 = o5 + n_in
        o7 = o6 + n_in
        t0 = vsplat(a, zero)
        t1, t2, t3, t4, t5, t6, t7 = t0, t0, t0, t0, t0, t0, t0
        for j in range(0, whole, L):
            x = vload(a, j)
            t0 = vfma(x, vload(W, o0 + j), t0)
            t1 = vfma(x, vload(W, o1 + j), t1)
            t2 = vfma(x, vload(W, o2 + j), t2)
            t3 = vfma(x, vload(W, o3 + j), t3)
            t4 = vfma(x, vload(W, o4 + j), t4)
            t5 = vfma(x, vload(W, o5 + j), t5)
            t6 = vfma(x, vload(W, o6 + j), t6)
            t7 = vfma(x, vload(W, o7 + j), t7)
        if tail > 0:
            x = vload_part(a, whole, tail)
            t0 = vfma(x, vload_part(W, o0 + whole, tail), t0)
            t1 = vfma(x, vload_part(W, o1 + whole, tail), t1)
            t2 = vfma(x, vload_part(W, o2 + whole, tail), t2)
            t3 = vfma(x, vload_part(W, o3 + whole, tail), t3)
            t4 = vfma(x, vload_part(W, o4 + whole, tail), t4)
            t5 = vfma(x, vload_part(W, o5 + whole, tail), t5)
            t6 = vfma(x, vload_part(W, o6 + whole, tail), t6)
            t7 = vfma(x, vload_part(W, o7 + whole, tail), t7)
        z[k] = (b[k] if b.shape[0] > 0 else zero) + vsum(t0)
        z[k + 1] = (b[k + 1] if b.shape[0] > 0 else zero) + vsum(t1)
        z[k + 2] = (b[k + 2] if b.shape[0] > 0 else zero) + vsum(t2)
        z[k + 3] = (b[k + 3] if b.shape[0] > 0 else zero) + vsum(t3)
        z[k + 4] = (b[k + 4] if b.shape[0] > 0 else zero) + vsum(t4)
        z[k + 5] = (b[k + 5] if b.shape[0] > 0 else zero) + vsum(t5)
        z[k + 6] = (b[k + 6] if b.shape[0] > 0 else zero) + vsum(t6)
        z[k + 7] = (b[k + 7] if b.shape[0] > 0 else zero) + vsum(t7)
        k += 8
    while k + 4 <= n_units:
        o0 = k * n_in
        o1 = o0 + n_in
        o2 = o1 + n_in
        o3 = o2 + n_in
        t0 = vsplat(a, zero)
        t1, t2, t3 = t0, t0, t0
        for j in range(0, whole, L):
            x = vload(a, j)
            t0 = vfma(x, vload(W, o0 + j), t0)
            t1 = vfma(x, vload(W, o1 + j), t1)
            t2 = vfma(x, vload(W, o2 + j), t2)
            t3 = vfma(x, vload(W, o3 + j), t3)
        if tail > 0:
            x = vload_part(a, whole, tail)
            t0 = vfma(x, vload_part(W, o0 + whole, tail), t0)
            t1 = vfma(x, vload_part(W, o1 + whole, tail), t1)
            t2 = vfma(x, vload_part(W, o2 + whole, tail), t2)
            t3 = vfma(x, vload_part(W, o3 + whole, tail), t3)
        z[k] = (b[k] if b.shape[0] > 0 else zero) + vsum(t0)
        z[k + 1] = (b[k + 1] if b.shape[0] > 0 else zero) + vsum(t1)
        z[k + 2] = (b[k + 2] if b.shape[0] > 0 else zero) + vsum(t2)
        z[k + 3] = (b[k + 3] if b.shape[0] > 0 else zero) + vsum(t3)
        k += 4
    if k + 2 <= n_units:
        o0 = k * n_in
        o1 = o0 + n_in
        t0 = vsplat(a, zero)
        t1 = t0
        for j in range(0, whole, L):
            x = vload(a, j)
            t0 = vfma(x, vload(W, o0 + j), t0)
            t1 = vfma(x, vload(W, o1 + j), t1)
        if tail > 0:
            x = vload_part(a, whole, tail)
            t0 = vfma(x, vload_part(W, o0 + whole, tail), t0)
            t1 = vfma(x, vload_part(W, o1 + whole, tail), t1)
        z[k] = (b[k] if b.shape[0] > 0 else zero) + vsum(t0)
        z[k + 1] = (b[k + 1] if b.shape[0] > 0 else zero) + vsum(t1)
        k += 2
    if k < n_units:
        o0 = k * n_in
        t0 = vsplat(a, zero)
        for j in range(0, whole, L):
            t0 = vfma(vload(a, j), vload(W, o0 + j), t0)
        if tail > 0:
            t0 = vfma(vload_part(a, whole, tail), vload_part(W, o0 + whole, tail), t0)
        z[k] = (b[k] if b.shape[0] > 0 else zero) + vsum(t0)


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    print(f"{cpu_name()}: best ns a call over {rounds} rounds, and against the loop before")
    versions = {"before": loop_before, "views": views, "two_vectors": two_vectors, "four_halves": four_halves,
                "flat_reshape": flat_reshape, "eight_units": eight_units, "kept": linear.dense_row_forward}
    for (units, inputs), best in best_times(versions, rounds).items():
        print(f"{units:4d} x {inputs:4d}: before {best['before'] * 1e9:6.0f} ns; "
              + ", ".join(f"{name} {best[name] / best['before']:.2f}x" for name in versions if name != "before"))


if __name__ == "__main__":
    main()
