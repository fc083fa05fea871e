"""Hyperparameter sweeps (``fastmlp.sweep``): many whole trainings at once, on Dask or on local processes.

In a script (worker processes import it again, so the sweep goes under the main guard)::

    import fastmlp

    if __name__ == "__main__":
        result = fastmlp.sweep({"layers": [784, 64, 10], "epochs": 2},
                               grid={"lr": [0.05, 0.1], "batch_size": [32, 128]}, data="mnist")
        print(result.format_table())
        print(result.best["params"], result.best["val_accuracy"])

A trial is one ``MLP(**model_params).fit(X, y, **fit_params)`` from the trial's parameters (the
base parameters updated by one combination of the grid), scored on a validation split of the
training data: ``validation_fraction`` (default ``SWEEP_DEFAULTS``: 0.1, held out with the
seed, stratified), so trials are ranked without looking at the test set. The test accuracy is
reported beside it, for information. A trial gives bitwise what a direct ``fit`` with the same
parameters gives.

Trials run as tasks on a ``concurrent.futures``-style executor: a Dask ``LocalCluster`` (one
single-threaded worker process per core) or the cluster at a scheduler address when
``fastmlp[dask]`` is installed, else a ``ProcessPoolExecutor``; any ``Executor`` (or a
``distributed.Client``) may be passed instead. Tasks are the module-level ``_run_trial``, so
workers import the kernels themselves (from Numba's on-disk cache) and nothing compiled is
pickled; each worker process loads the dataset once, on its first trial, and again only when its
files change (``_DATASETS``).
"""

from __future__ import annotations

import collections.abc
import concurrent.futures
from concurrent.futures.process import BrokenProcessPool
import csv
import difflib
import io
import itertools
import logging
import math
import numbers
import os
import signal
import socket
import sys
import threading
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from ._extras import which_is
from ._cli_options import options_without_effect, strict_json
from ._validation import non_negative_int
from ._warn import warn
from .model import FIT_DEFAULTS, MLP, MODEL_PARAMS, check_fit_options

FIT_PARAMS = ("epochs",) + tuple(name for name in FIT_DEFAULTS if name != "schedule_epochs")
PARAMS = MODEL_PARAMS + FIT_PARAMS
# what a grid or distribution can sweep: validation_fraction is fixed (every trial scored on one split)
SWEPT = tuple(name for name in PARAMS if name != "validation_fraction")
# A trial runs on one thread (workers are one per core) and is scored on a validation split.
SWEEP_DEFAULTS = {"threads": 1, "validation_fraction": 0.1, "epochs": 1}
EXECUTORS = ("dask", "processes")
DISTRIBUTIONS = ("uniform", "loguniform")
SCHEDULER_SCHEMES = ("tcp", "tls", "ucx", "ws", "wss")


def scheduler_address(scheduler):
    """``scheduler`` stripped if it is a Dask scheduler address, ``tcp://HOST:PORT`` (or tls://,
    ucx://, ws://, wss://) or ``HOST:PORT``; else a TypeError or ValueError naming it (8786,
    "localhost" or "" were "the server at ... does not answer as a Dask scheduler"; audit 61)."""
    if not isinstance(scheduler, str):
        raise TypeError(f"scheduler must be an address like 'tcp://HOST:8786'; got {type(scheduler).__name__} "
                        f"{scheduler!r:.60}")
    scheme, separator, rest = scheduler.strip().rpartition("://")
    host, colon, port = rest.rpartition(":")
    if ((separator and scheme not in SCHEDULER_SCHEMES) or not host or not colon or not port.isdigit()
            or not 0 < int(port) < 65536):
        raise ValueError(f"scheduler must be an address like tcp://HOST:8786; got {scheduler!r}")
    return scheduler.strip()


# How long a Dask client waits for an unreachable scheduler before it gives up.
SCHEDULER_TIMEOUT = "10s"


@dataclass(frozen=True)
class DataSource:
    """Where workers read the data: a dataset name (``fastmlp.data.DATASETS``, from each
    worker's cache or ``FASTMLP_DATA``) or a directory every worker can read, and the first
    ``limit`` training samples. Hashable: it keys each worker's dataset cache."""

    dataset: str = "mnist"
    directory: str | None = None
    limit: int | None = None

    def describe(self):
        where = self.directory if self.directory is not None else self.dataset
        return where + (f" (first {self.limit:,} training samples)" if self.limit else "")


def data_source(data="mnist", limit=None):
    """``data`` (a dataset name or a directory) and ``limit`` as a ``DataSource``."""
    from .data import DATASETS

    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, numbers.Integral) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None; got {limit!r}")
    limit = None if limit is None else int(limit)
    if isinstance(data, DataSource):
        if limit is not None and limit != data.limit:  # it was dropped: the trials trained on all of it
            raise ValueError(f"limit={limit} with a DataSource of limit={data.limit}: give the limit in the DataSource")
        return data
    if isinstance(data, str) and data in DATASETS:
        return DataSource(dataset=data, limit=limit)
    close = difflib.get_close_matches(data.lower(), DATASETS, n=1) if isinstance(data, str) else []
    if close and not os.path.exists(data):
        # a misspelt dataset name, which would be looked for as a directory (workers on a cluster
        # may have one this process does not see: only a near miss of a name is refused)
        raise ValueError(f"data={data!r} is no dataset ({', '.join(DATASETS)}; did you mean {close[0]!r}?) "
                         f"and no directory here")
    if isinstance(data, (str, os.PathLike)) and str(data).strip():
        return DataSource(directory=os.path.abspath(data), limit=limit)  # workers need not share our cwd
    raise TypeError(
        f"data must be a dataset name ({', '.join(DATASETS)}) or a directory of MNIST-like files that the "
        f"workers read themselves; got {data!r}"
    )


