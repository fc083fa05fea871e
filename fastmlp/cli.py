"""``fastmlp`` on the command line: ``train``, ``compare``, ``evaluate``, ``predict``, ``warmup``,
``sweep`` and ``bench`` (also ``python -m fastmlp``).

``bench`` lives in ``fastmlp.bench``, which registers its own options; what the commands share
about options (exit codes, the one-line-error parser, value parsers) is ``fastmlp._cli_options``.
Every option value is checked as it is parsed, before any data is loaded. The training options
have the names of ``MLP.fit``'s keyword arguments (``--weight-decay`` is ``weight_decay``).

A user mistake ends as one line on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
import warnings

import numpy as np

from . import _cli_options as options
from ._atomic import file_identity as _identity, target_problem
from ._cli_options import (
    EXIT_BROKEN_PIPE, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_USAGE, Parser, UsageError, strict_json,
)
from ._warn import is_fastmlps
from .backends import BACKENDS
from .data import DATASETS
from .network import ACTIVATIONS, DTYPES, INITS, LOSS_NAMES, OUTPUTS
from .plot import FIGURE_SUFFIXES, require_matplotlib
from .prediction import OUTPUT_SUFFIXES
from .trainer import SCHEDULES, DivergenceError

# Options that describe the network: a resumed run takes them from its checkpoint.
MODEL_OPTIONS = ("layers", "activation", "loss", "output", "init", "dtype", "seed", "no_bias")
# Options of MLP.fit, by argparse dest (--no-shuffle is shuffle=False).
OPTIMIZER_OPTIONS = ("optimizer", "momentum", "nesterov", "beta1", "beta2", "eps", "weight_decay",
                     "decoupled_weight_decay", "dropout", "input_dropout")
SCHEDULE_OPTIONS = ("lr_schedule", "lr_decay", "lr_step_epochs", "power_t", "warmup_epochs", "tol", "n_iter_no_change")
STOPPING_OPTIONS = ("validation_fraction", "early_stopping")
TRAINING_OPTIONS = ("batch_size", "lr", "no_shuffle") + OPTIMIZER_OPTIONS + SCHEDULE_OPTIONS + STOPPING_OPTIONS


def _add_model_options(parser):
    """Options that pick the data, the network and the SGD run: shared by train and compare."""
    add = parser.add_argument
    # One way or the other: a named dataset's files come from its cache (downloaded once), --data
    # reads a directory of your own, whatever dataset it holds.
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--data", type=options.path, metavar="DIR",
                        help="directory with the four IDX files (or mnist_train.csv and mnist_test.csv) of any MNIST-like dataset")
    source.add_argument("--dataset", type=options.choice(DATASETS), default=None, metavar="NAME",
                        help=f"{', '.join(DATASETS)} (default mnist: $FASTMLP_DATA, else the user cache); downloaded once into the cache")
    add("--layers", type=options.layer_sizes, default=(784, 128, 10), metavar="SIZES", help="layer sizes, default 784,128,10")
    add("--activation", type=options.choice(ACTIVATIONS), default="sigmoid", metavar="|".join(ACTIVATIONS), help=f"hidden activation: {', '.join(ACTIVATIONS)} (default sigmoid)")
    add("--loss", type=options.choice(LOSS_NAMES), default="cross_entropy", metavar="|".join(LOSS_NAMES), help=f"{', '.join(LOSS_NAMES)} (default cross_entropy)")
    add("--output", type=options.choice(OUTPUTS), default=None, metavar="|".join(OUTPUTS), help=f"output layer ({', '.join(OUTPUTS)}); default follows the loss")
    add("--init", type=options.choice(INITS), default="auto", metavar="|".join(INITS), help=f"{', '.join(INITS)} (default auto)")
    add("--batch-size", type=options.batch_size, default=1, metavar="N", help="1 = per-sample SGD (default), 'full' = full-batch gradient descent")
    add("--epochs", type=options.integer(1), default=1, metavar="N", help="passes over the training set in all (default 1"
        + ("; with --resume, the run's planned total)" if parser.prog.endswith(" train") else ")"))
    add("--lr", type=options.number(), default=0.1, metavar="RATE", help="learning rate (default 0.1)")
    add("--seed", type=options.integer(0), default=0, metavar="N", help="seeds initial weights, shuffling"
        + (" and dropout" if parser.prog.endswith(" compare") else ", dropout and the validation split") + " (default 0)")
    add("--threads", type=options.threads, default="auto", metavar="N|auto", help="auto (default: mini-batch on one or all Numba threads, whichever measures faster as it trains; "
        "plain per-sample SGD the same way on one or two: one hidden layer of 112+ units; else one) or N: mini-batch on up to N, per-sample on up to N where it can (plain SGD, one hidden layer, 16+ hidden "
        "units per thread, a free core each), else on one")
    add("--dtype", type=options.choice(DTYPES), default="float32", metavar="|".join(DTYPES), help="float32 (default) or float64")
    add("--no-bias", action="store_true", help="layers without biases")
    add("--no-shuffle", action="store_true", help="visit samples in file order every epoch")
    add("--limit", type=options.integer(1), default=None, metavar="N", help="train on the first N training samples only (default all)")


def _add_optimizer_options(parser):
    """The update rule, weight decay and dropout (``fastmlp.optim``): shared by train, compare and bench."""
    options.add_optimizer_options(parser)


def _add_schedule_options(parser):
    """The learning-rate schedule: shared by train and compare."""
    group = parser.add_argument_group("learning-rate schedule")
    add = group.add_argument
    add("--lr-schedule", type=options.choice(SCHEDULES), default="constant", metavar="|".join(SCHEDULES), help=f"{', '.join(SCHEDULES)} (default constant)")
    add("--lr-decay", type=options.number(), default=0.5, metavar="FACTOR", help="decay factor for exponential and step schedules (default 0.5)")
    add("--lr-step-epochs", type=options.integer(1), default=10, metavar="N", help="step: multiply the rate by the decay factor every N epochs (default 10)")
    add("--power-t", type=options.number(allow_zero=True), default=0.5, metavar="P", help="invscaling exponent: lr / (samples + 1)^P (default 0.5)")
    add("--warmup-epochs", type=options.integer(0), default=0, metavar="N", help="ramp the rate up linearly over the first N epochs (default 0)")
    add("--tol", type=options.number(allow_zero=True), default=1e-4, metavar="TOL", help="an epoch improves when the monitored loss drops by more than TOL (default 1e-4)")
    add("--n-iter-no-change", type=options.integer(1), default=10, metavar="N", help="adaptive: divide the rate by 5 after N epochs without improvement (default 10)")


def _add_stopping_options(parser, validation_fraction=None):
    """Validation split and early stopping: shared by train and sweep."""
    stopping = parser.add_argument_group("validation and early stopping")
    shown = " (default: none, no validation)" if validation_fraction is None else f" (default {validation_fraction:g})"
    stopping.add_argument("--validation-fraction", type=options.interval(0, 1, low_open=True), default=validation_fraction,
                          metavar="F", help=f"hold out this fraction of the training data (seeded, stratified) and watch its loss{shown}")
    stopping.add_argument("--early-stopping", type=options.integer(1), default=None, metavar="N",
                          help="stop after N epochs without improvement and keep the best weights (default: off)")


def build_parser():
    parser = Parser(prog="fastmlp", description="Train multilayer perceptrons on MNIST with a compiled core.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command", parser_class=Parser)

    train = commands.add_parser(
        "train",
        help="train on MNIST and report test accuracy",
        description="Train an MLP on MNIST, Fashion-MNIST or KMNIST (--dataset), or on any dataset in the same IDX/CSV "
        "layout (--data), and evaluate it on the test set.",
    )
    _add_model_options(train)
    train.add_argument("--backend", type=options.choice(BACKENDS), default="numba", metavar="|".join(BACKENDS), help="numba (compiled, default) or numpy (reference)")
    train.add_argument("--distributed", action="store_true",
                       help="data-parallel over the processes of 'mpiexec -n N fastmlp train ...': each computes the gradient "
                       "of its share of every --batch-size batch (numba backend, batches of 2 or more; needs fastmlp[mpi])")
    _add_optimizer_options(train)
    _add_schedule_options(train)
    _add_stopping_options(train)
    files = train.add_argument_group("checkpoints")
    files.add_argument("--save", type=options.path, metavar="FILE", help="write the trained model and its run to FILE (.npz)")
    files.add_argument("--checkpoint-every", type=options.integer(1), default=None, metavar="N",
                       help="also write --save FILE after every N epochs (default: only at the end)")
    files.add_argument("--resume", type=options.existing_file, metavar="FILE",
                       help="go on with the run saved in FILE up to --epochs in all")
    train.add_argument("--plot", type=options.new_file(FIGURE_SUFFIXES), metavar="FILE.png",
                       help="draw the learning curves (loss and accuracy per epoch) to FILE (.png, .pdf, .svg; needs fastmlp[plot])")
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
    _add_optimizer_options(compare)
    _add_schedule_options(compare)
    compare.add_argument("--weights-rtol", type=options.number(), default=None, metavar="R", help="allowed max|W_numba - W_numpy| / max|W| (float32: from the float64 reference; default per dtype)")
    compare.add_argument("--json", action="store_true", help="print one JSON object on stdout, nothing else")

    evaluate = commands.add_parser(
        "evaluate",
        help="evaluate a saved model on the test set",
        description="Load a model written by 'fastmlp train --save' (or MLP.save) and report its accuracy, loss, "
        "per-class precision and recall and confusion matrix on the test set (loss and R^2 for regression).",
    )
    evaluate.add_argument("model", type=options.existing_file, metavar="MODEL.npz", help="the saved model")
    source = evaluate.add_mutually_exclusive_group()
    source.add_argument("--data", type=options.path, metavar="DIR", help="directory with the test files of any MNIST-like dataset")
    source.add_argument("--dataset", type=options.choice(DATASETS), default=None, metavar="NAME",
                        help=f"{', '.join(DATASETS)} (default mnist: $FASTMLP_DATA, else the user cache); downloaded once into the cache")
    evaluate.add_argument("--plot", type=options.new_file(FIGURE_SUFFIXES), metavar="FILE.png",
                          help="also draw the confusion matrix and per-class precision and recall to FILE (needs fastmlp[plot])")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object with the results on stdout, nothing else")

    predict = commands.add_parser(
        "predict",
        help="predict with a saved model",
        description="Load a model written by 'fastmlp train --save' (or MLP.save) and write its predictions "
        "(class labels, or outputs for regression) or, with --proba, class probabilities for the samples in INPUT.",
    )
    predict.add_argument("model", type=options.existing_file, metavar="MODEL.npz", help="the saved model")
    predict.add_argument("input", type=options.existing_file, metavar="INPUT",
                         help="samples: .npy ([N, features] or [N, h, w]), .csv (label then pixels, as MNIST's CSV) or an IDX file (.gz or not)")
    predict.add_argument("-o", "--output", required=True, type=options.new_file(OUTPUT_SUFFIXES), metavar="OUT",
                         help="where to write: .npy or .csv (by its suffix)")
    predict.add_argument("--proba", action="store_true", help="class probabilities instead of labels")

    warmup = commands.add_parser(
        "warmup",
        help="compile the numba kernels ahead of time (container images, CI)",
        description="Compile (or load from Numba's on-disk cache) the kernels that training needs, so that the first "
        "fit starts at once: per-sample SGD (plain, and with an optimizer) and mini-batch training, for each "
        "--dtype, --batch-size kind and --inputs kind. The network sizes do not matter: the kernels are compiled "
        "for types, not shapes.",
    )
    warmup.add_argument("--dtype", action="append", type=options.item_list(options.choice(DTYPES), example="float32,float64"),
                        metavar="LIST", help="float32 (default) and/or float64, a comma list (float32,float64); repeatable")
    warmup.add_argument("--batch-size", action="append", type=options.item_list(options.batch_size, example="1,32"),
                        metavar="LIST", help="1 for per-sample SGD, any larger size (or full, as train takes it) for "
                        "mini-batch, a comma list (default 1,32); repeatable")
    warmup.add_argument("--inputs", action="append", type=options.item_list(options.choice(WARMUP_INPUTS), example="uint8,float"),
                        metavar="LIST", help="uint8 pixels (default) and/or float features, a comma list (uint8,float); repeatable")
    warmup.add_argument("--distributed", action="store_true",
                        help="also the kernels of train --distributed (MPI data-parallel SGD; needs fastmlp[mpi]), "
                        "for each --dtype and --inputs kind")
    warmup.add_argument("--json", action="store_true", help="one JSON object with the seconds per kernel set")

    from ._sweep_cli import add_parser as add_sweep_parser  # it builds on this module's option groups

    add_sweep_parser(commands)

    from .bench import add_parser as add_bench_parser  # one way only: bench knows nothing of this module

    add_bench_parser(commands)
    return parser


def _given_options(argv, command="train"):
    """The dests of the ``command`` options present on the command line (not defaulted)."""
    parser = build_parser()
    (commands,) = [action for action in parser._actions if action.dest == "command"]
    for action in commands.choices[command]._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv))) - {"command", "version"}


def _check_combination(check, option_names=True):
    """Run the model's own checks of the options taken together (each value alone already
    passed its parser); a failure there is still a command-line mistake, said in the options'
    names (``nesterov=True`` is ``--nesterov``, ``momentum=0`` is ``--momentum 0``) unless not
    ``option_names`` (a sweep's trials, whose grid speaks the API's names)."""
    try:
        return check()
    except (ValueError, TypeError) as error:
        raise UsageError(options.in_option_names(str(error), TRAINING_OPTIONS + MODEL_OPTIONS) if option_names
                         else str(error)) from None


def _check_options_take_effect(args, given):
    """An option given that the others leave without effect is a mistake (exit 2), as --momentum
    with Adam is: the run would quietly train as if it were not there (``fit`` warns of the same
    options, by the same rule)."""
    from .model import FIT_DEFAULTS

    setting = {name: getattr(args, name, default) for name, default in FIT_DEFAULTS.items()}
    options.check_options_take_effect(setting, given, stopping=hasattr(args, "early_stopping"))
    # (--warmup-epochs as long as --epochs is not one of them: a run resumed to more epochs goes on past it)


def _check_save_path(path):
    """Refuse --save to a path it could not write (a directory, a missing or read-only
    directory) now, not after the training it would throw away."""
    if path is None:
        return
    problem = target_problem(path)
    if problem is not None:
        raise UsageError(f"--save {path}: {problem[1]}")
    if not path.lower().endswith(".npz"):  # a slip of the argument order would replace a data file
        raise UsageError(f"--save {path}: must end in .npz (the file type of a fastmlp checkpoint)")


def _model(args, backend):
    from .model import MLP

    if args.loss == "binary_cross_entropy" and args.layers[-1] > 1:
        raise UsageError(
            f"--loss binary_cross_entropy with {args.layers[-1]} output units is multilabel (a 0/1 label set per "
            f"sample), but these datasets have one label per sample: use --loss cross_entropy, or --layers ending "
            f"in 1 for binary labels"
        )
    if args.loss == "mse" and args.output in (None, "identity") and args.layers[-1] > 1:
        raise UsageError(
            f"--loss mse with {'an' if args.output else 'the default'} identity output is regression on "
            f"{args.layers[-1]} targets per sample, but these datasets have one class label per sample: add "
            f"--output softmax to train a classifier on the squared error"
        )
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


def _fit_options(args, dests):
    """The MLP.fit keyword arguments the options ``dests`` stand for."""
    return {("shuffle" if dest == "no_shuffle" else dest): (not args.no_shuffle if dest == "no_shuffle" else getattr(args, dest))
            for dest in dests}


def _check_fit_options(args, dests):
    from .model import FIT_DEFAULTS, check_fit_options

    _check_combination(lambda: check_fit_options({**FIT_DEFAULTS, **_fit_options(args, dests)}))


def _progress(args):
    """The bars (training's and the downloader's): off with --json or --no-progress; else on a
    terminal only."""
    return False if (getattr(args, "json", False) or getattr(args, "no_progress", False)) else None


def _data(args):
    """The data of --data or --dataset (default MNIST) as (train, test); called after every option
    has been checked, so mistakes fail fast."""
    from ._validation import n_held_out
    from .data import load_dataset

    X_train, y_train, X_test, y_test = load_dataset(args.dataset or "mnist", args.data, progress=_progress(args))
    if len(y_train) == 0:  # (said first: the checks below blamed --limit or the default --batch-size 1; audit 78)
        raise ValueError(f"the training set of {_source(args)} is empty (0 samples); need at least one")
    if args.limit is not None:
        if args.limit > len(y_train):
            raise ValueError(f"--limit {args.limit} is more than the {len(y_train):,} training samples")
        X_train, y_train = X_train[: args.limit], y_train[: args.limit]
    batch_size = None if getattr(args, "resume", None) else getattr(args, "batch_size", None)
    # (fit would train full batch, quietly: on the samples the validation split leaves, audit 80)
    fraction = getattr(args, "validation_fraction", None)
    n_fit = len(y_train) - n_held_out(len(y_train), fraction) if fraction else len(y_train)
    if batch_size is not None and 0 < n_fit < batch_size:
        held = f" left after --validation-fraction {fraction:g} holds out {len(y_train) - n_fit:,}" if fraction else ""
        raise ValueError(f"--batch-size {batch_size} is more than the {n_fit:,} training samples{held}; "
                         f"--batch-size full trains on all of them as one batch")
    return X_train, y_train, X_test, y_test


def _option(dest):
    return "--" + dest.replace("_", "-")


def _shown(value, dest=None):
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    if value is None:
        return "full" if dest == "batch_size" else "none"  # as --batch-size takes it
    return f"{value:g}" if isinstance(value, float) else str(value)


def _resumed_model(args, given):
    """The model of ``--resume FILE``, checked against the options given with it: the network
    and training options must be the checkpoint's (leave them out to take them from it)."""
    from .model import MLP

    model = MLP.load(args.resume)
    where = f"--resume {args.resume}"
    if model.fit_options_ is None:
        raise UsageError(f"{where}: the file holds weights but no run to resume; train without --resume")
    saved = {**model.get_params(), **model.fit_options_}
    saved["no_bias"] = not saved.pop("bias")
    saved["no_shuffle"] = not saved.pop("shuffle")
    saved["output"] = model.arch_.output
    for dest in MODEL_OPTIONS + TRAINING_OPTIONS:
        if dest not in given:
            continue
        mine = getattr(args, dest)
        theirs = tuple(saved[dest]) if dest == "layers" else saved[dest]
        if mine != theirs:
            if isinstance(mine, bool):
                raise UsageError(f"{where}: {_option(dest)} differs from the checkpoint's run, which was trained without it; "
                                 f"a resumed run keeps its options (leave {_option(dest)} out)")
            raise UsageError(f"{where}: {_option(dest)} {_shown(mine, dest)} differs from the checkpoint's {_shown(theirs, dest)}; "
                             f"a resumed run keeps its options (leave {_option(dest)} out)")
    done = model.epochs_trained_
    horizon = model.fit_options_["schedule_epochs"]
    if "epochs" not in given:
        args.epochs = max(horizon, done)
    # the run is over (a requeued job's line again, after a time-out that came once the last
    # checkpoint was written): nothing trains, and the run's end is reported as it would have been
    args.complete = args.epochs == done or (model.run_.stopped is not None and done <= args.epochs <= max(horizon, done))
    if model.run_.stopped is not None and not args.complete:
        raise UsageError(f"{where}: the checkpoint's run already stopped after epoch {done} ({model.run_.stopped}); "
                         f"there is nothing to resume")
    if args.complete:
        args.epochs = done
    options = model.fit_options_
    watching = options["early_stopping"] is not None or options["lr_schedule"] == "adaptive"
    if watching and model.history_.monitor == "val_loss" and options["validation_fraction"] is None and not args.complete:
        raise UsageError(f"{where}: the checkpoint's run watched the loss on validation_data given to fit() in Python, "
                         f"which a command line cannot give; resume it there: MLP.load(path).partial_fit(X, y, "
                         f"validation_data=(X_val, y_val))")
    if model.fit_options_["lr_schedule"] == "cosine" and horizon <= done and not args.complete:
        raise UsageError(f"{where}: the checkpoint's cosine schedule has annealed over all {horizon} epoch"
                         f"{'s' if horizon != 1 else ''} of its run (the --epochs it was started with), so the run is "
                         f"complete and cannot be extended; train a new run instead (without --resume)")
    if args.epochs < done:
        raise UsageError(f"{where}: the checkpoint has {done} epoch{'s' if done != 1 else ''} done and --epochs "
                         f"{args.epochs} is the total, so nothing is left to train; pass a larger --epochs to train on")
    if model.fit_options_["lr_schedule"] == "cosine" and args.epochs != horizon and not args.complete:
        raise UsageError(f"{where}: --epochs {args.epochs} differs from the {horizon} epochs the checkpoint's cosine "
                         f"schedule anneals over (the --epochs of its run); resume with --epochs {horizon}")
    for dest in ("backend", "threads"):
        if dest in given:
            setattr(model, dest, getattr(args, dest))
    args.backend, args.threads = model.backend, model.threads
    for dest in MODEL_OPTIONS + TRAINING_OPTIONS:
        setattr(args, dest, saved[dest] if dest != "layers" else tuple(saved[dest]))
    return model


