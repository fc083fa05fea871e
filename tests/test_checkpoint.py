"""Checkpoints: the file format, its errors, and exact resumption of a run stopped after any epoch."""

import json
import math
import os
import re
import shutil
import signal
import threading
import time
import warnings
import zipfile

import numpy as np
import pytest

import fastmlp
from fastmlp import MLP, CheckpointError, optim, trainer
from fastmlp.checkpoint import FORMAT_VERSION

EPOCHS = 3

# One line per case: (backend, MLP keywords, fit keywords). A run of EPOCHS epochs stopped after
# each epoch, saved, loaded and resumed must end bit for bit where the uninterrupted run ends.
RESUME_CASES = [
    pytest.param("numpy", {}, dict(batch_size=4, lr=0.05, momentum=0.9, dropout=0.2, weight_decay=1e-3,
                                   lr_schedule="cosine"), id="numpy-momentum-dropout-decay-cosine"),
    pytest.param("numpy", {}, dict(batch_size=1, lr=0.1, momentum=0.5, nesterov=True, input_dropout=0.1,
                                   weight_decay=1e-3, lr_schedule="invscaling", power_t=0.25), id="numpy-nesterov-invscaling"),
    pytest.param("numpy", {"dtype": "float64"}, dict(batch_size=8, optimizer="adam", lr=0.01, weight_decay=0.01,
                                                     decoupled_weight_decay=True, dropout=0.1, lr_schedule="cosine",
                                                     warmup_epochs=1), id="numpy-adamw-warmup-cosine"),
    pytest.param("numpy", {}, dict(batch_size=4, lr=1.0, momentum=0.5, lr_schedule="adaptive", n_iter_no_change=1,
                                   tol=0.0, validation_fraction=0.3, early_stopping=5), id="numpy-adaptive-early-stopping"),
    pytest.param("numba", {"threads": 1}, dict(batch_size=1, lr=0.1, lr_schedule="cosine"), id="numba-per-sample"),
    pytest.param("numba", {}, dict(batch_size=16, lr=0.2, lr_schedule="invscaling", warmup_epochs=1), id="numba-minibatch"),
    pytest.param("numba", {"threads": 1}, dict(batch_size=1, lr=0.05, momentum=0.9, weight_decay=1e-3, dropout=0.2,
                                               lr_schedule="cosine"), id="numba-per-sample-momentum-decay-dropout"),
    pytest.param("numba", {}, dict(batch_size=1, optimizer="adam", lr=0.003, input_dropout=0.1),
                 id="numba-per-sample-adam"),
    pytest.param("numba", {}, dict(batch_size=8, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3,
                                   input_dropout=0.1, dropout=0.2, lr_schedule="cosine"), id="numba-minibatch-nesterov-dropout"),
    pytest.param("numba", {}, dict(batch_size=16, optimizer="adam", lr=0.01, weight_decay=0.01,
                                   decoupled_weight_decay=True, lr_schedule="adaptive", validation_fraction=0.3,
                                   early_stopping=5), id="numba-minibatch-adamw-adaptive"),
]


def assert_same_run(resumed, whole):
    np.testing.assert_array_equal(resumed.params_, whole.params_)
    np.testing.assert_array_equal(resumed.optimizer_state_.slots, whole.optimizer_state_.slots)
    np.testing.assert_array_equal(resumed.optimizer_state_.counters, whole.optimizer_state_.counters)
    for name in ("epoch", "lr", "loss", "accuracy", "val_loss", "val_accuracy", "samples", "best_epoch",
                 "stopped_epoch", "stop_reason"):
        assert getattr(resumed.history_, name) == getattr(whole.history_, name), name
    assert resumed.run_.scalars() == whole.run_.scalars()
    assert resumed._shuffle_rng.bit_generator.state == whole._shuffle_rng.bit_generator.state


@pytest.fixture
def data(rng, synth):
    X, y = synth.digits(rng, 120)
    noisy = rng.random(120) < 0.3
    y[noisy] = rng.integers(0, 10, int(noisy.sum()))  # so that validation losses go up and down
    return X, y


@pytest.mark.parametrize("backend, model_kwargs, fit_kwargs", RESUME_CASES)
def test_a_run_stopped_after_any_epoch_resumes_bit_for_bit(tmp_path, data, backend, model_kwargs, fit_kwargs):
    X, y = data
    whole = MLP([784, 16, 10], seed=5, backend=backend, **model_kwargs)
    whole.fit(X, y, epochs=EPOCHS, progress=False, **fit_kwargs)
    assert whole.history_.stop_reason == "max epochs"
    for stop_after in range(1, EPOCHS):
        first = MLP([784, 16, 10], seed=5, backend=backend, **model_kwargs)
        first.fit(X, y, epochs=stop_after, schedule_epochs=EPOCHS, progress=False, **fit_kwargs)
        path = tmp_path / f"after-{stop_after}.npz"
        first.save(path)
        resumed = MLP.load(path)
        assert resumed.epochs_trained_ == stop_after
        resumed.partial_fit(X, y, epochs=EPOCHS - stop_after, progress=False)
        assert_same_run(resumed, whole)


# Runs split while early stopping or the adaptive rate is counting: the best epoch before the
# split and none after it, patience part-way used (the runs above all end by max epochs, so a
# best snapshot or a patience count that did not survive the file passed them).
COUNTING_CASES = [
    pytest.param(dict(batch_size=4, lr=0.5, momentum=0.9, validation_fraction=0.3, early_stopping=50),
                 lambda history: history.best_epoch <= 3, id="best-epoch-before-the-split"),
    pytest.param(dict(batch_size=8, lr=0.1, early_stopping=3, tol=10.0),
                 lambda history: history.stop_reason.startswith("early stopping"), id="early-stopping-part-way"),
    pytest.param(dict(batch_size=4, lr=0.1, momentum=0.9, validation_fraction=0.3, early_stopping=3),
                 lambda history: history.stop_reason.startswith("early stopping") and history.best_epoch == 1,
                 id="momentum-stops-on-the-best-state-from-the-file"),
    pytest.param(dict(batch_size=8, lr=0.1, lr_schedule="adaptive", n_iter_no_change=2, tol=10.0),
                 lambda history: len(set(history.lr)) > 1, id="adaptive-part-way"),
]


@pytest.mark.parametrize("fit_kwargs, counted", COUNTING_CASES)
def test_a_run_split_while_it_counts_resumes_bit_for_bit(tmp_path, fit_kwargs, counted):
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(120, 10)).astype(np.float32), rng.integers(0, 3, 120)  # noise: nothing improves for long
    whole = MLP([10, 16, 3], backend="numpy", seed=0)
    whole.fit(X, y, epochs=6, progress=False, **fit_kwargs)
    assert counted(whole.history_)
    for stop_after in range(1, whole.epochs_trained_):
        first = MLP([10, 16, 3], backend="numpy", seed=0)
        first.fit(X, y, epochs=stop_after, schedule_epochs=6, progress=False, **fit_kwargs)
        first.save(tmp_path / "part.npz")
        resumed = MLP.load(tmp_path / "part.npz")
        resumed.partial_fit(X, y, epochs=6 - stop_after, progress=False)
        assert_same_run(resumed, whole)


@pytest.mark.parametrize("fit_kwargs, counted", COUNTING_CASES)
def test_every_checkpoint_written_during_fit_resumes_bit_for_bit(tmp_path, fit_kwargs, counted):
    # The files a fit writes at its epoch ends hold the last epoch's weights and optimizer state
    # while the best epoch's are a separate snapshot (not, as after a fit, the other way round).
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(120, 10)).astype(np.float32), rng.integers(0, 3, 120)
    whole = MLP([10, 16, 3], backend="numpy", seed=0)
    real_save = whole.save

    def save_and_keep(path):
        real_save(path)
        shutil.copy(path, tmp_path / f"epoch{whole.epochs_trained_}.npz")

    whole.save = save_and_keep
    whole.fit(X, y, epochs=6, progress=False, checkpoint_path=tmp_path / "run.npz", **fit_kwargs)
    assert counted(whole.history_)
    for epoch in range(1, whole.epochs_trained_):
        resumed = MLP.load(tmp_path / f"epoch{epoch}.npz")
        resumed.partial_fit(X, y, epochs=6 - epoch, progress=False)
        assert_same_run(resumed, whole)


