"""``fastmlp`` on the command line: ``train``, ``compare`` and ``bench`` (also ``python -m fastmlp``).

``bench`` lives in ``fastmlp.bench``, which registers its own options; what the commands share
about options (exit codes, the one-line-error parser, value parsers) is ``fastmlp._cli_options``.
Every option value is checked as it is parsed, before any data is loaded.

A user mistake ends as one line on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import json
import os
import sys
import time

from . import _cli_options as options
from ._cli_options import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE, Parser, UsageError
from .backends import BACKENDS
from .network import ACTIVATIONS, DTYPES, INITS, LOSS_NAMES, OUTPUTS
from .trainer import SCHEDULES


def _add_model_options(parser):
    """Options that pick the data, the network and the SGD run: shared by train and compare."""
    add = parser.add_argument
    add("--data", type=options.path, metavar="DIR", help="directory with the MNIST files (default: $FASTMLP_DATA, else the user cache, downloading once)")
    add("--layers", type=options.layer_sizes, default=(784, 128, 10), metavar="SIZES", help="layer sizes, default 784,128,10")
    add("--activation", type=options.choice(ACTIVATIONS), default="sigmoid", help=f"hidden activation: {', '.join(ACTIVATIONS)} (default sigmoid)")
    add("--loss", type=options.choice(LOSS_NAMES), default="cross_entropy", help=f"{', '.join(LOSS_NAMES)} (default cross_entropy)")
    add("--output", type=options.choice(OUTPUTS), default=None, help=f"output layer ({', '.join(OUTPUTS)}); default follows the loss")
    add("--init", type=options.choice(INITS), default="auto", help=f"{', '.join(INITS)} (default auto)")
    add("--batch-size", type=options.batch_size, default=1, metavar="N", help="1 = per-sample SGD (default), 'full' = full-batch gradient descent")
    add("--epochs", type=options.integer(1), default=1, metavar="N", help="passes over the training set (default 1)")
    add("--lr", type=options.number(), default=0.1, metavar="RATE", help="learning rate (default 0.1)")
    add("--seed", type=options.integer(0), default=0, metavar="N", help="seeds initial weights and shuffling (default 0)")
    add("--threads", type=options.integer(1), default=1, metavar="N", help="threads for the compiled per-sample loop (default 1)")
    add("--dtype", type=options.choice(DTYPES), default="float32", help="float32 (default) or float64")
    add("--no-bias", action="store_true", help="layers without biases")
    add("--no-shuffle", action="store_true", help="visit samples in file order every epoch")
    add("--limit", type=options.integer(1), default=None, metavar="N", help="train on the first N training samples only")


def build_parser():
    parser = Parser(prog="fastmlp", description="Train multilayer perceptrons on MNIST with a compiled core.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command", parser_class=Parser)

    train = commands.add_parser(
        "train",
        help="train on MNIST and report test accuracy",
        description="Train an MLP on MNIST (or any dataset in the same IDX/CSV layout) and evaluate it on the test set.",
    )
    _add_model_options(train)
    train.add_argument("--lr-schedule", type=options.choice(SCHEDULES), default="constant", help=f"{', '.join(SCHEDULES)} (default constant)")
    train.add_argument("--lr-decay", type=options.number(), default=0.5, metavar="FACTOR", help="decay factor for exponential and step schedules (default 0.5)")
    train.add_argument("--backend", type=options.choice(BACKENDS), default="numba", help="numba (compiled, default) or numpy (reference)")
    train.add_argument("--save", type=options.path, metavar="FILE", help="write the trained model to FILE (.npz)")
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
    compare.add_argument("--weights-rtol", type=options.number(), default=None, metavar="R", help="allowed max|W_numba - W_numpy| / max|W| (default per dtype)")
    compare.add_argument("--json", action="store_true", help="print one JSON object on stdout, nothing else")

    from .bench import add_parser as add_bench_parser  # one way only: bench knows nothing of this module

    add_bench_parser(commands)
    return parser


def _check_combination(check):
    """Run the model's own checks of the options taken together (each value alone already
    passed its parser); a failure there is still a command-line mistake."""
    try:
        check()
    except (ValueError, TypeError) as error:
        raise UsageError(str(error)) from None


def _check_save_path(path):
    """Refuse --save into a missing directory now, not after the training it would throw away."""
    if path is None:
        return
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise UsageError(f"--save {path}: directory {directory!r} does not exist")


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
    """MNIST (train, test); called after every option has been checked, so mistakes fail fast."""
    from .data import load_mnist

    X_train, y_train, X_test, y_test = load_mnist(args.data)
    if args.limit is not None:
        if args.limit > len(y_train):
            raise ValueError(f"--limit {args.limit} is more than the {len(y_train):,} training samples")
        X_train, y_train = X_train[: args.limit], y_train[: args.limit]
    return X_train, y_train, X_test, y_test


def _train(args):
    model = _model(args, args.backend)
    _check_combination(model.initialize)  # before spending time on data
    _check_save_path(args.save)
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

    for backend in ("numba", "numpy"):
        _check_combination(_model(args, backend).initialize)
    tolerance = dict(TOLERANCES[args.dtype])
    if args.weights_rtol is not None:
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
            from .bench import run as run_bench

            return run_bench(args)
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
