"""Centered inputs for the 784-128-10 sigmoid per-sample row (issue 9's 1.7% target): tried, not kept.

    FASTMLP_DATA=../shared/data/mnist python bench/experiments/centered_inputs.py [SEEDS] [LRS]

Trains the README table's recipe for that row (784-128-10 sigmoid, per-sample SGD, 5 epochs,
Nesterov momentum 0.8, cosine rate, weight decay 3e-5, dropout 0.03) on the pixels as the
loader gives them (uint8, scaled by 1/255) and on the same pixels centered per input (x / 255
minus the training set's mean of that input; float32, so every input is nonzero and each sample
costs all 784 rows of the first layer), at each learning rate (default 0.02, the table's, and
0.03) and seed (default 0,1,2). Prints each run's MNIST test error and, per setting, the mean.
Centering is the classic advice for sigmoid units (LeCun et al., "Efficient BackProp", 1998).
"""

import sys
import time

import numpy as np

import fastmlp
from fastmlp.data import load_mnist

RECIPE = dict(epochs=5, batch_size=1, momentum=0.8, nesterov=True, lr_schedule="cosine", weight_decay=3e-5,
              dropout=0.03, progress=False)


def main():
    seeds = [int(s) for s in (sys.argv[1] if len(sys.argv) > 1 else "0,1,2").split(",")]
    rates = [float(r) for r in (sys.argv[2] if len(sys.argv) > 2 else "0.02,0.03").split(",")]
    X, y, X_test, y_test = load_mnist(download=False)
    X, X_test = X.reshape(len(X), -1), X_test.reshape(len(X_test), -1)
    mean = (X.astype(np.float64) / 255).mean(axis=0)
    inputs = {
        "pixels / 255": (X, X_test),
        "centered": ((X / 255 - mean).astype(np.float32), (X_test / 255 - mean).astype(np.float32)),
    }
    for name, (train, test) in inputs.items():
        for lr in rates:
            errors = []
            for seed in seeds:
                model = fastmlp.MLP([784, 128, 10], activation="sigmoid", seed=seed)
                tic = time.perf_counter()
                model.fit(train, y, lr=lr, **RECIPE)
                seconds = time.perf_counter() - tic
                errors.append(100 * (1 - model.score(test, y_test)))
                print(f"{name:13s} lr {lr:g} seed {seed}: test error {errors[-1]:.2f}% ({seconds:.1f} s)", flush=True)
            print(f"{name:13s} lr {lr:g}: mean {np.mean(errors):.2f}% over seeds {seeds}", flush=True)


if __name__ == "__main__":
    main()