@pytest.mark.parametrize("fit_kwargs, counted", COUNTING_CASES[:1])  # (a run that reaches its epochs)
def test_the_checkpoint_of_a_runs_last_epoch_holds_the_weights_it_ends_with(tmp_path, fit_kwargs, counted):
    # with early stopping on, a run that reached its epochs wrote its last epoch's weights, then
    # took the best ones and wrote again: killed between the two writes, the file kept the worse
    # weights, and no resume could finish the run (audit 24)
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(120, 10)).astype(np.float32), rng.integers(0, 3, 120)
    whole = MLP([10, 16, 3], backend="numpy", seed=0)
    real_save, written = whole.save, []

    def save_and_keep(path):
        real_save(path)
        written.append(tmp_path / f"write{len(written)}.npz")
        shutil.copy(path, written[-1])

    whole.save = save_and_keep
    whole.fit(X, y, epochs=6, progress=False, checkpoint_path=tmp_path / "run.npz", **fit_kwargs)
    assert counted(whole.history_) and whole.history_.best_epoch < whole.epochs_trained_
    first_of_the_end = MLP.load(written[whole.epochs_trained_ - 1])  # the epoch's own, before fit's last write
    assert first_of_the_end.epochs_trained_ == whole.epochs_trained_
    np.testing.assert_array_equal(first_of_the_end.params_, whole.params_)


def test_a_checkpoint_written_during_fit_resumes_an_interrupted_run(tmp_path, data):
    """checkpoint_every writes the file at epoch ends; Ctrl-C in epoch 3 leaves the epoch-2 file."""
    X, y = data
    kwargs = dict(batch_size=2, lr=0.05, momentum=0.9, dropout=0.2, lr_schedule="cosine", validation_fraction=0.2,
                  early_stopping=3, progress=False)
    whole = MLP([784, 16, 10], seed=1, backend="numpy")
    whole.fit(X, y, epochs=4, **kwargs)

    path = tmp_path / "run.npz"
    interrupted = MLP([784, 16, 10], seed=1, backend="numpy").initialize()
    real = interrupted.backend_.train_chunk

    def ctrl_c_in_epoch_3(params, *args):
        if interrupted.epochs_trained_ == 2:
            raise KeyboardInterrupt
        return real(params, *args)

    interrupted.backend_.train_chunk = ctrl_c_in_epoch_3
    with pytest.raises(fastmlp.TrainingInterrupted):
        interrupted.partial_fit(X, y, epochs=4, checkpoint_path=path, **kwargs)  # fit would rebuild the backend
    resumed = MLP.load(path)
    assert resumed.epochs_trained_ == 2
    resumed.partial_fit(X, y, epochs=2, progress=False)
    assert_same_run(resumed, whole)


def _interrupt_after(model, n_chunks, exception=KeyboardInterrupt):
    """Make ``model``'s backend raise ``exception`` in its (n_chunks + 1)-th training chunk."""
    real = model.backend_.train_chunk
    calls = []

    def train_chunk(params, *args, **kwargs):
        calls.append(1)
        if len(calls) == n_chunks + 1:
            raise exception
        return real(params, *args, **kwargs)

    model.backend_.train_chunk = train_chunk


def test_a_continued_run_has_not_ended_until_its_call_ends(tmp_path, data):
    """fit(epochs=2), then partial_fit(epochs=3): its on_epoch and its checkpoints saw the first
    call's end ("max epochs" at epoch 2) in a run of 5 epochs not yet over, where the
    uninterrupted run's see None (audit 67); a call whose on_epoch raises leaves them so too."""
    X, y = data
    seen = {}

    def record(name):
        return lambda history: seen.setdefault(name, []).append(
            (history.stop_reason, history.stopped_epoch, history.best_epoch))

    straight = MLP([784, 8, 10], seed=1, backend="numpy")
    straight.fit(X, y, epochs=5, batch_size=8, lr=0.05, on_epoch=record("straight"), progress=False)
    split = MLP([784, 8, 10], seed=1, backend="numpy")
    split.fit(X, y, epochs=2, batch_size=8, lr=0.05, schedule_epochs=5, progress=False)
    assert split.history_.stop_reason == "max epochs" and split.history_.stopped_epoch == 2
    in_file = []
    split.partial_fit(X, y, epochs=3, checkpoint_path=tmp_path / "c.npz", checkpoint_every=1, progress=False,
                      on_epoch=lambda history: (record("split")(history),
                                                in_file.append(MLP.load(tmp_path / "c.npz").history_.stop_reason)))
    assert seen["straight"][:4] == [(None, None, None)] * 4 and seen["split"][:2] == [(None, None, None)] * 2
    assert in_file == [None, None, None]  # the checkpoints after epochs 3, 4 and 5 (5's before the call's end)
    assert split.history_.stop_reason == "max epochs" and split.history_.stopped_epoch == 5
    assert split.params_.tobytes() == straight.params_.tobytes()

    def stop(history):
        raise ValueError("stop here")

    split.partial_fit(X, y, epochs=1, progress=False)  # (its end recorded: epoch 6)
    _interrupt_after(split, 0)  # a call that trains nothing leaves the run as it was, its end too
    with pytest.raises(fastmlp.TrainingInterrupted):
        split.partial_fit(X, y, epochs=1, progress=False)
    assert (split.history_.stop_reason, split.history_.stopped_epoch) == ("max epochs", 6)
    split.backend_.train_chunk = type(split.backend_).train_chunk.__get__(split.backend_)
    with pytest.raises(ValueError, match="stop here"):
        split.partial_fit(X, y, epochs=2, on_epoch=stop, progress=False)
    assert (split.history_.stop_reason, split.history_.stopped_epoch) == (None, None)  # a run at epoch 7, not over
    assert split.epochs_trained_ == 7


def test_a_model_interrupted_mid_epoch_is_saved_marked_and_warned(tmp_path, data, monkeypatch):
    """Ctrl-C in epoch 2, then save(): the file said epochs_done 1 with weights (and the optimizer's
    sample count) from mid-epoch 2, loaded as a clean epoch-1 checkpoint and resumed into neither
    run. Now it is marked (format 3), save warns, and an epoch's end clears the mark."""
    X, y = data
    chunks = trainer.chunk_bounds
    monkeypatch.setattr(trainer, "chunk_bounds", lambda n, batch: chunks(n, batch, chunk_samples=40))  # 3 an epoch
    model = MLP([784, 8, 10], seed=2, backend="numpy")
    model.fit(X, y, epochs=1, batch_size=4, momentum=0.9, lr=0.05, schedule_epochs=3, progress=False)
    _interrupt_after(model, 1)
    with pytest.raises(fastmlp.TrainingInterrupted):
        model.partial_fit(X, y, epochs=1, progress=False)
    assert model.epochs_trained_ == 1 and model.run_.interrupted == {"epoch": 2, "samples": 40}
    with pytest.warns(fastmlp.InterruptedRunWarning, match="40 samples into epoch 2"):
        model.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as archive:
        assert int(archive["format_version"]) == 3
        assert json.loads(str(archive["run"]))["interrupted"] == {"epoch": 2, "samples": 40}
    loaded = MLP.load(tmp_path / "m.npz")
    assert loaded.run_.interrupted == {"epoch": 2, "samples": 40}
    np.testing.assert_array_equal(loaded.params_, model.params_)
    loaded.partial_fit(X, y, epochs=1, progress=False)  # epoch 2 anew, from those weights
    assert loaded.epochs_trained_ == 2 and loaded.run_.interrupted is None
    loaded.save(tmp_path / "m.npz")  # no warning (the suite turns warnings into errors)
    with np.load(tmp_path / "m.npz", allow_pickle=False) as archive:
        assert int(archive["format_version"]) == 2 and "interrupted" not in json.loads(str(archive["run"]))


