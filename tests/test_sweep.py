"""Sweeps (fastmlp.sweep, fastmlp sweep): trials equal direct fits, on processes and on Dask;
failures recorded, ranking, random search, Ctrl-C, bad input, the command line."""

import contextlib
import concurrent.futures
import csv
import json
import math
import multiprocessing
import os
import re
import sys
import time

import numpy as np
import pytest

import fastmlp
from fastmlp import sweeps
from fastmlp.cli import main

BASE = {"layers": [784, 16, 10], "epochs": 2, "seed": 3}
GRID = {"lr": [0.05, 0.2], "batch_size": [1, 16]}
SCORES = ("val_accuracy", "val_loss", "test_accuracy", "test_loss", "train_loss")


@pytest.fixture(scope="module")
def process_pool():
    # spawned, as fastmlp's own pool is: a forked child would inherit the parent's numba threads
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed: pip install 'fastmlp[dask]'")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0") as cluster:
        with distributed.Client(cluster) as client:
            yield client


@pytest.fixture(params=["processes", "dask"])
def executor(request):
    return request.getfixturevalue("process_pool" if request.param == "processes" else "dask_client")


def direct_fit(params, directory):
    """The trial's training done here, by hand: what the sweep must reproduce bitwise."""
    X, y, X_test, y_test = fastmlp.load_dataset("mnist", directory)
    model_params, fit_params = sweeps.split_params(params)
    model = fastmlp.MLP(**model_params)
    history = model.fit(X, y, progress=False, **fit_params)
    test = model.evaluate(X_test, y_test)
    return {"val_accuracy": history.val_accuracy[-1], "val_loss": history.val_loss[-1], "test_accuracy": test["accuracy"],
            "test_loss": test["loss"], "train_loss": history.loss[-1]}


def test_trials_equal_direct_fits_and_are_ranked(executor, tiny_mnist_dir):
    result = fastmlp.sweep(BASE, grid=GRID, executor=executor, data=tiny_mnist_dir)
    assert not result.interrupted and len(result.trials) == 4
    assert sorted(record["trial"] for record in result.trials) == [0, 1, 2, 3]
    assert [dict(lr=r["params"]["lr"], batch_size=r["params"]["batch_size"]) for r in sorted(result.trials, key=lambda r: r["trial"])] == [
        {"lr": 0.05, "batch_size": 1}, {"lr": 0.05, "batch_size": 16}, {"lr": 0.2, "batch_size": 1}, {"lr": 0.2, "batch_size": 16}]
    for record in result.trials:
        assert record["status"] == "ok", record["error"]
        assert record["params"]["validation_fraction"] == 0.1 and record["params"]["threads"] == 1
        expected = direct_fit(record["params"], tiny_mnist_dir)
        assert {name: record[name] for name in SCORES} == expected  # bitwise: same seed, same kernels
        assert record["train_seconds"] > 0 and record["samples_per_second"] > 0
    ranking = [(-r["val_accuracy"], r["val_loss"]) for r in result.trials]
    assert ranking == sorted(ranking)
    assert result.best is result.trials[0]
    # each worker process read the data once: on its first trial only
    loads = {}
    for record in result.trials:
        loads[record["worker"]] = loads.get(record["worker"], 0) + (not record["data_cached"])
    assert set(loads.values()) == {1}


def test_with_early_stopping_a_trial_is_scored_by_the_weights_it_keeps(tiny_mnist_dir):
    # the record took the last epoch's scores while the model (and its test score) was the best
    # epoch's: trials were ranked by weights they did not keep
    base = {"layers": [784, 16, 10], "epochs": 30, "seed": 3, "early_stopping": 2, "batch_size": 4}
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        result = fastmlp.sweep(base, grid={"lr": [5.0]}, executor=pool, data=tiny_mnist_dir)
    record = result.trials[0]
    assert record["status"] == "ok", record["error"]
    X, y, X_test, y_test = fastmlp.load_dataset("mnist", tiny_mnist_dir)
    model_params, fit_params = sweeps.split_params(record["params"])
    model = fastmlp.MLP(**model_params)
    history = model.fit(X, y, progress=False, **fit_params)
    best = history.best_epoch - 1
    assert history.best_epoch < history.stopped_epoch < 30  # it stopped, after a worse epoch
    assert (record["val_loss"], record["val_accuracy"], record["train_loss"]) == (
        history.val_loss[best], history.val_accuracy[best], history.loss[best])
    assert record["test_accuracy"] == model.evaluate(X_test, y_test)["accuracy"]


def test_a_worker_loads_the_data_again_when_its_files_change(tiny_mnist_dir):
    # a long-lived worker (a cluster serving sweep after sweep) kept training on the old arrays
    import gzip
    import os

    base = {"layers": [784, 8, 10], "epochs": 1, "seed": 3, "batch_size": 8}
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # this process's cache
        first = fastmlp.sweep(base, grid={"lr": [0.1]}, executor=pool, data=tiny_mnist_dir).trials[0]
        again = fastmlp.sweep(base, grid={"lr": [0.1]}, executor=pool, data=tiny_mnist_dir).trials[0]
        labels = tiny_mnist_dir / "train-labels-idx1-ubyte.gz"
        raw = bytearray(gzip.decompress(labels.read_bytes()))
        raw[8:] = bytes((value + 1) % 10 for value in raw[8:])  # every training label changes
        labels.write_bytes(gzip.compress(bytes(raw)))
        os.utime(labels, ns=(0, 0))  # a changed size or time, whichever the filesystem shows
        changed = fastmlp.sweep(base, grid={"lr": [0.1]}, executor=pool, data=tiny_mnist_dir).trials[0]
    assert again["data_cached"] and again["val_loss"] == first["val_loss"]
    assert not changed["data_cached"]
    assert changed["val_loss"] == direct_fit(changed["params"], tiny_mnist_dir)["val_loss"] != first["val_loss"]


def test_a_failing_trial_is_recorded_and_the_sweep_goes_on(process_pool, tiny_mnist_dir):
    grid = {"lr": [0.01, 1e6], "layers": [[784, 16, 10], [100, 16, 10]]}
    result = fastmlp.sweep({"activation": "identity", "init": "normal"}, grid=grid, executor=process_pool, data=tiny_mnist_dir)
    by_trial = {record["trial"]: record for record in result.trials}
    assert by_trial[0]["status"] == "ok"
    assert by_trial[2]["status"] == "failed" and by_trial[2]["error"].startswith("DivergenceError: ")
    for number in (1, 3):  # 784 pixels into a 100-input layer: only the data can tell
        assert by_trial[number]["status"] == "failed" and "784 features" in by_trial[number]["error"]
    assert [record["status"] for record in result.trials] == ["ok", "failed", "failed", "failed"]
    assert [record["trial"] for record in result.trials[1:]] == [1, 2, 3]
    assert "traceback" not in by_trial[0] and "DivergenceError" in by_trial[2]["traceback"]


def test_a_fault_inside_a_trial_keeps_its_traceback(monkeypatch, tiny_mnist_dir):
    """A bug in fastmlp (an IndexError deep in a fit) was recorded as one line, "IndexError:
    index 3 is out of bounds", with nowhere to look (audit 42 A5): the record and --json hold
    where it was raised."""
    def fit_with_a_fault(self, *args, **kwargs):
        return _a_fault_deep_inside()

    monkeypatch.setattr(fastmlp.sweeps.MLP, "fit", fit_with_a_fault)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # this process: the patched fit
        result = fastmlp.sweep({"epochs": 1}, grid={"lr": [0.1]}, executor=pool, data=tiny_mnist_dir)
    record = result.trials[0]
    assert record["status"] == "failed" and record["error"] == "IndexError: index 3 is out of bounds"
    assert "in _a_fault_deep_inside" in record["traceback"] and "fit_with_a_fault" in record["traceback"]
    assert json.loads(result.to_json())["trials"][0]["traceback"] == record["traceback"]