# --- the trials ----------------------------------------------------------------------------


def parse_distribution(spec):
    """``"loguniform:1e-3:1e-1"`` -> ``("loguniform", 0.001, 0.1)``: uniform in [low, high), or
    uniform in log space (low > 0)."""
    parts = spec.split(":") if isinstance(spec, str) else []
    if len(parts) != 3 or parts[0] not in DISTRIBUTIONS:
        raise ValueError(f"a distribution is {' or '.join(DISTRIBUTIONS)}:LOW:HIGH, like loguniform:1e-3:1e-1; got {spec!r}")
    try:
        low, high = float(parts[1]), float(parts[2])
    except ValueError:
        raise ValueError(f"the bounds of {spec!r} must be numbers") from None
    if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
        raise ValueError(f"the bounds of {spec!r} must be finite with LOW < HIGH")
    if parts[0] == "loguniform" and low <= 0:
        raise ValueError(f"loguniform needs LOW > 0; got {spec!r}")
    return parts[0], low, high


def _draw(distribution, rng):
    kind, low, high = distribution
    if kind == "loguniform":
        return float(math.exp(rng.uniform(math.log(low), math.log(high))))
    return float(rng.uniform(low, high))


def _check_names(where, names):
    unknown = [name for name in names if name not in PARAMS]
    if unknown:
        offered = PARAMS if where == "base_params" else SWEPT
        verb = "sets" if where == "base_params" else "sweeps"
        raise ValueError(f"{where}: unknown parameter {unknown[0]!r}; a sweep {verb} {', '.join(offered)}")


def _without_effect(params, given):
    """{name: why} for the parameters in ``given`` that the trial's others leave without effect,
    as ``fastmlp train`` refuses them: the trial would train as if they were not set."""
    return options_without_effect({**FIT_DEFAULTS, **params}, given)


def _check_takes_effect(trials, given):
    """A parameter set (fixed or swept) that no trial uses is a mistake, as in ``fastmlp train``;
    one that only some trials leave without effect makes those trials repeat one another: a
    warning, for the sweep still means something."""
    unused = {}
    for params in trials:
        for name, why in _without_effect(params, given).items():
            unused.setdefault(name, []).append(why)
    for name, whys in unused.items():
        if len(whys) == len(trials):
            raise ValueError(f"{name} has no effect in any trial: {whys[0]}")
        warn(f"{name} has no effect in {len(whys)} of {len(trials)} trials ({whys[0]}): those trials "
                      f"repeat one another", UserWarning)


def _python(value):
    """NumPy scalars and arrays in a sweep's parameters as the Python numbers and lists they
    hold, so that its records print and go to JSON like the command line's."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return type(value)(_python(item) for item in value)
    return value


def _distinct(values):
    """``values`` without repeats, in order: equal values (after ``_python``; 1 and 1.0 are one,
    the first kept; True and 1 stay apart), so that a grid's product and draws hold no trial twice."""
    kept, seen, unhashable = [], set(), []
    for value in values:
        plain = _python(value)
        key = (isinstance(plain, bool), plain)
        try:
            if key in seen:
                continue
            seen.add(key)
        except TypeError:  # a list (layers): compared one by one, as few grids hold many
            if any(plain == other for other in unhashable):
                continue
            unhashable.append(plain)
        kept.append(plain)
    return kept