@pytest.fixture
def python_ctrl_c():
    """SIGINT as Python's own Ctrl-C: a suite started in the background (`.ci/run ... &`) inherits
    it ignored, and then the signals these tests send did nothing."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="signals sent to this thread (POSIX)")
@pytest.mark.parametrize("where", ["progress_bar", "_pad_validation", "on_epoch"])
def test_ctrl_c_between_epochs_is_a_training_interrupted_that_goes_on_exactly(data, monkeypatch, where,
                                                                            python_ctrl_c):
    # a SIGINT outside the chunks (the permutation drawn, the bar started; the epoch's record;
    # a checkpoint): a raw KeyboardInterrupt with the permutation drawn, so the run went on
    # with another order, or the history an epoch ahead of the run, saved to a file no load
    # took (audit 25). The signal comes as the terminal's would, in the middle of that code
    X, y = data
    kwargs = dict(batch_size=4, momentum=0.9, lr=0.05, validation_fraction=0.2, progress=False)
    whole = MLP([784, 8, 10], seed=2, backend="numpy")
    whole.fit(X, y, epochs=4, **kwargs)

    model = MLP([784, 8, 10], seed=2, backend="numpy")
    calls, listener = [], None

    def ctrl_c_at_the_third_call(real):
        def call(*args, **kwargs):
            calls.append(1)
            if len(calls) == 3:
                signal.pthread_kill(threading.get_ident(), signal.SIGINT)
            return real(*args, **kwargs) if real is not None else None
        return call

    if where == "on_epoch":
        listener = ctrl_c_at_the_third_call(None)
    else:
        monkeypatch.setattr(trainer, where, ctrl_c_at_the_third_call(getattr(trainer, where)))
    raised = None
    try:
        model.fit(X, y, epochs=4, on_epoch=listener, **kwargs)
    except KeyboardInterrupt as interrupt:  # (a raw one, let through, would end the test session)
        raised = interrupt
    monkeypatch.undo()
    assert isinstance(raised, fastmlp.TrainingInterrupted), repr(raised)
    history = model.history_
    assert len(history.epoch) == len(history.loss) == len(history.val_loss) == model.epochs_trained_ == 2 + (where != "progress_bar")
    assert model.run_.interrupted is None  # at an epoch's end: nothing of the next trained
    if where == "progress_bar":  # it said "in epoch 3 after 0 samples; ... the weights from after sample 0"
        assert ("training interrupted at the start of epoch 3, before its first sample: nothing of epoch 3 "
                "trained") in str(raised)
    model.partial_fit(X, y, epochs=4 - model.epochs_trained_, progress=False)
    assert_same_run(model, whole)


def test_ctrl_c_before_a_runs_first_sample_says_nothing_of_it_trained(data, monkeypatch):
    X, y = data
    model = MLP([784, 8, 10], seed=2, backend="numpy")
    model._initialize()
    start = model.params_.copy()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "progress_bar", interrupted)
    with pytest.raises(fastmlp.TrainingInterrupted) as raised:
        model.fit(X, y, epochs=2, batch_size=4, progress=False)
    assert str(raised.value).startswith("training interrupted at the start of epoch 1, before its first sample: "
                                        "nothing of epoch 1 trained")
    np.testing.assert_array_equal(model.params_, start)


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="signals sent to this thread (POSIX)")
def test_ctrl_c_just_after_a_chunk_is_the_same_as_ctrl_c_in_it(data, monkeypatch, python_ctrl_c):
    # a SIGINT after a chunk's call returned, before the chunk was counted (its timing, its
    # weights' check): a raw KeyboardInterrupt, the weights a chunk ahead of samples_done
    import types

    X, y = data
    chunks = trainer.chunk_bounds
    monkeypatch.setattr(trainer, "chunk_bounds", lambda n, batch: chunks(n, batch, chunk_samples=40))  # 3 an epoch
    kwargs = dict(batch_size=4, momentum=0.9, lr=0.05, progress=False)
    models = {}
    for how in ("in the chunk", "after it"):
        model = models[how] = MLP([784, 8, 10], seed=2, backend="numpy")
        model.fit(X, y, epochs=1, **kwargs)
        if how == "in the chunk":
            _interrupt_after(model, 1)
        else:
            clock = []

            def perf_counter():  # the second chunk's timing, after its call
                clock.append(1)
                if len(clock) == 4:
                    signal.pthread_kill(threading.get_ident(), signal.SIGINT)
                return time.perf_counter()

            monkeypatch.setattr(trainer, "time", types.SimpleNamespace(perf_counter=perf_counter))
        raised = None
        try:
            model.partial_fit(X, y, epochs=1, progress=False)
        except KeyboardInterrupt as interrupt:
            raised = interrupt
        monkeypatch.setattr(trainer, "time", time)
        assert isinstance(raised, fastmlp.TrainingInterrupted), repr(raised)
        assert model.run_.interrupted == {"epoch": 2, "samples": 40}
    np.testing.assert_array_equal(models["after it"].params_, models["in the chunk"].params_)
    np.testing.assert_array_equal(models["after it"].optimizer_state_.slots, models["in the chunk"].optimizer_state_.slots)


def _two_epochs_and_one(X, y):
    """(a run of two epochs, the same run after its first), momentum at batch 4."""
    kwargs = dict(batch_size=4, momentum=0.9, lr=0.05, progress=False)
    whole = MLP([784, 8, 10], seed=2, backend="numpy")
    whole.fit(X, y, epochs=2, **kwargs)
    model = MLP([784, 8, 10], seed=2, backend="numpy")
    model.fit(X, y, epochs=1, **kwargs)
    return whole, model


def test_ctrl_c_while_the_kernels_compile_is_a_training_interrupted(data):
    # a raw KeyboardInterrupt under 21-33 frames of Numba and llvmlite (audit 25)
    X, y = data
    whole, model = _two_epochs_and_one(X, y)

    def compiling(*args, **kwargs):
        raise KeyboardInterrupt

    model.backend_.warmup = compiling
    raised = None
    try:
        model.partial_fit(X, y, epochs=1, progress=False)
    except KeyboardInterrupt as interrupt:
        raised = interrupt
    assert isinstance(raised, fastmlp.TrainingInterrupted), repr(raised)
    assert raised.where == "training interrupted before epoch 2 began, while the kernels loaded or compiled"
    assert raised.__suppress_context__ and raised.samples_done == 0
    del model.backend_.warmup
    model.partial_fit(X, y, epochs=1, progress=False)
    assert_same_run(model, whole)


@pytest.mark.parametrize("exception", [KeyboardInterrupt, "divergence"])
def test_a_call_stopped_before_its_first_chunk_trained_goes_on_exactly(data, exception):
    """Nothing of the epoch trained: the run stands at the epoch's end as if it never began. Its
    shuffle generator had drawn the epoch's permutation all the same, so the run went on with the
    next epoch's order."""
    X, y = data
    whole, model = _two_epochs_and_one(X, y)
    if exception == "divergence":
        real = model.backend_.train_chunk
        model.backend_.train_chunk = lambda params, *args, **kw: real(params, *args, **kw)[:3] + (0,)
        expected = fastmlp.DivergenceError
    else:
        _interrupt_after(model, 0)
        expected = fastmlp.TrainingInterrupted
    with pytest.raises(expected):
        model.partial_fit(X, y, epochs=1, progress=False)
    assert model.run_.interrupted is None
    del model.backend_.train_chunk  # the backend's own method again
    model.partial_fit(X, y, epochs=1, progress=False)
    np.testing.assert_array_equal(model.params_, whole.params_)
    assert model.history_.loss == whole.history_.loss


def test_checkpoint_every_writes_after_every_n_epochs_and_at_the_end(tmp_path, data, monkeypatch):
    X, y = data
    model = MLP([784, 8, 10], backend="numpy")
    written = []
    monkeypatch.setattr(MLP, "save", lambda self, path: written.append(self.epochs_trained_))
    model.fit(X, y, epochs=5, checkpoint_path=tmp_path / "m.npz", checkpoint_every=2, progress=False)
    assert written == [2, 4, 5]
    written.clear()
    model.partial_fit(X, y, epochs=3, checkpoint_path=tmp_path / "m.npz", checkpoint_every=2, progress=False)
    assert written == [6, 8, 8]  # epochs of the run, not of the call


# --- the file ----------------------------------------------------------------------------------


def _saved_adam_run_with_early_stopping(tmp_path, data):
    """(model, path): two epochs of Adam with early stopping (every kind of entry: slots, a best
    snapshot), saved to ``path``."""
    X, y = data
    model = MLP([784, 8, 10], seed=3, backend="numpy")
    model.fit(X, y, epochs=2, batch_size=4, optimizer="adam", lr=0.01, validation_fraction=0.25, early_stopping=4,
              progress=False)
    model.save(tmp_path / "m.npz")
    return model, tmp_path / "m.npz"


