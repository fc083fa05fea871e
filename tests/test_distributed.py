"""Data-parallel SGD on MPI (fastmlp.distributed): two ranks under ``mpiexec -n 2`` train what one
process trains, from the API and from the command line; only rank 0 prints and writes; the
cases that cannot or need not be distributed."""

import inspect
import json
import os
import shutil
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import fastmlp
from fastmlp.cli import main
from fastmlp.distributed import DistributedWarning

# Two ranks against one process, relative to max|W| after the run: the batch sums run in
# another order (per rank, then across ranks). Measured here: float64 ~1e-14, float32 ~3e-7.
WEIGHTS_RTOL = {"float64": 1e-12, "float32": 1e-5}

# (dtype, fit options): plain SGD; Adam with decoupled decay and dropout, a schedule and early
# stopping on a validation split; Nesterov momentum with coupled decay and both dropouts, and
# a last batch shorter than the others (200 samples in batches of 48).
CASES = [
    ("float64", {"batch_size": 32, "lr": 0.1}),
    ("float64", {"batch_size": 25, "lr": 0.01, "optimizer": "adam", "weight_decay": 1e-3, "decoupled_weight_decay": True,
                 "dropout": 0.2, "lr_schedule": "cosine", "validation_fraction": 0.2, "early_stopping": 2}),
    ("float32", {"batch_size": 48, "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4,
                 "dropout": 0.25, "input_dropout": 0.1}),
]
EPOCHS = 3
DIVERGING_LR = 1e10  # a float32 identity network's loss overflows in the third batch