def make_trials(base_params=None, grid=None, distributions=None, n_trials=None, seed=None, *, given=None):
    """The trials' parameters, each checked as ``MLP`` and ``fit`` would check them, before
    anything runs.

    Without ``n_trials``: every combination of the ``grid`` values (their product, in order).
    With ``n_trials`` N: N random combinations drawn with ``seed`` (default: the base
    ``seed``, else 0) -- grid values uniformly, ``distributions`` (``"uniform:LOW:HIGH"``,
    ``"loguniform:LOW:HIGH"``) by sampling; from a grid alone, N distinct combinations.

    Returns a list of dicts, the base parameters (``SWEEP_DEFAULTS`` under them) updated by
    the combination. Raises TypeError when base_params, grid or distributions is not a dict,
    ValueError naming the unknown key, the empty grid, a parameter both
    fixed in ``base_params`` and swept, ``validation_fraction`` swept (the trials would be
    scored on different data), a parameter the others leave without effect in every trial
    (``beta1`` with SGD, ``power_t`` with another schedule; only in some: a warning), or every
    trial whose values fail the checks. ``given``: the parameters the caller set, for that
    last check (default: those of ``base_params`` and the swept ones).
    """
    for name, value, holds in (("base_params", base_params, "value"), ("grid", grid, "list of values"),
                               ("distributions", distributions, "'uniform:LOW:HIGH' or 'loguniform:LOW:HIGH'")):
        if value is not None and not isinstance(value, collections.abc.Mapping):
            raise TypeError(f"{name} must be a dict of parameter name -> {holds}, like {{'lr': ...}}; "
                            f"got {type(value).__name__} {value!r:.60}")
    base = {**SWEEP_DEFAULTS, **(base_params or {})}
    grid = dict(grid or {})
    distributions = dict(distributions or {})
    _check_names("base_params", base)
    # the draws' seed, named here (NumPy's SeedSequence said "expected non-negative integer" of a
    # seed -1; True drew with seed 1; audit 60); the base seed is the draws' default too
    if seed is not None:
        seed = non_negative_int("seed", seed)
    if "seed" in base:
        non_negative_int("base_params['seed']", base["seed"])
    _check_names("grid", grid)
    _check_names("distributions", distributions)
    if not grid and not distributions:
        raise ValueError("the grid is empty: give at least one parameter to sweep, like grid={'lr': [0.05, 0.1]}")
    for name, values in grid.items():
        if isinstance(values, (str, bytes)) or not hasattr(values, "__len__") or len(values) == 0:
            raise ValueError(f"grid[{name!r}] must be a non-empty list of values; got {values!r}")
    grid = {name: _distinct(values) for name, values in grid.items()}  # a repeated value is one trial, as on the CLI
    both = set(grid) & set(distributions)
    if both:
        raise ValueError(f"{sorted(both)[0]!r} is both in the grid and in distributions; give it once")
    fixed = set(base_params or {}) & (set(grid) | set(distributions))
    if fixed:
        name = sorted(fixed)[0]
        raise ValueError(f"{name!r} is both fixed (base_params) and swept ({'grid' if name in grid else 'distributions'}); "
                         f"give it once")
    if "validation_fraction" in grid or "validation_fraction" in distributions:
        raise ValueError("validation_fraction cannot be swept: trials are ranked by their score on the validation split, "
                         "so every trial must be scored on the same one; fix it in base_params")
    distributions = {name: parse_distribution(spec) for name, spec in distributions.items()}
    if n_trials is not None and (isinstance(n_trials, bool) or not isinstance(n_trials, numbers.Integral) or n_trials < 1):
        raise ValueError(f"n_trials must be a positive integer or None (the whole grid); got {n_trials!r}")

    names = list(grid)
    sizes = [len(grid[name]) for name in names]
    combinations = []
    if n_trials is None:
        if distributions:
            raise ValueError("distributions are sampled: give n_trials, the number of combinations to draw")
        combinations = [dict(zip(names, values)) for values in itertools.product(*(grid[name] for name in names))]
    else:
        rng = np.random.default_rng(base.get("seed", 0) if seed is None else seed)
        total = math.prod(sizes)
        if not distributions:
            if n_trials > total:
                raise ValueError(f"n_trials {n_trials} is more than the grid's {total} combinations; leave n_trials out to run them all")
            if total < 2**62:
                indices = rng.choice(total, size=n_trials, replace=False)
            else:  # past what rng.choice takes (an OverflowError): distinct draws of each position
                drawn = {}
                while len(drawn) < n_trials:
                    index = 0
                    for size in sizes:
                        index = index * size + int(rng.integers(size))
                    drawn.setdefault(index, None)
                indices = list(drawn)
            for index in indices:
                combination = {}
                for name, size in zip(reversed(names), reversed(sizes)):  # mixed radix, last name fastest
                    index, position = divmod(int(index), size)
                    combination[name] = grid[name][position]
                combinations.append({name: combination[name] for name in names})
        else:
            for _ in range(n_trials):
                combination = {name: grid[name][int(rng.integers(len(grid[name])))] for name in names}
                combination.update({name: _draw(spec, rng) for name, spec in distributions.items()})
                combinations.append(combination)

    trials = [{name: _python(value) for name, value in {**base, **combination}.items()} for combination in combinations]
    problems = []
    for number, params in enumerate(trials):
        try:
            check_trial(params)
        except (ValueError, TypeError) as error:
            swept = ", ".join(f"{name}={combinations[number][name]!r}" for name in combinations[number])
            problems.append(f"trial {number} ({swept}): {error}")
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise ValueError(f"{len(problems)} of {len(trials)} trials would fail before training: " + "; ".join(problems[:5]) + more)
    _check_takes_effect(trials, set(base_params or {}) | set(grid) | set(distributions) if given is None else set(given))
    return trials


def split_params(params):
    """A trial's parameters as (MLP keyword arguments, fit keyword arguments)."""
    model = {name: params[name] for name in MODEL_PARAMS if name in params}
    fit = {name: params[name] for name in FIT_PARAMS if name in params}
    return model, fit


def check_trial(params):
    """The checks ``MLP`` and ``fit`` make before training, without data."""
    model_params, fit_params = split_params(params)
    if params.get("validation_fraction") is None:
        raise ValueError("validation_fraction must be a fraction in (0, 1): a sweep ranks trials by their validation score")
    epochs = fit_params.pop("epochs", 1)
    if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer; got {epochs!r}")
    MLP(**model_params).initialize()
    check_fit_options({**FIT_DEFAULTS, **fit_params})


# --- in the workers ------------------------------------------------------------------------

# The datasets this worker process has loaded, by DataSource and the state of its files: a
# worker reads its data on its first trial and keeps it for the next ones, until the files change
# (a long-lived cluster serves sweep after sweep).
_DATASETS = {}
_DATASETS_LOCK = threading.Lock()  # trials in threads of one process (a ThreadPoolExecutor) load once too


def _files_stamp(source):
    """(name, size, mtime_ns) of each file in the directory ``source`` reads: a change in any
    of them (rewritten, downloaded, removed) means loading again."""
    from .data import _dataset as dataset_named, _resolve_data_dir

    try:
        directory, _ = _resolve_data_dir(dataset_named(source.dataset), source.directory)
        entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
        return tuple((entry.name, entry.stat().st_size, entry.stat().st_mtime_ns) for entry in entries if entry.is_file())
    except (OSError, ValueError):
        return None  # loading says what is wrong


def _dataset(source):
    """``(X_train, y_train, X_test, y_test)`` of ``source`` and whether it was already loaded."""
    with _DATASETS_LOCK:
        return _dataset_unlocked(source)


def _dataset_unlocked(source):
    key = (source, _files_stamp(source))
    if key in _DATASETS:
        return _DATASETS[key], True
    from .data import load_dataset

    X_train, y_train, X_test, y_test = load_dataset(source.dataset, source.directory)
    if source.limit is not None:
        if source.limit > len(y_train):
            raise ValueError(f"limit {source.limit} is more than the {len(y_train):,} training samples")
        X_train, y_train = X_train[: source.limit], y_train[: source.limit]
    for stale in [cached for cached in _DATASETS if cached[0] == source]:
        del _DATASETS[stale]
    key = (source, _files_stamp(source))  # as loaded (a first load may have downloaded them)
    _DATASETS[key] = (X_train, y_train, X_test, y_test)
    return _DATASETS[key], False


