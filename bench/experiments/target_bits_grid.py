"""Audit 68's grid (session 63): train small models on synthetic data, store params, loss history
and predict_proba, for a bitwise comparison of two Numba builds (a host's and an AVX2 build).

    python bench/experiments/target_bits_grid.py train OUT.npz        # the training grid (311 runs)
    python bench/experiments/target_bits_grid.py save-models DIR      # (one build) a few fixed models
    python bench/experiments/target_bits_grid.py predict DIR OUT.npz  # their predict_proba
    python bench/experiments/target_bits_grid.py compare A.npz B.npz [--all]

Run ``train`` (and ``predict``) once per build, each with a NUMBA_CACHE_DIR of its own; the AVX2
build on an AVX-512 host: NUMBA_CPU_NAME=haswell and NUMBA_CPU_FEATURES as in ``machine_bits.py``
(FASTMLP_REGISTER_BLOCK=8 as well takes the register blocks' own difference out).
``compare`` lists each entry as the same bits or not.
"""
import itertools
import os
import sys
import time

import numpy as np

import fastmlp

N_ROWS = 300
N_FEAT = 60
KS = (2, 3, 9, 10, 16, 17, 33, 100)
LOSSES = ("ce", "smse", "bce", "reg")
MODES = ("per-sample", "batch16", "full")
DTYPES = ("float32", "float64")
OPTS = ("sgd", "momentum", "adam")
HIDDEN = (7, 64, 100, 130)
ACTS = ("sigmoid", "tanh", "relu")


def data(k, loss, uint8, seed=0):
    rng = np.random.default_rng(seed)
    n = N_ROWS + 100
    if uint8:
        X = rng.integers(0, 256, size=(n, N_FEAT)).astype(np.uint8)
        X[rng.random((n, N_FEAT)) < 0.5] = 0
    else:
        X = rng.standard_normal((n, N_FEAT)).astype(np.float32)
        X[rng.random((n, N_FEAT)) < 0.3] = 0
    if loss in ("ce", "smse"):
        y = rng.integers(0, k, size=n).astype(np.int64)
    elif loss == "bce":
        y = (rng.random((n, k)) < 0.4).astype(np.int64) if k > 1 else rng.integers(0, 2, size=n).astype(np.int64)
    else:
        y = rng.standard_normal((n, k)).astype(np.float64)
        if k == 1:
            y = y[:, 0]
    return X[:N_ROWS], y[:N_ROWS], X[N_ROWS:]


def model_options(loss):
    return {"ce": dict(loss="cross_entropy"), "smse": dict(loss="mse", output="softmax"),
            "bce": dict(loss="binary_cross_entropy"), "reg": dict(loss="mse")}[loss]


def fit_options(mode, opt, loss):
    bs = {"per-sample": 1, "batch16": 16, "full": N_ROWS}[mode]
    if opt == "adam":
        o = dict(optimizer="adam", lr=1e-3 if mode == "per-sample" else 3e-3)
    else:
        lr = {"per-sample": 0.02, "batch16": 0.1, "full": 0.5}[mode]
        if loss == "reg":
            lr *= 0.2
        o = dict(lr=lr)
        if opt == "momentum":
            o.update(momentum=0.9, lr=lr * 0.2)
    return dict(batch_size=bs, epochs=2, progress=False, **o)


def cases():
    out = []
    # main grid: every K x loss x mode x dtype; hidden width, optimizer, activation, input kind rotated
    for (a, k), (b, loss), (c, mode), (d, dtype) in itertools.product(
            enumerate(KS), enumerate(LOSSES), enumerate(MODES), enumerate(DTYPES)):
        opt = OPTS[(a + 2 * b + c + d) % 3]
        hidden = HIDDEN[(a + b + 2 * c + 3 * d) % 4]
        act = ACTS[(2 * a + b + c) % 3]
        uint8 = (a + b + c + d) % 2 == 0
        out.append((k, loss, mode, dtype, opt, (hidden,), act, uint8))
    # binary sigmoid and single-output regression
    for loss, mode, dtype in itertools.product(("bce", "reg"), MODES, DTYPES):
        out.append((1, loss, mode, dtype, "sgd", (64,), "tanh", True))
    # hidden widths with K=10 cross-entropy (the project's own checks' output), every mode/dtype/optimizer
    for hidden, mode, dtype, opt in itertools.product(HIDDEN, MODES, DTYPES, OPTS):
        out.append((10, "ce", mode, dtype, opt, (hidden,), "sigmoid", True))
    # two hidden layers: dense hidden forward/backward at widths off the vector multiples
    for hiddens, mode, dtype in itertools.product(((100, 33), (130, 64), (64, 7)), MODES, DTYPES):
        out.append((17, "ce", mode, dtype, "momentum", hiddens, "relu", False))
        out.append((10, "ce", mode, dtype, "sgd", hiddens, "tanh", True))
    return out