def _source(args):
    """Where --data/--dataset's data came from, as errors name it."""
    return f"--data {args.data}" if args.data else f"the {args.dataset or 'mnist'} dataset"


def _one_class(args, model, y_train):
    """A warning's text when a classifier's training labels hold a single class: it learns to
    answer that class and scores its share of the test set (1.0000 where every test label is it
    too): a label column read from the wrong place, say (audit 78: OpenML's label-last CSV)."""
    if not model.arch_.is_classifier or y_train.ndim != 1 or len(y_train) < 2 or (y_train != y_train[0]).any():
        return None
    return (f"the training labels of {_source(args)} hold one class only ({y_train[0]}, all {len(y_train):,} "
            f"samples): a classifier learns nothing from them; check where the labels come from (a CSV's "
            f"label column is first, or last under a header that names it)")


def _check_data(args, model, X_train, y_train, X_test, y_test):
    """The data fit the network (images' width, labels' classes), the test set checked before
    training rather than at the evaluation after it; an error names where the data came from
    (the training labels' was "y labels must be in [0, 9] ...: got 200 at row 17")."""
    from ._validation import check_X, check_y

    source = _source(args)
    for part, X, y in (("training", X_train, y_train), ("test", X_test, y_test)):
        # "set": the messages say "<name> has ...", as of X
        X = check_X(X, model.arch_, name=f"the {part} set of {source}")
        check_y(y, model.arch_, len(X), name=f"the {part} labels of {source}", x_name=f"the {part} set of {source}")