def _single_threaded_worker(parent=None):
    """Initializer of the process pools this module starts: one thread (set before numba is
    imported), and, on Linux, an end with the sweep's process ``parent``: a sweep killed
    (SIGKILL, the OOM killer, a batch system after its grace period) left its workers waiting
    for work for ever, holding their copy of the data and the sweep's stdout (``| tee`` never
    ended)."""
    os.environ["NUMBA_NUM_THREADS"] = "1"
    if parent is not None:
        from ._prewarm import _exit_with_parent, _watch_parent

        if sys.platform.startswith("linux"):
            _exit_with_parent(parent)
        else:  # (no parent-death signal: a thread watches; audit 41)
            _watch_parent(parent)


def _batch_over_samples(params, n):
    """Why a trial's ``batch_size`` is refused: more than the samples its fit trains on (``n``
    less the validation split), which fit would train as one full batch, quietly, recorded under
    the size asked for (``fastmlp train`` refuses it; audit 80); else None."""
    from ._validation import n_held_out

    batch, fraction = params.get("batch_size"), params.get("validation_fraction")
    n_fit = n - n_held_out(n, fraction) if fraction else n
    if not isinstance(batch, numbers.Integral) or isinstance(batch, bool) or not 0 < n_fit < batch:
        return None
    held = f" left after validation_fraction={fraction!r} holds out {n - n_fit:,} of {n:,}" if fraction else ""
    return (f"batch_size {batch} is more than the {n_fit:,} training samples{held}; batch_size None (full) "
            f"trains on all of them as one batch")


def _check_batch_sizes(trials, n):
    """``_batch_over_samples`` of every trial, as one ValueError naming them."""
    refused = [(number, reason) for number, params in enumerate(trials)
               if (reason := _batch_over_samples(params, n)) is not None]
    if refused:
        numbers_ = ", ".join(str(number) for number, _ in refused[:5]) + (", ..." if len(refused) > 5 else "")
        raise ValueError(f"trial{'s' if len(refused) > 1 else ''} {numbers_}: {refused[0][1]}")


def _run_trial(number, params, source):
    """One whole training: the record of trial ``number``. A failure (divergence, bad data,
    anything raised) is recorded in it, not raised, so the sweep goes on."""
    record = {"trial": number, "params": params, "status": "ok", "error": None,
              "worker": f"{socket.gethostname()}:{os.getpid()}"}
    try:
        (X_train, y_train, X_test, y_test), record["data_cached"] = _dataset(source)
        refused = _batch_over_samples(params, len(y_train))  # (a cluster's workers: the data is theirs)
        if refused is not None:
            raise ValueError(refused)
        model_params, fit_params = split_params(params)
        model = MLP(**model_params)
        # (options the trial's others leave without effect, which the sweep said once, trained
        # as their defaults: left out, so that fit does not warn of them in every trial)
        inert = _without_effect(fit_params, fit_params)
        history = model.fit(X_train, y_train, progress=False,
                            **{name: value for name, value in fit_params.items() if name not in inert})
        test = model.evaluate(X_test, y_test)
    except Exception as error:  # recorded: one bad trial must not end the sweep
        # with where it was raised: a fault in fastmlp itself (an IndexError deep in a fit)
        # must not reach its user as one line (audit 42 A5)
        record.update(status="failed", error=_describe_error(error), traceback=_traceback_of(error))
        return record
    train_seconds = float(sum(history.seconds))
    # with early stopping the model holds its best epoch's weights (tested above): score those
    kept = history.best_epoch - 1 if fit_params.get("early_stopping") is not None and history.best_epoch else -1
    record.update(
        val_accuracy=history.val_accuracy[kept] if history.val_accuracy else None,
        val_loss=history.val_loss[kept],
        test_accuracy=test["accuracy"],
        test_loss=test["loss"],
        train_loss=history.loss[kept],
        epochs_trained=model.epochs_trained_,
        stop_reason=history.stop_reason,
        train_seconds=train_seconds,
        samples_per_second=sum(history.samples) / train_seconds if train_seconds > 0 else None,
        compile_seconds=float(model.compile_seconds_),
    )
    return record


def _describe_error(error):
    return f"{type(error).__name__}: {' '.join(str(error).split())}".rstrip(": ")


def _traceback_of(error):
    """``error``'s traceback as Python prints it (a failed trial's ``traceback``)."""
    return "".join(traceback.format_exception(type(error), error, error.__traceback__))


# --- running them --------------------------------------------------------------------------


def _require_distributed():
    try:
        import distributed
    except ImportError as error:
        raise ImportError(f"the Dask executor needs dask.distributed, {which_is(error, 'distributed', 'dask')}") from error
    return distributed


def _dask_installed():
    try:
        import distributed  # noqa: F401
    except ImportError:
        return False
    return True


