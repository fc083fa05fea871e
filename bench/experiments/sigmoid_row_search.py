"""The 784-128-10 sigmoid per-sample row (issue 9's 1.7% target): a random search on a validation
split, and how test error falls with more epochs.

    FASTMLP_DATA=../shared/data/mnist python bench/experiments/sigmoid_row_search.py search SEED TRIALS
    FASTMLP_DATA=../shared/data/mnist python bench/experiments/sigmoid_row_search.py epochs 5,10,20 [SEEDS]

``search``: the README's command, then TRIALS random recipes drawn with SEED, each trained for 5 epochs, per-sample, on the
first 50,000 MNIST training images from seeds 0-3 and scored on the last 10,000 (never on the test
set); one JSON line per recipe, with the mean validation error. The rate is drawn as an effective
rate lr / (1 - momentum) in [0.04, 0.4], log-uniform; momentum, Nesterov, weight decay, dropout,
input dropout and the initialisation from short lists; the schedule is cosine.

``epochs``: the README's command for the row (lr 0.02, Nesterov momentum 0.8, cosine, weight decay
3e-5, dropout 0.03) for each number of epochs on all 60,000 images, for each seed (default 0,1,2):
training and test error, training seconds.
"""

import json
import sys
import time

import numpy as np

import fastmlp
from fastmlp.data import load_mnist

LAYERS = [784, 128, 10]
README_RECIPE = dict(batch_size=1, lr=0.02, momentum=0.8, nesterov=True, lr_schedule="cosine",
                     weight_decay=3e-5, dropout=0.03)


def error(model, X, y):
    return 100 * (1 - model.score(X, y))


def draw(rng):
    momentum = float(rng.choice([0.0, 0.5, 0.7, 0.8, 0.9]))
    effective = float(np.exp(rng.uniform(np.log(0.04), np.log(0.4))))
    recipe = dict(epochs=5, batch_size=1, lr_schedule="cosine", lr=round(effective * (1 - momentum), 4),
                  weight_decay=float(rng.choice([0.0, 1e-5, 3e-5, 6e-5])),
                  dropout=float(rng.choice([0.0, 0.03, 0.06, 0.1])),
                  input_dropout=float(rng.choice([0.0, 0.0, 0.05])))
    if momentum > 0:
        recipe.update(momentum=momentum, nesterov=bool(rng.random() < 0.5))
    return str(rng.choice(["auto", "he", "normal"])), recipe


def search(seed, trials):
    X, y, _, _ = load_mnist(download=False)
    X_fit, y_fit, X_val, y_val = X[:50000], y[:50000], X[50000:], y[50000:]
    rng = np.random.default_rng(seed)
    for trial in range(trials + 1):
        init, recipe = ("auto", dict(epochs=5, **README_RECIPE)) if trial == 0 else draw(rng)
        errors = []
        for model_seed in range(4):
            model = fastmlp.MLP(LAYERS, activation="sigmoid", seed=model_seed, init=init)
            model.fit(X_fit, y_fit, progress=False, **recipe)
            errors.append(round(error(model, X_val, y_val), 2))
        print(json.dumps(dict(init=init, **recipe, val_error=round(float(np.mean(errors)), 3), errors=errors)), flush=True)


def epochs_table(epoch_counts, seeds):
    X, y, X_test, y_test = load_mnist(download=False)
    for epochs in epoch_counts:
        for seed in seeds:
            model = fastmlp.MLP(LAYERS, activation="sigmoid", seed=seed)
            start = time.perf_counter()
            model.fit(X, y, epochs=epochs, progress=False, **README_RECIPE)
            seconds = time.perf_counter() - start
            print(f"epochs {epochs:3d} seed {seed}: train error {error(model, X, y):.2f}%, "
                  f"test error {error(model, X_test, y_test):.2f}%, {seconds:.1f} s", flush=True)


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in ("search", "epochs"):
        raise SystemExit(__doc__)
    if sys.argv[1] == "search":
        search(int(sys.argv[2]), int(sys.argv[3]))
    else:
        seeds = [int(s) for s in sys.argv[3].split(",")] if len(sys.argv) > 3 else [0, 1, 2]
        epochs_table([int(e) for e in sys.argv[2].split(",")], seeds)


if __name__ == "__main__":
    main()