def data(rng):
    X = rng.integers(0, 256, size=(200, 40)).astype(np.uint8)
    X[rng.random(X.shape) < 0.5] = 0
    y = (X[:, :4].sum(axis=1) // 128 % 4).astype(np.int64)  # something to learn
    return X, y


def fit(dtype, options, X, y, **kwargs):
    model = fastmlp.MLP([40, 12, 4], activation="tanh", dtype=dtype, seed=5)
    history = model.fit(X, y, epochs=EPOCHS, progress=False, **options, **kwargs)
    return model, history


def mpiexec():
    """mpiexec next to this Python (the mpich wheel's), or on PATH, with mpi4py importable; else a skip."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        pytest.skip('mpi4py is not installed: pip install "fastmlp[mpi]"')
    local = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    command = local if os.path.exists(local) else shutil.which("mpiexec")
    if command is None:
        pytest.skip('no mpiexec found: pip install "fastmlp[mpi]" (the mpich wheel brings one)')
    return command


# The longest of these runs took 11.5 s in CI (AMD EPYC Zen 2, 2026-12-04): a rank that hangs (a
# collective one rank never reaches) fails its test after RANKS_TIMEOUT instead of holding CI for 10 minutes
RANKS_TIMEOUT = 180


def run_two_ranks(argv, cwd):
    env = dict(os.environ, NUMBA_NUM_THREADS="1")  # one thread per rank: the two share the cores
    return subprocess.run([mpiexec(), "-n", "2", sys.executable, *argv], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=RANKS_TIMEOUT)


def far_target():
    """A regression whose row 16 is far out of range (1e20: a float32 loss overflows)."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(64, 10)), rng.normal(size=(64, 1))
    y[16, 0] = 1e20
    return X, y


RANKS_SCRIPT = """
import json, sys
import numpy as np
import fastmlp
from mpi4py import MPI

FAR_TARGET

comm = MPI.COMM_WORLD
cases = json.loads(sys.argv[1])
arrays = np.load("data.npz")
results = {}
for number, (dtype, options) in enumerate(cases):
    model = fastmlp.MLP([40, 12, 4], activation="tanh", dtype=dtype, seed=5)
    history = model.fit(arrays["X"], arrays["y"], epochs=%d, progress=False, distributed=True, **options)
    everyone = comm.gather(model.params_, root=0)
    if comm.rank == 0:
        results[f"params{number}"] = model.params_
        results[f"loss{number}"] = np.array(history.loss)
        results[f"accuracy{number}"] = np.array(history.accuracy)
        results[f"same_on_both_ranks{number}"] = np.array(all(np.array_equal(everyone[0], p) for p in everyone))
model = fastmlp.MLP([40, 12, 4], activation="identity", dtype="float32", seed=5)
try:
    model.fit(arrays["X"], arrays["y"], epochs=%d, batch_size=32, lr=DIVERGING_LR, progress=False, distributed=True)
except fastmlp.DivergenceError as error:  # raised on every rank, or the run would hang
    results["diverged"] = np.array([error.epoch, error.sample, error.row])
    results["diverged_params"] = model.params_
# the loss overflows first in rank 1's share of a batch (row 16 of the first batch of 32): every
# rank stops at that sample, as one process does
X_far, y_far = far_target()
try:
    fastmlp.MLP([10, 1], activation="identity", loss="mse", dtype="float32", seed=1).fit(
        X_far, y_far, epochs=1, batch_size=32, shuffle=False, progress=False, distributed=True)
except fastmlp.DivergenceError as error:
    results["diverged_on_rank_1"] = np.array(comm.gather([error.epoch, error.sample, error.row], root=0))
# rank 1 scores its validation split otherwise (as a node of another CPU kind can, in the last
# bits; here far worse): early stopping decides on rank 0's scores on every rank (rank 1 stopped
# after epoch 2 and rank 0 waited for it in the next collective for ever)
own_metrics = fastmlp.MLP._metrics
if comm.rank == 1:
    fastmlp.MLP._metrics = lambda self, data, y: {**own_metrics(self, data, y), "loss": 1e3 + len(self.history_.epoch)}
history = fastmlp.MLP([40, 12, 4], seed=5).fit(arrays["X"], arrays["y"], epochs=4, batch_size=32, lr=0.1,
                                               validation_fraction=0.2, early_stopping=1, progress=False,
                                               distributed=True)
fastmlp.MLP._metrics = own_metrics
results["stopped"] = np.array(comm.gather([history.stopped_epoch] + history.val_loss, root=0))
# rank 1 alone fails before training (its checkpoint directory is missing there), then rank 1
# alone validates on other data, then builds its network with another activation (the same
# weights: the ranks' gradients were mixed, silently): every rank stops with an error at the
# start, none hangs
for number, (network, kwargs) in enumerate([
        ({}, {"checkpoint_path": "missing-here/run.npz" if comm.rank == 1 else "run.npz"}),
        ({}, {"validation_data": (arrays["X"][:20 + comm.rank], arrays["y"][:20 + comm.rank])}),
        ({"activation": "sigmoid" if comm.rank == 1 else "tanh"}, {}),
        ({"init": "uniform" if comm.rank == 1 else "auto"}, {}),
        ({}, {"epochs": 1 + comm.rank}),
        ({}, {"sample_weight": np.ones(len(arrays["y"])) if comm.rank == 1 else None})]):
    try:
        fastmlp.MLP([40, 12, 4], seed=5, **network).fit(arrays["X"], arrays["y"], batch_size=32, progress=False,
                                                        distributed=True, **kwargs)
    except ValueError as error:
        results[f"refused{number}"] = np.array(comm.gather(f"{type(error).__name__}: {error}", root=0))
# rank 0 cannot write its second checkpoint (disk full) after the ranks began (rank 1 passes no
# path: rank 0's call decides): every rank raises, none waits in the next collective for ever
saves = []
saving = fastmlp.MLP.save


def full_disk(self, path):
    saves.append(path)
    if len(saves) == 2:
        raise OSError(28, "No space left on device")
    saving(self, path)


fastmlp.MLP.save = full_disk
try:
    fastmlp.MLP([40, 12, 4], seed=5).fit(arrays["X"], arrays["y"], epochs=5, batch_size=32, progress=False,
                                         distributed=True, checkpoint_path="run.npz" if comm.rank == 0 else None)
except ValueError as error:
    results["disk_full"] = np.array(comm.gather(f"{type(error).__name__}: {error} ({len(saves)} saves)", root=0))
fastmlp.MLP.save = saving
# rank 1's on_epoch raises after epoch 2 (its log's disk is full, say): every rank stops there
# (rank 0 went on to epoch 3 and waited for rank 1 in its first collective for ever)


def listener(history):
    if comm.rank == 1 and len(history.epoch) == 2:
        raise RuntimeError("the log is full")


try:  # (rank 0 passes none: that rank is told all the same)
    fastmlp.MLP([40, 12, 4], seed=5).fit(arrays["X"], arrays["y"], epochs=4, batch_size=32, progress=False,
                                         distributed=True, on_epoch=listener if comm.rank == 1 else None)
except Exception as error:
    results["listener"] = np.array(comm.gather(f"{type(error).__name__}: {error}", root=0))
if comm.rank == 0:
    np.savez("result.npz", ranks=comm.size, **results)
""" % (EPOCHS, EPOCHS)


def test_two_ranks_train_what_one_process_trains(rng, tmp_path):
    command = mpiexec()  # skips before any work when MPI is missing
    X, y = data(rng)
    np.savez(tmp_path / "data.npz", X=X, y=y)
    assert command
    script = textwrap.dedent(RANKS_SCRIPT).replace("DIVERGING_LR", repr(DIVERGING_LR))
    script = script.replace("FAR_TARGET", inspect.getsource(far_target))
    (tmp_path / "ranks.py").write_text(script)
    done = run_two_ranks(["ranks.py", json.dumps(CASES)], tmp_path)
    assert done.returncode == 0, done.stderr
    result = np.load(tmp_path / "result.npz")
    assert int(result["ranks"]) == 2
    for number, (dtype, options) in enumerate(CASES):
        single, history = fit(dtype, options, X, y)
        params = result[f"params{number}"]
        assert bool(result[f"same_on_both_ranks{number}"])  # every rank took the same steps
        assert not np.array_equal(params, fastmlp.MLP([40, 12, 4], dtype=dtype, seed=5).initialize().params_)
        scale = np.abs(single.params_).max()
        assert np.abs(params - single.params_).max() <= WEIGHTS_RTOL[dtype] * scale, (dtype, options)
        np.testing.assert_allclose(result[f"loss{number}"], history.loss, rtol=WEIGHTS_RTOL[dtype])
        np.testing.assert_allclose(result[f"accuracy{number}"], history.accuracy, atol=0.011)  # 2 of its 180 rows

    # a diverging run stops at the same sample on both ranks as in one process, weights rolled back alike
    single = fastmlp.MLP([40, 12, 4], activation="identity", dtype="float32", seed=5)
    with pytest.raises(fastmlp.DivergenceError) as diverged:
        single.fit(X, y, epochs=EPOCHS, batch_size=32, lr=DIVERGING_LR, progress=False)
    error = diverged.value
    np.testing.assert_array_equal(result["diverged"], [error.epoch, error.sample, error.row])
    np.testing.assert_allclose(result["diverged_params"], single.params_, rtol=WEIGHTS_RTOL["float32"])
    with pytest.raises(fastmlp.DivergenceError) as diverged:
        fastmlp.MLP([10, 1], activation="identity", loss="mse", dtype="float32", seed=1).fit(
            *far_target(), epochs=1, batch_size=32, shuffle=False, progress=False)
    error = diverged.value
    assert error.row == 16
    np.testing.assert_array_equal(result["diverged_on_rank_1"], [[error.epoch, error.sample, error.row]] * 2)

    # both ranks stopped where rank 0's own validation scores say (past epoch 2, where rank 1's would)
    stopped = result["stopped"]
    assert stopped[0].tolist() == stopped[1].tolist() and stopped[0][0] > 2, stopped

    # a rank that failed before training was waited for by the others for ever; ranks that
    # validate on different data trained different runs
    rank0, rank1 = result["refused0"]
    assert rank0.startswith("RanksFailed: distributed training: rank 1 failed before training, so no rank trains: "
                            "ValueError: checkpoint_path 'missing-here/run.npz'")
    assert rank1.startswith("ValueError: checkpoint_path 'missing-here/run.npz'")
    assert all(message.startswith("RanksFailed: distributed training: rank 1 differs from rank 0 in validation_data")
               for message in result["refused1"])
    for number, words in ((2, "network"), (3, "params"), (4, "epochs"), (5, "data, sample_weight")):
        assert all(message.startswith(f"RanksFailed: distributed training: rank 1 differs from rank 0 in {words}")
                   for message in result[f"refused{number}"]), result[f"refused{number}"]
    # a write that failed on rank 0 during training: every rank stops with its error (the job hung)
    assert [message.startswith("RanksFailed: distributed training: rank 0 failed during training, so every rank stops: "
                               "OSError: [Errno 28] No space left on device") for message in result["disk_full"]] == [True] * 2
    assert result["disk_full"][0].endswith("(2 saves)") and result["disk_full"][1].endswith("(0 saves)")
    # an on_epoch that raised on one rank: every rank stops (the others waited for it)
    assert result["listener"].tolist() == [
        "RanksFailed: distributed training: rank 1 failed during training, so every rank stops: RuntimeError: the log is full",
        "RuntimeError: the log is full"]


def test_cli_on_two_ranks_prints_and_writes_once_and_resumes(tiny_mnist_dir, tmp_path, capsys):
    work = tmp_path / "work"
    work.mkdir()
    train = ["-m", "fastmlp", "train", "--data", str(tiny_mnist_dir), "--layers", "784,16,10", "--batch-size", "20",
             "--optimizer", "adam", "--lr", "0.01", "--dropout", "0.1", "--dtype", "float64", "--no-progress"]
    done = run_two_ranks([*train, "--distributed", "--epochs", "2", "--save", "two.npz", "--json"], work)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1  # one JSON line: rank 1 printed nothing
    result = json.loads(done.stdout)
    assert result["ranks"] == 2 and result["epochs_trained"] == 2 and result["saved"] == "two.npz"
    assert os.listdir(work) == ["two.npz"]  # no stray temporary file of a second writer

    status = main([*train[2:], "--epochs", "2", "--save", str(work / "one.npz"), "--json"])
    assert status == 0
    capsys.readouterr()
    two, one = fastmlp.MLP.load(work / "two.npz"), fastmlp.MLP.load(work / "one.npz")
    assert np.abs(two.params_ - one.params_).max() <= WEIGHTS_RTOL["float64"] * np.abs(one.params_).max()

    # 1 epoch with a checkpoint, then --resume to 2, all on two ranks: the uninterrupted run, bitwise
    done = run_two_ranks([*train, "--distributed", "--epochs", "1", "--save", "half.npz"], work)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("epoch 1:") == 1 and "on 2 MPI ranks" in done.stdout
    done = run_two_ranks(["-m", "fastmlp", "train", "--data", str(tiny_mnist_dir), "--distributed", "--resume",
                          "half.npz", "--epochs", "2", "--save", "resumed.npz"], work)
    assert done.returncode == 0, done.stderr
    resumed = fastmlp.MLP.load(work / "resumed.npz")
    np.testing.assert_array_equal(resumed.params_, two.params_)
    np.testing.assert_array_equal(resumed.optimizer_state_.slots, two.optimizer_state_.slots)


def test_cli_a_rank_without_its_data_stops_every_rank(tiny_mnist_dir, tmp_path):
    # rank 1 said "MNIST data not found" and exited; rank 0 waited for it for ever
    command = mpiexec()
    env = dict(os.environ, NUMBA_NUM_THREADS="1")
    train = [sys.executable, "-m", "fastmlp", "train", "--distributed", "--layers", "784,8,10", "--batch-size", "20",
             "--no-progress"]
    done = subprocess.run([command, "-n", "1", *train, "--data", str(tiny_mnist_dir), ":", "-n", "1", *train, "--data",
                           str(tmp_path / "not-on-this-node")], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=300)
    assert done.returncode == 1
    assert ("fastmlp: error: distributed training: rank 1 failed before training, so no rank trains: "
            "DataNotFoundError: MNIST data not found") in done.stderr
    # every rank raised: none is stopped by MPI_Abort (rank 1 aborted the job, racing rank 0's message)
    assert "Abort" not in done.stderr, done.stderr


def test_cli_a_rank_whose_arguments_fail_stops_every_rank(tiny_mnist_dir, tmp_path):
    """A usage error of one rank's alone (its --resume file or --plot directory missing on its
    node): that rank exited before MPI started, and the other waited in MPI_Init for ever."""
    command = mpiexec()
    env = dict(os.environ, NUMBA_NUM_THREADS="1")
    train = [sys.executable, "-m", "fastmlp", "train", "--distributed", "--data", str(tiny_mnist_dir), "--layers",
             "784,8,10", "--batch-size", "20", "--no-progress"]
    subprocess.run([command, "-n", "2", *train, "--save", "run.npz"], cwd=tmp_path, env=env, check=True,
                   capture_output=True, timeout=RANKS_TIMEOUT)
    elsewhere = tmp_path / "node1"
    elsewhere.mkdir()
    done = subprocess.run([command, "-n", "1", "-wdir", str(tmp_path), *train, "--resume", "run.npz", "--epochs", "2",
                           ":", "-n", "1", "-wdir", str(elsewhere), *train, "--resume", "run.npz", "--epochs", "2"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2  # the usage status on every rank (2 and 1 made mpiexec's 3)
    assert "fastmlp: error: fastmlp train: argument --resume: no such file: 'run.npz'" in done.stderr
    assert ("fastmlp: error: distributed training: rank 1 failed before training, so no rank trains: UsageError: "
            "fastmlp train: argument --resume: no such file") in done.stderr


def test_a_sigterm_ends_a_rank_that_waits_inside_mpi(tmp_path):
    """A rank in a collective that another rank never joins runs no Python signal handler: it
    took no notice of a SIGTERM (a batch system's time-out), and the job ran until SIGKILL. The
    command line's watchdog ends it after a grace period, and mpiexec the others with it."""
    import signal
    import time

    script = tmp_path / "stuck.py"
    script.write_text(textwrap.dedent("""
        import os, signal, sys, threading, time
        from mpi4py import MPI
        from fastmlp import cli
        comm = MPI.COMM_WORLD
        if comm.Get_rank() == 1:
            time.sleep(120)  # never joins the barrier
            sys.exit(0)
        signal.signal(signal.SIGTERM, cli._terminate)
        cli._MPIWatchdog.grace = 1.0
        cli._MPIWatchdog().start()

        def wait_for_rank_1():
            comm.Barrier()

        def tell():  # the pid, once the main thread waits in the barrier (a SIGTERM before it is Python's,
            # and then MPI_Finalize at exit waits for rank 1): once its frame is wait_for_rank_1's,
            # whose one statement is the call (0.2 s for the call to be entered). A fixed 3 s from
            # the start was a guess at how long the imports take (1 s timed out once, under load).
            main = threading.main_thread().ident
            while sys._current_frames()[main].f_code.co_name != "wait_for_rank_1":
                time.sleep(0.01)
            time.sleep(0.2)
            open("rank0.pid.part", "w").write(str(os.getpid()))
            os.rename("rank0.pid.part", "rank0.pid")

        threading.Thread(target=tell, daemon=True).start()
        wait_for_rank_1()
    """))
    env = dict(os.environ, NUMBA_NUM_THREADS="1")
    job = subprocess.Popen([mpiexec(), "-n", "2", sys.executable, str(script)], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "rank0.pid").exists() and time.monotonic() < deadline and job.poll() is None:
            time.sleep(0.05)
        os.kill(int((tmp_path / "rank0.pid").read_text()), signal.SIGTERM)
        # (without the watchdog rank 0 waits for ever: communicate's timeout fails the test)
        _, err = job.communicate(timeout=60)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    # rank 0 ends with 143; mpiexec reports it, or the SIGKILL it then sends rank 1 (9), whichever it sees first
    assert job.returncode in (143, 9), err
    assert "stopped by SIGTERM (this rank was waiting inside MPI" in err


FAILS_BEFORE_FIT = """
import sys
import numpy as np
import fastmlp
from fastmlp import distributed
from mpi4py import MPI

distributed.WAIT_NOTE_SECONDS = 0.5
if MPI.COMM_WORLD.Get_rank() == 1:
    raise FileNotFoundError("rank 1's data is missing on its node")  # before its fit: the others cannot know
rng = np.random.default_rng(0)
fastmlp.MLP([8, 4, 2], seed=0).fit(rng.normal(size=(32, 8)), rng.integers(0, 2, 32), batch_size=8, progress=False,
                                   distributed=True)
"""


@pytest.mark.parametrize("runner", ["python", "python -m mpi4py"])
def test_a_rank_whose_script_fails_before_its_fit(tmp_path, runner):
    """Audit 78: the README's ``mpiexec -n 2 python train.py`` with one rank's script raising
    before ``fit(distributed=True)`` left rank 0 spinning at full CPU in the fit's first
    collective, for ever and in silence. Rank 0 now waits in Python and says why on stderr (with
    what to do: ``python -m mpi4py``, which the README's example uses and which ends the job)."""
    import signal
    import threading
    import time

    script = tmp_path / "fails_before_fit.py"
    script.write_text(FAILS_BEFORE_FIT)
    env = dict(os.environ, NUMBA_NUM_THREADS="1")
    command = [mpiexec(), "-n", "2", sys.executable, *runner.split()[1:], str(script)]
    job = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env,
                           start_new_session=True)
    try:
        if runner == "python":
            lines = []  # stderr, read by a thread (a readline with nothing to come would wait for ever)
            threading.Thread(target=lambda: lines.extend(iter(job.stderr.readline, "")), daemon=True).start()
            deadline = time.monotonic() + 60
            while not any("has waited" in line for line in lines) and time.monotonic() < deadline:
                time.sleep(0.05)
            seen = "".join(lines)  # (rank 1's traceback, then rank 0's note)
            os.killpg(job.pid, signal.SIGTERM)
            assert "fastmlp: rank 0 has waited" in seen and "python -m mpi4py" in seen, seen
        else:  # mpi4py's runner aborts every rank on rank 1's exception
            _, err = job.communicate(timeout=RANKS_TIMEOUT)
            assert job.returncode != 0 and "rank 1's data is missing on its node" in err, err
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)


def long_run_until_checkpointed(data_dir, cwd, checkpoint, then):
    """``mpiexec -n 2 fastmlp train --distributed`` of (practically) endless epochs writing
    ``checkpoint`` every epoch; once the file is there, ``then(job)``; returns (status, stderr)
    of the job, which must end within a minute (else it is killed and the test fails)."""
    import signal
    import time

    command = mpiexec()
    env = dict(os.environ, NUMBA_NUM_THREADS="1")
    job = subprocess.Popen([command, "-n", "2", sys.executable, "-m", "fastmlp", "train", "--distributed", "--data",
                            str(data_dir), "--layers", "784,32,10", "--batch-size", "4", "--epochs", "100000",
                            "--no-progress", "--save", str(checkpoint), "--checkpoint-every", "1"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, env=env,
                           start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not checkpoint.exists() and time.monotonic() < deadline and job.poll() is None:
            time.sleep(0.05)
        assert checkpoint.exists(), job.communicate(timeout=60)
        then(job)
        _, err = job.communicate(timeout=60)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    return job.returncode, err


def test_cli_sigterm_ends_every_rank_with_143_and_keeps_the_checkpoint(tiny_mnist_dir, tmp_path):
    # a rank that had left the training loop stranded the other in a collective, where no
    # signal handler runs: the job hung after a batch system's SIGTERM
    import signal

    def sigterm(job):
        os.kill(job.pid, signal.SIGTERM)  # mpiexec passes it on to the ranks, as Slurm's time-out does

    status, err = long_run_until_checkpointed(tiny_mnist_dir, tmp_path, tmp_path / "run.npz", sigterm)
    assert status == 143, err
    assert "stopped by SIGTERM" in err or "(SIGTERM)" in err
    assert fastmlp.MLP.load(tmp_path / "run.npz").epochs_trained_ >= 1


def test_cli_a_rank_that_fails_during_training_stops_every_rank(tiny_mnist_dir, tmp_path):
    # rank 0 could not write a checkpoint (its directory gone) and exited; rank 1 waited in the
    # next collective for ever
    # (the directory is moved away in one step: removing it raced with the checkpoint being written into it)
    runs = tmp_path / "runs"
    runs.mkdir()
    status, err = long_run_until_checkpointed(tiny_mnist_dir, tmp_path, runs / "run.npz",
                                              lambda job: runs.rename(tmp_path / "gone"))  # the next cannot be written
    assert status == 1, err
    assert "fastmlp: error: " in err and "runs" in err


def test_without_mpi4py_a_note_then_training_as_usual(rng, monkeypatch, tiny_mnist_dir, capsys):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import mpi4py now raises ImportError
    X, y = data(rng)
    dtype, options = CASES[0]
    with pytest.warns(DistributedWarning, match=r"needs mpi4py.*fastmlp\[mpi\].*in this one process"):
        distributed, _ = fit(dtype, options, X, y, distributed=True)
    single, _ = fit(dtype, options, X, y)
    np.testing.assert_array_equal(distributed.params_, single.params_)

    status = main(["train", "--data", str(tiny_mnist_dir), "--layers", "784,8,10", "--batch-size", "50", "--distributed",
                   "--json"])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert "fastmlp: note: distributed training needs mpi4py" in err
    assert json.loads(out)["ranks"] == 1


def test_under_a_launcher_without_mpi4py_a_rank_does_not_train_alone(monkeypatch, tiny_mnist_dir, capsys):
    """mpiexec -n 2 on nodes without mpi4py: each rank trained the whole run alone, printed its
    results and wrote the same --save file (or, with mpi4py on the other node, left it waiting)."""
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setenv("PMI_RANK", "1")
    argv = ["train", "--data", str(tiny_mnist_dir), "--layers", "784,8,10", "--batch-size", "50", "--json"]
    status = main([*argv, "--distributed"])
    out, err = capsys.readouterr()
    assert status == 1 and out == ""
    assert "needs mpi4py and an MPI library" in err and "(rank 1) was started as one of 2 MPI processes (PMI_SIZE=2)" in err
    with pytest.raises(RuntimeError, match="started as one of 2 MPI processes"):
        fastmlp.MLP([784, 8, 10]).fit(np.zeros((4, 784)), np.arange(4), batch_size=2, distributed=True)
    # without --distributed: each trains alone, as asked, with a note that says so
    status = main(argv)
    out, err = capsys.readouterr()
    assert status == 0 and json.loads(out)["ranks"] == 1
    assert "fastmlp: note: started as one of 2 MPI processes (PMI_SIZE) without --distributed" in err


def test_a_launcher_of_n_processes_whose_mpi_sees_one_rank_does_not_train_alone(monkeypatch):
    """Open MPI's mpiexec -n 2 over an mpi4py built on another MPI (the mpich wheel): each process
    saw one rank and trained the whole run alone, printing and writing --save (audit 61)."""
    pytest.importorskip("mpi4py", reason='mpi4py is not installed: pip install "fastmlp[mpi]"')
    from mpi4py import MPI  # (initialised here, before the variables: a single rank)

    from fastmlp.distributed import communicator

    assert MPI.COMM_WORLD.Get_size() == 1
    assert communicator(True)[0] is None  # no launcher: a note, training in this process
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "1")
    with pytest.raises(RuntimeError, match=r"^this process \(rank 1\) was started as one of 2 MPI processes "
                                           r"\(OMPI_COMM_WORLD_SIZE=2\), but MPI sees a single rank: mpi4py's MPI "
                                           r"library is not the launcher's"):
        fastmlp.MLP([20, 4, 3]).fit(np.zeros((8, 20)), np.arange(8) % 3, batch_size=4, distributed=True,
                                    progress=False)
    # a communicator passed on purpose is taken as it is (COMM_SELF: one rank, a note)
    assert communicator(MPI.COMM_SELF)[0] is None


def test_numpy_booleans_and_comm_null_as_distributed(monkeypatch):
    # np.True_ was refused where every other flag takes it; COMM_NULL (what a Split gives the ranks
    # it leaves out) raised mpi4py's bare "Invalid communicator" (audit 61)
    pytest.importorskip("mpi4py", reason='mpi4py is not installed: pip install "fastmlp[mpi]"')
    from mpi4py import MPI

    from fastmlp.distributed import communicator

    assert communicator(np.False_) == (None, None)
    comm, note = communicator(np.True_)
    assert comm is None and "single MPI rank" in note
    with pytest.raises(ValueError, match="^distributed is MPI.COMM_NULL: this process is in no communicator"):
        communicator(MPI.COMM_NULL)
    X, y = np.zeros((8, 20), np.uint8), np.arange(8) % 3  # (pixels: the kernel every fit compiles)
    fastmlp.MLP([20, 4, 3], backend="numpy").fit(X, y, batch_size=4, distributed=np.False_, progress=False)
    with pytest.warns(fastmlp.distributed.DistributedWarning, match="single MPI rank"):
        fastmlp.MLP([20, 4, 3]).fit(X, y, batch_size=4, distributed=np.True_, progress=False)


@pytest.mark.parametrize("environ, expected", [
    ({}, None), ({"PMI_SIZE": "1", "PMI_RANK": "0"}, None), ({"PMI_SIZE": "4", "PMI_RANK": "3"}, (4, 3, "PMI_SIZE")),
    ({"OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "0"}, (2, 0, "OMPI_COMM_WORLD_SIZE")),
    ({"PMI_SIZE": "two"}, None),
])
def test_launched_as_reads_the_launchers_variables(environ, expected):
    from fastmlp.distributed import launched_as

    assert launched_as(environ) == expected


def test_cli_errors_every_rank_meets_alike_are_said_once(tiny_mnist_dir, tmp_path):
    """Said once per rank (64 times on 64 ranks), sometimes two on a line; a divergence, raised
    on every rank alike, ended through MPI_Abort with MPICH's noise."""
    train = ["-m", "fastmlp", "train", "--distributed", "--data", str(tiny_mnist_dir), "--layers", "784,8,10",
             "--batch-size", "20", "--no-progress"]
    done = run_two_ranks([*train, "--save", str(tmp_path / "missing" / "m.npz")], tmp_path)
    assert done.returncode == 2
    assert done.stderr.count("fastmlp: error:") == 1 and "--save" in done.stderr, done.stderr
    done = run_two_ranks([*train, "--activation", "identity", "--lr", "1e10", "--epochs", "3"], tmp_path)
    assert done.returncode == 1
    assert done.stderr.count("fastmlp: error: training diverged") == 1 and "Abort" not in done.stderr, done.stderr
    # ranks given different options: every rank raised RanksFailed, and every rank said it
    command = [mpiexec(), "-n", "1", sys.executable, *train, "--lr", "0.1", ":", "-n", "1", sys.executable, *train,
               "--lr", "0.2"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=RANKS_TIMEOUT,
                          env=dict(os.environ, NUMBA_NUM_THREADS="1"))
    assert done.returncode == 1
    assert done.stderr.count("fastmlp: error: distributed training: rank 1 differs from rank 0 in options") == 1, \
        done.stderr


@pytest.mark.parametrize("optimizer", [{}, {"momentum": 0.9}])
def test_parameters_off_a_vector_boundary_train_on_an_aligned_copy_here_too(optimizer, monkeypatch):
    """As the numba backend does (tests/test_kernels.py): the data-parallel step gets its
    parameters and gradient on 64-byte boundaries, and the caller's array the same bits."""
    pytest.importorskip("mpi4py", reason='mpi4py is not installed: pip install "fastmlp[mpi]"')
    from mpi4py import MPI

    from fastmlp import kernels, network, optim
    from fastmlp.backends import make_backend
    from fastmlp.distributed import DistributedBackend
    from fastmlp.network import Architecture, init_params

    arch = Architecture((20, 16, 3), "sigmoid", "cross_entropy", dtype=np.float32)
    start = init_params(arch, "xavier", seed=1)
    rng = np.random.default_rng(0)
    X, y = (rng.random((64, 20)) * 255).astype(np.uint8), rng.integers(0, 3, 64)
    order = rng.permutation(64).astype(np.int64)
    chosen = optim.Optimizer(**optimizer)

    def train(params):
        backend = DistributedBackend(make_backend("numba", arch, 1), MPI.COMM_SELF)
        backend.train_chunk(params, backend.prepare(X), y, order, 0.1, 8, chosen, optim.State.fresh(chosen, start, 0))
        return params

    expected = train(start.copy())
    buffer = np.empty(start.nbytes + 64, np.uint8)
    off = buffer[-buffer.ctypes.data % 64 + 16 :][: start.nbytes].view(np.float32)
    off[:] = start
    assert off.ctypes.data % 64 == 16
    seen, real = [], kernels.gradient_step

    def gradient_step(params, slots, counters, scalars, grad, *args):
        seen.append((params.ctypes.data % 64, grad.ctypes.data % 64))
        return real(params, slots, counters, scalars, grad, *args)

    monkeypatch.setattr(kernels, "gradient_step", gradient_step)
    monkeypatch.setattr(network, "ALIGNED_COPY_SAMPLES", 64)  # (this call's 64 samples: copied)
    assert train(off) is off
    assert len(seen) == 8 and set(seen) == {(0, 0)}
    np.testing.assert_array_equal(off, expected)


def test_a_single_rank_is_a_note_then_training_as_usual(rng):
    pytest.importorskip("mpi4py", reason='mpi4py is not installed: pip install "fastmlp[mpi]"')
    X, y = data(rng)
    dtype, options = CASES[2]
    with pytest.warns(DistributedWarning, match="single MPI rank"):
        distributed, _ = fit(dtype, options, X, y, distributed=True)
    single, _ = fit(dtype, options, X, y)
    np.testing.assert_array_equal(distributed.params_, single.params_)


@pytest.mark.parametrize(
    "model, options, error, words",
    [
        ({}, {"batch_size": 1}, ValueError, "per-sample SGD (batch size 1) is sequential by nature"),
        ({"backend": "numpy"}, {"batch_size": 8}, ValueError, "backend='numba' only; got backend='numpy'"),
        ({}, {"batch_size": 8, "distributed": "yes"}, TypeError, "True, False or an mpi4py communicator; got 'yes'"),
    ],
)
def test_what_cannot_be_distributed_is_refused_before_training(rng, model, options, error, words):
    X, y = data(rng)
    mlp = fastmlp.MLP([40, 12, 4], **model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # refused outright, not noted
        with pytest.raises(error) as raised:
            mlp.fit(X, y, progress=False, **{"distributed": True, **options})
    assert words in str(raised.value)
    assert not hasattr(mlp, "params_")  # nothing changed


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--distributed"], "--distributed needs --batch-size 2 or more (default 1): per-sample SGD"),
        (["--distributed", "--batch-size", "8", "--backend", "numpy"], "--backend numba only; got --backend numpy"),
        # (each rank trains on one thread: it was accepted and ignored)
        (["--distributed", "--batch-size", "8", "--threads", "2"], "--threads 2 does not go with --distributed"),
        # a usage error met after the MPI lookup: the note that the run would train in this one
        # process came first (audit 61)
        (["--distributed", "--batch-size", "8", "--checkpoint-every", "1"], "--checkpoint-every needs --save FILE"),
    ],
)
def test_cli_refuses_what_cannot_be_distributed(capsys, tmp_path, argv, words):
    status = main(["train", "--data", str(tmp_path / "absent"), *argv])  # refused before the data is read
    out, err = capsys.readouterr()
    assert status == 2 and out == ""
    assert words in err and err.count("\n") == 1


def test_cli_takes_threads_1_with_distributed(capsys, tiny_mnist_dir):
    # one thread is what each rank trains on: --threads 1 was refused with --threads 2 (audit 61)
    status = main(["train", "--data", str(tiny_mnist_dir), "--layers", "784,8,10", "--batch-size", "50",
                   "--distributed", "--threads", "1", "--json"])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert json.loads(out)["ranks"] == 1


def test_fit_refuses_a_distributed_call_on_the_numpy_backend_before_mpi_starts():
    # it started MPI (0.3 s, and on every rank of a job) to refuse the backend after (audit 61)
    pytest.importorskip("mpi4py", reason='mpi4py is not installed: pip install "fastmlp[mpi]"')  # (else none starts)
    code = ("import sys, numpy as np, fastmlp\n"
            "try:\n"
            "    fastmlp.MLP([4, 3, 2], backend='numpy').fit(np.ones((6, 4)), np.arange(6) % 2, batch_size=2,\n"
            "                                              progress=False, distributed=True)\n"
            "except ValueError as error:\n"
            "    print(error, 'mpi4py' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/").stdout
    assert out == "distributed training runs on backend='numba' only; got backend='numpy' False\n"


def test_cli_resuming_a_per_sample_run_distributed_names_the_checkpoint(capsys, tiny_mnist_dir, tmp_path):
    # it said "--distributed needs --batch-size 2 or more (default 1)" to a user who gave none
    pytest.importorskip("mpi4py", reason='mpi4py is not installed: pip install "fastmlp[mpi]"')
    assert main(["train", "--data", str(tiny_mnist_dir), "--layers", "784,8,10", "--no-progress",
                 "--save", str(tmp_path / "ps.npz")]) == 0
    capsys.readouterr()
    status = main(["train", "--data", str(tiny_mnist_dir), "--distributed", "--resume", str(tmp_path / "ps.npz"),
                   "--epochs", "2"])
    err = capsys.readouterr().err
    assert status == 2 and "trains per-sample (batch size 1), which cannot be distributed" in err


def test_import_fastmlp_does_not_import_mpi4py():
    code = "import sys, fastmlp; print('mpi4py' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/").stdout
    assert out.strip() == "False"


@pytest.mark.parametrize("flag", ["--help", "-h", "--he"])
def test_train_distributed_help_prints_without_starting_mpi(flag, tmp_path):
    # every rank prints the help at once: starting MPI for it took 0.5 s (and a rank's MPI set-up)
    script = (f"import sys\nfrom fastmlp.cli import main\ntry:\n    main(['train', '--distributed', '{flag}'])\n"
              "except SystemExit as end:\n    assert end.code == 0, end.code\nprint('mpi4py' in sys.modules)\n")
    # (cwd: not the source tree, whose fastmlp/ has no kernels/ until installed)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: fastmlp train") and done.stdout.rstrip().endswith("\nFalse")


ALONE_FAILING_SCRIPT = """
import sys
import numpy as np
import fastmlp
from fastmlp import distributed
from mpi4py import MPI

rng = np.random.default_rng(0)
X, y = rng.random((400, 12)), rng.integers(0, 3, size=400)
calls = []
train_chunk = distributed.DistributedBackend.train_chunk


def failing(self, *args, **kwargs):
    calls.append(1)
    if MPI.COMM_WORLD.rank == 1 and len(calls) == 3:  # rank 1 alone, in the middle of training
        raise {error}
    return train_chunk(self, *args, **kwargs)


distributed.DistributedBackend.train_chunk = failing
fastmlp.MLP([12, 8, 3], seed=0).fit(X, y, epochs=4, batch_size=8, progress=False, distributed=True)
print("trained", MPI.COMM_WORLD.rank, flush=True)
"""


@pytest.mark.parametrize("error, status, said", [("MemoryError('injected')", 1, "MemoryError: injected"),
                                                 ("KeyboardInterrupt()", 130, "TrainingInterrupted: training interrupted")])
def test_an_error_of_one_rank_alone_during_a_fit_ends_every_rank(tmp_path, error, status, said):
    """A script's fit (the README's pattern: ``mpiexec -n 2 python train.py``) on which one rank
    alone raised during training (out of memory; a Ctrl-C reaching the ranks at different
    moments): that rank printed its traceback and the other waited for it in a collective,
    spinning on a core, for ever (audit 39). The rank says what happened and MPI_Abort ends the
    job, with 130 for an interrupt."""
    script = tmp_path / "train.py"
    script.write_text(ALONE_FAILING_SCRIPT.format(error=error))
    env = dict(os.environ, NUMBA_NUM_THREADS="1")
    done = subprocess.run([mpiexec(), "-n", "2", sys.executable, str(script)], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=RANKS_TIMEOUT)
    assert done.returncode == status, done.stderr
    assert "trained" not in done.stdout
    assert f"fastmlp: rank 1 of 2: {said}" in done.stderr, done.stderr
    assert "MPI_Abort ends every rank" in done.stderr


def test_cli_resuming_ranks_whose_checkpoints_hold_runs_of_different_lengths_stops_every_rank(tiny_mnist_dir, tmp_path):
    # the rank whose checkpoint held the whole run said nothing and exited 0; the other waited in
    # partial_fit's meeting for ever (a node-local checkpoint left by an earlier job: audit 39)
    train = [sys.executable, "-m", "fastmlp", "train", "--data", str(tiny_mnist_dir), "--layers", "784,8,10",
             "--batch-size", "20", "--no-progress"]
    for epochs, name in ((1, "short.npz"), (2, "whole.npz")):
        assert main([*train[3:], "--epochs", str(epochs), "--save", str(tmp_path / name)]) == 0
    env = dict(os.environ, NUMBA_NUM_THREADS="1")
    resume = [*train, "--distributed", "--epochs", "2", "--resume"]
    done = subprocess.run([mpiexec(), "-n", "1", *resume, "short.npz", ":", "-n", "1", *resume, "whole.npz"],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=RANKS_TIMEOUT)
    assert done.returncode == 1, done.stderr
    assert ("distributed training: rank 1 differs from rank 0 in nothing_left_to_train, resumed_run; every rank must "
            "make the same training call") in done.stderr, done.stderr


def test_the_sigterm_watchdog_stays_off_where_pipes_cannot_be_made_non_blocking(monkeypatch):
    # Windows before Python 3.12 has no os.set_blocking: train --distributed crashed at its start
    # with an AttributeError (audit 41); no process gets a SIGTERM there anyway
    import threading

    from fastmlp import cli

    monkeypatch.delattr(os, "set_blocking")
    before = threading.active_count()
    watchdog = cli._MPIWatchdog()
    watchdog.start()
    assert watchdog._thread is None and watchdog._write is None and threading.active_count() == before
    watchdog.stop()