def test_the_file_holds_the_documented_entries_and_no_pickle(tmp_path, data):
    model, _ = _saved_adam_run_with_early_stopping(tmp_path, data)
    with np.load(tmp_path / "m.npz", allow_pickle=False) as archive:
        files = set(archive.files)
        # format 3 only marks a run interrupted mid-epoch; every other file stays format 2
        assert int(archive["format_version"]) == 2 and FORMAT_VERSION == 3
        assert {"format_version", "model", "params", "training", "data", "run", "history", "shuffle_rng",
                "optimizer_slots", "optimizer_counters", "best_params", "best_slots", "best_counters"} <= files
        assert archive["optimizer_slots"].shape == (2, model.params_.size)
        config = json.loads(str(archive["model"]))
        training = json.loads(str(archive["training"]))
        run = json.loads(str(archive["run"]))
        history = json.loads(str(archive["history"]))
        rng_state = json.loads(str(archive["shuffle_rng"]))
        for name in files:
            assert archive[name].dtype != object
    assert config["layers"] == [784, 8, 10] and config["seed"] == 3
    assert training["optimizer"] == "adam" and training["schedule_epochs"] == 2 and training["early_stopping"] == 4
    assert run["epochs_done"] == 2 and run["best_snapshot"] == run["best_epoch"]
    assert history["loss"] == model.history_.loss and "seconds" not in history
    assert rng_state == model._shuffle_rng.bit_generator.state


def test_an_untrained_model_writes_strict_json(tmp_path):
    """Its best loss, inf, was written as the token Infinity, which JSON.parse and Go refuse."""
    MLP([4, 3, 2], seed=0).initialize().save(tmp_path / "i.npz")
    with np.load(tmp_path / "i.npz", allow_pickle=False) as archive:
        run = json.loads(str(archive["run"]), parse_constant=lambda token: pytest.fail(f"non-standard {token}"))
    assert run["best_loss"] is None
    assert MLP.load(tmp_path / "i.npz").run_.best_loss == float("inf")


def test_load_restores_everything_without_reinitialising(tmp_path, data, monkeypatch):
    X, y = data
    model = MLP([784, 8, 10], seed=3, backend="numpy")
    model.fit(X, y, epochs=2, batch_size=4, momentum=0.9, lr_schedule="adaptive", progress=False)
    model.save(tmp_path / "m.npz")
    monkeypatch.setattr("fastmlp.model.init_params", lambda *a, **k: pytest.fail("load drew fresh weights"))
    loaded = MLP.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(loaded.params_, model.params_)
    np.testing.assert_array_equal(loaded.optimizer_state_.slots, model.optimizer_state_.slots)
    np.testing.assert_array_equal(loaded.optimizer_state_.counters, model.optimizer_state_.counters)
    assert loaded.fit_options_ == model.fit_options_ and loaded.data_fingerprint_ == model.data_fingerprint_
    assert loaded.run_.scalars() == model.run_.scalars()
    assert loaded.history_.loss == model.history_.loss and loaded.history_.seconds == [None, None]
    assert loaded._shuffle_rng.bit_generator.state == model._shuffle_rng.bit_generator.state
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_same_run_same_bytes(tmp_path, data):
    X, y = data
    for name in ("a", "b"):
        model = MLP([784, 8, 10], seed=3, backend="numpy")
        model.fit(X, y, epochs=2, batch_size=4, momentum=0.9, validation_fraction=0.2, early_stopping=1, progress=False)
        model.save(tmp_path / f"{name}.npz")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()


def test_a_failed_write_leaves_the_previous_file(tmp_path, data, monkeypatch):
    X, y = data
    model = MLP([784, 8, 10], backend="numpy")
    model.fit(X, y, progress=False)
    path = tmp_path / "m.npz"
    model.save(path)
    before = path.read_bytes()

    def disk_full(file, **arrays):
        file.write(b"PK\x03\x04 half an archive")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
    with pytest.raises(OSError, match="No space left"):
        model.partial_fit(X, y, checkpoint_path=path, progress=False)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]


def test_numpy_scalar_hyperparameters_are_saved_as_numbers(tmp_path, data):
    """Every hyperparameter may be a NumPy scalar (threads=np.int64(1) trains); save writes it
    as the number it is, and load gives it back."""
    X, y = data
    model = MLP([784, np.int64(8), 10], seed=np.int64(3), bias=np.bool_(True), threads=np.int64(1), backend="numpy")
    model.fit(X, y, epochs=1, lr=np.float64(0.1), momentum=np.float32(0.5), progress=False)
    model.save(tmp_path / "m.npz")
    loaded = MLP.load(tmp_path / "m.npz")
    assert loaded.get_params() == {**model.get_params(), "layers": [784, 8, 10]}
    assert type(loaded.threads) is int and type(loaded.bias) is bool
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


@pytest.mark.parametrize("change", [{"activation": "relu"}, {"bias": False}, {"loss": "mse"}, {"output": "sigmoid"}])
def test_save_writes_the_network_that_was_trained(tmp_path, data, change):
    """Attributes set after fit change the next fit, not the trained network: predict keeps
    using arch_, and so does save (else the file would load as another network, or not at all)."""
    X, y = data
    model = MLP([784, 8, 10], seed=0, backend="numpy")
    model.fit(X, y, epochs=1, progress=False)
    expected = model.predict_proba(X)
    for name, value in change.items():
        setattr(model, name, value)
    model.save(tmp_path / "m.npz")
    loaded = MLP.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(loaded.predict_proba(X), expected)
    assert loaded.arch_ == model.arch_


def test_weights_only_files_of_fastmlp_0_1_load_with_a_new_run(tmp_path, data):
    X, y = data
    model = MLP([784, 8, 10], seed=2, backend="numpy")
    model.fit(X, y, progress=False)
    config = {**model.get_params(), "layers": [784, 8, 10]}
    np.savez(tmp_path / "old.npz", params=model.params_, config=np.array(json.dumps(config)))
    loaded = MLP.load(tmp_path / "old.npz")
    np.testing.assert_array_equal(loaded.params_, model.params_)
    assert loaded.epochs_trained_ == 0 and loaded.fit_options_ is None and loaded.optimizer_state_ is None
    loaded.partial_fit(X, y, progress=False)
    assert loaded.epochs_trained_ == 1


def test_format_1_files_load_with_the_step_schedule_they_trained_with(tmp_path, data):
    # Format 2 added lr_step_epochs to the training options; a format-1 file's step schedule
    # decayed every 10 epochs, and it resumes so.
    X, y = data
    model = MLP([784, 8, 10], seed=2, backend="numpy")
    model.fit(X, y, epochs=1, batch_size=4, lr_schedule="step", schedule_epochs=30, progress=False)
    model.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as archive:
        entries = {name: archive[name] for name in archive.files}
    training = json.loads(str(entries["training"]))
    del training["lr_step_epochs"]
    rewrite(tmp_path / "v1.npz", entries, format_version=np.array(1), training=np.array(json.dumps(training)))
    loaded = MLP.load(tmp_path / "v1.npz")
    assert loaded.fit_options_ == model.fit_options_ and loaded.fit_options_["lr_step_epochs"] == 10
    np.testing.assert_array_equal(loaded.params_, model.params_)
    # a format-2 file without it is malformed, not old
    rewrite(tmp_path / "v2.npz", entries, training=np.array(json.dumps(training)))
    with pytest.raises(fastmlp.CheckpointError, match="does not hold the training options"):
        MLP.load(tmp_path / "v2.npz")


# --- errors ------------------------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path, data):
    X, y = data
    model = MLP([784, 8, 10], backend="numpy")
    model.fit(X, y, epochs=1, batch_size=4, momentum=0.9, progress=False)
    path = tmp_path / "good.npz"
    model.save(path)
    with np.load(path, allow_pickle=False) as archive:
        entries = {name: archive[name] for name in archive.files}
    return path, entries


