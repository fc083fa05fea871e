"""Do two CPU kinds train to the same bits? Trains a few recipes on MNIST rows and stores the
weights and test-set probabilities; a second call compares two such files.

    python bench/experiments/machine_bits.py train OUT.npz [ROWS]     # 10,000 training rows by default
    python bench/experiments/machine_bits.py steps OUT.npz            # a few mini-batch steps (below)
    python bench/experiments/machine_bits.py compare A.npz B.npz

``steps``: relu networks that reach each path of the mini-batch dense forward (784-128-10 and
784-128-64-10 after one and two steps of 32 rows, SGD and momentum; 784-300-51-10 and
784-260-33-10 at batch 29 and 64, float32 and float64, three batches); ``compare`` then lists each
entry as the same bits or not.

Run ``train`` on each kind, or on one machine for two targets, each with a Numba cache of its own;
an AVX2 build on an AVX-512 host, for example (the host's features with every AVX-512 one off):

    F=$(python -c "import llvmlite.binding as ll; print(','.join(f.replace('+', '-') if 'avx512' in f
        or 'amx' in f else f for f in ll.get_host_cpu_features().flatten().split(',')))")
    NUMBA_CPU_NAME=haswell NUMBA_CPU_FEATURES=$F NUMBA_CACHE_DIR=$(mktemp -d) \\
        python bench/experiments/machine_bits.py train avx2.npz

``FASTMLP_REGISTER_BLOCK=4`` or ``8`` makes both builds use the same register blocks, which tells
the blocks' share of a difference from the rest of the generated code's. Needs FASTMLP_DATA.
"""
import sys

import numpy as np

from fastmlp import MLP, load_mnist

RECIPES = {
    "per-sample sgd, sigmoid": (dict(activation="sigmoid"), dict(batch_size=1, lr=0.1)),
    "per-sample momentum + decay, sigmoid": (
        dict(activation="sigmoid"), dict(batch_size=1, lr=0.02, momentum=0.9, weight_decay=1e-4)),
    "per-sample sgd, relu, 784-128-64-10, float64": (
        dict(activation="relu", dtype="float64", layers=[784, 128, 64, 10]), dict(batch_size=1, lr=0.02)),
    "per-sample adam, tanh, 784-64-32-10": (
        dict(activation="tanh", layers=[784, 64, 32, 10]), dict(batch_size=1, lr=1e-3, optimizer="adam")),
    "batch 32 momentum, relu": (dict(activation="relu"), dict(batch_size=32, lr=0.05, momentum=0.9)),
    "batch 128 adam + dropout, relu": (
        dict(activation="relu"), dict(batch_size=128, lr=1e-3, optimizer="adam", dropout=0.2)),
    "batch 32 sgd, tanh, float64": (dict(activation="tanh", dtype="float64"), dict(batch_size=32, lr=0.05)),
}


def train(out, rows):
    X, y, X_test, y_test = load_mnist()
    results = {}
    for name, (model_options, fit_options) in RECIPES.items():
        options = dict(dict(layers=[784, 128, 10]), **model_options)
        model = MLP(options.pop("layers"), seed=0, threads=1, **options)
        model.fit(X[:rows], y[:rows], epochs=1, progress=False, **fit_options)
        results[name + " | params"] = model.params_
        results[name + " | proba"] = model.predict_proba(X_test[:2000])
        results[name + " | accuracy"] = np.array(model.score(X_test, y_test))
    np.savez(out, **results)


def steps(out):
    X, y, _, _ = load_mnist()
    results = {}
    for layers in ([784, 128, 10], [784, 128, 64, 10]):
        for n_steps in (1, 2):
            for options in ({}, {"momentum": 0.9}):
                model = MLP(layers, activation="relu", seed=0, threads=1)
                model.fit(X[:32 * n_steps], y[:32 * n_steps], epochs=1, batch_size=32, lr=0.05, progress=False,
                          shuffle=False, **options)
                results[f"{layers} {n_steps} steps {options}"] = model.params_
    for layers in ([784, 300, 51, 10], [784, 260, 33, 10]):
        for batch in (29, 64):
            for dtype in ("float32", "float64"):
                model = MLP(layers, activation="relu", seed=0, threads=1, dtype=dtype)
                model.fit(X[:batch * 3], y[:batch * 3], epochs=1, batch_size=batch, lr=0.05, progress=False,
                          shuffle=False, momentum=0.9)
                results[f"{layers} batch {batch} {dtype}"] = model.params_
    np.savez(out, **results)


def compare(a_path, b_path):
    a, b = np.load(a_path), np.load(b_path)
    if not any(name.endswith(" | params") for name in a.files):  # (steps' files)
        for name in a.files:
            same = a[name].tobytes() == b[name].tobytes()
            print(f"{name}: {'the same bits' if same else 'differ'}")
        return
    for name in RECIPES:
        p, q = a[name + " | params"], b[name + " | params"]
        s, t = a[name + " | proba"], b[name + " | proba"]
        same = p.tobytes() == q.tobytes()
        differs = np.abs(p.astype(np.float64) - q) / np.abs(p).max()
        labels = (s.argmax(1) != t.argmax(1)).sum()
        print(f"{name}: weights {'the same bits' if same else 'differ'}"
              f"{'' if same else f' (largest difference {differs.max():.2g} of max |W|, {np.mean(p != q):.1%} of them)'}; "
              f"probabilities' largest difference {np.abs(s.astype(np.float64) - t).max():.2g}, "
              f"{labels} of {len(s)} labels differ; test accuracy {float(a[name + ' | accuracy']):.4f} "
              f"and {float(b[name + ' | accuracy']):.4f}")


if __name__ == "__main__":
    if sys.argv[1] == "train":
        train(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 10_000)
    elif sys.argv[1] == "steps":
        steps(sys.argv[2])
    else:
        compare(sys.argv[2], sys.argv[3])