def _check_resumed_data(args, model, X_train, y_train):
    from ._validation import check_X, check_y
    from .model import data_fingerprint

    X = check_X(X_train, model.arch_)
    y = check_y(y_train, model.arch_, len(X))
    fingerprint = data_fingerprint(X, y)
    saved = model.data_fingerprint_
    if saved is not None and "sample_weight_crc32" in saved:  # it went on unweighted, silently
        raise ValueError(
            f"--resume {args.resume}: the checkpoint's run trained with sample weights, which the command line "
            f"cannot give; go on in Python: MLP.load(...).partial_fit(X, y, sample_weight=...)"
        )
    if saved is not None and fingerprint != saved:
        raise ValueError(
            f"--resume {args.resume}: the checkpoint's run trained on other data ({saved['n_samples']:,} samples, "
            f"crc32 {saved['crc32']:08x}; these are {fingerprint['n_samples']:,}, crc32 {fingerprint['crc32']:08x}); "
            f"pass the --data or --dataset and the --limit it was trained with"
        )


def _check_distributable(args):
    from .distributed import PER_SAMPLE_IS_SEQUENTIAL

    if args.batch_size == 1 and args.resume:  # (its batch size is the checkpoint's)
        raise UsageError(f"--distributed: the run of --resume {args.resume} trains per-sample (batch size 1), which "
                         f"cannot be distributed: {PER_SAMPLE_IS_SEQUENTIAL}")
    if args.batch_size == 1:
        raise UsageError(f"--distributed needs --batch-size 2 or more (default 1): {PER_SAMPLE_IS_SEQUENTIAL}")
    if "threads" in getattr(args, "given", ()) and args.threads != 1:  # (one is what a rank uses: audit 61)
        raise UsageError(f"--threads {args.threads} does not go with --distributed: each rank trains on one thread "
                         f"(start one rank per core, with NUMBA_NUM_THREADS=1)")
    if args.backend != "numba":
        raise UsageError(f"--distributed runs on --backend numba only; got --backend {args.backend}")


def _communicator():
    """The MPI communicator of ``--distributed``, or None (with a note on stderr) to train in
    this process as usual: without mpi4py, or on a single rank. Once per ``main``; a rank of
    several keeps the SIGTERM watchdog (``_MPIWatchdog``) for the collectives after."""
    if not _world:
        from .distributed import communicator

        handler = None
        if _watchdog is not None:
            _watchdog.start()
            # MPI_Init waits for every rank while it holds the GIL, so neither a Python handler
            # nor the watchdog runs: SIGTERM's own action meanwhile (nothing is being written)
            handler = signal.signal(signal.SIGTERM, signal.SIG_DFL)
        try:
            comm, note = communicator(True)
        finally:
            if handler is not None:
                signal.signal(signal.SIGTERM, handler)
        if comm is None and _watchdog is not None:
            _watchdog.stop()
        _world[:] = [comm, note]
    return _world[0]


# [communicator, note] of this main() call's --distributed run, once looked up: the note (why
# it trains in one process) is said when training starts, not before a usage error
_world = []


def _is_distributed_train(argv):
    """Whether ``argv`` is ``train --distributed`` (or an abbreviation argparse takes), before
    parsing: its ranks meet MPI first, so that a rank's own usage error reaches the others. Not
    with --help (-h), which every rank prints at once, MPI unstarted (it took 0.5 s)."""
    if "-h" in argv or any(len(word) > 3 and "--help".startswith(word) for word in argv):
        return False
    words = [word for word in argv if not word.startswith("-")]
    return bool(words) and words[0] == "train" and any(
        len(word) > 4 and word.startswith("--di") and "--distributed".startswith(word) for word in argv)


def _parse_with_the_ranks(parser, argv):
    """``parser.parse_args(argv)`` on a rank of ``train --distributed``: a usage error that this
    rank alone meets (a --resume file or --plot directory missing on its node) is told to the
    other ranks at their meeting, where they raise ``RanksFailed``, instead of leaving them
    waiting for this one in MPI for ever."""
    comm = _communicator()
    if comm is None:
        return parser.parse_args(argv)
    from .distributed import agreeing

    with agreeing(comm):
        return parser.parse_args(argv)


class _MPIWatchdog:
    """SIGTERM for a rank that waits inside MPI (MPI_Init, or a collective another rank never
    joins), where no Python signal handler runs: if the main thread has not taken up a SIGTERM
    within ``grace`` seconds, this thread says so and ends the process with 143 (mpiexec then
    ends the other ranks), rather than leave the job running until a SIGKILL. It hears signals
    through ``signal.set_wakeup_fd``, which the interpreter writes as a signal arrives."""

    grace = 10.0

    def __init__(self):
        self._read = self._write = self._previous = self._thread = None
        self._stopping = threading.Event()

    def start(self):
        if not hasattr(os, "set_blocking"):
            return  # (Windows before Python 3.12, where no process gets a SIGTERM anyway: audit 41)
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        self._previous = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        self._thread = threading.Thread(target=self._watch, name="fastmlp-sigterm-watchdog", daemon=True)
        self._thread.start()

    def _watch(self):
        received = 0
        while not self._stopping.is_set():
            try:
                data = os.read(self._read, 64)
            except OSError:
                return
            if not data:
                return
            received += data.count(signal.SIGTERM)
            if received > len(_signalled) and not self._stopping.wait(self.grace) and received > len(_signalled):
                os.write(2, b"fastmlp: interrupted: stopped by SIGTERM (this rank was waiting inside MPI, "
                            b"where it could not stop by itself)\n")
                os._exit(EXIT_TERMINATED)

    def stop(self):
        if self._thread is None:
            return
        self._stopping.set()
        signal.set_wakeup_fd(self._previous)
        os.close(self._write)  # the thread's read returns
        self._thread.join()
        os.close(self._read)
        self._thread = None


