"""Run the five setups of the notebooks fastmlp grew out of, and print the README's table.

    python examples/seed_setups.py [--backend numba|numpy]

Each MNIST setup is one ``fastmlp train`` command (printed in the table); the regression
setup is ``examples/regression_2d.py``. MNIST is found as ``fastmlp train`` finds it
(``--data``, ``FASTMLP_DATA``, or the user cache).
"""

import argparse
import contextlib
import io
import json
import os
import shlex
import sys

from fastmlp.cli import main as fastmlp_main

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import regression_2d  # noqa: E402

SETUPS = [
    ("784-20-10 sigmoid, softmax+MSE, per-sample SGD", "--layers 784,20,10 --loss mse --output softmax --lr 0.5 --epochs 3"),
    ("784-10-10 ReLU, full-batch gradient descent", "--layers 784,10,10 --activation relu --batch-size full --lr 0.5 --epochs 300"),
    ("784-128-10 sigmoid, no biases, per-sample SGD", "--layers 784,128,10 --no-bias --lr 0.1 --epochs 1"),
    ("784-128-10 ReLU, mini-batch 32", "--layers 784,128,10 --activation relu --batch-size 32 --lr 0.1 --epochs 5"),
]


def run_json(runner, argv):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = runner(argv)
    if status != 0:
        raise SystemExit(f"{' '.join(argv)} failed with status {status}")
    return json.loads(out.getvalue())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="numba")
    parser.add_argument("--data", default=None)
    args = parser.parse_args(argv)
    data = ["--data", args.data] if args.data else []
    print("| setup | command | result | train time |")
    print("|---|---|---|---|")
    for name, flags in SETUPS:
        command = ["train", *shlex.split(flags), "--backend", args.backend]
        result = run_json(fastmlp_main, [*command, *data, "--json"])
        print(
            f"| {name} | `fastmlp {' '.join(command)}` | test accuracy {result['test_accuracy']:.4f} "
            f"| {result['seconds']:.1f} s |",
            flush=True,
        )
    result = run_json(regression_2d.main, ["--backend", args.backend, "--json"])
    print(
        f"| 2-3-1 tanh regression, identity+MSE, per-sample SGD | `python examples/regression_2d.py --backend {args.backend}` "
        f"| test MSE {result['test_mse']:.5f} (R² {result['test_r2']:.4f}) | - |"
    )


if __name__ == "__main__":
    main()