@contextmanager
def _dask_executor(workers, scheduler):
    """A ``concurrent.futures`` executor on a new LocalCluster (``workers`` single-threaded
    worker processes) or on the cluster at ``scheduler``; the cluster and client it made go
    away with it, which also stops any task still running."""
    distributed = _require_distributed()
    if scheduler is not None:
        client = _connect(distributed, scheduler)
        with client:
            yield client.get_executor(pure=False), f"dask scheduler {scheduler} ({len(client.nthreads())} workers)"
        return
    count = workers or usable_cpus()
    # (the scheduler's HTTP server on a free local port: with None it still took 8787, and a second
    # sweep at once printed Dask's three-line "Port 8787 is already in use" warning; audit 34)
    cluster = distributed.LocalCluster(
        n_workers=count, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0",
        env={"NUMBA_NUM_THREADS": "1"},
    )
    nanny, quiet = logging.getLogger("distributed.nanny"), _BelowErrors()
    try:
        with cluster, distributed.Client(cluster) as client:
            # each worker, and one the nanny starts again after a trial killed it (audit 44)
            plugin = _quiet_worker_plugin(distributed)()
            register = getattr(client, "register_plugin", None) or client.register_worker_plugin
            register(plugin, name="fastmlp-quiet-worker")
            try:
                yield client.get_executor(pure=False), f"dask LocalCluster ({count} single-threaded workers)"
            finally:
                # the close stops the workers; one in compiled code (a trial cancelled by Ctrl-C)
                # is killed after 4 s, with a warning that says nothing to the sweep's user (a
                # filter of this close's own: another sweep's in this process keeps its level)
                nanny.addFilter(quiet)
    finally:
        nanny.removeFilter(quiet)


class _BelowErrors(logging.Filter):
    def filter(self, record):
        return record.levelno >= logging.ERROR


def _quiet_worker_plugin(distributed):
    """The WorkerPlugin class (made here: ``distributed`` is imported only when a sweep uses Dask)
    whose setup, on each worker of the sweep's own cluster, is ``_ignore_sigint``."""

    class QuietWorker(distributed.WorkerPlugin):
        def setup(self, worker):
            _ignore_sigint()

    return QuietWorker


