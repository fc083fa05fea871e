"""The mini-batch kernel's dense forward (``minibatch._dense_block_forward``) alone, a git
revision's against the working tree's, alternated in one process on one thread:

    python bench/experiments/dense_forward_ab.py REV [ROUNDS]

For each layer shape (inputs x units: 500x150, 150x10, 128x10, 800x10, 64x32 float32 and 500x150
float64), one pass over 1,024 rows in blocks of four (minibatch.BLOCK), as step 2 of a mini-batch
runs it; prints the median ns per row of each and the new / base ratio of the medians.
"""
import sys
import tempfile
import time

import numpy as np

from fastmlp.kernels import minibatch as new

sys.path.insert(0, "bench")
from ab_kernels import base_minibatch  # noqa: E402

SHAPES = [(500, 150, np.float32), (150, 10, np.float32), (128, 10, np.float32), (800, 10, np.float32),
          (64, 32, np.float32), (500, 150, np.float64)]
ROWS = 1024


def timed(module, units, Wt, b, n_in):
    first, middle = 0, n_in
    end = middle + Wt.shape[0]
    tic = time.perf_counter()
    for r0 in range(0, ROWS, module.BLOCK):
        module._dense_block_forward(units, (r0, r0 + module.BLOCK), first, middle, end, Wt, b)
    return time.perf_counter() - tic


def main():
    revision = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 9
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as directory:
        base = base_minibatch(revision, directory)
        for n_in, n_out, dtype in SHAPES:
            units = rng.random((ROWS, n_in + n_out)).astype(dtype)
            Wt = rng.standard_normal((n_out, n_in)).astype(dtype)
            b = rng.standard_normal(n_out).astype(dtype)
            times = {"base": [], "new": []}
            for module in (base, new):  # compiled, and a warm-up
                timed(module, units, Wt, b, n_in)
            for _ in range(rounds):
                for name, module in (("base", base), ("new", new)):
                    times[name].append(timed(module, units, Wt, b, n_in))
            base_ns, new_ns = (np.median(times[name]) / ROWS * 1e9 for name in ("base", "new"))
            print(f"{n_in}x{n_out} {np.dtype(dtype).name}: base {base_ns:.0f} ns a row, new {new_ns:.0f}; "
                  f"new / base speed {base_ns / new_ns:.3f}")


if __name__ == "__main__":
    main()
