"""What the backend's aligned copy costs a call of one batch: partial_fit on parameters off a boundary.

    FASTMLP_DATA=../shared/data/mnist python bench/experiments/guard_copy.py HIDDEN ROWS

784-HIDDEN-10 relu, float32, one thread; a fitted model's ``params_`` replaced by an array 16
bytes past a 64-byte boundary (an array of the user's), then ``partial_fit`` of ROWS rows at a time
(one batch per call) over 3,200 rows, nine rounds alternating: the copy on (every call trains on
an aligned copy, written back: ``fastmlp.network.ALIGNED_COPY_SAMPLES`` at 0) and off (the kernels
on the offset array: ``VECTOR_ALIGNMENT`` taken as 16). Prints microseconds per call and the median
of the rounds' on/off ratios. (Audit 57's probe/pf4.py, which measured the figures of BENCHMARKS.md
session 53 before the threshold existed.)
"""

import pickle
import sys
import time

import numpy as np

import fastmlp
from fastmlp import network


def main():
    hidden, rows = int(sys.argv[1]), int(sys.argv[2])
    X, y, _, _ = fastmlp.load_mnist()
    X, y = X.reshape(len(X), -1)[:20000], y[:20000]
    model = fastmlp.MLP([784, hidden, 10], activation="relu", seed=0, threads=1)
    model.fit(X[:2000], y[:2000], batch_size=rows, lr=0.05, progress=False)
    model = pickle.loads(pickle.dumps(model))
    params = model.params_
    buffer = np.empty(params.nbytes + 128, np.uint8)
    first = -buffer.ctypes.data % 64 + 16
    offset = buffer[first : first + params.nbytes].view(params.dtype)
    offset[:] = params
    model.params_ = offset
    n = 3200
    times = {"copy on": [], "copy off": []}
    for _ in range(9):
        for kind in times:
            network.VECTOR_ALIGNMENT = 64 if kind == "copy on" else 16
            network.ALIGNED_COPY_SAMPLES = 0
            tic = time.perf_counter()
            for start in range(0, n, rows):
                model.partial_fit(X[start : start + rows], y[start : start + rows], progress=False)
            times[kind].append((time.perf_counter() - tic) / (n // rows) * 1e6)
    ratio = np.median(np.divide(times["copy on"], times["copy off"]))
    print(f"784-{hidden}-10 relu float32, partial_fit of {rows} rows a call, params_ 16 bytes off: "
          + "; ".join(f"{kind}: {np.median(values):.0f} us/call" for kind, values in times.items())
          + f"; on/off, the rounds' median: {ratio:.3f}")


if __name__ == "__main__":
    main()