def _a_fault_deep_inside():
    raise IndexError("index 3 is out of bounds")


def test_a_lost_worker_process_costs_no_trial(tiny_mnist_dir):
    # ProcessPoolExecutor breaks when a worker dies: every trial not finished was recorded
    # "failed: BrokenProcessPool", including those that had not started
    import os
    import signal

    killed = []

    def kill_the_first_worker(record):
        if not killed:
            killed.append(int(record["worker"].rsplit(":", 1)[1]))
            os.kill(killed[0], signal.SIGKILL)

    result = fastmlp.sweep(BASE, grid={"lr": [0.01, 0.02, 0.03, 0.04, 0.05]}, executor="processes", workers=2,
                           data=tiny_mnist_dir, on_result=kill_the_first_worker)
    assert killed and [record["status"] for record in result.trials] == ["ok"] * 5, [r["error"] for r in result.trials]
    record = result.trials[-1]
    assert {name: record[name] for name in SCORES} == direct_fit(record["params"], tiny_mnist_dir)


WORKERS_THAT_DIE = """
import os
import signal

from fastmlp import sweeps


def initialize(*args):
    \"\"\"Trials at lr 0.999 kill their worker, as the out-of-memory killer would a trial too large.\"\"\"
    sweeps._single_threaded_worker(*args)
    run = sweeps._run_trial

    def run_or_die(number, params, source):
        if params["lr"] == 0.999:
            with open(os.environ["ATTEMPTS_FILE"], "a") as attempts:
                attempts.write("x")
            os.kill(os.getpid(), signal.SIGKILL)
        return run(number, params, source)

    sweeps._run_trial = run_or_die
"""


def test_a_trial_that_kills_its_worker_every_time_costs_no_other_trial(tiny_mnist_dir, monkeypatch, tmp_path):
    # each lost pool counted against every trial not finished: after the retries every trial,
    # started or not, was recorded "failed: BrokenProcessPool"
    (tmp_path / "workers_that_die.py").write_text(WORKERS_THAT_DIE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    import workers_that_die

    monkeypatch.setattr(sweeps, "_single_threaded_worker", workers_that_die.initialize)
    monkeypatch.setenv("ATTEMPTS_FILE", str(tmp_path / "attempts"))
    result = fastmlp.sweep(BASE, grid={"lr": [0.01, 0.999, 0.02, 0.03]}, executor="processes", workers=2,
                           data=tiny_mnist_dir)
    by_rate = {record["params"]["lr"]: record for record in result.trials}
    assert by_rate[0.999]["status"] == "failed" and "BrokenProcessPool" in by_rate[0.999]["error"]
    assert "died while it ran alone in a pool of its own, the last of 4 pools that broke" in by_rate[0.999]["error"]
    # the first run, LOST_WORKER_RETRIES (2) more in a shared pool, one alone (README, "Failures")
    assert sweeps.LOST_WORKER_RETRIES == 2 and len((tmp_path / "attempts").read_text()) == 4
    assert [by_rate[lr]["status"] for lr in (0.01, 0.02, 0.03)] == ["ok"] * 3, [r["error"] for r in result.trials]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_the_workers_of_a_killed_sweep_end_with_it(tmp_path):
    # a sweep killed (SIGKILL, the OOM killer) left its pool's workers waiting for work for ever,
    # holding the sweep's stdout: `fastmlp sweep ... | tee log` never ended (audit 24)
    import os
    import signal
    import subprocess
    import time

    code = ("import time\nfrom fastmlp import sweeps\n"
            "with sweeps._process_executor(2) as (pool, _):\n"
            "    futures = [pool.submit(time.sleep, 120) for _ in range(2)]\n"
            "    time.sleep(1)\n"
            "    print(*[process.pid for process in pool._processes.values()], flush=True)\n"
            "    time.sleep(120)\n")
    sweep = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                             cwd=tmp_path)
    workers = []
    try:
        workers = [int(pid) for pid in sweep.stdout.readline().split()]
        assert len(workers) == 2
        sweep.kill()
        sweep.wait()
        deadline = time.monotonic() + 30
        while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_running(pid) for pid in workers)
    finally:
        sweep.kill()
        for pid in workers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _running(pid):
    from fastmlp._prewarm import _is_zombie

    return not _is_zombie(pid)  # (gone counts as a zombie there)


class OneInterrupted(concurrent.futures.Executor):
    """Runs the trials in this process, but trial 1's worker was interrupted (SIGINT to it alone)."""

    def submit(self, fn, number, *args):
        future = concurrent.futures.Future()
        if number == 1:
            future.set_exception(fastmlp.TrainingInterrupted("stopped by Ctrl-C"))
        else:
            future.set_result(fn(number, *args))
        return future


def test_a_trial_interrupted_in_its_worker_costs_only_that_trial(tiny_mnist_dir):
    # its TrainingInterrupted (a KeyboardInterrupt) came out of run_trials: the finished trials were lost
    try:
        result = fastmlp.sweep(BASE, grid={"lr": [0.01, 0.02, 0.03]}, executor=OneInterrupted(), data=tiny_mnist_dir)
    except KeyboardInterrupt as interrupt:
        pytest.fail(f"the sweep was lost: {interrupt!r}")
    statuses = {record["trial"]: record["status"] for record in result.trials}
    assert statuses == {0: "ok", 1: "cancelled", 2: "ok"} and not result.interrupted
    assert "interrupted in its worker" in result.trials[-1]["error"]


def test_ranking_order():
    ok = lambda n, accuracy, loss: {"trial": n, "status": "ok", "val_accuracy": accuracy, "val_loss": loss}  # noqa: E731
    records = [
        {"trial": 0, "status": "cancelled"},
        ok(1, 0.9, 0.3),
        {"trial": 2, "status": "failed"},
        ok(3, 0.9, 0.2),
        ok(4, 0.95, 0.5),
        ok(5, 0.9, float("nan")),
        ok(6, None, 0.1),  # regression: no accuracy, ranked by loss after the classifiers here
    ]
    assert [record["trial"] for record in sorted(records, key=sweeps._rank)] == [4, 3, 1, 5, 6, 2, 0]


class TwoThenStuck(concurrent.futures.Executor):
    """Runs trials 0 and 1 at once, in this process; the others stay pending for ever."""

    def submit(self, fn, number, *args):
        future = concurrent.futures.Future()
        if number < 2:
            future.set_result(fn(number, *args))
        return future


def test_ctrl_c_cancels_what_is_left_and_keeps_what_finished(tiny_mnist_dir):
    seen = []

    def on_result(record):
        seen.append(record["trial"])
        raise KeyboardInterrupt

    result = fastmlp.sweep(BASE, grid={"lr": [0.01, 0.02, 0.03, 0.04, 0.05, 0.06]}, executor=TwoThenStuck(),
                           data=tiny_mnist_dir, on_result=on_result)
    assert result.interrupted and len(seen) == 1
    statuses = {record["trial"]: record["status"] for record in result.trials}
    assert statuses == {0: "ok", 1: "ok", 2: "cancelled", 3: "cancelled", 4: "cancelled", 5: "cancelled"}
    assert [record["status"] for record in result.trials] == ["ok"] * 2 + ["cancelled"] * 4
    # the finished ones ranked: higher validation accuracy first, ties by lower validation loss
    first, second = result.trials[:2]
    assert (-first["val_accuracy"], first["val_loss"]) <= (-second["val_accuracy"], second["val_loss"])