_watchdog = None  # main()'s, while it handles SIGTERM in the main thread


# The communicator of a distributed run of more than one rank that an interrupt or an error
# ended on this rank after the ranks met: main stops every rank through it, since the others
# may be blocked in a collective (where no signal handler runs either).
_ranks_to_stop = []


def _train(args):
    if not args.distributed:
        from .distributed import launched_as

        launched = launched_as()
        if launched is not None:
            print(f"fastmlp: note: started as one of {launched[0]} MPI processes ({launched[2]}) without "
                  f"--distributed: each of them trains the whole run alone", file=sys.stderr)
        return _train_ranks(args, None)
    comm = _communicator()
    if comm is None:
        if not args.resume:  # a resumed run's batch size and backend come from its checkpoint
            _check_distributable(args)
        return _train_ranks(args, None, note=_world[1])
    from .distributed import RanksFailed, agreeing, caller_stops_ranks

    meeting = {"met": False, "agreed": False}
    try:
        # (an error of this rank alone after the ranks met: main stops them all, _stop_other_ranks)
        with caller_stops_ranks(comm), agreeing(comm) as meeting:  # a rank that fails before training (its data, its checkpoint) tells the others
            if not args.resume:
                _check_distributable(args)
            return _train_ranks(args, comm)
    except KeyboardInterrupt:
        _ranks_to_stop.append(comm)
        raise
    except RanksFailed as error:
        # raised on every rank that did not fail itself, and rank 0 says its own error or this one:
        # the others' copies were noise (and glued onto one line at times: audit 39)
        if comm.Get_rank() != 0:
            error._said_by_rank_0 = True
        # other ranks' usage errors (their --resume file missing on their node): every rank ends
        # with 2, the usage status (the ranks' 2 and 1 made mpiexec's status 3: audit 39)
        error._usage = bool(error.failed) and all(told.startswith("UsageError:") for _, told in error.failed)
        raise
    except DivergenceError as error:  # raised on every rank alike, at the same sample: rank 0 says it
        if comm.Get_rank() != 0:
            error._said_by_rank_0 = True
        raise
    except Exception:
        # after the ranks agreed to train, an error of this rank's alone (no memory, ...): the
        # others may wait for it in a collective (an error before that was told to every rank)
        if meeting["agreed"]:
            _ranks_to_stop.append(comm)
        raise


def _stop_other_ranks(status):
    """``status``, after stopping every rank of a distributed run this rank has left (the others
    may be blocked in a collective): MPI_Abort ends them all with it."""
    if _ranks_to_stop:
        from .distributed import abort

        abort(_ranks_to_stop.pop(), status)
    return status


def _check_checkpoints_written(args):
    """--checkpoint-every N that writes no file before a new run's end (where --save writes it
    anyway) is refused, as other options without effect are."""
    every = args.checkpoint_every
    if every is not None and every >= args.epochs:
        run = f"{args.epochs} epoch{'s' if args.epochs != 1 else ''}"
        raise UsageError(f"--checkpoint-every {every} writes no checkpoint in a run of {run} (it writes after "
                         f"every {every} epochs of the run; --save writes the file at the end anyway): pass a "
                         f"smaller N or leave it out")


def _train_ranks(args, comm, note=None):
    """Train as ``args`` say, over the ranks of ``comm`` (or in this process: None); ``note``, why
    a --distributed run trains in this process, is said once its options and data are checked
    (audit 61: it came before a usage error)."""
    given = getattr(args, "given", set())
    if args.checkpoint_every is not None and args.save is None:
        raise UsageError("--checkpoint-every needs --save FILE, the file to write")
    _check_save_path(args.save)
    if args.plot:
        require_matplotlib()
    if args.resume:
        model = _resumed_model(args, given)
    else:
        model = _model(args, args.backend)
        with warnings.catch_warnings():  # fit says them (init="zeros": SymmetryWarning), once
            warnings.simplefilter("ignore")
            _check_combination(model.initialize)  # before spending time on data
        _check_fit_options(args, TRAINING_OPTIONS)
        _check_options_take_effect(args, given)
    if not args.resume:  # (a resumed run, the same line again after a time-out, may have none left to write)
        _check_checkpoints_written(args)
    if args.distributed:
        _check_distributable(args)
    lead = comm is None or comm.Get_rank() == 0  # rank 0 alone prints and writes files
    X_train, y_train, X_test, y_test = _data(args)
    _check_data(args, model, X_train, y_train, X_test, y_test)  # now, not after the training it would throw away
    if note is not None:
        print(f"fastmlp: note: {note}", file=sys.stderr)
    one_class = _one_class(args, model, y_train)
    if one_class is not None and lead:
        print(f"fastmlp: warning: {one_class}", file=sys.stderr)
    part_way = model.run_.interrupted if args.resume else None
    if part_way is not None and lead:
        # a file saved part-way into an epoch (format 3): MLP.save warned of it when it was
        # written, maybe in another process; a resume said nothing of it (audit 67)
        print(f"fastmlp: warning: {args.resume} holds weights {part_way['samples']} samples into epoch "
              f"{part_way['epoch']}, where its run's training was interrupted (the run counts "
              f"{model.epochs_trained_} epoch{'s' if model.epochs_trained_ != 1 else ''}): going on from it "
              f"{'starts epoch ' + str(part_way['epoch']) + ' anew from those weights, ' if not args.complete else ''}"
              f"not as the uninterrupted run would have", file=sys.stderr)
    progress = _progress(args)
    say = _printing_while_read([path for path in (args.save, args.plot) if path])
    log = (lambda *a: None) if (args.json or not lead) else say
    checkpoints = {"checkpoint_path": args.save, "checkpoint_every": args.checkpoint_every} if args.checkpoint_every else {}

    done_before = 0
    description = (
        f"{'-'.join(map(str, model.arch_.layers))} {model.activation} {model.arch_.output}+{model.loss} "
        f"backend={model.backend} batch_size={args.batch_size or 'full'} lr={args.lr} optimizer={args.optimizer}"
        + (f" on {comm.Get_size()} MPI ranks" if comm is not None else "")
    )
    if args.resume:  # (before args.training: a refusal trained nothing, so says nothing of what --save holds)
        _check_resumed_data(args, model, X_train, y_train)
    args.save_found = _identity(args.save)  # what --save was before (an interrupt's account: _what_train_kept)
    args.model, args.writes_save = model, lead  # (what its writes to --save left: _written_by_this_run)
    args.training = True  # (from here on an error's account says what --save holds)

    def on_epoch(history):
        # each epoch's line as it ends, flushed: a log file or an interrupted run keeps them
        i = len(history.epoch) - 1
        validation = ""
        if history.val_loss and history.val_loss[i] is not None:  # None: an epoch trained without validation data
            validation = f", val loss {history.val_loss[i]:.4f}"
            if model.arch_.is_classifier:
                validation += f", val accuracy {history.val_accuracy[i]:.4f}"
        log(
            f"epoch {history.epoch[i]}: lr {history.lr[i]:.3g}, train loss {history.loss[i]:.4f}"
            + (f", train accuracy {history.accuracy[i]:.4f}" if model.arch_.is_classifier else "")
            + validation
            + f", {history.samples_per_second[i]:,.0f} samples/s"
        )

    if args.resume:
        done_before = model.epochs_trained_
        if comm is not None:
            # every rank takes the same branch: one whose checkpoint held the whole run took the one
            # below alone and exited, the others waiting for it in partial_fit's meeting for ever
            from .distributed import check_same_run

            check_same_run(comm, resumed_run=model.run_.scalars(), nothing_left_to_train=bool(args.complete))
        if args.complete:
            if lead:
                print(f"fastmlp: note: {args.resume} holds the whole run ({done_before} epoch"
                      f"{'s' if done_before != 1 else ''}{', stopped early' if model.run_.stopped else ''}): "
                      f"nothing is left to train", file=sys.stderr)
            from .trainer import record_end

            history = model.history_
            if model.run_.stopped is None:
                # a run whose --epochs ends it at the checkpoint's epoch (one written before the
                # run's last): it ends as the uninterrupted run of --epochs did, on the best
                # epoch's weights with early stopping and with --epochs its horizon (audit 67:
                # it said it kept the best epoch's weights and wrote the last's)
                if model.fit_options_["early_stopping"] is not None:
                    model.run_.take_best(model.params_, model.optimizer_state_)
                if model.fit_options_["lr_schedule"] != "cosine":  # (cosine's annealed over its own)
                    model.fit_options_["schedule_epochs"] = args.epochs
            record_end(history, model.run_)  # (a checkpoint written at the last epoch comes before the record)
        else:
            log(f"resuming {args.resume} after epoch {done_before} of {args.epochs}: {description} on {len(X_train)} samples")
            history = model.partial_fit(X_train, y_train, epochs=args.epochs - done_before, schedule_epochs=args.epochs,
                                        progress=progress, on_epoch=on_epoch, distributed=comm, **checkpoints)
    else:
        log(f"training {description} on {len(X_train)} samples: epochs={args.epochs} dtype={args.dtype} seed={args.seed}")
        history = model.fit(X_train, y_train, epochs=args.epochs, progress=progress, **_fit_options(args, TRAINING_OPTIONS),
                            on_epoch=on_epoch, distributed=comm, **checkpoints)
    new = range(len(history.epoch) - (model.epochs_trained_ - done_before), len(history.epoch))
    if history.stop_reason != "max epochs":
        log(f"stopped after epoch {history.stopped_epoch}: {history.stop_reason}")
    # early stopping leaves the model with the best epoch's weights (a resumed run's option too)
    kept = history.stopped_epoch
    if model.fit_options_["early_stopping"] is not None and history.best_epoch in history.epoch:
        kept = history.best_epoch
    if kept != history.stopped_epoch:
        log(f"keeping the weights of epoch {kept}, the best {history.monitor}")
    if not lead:
        return 0
    if args.save:  # before the evaluation: a trained run is never lost to what comes after it
        written = _written_by_this_run(args)
        expected, epoch = written if written is not None else (args.save_found, None)
        if _identity(args.save) != expected:  # another run's file now (two runs given one --save)
            from .checkpoint import CheckpointReplacedError, replaced_message

            raise CheckpointReplacedError(replaced_message(args.save, epoch))
        # with --checkpoint-every the fit wrote the model as it stands when its call ended (the
        # same bytes): a second write of it only cost the time (a large model's hundreds of MB)
        if not (args.checkpoint_every and written is not None and written[1] == model.run_.epochs_done):
            model._save_recorded(args.save)
    tic = time.perf_counter()
    test = model.evaluate(X_test, y_test)
    evaluate_seconds = time.perf_counter() - tic
    seconds = float(sum(history.seconds[i] for i in new))
    samples = sum(history.samples[i] for i in new)
    n_fit = int(history.samples[-1])  # the rows that trained: the data less any validation split
    at = history.epoch.index(kept)
    result = {
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        # the epoch whose weights the model keeps (and --save wrote): the last, or the best one
        "train_loss": history.loss[at],
        "train_accuracy": history.accuracy[at] if model.arch_.is_classifier else None,
        "val_loss": history.val_loss[at] if history.val_loss else None,
        "val_accuracy": history.val_accuracy[at] if history.val_accuracy else None,
        "epochs": args.epochs,
        "epochs_trained": model.epochs_trained_,
        "stop_reason": history.stop_reason,
        "best_epoch": history.best_epoch,
        "stopped_epoch": history.stopped_epoch,
        "resumed_from": args.resume,
        "resumed_after_epoch": done_before if args.resume else None,
        "batch_size": args.batch_size if args.batch_size is not None else n_fit,
        "backend": model.backend,
        # the most threads training took at once: per-sample, the plain SGD kernel's (1 for the
        # general kernel, any other recipe); mini-batch, the kernel's ("auto" picks per chunk, and
        # per sample too where two threads give one thread's bits)
        "threads": 1 if comm is not None else getattr(model.backend_, "threads_used", model.backend_.threads),
        "ranks": 1 if comm is None else comm.Get_size(),
        "dtype": model.dtype,
        "layers": list(model.arch_.layers),
        "activation": model.activation,
        "loss": model.loss,
        "output": model.arch_.output,
        "lr": args.lr,
        "seed": model.seed,
        "fit_options": model.fit_options_,
        "n_train": n_fit,
        "n_validation": int(len(X_train)) - n_fit,
        "n_test": int(len(X_test)),
        "seconds": seconds,
        "compile_seconds": float(model.compile_seconds_),
        "evaluate_seconds": evaluate_seconds,
        "samples_per_second": samples / seconds if seconds > 0 else None,
        "history": history.as_dict(),
    }
    if args.save:
        result["saved"] = args.save
    if args.plot:
        from .plot import plot_history, save_figure

        save_figure(plot_history(history, accuracy=model.arch_.is_classifier), args.plot)
        result["plot"] = args.plot
    if args.json:
        say(strict_json(result))
    else:
        accuracy = f"test accuracy {test['accuracy']:.4f}, " if model.arch_.is_classifier else ""
        if samples:
            say(
                f"{accuracy}test loss {test['loss']:.4f}; trained in {seconds:.2f} s "
                f"({result['samples_per_second']:,.0f} samples/s), JIT compile {model.compile_seconds_:.2f} s"
            )
        else:
            say(f"{accuracy}test loss {test['loss']:.4f}; nothing trained in this run")
        fewer = _fewer_threads_said(args, result["threads"]) if samples and comm is None else None
        if fewer:
            say(fewer)
        if args.save:
            say(f"saved model to {args.save}")
        if args.plot:
            say(f"learning curves written to {args.plot}")
    _store_for_the_next_run(model, quiet=args.json, say=say)
    return 0


