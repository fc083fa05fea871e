"""fastmlp.MLPClassifier against scikit-learn's MLPClassifier on MNIST, side by side in one run.

    python bench/vs_sklearn.py [--epochs 10] [--sgd-samples 6000] [--json]

Two settings, each with identical constructor parameters for both estimators:

1. scikit-learn's defaults (100 relu units, Adam, lr 1e-3, alpha 1e-4, batch 200) for
   ``--epochs`` epochs (``max_iter``; both stop early only by their shared ``tol`` rule);
2. ``batch_size=1, solver='sgd'`` (with scikit-learn's default momentum 0.9, Nesterov), one
   epoch. scikit-learn trains on the first ``--sgd-samples`` images only (a full epoch would
   take tens of minutes), fastmlp on all 60,000; the rate compared is samples/s.

Both get the same float32 inputs (pixels / 255) and are timed from ``fit`` to return
(fastmlp's kernels are compiled, or loaded from the cache, by a small fit before: the compile
time is reported apart). Test accuracy is on the 10,000 test images. The machine, the date
and the commands go with the numbers.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time
import warnings

import numpy as np


def machine():
    from fastmlp.bench.machine import cpu_name, usable_cores

    flags = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    simd = [name for name in ("avx2", "fma", "avx512f", "avx512bw", "avx512vl") if name in flags]
    return {"cpu": cpu_name(), "usable_cores": usable_cores(), "simd": simd, "python": platform.python_version()}


def timed_fit(estimator, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning after max_iter epochs: expected here
        tic = time.perf_counter()
        estimator.fit(X, y)
        return time.perf_counter() - tic


def compare(name, params, X, y, X_test, y_test, sklearn_rows, epochs):
    from sklearn.neural_network import MLPClassifier as SkMLP

    import fastmlp
    from fastmlp._numba_backend import compiling_ahead

    warm = fastmlp.MLPClassifier(**{**params, "max_iter": 1})
    # compiles (or loads) the kernels the timed fit needs: on a cold cache, the parallel mini-batch
    # kernel too (as `fastmlp warmup` does), which a first fit leaves to a second process while it
    # trains on one thread
    with compiling_ahead():
        compile_seconds = timed_fit(warm, X[:400], y[:400])
    ours = fastmlp.MLPClassifier(**params)
    ours_seconds = timed_fit(ours, X, y)
    theirs = SkMLP(**params)
    theirs_seconds = timed_fit(theirs, X[:sklearn_rows], y[:sklearn_rows])
    row = {
        "setting": name,
        "params": params,
        "fastmlp": {"samples": len(X), "epochs": ours.n_iter_, "seconds": ours_seconds,
                    "samples_per_second": len(X) * ours.n_iter_ / ours_seconds,
                    "test_accuracy": float(ours.score(X_test, y_test)), "warmup_fit_seconds": compile_seconds},
        "sklearn": {"samples": sklearn_rows, "epochs": theirs.n_iter_, "seconds": theirs_seconds,
                    "samples_per_second": sklearn_rows * theirs.n_iter_ / theirs_seconds,
                    "test_accuracy": float(theirs.score(X_test, y_test))},
    }
    row["speedup"] = row["fastmlp"]["samples_per_second"] / row["sklearn"]["samples_per_second"]
    same_data = sklearn_rows == len(X)  # else the accuracies are of different amounts of training
    row["accuracy_points"] = 100 * (row["fastmlp"]["test_accuracy"] - row["sklearn"]["test_accuracy"]) if same_data else None
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="max_iter of the defaults setting (default 10)")
    parser.add_argument("--sgd-samples", type=int, default=6000, help="scikit-learn's share in the batch-1 setting")
    parser.add_argument("--seed", type=int, default=0, help="random_state of both")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    args = parser.parse_args()

    import fastmlp

    X, y, X_test, y_test = fastmlp.load_mnist()
    X = (X / np.float32(255)).astype(np.float32)
    X_test = (X_test / np.float32(255)).astype(np.float32)
    record = {"date": datetime.date.today().isoformat(), "machine": machine(),
              "load_average": os.getloadavg(), "command": "python bench/vs_sklearn.py "
              f"--epochs {args.epochs} --sgd-samples {args.sgd_samples} --seed {args.seed}", "rows": []}
    settings = [
        ("scikit-learn defaults", {"max_iter": args.epochs, "random_state": args.seed}, len(X)),
        ("batch_size=1, solver='sgd'", {"solver": "sgd", "batch_size": 1, "max_iter": 1, "random_state": args.seed},
         args.sgd_samples),
    ]
    for name, params, sklearn_rows in settings:
        record["rows"].append(compare(name, params, X, y, X_test, y_test, sklearn_rows, args.epochs))
    if args.json:
        print(json.dumps(record))
        return
    m = record["machine"]
    print(f"{record['date']}, {m['cpu']} ({', '.join(m['simd'])}), {m['usable_cores']} usable cores, "
          f"load average {' '.join(f'{x:.2f}' for x in record['load_average'])}, Python {m['python']}")
    print(f"command: {record['command']}\n")
    print("| setting | estimator | samples x epochs | fit seconds | samples/s | test accuracy |")
    print("|---|---|---|---|---|---|")
    for row in record["rows"]:
        for who in ("fastmlp", "sklearn"):
            r = row[who]
            print(f"| {row['setting']} | {who} | {r['samples']:,} x {r['epochs']} | {r['seconds']:.1f} | "
                  f"{r['samples_per_second']:,.0f} | {r['test_accuracy']:.4f} |")
        points = "-" if row["accuracy_points"] is None else f"{row['accuracy_points']:+.2f} points"
        print(f"| {row['setting']} | **fastmlp / sklearn** | | | **{row['speedup']:.1f}x** | {points} |")


if __name__ == "__main__":
    main()