def name_of(case):
    k, loss, mode, dtype, opt, hidden, act, uint8 = case
    return f"K={k} {loss} {mode} {dtype} {opt} h={'-'.join(map(str, hidden))} {act} {'u8' if uint8 else 'float'}"


def train(out_path, only=None):
    results = {}
    t0 = time.time()
    all_cases = cases()
    for i, case in enumerate(all_cases):
        k, loss, mode, dtype, opt, hidden, act, uint8 = case
        name = name_of(case)
        if only and only not in name:
            continue
        X, y, X_test = data(k, loss, uint8)
        model = fastmlp.MLP([N_FEAT, *hidden, k], activation=act, dtype=dtype, seed=0, threads=1, **model_options(loss))
        h = model.fit(X, y, **fit_options(mode, opt, loss))
        results[name + " | params"] = model.params_.copy()
        results[name + " | loss"] = np.asarray(h.loss, np.float64)
        results[name + " | proba"] = model.predict_proba(X_test)
        if i % 20 == 0:
            print(f"{i}/{len(all_cases)} {time.time() - t0:.0f}s {name}", flush=True)
    np.savez(out_path, **results)
    print(f"done {len(results) // 3} cases in {time.time() - t0:.0f}s", flush=True)


PREDICT_MODELS = [
    (10, "ce", "float32", (64,)), (33, "ce", "float32", (100,)), (100, "ce", "float64", (130,)),
    (17, "smse", "float32", (7,)), (9, "bce", "float64", (64,)), (16, "reg", "float32", (100, 33)),
    (100, "ce", "float32", (130, 64)), (3, "ce", "float64", (100,)),
]


def save_models(folder):
    os.makedirs(folder, exist_ok=True)
    for k, loss, dtype, hidden in PREDICT_MODELS:
        X, y, _ = data(k, loss, True)
        model = fastmlp.MLP([N_FEAT, *hidden, k], activation="sigmoid", dtype=dtype, seed=0, threads=1,
                            **model_options(loss))
        model.fit(X, y, **fit_options("batch16", "sgd", loss))
        model.save(os.path.join(folder, f"K{k}-{loss}-{dtype}-{'-'.join(map(str, hidden))}.npz"))


def predict(folder, out_path):
    results = {}
    for k, loss, dtype, hidden in PREDICT_MODELS:
        name = f"K{k}-{loss}-{dtype}-{'-'.join(map(str, hidden))}"
        model = fastmlp.MLP.load(os.path.join(folder, name + ".npz"))
        for uint8 in (True, False):
            _, _, X_test = data(k, loss, uint8, seed=1)
            results[f"{name} {'u8' if uint8 else 'float'} | proba"] = model.predict_proba(X_test)
            results[f"{name} {'u8' if uint8 else 'float'} | params"] = model.params_
            # one row alone, and 5 rows (fewer than a vector's lanes: the row-by-row path)
            results[f"{name} {'u8' if uint8 else 'float'} 1row | proba"] = model.predict_proba(X_test[:1])
            results[f"{name} {'u8' if uint8 else 'float'} 5rows | proba"] = model.predict_proba(X_test[:5])
    np.savez(out_path, **results)


def compare(a_path, b_path, show_all):
    a, b = np.load(a_path), np.load(b_path)
    same = diff = 0
    for key in a.files:
        x, y = a[key], b[key]
        if x.shape == y.shape and x.dtype == y.dtype and np.array_equal(x.view(np.uint8), y.view(np.uint8)):
            same += 1
            if show_all:
                print(f"SAME  {key}")
            continue
        diff += 1
        with np.errstate(all="ignore"):
            d = np.abs(x.astype(np.float64) - y.astype(np.float64))
            rel = d / np.maximum(np.abs(x.astype(np.float64)), 1e-300)
            n = int(np.sum(x != y))
        print(f"DIFF  {key}  ({n}/{x.size} entries differ, max abs {np.nanmax(d):.3g}, max rel {np.nanmax(rel):.3g})")
    print(f"same {same}, different {diff}")


if __name__ == "__main__":
    if sys.argv[1] == "train":
        train(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
    elif sys.argv[1] == "save-models":
        save_models(sys.argv[2])
    elif sys.argv[1] == "predict":
        predict(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "compare":
        compare(sys.argv[2], sys.argv[3], "--all" in sys.argv)