def test_a_second_ctrl_c_while_the_pool_closes_keeps_what_finished(tiny_mnist_dir, monkeypatch):
    """Audit 80: with Dask, a second Ctrl-C while the cluster closed (seconds) ended the sweep
    with no table and no --csv: the finished trials were lost."""
    @contextlib.contextmanager
    def closing_slowly(*args):
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            try:
                yield pool, "a pool that closes slowly"
            finally:
                raise KeyboardInterrupt  # the second Ctrl-C, inside the close

    def on_result(record):
        raise KeyboardInterrupt  # the first, once a trial has finished

    monkeypatch.setattr(sweeps, "_executor", closing_slowly)
    try:
        result = fastmlp.sweep(BASE, grid={"lr": [0.01, 0.02, 0.03]}, executor="processes", data=tiny_mnist_dir,
                               on_result=on_result)
    except KeyboardInterrupt:  # (let through, it would end the test session)
        pytest.fail("the Ctrl-C inside the close lost the finished trials")
    assert result.interrupted and result.trials[0]["status"] == "ok"
    # (how many others finished before the first Ctrl-C was seen depends on the machine's timing:
    # CI once saw all three done)
    assert {record["status"] for record in result.trials} <= {"ok", "cancelled"}
    # without a first Ctrl-C, one in the close is the caller's
    monkeypatch.setattr(sweeps, "_executor", closing_slowly)
    with pytest.raises(KeyboardInterrupt):
        fastmlp.sweep(BASE, grid={"lr": [0.01]}, executor="processes", data=tiny_mnist_dir)


def test_a_failing_on_result_costs_no_trial(tiny_mnist_dir):
    """An exception from the callback ended the sweep with it: every finished trial was lost."""
    seen = []

    def on_result(record):
        seen.append(record["trial"])
        raise OSError("disk full")

    with pytest.warns(UserWarning, match="on_result raised OSError: disk full \\(trial 0\\); it is not called again"):
        result = fastmlp.sweep(BASE, grid={"lr": [0.01, 0.02, 0.03]}, executor=concurrent.futures.ThreadPoolExecutor(1),
                               data=tiny_mnist_dir, on_result=on_result)
    assert seen == [0] and not result.interrupted
    assert sorted(record["trial"] for record in result.trials if record["status"] == "ok") == [0, 1, 2]


def test_random_search_draws_from_the_grid_and_distributions_with_the_seed():
    grid, distributions = {"batch_size": [1, 32]}, {"lr": "loguniform:1e-3:1e-1", "momentum": "uniform:0:0.5"}
    trials = sweeps.make_trials(BASE, grid, distributions, n_trials=8)
    assert len(trials) == 8
    assert all(1e-3 <= t["lr"] < 1e-1 and 0 <= t["momentum"] < 0.5 and t["batch_size"] in (1, 32) for t in trials)
    assert trials == sweeps.make_trials(BASE, grid, distributions, n_trials=8)  # BASE's seed
    assert trials != sweeps.make_trials(BASE, grid, distributions, n_trials=8, seed=4)
    drawn = sweeps.make_trials(BASE, GRID, n_trials=3)  # from a grid alone: distinct combinations
    combinations = {(t["lr"], t["batch_size"]) for t in drawn}
    assert len(combinations) == 3 and combinations <= {(lr, b) for lr in GRID["lr"] for b in GRID["batch_size"]}


def test_full_batch_is_shown_as_full():
    records = [{"trial": n, "status": "failed", "error": "x", "params": {"batch_size": size, "lr": 0.1}}
               for n, size in enumerate([None, 32])]
    result = sweeps.SweepResult(records, swept=("batch_size",))
    table = result.format_table().splitlines()
    assert table[1].split()[2] == "full" and table[2].split()[2] == "32"
    rows = list(csv.reader(result.to_csv().splitlines()))
    assert rows[1][rows[0].index("batch_size")] == "full" and rows[1][rows[0].index("val_loss")] == ""


def test_numpy_values_become_the_python_numbers_json_writes():
    """A grid of np.array([16, 32]) trained, but SweepResult.to_json then failed on np.int64."""
    base = {**BASE, "layers": np.array([784, 16, 10]), "lr": np.float32(0.25)}
    trials = sweeps.make_trials(base, {"batch_size": np.array([16, 32]), "momentum": [np.float64(0.5)]},
                                {"weight_decay": "loguniform:1e-5:1e-3"}, n_trials=2)
    assert json.loads(json.dumps(trials)) == trials
    for trial in trials:
        assert type(trial["batch_size"]) is int and type(trial["lr"]) is float and type(trial["weight_decay"]) is float
        assert trial["layers"] == [784, 16, 10] and all(type(size) is int for size in trial["layers"])


def test_the_json_of_a_result_is_strict_json():
    # `fastmlp sweep --json` wrote Python's NaN and Infinity tokens (jq and JSON.parse refuse them),
    # where every other --json writes null
    record = {"trial": 0, "params": {"lr": 0.1}, "status": "ok", "error": None, "val_accuracy": 0.5,
              "val_loss": math.nan, "test_loss": math.inf, "train_loss": -math.inf}
    result = sweeps.SweepResult(trials=[record], swept=("lr",))

    def refuse(token):
        raise ValueError(f"not strict JSON: {token}")

    written = json.loads(result.to_json(), parse_constant=refuse)
    assert {name: written["trials"][0][name] for name in ("val_accuracy", "val_loss", "test_loss", "train_loss")} == {
        "val_accuracy": 0.5, "val_loss": None, "test_loss": None, "train_loss": None}
    assert math.isnan(record["val_loss"])  # (the result itself keeps the numbers)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"grid": {"learning_rate": [0.1]}}, "unknown parameter 'learning_rate'"),
        ({"grid": {}}, "the grid is empty"),
        ({"grid": {"lr": []}}, "grid['lr'] must be a non-empty list"),
        ({"grid": {"lr": [0.1, -1.0]}}, "1 of 2 trials would fail before training: trial 1 (lr=-1.0): lr must be"),
        ({"grid": {"optimizer": ["sgd", "adam"]}, "base_params": {"nesterov": True, "momentum": 0.9}}, "trial 1 (optimizer='adam')"),
        ({"distributions": {"lr": "loguniform:1e-3:1e-1"}}, "give n_trials"),
        ({"distributions": {"lr": "loguniform:0:1"}, "n_trials": 2}, "loguniform needs LOW > 0"),
        ({"grid": {"lr": [0.1, 0.2]}, "n_trials": 3}, "more than the grid's 2 combinations"),
        ({"grid": {"lr": [0.1]}, "base_params": {"validation_fraction": None}}, "validation_fraction must be"),
        ({"grid": {"lr": [0.1]}, "executor": "threads"}, "executor must be one of"),
        ({"grid": {"lr": [0.1]}, "base_params": {**BASE, "lr": 0.5}}, "'lr' is both fixed (base_params) and swept (grid)"),
        ({"distributions": {"lr": "uniform:0.1:0.2"}, "n_trials": 1, "base_params": {**BASE, "lr": 0.5}},
         "'lr' is both fixed (base_params) and swept (distributions)"),
        ({"grid": {"lr": [0.1]}, "executor": "processes", "scheduler": "tcp://127.0.0.1:8786"}, "needs executor='dask'"),
        # (the limit was dropped: every trial trained on all the data)
        ({"grid": {"lr": [0.1]}, "data": sweeps.DataSource(directory="/nowhere"), "limit": 100},
         "give the limit in the DataSource"),
        # options without effect ran identical trials, ranked as if they differed (train refuses them)
        ({"grid": {"lr": [0.1, 0.2]}, "base_params": {**BASE, "beta1": 0.5}},
         "beta1 has no effect in any trial: it applies to optimizer='adam'; got optimizer='sgd'"),
        ({"grid": {"power_t": [0.1, 0.9]}}, "power_t has no effect in any trial: it applies to lr_schedule='invscaling'"),
        ({"grid": {"tol": [0.1, 0.01]}}, "tol has no effect in any trial: it applies to lr_schedule='adaptive' and"),
        ({"grid": {"lr": [0.1]}, "base_params": {**BASE, "decoupled_weight_decay": True}},
         "decoupled_weight_decay has no effect in any trial: it needs a weight_decay above 0"),
        # a trial scored on one validation sample ranked first
        ({"grid": {"validation_fraction": [0.0005, 0.1]}}, "validation_fraction cannot be swept"),
        # ignored without a word (scheduler was refused)
        ({"grid": {"lr": [0.1]}, "executor": concurrent.futures.ThreadPoolExecutor(1), "workers": 7},
         "workers sizes a pool the sweep starts (executor 'dask' or 'processes'); the ThreadPoolExecutor passed"),
        ({"grid": {"lr": [0.1]}, "executor": concurrent.futures.ThreadPoolExecutor(1), "scheduler": "tcp://h:1"},
         "it needs executor='dask', not a ThreadPoolExecutor"),
        # looked for as the directory ./fashion_mnist, and the error never named the datasets
        ({"grid": {"lr": [0.1]}, "data": "fashion_mnist"}, "data='fashion_mnist' is no dataset (mnist, fashion-mnist, "
                                                           "kmnist; did you mean 'fashion-mnist'?)"),
        ({"distributions": {"validation_fraction": "uniform:0.1:0.2"}, "n_trials": 2}, "validation_fraction cannot be swept"),
    ],
)
def test_bad_sweeps_are_refused_before_anything_runs(tmp_path, kwargs, words):
    # tmp_path holds no data: a sweep that started would fail its trials rather than raise
    with pytest.raises(ValueError) as error:
        fastmlp.sweep(kwargs.pop("base_params", BASE), **{"data": tmp_path, **kwargs})
    assert words in str(error.value)


