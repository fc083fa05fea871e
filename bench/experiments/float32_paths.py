"""Which paths float32 training takes from starts 1 ulp apart (session 64).

The case of ``tests/test_compare.py::test_float32_adam_relu_that_parts_from_float64_is_no_fault``
(784-64-10 relu, Adam at 1e-3, batch 32, 16,000 MNIST images, two epochs): the NumPy reference in
float32 from the seed's weights and from five starts nudged by one ulp (all up, all down, three
random signs), each measured after every epoch against the float64 reference from the same
weights (max|W - W64|). Where the figures fall into a few distinct values, a float32 run's
distance from float64 depends on which path its last bits take it down: a compiled run on
another path than the NumPy one's is no fault, and a comparison of the two cannot tell.

    FASTMLP_DATA=... python bench/experiments/float32_paths.py [SEED ...]
"""
import sys

import numpy as np

from fastmlp import MLP
from fastmlp.data import load_mnist

OPTIONS = {"batch_size": 32, "lr": 1e-3, "optimizer": "adam"}


def run(seed, dtype, start, X, y, epochs=2):
    model = MLP([784, 64, 10], activation="relu", seed=seed, backend="numpy", dtype=dtype)
    model._initialize(symmetry_warning=False)
    model.params_ = start.astype(dtype)
    after = []
    for _ in range(epochs):
        model.partial_fit(X, y, epochs=1, schedule_epochs=epochs, progress=False, **OPTIONS)
        after.append(model.params_.astype(np.float64))
    return after


def main(seeds):
    X, y, _, _ = load_mnist()
    X, y = X[:16000], y[:16000]
    for seed in seeds:
        first = MLP([784, 64, 10], activation="relu", seed=seed, backend="numpy", dtype="float32")
        start = first._initialize(symmetry_warning=False).params_.copy()
        reference = run(seed, "float64", start, X, y)
        up, down = np.nextafter(start, np.inf), np.nextafter(start, -np.inf)
        rng = np.random.default_rng(0)
        starts = {"seed's": start, "up": up, "down": down}
        for i in range(3):
            starts[f"random {i}"] = np.where(rng.integers(0, 2, start.size).astype(bool), up, down)
        print(f"seed {seed}: max|W - W64| after each epoch")
        for name, nudged in starts.items():
            distances = [np.abs(a - b).max() for a, b in zip(run(seed, "float32", nudged, X, y), reference)]
            print(f"  {name:>9} start: " + "  ".join(f"{d:.2e}" for d in distances), flush=True)


if __name__ == "__main__":
    main([int(s) for s in sys.argv[1:]] or [0, 2])
