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


def build_parser():
    parser = _Parser(prog="fastmlp", description="Train multilayer perceptrons on MNIST with a compiled core.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)

    train = commands.add_parser(
        "train",
        help="train on MNIST and report test accuracy",
        description="Train an MLP on MNIST (or any dataset in the same IDX/CSV layout) and evaluate it on the test set.",
    )
    train.add_argument("--data", metavar="DIR", help="directory with the MNIST files (default: $FASTMLP_DATA, else the user cache, downloading once)")
    train.add_argument("--layers", type=_layers, default=[784, 128, 10], metavar="SIZES", help="layer sizes, default 784,128,10")
    train.add_argument("--activation", default="sigmoid", help="hidden activation: sigmoid, tanh, relu, identity (default sigmoid)")
    train.add_argument("--loss", default="cross_entropy", help="cross_entropy, mse or binary_cross_entropy (default cross_entropy)")
    train.add_argument("--output", default=None, help="output layer (softmax, sigmoid, identity); default follows the loss")
    train.add_argument("--init", default="auto", help="auto, xavier, he, uniform, normal or zeros (default auto)")
    train.add_argument("--batch-size", type=_batch_size, default=1, metavar="N", help="1 = per-sample SGD (default), 'full' = full-batch gradient descent")
    train.add_argument("--epochs", type=int, default=1, help="passes over the training set (default 1)")
    train.add_argument("--lr", type=float, default=0.1, help="learning rate (default 0.1)")
    train.add_argument("--lr-schedule", default="constant", help="constant, exponential, step or cosine (default constant)")
    train.add_argument("--lr-decay", type=float, default=0.5, help="decay factor for exponential and step schedules (default 0.5)")
    train.add_argument("--seed", type=int, default=0, help="seeds initial weights and shuffling (default 0)")
    train.add_argument("--backend", default="numba", help="numba (compiled, default) or numpy (reference)")
    train.add_argument("--threads", type=int, default=1, help="threads for the compiled per-sample loop (default 1)")
    train.add_argument("--dtype", default="float32", help="float32 (default) or float64")
    train.add_argument("--no-bias", action="store_true", help="layers without biases")
    train.add_argument("--no-shuffle", action="store_true", help="visit samples in file order every epoch")
    train.add_argument("--limit", type=int, default=None, metavar="N", help="train on the first N training samples only")
    train.add_argument("--save", metavar="FILE", help="write the trained model to FILE (.npz)")
    train.add_argument("--json", action="store_true", help="print one JSON object with the results on stdout, nothing else")
    train.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    return parser


def _train(args):
    from .data import load_mnist
    from .model import MLP

    model = MLP(
        layers=args.layers,
        activation=args.activation,
        loss=args.loss,
        output=args.output,
        bias=not args.no_bias,
        init=args.init,
        dtype=args.dtype,
        seed=args.seed,
        backend=args.backend,
        threads=args.threads,
    )
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be a positive integer; got {args.limit}")
    model.initialize()  # check the hyperparameters before spending time on data
    X_train, y_train, X_test, y_test = load_mnist(args.data)
    if args.limit is not None:
        X_train, y_train = X_train[: args.limit], y_train[: args.limit]
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
