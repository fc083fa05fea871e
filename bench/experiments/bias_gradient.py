"""The mini-batch bias gradient: a column at a time (before session 30) against row by row.

    python bench/experiments/bias_gradient.py

``minibatch._bias_part_gradient`` as it is (each row's units of the part at a time, the rows in
order) against the loop it replaced (each unit down its column), over random float32 rows of dz
as the kernel holds them (every layer's units side by side), both parts of each layer: the same
bits (checked), and microseconds per call and per row (median of 21 alternating rounds).
"""

import time

import numpy as np
from numba import njit

from fastmlp.kernels import minibatch
from fastmlp.kernels._config import KERNEL_OPTIONS


@njit(**KERNEL_OPTIONS)
def column_by_column(db, deltas, dz_column, first, last, fresh):
    for k in range(first, last):
        total = db.dtype.type(0) if fresh else db[k]
        for r in range(deltas.shape[0]):
            total += deltas[r, dz_column + k]
        db[k] = total


@njit
def every_layer(bias_gradient, db, deltas, widths):
    column = 0
    for l in range(widths.shape[0]):
        for part in range(minibatch.PARTS):
            first, last = minibatch._part_range(widths[l], np.int64(part))
            bias_gradient(db[column : column + widths[l]], deltas, column, first, last, True)
        column += widths[l]


def main():
    rng = np.random.default_rng(0)
    versions = {"column by column": column_by_column, "row by row": minibatch._bias_part_gradient}
    for rows, widths in [(1024, [500, 150, 10]), (256, [500, 150, 10]), (128, [128, 10]), (256, [800, 10])]:
        widths = np.array(widths, np.int64)
        deltas = rng.standard_normal((rows, widths.sum() + widths[-1])).astype(np.float32)
        outs = {name: np.zeros(widths.sum(), np.float32) for name in versions}
        for name, function in versions.items():
            every_layer(function, outs[name], deltas, widths)
        same = np.array_equal(*outs.values())
        times = {name: [] for name in versions}
        for _ in range(21):
            for name, function in versions.items():
                tic = time.perf_counter()
                every_layer(function, outs[name], deltas, widths)
                times[name].append(time.perf_counter() - tic)
        us = {name: float(np.median(t)) * 1e6 for name, t in times.items()}
        old, new = us.values()
        print(f"{rows} rows of {'-'.join(map(str, widths))} units: column by column {old:.1f} us, row by row "
              f"{new:.1f} us ({old / new:.2f}x; {old / rows:.3f} and {new / rows:.3f} us per row); same bits: {same}")


if __name__ == "__main__":
    main()