def rewrite(path, entries, **changes):
    arrays = {**entries, **changes}
    np.savez(path, **{name: value for name, value in arrays.items() if value is not None})
    return path


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda p, e: p.write_bytes(b"\x00" * 100) and p, "not a fastmlp checkpoint \\(not a NumPy .npz archive"),
        (lambda p, e: np.save(p.with_suffix(".npy"), np.zeros(3)) or p.with_suffix(".npy"), "a single .npy array"),
        (lambda p, e: rewrite(p, {}, weights=np.zeros(3)), "not a fastmlp checkpoint \\(an .npz archive without 'format_version'"),
        (lambda p, e: rewrite(p, e, format_version=np.array(FORMAT_VERSION + 1)),
         f"written by a newer fastmlp: format {FORMAT_VERSION + 1}, this version reads up to {FORMAT_VERSION}"),
        (lambda p, e: rewrite(p, e, format_version=np.array(0)), "'format_version' is 0"),
        (lambda p, e: rewrite(p, e, format_version=np.array("1")), "'format_version' is not an integer"),
        (lambda p, e: rewrite(p, e, optimizer_slots=None), "entry 'optimizer_slots' is missing"),
        (lambda p, e: rewrite(p, e, optimizer_slots=e["optimizer_slots"][:, :-1]), "'optimizer_slots' has shape"),
        (lambda p, e: rewrite(p, e, optimizer_counters=e["optimizer_counters"].astype(np.float64)),
         "'optimizer_counters' has dtype float64; expected int64"),
        (lambda p, e: rewrite(p, e, params=e["params"][:-1]), "'params' holds 6369 parameters"),
        (lambda p, e: rewrite(p, e, params=e["params"].astype(np.float64)), "'params' has dtype float64"),
        (lambda p, e: rewrite(p, e, params=np.full_like(e["params"], np.nan)), "'params' params_ contains NaN"),
        (lambda p, e: rewrite(p, e, run=np.array("{not json")), "'run' is not valid JSON"),
        (lambda p, e: rewrite(p, e, run=np.array(json.dumps({"epochs_done": 1}))), "'run' does not hold"),
        (lambda p, e: rewrite(p, e, model=np.array(json.dumps({"layers": [784, 8, 10], "colour": "red"}))),
         "'model' does not describe an MLP"),
        (lambda p, e: rewrite(p, e, model=np.array(json.dumps({"layers": [784, 8, 10], "activation": "swish"}))),
         "'model' describes an MLP this fastmlp cannot build: activation"),
        (lambda p, e: rewrite(p, e, training=np.array(json.dumps({"lr": 0.1}))), "'training' does not hold"),
        (lambda p, e: rewrite(p, e, history=np.array(json.dumps({"loss": [1.0], "colour": "red"}))),
         "'history' is not a training history"),
        (lambda p, e: rewrite(p, e, shuffle_rng=np.array(json.dumps({"bit_generator": "MT19937"}))),
         "'shuffle_rng' is not a PCG64 generator state"),
        (lambda p, e: rewrite(p, e, history=np.arange(3)), "'history' is not JSON text"),
        # (said "entry 'history' is not a training history: FILE: checkpoint entry 'history' is missing ...")
        (lambda p, e: rewrite(p, e, history=None), "checkpoint entry 'history' is missing \\(the file is incomplete"),
    ],
    ids=["random-bytes", "npy", "foreign-npz", "newer", "version-0", "version-text", "missing-slots", "slots-shape",
         "counters-dtype", "params-short", "params-dtype", "params-nan", "run-not-json", "run-incomplete",
         "model-unknown-key", "model-bad-activation", "training-incomplete", "history-unknown", "rng-other",
         "history-array", "history-missing"],
)
def test_bad_files_are_refused_with_an_error_naming_the_problem(tmp_path, saved, make, words):
    path, entries = saved
    target = make(tmp_path / "bad.npz", entries)
    with pytest.raises(CheckpointError, match=words) as info:
        MLP.load(target)
    assert str(info.value).count(str(target)) == 1
    assert isinstance(info.value, ValueError)


def test_errors_name_a_bytes_path_as_text(tmp_path, saved):
    path, entries = saved
    bad = rewrite(tmp_path / "bad.npz", entries, format_version=np.array(0))
    with pytest.raises(CheckpointError, match="'format_version' is 0") as info:
        MLP.load(os.fsencode(bad))
    assert str(bad) in str(info.value) and "b'" not in str(info.value)  # (was "b'/tmp/.../bad.npz': ...")
    model = MLP.load(path)
    model.params_[0] = np.nan
    with pytest.raises(ValueError, match="cannot save") as info:
        model.save(os.fsencode(tmp_path / "nan.npz"))
    assert str(tmp_path / "nan.npz") in str(info.value) and "b'" not in str(info.value)


def test_a_relative_path_in_a_removed_directory_is_named(tmp_path, saved, monkeypatch):
    # the process's current directory removed under it: save raised a bare FileNotFoundError
    # (from realpath), and train --save said "[Errno 2] No such file or directory" (audit 22)
    path, _ = saved
    model = MLP.load(path)
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    with pytest.raises(OSError, match="'model.npz' is relative to the current directory, which no longer exists"):
        model.save("model.npz")
    model.save(tmp_path / "model.npz")  # a full path still saves


def _changed(entries, name, **changes):
    return np.array(json.dumps({**json.loads(str(entries[name])), **changes}))


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda e: {"run": _changed(e, "run", epochs_done=-3)}, "'run' has epochs_done=-3 \\(a count"),
        (lambda e: {"run": _changed(e, "run", epochs_done=7)}, "'history' numbers epochs \\[1\\] but the run has done 7"),
        (lambda e: {"run": _changed(e, "run", best_epoch=5)}, "'run' has best_epoch=5 after epochs_done=1"),
        # (train --resume then failed with "'>' not supported between instances of 'int' and 'NoneType'")
        (lambda e: {"training": _changed(e, "training", schedule_epochs=None)},
         "'training' has schedule_epochs=null, but the run has trained 1 epochs"),
        (lambda e: {"history": _changed(e, "history", loss="abc")}, "'history' has loss='abc'"),
        (lambda e: {"history": _changed(e, "history", lr=[0.1, 0.1])}, "'history' has lr=\\[0.1, 0.1\\]"),
        (lambda e: {"data": np.array(json.dumps("foo"))}, "'data' is not a record of training data"),
        (lambda e: {"data": np.array(json.dumps({}))}, "'data' is not a record of training data"),
        (lambda e: {"optimizer_counters": e["optimizer_counters"] - 100}, "'optimizer_counters' holds negative counts"),
        (lambda e: {"training": np.array(json.dumps(None)), "optimizer_slots": None, "optimizer_counters": None},
         "'training' is null, but the run has trained 1 epochs"),
        (lambda e: {"run": _changed(e, "run", interrupted={"epoch": 5, "samples": 3}), "format_version": np.array(3)},
         "'run' has interrupted=\\{'epoch': 5, 'samples': 3\\} \\(expected \\{'epoch': epochs_done \\+ 1"),
        (lambda e: {"run": _changed(e, "run", interrupted={"epoch": 2, "samples": 3})}, "'run' does not hold"),
        (lambda e: {"run": _changed(e, "run", best_loss=float("nan"))}, "'run' has best_loss=NaN"),
        (lambda e: {"optimizer_slots": np.full_like(e["optimizer_slots"], np.nan)}, "'optimizer_slots' holds NaN"),
    ],
    ids=["negative-epochs", "epochs-not-history", "best-after-end", "no-horizon", "history-loss-text", "history-lr-long", "data-text",
         "data-empty", "negative-counters", "no-options-but-trained", "interrupted-elsewhere", "interrupted-in-format-2",
         "best-loss-nan", "slots-nan"],
)
def test_entries_that_contradict_each_other_are_refused(tmp_path, saved, change, words):
    # each loaded; partial_fit then numbered epochs from -2, failed after training an epoch, or
    # went on with a fresh optimizer and default options
    path, entries = saved
    target = rewrite(tmp_path / "bad.npz", entries, **change(entries))
    with pytest.raises(CheckpointError, match=words) as info:
        MLP.load(target)
    assert str(target) in str(info.value)


@pytest.mark.parametrize("change, words", [
    (lambda e: {"run": _changed(e, "run", best_snapshot=99)}, "'run' has best_snapshot=99: not one of the epochs 1..2"),
    (lambda e: {"best_params": np.full_like(e["best_params"], np.nan)}, "'best_params' holds NaN"),
    (lambda e: {"best_slots": e["best_slots"] * np.array([[1.0], [-1.0]], e["best_slots"].dtype) - 1},
     "'best_slots' holds a negative second moment"),
], ids=["snapshot-after-end", "best-params-nan", "adam-negative-moment"])
def test_snapshots_that_could_not_be_gone_back_to_are_refused(tmp_path, data, change, words):
    """They loaded; early stopping then took the NaN weights as the model's, with no error."""
    _, path = _saved_adam_run_with_early_stopping(tmp_path, data)
    with np.load(path, allow_pickle=False) as archive:
        entries = {name: archive[name] for name in archive.files}
    target = rewrite(tmp_path / "bad.npz", entries, **change(entries))
    with pytest.raises(CheckpointError, match=words):
        MLP.load(target)