def _fewer_threads_said(args, used):
    """A line saying that training took fewer threads than ``--threads N`` asked for, or None
    (``--threads 2 --momentum 0.9`` trained on one thread, and only --json told: audit 46)."""
    asked = args.threads
    if "threads" not in getattr(args, "given", ()) or asked == "auto" or used >= asked or args.backend != "numba":
        return None  # (not asked here: a resumed run's; NumPy's threads are its BLAS's)
    if _numba_disabled():
        why = "NUMBA_DISABLE_JIT=1 runs the kernels as Python, on one thread"
    elif args.batch_size == 1:
        why = ("per-sample SGD takes more than one thread only for plain SGD on one hidden layer of 16+ units per "
               "thread, each with a free core")
    else:
        why = f"at most NUMBA_NUM_THREADS ({_numba_threads()}) and the cores this process may use"
    return f"trained on {used} thread{'s' if used > 1 else ''} of --threads {asked}: {why}"


def _numba_threads():
    import numba

    return numba.config.NUMBA_NUM_THREADS


def _numba_disabled():
    import numba

    return bool(numba.config.DISABLE_JIT)


def _printing_while_read(files):
    """``print`` for a run asked to write ``files`` (``train --save m.npz | head -1``): when
    stdout's reader goes away, the run goes on to write them, saying so once on stderr, and prints
    nothing more (status 0: the files are its work). With no file to write it ends as any command
    does, with status 141 (``main``). Each line is flushed: a log file or an interrupted run keeps
    the lines printed so far."""

    def say(*args, **kwargs):
        try:
            print(*args, **kwargs)
            sys.stdout.flush()
        except BrokenPipeError:
            if not files or not _stdout_gone():
                raise
            print(f"fastmlp: note: the reader of stdout went away; training goes on to write "
                  f"{' and '.join(files)}, printing nothing more", file=sys.stderr)

    return say


STORE_WAIT_SECONDS = 300  # the longest train waits at its end for the second process's kernel


def _store_for_the_next_run(model, quiet, say=print):
    """At the end of a cold run: wait for the second process still compiling the kernel that
    training ran without (its results are out by then). Stopped at exit, it would leave the cache
    without the kernel, and every later run would start cold and train on the slow path again
    (31k against 243k samples/s per-sample, AMD EPYC Zen 2); told to finish in the background at
    exit (``_prewarm``), a run started next would still find the cache cold and train on the
    interpreted kernel until it is stored.
    Ctrl-C skips the wait and stops the process (at exit: it runs in a session of its own, which
    the terminal's Ctrl-C does not reach)."""
    compiling = getattr(model.backend_, "compiling_for_later", lambda: None)()
    if compiling is None:
        return
    if not quiet:
        say("storing the compiled kernel in the cache for the next runs (once; Ctrl-C skips this) ...")
    tic = time.perf_counter()
    try:
        compiling.wait(timeout=STORE_WAIT_SECONDS)
    except subprocess.TimeoutExpired:
        return  # (told to finish in the background at exit)
    except KeyboardInterrupt:
        if _signalled:  # SIGTERM: the batch system's end, not a skip
            raise
        from ._prewarm import stop_at_exit

        stop_at_exit()
        return
    if not quiet:
        say(f"stored in {time.perf_counter() - tic:.1f} s")


def _describe(model):
    """``784-128-10 sigmoid, softmax + cross_entropy``"""
    arch = model.arch_
    return f"{'-'.join(map(str, arch.layers))} {model.activation}, {arch.output} + {model.loss}"


def _samples(model, model_path, X, source):
    """``X`` checked against the model's input layer, with errors that name both files."""
    from ._validation import check_X

    X = np.asarray(X)
    n_features = model.arch_.layers[0]
    if X.ndim in (2, 3) and len(X) == 0:  # (it said "expected samples [N, 784]" of a (0, 784): audit 80)
        raise ValueError(f"{source} holds no samples (an array of shape {X.shape}); expected at least one")
    if X.ndim not in (2, 3):
        raise ValueError(f"{source} holds an array of shape {X.shape}; expected samples [N, {n_features}] or images [N, height, width]")
    width = int(np.prod(X.shape[1:]))
    if width != n_features:
        raise ValueError(f"{source} has {width} features per sample, but the model {model_path} takes {n_features} (layers {_shown(model.arch_.layers)})")
    try:
        return check_X(X, model.arch_)
    except (TypeError, ValueError) as error:
        raise type(error)(f"{source}: {error}") from None


