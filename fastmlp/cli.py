"""``fastmlp`` on the command line: ``fastmlp train`` (and ``python -m fastmlp train``).

A user mistake ends as one line on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and a non-zero exit), not a usage block."""

    def error(self, message):
        raise UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")


def _layers(text):
    try:
        sizes = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--layers must be comma-separated integers like 784,128,10; got {text!r}")
    if len(sizes) < 2:
        raise argparse.ArgumentTypeError(f"--layers needs at least an input and an output size; got {text!r}")
    return sizes


def _batch_size(text):
    if text.lower() in ("full", "all", "0"):
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--batch-size must be a positive integer or 'full'; got {text!r}")


def _add_model_options(parser):
    """Options that pick the data, the network and the SGD run: shared by train and compare."""
    parser.add_argument("--data", metavar="DIR", help="directory with the MNIST files (default: $FASTMLP_DATA, else the user cache, downloading once)")
    parser.add_argument("--layers", type=_layers, default=[784, 128, 10], metavar="SIZES", help="layer sizes, default 784,128,10")
    parser.add_argument("--activation", default="sigmoid", help="hidden activation: sigmoid, tanh, relu, identity (default sigmoid)")
    parser.add_argument("--loss", default="cross_entropy", help="cross_entropy, mse or binary_cross_entropy (default cross_entropy)")
    parser.add_argument("--output", default=None, help="output layer (softmax, sigmoid, identity); default follows the loss")
    parser.add_argument("--init", default="auto", help="auto, xavier, he, uniform, normal or zeros (default auto)")
    parser.add_argument("--batch-size", type=_batch_size, default=1, metavar="N", help="1 = per-sample SGD (default), 'full' = full-batch gradient descent")
    parser.add_argument("--epochs", type=int, default=1, help="passes over the training set (default 1)")
    parser.add_argument("--lr", type=float, default=0.1, help="learning rate (default 0.1)")
    parser.add_argument("--seed", type=int, default=0, help="seeds initial weights and shuffling (default 0)")
    parser.add_argument("--threads", type=int, default=1, help="threads for the compiled per-sample loop (default 1)")
    parser.add_argument("--dtype", default="float32", help="float32 (default) or float64")
    parser.add_argument("--no-bias", action="store_true", help="layers without biases")
    parser.add_argument("--no-shuffle", action="store_true", help="visit samples in file order every epoch")
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="train on the first N training samples only")


