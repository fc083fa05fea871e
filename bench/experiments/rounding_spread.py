"""How far a start 1 ulp away moves a run: the README's figures for `fastmlp compare`'s check.

    python bench/experiments/rounding_spread.py

The data, network and options of tests/test_compare.py's chaotic case (8-16-1 tanh, binary
cross-entropy, per-sample SGD at lr 0.03, cosine, float64, one epoch), with the dropout and
decay there and without them at momentum 0, 0.5 and 0.9: max|W - W'| / max|W| between the NumPy
run and the same run from every weight nudged one ulp up (``compare._rounding_spread``), and, for
the test's options, the backends' own gap beside it.
"""

import numpy as np

from fastmlp import MLP
from fastmlp.compare import _rounding_spread


def make(backend):
    return MLP([8, 16, 1], activation="tanh", loss="binary_cross_entropy", dtype="float64", seed=708,
               backend=backend, threads=1)


def main():
    rng = np.random.default_rng(0)
    centers, labels = rng.normal(size=(2, 8)), rng.integers(0, 2, 835)
    X = centers[labels] + rng.normal(size=(835, 8)) - 2.0
    test = dict(batch_size=1, lr=0.03, momentum=0.9, weight_decay=1e-4, decoupled_weight_decay=True, dropout=0.25,
                input_dropout=0.2, lr_schedule="cosine")
    settings = {"the test's options": test}
    for momentum in (0.0, 0.5, 0.9):
        plain = dict(batch_size=1, lr=0.03, lr_schedule="cosine")
        settings[f"momentum {momentum:g}, no dropout or decay"] = dict(plain, momentum=momentum) if momentum else plain
    for name, options in settings.items():
        runs = {}
        for backend in ("numpy", "numba"):
            model = make(backend)
            model._initialize()
            start = model.params_.copy()
            model.fit(X, labels, epochs=1, progress=False, **options)
            runs[backend] = model.params_.copy()
        top = np.abs(runs["numpy"]).max()
        spread = _rounding_spread(make, start, [runs["numpy"]], X, labels, 1, options)[0]
        gap = np.abs(runs["numba"] - runs["numpy"]).max()
        print(f"{name:38s} max|W| {top:.3g}  backends' gap {gap:.2e} ({gap / top:.1e} of max|W|)  "
              f"nudged {spread:.2e} ({spread / top:.1e} of max|W|)")


if __name__ == "__main__":
    main()
