"""Which recipes leave subnormal numbers in the optimizer state (session 63): counts, after a few
recipes on MNIST rows, the parameters and optimizer slots (velocities, Adam's m and s) that are
subnormal (nonzero, below float32's smallest normal) and those nonzero below 1e-30. The counts
are the same on every machine (the speed they cost is not: Intel cores take a microcode assist for
arithmetic on subnormals, ``subnormals.py``).

    FASTMLP_DATA=DIR python bench/experiments/subnormal_state.py [RECIPE ...]

"mb" recipes are mini-batch, "ps" per-sample, one thread; 20,000 training rows (the full-batch
one 2,000). Prints each recipe's counts, test accuracy and training seconds.
"""
import sys

import numpy as np

import fastmlp

ROWS = 20000


def sub(a):
    tiny = np.finfo(a.dtype).tiny
    return int(((a != 0) & (np.abs(a) < tiny)).sum())


def below(a, t=1e-30):
    return int(((a != 0) & (np.abs(a) < t)).sum())


RECIPES = {
    "mb momentum": dict(layers=[784, 300, 10], act="relu", fit=dict(epochs=3, batch_size=32, lr=0.2, momentum=0.9)),
    "mb nesterov wd": dict(layers=[784, 100, 10], act="relu", fit=dict(epochs=3, batch_size=32, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-5)),
    "mb adam": dict(layers=[784, 100, 10], act="relu", fit=dict(epochs=3, batch_size=32, lr=1e-3, optimizer="adam")),
    "mb dropout momentum": dict(layers=[784, 100, 10], act="relu", fit=dict(epochs=3, batch_size=32, lr=0.1, momentum=0.9, dropout=0.2)),
    "ps momentum": dict(layers=[784, 128, 10], act="sigmoid", fit=dict(epochs=1, batch_size=1, lr=0.05, momentum=0.9)),
    "ps momentum wd": dict(layers=[784, 128, 10], act="sigmoid", fit=dict(epochs=1, batch_size=1, lr=0.05, momentum=0.9, weight_decay=1e-5)),
    "ps nesterov wd 0.99": dict(layers=[784, 128, 10], act="relu", fit=dict(epochs=1, batch_size=1, lr=0.005, momentum=0.99, nesterov=True, weight_decay=1e-4)),
    "ps adam": dict(layers=[784, 64, 10], act="relu", fit=dict(epochs=1, batch_size=1, lr=1e-3, optimizer="adam")),
    "fullbatch momentum": dict(layers=[784, 32, 10], act="relu", rows=2000, fit=dict(epochs=1000, batch_size=2000, lr=0.5, momentum=0.9)),
}


def main():
    X, y, Xt, yt = fastmlp.load_mnist()
    names = sys.argv[1:] or list(RECIPES)
    for name in names:
        r = RECIPES[name]
        rows = r.get("rows", ROWS)
        m = fastmlp.MLP(r["layers"], activation=r["act"], seed=0, threads=1)
        m.fit(X[:rows], y[:rows], progress=False, **r["fit"])
        s = m.optimizer_state_.slots
        print(f"{name:22s} params sub {sub(m.params_):6d} <1e-30 {below(m.params_):6d} | slots sub {sub(s):7d} <1e-30 {below(s):7d} "
              f"of {s.size:8d} | acc {m.score(Xt, yt):.4f} | {sum(m.history_.seconds):.2f} s", flush=True)


if __name__ == "__main__":
    main()
