"""The scikit-learn drop-in's decisions made on ``loss_curve_`` with ``alpha > 0`` against
scikit-learn's own (README, "scikit-learn drop-in"; audit 35, 2026-12-05): both estimators from the
same weights, ``shuffle=False``, float64, so that the weights agree epoch for epoch and only the
penalty in ``loss_curve_`` can move ``n_iter_no_change``'s stopping epoch or the 'adaptive' cuts.

    python bench/experiments/estimators_stopping.py stopping   144 settings: where n_iter_ differs
    python bench/experiments/estimators_stopping.py adaptive   12 'adaptive' runs: where the weights part
    python bench/experiments/estimators_stopping.py alpha0     alpha=0: how long loss_curve_ agrees to rounding
"""

import collections
import itertools
import sys
import warnings

import numpy as np
from sklearn import neural_network

import fastmlp


def from_weights(base, init, ours):
    """``base`` starting from the weights ``init`` [(W, b), ...] (tests/test_estimators.py)."""
    if ours:
        class Fixed(base):
            def _initialize_weights(self):
                super()._initialize_weights()
                for (W, b), (W0, b0) in zip(zip(self.model_.weights_, self.model_.biases_), init):
                    W[...], b[...] = W0, b0
    else:
        class Fixed(base):
            def _initialize(self, *args, **kwargs):
                self._layer = 0
                return super()._initialize(*args, **kwargs)

            def _init_coef(self, fan_in, fan_out, dtype):
                W, b = init[self._layer]
                self._layer += 1
                return W.astype(dtype, copy=True), b.astype(dtype, copy=True)
    Fixed.__name__ = base.__name__
    return Fixed


def pair(kind, n, params, seed):
    """(scikit-learn's, fastmlp's) estimator fitted on the same data from the same weights."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 20))
    X[rng.random(X.shape) < 0.3] = 0
    y = {"multiclass": lambda: rng.permutation(np.arange(n) % 7), "binary": lambda: rng.integers(0, 2, n),
         "regression": lambda: rng.normal(size=(n, 7))}[kind]()
    n_out = 1 if kind == "binary" else 7
    init = []
    for fan_in, fan_out in ((20, 16), (16, n_out)):
        bound = np.sqrt(6 / (fan_in + fan_out))
        init.append((rng.uniform(-bound, bound, (fan_in, fan_out)), rng.uniform(-bound, bound, fan_out)))
    theirs, ours = ((neural_network.MLPRegressor, fastmlp.MLPRegressor) if kind == "regression"
                    else (neural_network.MLPClassifier, fastmlp.MLPClassifier))
    common = dict(params, hidden_layer_sizes=(16,), activation="tanh", shuffle=False, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return (from_weights(theirs, init, ours=False)(**common).fit(X, y),
                from_weights(ours, init, ours=True)(**common, dtype="float64").fit(X, y))


def stopping():
    differ, total = collections.Counter(), collections.Counter()
    for kind, alpha, solver, batch, seed in itertools.product(("regression", "multiclass", "binary"),
                                                              (1e-4, 1e-3, 1e-2, 1e-1), ("sgd", "adam"), (4, 16),
                                                              (0, 1, 2)):
        params = dict(solver=solver, batch_size=batch, learning_rate_init=0.01, alpha=alpha, tol=1e-4,
                      n_iter_no_change=10, max_iter=200, **({"momentum": 0.9} if solver == "sgd" else {}))
        theirs, ours = pair(kind, 10 * batch, params, seed)
        total[kind, alpha] += 1
        if theirs.n_iter_ != ours.n_iter_:
            differ[kind, alpha] += 1
            print(f"  {kind} alpha {alpha:g} {solver} batch {batch} seed {seed}: n_iter_ {theirs.n_iter_} (scikit-learn), "
                  f"{ours.n_iter_} (fastmlp)")
    for key in sorted(total):
        print(f"{key[0]:10s} alpha {key[1]:g}: {differ[key]} of {total[key]} stop at another epoch")
    print(f"{sum(differ.values())} of {sum(total.values())}")


def adaptive():
    parted = 0
    for kind, seed, alpha in itertools.product(("regression", "multiclass"), (0, 1, 2), (1e-3, 1e-2)):
        params = dict(solver="sgd", momentum=0.9, batch_size=4, learning_rate_init=0.01, learning_rate="adaptive",
                      alpha=alpha, tol=1e-4, n_iter_no_change=10, max_iter=300)
        theirs, ours = pair(kind, 40, params, seed)
        flat = [np.concatenate([a.ravel() for a in model.coefs_ + model.intercepts_]) for model in (theirs, ours)]
        distance = float(np.max(np.abs(flat[1] - flat[0])) / np.max(np.abs(flat[0])))
        parted += distance > 1e-8
        print(f"{kind:10s} seed {seed} alpha {alpha:g}: n_iter_ {theirs.n_iter_} (scikit-learn), {ours.n_iter_} "
              f"(fastmlp); final weights apart by {distance:.1e}")
    print(f"{parted} of 12 end with other weights")


def alpha0():
    """With no penalty, loss_curve_ and the weights agree with scikit-learn's to rounding, which
    grows over a long run: where the curves part, and by how much."""
    for kind, solver, seed in itertools.product(("regression", "multiclass"), ("adam", "sgd"), (0, 1, 2)):
        params = dict(solver=solver, batch_size=4, learning_rate_init=0.01, alpha=0.0, tol=1e-4, n_iter_no_change=10,
                      max_iter=300, **({"momentum": 0.9} if solver == "sgd" else {}))
        theirs, ours = pair(kind, 40, params, seed)
        epochs = min(len(theirs.loss_curve_), len(ours.loss_curve_))
        apart = np.abs(np.subtract(ours.loss_curve_[:epochs], theirs.loss_curve_[:epochs])) / np.abs(theirs.loss_curve_[:epochs])
        parted = np.flatnonzero(apart > 1e-12)
        flat = [np.concatenate([a.ravel() for a in model.coefs_ + model.intercepts_]) for model in (theirs, ours)]
        print(f"{kind:10s} {solver} seed {seed}: n_iter_ {theirs.n_iter_} and {ours.n_iter_}; loss_curve_ apart by at "
              f"most {apart[:30].max():.1e} in 30 epochs, {apart.max():.1e} in all, beyond 1e-12 from epoch "
              f"{parted[0] + 1 if len(parted) else '-'}; final weights {float(np.max(np.abs(flat[1] - flat[0])) / np.max(np.abs(flat[0]))):.1e}")


if __name__ == "__main__":
    {"stopping": stopping, "adaptive": adaptive, "alpha0": alpha0}[sys.argv[1] if len(sys.argv) > 1 else "stopping"]()
