"""relu in place, as a select and as a product: LLVM compiles the select (a value kept where it
was loaded) to masked stores of the zeros, which AMD's Zen 2 runs microcoded.

    python bench/experiments/relu_stores.py

650 float32 values (a 500-150 network's hidden units), 200,000 passes each; ns per element and the
count of masked-store instructions (vmaskmovps/vmaskmovpd with a memory destination) in each
loop's code. Compiled here, not from the cache, so that the code can be inspected.
"""

import re
import time

import numpy as np
from numba import njit

from fastmlp.kernels._config import KERNEL_OPTIONS
from fastmlp.kernels.activation import _where

OPTIONS = dict(KERNEL_OPTIONS, cache=False)


@njit(**OPTIONS)
def forward_select(x, reps):  # the kernels' relu before 6ec448f
    zero = np.float32(0)
    for _ in range(reps):
        for k in range(x.shape[0]):
            x[k] = _where(x[k] < zero, zero, x[k])


@njit(**OPTIONS)
def forward_product(x, reps):  # activation_row_forward's relu since 6ec448f
    zero = x.dtype.type(0)
    one = x.dtype.type(1)
    lowest = x.dtype.type(-3.4028234663852886e38)
    for _ in range(reps):
        for k in range(x.shape[0]):
            v = x[k]
            x[k] = _where(v < lowest, lowest, v) * _where(v > zero, one, zero)


@njit(**OPTIONS)
def backward_select(d, a, reps):
    zero = np.float32(0)
    for _ in range(reps):
        for k in range(d.shape[0]):
            d[k] = _where(a[k] > zero, d[k], zero)


@njit(**OPTIONS)
def backward_product(d, a, reps):
    zero = np.float32(0)
    one = np.float32(1)
    for _ in range(reps):
        for k in range(d.shape[0]):
            d[k] *= _where(a[k] > zero, one, zero)


def main():
    n, reps = 650, 200_000
    rng = np.random.default_rng(0)
    for loop in (forward_select, forward_product, backward_select, backward_product):
        x = rng.random(n, dtype=np.float32) - np.float32(0.5)
        args = (x,) if loop.__name__.startswith("forward") else (rng.random(n, dtype=np.float32), x)
        loop(*args, 1)
        start = time.perf_counter()
        loop(*args, reps)
        ns = (time.perf_counter() - start) / reps / n * 1e9
        code = loop.inspect_asm(loop.signatures[0])
        stores = len(re.findall(r"vmaskmovp[sd]\s+%[xy]mm\d+, %[xy]mm\d+, -?\w*\(", code))
        print(f"{loop.__name__:17s} {ns:.3f} ns an element, {stores} masked stores")


if __name__ == "__main__":
    main()