def _ignore_sigint():
    """Run by each worker process of the sweep's own LocalCluster (the plugin's setup, also in a
    worker started again), in its main thread (its event loop's): a terminal's Ctrl-C reaches the whole foreground process group, and it stopped the
    workers with two screenfuls of Dask's tracebacks before the sweep's own line (audit 39). The
    sweep stops them itself when it closes its cluster; the warning each worker logged for the
    trial it was running when the sweep cancelled it ("Async instruction for <Task cancelled ...")
    is not said either: the sweep's table says it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.getLogger("distributed.worker.state_machine").setLevel(logging.ERROR)


def _connect(distributed, scheduler):
    """A Client of the scheduler at ``scheduler``, or a ConnectionError within about
    SCHEDULER_TIMEOUT. The address is first probed with a Dask handshake of its own, under a
    deadline: Client's timeout covers a closed port, not a server that accepts and never answers
    (it waited for ever), and a server of another protocol (a web server, the dashboard's port)
    ended in Dask's MemoryError for a frame of exabytes. The probe runs its own event loop in a
    thread that ends with it (a Jupyter kernel's running loop is not touched)."""
    import asyncio

    from dask.utils import parse_timedelta
    from distributed.comm import connect

    seconds = parse_timedelta(SCHEDULER_TIMEOUT)
    outcome = {}

    async def probe():
        comm = await asyncio.wait_for(connect(scheduler, timeout=seconds), seconds + 1)
        await comm.close()

    def run():
        try:
            asyncio.run(probe())
        except Exception as error:  # noqa: BLE001 - any failure is the address's, said below
            outcome["error"] = error

    thread = threading.Thread(target=run, name="fastmlp-dask-probe", daemon=True)
    thread.start()
    thread.join(seconds + 5)
    error = outcome.get("error")
    if isinstance(error, (OSError, TimeoutError)) and not isinstance(error, asyncio.TimeoutError):
        raise _unreachable(scheduler, error) from None
    if thread.is_alive() or error is not None:
        said = "no answer within " + SCHEDULER_TIMEOUT if thread.is_alive() or isinstance(
            error, asyncio.TimeoutError) else _describe_error(error)
        raise ConnectionError(
            f"the server at {scheduler} does not answer as a Dask scheduler ({said}); check the address (the "
            f"scheduler's port, 8786 by default, not the dashboard's 8787)"
        ) from None
    try:
        return distributed.Client(scheduler, timeout=SCHEDULER_TIMEOUT)
    except (OSError, TimeoutError) as error:
        raise _unreachable(scheduler, error) from None


def _unreachable(scheduler, error):
    return ConnectionError(f"cannot reach the Dask scheduler at {scheduler} within {SCHEDULER_TIMEOUT} "
                           f"({_describe_error(error)}); check the address and that the scheduler runs")


def usable_cpus():
    """The CPUs this process may run on (its affinity: taskset, a batch job's share of a node),
    which the default number of workers follows."""
    from .kernels._threads import available_cores

    return max(1, available_cores())


@contextmanager
def _process_executor(workers):
    """A ProcessPoolExecutor of ``workers`` fresh (spawned, single-threaded) processes, whose
    workers are stopped when it closes (on Ctrl-C, the trials still running)."""
    import multiprocessing

    count = workers or usable_cpus()
    pool = concurrent.futures.ProcessPoolExecutor(
        count, mp_context=multiprocessing.get_context("spawn"), initializer=_single_threaded_worker,
        initargs=(os.getpid(),),
    )
    try:
        yield pool, f"{count} worker process{'es' if count != 1 else ''}"
    finally:
        # shutdown does not stop tasks already running, and after Ctrl-C nobody wants them: its
        # workers are taken first, as shutdown sets pool._processes to None (the loop after it
        # stopped nothing: the trials trained on to their end, a second Ctrl-C hung; audit 80)
        running = list((pool._processes or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in running:
            process.terminate()


def _unguarded_main_call():
    """``"FILE:LINE"`` where the main script's top-level code calls the running sweep outside
    ``if __name__ == "__main__":``, else None. Spawned workers (ours and a LocalCluster's) run
    the main script again as ``__mp_main__``, as multiprocessing does unless the main module is
    a package's ``__main__`` (``python -m fastmlp``), so such a call would sweep again in each."""
    import ast
    import sys
    import tokenize

    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    spec_name = getattr(getattr(main, "__spec__", None), "name", None)
    if not path or (spec_name is not None and (spec_name == "__main__" or spec_name.endswith(".__main__"))):
        return None  # interactive, python -c, Jupyter, a package's __main__: nothing is run again
    frame = sys._getframe(1)
    while frame is not None and not (frame.f_globals is vars(main) and frame.f_code.co_name == "<module>"):
        frame = frame.f_back
    if frame is None:
        return None
    try:
        with tokenize.open(path) as file:
            tree = ast.parse(file.read())
    except (OSError, SyntaxError, ValueError):
        return None
    line = frame.f_lineno

    def is_main_test(test):
        if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
            return False
        sides = [test.left, test.comparators[0]]
        return (any(isinstance(side, ast.Name) and side.id == "__name__" for side in sides)
                and any(isinstance(side, ast.Constant) and side.value == "__main__" for side in sides))

    for node in ast.walk(tree):
        if isinstance(node, ast.If) and is_main_test(node.test) and node.body[0].lineno <= line <= node.body[-1].end_lineno:
            return None
    return f"{path}:{line}"


@contextmanager
def _executor(executor, workers, scheduler, source=None, trials=()):
    if executor is None:
        executor = "dask" if _dask_installed() else "processes"
    if scheduler is not None and executor != "dask":
        shown = repr(executor) if isinstance(executor, str) else f"a {type(executor).__name__}"
        raise ValueError(f"scheduler is a Dask scheduler address; it needs executor='dask', not {shown}")
    if workers is not None and not isinstance(executor, str):
        raise ValueError(f"workers sizes a pool the sweep starts (executor 'dask' or 'processes'); the "
                         f"{type(executor).__name__} passed has its own workers")
    if isinstance(executor, str):
        if executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {', '.join(map(repr, EXECUTORS))} or an Executor; got {executor!r}")
        if workers is not None:
            if scheduler is not None:
                raise ValueError("workers sizes a local cluster; the cluster at scheduler has its own workers")
            if isinstance(workers, bool) or not isinstance(workers, numbers.Integral) or workers < 1:
                raise ValueError(f"workers must be a positive integer; got {workers!r}")
        if executor == "dask":
            _require_distributed()
        if scheduler is None:
            unguarded = _unguarded_main_call()
            if unguarded is not None:
                raise RuntimeError(
                    f"fastmlp.sweep is called by the top-level code of {unguarded}, outside `if __name__ == "
                    f"\"__main__\":`: the sweep's worker processes import that script again, and each would start "
                    f"the sweep anew. Put the call under that `if` (README, \"Sweeps\")"
                )
        if scheduler is None and source is not None:
            # local workers read the files this process sees: a missing directory or too large a
            # limit is one error here, before any worker starts (not the same failure per trial);
            # so is a trial's batch over the samples, as fastmlp train refuses it (a cluster's
            # trials record it as failed: _run_trial)
            (_, y_train, _, _), _ = _dataset(source)
            _check_batch_sizes(trials, len(y_train))
        make = _dask_executor(workers, scheduler) if executor == "dask" else _process_executor(workers)
        with make as (pool, description):
            yield pool, description
    elif isinstance(executor, concurrent.futures.Executor):
        yield executor, type(executor).__name__
    elif hasattr(executor, "get_executor"):  # a distributed.Client
        yield executor.get_executor(pure=False), f"dask client {getattr(executor, 'scheduler', '')}"
    else:
        raise TypeError(f"executor must be 'dask', 'processes', a concurrent.futures.Executor or a distributed.Client; got {executor!r}")


def sweep(base_params=None, grid=None, distributions=None, n_trials=None, executor=None, data="mnist", *,
          limit=None, workers=None, scheduler=None, seed=None, on_result=None):
    """Train one model per combination of hyperparameters, in parallel, and rank them.

    Parameters
    ----------
    base_params : dict
        Fixed parameters of every trial: ``MLP``'s (``layers``, ``activation``, ...,
        ``threads``: default 1) and ``fit``'s (``epochs``, ``batch_size``, ``lr``, ...,
        ``validation_fraction``: default 0.1, the split trials are scored on).
    grid : dict of name -> list
        The values to sweep; without ``n_trials``, every combination runs.
    distributions : dict of name -> "uniform:LOW:HIGH" or "loguniform:LOW:HIGH"
        Sampled in random search (needs ``n_trials``).
    n_trials : int, optional
        Random search: this many combinations, drawn with ``seed`` (default the base seed).
    executor : "dask", "processes", a concurrent.futures.Executor or a distributed.Client
        Default "dask" when ``fastmlp[dask]`` is installed (a LocalCluster of ``workers``
        single-threaded worker processes, default one per core, or the cluster at
        ``scheduler``), else "processes" (a ProcessPoolExecutor of ``workers``).
    data : str or os.PathLike
        A dataset name (``fastmlp.data.DATASETS``) or a directory with MNIST-like files. The
        workers read it themselves, once each; on a cluster it must be readable there.
    limit : int, optional
        Train on the first ``limit`` training samples only.
    workers : int, optional
        The local cluster's or process pool's worker processes (default one per core this
        process may use); not with ``scheduler`` or an executor passed in.
    scheduler : str, optional
        The address of a running Dask scheduler (``tcp://HOST:8786``) to run the trials on.
    seed : int, optional
        Seeds the draws of random search (default ``base_params``' seed, else 0).
    on_result : callable, optional
        Called with each trial's record as it finishes (in the calling process); trials found
        finished while a Ctrl-C is handled are in the result but not passed to it. If it raises
        (other than KeyboardInterrupt), a warning says so, it is not called again, and the
        sweep goes on: a bug in a logging callback costs no trial.

    Returns
    -------
    SweepResult
        The trials' records, best first. Ctrl-C (KeyboardInterrupt, also from ``on_result``)
        cancels the trials not started and returns those that finished, with ``interrupted``
        set; the trials still running are stopped with the pool or cluster the sweep started
        (on an executor passed in, they run to their end unseen).

    Raises
    ------
    ValueError, TypeError
        A parameter, grid or distribution that no trial could train with, named, before any
        worker starts.
    ConnectionError
        ``scheduler`` cannot be reached.
    RuntimeError
        Called by a script's top-level code outside ``if __name__ == "__main__":`` where
        worker processes import that script again (start methods "spawn" and "forkserver").
    ImportError
        ``executor="dask"`` without ``fastmlp[dask]``.
    """
    if scheduler is not None:
        scheduler = scheduler_address(scheduler)
    if on_result is not None and not callable(on_result):  # (it ran the first trial, then warned; audit 60)
        raise TypeError(f"on_result must be a function of a trial's record, or None; got {on_result!r:.80}")
    source = data_source(data, limit)
    trials = make_trials(base_params, grid, distributions, n_trials, seed)
    swept = tuple(dict.fromkeys([*(grid or {}), *(distributions or {})]))
    return run_trials(trials, source, executor=executor, workers=workers, scheduler=scheduler, swept=swept,
                      on_result=on_result)


# How often a trial whose worker process was lost (ProcessPoolExecutor's BrokenProcessPool,
# which fails every trial not finished, whichever killed the worker) is run again in a new shared
# pool; after that, each runs once more alone, in a pool of its own, and is recorded failed only if
# it loses that pool's worker too: a trial that kills its worker every time (out of memory) runs
# LOST_WORKER_RETRIES + 2 times and costs no other trial.
LOST_WORKER_RETRIES = 2


def run_trials(trials, source, *, executor=None, workers=None, scheduler=None, swept=(), on_result=None):
    """Run ``make_trials``' trials on ``source`` (a ``DataSource``): see ``sweep``."""
    records = {}
    interrupted = False
    cause = "Ctrl-C"
    kind = ("dask" if _dask_installed() else "processes") if executor is None else executor
    # a pool of our own is started again when a worker is lost (a pool given to us cannot be;
    # Dask reschedules the tasks of a lost worker itself)
    restartable = kind == "processes"
    pending, lost = list(range(len(trials))), dict.fromkeys(range(len(trials)), 0)
    description = None
    while pending and not interrupted:
        broken = []
        # each suspect alone once the retries in a shared pool are spent
        alone = restartable and max(lost[number] for number in pending) > LOST_WORKER_RETRIES
        for group in ([number] for number in pending) if alone else [pending]:
            if interrupted:
                break
            closing = _closing_after_an_interrupt(lambda: interrupted)
            with closing, _executor(executor, 1 if alone else workers, scheduler, source, trials) as (pool, shown):
                description = description or shown
                # the futures not yet read; one read is let go at once (Dask: its result leaves
                # the cluster, which recomputed a lost worker's finished trials while the sweep
                # held them all to its end: audit 39); those done together in trial order
                futures = {pool.submit(_run_trial, number, trials[number], source): number for number in group}
                try:
                    while futures:
                        ready = sorted(concurrent.futures.wait(
                            futures, return_when=concurrent.futures.FIRST_COMPLETED).done, key=futures.get)
                        while ready:
                            future = ready.pop(0)
                            number = futures[future]
                            if restartable and not alone and _lost_worker(future):
                                lost[number] += 1
                                broken.append(number)
                                del futures[future]
                                continue
                            records[number] = (_worker_lost_each_time(future, number, trials, lost[number] + 1)
                                               if alone and _lost_worker(future) else _outcome(future, number, trials))
                            del futures[future]  # (after its record: a Ctrl-C between the two loses nothing)
                            if on_result is not None:
                                try:
                                    on_result(records[number])
                                except Exception as error:  # (KeyboardInterrupt is Ctrl-C: below)
                                    on_result = None
                                    warn(f"on_result raised {type(error).__name__}: {error} (trial {number}); "
                                                  f"it is not called again, and the sweep goes on", UserWarning)
                except KeyboardInterrupt as interrupt:  # Ctrl-C, or the CLI's SIGTERM ("stopped by SIGTERM")
                    interrupted = True
                    if str(interrupt).startswith("stopped by "):
                        cause = str(interrupt)[len("stopped by "):]
                    for future, number in futures.items():
                        if future.done() and not future.cancelled() and number not in records and not _lost_worker(future):
                            records[number] = _outcome(future, number, trials)
                        else:
                            future.cancel()
        pending = sorted(broken)
    for number, params in enumerate(trials):
        records.setdefault(number, {"trial": number, "params": params, "status": "cancelled", "error": f"cancelled by {cause}"})
    return SweepResult(trials=sorted(records.values(), key=_rank), swept=tuple(swept), executor=description,
                       source=source.describe(), interrupted=interrupted)


@contextmanager
def _closing_after_an_interrupt(interrupted):
    """Around a pool's block: a second Ctrl-C while the pool closes after the first (a Dask
    cluster takes seconds) is let go, so that the trials finished are still returned (and the
    command line prints their table and writes --csv): it lost them, status 130 and nothing
    more (audit 80). ``interrupted()``: whether the first came."""
    try:
        yield
    except KeyboardInterrupt:
        if not interrupted():
            raise


def _lost_worker(future):
    """Whether ``future`` failed because its pool lost a worker process (it, or another trial's)."""
    return (future.done() and not future.cancelled()
            and isinstance(future.exception(), BrokenProcessPool))


def _worker_lost_each_time(future, number, trials, pools):
    """The record of a trial whose worker process died while it ran alone in a pool of its own,
    the last of the ``pools`` it was given to that broke (it read as a bare ``BrokenProcessPool``,
    as if once: audit 39; in the shared pools it may have been waiting, not running: audit 44)."""
    return {"trial": number, "params": trials[number], "status": "failed",
            "error": f"its worker process died while it ran alone in a pool of its own, the last of {pools} pools that "
                     f"broke under it (killed: out of memory? a crash in compiled code?): "
                     f"{_describe_error(future.exception())}"}


def _outcome(future, number, trials):
    """The record of a finished future; a task that died with its worker is a failed trial, one
    whose worker alone was interrupted (SIGINT to it: TrainingInterrupted) a cancelled one."""
    try:
        return future.result()
    except KeyboardInterrupt as error:
        return {"trial": number, "params": trials[number], "status": "cancelled",
                "error": f"interrupted in its worker ({_describe_error(error)})"}
    except Exception as error:
        return {"trial": number, "params": trials[number], "status": "failed", "error": _describe_error(error),
                "traceback": _traceback_of(error)}


def _rank(record):
    """Best first: finished trials by validation accuracy (higher), then validation loss (lower,
    NaN last); then failed and cancelled trials, each in trial order."""
    if record["status"] != "ok":
        return (1 if record["status"] == "failed" else 2, 0.0, 0.0, record["trial"])
    accuracy = record.get("val_accuracy")
    loss = record.get("val_loss")
    return (0, -accuracy if accuracy is not None else 0.0, loss if loss is not None and math.isfinite(loss) else math.inf,
            record["trial"])


# --- the result ----------------------------------------------------------------------------

SCORE_COLUMNS = ("val_accuracy", "val_loss", "test_accuracy", "test_loss", "train_loss", "epochs_trained",
                 "train_seconds", "samples_per_second", "compile_seconds")


def _shown(value, name=None):
    """A value as the table, the CSV and the progress lines show it (a parameter's by its
    ``name``: batch_size None is full-batch training, shown "full")."""
    if name == "batch_size" and value is None:
        return "full"
    if isinstance(value, (list, tuple)):
        return "-".join(map(str, value))
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else str(value)


@dataclass
class SweepResult:
    """A sweep's outcome.

    ``trials``: the trials' records, best first (finished trials by validation accuracy, then
    validation loss; then the failed ones, then the cancelled ones, each in trial order). Each
    has ``trial`` (its number), ``params`` (all its parameters), ``status`` ("ok", "failed" or
    "cancelled"), ``error`` (one line), for a trial that raised its ``traceback`` (as Python
    prints it: where in fastmlp or the data it failed), and for finished trials the scores
    ``SCORE_COLUMNS``, ``worker`` and ``data_cached`` (whether its worker had the data loaded
    already). ``swept``: the names of the swept parameters (the table's columns);
    ``executor`` and ``source``: what ran the trials and on which data; ``interrupted``:
    whether Ctrl-C ended the sweep early; ``validation``: what the trials were scored on."""

    trials: list
    swept: tuple = ()
    executor: str = ""
    source: str = ""
    interrupted: bool = False
    validation: str = field(default="validation_fraction of the training data (seeded, stratified)")

    @property
    def best(self):
        """The record of the best finished trial, or None if none finished."""
        return self.trials[0] if self.trials and self.trials[0]["status"] == "ok" else None

    def columns(self):
        """The CSV's column names: rank, trial, status, the swept parameters, the scores, error."""
        return ("rank", "trial", "status", *self.swept, *SCORE_COLUMNS, "error")

    def rows(self):
        """One list of plain values per trial, in ``columns()`` order (layers as 784-64-10)."""
        return [
            [rank + 1, record["trial"], record["status"], *(record["params"].get(name) for name in self.swept),
             *(record.get(name) for name in SCORE_COLUMNS), record["error"]]
            for rank, record in enumerate(self.trials)
        ]

    def as_dict(self):
        """The result as plain values (``to_json``'s): executor, data, validation, swept,
        interrupted and the trials' records."""
        return {"executor": self.executor, "data": self.source, "validation": self.validation, "swept": list(self.swept),
                "interrupted": self.interrupted, "trials": self.trials}

    def to_json(self):
        """``as_dict()`` as strict JSON, as every ``--json``: a score that is not finite (a test
        loss of inf) is null."""
        return strict_json(self.as_dict())

    def to_csv(self):
        """The ranking as CSV text, one row per trial in ``columns()`` order (numbers in full)."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        columns = self.columns()
        writer.writerow(columns)
        for row in self.rows():  # numbers in full (repr): a drawn rate can be run again exactly
            writer.writerow(repr(value) if isinstance(value, float) else _shown(value, name)
                            for name, value in zip(columns, row))
        return buffer.getvalue()

    def write_csv(self, path):
        """Write ``to_csv()`` to ``path``, atomically."""
        from ._atomic import atomic_write

        with atomic_write(path, "w") as file:
            file.write(self.to_csv())

    def format_table(self):
        """The ranking as an aligned text table."""
        header = ["rank", "trial", *self.swept, "val acc", "val loss", "test acc", "train s", "samples/s", "status"]
        lines = [header]
        for rank, record in enumerate(self.trials):
            params = [_shown(record["params"].get(name), name) for name in self.swept]
            if record["status"] == "ok":
                def number(name, spec):
                    value = record.get(name)
                    return "-" if value is None else format(value, spec)

                scores = [number("val_accuracy", ".4f"), number("val_loss", ".4f"), number("test_accuracy", ".4f"),
                          number("train_seconds", ".2f"), number("samples_per_second", ",.0f"), "ok"]
            else:
                scores = ["-", "-", "-", "-", "-", f"{record['status']}: {record['error']}"]
            lines.append([str(rank + 1), str(record["trial"]), *params, *scores])
        widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
        return "\n".join("  ".join(cell.rjust(width) for cell, width in zip(line, widths)) + "  " + line[-1]
                         for line in lines)