def build_parser():
    parser = _Parser(prog="fastmlp", description="Train multilayer perceptrons on MNIST with a compiled core.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)

    train = commands.add_parser(
        "train",
        help="train on MNIST and report test accuracy",
        description="Train an MLP on MNIST (or any dataset in the same IDX/CSV layout) and evaluate it on the test set.",
    )
    _add_model_options(train)
    train.add_argument("--lr-schedule", default="constant", help="constant, exponential, step or cosine (default constant)")
    train.add_argument("--lr-decay", type=float, default=0.5, help="decay factor for exponential and step schedules (default 0.5)")
    train.add_argument("--backend", default="numba", help="numba (compiled, default) or numpy (reference)")
    train.add_argument("--save", metavar="FILE", help="write the trained model to FILE (.npz)")
    train.add_argument("--json", action="store_true", help="print one JSON object with the results on stdout, nothing else")
    train.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")

    compare = commands.add_parser(
        "compare",
        help="train numba and numpy from the same seed and report how far apart they are",
        description="Train the compiled core and the NumPy reference from the same seed on the same data and show, "
        "per epoch, their losses and accuracies side by side with the largest absolute weight difference. "
        "Exits with status 1 when they differ beyond the printed tolerance.",
    )
    _add_model_options(compare)
    compare.add_argument("--weights-rtol", type=float, default=None, help="allowed max|W_numba - W_numpy| / max|W| (default per dtype)")
    compare.add_argument("--json", action="store_true", help="print one JSON object on stdout, nothing else")

    from . import bench

    bench.add_parser(commands)
    return parser


def _model(args, backend):
    from .model import MLP

    return MLP(
        layers=args.layers,
        activation=args.activation,
        loss=args.loss,
        output=args.output,
        bias=not args.no_bias,
        init=args.init,
        dtype=args.dtype,
        seed=args.seed,
        backend=backend,
        threads=args.threads,
    )


def _data(args):
    """MNIST (train, test), after the cheap checks of the arguments so mistakes fail fast."""
    from .data import load_mnist

    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be a positive integer; got {args.limit}")
    X_train, y_train, X_test, y_test = load_mnist(args.data)
    if args.limit is not None:
        X_train, y_train = X_train[: args.limit], y_train[: args.limit]
    return X_train, y_train, X_test, y_test


def _train(args):
    model = _model(args, args.backend)
    model.initialize()  # check the hyperparameters before spending time on data
    model._check_fit_args(args.epochs, args.batch_size, args.lr, True, args.lr_schedule, args.lr_decay)
    X_train, y_train, X_test, y_test = _data(args)
    progress = False if (args.json or args.no_progress) else None
    log = (lambda *a: None) if args.json else print

    log(
        f"training {'-'.join(map(str, model.arch_.layers))} {args.activation} {model.arch_.output}+{args.loss} "
        f"on {len(X_train)} samples: backend={args.backend} batch_size={args.batch_size or 'full'} lr={args.lr} "
        f"epochs={args.epochs} dtype={args.dtype} seed={args.seed}"
    )
    history = model.fit(
        X_train,
        y_train,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        shuffle=not args.no_shuffle,
        lr_schedule=args.lr_schedule,
        lr_decay=args.lr_decay,
        progress=progress,
    )
    for i, epoch in enumerate(history.epoch):
        accuracy = history.accuracy[i]
        log(
            f"epoch {epoch}: train loss {history.loss[i]:.4f}"
            + (f", train accuracy {accuracy:.4f}" if model.arch_.is_classifier else "")
            + f", {history.samples_per_second[i]:,.0f} samples/s"
        )
    tic = time.perf_counter()
    test = model.evaluate(X_test, y_test)
    evaluate_seconds = time.perf_counter() - tic
    seconds = float(sum(history.seconds))
    result = {
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "train_loss": history.loss[-1],
        "train_accuracy": history.accuracy[-1] if model.arch_.is_classifier else None,
        "epochs": args.epochs,
        "batch_size": args.batch_size if args.batch_size is not None else len(X_train),
        "backend": args.backend,
        "threads": args.threads,
        "dtype": args.dtype,
        "layers": list(model.arch_.layers),
        "activation": args.activation,
        "loss": args.loss,
        "output": model.arch_.output,
        "lr": args.lr,
        "seed": args.seed,
        "n_train": int(len(X_train)),
        "n_test": int(len(X_test)),
        "seconds": seconds,
        "compile_seconds": float(model.compile_seconds_),
        "evaluate_seconds": evaluate_seconds,
        "samples_per_second": len(X_train) * args.epochs / seconds if seconds > 0 else None,
        "history": history.as_dict(),
    }
    if args.save:
        model.save(args.save)
        result["saved"] = args.save
    if args.json:
        print(json.dumps(result))
    else:
        accuracy = f"test accuracy {test['accuracy']:.4f}, " if model.arch_.is_classifier else ""
        print(
            f"{accuracy}test loss {test['loss']:.4f}; trained in {seconds:.2f} s "
            f"({result['samples_per_second']:,.0f} samples/s), JIT compile {model.compile_seconds_:.2f} s"
        )
        if args.save:
            print(f"saved model to {args.save}")
    return 0


def _compare(args):
    from .compare import TOLERANCES, compare_backends
    from .model import MLP

    for backend in ("numba", "numpy"):
        _model(args, backend).initialize()
    MLP._check_fit_args(args.epochs, args.batch_size, args.lr, True, "constant", 0.5)
    tolerance = dict(TOLERANCES.get(args.dtype, TOLERANCES["float32"]))
    if args.weights_rtol is not None:
        if not args.weights_rtol > 0:
            raise ValueError(f"--weights-rtol must be positive; got {args.weights_rtol}")
        tolerance["weights_rtol"] = args.weights_rtol
    X_train, y_train, X_test, y_test = _data(args)
    fit_kwargs = {"batch_size": args.batch_size, "lr": args.lr, "shuffle": not args.no_shuffle}
    result = compare_backends(
        lambda backend: _model(args, backend), X_train, y_train, X_test, y_test,
        epochs=args.epochs, fit_kwargs=fit_kwargs, tolerance=tolerance,
    )
    result.update(
        layers=args.layers, activation=args.activation, loss=args.loss, dtype=args.dtype,
        batch_size=args.batch_size or len(X_train), lr=args.lr, seed=args.seed, n_train=int(len(X_train)),
    )
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"numba vs numpy, {'-'.join(map(str, args.layers))} {args.activation} {args.loss} {args.dtype}, "
            f"batch {result['batch_size']}, lr {args.lr}, seed {args.seed}, {len(X_train)} samples"
        )
        print(f"{'epoch':>5}  {'train loss numba':>16} {'numpy':>10}  {'test acc numba':>14} {'numpy':>7}  {'max|dW|':>9} {'max|W|':>8}  ok")
        for r in result["epochs"]:
            a, b = r["numba"], r["numpy"]
            acc = lambda m: "-" if m["test_accuracy"] is None else f"{m['test_accuracy']:.4f}"  # noqa: E731
            print(
                f"{r['epoch']:>5}  {a['train_loss']:>16.6f} {b['train_loss']:>10.6f}  {acc(a):>14} {acc(b):>7}  "
                f"{r['max_abs_weight_diff']:>9.2e} {r['max_abs_weight']:>8.3f}  {'yes' if r['within_tolerance'] else 'NO'}"
            )
        t = result["tolerance"]
        print(
            f"tolerance: max|dW| <= {t['weights_rtol']:g} * max|W|, train loss within {t['loss_rtol']:g} (relative), "
            f"test accuracy within {t['accuracy_atol']:g}: {'backends agree' if result['agree'] else 'BACKENDS DIFFER'}"
        )
    return 0 if result["agree"] else EXIT_ERROR


def main(argv=None):
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.version:
            from . import __version__

            print(f"fastmlp {__version__}")
            return 0
        if args.command is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        if args.command == "compare":
            return _compare(args)
        if args.command == "bench":
            from . import bench

            return bench.run(args)
        return _train(args)
    except UsageError as error:
        print(f"fastmlp: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as interrupt:
        print(f"fastmlp: interrupted: {interrupt or 'stopped by Ctrl-C'}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, TypeError, OSError, ArithmeticError, RuntimeError) as error:
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"fastmlp: error: {message}", file=sys.stderr)
        return EXIT_ERROR
