"""How far float32 runs part from the exact result, and which faults `fastmlp compare` sees.

    FASTMLP_DATA=../shared/data/mnist python bench/experiments/compare_float32.py grid [N,N,...] [B,B,...]
    FASTMLP_DATA=../shared/data/mnist python bench/experiments/compare_float32.py faults

``grid``: 784-64-10, seed 0, three epochs on the first N MNIST images (default 1000,4000,16000) at
batch sizes B (default 32,1), five recipes x sigmoid and relu. Each epoch prints one JSON line:
``dn`` and ``dp``, max|W - W64| / max|W64| of the numba and NumPy float32 runs against the NumPy
float64 run from the same initial weights (what compare's float32 rule divides), ``dnp`` between
the two float32 runs (what the old bound measured), and the same for the train loss (``ln``,
``lp``, relative) and test accuracy (``an``, ``ap``, on 2,000 test images).

``faults``: every compiled step longer by a factor (so a gradient that far off) in four settings,
two epochs; prints compare's verdict and both distances.
"""

import itertools
import json
import sys
import time

import numpy as np

import fastmlp
from fastmlp.compare import TOLERANCES, compare_backends
from fastmlp.data import load_mnist

RECIPES = {
    "sgd": dict(lr=0.1),
    "sgd.03": dict(lr=0.03),
    "mom": dict(lr=0.01, momentum=0.9, weight_decay=1e-4),
    "adam": dict(lr=1e-3, optimizer="adam"),
    "drop": dict(lr=0.05, momentum=0.5, dropout=0.2),
}


def grid(X, y, X_test, y_test, sizes, batches):
    for n, batch, (name, recipe), activation in itertools.product(sizes, batches, RECIPES.items(), ("sigmoid", "relu")):
        start = time.time()
        runs = {"n32": fastmlp.MLP([784, 64, 10], activation=activation, seed=0, backend="numba"),
                "p32": fastmlp.MLP([784, 64, 10], activation=activation, seed=0, backend="numpy"),
                "p64": fastmlp.MLP([784, 64, 10], activation=activation, seed=0, backend="numpy", dtype="float64")}
        for model in runs.values():
            model.initialize()
        runs["p64"].params_ = runs["p32"].params_.astype(np.float64)
        for epoch in (1, 2, 3):
            out = {}
            for key, model in runs.items():
                history = model.partial_fit(X[:n], y[:n], epochs=1, schedule_epochs=3, progress=False,
                                            batch_size=batch, **recipe)
                accuracy = model.evaluate(X_test, y_test)["accuracy"]
                out[key] = (history.loss[-1], accuracy, model.params_.astype(np.float64))
            scale = np.abs(out["p64"][2]).max()

            def apart(a, b):
                return float(np.abs(out[a][2] - out[b][2]).max() / scale)

            loss64, accuracy64 = out["p64"][0], out["p64"][1]
            print(json.dumps(dict(
                n=n, batch=batch, recipe=name, act=activation, epoch=epoch,
                dn=apart("n32", "p64"), dp=apart("p32", "p64"), dnp=apart("n32", "p32"),
                ln=abs(out["n32"][0] - loss64) / loss64, lp=abs(out["p32"][0] - loss64) / loss64,
                an=abs(out["n32"][1] - accuracy64), ap=abs(out["p32"][1] - accuracy64),
                secs=round(time.time() - start, 1))), flush=True)


class Faulty(fastmlp.MLP):
    """Every step ``factor`` too long."""

    factor = 1.0

    def partial_fit(self, X, y, **options):
        return super().partial_fit(X, y, **{**options, "lr": options["lr"] * self.factor})


def faults(X, y, X_test, y_test):
    settings = [(1000, 1, dict(lr=0.1)), (1000, 32, dict(lr=0.1)), (4000, 1, dict(lr=0.02, momentum=0.9)),
                (16000, 32, dict(lr=1e-3, optimizer="adam"))]
    for factor in (1.0, 1.003, 1.0003):
        for n, batch, recipe in settings:
            def make(backend):
                model = (Faulty if backend == "numba" else fastmlp.MLP)([784, 64, 10], seed=0, backend=backend)
                model.factor = factor
                return model

            result = compare_backends(make, X[:n], y[:n], X_test, y_test, epochs=2,
                                      fit_kwargs=dict(batch_size=batch, **recipe), tolerance=TOLERANCES["float32"])
            last = result["epochs"][-1]
            print(f"x{factor} {n} images, batch {batch}, {recipe}: agree {result['agree']}, max|W-W64| "
                  f"{last['max_abs_weight_diff_from_float64']} of max|W| {last['max_abs_weight']:.3f}", flush=True)


if __name__ == "__main__":
    X, y, X_test, y_test = load_mnist()
    if sys.argv[1:2] == ["faults"]:
        faults(X, y, X_test, y_test)
    else:
        sizes = [int(v) for v in sys.argv[2].split(",")] if len(sys.argv) > 2 else [1000, 4000, 16000]
        batches = [int(v) for v in sys.argv[3].split(",")] if len(sys.argv) > 3 else [32, 1]
        grid(X, y, X_test[:2000], y_test[:2000], sizes, batches)