def _evaluate(args):
    from .data import load_test_set
    from .metrics import check_reportable, evaluation_report, format_report
    from .model import MLP

    if args.plot:
        require_matplotlib()
    model = MLP.load(args.model)
    name = args.dataset or "mnist"
    X_test, y_test = load_test_set(name, args.data, progress=_progress(args))  # the training files need not be there
    source = f"the test set of {args.data}" if args.data else f"the {name} test set"
    X_test = _samples(model, args.model, X_test, source)
    check_reportable(model)  # (before the try: more classes than a report counts is no label mismatch)
    try:
        report = evaluation_report(model, X_test, y_test)
    except (TypeError, ValueError) as error:
        raise type(error)(f"the labels of {source} do not fit the model {args.model} ({_describe(model)}): {error}") from None
    result = {"model": args.model, "data": args.data, "dataset": None if args.data else name, "layers": list(model.arch_.layers), "loss_function": model.loss, **report}
    if args.plot:
        from .plot import plot_evaluation, save_figure

        outputs = model.predict(X_test) if report["task"] == "regression" else None
        save_figure(plot_evaluation(report, targets=y_test, outputs=outputs), args.plot)
        result["plot"] = args.plot
    if args.json:
        print(strict_json(result))
        return 0
    print(f"{args.model}: {_describe(model)}, {model.epochs_trained_} epoch{'s' if model.epochs_trained_ != 1 else ''} trained")
    print(format_report(report, loss_name=f"{model.loss} loss"))
    if args.plot:
        print(f"\nchart written to {args.plot}")
    return 0


def _predict(args):
    from .model import MLP
    from .prediction import read_input, write_output

    for name, path in (("INPUT", args.input), ("MODEL", args.model)):
        if os.path.exists(path) and os.path.exists(args.output) and os.path.samefile(path, args.output):
            raise UsageError(f"-o {args.output} is the {name} file itself; writing the predictions there would "
                             f"replace it: give another file name")
    model = MLP.load(args.model)
    arch = model.arch_
    if args.proba and not arch.is_classifier:
        raise UsageError(f"--proba: {args.model} is a regression model ({_describe(model)}): its predictions are "
                         f"its outputs, there are no probabilities (leave --proba out)")
    X = _samples(model, args.model, read_input(args.input, arch.layers[0]), args.input)
    if args.proba:
        values = model.predict_proba(X)
        classes = [1] if values.shape[1] == 1 else range(values.shape[1])  # one sigmoid unit: P(class 1)
        columns = [f"p{k}" for k in classes]
        what = "class probabilities"
    elif arch.is_multilabel:
        values, what = model.predict(X), "predicted label sets"
        columns = [f"label{k}" for k in range(values.shape[1])]
    elif arch.is_classifier:
        values, columns, what = model.predict(X), ["label"], "predicted labels"
    else:
        values = model.predict(X)
        columns = ["y"] if values.shape[1] == 1 else [f"y{k}" for k in range(values.shape[1])]
        what = "outputs"
    write_output(args.output, values, columns)
    print(f"wrote the {what} of {len(X):,} samples to {args.output} (shape {list(values.shape)}, {values.dtype})")
    return 0


def _compare(args, given=frozenset()):
    from .compare import TOLERANCES, compare_backends

    with warnings.catch_warnings():  # compare_backends says them (init="zeros": SymmetryWarning), once
        warnings.simplefilter("ignore")
        for backend in ("numba", "numpy"):
            _check_combination(_model(args, backend).initialize)
    compared = ("batch_size", "lr", "no_shuffle") + OPTIMIZER_OPTIONS + SCHEDULE_OPTIONS
    _check_fit_options(args, compared)
    _check_options_take_effect(args, given)
    tolerance = dict(TOLERANCES[args.dtype])
    if args.weights_rtol is not None:
        tolerance["weights_rtol"] = args.weights_rtol
    X_train, y_train, X_test, y_test = _data(args)
    fit_kwargs = _fit_options(args, compared)
    from .progress import compile_notice

    # its runs train without progress bars, so a cold cache's compile (the float64 kernels too, where
    # float32 runs part: 10 s on a Zen 4) would pass in silence: one line on a terminal, as train's
    try:
        with compile_notice(f"this {args.dtype} comparison", done="compiled and compared"):
            result = compare_backends(
                lambda backend: _model(args, backend), X_train, y_train, X_test, y_test,
                epochs=args.epochs, fit_kwargs=fit_kwargs, tolerance=tolerance,
            )
    except NotImplementedError as error:
        raise RuntimeError(f"cannot compare: the numba backend does not train these options yet ({error})") from None
    result.update(
        layers=args.layers, activation=args.activation, loss=args.loss, dtype=args.dtype,
        batch_size=args.batch_size or len(X_train), lr=args.lr, seed=args.seed, n_train=int(len(X_train)),
        fit_options=fit_kwargs,
    )
    if args.json:
        print(strict_json(result))
    else:
        _print_comparison(args, result, len(X_train))
    return 0 if result["agree"] else EXIT_ERROR


