"""Same-process A/B of the training kernels: a git revision's kernels against the working tree's.

    FASTMLP_DATA=../shared/data/mnist python bench/ab_kernels.py --base REV \
        [--layers 784,128,10] [--activation sigmoid] [--batch-size 128] [--threads 2] \
        [--optimizer sgd|adam] [--momentum 0] [--nesterov] [--weight-decay 0] [--float-input] \
        [--dtype float32] [--samples 20000] [--rounds 5]

``--batch-size 1`` compares the per-sample kernels instead: ``sgd_persample_chunk`` for plain SGD
(``sgd_persample_chunk_threaded`` with ``--threads 2``), ``persample_chunk`` (the one any
optimizer trains on, one thread) otherwise. ``--threads`` defaults to all of Numba's threads for
mini-batch training and to one thread per sample.

Run inside the repository. The base's ``kernels/`` (every ``.py`` file, ``git show REV:...``) is
written to a temporary directory and imported as a package of its own (the kernels import each
other relatively only), so both versions, each with its own helpers and optimizer rules, train
in one process on the same arrays: one epoch of ``--samples`` MNIST images in a fixed random
order, the kernel called as the backend calls it, alternately ``--rounds`` times
after a warm-up call each. Timings of separate processes differ by up to 40% on the project's
shared machines; alternating in one process compares like with like. Prints each version's
median samples/s, the new / base ratio of the medians and of every round, and whether the two
trained to the same bits.

Run it on a clean tree too (``--base HEAD`` with no change: the kernels against a second copy of
themselves; a clean clone run with ``PYTHONPATH`` set to it needs its own ``fastmlp/kernels``, ``ln -s
../kernels fastmlp/kernels``, or the editable install serves the working tree's kernels as "new")
beside each A/B, alternately: on a shared host that A/A ratio is the noise the A/B's
must stand out from. On an AMD EPYC Zen 4 (session 65, 784-128-10, two threads, one hour)
A/A runs read 0.98x, 1.02x and 0.99x at batch 128, 1.00x, 0.95x and once 0.76x (rounds
0.76-1.05) at batch 1024, 0.98-1.01x in float64.
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numba
import numpy as np

from fastmlp import kernels as current, optim
from fastmlp.kernels import codes
from fastmlp.bench.machine import cpu_name
from fastmlp.data import load_mnist
from fastmlp.network import Architecture, init_params


def base_minibatch(revision, directory, module="minibatch"):
    """The mini-batch module (or another ``module``) of ``revision``'s kernels package,
    imported from ``directory`` under a name of its own."""
    files = subprocess.run(["git", "ls-tree", "--name-only", f"{revision}:kernels"], check=True,
                           capture_output=True, text=True).stdout.split()
    name = "kernels_" + "".join(c if c.isalnum() else "_" for c in revision)
    package = Path(directory) / name
    package.mkdir()
    for file in files:
        if file.endswith(".py"):
            source = subprocess.run(["git", "show", f"{revision}:kernels/{file}"], check=True,
                                    capture_output=True).stdout
            (package / file).write_bytes(source)
    sys.path.insert(0, str(directory))
    return importlib.import_module(f"{name}.{module}")


def mnist_problem(args, dtype):
    """(layers, X, y, arch, initial parameters) of the MNIST case to train, from the options
    --layers, --activation, --samples and --float-input (also bench/row_order.py's)."""
    layers = tuple(int(v) for v in args.layers.split(","))
    X, y, _, _ = load_mnist()
    X, y = X[: args.samples], y[: args.samples].astype(np.int64)
    if args.float_input:
        X = (X / 255.0).astype(np.float32)
    arch = Architecture(layers, args.activation, "cross_entropy", dtype=dtype)
    start = init_params(arch, "he" if args.activation == "relu" else "xavier", seed=0)
    return layers, X, y, arch, start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="a git revision, e.g. HEAD or a commit")
    parser.add_argument("--layers", default="784,128,10")
    parser.add_argument("--activation", default="sigmoid")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    parser.add_argument("--momentum", type=float, default=0.0)
    parser.add_argument("--nesterov", action="store_true")
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--lr", type=float, default=None, help="default 1e-3 for Adam, else 0.01")
    parser.add_argument("--float-input", action="store_true", help="float32 pixels / 255 instead of uint8")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    layers, X, y, arch, start = mnist_problem(args, args.dtype)
    layout = arch.layout()
    indptr, indices, values = current.sparse_rows(X)
    part_ptr = current.sparse_rows(X, parts=current.PARTS)[0]
    scale = 1 / 255 if X.dtype == np.uint8 else 1.0
    order = np.random.default_rng(0).permutation(len(y)).astype(np.int64)
    optimizer = optim.Optimizer(optimizer=args.optimizer, momentum=args.momentum, nesterov=args.nesterov,
                                weight_decay=args.weight_decay)
    hyper = optimizer.hyper(args.lr if args.lr is not None else (1e-3 if args.optimizer == "adam" else 0.01))
    targets, weights = np.empty((0, layers[-1]), start.dtype), np.empty(0, start.dtype)

    per_sample = args.batch_size == 1
    if args.threads is None:
        args.threads = 1 if per_sample else numba.config.NUMBA_NUM_THREADS
    module_name = "sgd" if per_sample else "minibatch"
    with tempfile.TemporaryDirectory() as directory:
        versions = {"base": base_minibatch(args.base, directory, module_name),
                    "new": importlib.import_module(f"fastmlp.kernels.{module_name}")}

        def epoch(module):
            params = start.copy()
            if per_sample:
                state = optim.State.fresh(optimizer, params, seed=0)
                common = (layout.sizes, layout.w_offsets, layout.b_offsets, arch.activation_code, arch.loss_code)
                data = (indptr, indices, values, scale, y, targets)
                tic = time.perf_counter()
                if optimizer.is_plain and args.threads > 1:
                    module.sgd_persample_chunk_threaded(params, np.zeros(3), *common, hyper[codes.LR], *data, order,
                                                        0, len(order), threads=args.threads)
                elif optimizer.is_plain:
                    module.sgd_persample_chunk(params, np.zeros(3), *common, hyper[codes.LR], *data, order, 0,
                                               len(order))
                else:
                    module.persample_chunk(params, np.zeros(3), *common, hyper, state.slots, state.counters, *data,
                                           weights, order, 0, len(order))
                return len(order) / (time.perf_counter() - tic), params
            scratch = module.minibatch_scratch(start, layout.sizes, args.batch_size, optimizer.n_slots)
            slots = np.zeros((optimizer.n_slots, params.size), params.dtype)
            # the kernel's own form of the rows' pointers: since session 20, split at the parts'
            # first inputs (made once per dataset, as the backend does), at the version's own PARTS;
            # before that, indptr
            if "indptr" in module._minibatch_sgd_chunk.__code__.co_varnames:
                pointers = indptr
            elif module.PARTS == current.PARTS:
                pointers = part_ptr
            else:
                pointers = current.sparse_rows(X, parts=module.PARTS)[0]
            numba.set_num_threads(args.threads)
            tic = time.perf_counter()
            module.minibatch_sgd_chunk(
                params, np.zeros(4), *scratch, layout.sizes, layout.w_offsets, layout.b_offsets,
                arch.activation_code, arch.loss_code, hyper, slots, np.zeros(3, np.int64), pointers, indices, values,
                scale, y, targets, weights, order, 0, len(order), args.batch_size)
            return len(order) / (time.perf_counter() - tic), params

        for module in versions.values():
            epoch(module)  # compile or load
        rates = {name: [] for name in versions}
        for _ in range(args.rounds):
            for name, module in versions.items():
                rate, params = epoch(module)
                rates[name].append(rate)
                if name == "base":
                    base_params = params
            same = base_params.tobytes() == params.tobytes()  # (array_equal takes -0.0 for 0.0, NaN for NaN not)

    base, new = (float(np.median(rates[name])) for name in ("base", "new"))
    recipe = args.optimizer + (f", momentum {args.momentum:g}" if args.momentum else "") + (
        " (Nesterov)" if args.nesterov else "") + (f", weight decay {args.weight_decay:g}" if args.weight_decay else "")
    print(f"{cpu_name()}: {'-'.join(map(str, layers))} {args.activation}, batch {args.batch_size}, {args.dtype}, "
          f"{recipe}, {'float32' if args.float_input else 'uint8'} pixels, "
          f"{args.threads} thread(s){' (per sample)' if per_sample else ''}")
    print(f"base {args.base}: {base:,.0f} samples/s; new: {new:,.0f}; new / base {new / base:.3f} "
          f"(rounds: {' '.join(f'{n / b:.2f}' for b, n in zip(rates['base'], rates['new']))}); "
          f"same bits: {same}")


if __name__ == "__main__":
    main()
