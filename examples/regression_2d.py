"""A 2-3-1 network fitting a 2-D regression target with mean squared error.

    python examples/regression_2d.py [--backend numba|numpy] [--json]

The target is y = sin(pi * x1) + 0.5 * x2 on [-1, 1]^2 (a smooth surface a 3-unit tanh layer
can represent); the loss is identity + MSE, the right loss for a real-valued target (one of the
original notebooks used a logistic loss here, which cannot even represent negative y).
"""

import argparse
import json

import numpy as np

import fastmlp


def make_data(seed=0, n_samples=1000):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(n_samples, 2))
    y = np.sin(np.pi * X[:, 0]) + 0.5 * X[:, 1]
    return X, y


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="numba")
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    X, y = make_data()
    X_train, y_train, X_test, y_test = X[:800], y[:800], X[800:], y[800:]
    model = fastmlp.MLP([2, 3, 1], activation="tanh", loss="mse", dtype="float64", seed=0, backend=args.backend)
    history = model.fit(X_train, y_train, epochs=args.epochs, batch_size=1, lr=0.05, progress=False)
    mse = float(((model.predict(X_test)[:, 0] - y_test) ** 2).mean())
    result = {
        "setup": "2-3-1 tanh, identity+mse, per-sample SGD",
        "test_mse": mse,
        "test_r2": model.score(X_test, y_test),
        "target_variance": float(y_test.var()),
        "train_loss": history.loss[-1],
        "epochs": args.epochs,
        "backend": args.backend,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"test MSE {mse:.5f} (target variance {y_test.var():.3f}), R^2 {result['test_r2']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
