"""The sigmoid row (issue 9: 784-128-10 sigmoid, per-sample, 5 epochs, target 1.7%) from scaled
initial weights: each layer's xavier weights times s1 and s2, then the README's recipe.

    FASTMLP_DATA=../shared/data/mnist python bench/experiments/init_scale.py val|test S1,S2 [S1,S2 ...]

``val``: trained on the first 50,000 training images, scored on the last 10,000, seeds 0-3 (as
``sigmoid_row_search.py search`` scores its recipes); ``test``: all 60,000, the test set, seeds
0-2. Prints each pair's errors (%) and their mean. Glorot and Bengio (2010) suggest four times
the tanh range for sigmoid units; scikit-learn starts logistic layers smaller (sqrt(2/(fan_in +
fan_out)) against xavier's sqrt(6/...)).
"""

import sys

import numpy as np

import fastmlp
from fastmlp.data import load_mnist

RECIPE = dict(batch_size=1, lr=0.02, momentum=0.8, nesterov=True, lr_schedule="cosine", weight_decay=3e-5,
              dropout=0.03)


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in ("val", "test"):
        raise SystemExit(__doc__)
    mode = sys.argv[1]
    X, y, X_test, y_test = load_mnist(download=False)
    if mode == "val":
        X, y, X_test, y_test = X[:50000], y[:50000], X[50000:], y[50000:]
    for pair in sys.argv[2:]:
        s1, s2 = map(float, pair.split(","))
        errors = []
        for seed in range(4 if mode == "val" else 3):
            model = fastmlp.MLP([784, 128, 10], activation="sigmoid", seed=seed)
            model.initialize()
            model.weights_[0][...] *= s1  # views into params_: the run starts from these
            model.weights_[1][...] *= s2
            model.partial_fit(X, y, epochs=5, schedule_epochs=5, progress=False, **RECIPE)
            errors.append(100 * (1 - model.score(X_test, y_test)))
        print(f"{mode} s1={s1:g} s2={s2:g}: errors {[round(e, 2) for e in errors]}, mean {np.mean(errors):.3f}%",
              flush=True)


if __name__ == "__main__":
    main()
