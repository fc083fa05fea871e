"""``fastmlp sweep``: the command line of ``fastmlp.sweep``.

Every ``train`` option of the data, network, optimizer, schedule and validation is a fixed value
of all trials; ``--grid NAME=V1,V2`` sweeps one parameter (``NAME`` is the ``MLP``/``fit``
keyword, so ``bias`` and ``shuffle`` rather than ``--no-bias``/``--no-shuffle``), each value
checked at parse time by the parser of that parameter's own option.
"""

from __future__ import annotations

import argparse
import os
import sys

from . import _cli_options as options
from . import sweeps
from ._cli_options import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_TERMINATED, UsageError
from .backends import BACKENDS
from .cli import (
    _add_model_options,
    _add_optimizer_options,
    _add_schedule_options,
    _add_stopping_options,
    _check_combination,
)

# The options whose dest is not the API's name: --no-bias is bias=False, --no-shuffle shuffle=False.
INVERTED = {"bias": "no_bias", "shuffle": "no_shuffle"}
BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def _boolean(text):
    if text.strip().lower() not in BOOLEANS:
        raise argparse.ArgumentTypeError(f"must be true or false; got {text!r}")
    return BOOLEANS[text.strip().lower()]


def grid_item(actions):
    """A parser of ``NAME=V1,V2,...`` (or ``NAME=loguniform:LOW:HIGH`` for a number) whose
    values go through the parser of ``NAME``'s own option, found in ``actions`` (dest ->
    argparse action). Returns ``(name, values)`` with ``values`` a tuple or a distribution
    string."""

    def parse(text):
        name, equals, values = text.partition("=")
        name = name.strip().replace("-", "_")
        sweepable = [key for key in sweeps.PARAMS if INVERTED.get(key, key) in actions]
        if not equals or not name:
            raise argparse.ArgumentTypeError(f"must be NAME=VALUE,VALUE,... like lr=0.05,0.1; got {text!r}")
        if name not in sweepable:
            # (validation_fraction is let through, to be refused by name: fastmlp.sweep)
            offered = ", ".join(key for key in sweepable if key in sweeps.SWEPT)
            raise argparse.ArgumentTypeError(f"unknown parameter {name!r} in {text!r}; sweep one of {offered}")
        action = actions[INVERTED.get(name, name)]
        parse_value = _boolean if action.nargs == 0 else action.type
        if ":" in values and values.split(":")[0].strip() in sweeps.DISTRIBUTIONS:  # (init=uniform is a value)
            if getattr(parse_value, "__name__", "") != "number":
                raise argparse.ArgumentTypeError(f"{name} takes a list of values, not a distribution; got {text!r}")
            try:
                _, low, high = sweeps.parse_distribution(values.strip())
            except ValueError as error:
                raise argparse.ArgumentTypeError(f"{name}: {error}") from None
            for bound in (low, high):
                try:
                    parse_value(repr(bound))
                except argparse.ArgumentTypeError as error:
                    raise argparse.ArgumentTypeError(f"{name} bound {bound:g} in {text!r} {error}") from None
            return name, values.strip()
        items = options.split_items(values, example=f"{name}=" + ("784-64-10,784-128-10" if name == "layers" else "0.05,0.1"))
        parsed = []
        for item in items:
            try:
                value = parse_value(item)  # for a flag (--no-bias), the API's value (bias=false)
            except argparse.ArgumentTypeError as error:
                raise argparse.ArgumentTypeError(f"{name} value {item!r} {error}") from None
            parsed.append(value)
        return name, tuple(dict.fromkeys(parsed))

    parse.__name__ = "grid"
    return parse