def _print_comparison(args, result, n_train):
    from .compare import REFERENCE

    reference = bool(result["epochs"]) and REFERENCE in result["epochs"][0]
    runs = ("numba", "numpy", REFERENCE) if reference else ("numba", "numpy")
    print(
        f"numba vs numpy{f' (float32; and the NumPy reference in {REFERENCE})' if reference else ''}, "
        f"{'-'.join(map(str, args.layers))} {args.activation} {args.loss} {args.dtype}, batch {result['batch_size']}, "
        f"lr {args.lr}, optimizer {args.optimizer}, seed {args.seed}, {n_train} samples"
    )
    names = [f"{'train loss ' + runs[0]:>16}", *(f"{name:>10}" for name in runs[1:])]
    accuracies = [f"{'test acc ' + runs[0]:>14}", *(f"{name:>7}" for name in runs[1:])]
    distances = (f"{'max|W-W64| numba':>16} {'numpy':>9}" if reference else f"{'max|dW|':>9}")
    print(f"{'epoch':>5}  {' '.join(names)}  {' '.join(accuracies)}  {distances} {'max|W|':>8}  ok")
    for r in result["epochs"]:
        acc = lambda m: "-" if m["test_accuracy"] is None else f"{m['test_accuracy']:.4f}"  # noqa: E731
        losses = [f"{r[runs[0]]['train_loss']:>16.6f}", *(f"{r[name]['train_loss']:>10.6f}" for name in runs[1:])]
        accs = [f"{acc(r[runs[0]]):>14}", *(f"{acc(r[name]):>7}" for name in runs[1:])]
        if reference:
            apart = r[f"max_abs_weight_diff_from_{REFERENCE}"]
            distance = f"{apart['numba']:>16.2e} {apart['numpy']:>9.2e}"
        else:
            distance = f"{r['max_abs_weight_diff']:>9.2e}"
        print(f"{r['epoch']:>5}  {' '.join(losses)}  {' '.join(accs)}  {distance} {r['max_abs_weight']:>8.3f}  "
              f"{'yes' if r['within_tolerance'] else 'NO'}")
    stopped = result["epochs"][-1].get("stopped") if result["epochs"] else None
    if stopped:
        print(f"stopped after epoch {result['epochs'][-1]['epoch']}: "
              + "; ".join(f"{name}: {reason or 'still running'}" for name, reason in stopped.items()))
    t = result["tolerance"]
    verdict = "backends agree" if result["agree"] else "BACKENDS DIFFER"
    if reference:
        print(
            f"tolerance: numba's distance from the {REFERENCE} run (max|W-W64|, train loss, test accuracy) within "
            f"{t['rounding_factor']:g}x the float32 NumPy run's, or within {t['weights_rtol']:g} * max|W|, "
            f"{t['loss_rtol']:g} (relative), {t['accuracy_atol']:g}: {verdict}"
        )
    else:
        print(
            f"tolerance: max|dW| <= {t['weights_rtol']:g} * max|W|, train loss within {t['loss_rtol']:g} (relative), "
            f"test accuracy within {t['accuracy_atol']:g}: {verdict}"
        )
    loose = result.get("loose_from")
    if result["agree"] and loose is not None:
        record = result["epochs"][loose - 1]
        print(f"(but from epoch {loose} the float32 NumPy run is itself "
              f"{record[f'max_abs_weight_diff_from_{REFERENCE}']['numpy']:.2e} from the {REFERENCE} run, max|W| "
              f"{record['max_abs_weight']:.3g}: a bound {t['rounding_factor']:g}x that passes any weights near the "
              f"reference's, so the agreement says little; this training amplifies float32's rounding that far: "
              f"compare at a smaller --lr than {args.lr:g}, or with --dtype {REFERENCE})")
    if not result["agree"]:
        from .compare import CHAOS_FACTOR, PROBE_FACTOR, PROBE_NAMES, SCATTER_FACTOR, chaotic, first_gap

        index, _ = first_gap(result["epochs"])
        epoch, spread = result["epochs"][index]["epoch"], result["rounding_spread"][index]
        gap = f"numba's distance from the {REFERENCE} run" if reference else "the backends' gap"
        if not np.isfinite(spread):
            nudged = f"the NumPy run from a start 1 ulp away diverged by epoch {epoch}"
        else:
            nudged = f"the NumPy run from a start 1 ulp away parted from it by {spread:.2e} at epoch {epoch}"
        spreads = result.get("nudged_spreads", [])
        if len(spreads) > 1 and result["chaotic"]:  # float64: not the start nudged up, another one (audit 74)
            last = spreads[-1]
            nudged = (f"the NumPy run from a start 1 ulp up parted from it by {spread:.2e} at epoch {epoch}, less than "
                      f"1/{CHAOS_FACTOR:g} of the backends' gap, but from the start nudged "
                      f"{PROBE_NAMES[len(spreads) - 1]} " + ("it diverged" if not np.isfinite(last) else f"by {last:.2e}"))
            spread = last
        elif len(spreads) > 1:
            nudged = (f"the NumPy runs from {len(spreads)} starts 1 ulp away (every weight up; down; "
                      f"{len(spreads) - 2} random mix(es) of the two) parted from it by {max(spreads):.2e} at most at "
                      f"epoch {epoch}")
        probes, parted = result.get("compiled_probes", []), result.get("compiled_spread", [])
        within = "" if not np.isfinite(spread) else f", at least 1/{CHAOS_FACTOR:g} of {gap}"
        in_float64 = result.get("compiled_float64")
        if in_float64 is not None:  # float32, chaotic by both tests: numba's run in float64 from the same start
            diff = in_float64["max_abs_weight_diff"][-1]
            apart = "diverged" if not np.isfinite(diff) else f"is {diff:.2e} from the NumPy {REFERENCE} run"
            in_float64_said = (f"in {REFERENCE}, numba's run from the same start {apart} at epoch "
                               f"{len(in_float64['max_abs_weight_diff'])}")
        if result["chaotic"]:
            own = ""
            if parted:  # float32: the compiled run's own nudged run parted as far
                own = (f", and numba's own run from the start nudged {PROBE_NAMES[len(parted) - 1]} "
                       + ("diverged" if not np.isfinite(parted[-1]) else f"parted from numba's by {parted[-1]:.2e}"))
            if in_float64 is not None:
                spreads64 = in_float64.get("nudged_spreads")
                own += (f"; {in_float64_said}, "
                        + (f"as the NumPy {REFERENCE} run from the start nudged {PROBE_NAMES[len(spreads64) - 1]} "
                           f"parts ({spreads64[-1]:.2e})"
                           if spreads64 and in_float64["max_abs_weight_diff"][-1] > 0
                           and not in_float64["within_tolerance"][-1] else "which rounding explains"))
            print(f"({nudged}{within}{own}: this training amplifies rounding, so the backends' last bits cannot be "
                  f"compared here)")
        elif in_float64 is not None and in_float64["fault"]:  # chaotic in float32, but float64 shows a fault
            from .compare import FLOAT64_FACTOR

            spreads64 = in_float64.get("nudged_spreads") or [in_float64["rounding_spread"][-1]]
            if len(spreads64) == 1:
                runs = f"the NumPy {REFERENCE} run from a start 1 ulp away parts ({spreads64[0]:.2e})"
            else:
                runs = (f"the NumPy {REFERENCE} runs from {len(spreads64)} starts 1 ulp away part "
                        f"({max(spreads64):.2e} at most)")
            print(f"({nudged}{within}, and numba's own nudged runs parted as far: float32 training amplifies rounding "
                  f"here; but {in_float64_said}, at least 1/{FLOAT64_FACTOR:g} of its float32 distance, and more than "
                  f"{CHAOS_FACTOR:g}x as far as {runs}: rounding 2**29 times finer does not explain it, a fault in "
                  f"numba's arithmetic does; --dtype {REFERENCE} compares it)")
            return  # (not the advice on unstable training below: float64 shows it is not that)
        else:
            _, gap_value = first_gap(result["epochs"])
            floor = t["weights_rtol"] * result["epochs"][index]["max_abs_weight"]
            if parted and chaotic(result["epochs"], result["rounding_spread"]):  # but numba's nudged runs did not part
                nudged += (f"{within}; but numba's own runs from {len(parted)} nudged starts parted from numba's "
                           f"by {max(parted):.2e} at most, less than 1/{SCATTER_FACTOR:g} of "
                           f"{gap}: the training amplifies rounding, but not this far")
            elif not reference and gap_value <= floor:  # float64: the weights agree, the loss or accuracy parts them
                nudged += (f", less than 1/{CHAOS_FACTOR:g} of the weights bound ({floor:.2e}), within which the "
                           f"backends' weights agree ({gap_value:.2e}): it is the train loss or the test accuracy "
                           f"that parts them")
            else:
                nudged += f", less than 1/{CHAOS_FACTOR:g} of {gap}"
            if result.get("rounding"):
                others = f" (from {len(probes) - 1} other nudged start(s) it did not)" if len(probes) > 1 else ""
                print(f"({nudged}; but numba's own run from the start nudged "
                      f"{PROBE_NAMES[len(probes) - 1]} came back within the tolerance, at {PROBE_FACTOR:g}x the float32 "
                      f"NumPy run's distance{others}: where float32 training parts from {REFERENCE} hangs on its start's "
                      f"last bits here, which is rounding, not a fault; --dtype float64 compares the arithmetic with "
                      f"rounding 2**29 times finer)")
                return
            tried = f", nor do numba's own runs from {len(probes)} nudged starts come back" if probes else ""
            print(f"({nudged}: a nudge of the start does not explain it{tried})")
        print(
            f"(where training is unstable, at a rate too high for the optimizer, the backends' rounding "
            f"differences grow until the runs part: compare again at a smaller --lr than {args.lr:g}"
            + (" (Adam: 0.001-0.01)" if args.optimizer == "adam" else "")
            + (", or with --dtype float64" if reference else "")
            + "; a difference that stays there is a fault to report)"
        )


WARMUP_INPUTS = ("uint8", "float")


def _merged_lists(lists, default):
    return tuple(dict.fromkeys(item for values in lists for item in values)) if lists else default


TWO_THREAD_LAYERS = (16, 32, 4)  # a network the two-thread per-sample kernel splits (16 hidden units per thread)


def _warmup(args):
    """Train a tiny network once per kernel set, which compiles it or loads it from the cache
    (mini-batch: the parallel kernel, which a cold first fit leaves to a second process)."""
    import numpy as np

    from ._numba_backend import compiling_ahead
    from ._prewarm import start as start_prewarm
    from .kernels import usable_threads
    from .model import MLP

    two_threads = usable_threads(2, TWO_THREAD_LAYERS) == 2
    dtypes = _merged_lists(args.dtype, ("float32",))
    batch_sizes = _merged_lists(args.batch_size, (1, 32))
    inputs = _merged_lists(args.inputs, ("uint8",))
    rng = np.random.default_rng(0)
    kinds = {"uint8": rng.integers(0, 256, size=(64, 16)).astype(np.uint8), "float": rng.normal(size=(64, 16))}
    y = rng.integers(0, 4, size=64)
    done = []
    combinations = [(dtype, kind) for dtype in dtypes for kind in inputs]

    def mini_batch_ahead(index):
        # The parallel mini-batch kernel takes longest (15-30 s by kind): on a cold cache its
        # second process starts a combination ahead, to compile it while this process compiles
        # the per-sample kernels; the mini-batch fit below then loads what it stores
        # (_numba_backend: compiling_ahead). One such process at a time, beside this one.
        if index < len(combinations) and any(batch_size != 1 for batch_size in batch_sizes):
            dtype, kind = combinations[index]
            start_prewarm("mini-batch", dtype, "uint8" if kind == "uint8" else dtype)

    mini_batch_ahead(0)
    for index, (dtype, kind) in enumerate(combinations):
        for batch_size in batch_sizes:
            # per-sample SGD has three kernels: plain SGD, plain SGD on two threads (`--threads
            # 2`, where this machine has two cores), and the one of every other recipe
            recipes = [({}, 1)]  # (fit options, threads)
            if batch_size == 1:
                recipes += [({}, 2)] * two_threads + [({"momentum": 0.9}, 1)]
            for recipe, threads in recipes:
                tic = time.perf_counter()
                model = MLP(list(TWO_THREAD_LAYERS) if threads == 2 else [16, 8, 4], dtype=dtype, seed=0,
                            threads="auto" if threads == 1 else threads)
                with compiling_ahead():
                    model.fit(kinds[kind], y, epochs=1, batch_size=None if batch_size is None else min(batch_size, 64),
                              progress=False, **recipe)
                model.predict(kinds[kind][:1])  # the forward pass of evaluation and prediction
                mode = {1: "per-sample SGD", None: "full-batch (the mini-batch kernels)"}.get(batch_size, "mini-batch")
                what = (f"{dtype} {kind} inputs, {mode}" + (" with an optimizer" if recipe else "")
                        + (" on two threads" if threads == 2 else ""))
                done.append({"kernels": what, "seconds": time.perf_counter() - tic})
                if not args.json:
                    print(f"{what}: ready in {done[-1]['seconds']:.1f} s", flush=True)
        mini_batch_ahead(index + 1)
    if args.distributed:
        from .distributed import warm_up_kernels

        for dtype in dtypes:
            for kind in inputs:
                tic = time.perf_counter()
                warm_up_kernels(kinds[kind], y, dtype)
                what = f"{dtype} {kind} inputs, distributed mini-batch"
                done.append({"kernels": what, "seconds": time.perf_counter() - tic})
                if not args.json:
                    print(f"{what}: ready in {done[-1]['seconds']:.1f} s", flush=True)
    if args.json:
        print(strict_json({"warmed": done}))
    return 0


class Terminated(KeyboardInterrupt):
    """SIGTERM (a batch system's time-out, ``kill``): handled as Ctrl-C is, so that a file being
    written is removed rather than left half-written, and the checkpoints written so far stay."""


_signalled = []  # SIGTERM received in this main(): training turns the interrupt into its own


def _terminate(signum, frame):
    _signalled.append(signum)
    raise Terminated("stopped by SIGTERM")