@pytest.mark.parametrize("seed, base_seed, error, words", [
    (-1, None, ValueError, "seed must be a non-negative integer; got -1"),
    (1.5, None, TypeError, "seed must be a non-negative integer; got 1.5"),
    ("7", None, TypeError, "seed must be a non-negative integer; got '7'"),
    (True, None, TypeError, "seed must be a non-negative integer; got True"),  # drew with seed 1
    (None, -1, ValueError, "base_params['seed'] must be a non-negative integer; got -1"),
])
@pytest.mark.parametrize("n_trials", [None, 1])
def test_a_sweeps_seed_that_is_no_seed_is_named(tmp_path, seed, base_seed, error, words, n_trials):
    # NumPy's SeedSequence said "expected non-negative integer", naming no argument, and without
    # n_trials a seed of -1 was ignored (audit 60)
    base = {**BASE, **({} if base_seed is None else {"seed": base_seed})}
    with pytest.raises(error, match=re.escape(words)):
        fastmlp.sweep(base, {"lr": [0.1, 0.2]}, n_trials=n_trials, seed=seed, data=tmp_path)


@pytest.mark.parametrize("scheduler, error", [
    (8786, TypeError), (b"tcp://127.0.0.1:9", TypeError), ("", ValueError), ("localhost", ValueError),
    ("inproc://nothing", ValueError), ("tcp://127.0.0.1:99999", ValueError), ("tcp://127.0.0.1:", ValueError),
])
def test_a_scheduler_that_is_no_address_is_named_before_any_connection(tmp_path, scheduler, error):
    # each was "the server at ... does not answer as a Dask scheduler", after a connection
    # attempt (10 s for a port past 65535); the command line checked the form (audit 61)
    with pytest.raises(error, match=r"^scheduler must be an address like '?tcp://HOST:8786'?; got "):
        fastmlp.sweep(BASE, {"lr": [0.1]}, data=tmp_path, executor="dask", scheduler=scheduler)
    assert sweeps.scheduler_address(" tcp://10.0.0.1:8786 ") == "tcp://10.0.0.1:8786"
    assert sweeps.scheduler_address("host:8786") == "host:8786"


def test_an_on_result_that_is_no_function_is_refused_before_anything_runs(tmp_path):
    # it ran the first trial, then warned "'int' object is not callable" (audit 60)
    with pytest.raises(TypeError, match="^on_result must be a function of a trial's record, or None; got 3$"):
        fastmlp.sweep(BASE, {"lr": [0.1]}, data=tmp_path, on_result=3)


def test_an_option_some_trials_leave_without_effect_is_a_warning():
    with pytest.warns(UserWarning, match="beta1 has no effect in 2 of 4 trials"):
        trials = sweeps.make_trials(BASE, {"optimizer": ["sgd", "adam"], "beta1": [0.5, 0.9]})
    assert len(trials) == 4
    trials = sweeps.make_trials(BASE, {"optimizer": ["adam"], "beta1": [0.5, 0.9]})  # no warning: errors here
    assert [t["beta1"] for t in trials] == [0.5, 0.9]


def test_a_trial_leaves_out_what_it_would_train_without(tiny_mnist_dir):
    """A trial's option without effect (beta1 in the SGD trials of an optimizer grid) is said once,
    by the sweep; each such trial's fit warned of it again, on its worker's stderr."""
    import warnings

    base = {**BASE, "beta1": 0.5, "epochs": 1}
    with warnings.catch_warnings(record=True) as caught, concurrent.futures.ThreadPoolExecutor(1) as pool:
        warnings.simplefilter("always")
        result = fastmlp.sweep(base, grid={"optimizer": ["sgd", "adam"]}, executor=pool, data=tiny_mnist_dir)
    assert [r["status"] for r in result.trials] == ["ok", "ok"]
    said = [str(w.message) for w in caught]
    assert any("beta1 has no effect in 1 of 2 trials" in message for message in said)
    assert not any("has no effect: it applies to" in message for message in said), said
    # the command line says it as fastmlp's own, by its message (it said "UserWarning: ... (.../bin/fastmlp:8)")
    from fastmlp.cli import _format_warning

    ours = next(w for w in caught if "beta1 has no effect in 1 of 2 trials" in str(w.message))
    assert ours.category is UserWarning  # (a filter on UserWarning still takes it)
    assert _format_warning(ours.message, ours.category, ours.filename, ours.lineno) == f"fastmlp: warning: {ours.message}\n"


@pytest.mark.parametrize(
    "kwargs, words",
    [
        # a list of pairs was taken as a dict; a list of dicts (scikit-learn's union of grids) failed
        # with "dictionary update sequence element #0 has length 1; 2 is required"
        ({"grid": [{"lr": [0.1, 0.2]}]}, "grid must be a dict of parameter name -> list of values"),
        ({"grid": [("lr", [0.1, 0.2])]}, "grid must be a dict"),
        ({"grid": "lr=0.1,0.2"}, "got str 'lr=0.1,0.2'"),
        ({"grid": {"lr": [0.1]}, "base_params": [("layers", [784, 16, 10])]}, "base_params must be a dict"),
        ({"distributions": ["lr=uniform:0.1:0.2"], "n_trials": 1}, "distributions must be a dict"),
    ],
)
def test_a_sweep_given_something_other_than_dicts_says_which(tmp_path, kwargs, words):
    with pytest.raises(TypeError) as error:
        fastmlp.sweep(kwargs.pop("base_params", BASE), **{"data": tmp_path, **kwargs})
    assert words in str(error.value)


