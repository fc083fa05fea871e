"""One epoch of 784-128-10 (sigmoid, softmax + cross-entropy, float32, lr 0.1) per backend.

    pytest bench --benchmark-only

Each configuration is one benchmark group holding the numpy and numba rows side by side;
samples per second sit in ``extra_info``. NumPy runs first in every group, so the numba test
can compare against it in the same run and fails when the compiled core is the slower one.
"""

import numpy as np
import pytest

from fastmlp import trainer
from fastmlp.backends import make_backend
from fastmlp.network import Architecture, init_params

LAYERS = (784, 128, 10)


def prepare(backend_name, batch_size, mnist_train, threads=1):
    X, y = mnist_train
    arch = Architecture(LAYERS, "sigmoid", "cross_entropy", dtype="float32")
    backend = make_backend(backend_name, arch, threads)
    data = backend.prepare(X)
    start = init_params(arch, "xavier", seed=0)
    params = start.copy()
    backend.warmup(params, data, y, batch_size)  # JIT compiled before anything is timed
    order = np.random.default_rng(0).permutation(len(y))

    def setup():
        params[...] = start
        return (), {}

    def one_epoch():
        for begin, end in trainer.chunk_bounds(len(y), batch_size):
            backend.train_chunk(params, data, y, order[begin:end], 0.1, batch_size)

    return setup, one_epoch, len(y)


def record(benchmark, throughput, group, backend_name, n_samples):
    samples_per_second = n_samples / benchmark.stats.stats.median
    benchmark.extra_info["samples_per_second"] = samples_per_second
    throughput[(group, backend_name)] = samples_per_second
    numpy_rate = throughput.get((group, "numpy"))
    if backend_name != "numpy" and numpy_rate:
        benchmark.extra_info["speedup_vs_numpy"] = samples_per_second / numpy_rate
        assert samples_per_second > numpy_rate, (
            f"{group}: compiled {samples_per_second:,.0f} samples/s is slower than NumPy's {numpy_rate:,.0f}"
        )


@pytest.mark.parametrize("batch_size", [1, 32, 128, 1024], ids=lambda b: f"bs={b}")
@pytest.mark.parametrize("backend_name", ["numpy", "numba"])
def test_epoch(benchmark, throughput, mnist_train, backend_name, batch_size):
    group = f"784-128-10 bs={batch_size}"
    benchmark.group = group
    setup, one_epoch, n_samples = prepare(backend_name, batch_size, mnist_train)
    rounds = 3 if (backend_name == "numpy" and batch_size == 1) else 5
    benchmark.pedantic(one_epoch, setup=setup, rounds=rounds, iterations=1)
    record(benchmark, throughput, group, backend_name, n_samples)


def test_epoch_per_sample_two_threads(benchmark, throughput, mnist_train):
    """threads=2 per-sample SGD, next to the one-thread numba row of bs=1."""
    group = "784-128-10 bs=1"
    benchmark.group = group
    setup, one_epoch, n_samples = prepare("numba", 1, mnist_train, threads=2)
    benchmark.pedantic(one_epoch, setup=setup, rounds=5, iterations=1)
    samples_per_second = n_samples / benchmark.stats.stats.median
    benchmark.extra_info["samples_per_second"] = samples_per_second
    one_thread = throughput.get((group, "numba"))
    if one_thread:
        benchmark.extra_info["speedup_vs_one_thread"] = samples_per_second / one_thread
