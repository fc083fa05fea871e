"""Microseconds per sample of a mini-batch epoch at 784-H-10 (or 784-H-150-10) relu, float32, for
several first-layer widths H, the widths alternated round by round in one process.

    FASTMLP_DATA=../shared/data/mnist python bench/experiments/hidden_widths.py BATCH THREADS H1,H2,... \
        [ROUNDS] [shallow|deep]

Each width's model is fitted once on 2,048 samples (compile and warm-up), then each round trains
one ``partial_fit`` epoch of the first 20,000 MNIST images per width (its data preparation
included, the same for every width). Prints the median us per sample, the same per 100 hidden
units, and the rounds' range. Session 58 (BENCHMARKS.md) used it to find the row-by-row first
layers dearer per unit than the input-by-input ones.
"""

import statistics
import sys
import time

import fastmlp


def main():
    batch, threads = int(sys.argv[1]), int(sys.argv[2])
    widths = [int(h) for h in sys.argv[3].split(",")]
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 5
    deep = (sys.argv[5] if len(sys.argv) > 5 else "shallow") == "deep"
    X, y, _, _ = fastmlp.load_mnist()
    X, y = X[:20000], y[:20000]
    models = {}
    for h in widths:
        model = fastmlp.MLP([784, h, 150, 10] if deep else [784, h, 10], activation="relu", threads=threads, seed=0)
        model.fit(X[:2048], y[:2048], batch_size=batch, epochs=1, lr=0.01, progress=False)
        models[h] = model
    seconds = {h: [] for h in widths}
    for _ in range(rounds):
        for h in widths:
            tic = time.perf_counter()
            models[h].partial_fit(X, y, batch_size=batch, epochs=1)
            seconds[h].append(time.perf_counter() - tic)
    for h in widths:
        us = [s / len(y) * 1e6 for s in seconds[h]]
        median = statistics.median(us)
        print(f"H={h:4d} batch {batch} threads {threads}: {median:6.2f} us/sample, {median / h * 100:5.2f} us per "
              f"100 units (rounds {min(us):.2f}-{max(us):.2f})", flush=True)


if __name__ == "__main__":
    main()
