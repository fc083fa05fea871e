"""Issue 9's sigmoid row with a first-layer learning-rate multiplier: the pixels scaled by s (and
W1's initial values by 1/s, so the network starts as the same function), which multiplies the
first layer's effective rate by s^2 and leaves the output layer's alone.

    FASTMLP_DATA=../shared/data/mnist python bench/experiments/input_scale.py [S,S,...]

784-128-10 sigmoid, per-sample, 5 epochs, the README's recipe for that row (Nesterov 0.8, lr
0.02 cosine, weight decay 3e-5, dropout 0.03), seeds 0-2; prints each scale's test errors and
their mean. s = 1 is the README's command (``partial_fit`` from the initial weights trains
what ``fit`` does).
"""

import sys
import time

import numpy as np

import fastmlp
from fastmlp.data import load_mnist

RECIPE = dict(epochs=5, batch_size=1, momentum=0.8, nesterov=True, lr_schedule="cosine", weight_decay=3e-5,
              dropout=0.03, lr=0.02, progress=False)


def main():
    scales = [float(s) for s in (sys.argv[1] if len(sys.argv) > 1 else "1,0.7,1.4").split(",")]
    X, y, X_test, y_test = load_mnist(download=False)
    for scale in scales:
        X_s = (X * np.float32(scale / 255)).astype(np.float32)
        X_test_s = (X_test * np.float32(scale / 255)).astype(np.float32)
        errors = []
        for seed in (0, 1, 2):
            model = fastmlp.MLP([784, 128, 10], activation="sigmoid", seed=seed).initialize()
            model.weights_[0][...] /= scale
            tic = time.perf_counter()
            model.partial_fit(X_s, y, **RECIPE)
            seconds = time.perf_counter() - tic
            errors.append(100 * (1 - model.score(X_test_s, y_test)))
        print(f"s = {scale:g}: test error {' '.join(f'{e:.2f}' for e in errors)}%, mean {np.mean(errors):.3f}% "
              f"({seconds:.1f} s a run)", flush=True)


if __name__ == "__main__":
    main()