def test_an_unreachable_scheduler_is_an_error_not_a_hang(monkeypatch, tmp_path):
    pytest.importorskip("distributed", reason="dask.distributed is not installed: pip install 'fastmlp[dask]'")
    monkeypatch.setattr(sweeps, "SCHEDULER_TIMEOUT", "2s")
    with pytest.raises(ConnectionError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9 within 2s"):
        fastmlp.sweep(BASE, grid={"lr": [0.1]}, executor="dask", scheduler="tcp://127.0.0.1:9", data=tmp_path)


@pytest.mark.parametrize("answer", ["http", "silent"])
def test_a_server_that_is_no_scheduler_is_an_error_not_a_hang(monkeypatch, tmp_path, answer):
    """A port that answers another protocol (a web server, the dashboard's) ended in a 59-line
    traceback, Dask's MemoryError for a frame of exabytes; one that accepts and never answers
    waited for ever."""
    import socket
    import threading

    pytest.importorskip("distributed", reason="dask.distributed is not installed: pip install 'fastmlp[dask]'")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held = []

    def serve():
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            held.append(connection)
            if answer == "http":
                connection.recv(65536)
                connection.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                connection.close()

    threading.Thread(target=serve, daemon=True).start()
    monkeypatch.setattr(sweeps, "SCHEDULER_TIMEOUT", "2s")
    address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
    try:
        with pytest.raises(ConnectionError, match=f"the server at {address} does not answer as a Dask scheduler"):
            fastmlp.sweep(BASE, grid={"lr": [0.1]}, executor="dask", scheduler=address, data=tmp_path)
    finally:
        server.close()
        for connection in held:
            connection.close()


# --- the command line ----------------------------------------------------------------------

def run(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_cli_json_and_csv(capsys, tiny_mnist_dir, tmp_path):
    argv = ["sweep", "--data", str(tiny_mnist_dir), "--layers", "784,16,10", "--epochs", "2", "--seed", "3",
            "--grid", "lr=0.05,0.2", "--grid", "batch-size=1,16", "--executor", "processes", "--workers", "1"]
    status, out, err = run(capsys, *argv, "--json")
    assert status == 0, err
    assert out.count("\n") == 1 and err == ""
    result = json.loads(out)
    assert result["swept"] == ["lr", "batch_size"] and result["executor"] == "1 worker process"
    trials = result["trials"]
    assert [t["status"] for t in trials] == ["ok"] * 4
    ranking = [(-t["val_accuracy"], t["val_loss"]) for t in trials]
    assert ranking == sorted(ranking)
    best = trials[0]
    assert {name: best[name] for name in SCORES} == direct_fit(best["params"], tiny_mnist_dir)

    table = tmp_path / "sweep.csv"
    status, out, err = run(capsys, *argv, "--csv", str(table))
    assert status == 0, err
    rows = list(csv.DictReader(table.open()))
    assert [int(row["trial"]) for row in rows] == [t["trial"] for t in trials]
    # in full: a drawn rate (or any score) reads back as the number it was
    assert [float(row["val_loss"]) for row in rows] == [t["val_loss"] for t in trials]
    assert [float(row["lr"]) for row in rows] == [t["params"]["lr"] for t in trials]
    assert rows[0]["rank"] == "1" and rows[0]["status"] == "ok" and {"lr", "batch_size", "samples_per_second"} <= rows[0].keys()
    assert "rank" in out and f"ranking written to {table}" in out and err.count("\n") == 5  # a header, then a line per trial


def test_cli_interrupted_prints_what_finished_and_exits_130(capsys, monkeypatch, tmp_path):
    def interrupted(trials, source, **kwargs):
        records = [{"trial": 0, "params": trials[0], "status": "ok", "error": None, "val_accuracy": 0.5, "val_loss": 1.0,
                    "test_accuracy": 0.5, "train_seconds": 1.0, "samples_per_second": 100.0},
                   {"trial": 1, "params": trials[1], "status": "cancelled", "error": "cancelled by Ctrl-C"}]
        return sweeps.SweepResult(trials=records, swept=kwargs["swept"], executor="test", interrupted=True)

    monkeypatch.setattr(sweeps, "run_trials", interrupted)
    status, out, err = run(capsys, "sweep", "--data", str(tmp_path), "--grid", "lr=0.1,0.2", "--executor", "processes")
    assert status == 130
    assert "cancelled" in out and "0.5000" in out
    assert err.splitlines()[-1] == "fastmlp: interrupted: 1 of 2 trials finished, the others were cancelled"


def test_cli_sigterm_exits_143_and_says_so(capsys, monkeypatch, tmp_path):
    # SIGTERM was reported as Ctrl-C: exit status 130, trials "cancelled by Ctrl-C"
    from fastmlp import cli

    real_run_trials = sweeps.run_trials

    def terminated_after_the_first_result(trials, source, **kwargs):
        return real_run_trials(trials, source, executor=TwoThenStuck(), swept=kwargs["swept"],
                               on_result=lambda record: cli._terminate(15, None))

    monkeypatch.setattr(sweeps, "_run_trial", lambda number, params, source: {
        "trial": number, "params": params, "status": "ok", "error": None, "val_accuracy": 0.5, "val_loss": 1.0,
        "test_accuracy": 0.5, "train_seconds": 1.0, "samples_per_second": 100.0})
    monkeypatch.setattr(sweeps, "run_trials", terminated_after_the_first_result)
    status, out, err = run(capsys, "sweep", "--data", str(tmp_path), "--grid", "lr=0.1,0.2,0.3", "--executor", "processes")
    assert status == 143
    assert "cancelled by SIGTERM" in out and "Ctrl-C" not in out
    assert err.splitlines()[-1] == "fastmlp: interrupted by SIGTERM: 2 of 3 trials finished, the others were cancelled"


def test_cli_shows_the_ranking_when_the_csv_cannot_be_written(capsys, monkeypatch, tmp_path):
    (tmp_path / "out").mkdir()

    def finished(trials, source, **kwargs):
        (tmp_path / "out").rmdir()  # gone by the end of the sweep
        records = [{"trial": 0, "params": trials[0], "status": "ok", "error": None, "val_accuracy": 0.5, "val_loss": 1.0,
                    "test_accuracy": 0.5, "train_seconds": 1.0, "samples_per_second": 100.0}]
        return sweeps.SweepResult(trials=records, swept=kwargs["swept"], executor="test")

    monkeypatch.setattr(sweeps, "run_trials", finished)
    status, out, err = run(capsys, "sweep", "--data", str(tmp_path), "--grid", "lr=0.1", "--executor", "processes",
                           "--csv", str(tmp_path / "out" / "sweep.csv"))
    assert status == 1
    assert "rank" in out and "0.5000" in out  # the table came first
    assert "sweep.csv" in err.splitlines()[-1]


@pytest.mark.parametrize("extra, words", [([], "MNIST data not found"), (["--limit", "1000"], "limit 1000 is more than the 300")])
def test_cli_data_that_cannot_load_is_one_error_before_any_worker_starts(capsys, monkeypatch, tiny_mnist_dir, tmp_path,
                                                                          extra, words):
    # every trial failed with the same error, repeated in full, after a pool had started
    started = []
    monkeypatch.setattr(sweeps, "_process_executor", lambda workers: started.append(workers))
    data = tmp_path if not extra else tiny_mnist_dir
    status, out, err = run(capsys, "sweep", "--data", str(data), "--grid", "lr=0.1,0.2", "--executor", "processes", *extra)
    assert status == 1 and out == "" and not started
    assert err.count("\n") == 2 and words in err.splitlines()[-1]  # the header, then the one error


def test_cli_csv_onto_its_own_training_data_is_refused(capsys, monkeypatch, tiny_mnist_dir, tmp_path):
    """Audit 80: ``--csv DIR/mnist_train.csv`` with ``--data DIR`` in the CSV layout replaced the
    training set with the ranking, status 0. Refused now, as predict refuses an OUT that is its INPUT."""
    X, y, X_test, y_test = fastmlp.load_dataset("mnist", tiny_mnist_dir)
    data = tmp_path / "csvdata"
    data.mkdir()
    for name, images, labels in (("mnist_train.csv", X, y), ("mnist_test.csv", X_test, y_test)):
        (data / name).write_text("".join(",".join(map(str, [label, *row])) + "\n"
                                         for label, row in zip(labels, images.reshape(len(images), -1))))
    before = (data / "mnist_train.csv").read_bytes()
    started = []
    monkeypatch.setattr(sweeps, "_process_executor", lambda workers: started.append(workers))
    status, out, err = run(capsys, "sweep", "--data", str(data), "--grid", "lr=0.1,0.2", "--executor", "processes",
                           "--csv", str(data / "mnist_train.csv"))
    assert status == 2 and not started, err
    assert f"--csv {data / 'mnist_train.csv'} is {data / 'mnist_train.csv'}, a data file the trials read" in err
    assert (data / "mnist_train.csv").read_bytes() == before


@pytest.mark.parametrize("grid, words", [
    ("batch_size=200,300,full", "trials 1: batch_size 300 is more than the 270 training samples left after "
                                "validation_fraction=0.1 holds out 30 of 300"),
    ("batch_size=271,32", "trials 0: batch_size 271 is more than the 270 training samples"),
])
def test_cli_a_batch_over_the_training_samples_is_refused_as_train_refuses_it(capsys, monkeypatch, tiny_mnist_dir,
                                                                              grid, words):
    """Audit 80: such a trial trained one full batch, quietly, recorded under the batch size
    asked for (four 'different' settings, one run); train refuses it."""
    started = []
    monkeypatch.setattr(sweeps, "_process_executor", lambda workers: started.append(workers))
    status, out, err = run(capsys, "sweep", "--data", str(tiny_mnist_dir), "--grid", grid, "--executor", "processes")
    assert status == 1 and not started, err
    assert words.replace("trials 0", "trial 0").replace("trials 1", "trial 1") in err.splitlines()[-1], err


@pytest.mark.parametrize("workers", [2, 3])
def test_cli_more_workers_than_cpus_is_said(capsys, monkeypatch, tiny_mnist_dir, workers):
    """Audit 80: --workers 6 on 2 CPUs ran silently, the trials' times measuring each other."""
    monkeypatch.setattr(sweeps, "usable_cpus", lambda: 2)
    monkeypatch.setattr(sweeps, "run_trials", lambda *args, **kwargs: (_ for _ in ()).throw(ValueError("no trials")))
    status, out, err = run(capsys, "sweep", "--data", str(tiny_mnist_dir), "--grid", "lr=0.1,0.2", "--executor",
                           "processes", "--workers", str(workers))
    assert status == 1 and "no trials" in err  # (the warning is said before the trials start)
    said = "fastmlp: warning: --workers 3 is more than the 2 CPUs this process may use: the trials share them"
    assert (said in err) == (workers == 3), err


def test_a_trial_on_a_cluster_records_a_batch_over_its_samples_as_failed(tiny_mnist_dir):
    # a cluster's workers read their own data: the trial itself refuses (the sweep goes on)
    record = sweeps._run_trial(0, {**sweeps.SWEEP_DEFAULTS, "layers": [784, 8, 10], "batch_size": 280},
                               sweeps.data_source(str(tiny_mnist_dir)))
    assert record["status"] == "failed" and "batch_size 280 is more than the 270 training samples" in record["error"]


def test_workers_follow_the_cpus_this_process_may_use(monkeypatch):
    # os.cpu_count() counted the whole machine: under taskset (or a batch job's share of a
    # node) a sweep started a worker per core it could not use
    import os

    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no CPU affinity on this platform")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert sweeps.usable_cpus() == 1
    with sweeps._process_executor(None) as (pool, description):
        assert description == "1 worker process"


def test_repeated_grid_values_are_one_trial_as_on_the_command_line():
    trials = sweeps.make_trials(BASE, {"lr": [0.1, 0.1, np.float64(0.2)], "batch_size": [16, 16]})
    assert [(t["lr"], t["batch_size"]) for t in trials] == [(0.1, 16), (0.2, 16)]
    drawn = sweeps.make_trials(BASE, {"lr": [0.1, 0.1, 0.2], "batch_size": [16, 16]}, n_trials=2, seed=1)
    assert sorted(t["lr"] for t in drawn) == [0.1, 0.2]  # N distinct combinations
    with pytest.raises(ValueError, match="more than the grid's 2 combinations"):
        sweeps.make_trials(BASE, {"lr": [0.1, 0.1, 0.2], "batch_size": [16, 16]}, n_trials=3)
    assert [t["lr"] for t in sweeps.make_trials(BASE, {"lr": [1, 1.0]})] == [1]  # (it ran twice)
    assert sweeps._distinct([True, 1]) == [True, 1]


def test_a_grid_too_large_to_count_is_drawn_from():
    # rng.choice took the number of combinations: OverflowError past 2**63
    grid = {name: list(np.linspace(0.01, 0.5, 100)) for name in ("lr", "momentum", "weight_decay", "dropout",
                                                                 "input_dropout", "power_t", "tol")}
    grid["seed"] = list(range(10**6))
    grid["epochs"] = list(range(1, 10**6))
    base = {"layers": [784, 16, 10], "lr_schedule": "invscaling", "early_stopping": 3}  # so power_t, tol take effect
    trials = sweeps.make_trials(base, grid, n_trials=5, seed=0)
    assert len({tuple(t[name] for name in grid) for t in trials}) == 5
    assert trials == sweeps.make_trials(base, grid, n_trials=5, seed=0)


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--grid", "rate=0.1"], "unknown parameter 'rate'"),
        (["--grid", "data=x"], "unknown parameter 'data'"),
        (["--grid", "lr=0.1,x"], "lr value 'x' must be a finite number > 0"),
        (["--grid", "lr="], "needs at least one value"),
        (["--grid", "lr"], "must be NAME=VALUE"),
        (["--grid", "layers=784,16,10"], "needs at least an input and an output size"),
        (["--grid", "bias=maybe"], "bias value 'maybe' must be true or false"),
        (["--grid", "batch_size=loguniform:1:64"], "batch_size takes a list of values"),
        (["--grid", "lr=loguniform:0:1", "--trials", "2"], "loguniform needs LOW > 0"),
        (["--grid", "momentum=uniform:0:1", "--trials", "2"], "momentum bound 1 in"),
        ([], "needs at least one --grid"),
        (["--lr", "0.1", "--grid", "lr=0.05"], "lr is both fixed (--lr) and swept"),
        (["--no-bias", "--grid", "bias=true,false"], "bias is both fixed (--no-bias) and swept"),
        (["--grid", "lr=0.1", "--grid", "lr=0.2"], "--grid lr is given twice"),
        (["--grid", "lr=loguniform:1e-3:1e-1"], "needs --trials N"),
        (["--grid", "lr=0.1,0.2", "--trials", "3"], "--trials 3 is more than the grid's 2 combinations; leave --trials "
                                                     "out"),  # (n_trials, the API's name: audit 80)
        (["--grid", "optimizer=sgd,adam", "--momentum", "0.9", "--nesterov"], "trial 1 (optimizer='adam')"),
        (["--grid", "lr=0.1", "--scheduler", "tcp://127.0.0.1:8786", "--executor", "processes"], "does not go with --executor processes"),
        (["--grid", "lr=0.1", "--scheduler", "tcp://127.0.0.1:8786", "--workers", "2"], "its own workers"),
        (["--grid", "lr=0.1", "--json", "--csv", "x.csv"], "not allowed with argument"),
        (["--beta1", "0.5", "--grid", "lr=0.1,0.2"], "beta1 has no effect in any trial"),
        (["--grid", "power_t=0.1,0.9"], "power_t has no effect in any trial"),
        (["--grid", "validation_fraction=0.1,0.2"], "cannot be swept: trials are ranked by their score on the "
                                                    "validation split, so every trial must be scored on the same one; "
                                                    "give it once, as --validation-fraction"),
    ],
)
def test_cli_mistakes_are_one_line_usage_errors_before_the_data_is_read(capsys, tmp_path, argv, words):
    status, out, err = run(capsys, "sweep", "--data", str(tmp_path), *argv)
    assert status == 2, err
    assert out == "" and err.count("\n") == 1 and err.startswith("fastmlp: error: ")
    assert words in err