@pytest.mark.parametrize("spoil, words", [
    (lambda m: setattr(m, "params_", m.params_.astype(np.float64)), "params_ must be .* float32 .* got dtype float64"),
    (lambda m: setattr(m, "params_", m.params_[:-1].copy()), "params_ must be .* got shape \\(6369,\\)"),
    (lambda m: m.params_.__setitem__(0, np.nan), "params_ contains NaN or infinity"),
    (lambda m: setattr(m.optimizer_state_, "slots", m.optimizer_state_.slots.astype(np.float64)),
     "optimizer_state_ holds slots float64 \\(1, 6370\\)"),
    (lambda m: m.optimizer_state_.slots.__setitem__((0, 0), np.inf), "optimizer_state_ holds NaN or infinity"),
], ids=["params-dtype", "params-short", "params-nan", "slots-dtype", "slots-inf"])
def test_save_refuses_what_load_would_refuse_and_keeps_the_file(saved, spoil, words):
    """save checked the settings would load back, not the arrays: it replaced a good file with
    one that load refused."""
    path, _ = saved
    before = path.read_bytes()
    model = MLP.load(path)
    spoil(model)
    with pytest.raises(ValueError, match=f"cannot save '{path}': {words}"):
        model.save(path)
    assert path.read_bytes() == before and [p.name for p in path.parent.iterdir()] == [path.name]


def test_a_read_only_model_saves(tmp_path, saved):
    path, _ = saved
    model = MLP.load(path)
    model.params_.flags.writeable = False  # as joblib's mmap_mode="r" gives it
    model.save(tmp_path / "again.npz")
    np.testing.assert_array_equal(MLP.load(tmp_path / "again.npz").params_, model.params_)


def test_weights_only_files_with_bad_weights_name_the_file(tmp_path, saved):
    # a plain ValueError that named no file
    _, entries = saved
    target = tmp_path / "old.npz"
    np.savez(target, config=entries["model"], params=np.full_like(entries["params"], np.nan))
    with pytest.raises(CheckpointError, match="'params' params_ contains NaN") as info:
        MLP.load(target)
    assert str(target) in str(info.value)


def test_a_damaged_entry_is_reported(tmp_path, saved):
    path, _ = saved
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("optimizer_slots.npy")
    data_start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 200
    raw[data_start] ^= 0xFF  # one flipped byte inside the velocity: the zip CRC no longer matches
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="'optimizer_slots' cannot be read \\(the file is damaged\\)"):
        MLP.load(damaged)