def scheduler_address(text):
    """``tcp://HOST:PORT`` (or tls://, ucx://, ws://, wss://), or ``HOST:PORT`` (``sweeps.scheduler_address``)."""
    try:
        return sweeps.scheduler_address(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a scheduler address like tcp://HOST:8786; got {text!r}") from None


def add_parser(commands):
    sweep = commands.add_parser(
        "sweep",
        help="train one model per combination of hyperparameters, in parallel, and rank them",
        description="Train one model per combination of the --grid values (or --trials random ones), each as a task "
        "on a Dask cluster (a LocalCluster of single-threaded workers, one per core, or --scheduler ADDRESS) or on "
        "local processes, and print them ranked by validation accuracy (on --validation-fraction of the training "
        "data; the test accuracy is shown beside it). Every other option is a fixed value of all trials; each trial "
        "runs on one thread unless --threads says otherwise.",
    )
    _add_model_options(sweep)
    sweep.set_defaults(threads=1)
    for action in sweep._actions:  # train's help says its own default
        if action.dest == "threads":
            action.help = "threads of each trial: 1 (default; the workers already use every core), N, or auto"
    sweep.add_argument("--backend", type=options.choice(BACKENDS), default="numba", metavar="|".join(BACKENDS), help="numba (compiled, default) or numpy (reference)")
    _add_optimizer_options(sweep)
    _add_schedule_options(sweep)
    _add_stopping_options(sweep, validation_fraction=sweeps.SWEEP_DEFAULTS["validation_fraction"])
    actions = {action.dest: action for action in sweep._actions if action.option_strings}
    group = sweep.add_argument_group("the sweep")
    add = group.add_argument
    add("--grid", action="append", type=grid_item(actions), metavar="NAME=VALUES",
        help="values of one parameter (lr=0.05,0.1; layers=784-64-10,784-128-10; with --trials also "
             "lr=loguniform:1e-3:1e-1); repeatable, the trials are their combinations")
    add("--trials", type=options.integer(1), default=None, metavar="N",
        help="random search: N combinations drawn with --seed instead of the whole grid")
    add("--executor", type=options.choice(sweeps.EXECUTORS), default=None, metavar="|".join(sweeps.EXECUTORS),
        help="dask (default when fastmlp[dask] is installed) or processes")
    add("--scheduler", type=scheduler_address, default=None, metavar="ADDRESS",
        help="run on the Dask cluster whose scheduler is at ADDRESS (tcp://HOST:8786) instead of a local one")
    add("--workers", type=options.integer(1), default=None, metavar="N", help="local workers (default: one per core this process may use)")
    output = group.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print one JSON object with every trial on stdout, nothing else")
    output.add_argument("--csv", type=options.new_file((".csv",)), metavar="FILE", help="also write the ranking to FILE (.csv)")


def _base_params(args, given, swept):
    """The fixed parameters: every option given, and the defaults of those not swept."""
    from .cli import MODEL_OPTIONS, TRAINING_OPTIONS

    params = {}
    for dest in ("epochs", "backend", "threads") + MODEL_OPTIONS + TRAINING_OPTIONS:
        name = {value: key for key, value in INVERTED.items()}.get(dest, dest)
        if name in swept:
            if dest in given:
                raise UsageError(f"{name} is both fixed ({'--' + dest.replace('_', '-')}) and swept (--grid {name}=...); give it once")
            continue
        value = getattr(args, dest)
        params[name] = not value if name in INVERTED else value
    return params


# make_trials' words for what the command line calls an option (its grid keys stay the API's)
_API_NAMES = (("fix it in base_params", "give it once, as --validation-fraction"),
              ("leave n_trials out", "leave --trials out"), ("n_trials", "--trials"),
              ("fixed (base_params)", "fixed (an option)"))


def _check_csv_is_no_data_file(args, source):
    """A ``--csv`` that is one of the files the trials read (``mnist_train.csv`` of a ``--data``
    directory in the CSV layout) is refused before anything runs, as ``predict`` refuses an OUT
    that is its INPUT: the ranking replaced the training set, with status 0 (audit 80)."""
    from .data import CSV_FILES, IDX_FILES

    folder = source.directory
    if folder is None and source.dataset == "mnist":
        folder = os.environ.get("FASTMLP_DATA")
    if not args.csv or folder is None or not os.path.exists(args.csv):
        return
    for name in (*CSV_FILES, *IDX_FILES, *(name + ".gz" for name in IDX_FILES)):
        path = os.path.join(folder, name)
        if os.path.exists(path) and os.path.samefile(path, args.csv):
            raise UsageError(f"--csv {args.csv} is {path}, a data file the trials read; writing the ranking there "
                             f"would replace it: give another file name")


def run(args, given):
    if not args.grid:
        raise UsageError("fastmlp sweep needs at least one --grid NAME=VALUES, like --grid lr=0.05,0.1")
    grid, distributions = {}, {}
    for name, values in args.grid:
        if name in grid or name in distributions:
            raise UsageError(f"--grid {name} is given twice; list all its values in one --grid {name}=...")
        (distributions if isinstance(values, str) else grid)[name] = list(values) if not isinstance(values, str) else values
    if distributions and args.trials is None:
        raise UsageError(f"--grid {next(iter(distributions))}={next(iter(distributions.values()))} is a distribution: "
                         f"random search needs --trials N")
    if args.scheduler is not None and args.executor == "processes":
        raise UsageError("--scheduler is a Dask scheduler's address; it does not go with --executor processes")
    if args.scheduler is not None and args.workers is not None:
        raise UsageError("--workers sizes a local cluster; the cluster at --scheduler has its own workers")
    base = _base_params(args, given, set(grid) | set(distributions))
    names = {value: key for key, value in INVERTED.items()}
    set_here = {names.get(dest, dest) for dest in given} | set(grid) | set(distributions)
    try:
        trials = _check_combination(lambda: sweeps.make_trials(base, grid, distributions, args.trials, seed=args.seed,
                                                               given=set_here), option_names=False)
    except UsageError as error:  # (the API's names where the command line has options: audit 80)
        message = str(error)
        for api, option in _API_NAMES:
            message = message.replace(api, option)
        raise UsageError(message) from None
    source = sweeps.data_source(args.data if args.data is not None else (args.dataset or "mnist"), args.limit)
    _check_csv_is_no_data_file(args, source)

    def report(record):
        if args.json:
            return
        swept = ", ".join(f"{name}={sweeps._shown(record['params'][name], name)}" for name in (*grid, *distributions))
        if record["status"] == "ok":
            accuracy = record["val_accuracy"]
            score = f"val accuracy {accuracy:.4f}" if accuracy is not None else f"val loss {record['val_loss']:.4f}"
            outcome = f"{score}, {record['train_seconds']:.2f} s"
        else:
            outcome = record["error"]
        report.done += 1
        print(f"trial {record['trial']} ({swept}) {report.done}/{len(trials)}: {outcome}", file=sys.stderr, flush=True)

    report.done = 0
    cpus = sweeps.usable_cpus()
    if args.workers is not None and args.scheduler is None and args.workers > cpus:
        # (accepted: a user may mean it; the times in the table then are not each trial's own: audit 80)
        print(f"fastmlp: warning: --workers {args.workers} is more than the {cpus} CPUs this process may use: the "
              f"trials share them, so their train_seconds and samples/s measure each other", file=sys.stderr, flush=True)
    if not args.json:
        print(f"sweep: {len(trials)} trials on {source.describe()}, ranked by validation accuracy on a held-out "
              f"validation_fraction of the training data", file=sys.stderr, flush=True)
    result = sweeps.run_trials(trials, source, executor=args.executor, workers=args.workers, scheduler=args.scheduler,
                               swept=(*grid, *distributions), on_result=report)
    # the ranking is shown first: a --csv that cannot be written must not take it along
    if args.json:
        print(result.to_json(), flush=True)
    else:
        print(f"{len(trials)} trials on {result.executor}, best first (validation: {result.validation}):")
        print(result.format_table(), flush=True)
    if args.csv:
        result.write_csv(args.csv)
        if not args.json:
            print(f"ranking written to {args.csv}")
    finished = sum(record["status"] == "ok" for record in result.trials)
    if result.interrupted:
        from .cli import _signalled

        print(f"fastmlp: interrupted{' by SIGTERM' if _signalled else ''}: {finished} of {len(trials)} trials finished, "
              f"the others were cancelled", file=sys.stderr)
        return EXIT_TERMINATED if _signalled else EXIT_INTERRUPTED
    return 0 if finished else EXIT_ERROR