def test_cli_unknown_parameter_offers_only_what_can_be_swept(capsys, tmp_path):
    # it offered validation_fraction, which --grid then refused as "cannot be swept" (audit 59)
    status, _, err = run(capsys, "sweep", "--data", str(tmp_path), "--grid", "rate=0.1")
    assert status == 2 and "sweep one of layers, " in err
    assert "validation_fraction" not in err and "dropout" in err


def test_cli_help_says_the_sweeps_own_threads_default(capsys):
    # (it said train's: "auto (default: ...)", while a sweep's trials run on one thread)
    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--threads N|auto threads of each trial: 1 (default" in text and "auto (default" not in text


def test_cli_grid_values_are_parsed_by_their_options():
    from fastmlp.cli import build_parser

    args = build_parser().parse_args([
        "sweep", "--grid", "layers=784-64-10,784-128-10", "--grid", "batch_size=full,32", "--grid", "shuffle=false,true",
        "--grid", "lr=loguniform:1e-3:1e-1", "--grid", "nesterov=yes", "--grid", "init=uniform",
    ])
    # (init=uniform was taken for a distribution and refused)
    assert args.grid == [("layers", ((784, 64, 10), (784, 128, 10))), ("batch_size", (None, 32)), ("shuffle", (False, True)),
                         ("lr", "loguniform:1e-3:1e-1"), ("nesterov", (True,)), ("init", ("uniform",))]
    assert args.threads == 1 and args.validation_fraction == 0.1


def test_import_fastmlp_does_not_import_dask():
    import subprocess
    import sys

    code = "import sys, fastmlp; assert callable(fastmlp.sweep); print('distributed' in sys.modules, 'numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/").stdout
    assert out.split() == ["False", "False"]


def test_the_dask_executor_without_dask_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(__import__("sys").modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(ImportError, match=r'pip install "fastmlp\[dask\]"'):
        fastmlp.sweep(BASE, grid={"lr": [0.1]}, executor="dask", data=tmp_path)


@pytest.mark.parametrize("guarded", [False, True])
def test_a_script_without_the_main_guard_is_told_to_add_it(tiny_mnist_dir, tmp_path, guarded):
    # spawned workers import the main script again: an unguarded call failed every trial with
    # BrokenProcessPool after multiprocessing's RuntimeError in each worker (and the retries)
    import subprocess
    import sys

    call = (f"fastmlp.sweep({{'layers': [784, 8, 10], 'epochs': 1}}, grid={{'lr': [0.05, 0.1]}}, "
            f"data={str(tiny_mnist_dir)!r}, executor='processes', workers=2)")
    body = f"if __name__ == '__main__':\n    print({call}.format_table())\n" if guarded else f"print({call}.format_table())\n"
    script = tmp_path / "sweep_script.py"
    script.write_text("import fastmlp\n" + body)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=240)
    if guarded:
        assert done.returncode == 0, done.stderr
        assert done.stdout.count(" ok") == 2
    else:
        assert done.returncode == 1
        assert f'{script}:2, outside `if __name__ == "__main__":`' in done.stderr
        assert "BrokenProcessPool" not in done.stdout + done.stderr and "bootstrapping" not in done.stderr


# --- the records and the trials as asked for (a sweep-audit's mutants passed every test above) --


def test_random_search_draws_with_the_base_seed_by_default():
    grid = {"lr": [0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08]}
    assert sweeps.make_trials(BASE, grid, n_trials=3) == sweeps.make_trials(BASE, grid, n_trials=3, seed=BASE["seed"])
    assert sweeps.make_trials(BASE, grid, n_trials=3) != sweeps.make_trials({**BASE, "seed": 0}, grid, n_trials=3)


def test_loguniform_draws_are_uniform_in_the_logarithm():
    trials = sweeps.make_trials(BASE, distributions={"lr": "loguniform:1e-4:1e0"}, n_trials=400, seed=0)
    assert 0.4 < sum(t["lr"] < 1e-2 for t in trials) / len(trials) < 0.6  # half the decades (linear draws: 1%)


@pytest.mark.parametrize("spec, words", [
    ("uniform:1:1", "the bounds of 'uniform:1:1' must be finite with LOW < HIGH"),
    ("loguniform:1e-3:1e-1:5", "a distribution is uniform or loguniform:LOW:HIGH, like loguniform:1e-3:1e-1; got "
                               "'loguniform:1e-3:1e-1:5'"),
    ("uniform:0.1", "a distribution is uniform or loguniform:LOW:HIGH, like loguniform:1e-3:1e-1; got 'uniform:0.1'"),
])
def test_distributions_without_a_range_are_refused(spec, words):
    with pytest.raises(ValueError, match=f"^{re.escape(words)}$"):
        sweeps.parse_distribution(spec)


def test_small_parts_of_the_api():
    assert sweeps.SweepResult([{"trial": 0, "params": {"lr": 0.1}, "status": "failed", "error": "x"}],
                              swept=("lr",)).best is None  # no trial finished
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        sweeps.make_trials({**BASE, "epochs": 0}, {"lr": [0.1]})


def test_a_relative_data_directory_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # workers need not share the cwd
    assert sweeps.data_source("some/dir").directory == str(tmp_path / "some" / "dir")


def test_cli_parses_words_for_false_and_checks_the_scheduler_port():
    from fastmlp._cli_options import UsageError
    from fastmlp.cli import build_parser

    assert build_parser().parse_args(["sweep", "--grid", "shuffle=no,yes"]).grid == [("shuffle", (False, True))]
    with pytest.raises(UsageError, match="must be a scheduler address like tcp://HOST:8786"):
        build_parser().parse_args(["sweep", "--grid", "lr=0.1", "--scheduler", "tcp://host:port"])


def _captured_sweep(monkeypatch, status="ok"):
    seen = {}

    def fake(trials, source, **kwargs):
        seen.update(trials=trials, **kwargs)
        records = [{"trial": n, "params": p, "status": status, "error": None if status == "ok" else "E: x",
                    "val_accuracy": 0.5, "val_loss": 1.0, "test_accuracy": 0.5, "train_seconds": 1.0,
                    "samples_per_second": 1.0} for n, p in enumerate(trials)]
        return sweeps.SweepResult(records, swept=kwargs["swept"], executor="test")

    monkeypatch.setattr(sweeps, "run_trials", fake)
    return seen


def test_cli_distributions_are_swept_columns_drawn_with_the_seed(monkeypatch, capsys, tmp_path):
    seen = _captured_sweep(monkeypatch)
    status = main(["sweep", "--data", str(tmp_path), "--grid", "lr=loguniform:1e-3:1e-1", "--trials", "3", "--seed", "5"])
    assert status == 0 and seen["swept"] == ("lr",)
    expected = sweeps.make_trials({"seed": 5}, distributions={"lr": "loguniform:1e-3:1e-1"}, n_trials=3)
    assert [t["lr"] for t in seen["trials"]] == [t["lr"] for t in expected]
    _captured_sweep(monkeypatch, status="failed")
    assert main(["sweep", "--data", str(tmp_path), "--grid", "lr=0.1,0.2"]) == 1  # no trial finished
    capsys.readouterr()


def test_a_worker_keeps_one_dataset_and_checks_the_limit(tiny_mnist_dir):
    import gzip
    import os

    source = sweeps.data_source(tiny_mnist_dir, 300)
    sweeps._DATASETS.clear()
    sweeps._dataset(source)
    labels = tiny_mnist_dir / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(gzip.decompress(labels.read_bytes())))
    os.utime(labels, ns=(0, 0))
    sweeps._dataset(source)  # the files changed: loaded again, the stale copy dropped
    assert len(sweeps._DATASETS) == 1
    with pytest.raises(ValueError, match="limit 301 is more than the 300"):
        sweeps._dataset(sweeps.data_source(tiny_mnist_dir, 301))