def main(argv=None):
    global _watchdog
    argv = sys.argv[1:] if argv is None else list(argv)
    if sys.stderr is None:  # started with stderr closed (2>&-): errors must not go to stdout instead
        sys.stderr = open(os.devnull, "w")
    if sys.stdout is None:  # started with stdout closed (>&-): a whole run would print into nothing
        print("fastmlp: error: stdout is closed (>&-): fastmlp prints its results there; send them to a "
              "file or to /dev/null instead", file=sys.stderr)
        return EXIT_ERROR
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    _signalled.clear()
    _ranks_to_stop.clear()
    _world.clear()
    _watchdog = _MPIWatchdog() if in_main_thread else None
    format_warning, warnings.formatwarning = warnings.formatwarning, _format_warning
    escaped = _escaping_what_cannot_be_encoded()
    try:
        status = _main(argv)
        sys.stdout.flush()  # here, not at exit: a reader gone (| head) is seen below
        return status
    except KeyboardInterrupt:
        # past _main's own handling (its work done, or while it handled a first Ctrl-C: an
        # impatient second one): a traceback, and status 1 for a SIGTERM, where the README
        # promises one line and 130 or 143
        from ._prewarm import stop_at_exit

        stop_at_exit()
        print(f"fastmlp: interrupted: stopped by {'SIGTERM' if _signalled else 'Ctrl-C'}", file=sys.stderr)
        return _stop_other_ranks(EXIT_TERMINATED if _signalled else EXIT_INTERRUPTED)
    except BrokenPipeError as error:
        if _stdout_gone():
            return _stop_other_ranks(EXIT_BROKEN_PIPE)
        print(f"fastmlp: error: {error}", file=sys.stderr)  # another pipe's: reported as _main reports errors
        return _stop_other_ranks(EXIT_ERROR)
    except BaseException:
        if _ranks_to_stop:  # an error _main does not report (MemoryError, ...): as _stop_other_ranks
            traceback.print_exc()
            _stop_other_ranks(EXIT_ERROR)
        raise
    finally:
        warnings.formatwarning = format_warning
        for stream, errors in escaped:
            with contextlib.suppress(ValueError, OSError):
                stream.reconfigure(errors=errors)
        if _watchdog is not None:
            _watchdog.stop()
            _watchdog = None
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _escaping_what_cannot_be_encoded():
    """Have stdout and stderr write a character their encoding lacks as an escape (a non-ASCII
    path under PYTHONIOENCODING=ascii): a command that had done its work (a model saved) ended
    with "'ascii' codec can't encode character" and status 1. Returns what to put back."""
    changed = []
    for stream in (sys.stdout, sys.stderr):
        errors = getattr(stream, "errors", None)
        if errors == "strict" and hasattr(stream, "reconfigure"):
            try:
                stream.reconfigure(errors="backslashreplace")
            except (ValueError, OSError):  # not a text stream of its own (io.UnsupportedOperation)
                continue
            changed.append((stream, errors))
    return changed


def _what_train_kept(args):
    """After an interrupted or failed ``train``: the file that holds its run, as the file itself
    says (a checkpoint this run wrote, or the one it resumed), if any. Read from the file, not
    from the epochs' listener: an interrupt inside a checkpoint's last step (the directory's
    sync, after the rename) left the listener one epoch behind the file."""
    save = getattr(args, "save", None)
    if not save or not hasattr(args, "save_found"):
        return ""
    now = _identity(save)
    writer = getattr(args, "writes_save", True)  # (the other ranks of a distributed run: rank 0 writes)
    written = _written_by_this_run(args) if writer else None
    if written is not None and now != written[0]:  # (not this run's: no --resume of it advised)
        return f"; {save} was replaced by another process since this run wrote it after epoch {written[1]}"
    resumed = now is not None and now == args.save_found and getattr(args, "resume", None) \
        and _identity(args.resume) == now
    if now is not None and (written is not None or resumed or (not writer and now != args.save_found)):
        epochs = _epochs_in(save)
        if epochs is not None:
            return f"; {save} holds the run after epoch {epochs} (go on with --resume {save})"
    if writer and now != args.save_found:  # written since this run began, and not by it
        return f"; {save} was replaced by another process since this run began"
    if getattr(args, "checkpoint_every", None) is not None:
        return f"; no checkpoint was written to {save} yet"
    if writer:  # (an interrupt inside the end's save too: audit 78 found the line silent of it)
        return f"; {save} was not written" + (" (it holds what it held before this run)" if now is not None else "")
    return ""


def _written_by_this_run(args):
    """(identity, epoch) the file at --save had after this run's last write to it (a checkpoint
    of fit's, or the final save), or None when the run wrote none."""
    written = getattr(getattr(args, "model", None), "_checkpoint_written", None)
    if written is None or written[0] != os.fspath(args.save):
        return None
    return written[1], written[2]


def _epochs_in(path):
    """The epochs done of the run in the checkpoint at ``path``, or None (unreadable)."""
    import json

    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as archive:
            return int(json.loads(str(archive["run"]))["epochs_done"])
    except Exception:  # noqa: BLE001 - an account, not a check: a file it cannot read is not named
        return None


def _format_warning(message, category, filename, lineno, line=None):
    """A warning as one line, as the command's errors are: fastmlp's own by their message (it
    names what to change), another library's with its category and where it was raised."""
    if is_fastmlps(message, category):
        return f"fastmlp: warning: {message}\n"
    return f"fastmlp: warning: {category.__name__}: {message} ({filename}:{lineno})\n"


def _said_by_rank_0(error):
    """Whether ``error`` was raised alike on every rank of a distributed run (the same error before
    training, marked by ``distributed.agreeing``; a divergence, by ``_train``), so that rank 0's
    account of it is enough and this rank says nothing."""
    return bool(getattr(error, "_said_by_rank_0", False))


def _stdout_gone():
    """Whether stdout's reader has gone (``fastmlp evaluate m.npz | head -1``: the pipe's write
    end reports an error when polled); if so, stdout now writes to the null device, so that
    Python's own flush at exit stays quiet too."""
    try:
        fd = sys.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        gone = any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no file descriptor, or no poll (Windows)
        return False
    if gone:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    return gone


def _main(argv):
    parser = build_parser()
    args = None
    try:
        args = _parse_with_the_ranks(parser, argv) if _is_distributed_train(argv) else parser.parse_args(argv)
        if args.version:
            from . import __version__

            print(f"fastmlp {__version__}")
            return 0
        if args.command is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        if args.command == "compare":
            return _compare(args, _given_options(argv, "compare"))
        if args.command == "evaluate":
            return _evaluate(args)
        if args.command == "predict":
            return _predict(args)
        if args.command == "warmup":
            return _warmup(args)
        if args.command == "sweep":
            from ._sweep_cli import run as run_sweep

            return run_sweep(args, _given_options(argv, "sweep"))
        if args.command == "bench":
            from .bench import run as run_bench

            return run_bench(args)
        args.given = _given_options(argv)
        return _train(args)
    except UsageError as error:
        if not _said_by_rank_0(error):  # (the ranks of train --distributed, each with the same error)
            print(f"fastmlp: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as interrupt:
        from ._prewarm import stop_at_exit

        stop_at_exit()  # a cold run's second process ends with this one, as after a signal's end
        cause = "SIGTERM" if _signalled else "Ctrl-C"
        # the trainer's account ("the model holds the weights of ...") is about a model the user
        # has in Python, not here: train says what it saved instead (sweep says its own account;
        # compare, bench and warmup keep nothing)
        command = getattr(args, "command", None)
        detail = str(interrupt) if command in ("sweep", None) else ""
        if command == "train":
            # (where training stopped, without "the model holds ..."; a message's first clause for
            # a TrainingInterrupted made elsewhere)
            where = getattr(interrupt, "where", None) or str(interrupt).split(";")[0]
            detail = (where or f"stopped by {cause}") + _what_train_kept(args)
        said = detail or f"stopped by {cause}"
        # " (SIGTERM)" where the account does not say so already ("stopped by SIGTERM (SIGTERM)"
        # after a warmup's; audit 61)
        also = " (SIGTERM)" if _signalled and not isinstance(interrupt, Terminated) and "SIGTERM" not in said else ""
        print(f"fastmlp: interrupted: {said}{also}", file=sys.stderr)
        return _stop_other_ranks(EXIT_TERMINATED if _signalled else EXIT_INTERRUPTED)
    except BrokenPipeError:  # stdout's reader gone, quietly (main)
        raise
    except (ValueError, TypeError, OSError, ArithmeticError, RuntimeError, ImportError, MemoryError) as error:
        message = " ".join(str(error).split()) or type(error).__name__
        if isinstance(error, MemoryError):  # (a traceback: data or a model too large for this machine)
            message = "not enough memory" + (f": {message}" if message != "MemoryError" else "")
        if getattr(args, "command", None) in ("train", "compare"):  # a fit's error once the data is in
            message = options.in_option_names(message, TRAINING_OPTIONS + MODEL_OPTIONS)
        replaced = type(error).__name__ == "CheckpointReplacedError"  # (its message says what the file is)
        if getattr(args, "command", None) == "train" and getattr(args, "training", False) and not replaced \
                and _what_train_kept(args):
            # (a checkpoint that could not be written stops the run: say what the file holds)
            message += "; training stopped" + _what_train_kept(args)
        if not _said_by_rank_0(error):
            print(f"fastmlp: error: {message}", file=sys.stderr)
        # an error that a SIGTERM caused (where its exception could not come through) is still
        # the SIGTERM's end for a batch system
        return _stop_other_ranks(EXIT_TERMINATED if _signalled else EXIT_USAGE if getattr(error, "_usage", False)
                                 else EXIT_ERROR)