@pytest.mark.parametrize("cut", ["to 200 bytes", "its last 10 bytes"])
def test_a_truncated_file_is_refused_and_closed(tmp_path, saved, cut):
    # np.load(path) left the file open when the archive was damaged: "ResourceWarning: unclosed
    # file" under python -X dev, pytest's unraisable-exception warning (audit 51)
    import subprocess
    import sys

    path, _ = saved
    raw = path.read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(raw[:200] if cut == "to 200 bytes" else raw[:-10])
    code = ("import gc, sys, fastmlp\n"
            "try:\n"
            "    fastmlp.MLP.load(sys.argv[1])\n"
            "except fastmlp.CheckpointError as error:\n"
            "    print(error)\n"
            "gc.collect()\n")
    done = subprocess.run([sys.executable, "-X", "dev", "-W", "error::ResourceWarning", "-c", code, str(truncated)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0 and "a damaged file, cut short" in done.stdout, done  # (audit 78: the words)
    assert "ResourceWarning" not in done.stderr and "unclosed" not in done.stderr, done.stderr


def _entry_start(path, name):
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(name)
    return info.header_offset + 30 + len(info.filename) + len(info.extra)  # where the entry's bytes begin


def _flip(path, offset, out):
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0xFF
    out.write_bytes(bytes(raw))
    return out


@pytest.mark.parametrize(
    "damage, words",
    [
        # a byte inside params.npy's header dict: NumPy's header parser raised tokenize.TokenError
        (lambda p, out: _flip(p, _entry_start(p, "params.npy") + 30, out), "'params' cannot be read"),
        # the "version needed to extract" of the first central-directory record: NotImplementedError
        (lambda p, out: _flip(p, p.read_bytes().index(b"PK\x01\x02") + 6, out),
         "not a NumPy .npz archive: zip file version"),
        # a compressed archive (np.savez_compressed, which load accepts) with a byte of params damaged: zlib.error
        (lambda p, out: np.savez_compressed(out, **dict(np.load(p))) or _flip(out, _entry_start(out, "params.npy") + 20, out),
         "'params' cannot be read"),
    ],
    ids=["npy-header", "zip-version", "compressed"],
)
def test_damage_anywhere_is_a_checkpoint_error(tmp_path, saved, damage, words):
    path, _ = saved
    damaged = damage(path, tmp_path / "damaged.npz")
    with pytest.raises(CheckpointError, match=words) as info:
        MLP.load(damaged)
    assert str(damaged) in str(info.value)


@pytest.mark.parametrize("change, words", [
    # NumPy 2 raises an OverflowError for the first three; NumPy 1.24 (the package's lowest) took a
    # negative word modulo 2**64 and loaded the file; both take the rest silently (audit 55)
    (lambda s: s["state"].update(inc=-1), "its inc -1 is not an integer in 0 .. 3402"),
    (lambda s: s["state"].update(state=-5), "its state -5 is not"),
    (lambda s: s["state"].update(inc=2**128), "its inc 3402.* is not"),
    (lambda s: s["state"].update(state=1.5), "its state 1.5 is not"),
    (lambda s: s.update(has_uint32=True), "its has_uint32 True is not an integer in 0 .. 1"),
    (lambda s: s.update(has_uint32=5), "its has_uint32 5 is not"),
    (lambda s: s.update(uinteger=-1), "its uinteger -1 is not an integer in 0 .. 4294967295"),
    (lambda s: s.update(extra=0), "expected an object with the keys"),
    (lambda s: s["state"].pop("inc"), "expected an object with the keys"),
    (lambda s: s.update(bit_generator="MT19937"), "its bit_generator is 'MT19937'"),
])
def test_a_shuffle_state_unlike_numpys_is_a_checkpoint_error(tmp_path, saved, change, words):
    path, entries = saved
    state = json.loads(str(entries["shuffle_rng"]))
    change(state)
    bad = rewrite(tmp_path / "bad.npz", entries, shuffle_rng=np.array(json.dumps(state)))
    with pytest.raises(CheckpointError, match=r"'shuffle_rng' is not a PCG64 generator state: " + words):
        MLP.load(bad)


def test_a_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        MLP.load(tmp_path / "nothing.npz")


def test_slots_must_fit_the_saved_optimizer(tmp_path, saved):
    _, entries = saved
    training = json.loads(str(entries["training"]))
    training["optimizer"], training["momentum"] = "adam", 0.0
    target = rewrite(tmp_path / "bad.npz", entries, training=np.array(json.dumps(training)))
    with pytest.raises(CheckpointError, match="'optimizer_slots' has shape \\(1, 6370\\); expected \\(2, 6370\\)"):
        MLP.load(target)
    assert optim.Optimizer(optimizer="adam").n_slots == 2


@pytest.mark.parametrize("validated_first", [True, False], ids=["validated-then-not", "not-then-validated"])
def test_validation_history_stays_one_entry_per_epoch(data, validated_first):
    # partial_fit with validation data after a call without it, or the reverse: val_loss and
    # val_accuracy hold None for the epochs that were not validated (they were a shorter list,
    # which the CLI's epoch lines indexed past)
    X, y = data
    model = MLP([784, 8, 10], backend="numpy")
    with_validation = {"validation_data": (X[:30], y[:30])}
    model.fit(X, y, epochs=1, batch_size=8, progress=False, **(with_validation if validated_first else {}))
    model.partial_fit(X, y, epochs=2, batch_size=8, progress=False, **({} if validated_first else with_validation))
    history = model.history_
    assert history.epoch == [1, 2, 3]
    assert len(history.val_loss) == len(history.val_accuracy) == 3
    validated = [value is not None for value in history.val_loss]
    assert validated == ([True, False, False] if validated_first else [False, True, True])
    assert [value is not None for value in history.val_accuracy] == validated
    assert all(np.isfinite(value) for value in history.val_loss if value is not None)


def test_a_run_without_validation_keeps_empty_validation_lists(data):
    X, y = data
    model = MLP([784, 8, 10], backend="numpy")
    model.fit(X, y, epochs=1, batch_size=8, progress=False)
    model.partial_fit(X, y, epochs=1, batch_size=8, progress=False)
    assert model.history_.val_loss == [] and model.history_.val_accuracy == []


@pytest.mark.parametrize("path, words", [("", "the path is empty"), (".", "is a directory")], ids=["empty", "directory"])
def test_a_checkpoint_path_that_cannot_be_written_is_refused_before_training(data, monkeypatch, path, words):
    X, y = data
    from fastmlp.backends import NumpyBackend

    def train_chunk(*args, **kwargs):
        raise AssertionError("trained before the path was checked")

    monkeypatch.setattr(NumpyBackend, "train_chunk", train_chunk)
    model = MLP([784, 8, 10], backend="numpy")
    with pytest.raises(ValueError, match=f"checkpoint_path '{path}': .*{words}"):
        model.fit(X, y, epochs=1, checkpoint_path=path, progress=False)


@pytest.mark.parametrize("attribute, value, words", [
    ("threads", 0, "threads must be 'auto' or a positive integer"),
    ("backend", "bogus", "backend"),
])
def test_save_refuses_settings_load_would_refuse(tmp_path, data, attribute, value, words):
    # attributes set after training went into the file unchecked: save succeeded, load refused it
    X, y = data
    model = MLP([784, 8, 10], backend="numpy")
    model.fit(X, y, epochs=1, batch_size=8, progress=False)
    setattr(model, attribute, value)
    path = tmp_path / "m.npz"
    with pytest.raises(ValueError, match=f"cannot save '{path}': the model would not load back: .*{words}"):
        model.save(path)
    assert not path.exists()


@pytest.mark.parametrize("attribute, value", [("seed", -5), ("init", "bogus"), ("seed", 9), ("init", "he")])
def test_save_records_the_runs_seed_and_init_not_the_next_fits(tmp_path, data, attribute, value):
    """Set after training, seed and init are the next fit's (as layers are): the file records the
    run's, so it loads back whatever they were set to."""
    X, y = data
    model = MLP([784, 8, 10], seed=3, backend="numpy")
    model.fit(X, y, epochs=1, batch_size=8, progress=False)
    setattr(model, attribute, value)
    model.save(tmp_path / "m.npz")
    loaded = MLP.load(tmp_path / "m.npz")
    assert (loaded.seed, loaded.init) == (3, "auto")
    np.testing.assert_array_equal(loaded.params_, model.params_)


def _with_entry(path, entries, out, name, declared, data=b"", times=1):
    """``entries`` written to ``out`` with entry ``name`` replaced by an .npy header declaring
    ``declared`` (descr, shape) followed by ``data`` alone, ``times`` times: a hostile or damaged file."""
    import io

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": declared[0], "fortran_order": False, "shape": declared[1]})
    np.savez(out, **{key: value for key, value in entries.items() if key != name})
    with zipfile.ZipFile(out, "a") as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile's "Duplicate name"
        for _ in range(times):
            archive.writestr(name + ".npy", header.getvalue() + data)
    return out


@pytest.mark.parametrize(
    "name, declared, times, words",
    [
        # a 1 MB member inflating to 1 GB (a zip bomb) was read in full before its shape was
        # checked: 1 GB of memory and 5 s for the params, 2 GB and 7 s for the model's JSON (audit 29)
        ("params", ("<f4", (2**28,)), 1, "'params' holds 268435456 parameters (shape (268435456,)) but the layers"),
        ("model", ("<U268435456", ()), 1, "'model' declares 1,073,741,824 bytes (<U268435456 ()), over the 67,108,864"),
        ("optimizer_slots", ("<f4", (1, 2**28)), 1, "'optimizer_slots' has shape (1, 268435456); expected (1, 6370)"),
        # the last copy of a name was read, unseen
        ("params", ("<f4", (6370,)), 2, "'params' is in the archive 2 times (the file is damaged)"),
    ],
    ids=["params-bomb", "json-bomb", "slots-bomb", "twice"],
)
def test_an_entry_is_checked_from_its_header_before_its_data_is_read(tmp_path, saved, name, declared, times, words):
    # the data after the header is missing: reading it would say "cannot be read (damaged)"
    path, entries = saved
    hostile = _with_entry(path, entries, tmp_path / "hostile.npz", name, declared, times=times)
    with pytest.raises(CheckpointError, match=re.escape(words)) as info:
        MLP.load(hostile)
    assert str(hostile) in str(info.value)


@pytest.mark.parametrize(
    "entry, change, words",
    [
        # a list of 10**12 epochs was built to compare the history with (a bare MemoryError)
        ("run", lambda record: {**record, "epochs_done": 10**12}, "'history' numbers epochs [1] but the run has done 1000000000000"),
        # int64 sizes wrapped round (or overflowed: a bare OverflowError naming no file)
        ("model", lambda record: {**record, "layers": [784, 10**20, 10]}, "'model' describes an MLP this fastmlp cannot build: "
                                                                          "layers[1] must be at most 2,147,483,647 units"),
        ("model", lambda record: {**record, "layers": [784, 2**30, 2**30, 10]}, "would have 1,152,922,357,157,855,232 weights"),
        # a bare ValueError (Python's limit on integer digits) and RecursionError
        ("run", lambda record: json.dumps(record).replace('"lr_reductions": 0', '"lr_reductions": 1' + "0" * 5000),
         "'run' is not valid JSON: ValueError: Exceeds the limit"),
        ("model", lambda record: "[" * 100_000 + "]" * 100_000, "'model' is not valid JSON: RecursionError"),
        # (loaded and resumed: a monitor of {"x": 1} changed what train --resume decided)
        ("history", lambda record: {**record, "monitor": {"x": 1}}, "'history' has monitor={'x': 1}: not 'loss'"),
        ("history", lambda record: {**record, "best_epoch": "x"}, "'history' has best_epoch='x': not one of the epochs 1..1"),
        ("history", lambda record: {**record, "stopped_epoch": 5}, "'history' has stopped_epoch=5: not one of the epochs"),
        ("history", lambda record: {**record, "stop_reason": 5}, "'history' has stop_reason=5: not text or null"),
    ],
    ids=["epochs-1e12", "layer-1e20", "weights-2^60", "digits", "nesting", "monitor", "best-epoch", "stopped-epoch",
         "stop-reason"],
)
def test_numbers_no_fastmlp_could_hold_are_checkpoint_errors(tmp_path, saved, entry, change, words):
    path, entries = saved
    changed = change(json.loads(str(entries[entry])))
    text = changed if isinstance(changed, str) else json.dumps(changed)
    hostile = rewrite(tmp_path / "hostile.npz", entries, **{entry: np.array(text)})
    with pytest.raises(CheckpointError, match=re.escape(words)) as info:
        MLP.load(hostile)
    assert str(hostile) in str(info.value)


# --- how a training call that fails ends (audit 31) ---------------------------------------------


def _diverge_at(monkeypatch, call):
    """Make the NumPy backend report a non-finite loss at the first sample of its ``call``-th
    training chunk from now (after training it, which the trainer then rolls back); returns
    the weights each chunk started from."""
    from fastmlp.backends import NumpyBackend

    real = NumpyBackend.train_chunk
    starts = []

    def train_chunk(self, params, *args, **kwargs):
        starts.append(params.copy())
        loss, correct, done, bad = real(self, params, *args, **kwargs)
        return (loss, correct, done, 0) if len(starts) == call else (loss, correct, done, bad)

    monkeypatch.setattr(NumpyBackend, "train_chunk", train_chunk)
    return starts


def _model_record(model):
    """Everything of a model a training call may change, copied."""
    import copy

    return dict(params=model.params_.copy(), state=None if model.optimizer_state_ is None else model.optimizer_state_.copy(),
                run=copy.deepcopy(model.run_), history=copy.deepcopy(model.history_),
                options=copy.deepcopy(model.fit_options_), fingerprint=model.data_fingerprint_,
                shuffle=model._shuffle_rng.bit_generator.state)


def _assert_same_record(got, want):
    np.testing.assert_array_equal(got["params"], want["params"])
    np.testing.assert_array_equal(got["state"].slots, want["state"].slots)
    np.testing.assert_array_equal(got["state"].counters, want["state"].counters)
    assert got["run"].scalars() == want["run"].scalars() and got["run"].interrupted == want["run"].interrupted
    for name in ("best", "last"):
        mine, theirs = getattr(got["run"], name), getattr(want["run"], name)
        assert (mine is None) == (theirs is None), name
        if mine is not None:
            assert mine.epoch == theirs.epoch
            np.testing.assert_array_equal(mine.params, theirs.params)
    assert vars(got["history"]) == vars(want["history"])
    assert got["options"] == want["options"] and got["fingerprint"] == want["fingerprint"]
    assert got["shuffle"] == want["shuffle"]


@pytest.mark.parametrize("how", ["diverges", "is interrupted"])
@pytest.mark.parametrize("run", ["early stopping holds the best weights", "stopped by early stopping", "plain"])
def test_a_partial_fit_that_trains_nothing_changes_nothing(data, monkeypatch, how, run, python_ctrl_c):
    # a partial_fit(lr=50) that diverged in its first chunk left lr=50 in fit_options_ (the next
    # partial_fit without lr, save and --resume took it), the previous call's stop_reason in the
    # history, and early stopping's best weights replaced by the trajectory's (audit 31)
    X, y = data
    kwargs = dict(batch_size=4, momentum=0.9, lr=0.2, validation_fraction=0.2, progress=False)
    if run != "plain":
        kwargs.update(early_stopping=1 if run == "stopped by early stopping" else 10)
    model = MLP([784, 8, 10], seed=2, backend="numpy")
    model.fit(X, y, epochs=4, **kwargs)
    if run == "early stopping holds the best weights":
        assert model.run_.last is not None and model.run_.stopped is None  # (the case this is)
    elif run == "stopped by early stopping":
        assert model.run_.stopped is not None
    before = _model_record(model)
    if how == "diverges":
        _diverge_at(monkeypatch, 1)
        expected = fastmlp.DivergenceError
    else:
        _interrupt_after(model, 0)
        expected = fastmlp.TrainingInterrupted
    with pytest.raises(expected) as raised:
        model.partial_fit(X, y, epochs=3, lr=50.0, batch_size=8, progress=False)
    assert not getattr(raised.value, "trained_nothing", False)  # (told to the model, not beyond it)
    _assert_same_record(_model_record(model), before)
    assert model.fit_options_["lr"] == 0.2 and model.fit_options_["batch_size"] == 4


@pytest.mark.parametrize("call", ["fit", "a first partial_fit"])
def test_a_new_run_that_trains_nothing_stands_at_its_start(data, monkeypatch, call):
    """Unlike a partial_fit that continues a run: the new run's weights and options stay, as
    the error says ("the model keeps the weights from before sample 0")."""
    X, y = data
    model = MLP([784, 8, 10], seed=2, backend="numpy")
    if call == "fit":
        model.fit(X, y, epochs=1, progress=False)  # (a run before it, which fit replaces)
    _diverge_at(monkeypatch, 1)
    with pytest.raises(fastmlp.DivergenceError, match="keeps the weights from before sample 0 of that epoch"):
        getattr(model, "fit" if call == "fit" else "partial_fit")(X, y, epochs=2, lr=50.0, progress=False)
    np.testing.assert_array_equal(model.params_, MLP([784, 8, 10], seed=2, backend="numpy").initialize().params_)
    assert model.epochs_trained_ == 0 and model.fit_options_["lr"] == 50.0


@pytest.mark.parametrize("where", ["a later chunk of its epoch", "the first chunk of its epoch"])
def test_a_divergence_with_early_stopping_leaves_the_best_epochs_weights(data, monkeypatch, where):
    # the model kept the weights from before the diverging chunk, and history_ had no best epoch,
    # where early stopping puts the best epoch's weights back at the end of every call (audit 31)
    X, y = data
    chunks = trainer.chunk_bounds
    monkeypatch.setattr(trainer, "chunk_bounds", lambda n, batch: chunks(n, batch, chunk_samples=40))  # 3 an epoch
    kwargs = dict(batch_size=4, momentum=0.9, lr=0.2, validation_fraction=0.2, early_stopping=10, progress=False)
    model = MLP([784, 8, 10], seed=2, backend="numpy")
    starts = _diverge_at(monkeypatch, 3 * 3 + (2 if where == "a later chunk of its epoch" else 1))
    with pytest.raises(fastmlp.DivergenceError) as raised:
        model.fit(X, y, epochs=6, **kwargs)
    monkeypatch.undo()
    assert model.epochs_trained_ == 3
    best = int(np.argmin(model.history_.val_loss)) + 1
    assert best < 3  # (the case this is: the weights held at the divergence are not the best)
    assert f"the model holds the best epoch's weights (epoch {best})" in str(raised.value)
    history = model.history_
    assert (history.best_epoch, history.stopped_epoch, history.stop_reason) == (best, None, None)
    reference = MLP([784, 8, 10], seed=2, backend="numpy")
    monkeypatch.setattr(trainer, "chunk_bounds", lambda n, batch: chunks(n, batch, chunk_samples=40))
    reference.fit(X, y, epochs=best, **kwargs)
    np.testing.assert_array_equal(model.params_, reference.params_)
    np.testing.assert_array_equal(model.optimizer_state_.slots, reference.optimizer_state_.slots)
    # the trajectory is kept to go on from: the weights the diverging chunk started from
    np.testing.assert_array_equal(model.run_.last.params, starts[-1])


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="signals sent to this thread (POSIX)")
def test_ctrl_c_after_the_calls_last_epoch_says_so_and_records_the_end(data, python_ctrl_c):
    # it said "training interrupted in epoch 3 after 0 samples" of a 2-epoch run, and the history
    # recorded no end (audit 31)
    X, y = data
    model = MLP([784, 8, 10], seed=2, backend="numpy")

    def on_epoch(history):
        if len(history.epoch) == 2:
            signal.pthread_kill(threading.get_ident(), signal.SIGINT)

    with pytest.raises(fastmlp.TrainingInterrupted, match="after epoch 2, the call's last, was recorded"):
        model.fit(X, y, epochs=2, batch_size=4, on_epoch=on_epoch, progress=False)
    history = model.history_
    assert model.epochs_trained_ == 2 and (history.stopped_epoch, history.stop_reason) == (2, "max epochs")
    whole = MLP([784, 8, 10], seed=2, backend="numpy")
    whole.fit(X, y, epochs=2, batch_size=4, progress=False)
    assert_same_run(model, whole)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_non_finite_validation_loss_is_said(rng, backend):
    # finite validation inputs whose outputs overflow: val_loss NaN, and early stopping stopped
    # for "no improvement" with nothing else said (audit 31); said once a call, and NumPy's own
    # "overflow encountered" no longer beside it every epoch (audit 37)
    import warnings

    X = rng.random((50, 20)).astype(np.float32)
    y = rng.integers(0, 3, 50)
    model = MLP([20, 8, 3], activation="relu", seed=0, backend=backend)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(X, y, epochs=3, validation_data=(X * np.float32(3e38), y), early_stopping=5,
                            progress=False)
    said = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(said) == 1 and said[0].startswith("the validation loss is nan in epoch 1: the model's outputs overflow")
    assert all(math.isnan(value) for value in history.val_loss)


def test_a_divergence_part_way_after_the_best_epoch_leaves_that_epochs_weights(data, monkeypatch):
    # the best epoch the last one done, the weights part-way into the next when it diverged: they
    # are not the best epoch's, though take_best alone would have taken them for it
    X, y = data
    chunks = trainer.chunk_bounds
    monkeypatch.setattr(trainer, "chunk_bounds", lambda n, batch: chunks(n, batch, chunk_samples=40))  # 3 an epoch
    kwargs = dict(batch_size=4, momentum=0.9, lr=0.05, validation_fraction=0.2, early_stopping=10, progress=False)
    model = MLP([784, 8, 10], seed=2, backend="numpy")
    starts = _diverge_at(monkeypatch, 3 * 3 + 2)
    with pytest.raises(fastmlp.DivergenceError, match=r"the best epoch's weights \(epoch 3\)"):
        model.fit(X, y, epochs=6, **kwargs)
    monkeypatch.undo()
    assert model.history_.best_epoch == 3 and model.run_.interrupted == {"epoch": 4, "samples": 40}
    reference = MLP([784, 8, 10], seed=2, backend="numpy")
    reference.fit(X, y, epochs=3, **kwargs)
    np.testing.assert_array_equal(model.params_, reference.params_)
    np.testing.assert_array_equal(model.run_.last.params, starts[-1])


@pytest.mark.parametrize("cut", ["half", "its last 10 bytes"])
def test_a_checkpoint_cut_short_is_called_truncated(tmp_path, saved, cut):
    """A checkpoint cut short (a copy interrupted, scp or rsync killed) said "not a fastmlp checkpoint
    (not a NumPy .npz archive: File is not a zip file)": it is fastmlp's, and the message sent the
    user looking for another file rather than another copy of this one (audit 78). A file that
    starts as a zip archive and has no end is named as cut short."""
    path, _ = saved
    raw = path.read_bytes()
    copy = tmp_path / "copy.npz"  # (a name without the words looked for)
    copy.write_bytes(raw[: len(raw) // 2] if cut == "half" else raw[:-10])
    with pytest.raises(CheckpointError) as raised:
        MLP.load(copy)
    said = str(raised.value).replace(str(copy), "FILE")  # (the words in the message, not in tmp_path's name)
    assert re.search(r"truncated|cut short|incomplete", said), said