def test_trials_in_threads_of_one_process_load_the_data_once(tiny_mnist_dir, monkeypatch):
    # with no lock, four trials on a ThreadPoolExecutor(4) loaded the data four times (audit 42)
    from fastmlp import data

    loads, real_load = [], data.load_dataset

    def slow_load(*args, **kwargs):
        loads.append(1)
        time.sleep(0.2)  # (all four threads arrive while the first loads)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(data, "load_dataset", slow_load)
    sweeps._DATASETS.clear()
    source = sweeps.data_source(tiny_mnist_dir, 300)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        loaded = list(pool.map(lambda _: sweeps._dataset(source)[1], range(4)))
    assert len(loads) == 1 and sorted(loaded) == [False, True, True, True]


def test_a_record_holds_what_its_run_did(tiny_mnist_dir, monkeypatch):
    made, histories = [], []
    real_init, real_fit = fastmlp.MLP.__init__, fastmlp.MLP.fit

    def init(self, *args, **kwargs):
        made.append(kwargs)
        real_init(self, *args, **kwargs)

    def fit(self, *args, **kwargs):
        histories.append(real_fit(self, *args, **kwargs))
        return histories[-1]

    monkeypatch.setattr(fastmlp.MLP, "__init__", init)
    monkeypatch.setattr(fastmlp.MLP, "fit", fit)
    base = {"layers": [784, 8, 10], "epochs": 3, "seed": 3, "batch_size": 8}
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        record = fastmlp.sweep(base, grid={"lr": [0.1]}, executor=pool, data=tiny_mnist_dir).trials[0]
    assert made[-1].get("threads") == 1  # a worker per core, a thread each
    assert record["epochs_trained"] == 3 and record["train_seconds"] == sum(histories[-1].seconds)
    # 270 training samples an epoch (300 less a 0.1 validation split), 3 epochs
    assert record["samples_per_second"] * record["train_seconds"] == pytest.approx(3 * 270)
    stopping = {"layers": [784, 16, 10], "epochs": 30, "seed": 3, "early_stopping": 2, "batch_size": 4}
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        record = fastmlp.sweep(stopping, grid={"lr": [5.0]}, executor=pool, data=tiny_mnist_dir).trials[0]
    assert record["status"] == "ok" and record["stop_reason"].startswith("early stopping") and record["epochs_trained"] < 30


