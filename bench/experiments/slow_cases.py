"""Where fastmlp is slow, away from the benchmarked shapes (README, "Where it is slow"; audit 36,
2026-12-05). Warm cache: each case is fitted once on a few hundred rows first.

    python bench/experiments/slow_cases.py smallbatch [LAYERS]   batches of 1-128, 20,000 MNIST rows
    python bench/experiments/slow_cases.py narrow [FILTER]        narrow nets and rows, numba vs numpy
    python bench/experiments/slow_cases.py memory CASE [BS] [OPT] one fit's peak memory (a process each)
    python bench/experiments/slow_cases.py predict uint8|float32  predict's peak memory on a 32,000-row memmap

``memory`` CASEs: ``wide`` (784-4096-4096-10 on 3,000 MNIST rows), ``tiny-1e6`` (1,000,000 x 4
float32 rows, 4-8-2), ``mnist-uint8|float32|float64``. Rates are samples / the trainer's backend
time (``history_.seconds``, without the one-time conversion) and, for ``narrow``, wall time too;
best of three runs, interleaved. Needs FASTMLP_DATA (or the download cache) for MNIST.
"""

import gc
import resource
import sys
import time

import numpy as np

import fastmlp


def mnist(n=None):
    X, y, _, _ = fastmlp.load_mnist()
    return (X, y) if n is None else (X[:n], y[:n])


def smallbatch(layers="784,128,10"):
    layers = [int(size) for size in layers.split(",")]
    X, y = mnist(20000)
    sizes = (1, 2, 3, 4, 8, 16, 32, 128)
    for batch in sizes:
        fastmlp.MLP(layers, threads=1).fit(X[:300], y[:300], batch_size=batch, progress=False)
    rates = {batch: [] for batch in sizes}
    for _ in range(3):
        for batch in sizes:
            model = fastmlp.MLP(layers, threads=1, seed=0)
            model.fit(X, y, batch_size=batch, progress=False)
            rates[batch].append(len(X) / sum(model.history_.seconds))
    for batch in sizes:
        print(f"{layers} batch {batch:4d}: " + " ".join(f"{rate:10,.0f}" for rate in rates[batch])
              + f" samples/s; best / batch 1's best: {max(rates[batch]) / max(rates[1]):.2f}", flush=True)


def narrow(only=""):
    X8, y8 = mnist()
    rng = np.random.default_rng(0)
    Xt = rng.uniform(0.05, 1, (1_000_000, 4)).astype(np.float32)
    yt = rng.integers(0, 2, 1_000_000)
    cases = [("784-1-10 full", [784, 1, 10], X8, y8, None), ("784-1-10 batch 1000", [784, 1, 10], X8, y8, 1000),
             ("1e6x4 4-1-2 full", [4, 1, 2], Xt, yt, None), ("1e6x4 4-1-2 batch 1000", [4, 1, 2], Xt, yt, 1000),
             ("1e6x4 4-8-2 full", [4, 8, 2], Xt, yt, None), ("784-128-10 batch 1000", [784, 128, 10], X8, y8, 1000)]
    epochs = 5
    for name, layers, X, y, batch in cases:
        if only not in name:
            continue
        runs = {backend: [] for backend in ("numba", "numpy")}
        for backend in runs:
            fastmlp.MLP(layers, threads=1, backend=backend).fit(X[:3000], y[:3000], batch_size=batch, progress=False)
        for _ in range(3):
            for backend in runs:
                model = fastmlp.MLP(layers, threads=1, seed=0, backend=backend)
                tic = time.perf_counter()
                model.fit(X, y, epochs=epochs, batch_size=batch, progress=False)
                runs[backend].append((epochs * len(X) / (time.perf_counter() - tic),
                                      epochs * len(X) / sum(model.history_.seconds)))
        wall = {backend: max(run[0] for run in done) for backend, done in runs.items()}
        kernel = {backend: max(run[1] for run in done) for backend, done in runs.items()}
        print(f"{name:24s} wall: numba {wall['numba'] / 1e3:7.0f}k, numpy {wall['numpy'] / 1e3:7.0f}k "
              f"(numpy / numba {wall['numpy'] / wall['numba']:.2f}); backend time: numba {kernel['numba'] / 1e3:7.0f}k, "
              f"numpy {kernel['numpy'] / 1e3:7.0f}k ({kernel['numpy'] / kernel['numba']:.2f})", flush=True)


def memory(case, batch="128", optimizer="sgd"):
    batch = None if batch == "full" else int(batch)
    layers, dtype = [784, 128, 10], "float32"
    if case == "wide":
        X, y = mnist(3000)
        layers = [784, 4096, 4096, 10]
    elif case.startswith("tiny-"):
        n = int(float(case.split("-")[1]))
        X = np.random.default_rng(0).uniform(0.05, 1, (n, 4)).astype(np.float32)
        y = np.random.default_rng(1).integers(0, 2, n)
        layers = [4, 8, 2]
    elif case.startswith("mnist-"):
        kind = case.split("-", 1)[1]
        X8, y = mnist()
        X = {"uint8": X8, "float32": (X8 / np.float32(255)).astype(np.float32), "float64": X8 / 255.0}[kind]
        dtype = "float64" if kind == "float64" else dtype
    else:
        raise SystemExit(f"unknown case {case!r}: wide, tiny-1e6, mnist-uint8|float32|float64")
    fastmlp.MLP(layers, threads=1, dtype=dtype, seed=0).fit(X[:300], y[:300], batch_size=batch, optimizer=optimizer,
                                                             progress=False)
    model = fastmlp.MLP(layers, threads=1, dtype=dtype, seed=0)
    gc.collect()
    with open("/proc/self/statm") as statm:
        before = int(statm.read().split()[1]) * resource.getpagesize() / 2**20
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # (the peak resident size starts again from here: Linux)
    model.fit(X, y, batch_size=batch, optimizer=optimizer, progress=False)
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM"))
    state = model.optimizer_state_
    need = X.nbytes / 2**20 + model.params_.nbytes / 2**20 + (state.slots.nbytes / 2**20 if state is not None else 0)
    print(f"{case} batch {batch} {optimizer} {layers}: the fit's peak grew the process by {peak - before:.1f} MB; "
          f"data + weights + optimizer state {need:.1f} MB ({(peak - before) / need:.2f}x)", flush=True)


def predict(dtype="float32"):
    import os
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "x.npy")
        rows = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(32000, 784))
        rng = np.random.default_rng(0)
        for start in range(0, 32000, 4000):  # dense: every input nonzero
            rows[start : start + 4000] = (rng.integers(1, 255, size=(4000, 784)) if dtype == "uint8"
                                          else rng.random((4000, 784), dtype=np.float32) + 0.01)
        rows.flush()
        del rows
        model = fastmlp.MLP([784, 32, 10], seed=0, dtype="float32")
        model.fit(np.ones((20, 784), dtype), np.arange(20) % 10, batch_size=10, progress=False)
        X = np.load(path, mmap_mode="r")
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        model.predict(X)
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
        print(f"predict on a {os.path.getsize(path) / 2**20:.0f} MB {dtype} memmap: the peak grew by {grown:.0f} MB",
              flush=True)


if __name__ == "__main__":
    command, *arguments = sys.argv[1:] or ["smallbatch"]
    {"smallbatch": smallbatch, "narrow": narrow, "memory": memory, "predict": predict}[command](*arguments)
