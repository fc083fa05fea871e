"""The per-sample kernels' dense forward (``linear.dense_row_forward``) alone, against the loop
it replaced in session 63 (which LLVM vectorised itself, in an order of the target's vectors).

    python bench/experiments/dense_row_forward.py [ROUNDS]

For a few layer shapes (units x inputs, float32) each version is called in a compiled loop on
the same arrays, the weights ``borrowed`` as the kernels pass them; prints the best time of a call
of each over ROUNDS (5) and the ratio. An AVX2 build on an AVX-512 host: NUMBA_CPU_NAME=haswell
and NUMBA_CPU_FEATURES (``machine_bits.py``'s docstring) with a NUMBA_CACHE_DIR of its own.
"""
import sys
import time

import numpy as np
from numba import njit

from fastmlp.bench.machine import cpu_name
from fastmlp.kernels import linear
from fastmlp.kernels._config import KERNEL_OPTIONS
from fastmlp.kernels.linear import borrowed
from fastmlp.kernels.vectors import REGISTER_BLOCK

SHAPES = [(10, 64), (10, 100), (10, 128), (10, 150), (10, 800), (32, 64), (64, 128), (150, 500)]


@njit(**KERNEL_OPTIONS)
def loop_before(z, Wt, b, a):
    """dense_row_forward before session 63."""
    for k in range(z.shape[0]):
        w = Wt[k]
        total = b[k] if b.shape[0] > 0 else np.float32(0.0)
        for j in range(a.shape[0]):
            total += w[j] * a[j]
        z[k] = total


def _timed(function):
    @njit(**{**KERNEL_OPTIONS, "cache": False})
    def calls(z, Wt, b, a, n):
        total = 0.0
        for i in range(n):
            a[0] = i * 1e-9  # each call's result depends on the loop
            function(z, borrowed(Wt), b, a)
            total += z[0]
        return total

    return calls


def best_times(versions, rounds):
    """{(units, inputs): {name: best seconds a call}} for each shape of SHAPES, the versions
    (name: function of dense_row_forward's arguments) called in turn each round."""
    timed = {name: _timed(function) for name, function in versions.items()}
    results = {}
    for units, inputs in SHAPES:
        rng = np.random.default_rng(0)
        Wt = rng.standard_normal((units, inputs)).astype(np.float32)
        b = rng.standard_normal(units).astype(np.float32)
        a = rng.standard_normal(inputs).astype(np.float32)
        z = np.zeros(units, np.float32)
        n = max(1000, int(2e7 // (units * inputs)))
        for calls in timed.values():
            calls(z, Wt, b, a, 10)
        best = {}
        for _ in range(rounds):  # the versions in turn
            for name, calls in timed.items():
                start = time.perf_counter()
                calls(z, Wt, b, a, n)
                best[name] = min(best.get(name, np.inf), (time.perf_counter() - start) / n)
        results[units, inputs] = best
    return results


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    print(f"{cpu_name()}, register block {REGISTER_BLOCK}: best ns a call over {rounds} rounds")
    for (units, inputs), best in best_times({"before": loop_before, "now": linear.dense_row_forward}, rounds).items():
        print(f"{units:4d} x {inputs:4d}: before {best['before'] * 1e9:7.0f}  now {best['now'] * 1e9:7.0f}  "
              f"now / before {best['now'] / best['before']:.2f}")


if __name__ == "__main__":
    main()