def test_a_sweep_beside_another_cluster_warns_of_no_port():
    """Two sweeps at once: the second printed Dask's three-line "Port 8787 is already in use"
    warning (the scheduler's HTTP server took 8787 even without a dashboard: audit 34)."""
    pytest.importorskip("distributed")
    import socket
    import warnings

    with socket.socket() as taken:
        try:
            taken.bind(("", 8787))
        except OSError:
            pytest.skip("port 8787 is in use here already")
        taken.listen()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with sweeps._dask_executor(1, None) as (pool, _):
                assert pool.submit(sum, [1, 2]).result() == 3
    assert not [str(w.message) for w in caught if "already in use" in str(w.message)]


DASK_CTRL_C = """
import signal, sys, time
from fastmlp import sweeps

# Python's own Ctrl-C, as in a terminal: a suite started in the background (`.ci/run ... &`)
# ignores SIGINT, and so did this script, which then slept its 60 s out and passed untested
signal.signal(signal.SIGINT, signal.default_int_handler)
with sweeps._dask_executor(2, None) as (pool, _):
    futures = [pool.submit(time.sleep, 60) for _ in range(2)]
    try:
        time.sleep(1)
        print("running", flush=True)
        time.sleep(60)
    except KeyboardInterrupt:  # as run_trials: the unfinished trials are cancelled, the cluster closed
        print("interrupted", flush=True)
        for future in futures:
            future.cancel()
print("stopped", flush=True)
"""


def test_ctrl_c_of_a_sweep_on_its_own_dask_cluster_says_nothing_of_dask(tmp_path):
    """A terminal's Ctrl-C (SIGINT to the whole process group) stopped the LocalCluster's worker
    processes too, with ~70 lines of Dask's tracebacks and warnings before the sweep's own line
    (audit 39 #6)."""
    pytest.importorskip("distributed")
    import os
    import signal
    import subprocess

    sweep = subprocess.Popen([sys.executable, "-c", DASK_CTRL_C], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, cwd=tmp_path, start_new_session=True)
    try:
        assert sweep.stdout.readline() == "running\n"
        os.killpg(sweep.pid, signal.SIGINT)
        try:
            out, err = sweep.communicate(timeout=120)  # (4-11 s alone; once over 60 s in a loaded suite)
        except subprocess.TimeoutExpired:
            os.killpg(sweep.pid, signal.SIGKILL)
            out, err = sweep.communicate()
            pytest.fail(f"no end within 120 s of the Ctrl-C; stdout {out!r}, stderr:\n{err}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(sweep.pid, signal.SIGKILL)
    assert out == "interrupted\nstopped\n" and sweep.returncode == 0
    assert "Traceback" not in err and "WARNING" not in err, err


def test_an_unknown_name_in_the_grid_is_told_what_can_be_swept():
    # the list offered validation_fraction, which a sweep refuses to sweep (audit 37)
    with pytest.raises(ValueError, match=r"^grid: unknown parameter 'learning_rate'; a sweep sweeps layers,") as error:
        sweeps.make_trials(BASE, {"learning_rate": [0.1]})
    assert "validation_fraction" not in str(error.value) and ", lr," in str(error.value)
    with pytest.raises(ValueError, match=r"^base_params: unknown parameter 'learning_rate'; a sweep sets .*validation"):
        sweeps.make_trials({**BASE, "learning_rate": 0.1}, {"lr": [0.1]})


def test_a_trials_future_is_let_go_once_its_record_is_read(tiny_mnist_dir):
    """The sweep held every trial's future to its end: on Dask each result stayed on the cluster,
    which recomputed a lost worker's finished trials (audit 39). A future read is let go: by the
    next trial's record, no reference to the one before is left."""
    import gc
    import weakref

    submitted = []

    class Recording(concurrent.futures.ThreadPoolExecutor):
        def submit(self, *args, **kwargs):
            future = super().submit(*args, **kwargs)
            submitted.append(weakref.ref(future))
            return future

    alive_at_each_record = []

    def on_result(record):
        gc.collect()
        alive_at_each_record.append(sum(ref() is not None for ref in submitted))

    with Recording(1) as pool:
        result = fastmlp.sweep(BASE, grid={"lr": [0.05, 0.1, 0.2]}, executor=pool, data=tiny_mnist_dir,
                               on_result=on_result)
    assert [record["status"] for record in result.trials] == ["ok"] * 3
    assert alive_at_each_record == [3, 2, 1]  # the one being read, and those not yet read


def test_closing_the_process_pool_stops_the_trials_still_running():
    # audit 80: _process_executor terminated the workers from pool._processes after
    # pool.shutdown(), which sets it to None: nothing was terminated, so a SIGTERM (or a Ctrl-C
    # that reached the sweep alone) waited at exit for every running trial to end (15 s in the
    # audit, a long trial's whole length), and a second Ctrl-C in that wait hung the command
    # for good (the workers waiting on a queue nobody fed)
    processes = []
    try:
        with sweeps._process_executor(1) as (pool, _):
            pool.submit(time.sleep, 120)
            deadline = time.monotonic() + 60
            while not pool._processes and time.monotonic() < deadline:
                time.sleep(0.05)
            processes = list(pool._processes.values())
            time.sleep(2)  # the worker has started and taken the task
        for process in processes:
            process.join(15)
        assert processes and not any(process.is_alive() for process in processes)
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
