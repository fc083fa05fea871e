"""Model files: a versioned ``.npz`` with everything a run needs to go on exactly where it stood.

A checkpoint is a NumPy ``.npz`` archive (a zip of ``.npy`` arrays) written atomically by
``MLP.save`` and read by ``MLP.load`` with ``allow_pickle=False``: arrays, and JSON text stored
as 0-d unicode arrays, never a pickle. The README's "Checkpoint format" section documents the
entries; FORMAT_VERSION goes up whenever their meaning changes, and a reader refuses a file
from a newer format rather than misread it.

Entries of format 2 (``[P]``: the number of parameters; ``[S, P]``: the optimizer's state
slots, ``optim.Optimizer.n_slots`` of them)::

    format_version      int64 []        2 (3: see below)
    model               JSON            MLP constructor parameters (layers, activation, ...)
    params              float [P]       the weights the model holds
    training            JSON            the run's training options (MLP.fit_options_), or null
    data                JSON            n_samples and crc32 of the data last trained on (and
                                        sample_weight_crc32 of its weights, if weighted), or null
    run                 JSON            trainer.RunState: epochs_done, lr_reductions, best_loss (null: none yet),
                                        best_epoch, epochs_without_improvement,
                                        epochs_at_rate_without_improvement, stopped,
                                        best_snapshot, last_snapshot (epochs or null)
    history             JSON            trainer.History.as_dict() without the wall-clock times
                                        (seconds, samples_per_second), so a run's file is
                                        the same bytes every time
    shuffle_rng         JSON            the shuffle generator's bit_generator.state (PCG64)
    optimizer_slots     float [S, P]    velocity, or Adam's m and s     } absent before the
    optimizer_counters  int64 [3]       steps, samples, dropout seed    } first training call
    best_params, best_slots, best_counters   the best epoch's weights and optimizer state
                                        (early stopping), when run.best_snapshot is set
    last_params, last_slots, last_counters   the last epoch's, when the model holds the best
                                        ones instead (run.last_snapshot is set)

Format 3 is format 2 with ``run.interrupted``, {"epoch": e, "samples": n}: the weights are n
samples into epoch e = epochs_done + 1, which the run does not count (a training call
interrupted, or stopped by divergence, mid-epoch). A file is written in format 3 only then, so
that every other file stays readable by the fastmlp versions that read format 2.

Format 1 is format 2 without ``lr_step_epochs`` in ``training`` (its step schedule decayed every
10 epochs, as a format-1 file loads). Files written by fastmlp 0.1.0 before checkpoints existed
hold only ``config`` (the model JSON) and ``params``; they load as weights with a new run.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tokenize
import zipfile
import zlib

import numpy as np

from . import optim, trainer
from ._atomic import atomic_write
from ._warn import warn
from .network import DEFAULT_OUTPUT, vector_aligned

# What reading a damaged archive can raise, from zipfile (a bad header: BadZipFile, or
# NotImplementedError for an unknown version or compression method; RuntimeError for an
# encrypted entry), zlib (a compressed entry: zlib.error) and NumPy's .npy header parser (a
# damaged header: ValueError, SyntaxError or tokenize.TokenError; a huge claimed shape:
# MemoryError).
_DAMAGED = (ValueError, OSError, EOFError, zipfile.BadZipFile, NotImplementedError, RuntimeError, zlib.error,
            SyntaxError, tokenize.TokenError, MemoryError)

FORMAT_VERSION = 3
# The most an entry may declare (checked from its .npy header before its data is read): a JSON
# entry's text (a long run's history is well under 1 MB), and any array (784-4096-4096-10 in
# float64, with Adam's two slots and two snapshots, is about 1.3 GB)
MAX_JSON_BYTES = 64 << 20
_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
MAX_ENTRY_BYTES = 16 << 30
# Training options added since format 1, with the value a format-1 run trained with.
ADDED_IN_2 = {"lr_step_epochs": 10}
# Wall-clock fields of the history stay out of the file, so that the same run always writes the
# same bytes; a loaded history has None for them.
TIMINGS = ("seconds", "samples_per_second")
MODEL_KEYS = ("layers", "activation", "loss", "output", "bias", "init", "dtype", "seed", "backend", "threads")


class CheckpointError(ValueError):
    """A file that is not a fastmlp checkpoint, is newer than this fastmlp, or is damaged."""


class CheckpointReplacedError(RuntimeError):
    """The file a run checkpoints to was written by someone else since the run last wrote it
    (two runs given the same path): the run stops rather than replace the other's file."""


def replaced_message(path, epoch):
    return (f"{os.fsdecode(path)} was replaced by another writer (another process, or another model in this one) "
            f"since this run "
            f"{'wrote it after epoch ' + str(epoch) if epoch is not None else 'began'}: two runs write the same "
            f"file; give each its own. This run's weights were not written there")


class InterruptedRunWarning(UserWarning):
    """A model saved part-way into an epoch (its training interrupted): it does not resume exactly."""


def _plain(value):
    """NumPy scalars and arrays as the Python numbers and lists JSON writes (a hyperparameter
    like ``threads=np.int64(2)`` is accepted everywhere else)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _json(value):
    return np.array(json.dumps(value, default=_plain))


def write(model, path):
    """Write ``model`` (fitted or at least initialised) to ``path``, atomically. The network is
    the one trained (``arch_``), with the run's seed and init, whatever its attributes were set
    to since."""
    arch = model.arch_
    config = model.get_params()
    config["seed"], config["init"] = model.run_seed, getattr(model, "_run_init", config["init"])
    config["layers"] = [int(size) for size in arch.layers]
    config["dtype"] = np.dtype(arch.dtype).name
    config["activation"], config["loss"], config["bias"] = arch.activation, arch.loss, bool(arch.bias)
    if config["output"] is not None or arch.output != DEFAULT_OUTPUT[arch.loss]:
        config["output"] = arch.output  # None stays None where it still means the loss's default
    try:  # what read() builds: an attribute set to a bad value since (threads=0) would not load back
        type(model)(**config)._build()
    except (ValueError, TypeError) as error:
        raise ValueError(f"cannot save {os.fsdecode(path)!r}: the model would not load back: {error}") from None
    config["seed"] = int(config["seed"])
    _check_saveable(model, path)
    run = model.run_
    run_record = run.scalars()
    if run_record["best_loss"] == math.inf:  # none yet: strict JSON has no Infinity (other readers refuse it)
        run_record["best_loss"] = None
    run_record["best_snapshot"] = None if run.best is None else run.best.epoch
    run_record["last_snapshot"] = None if run.last is None else run.last.epoch
    if run.interrupted is not None:
        run_record["interrupted"] = run.interrupted
        warn(
            f"saving {os.fsdecode(path)!r} {run.interrupted['samples']} samples into epoch {run.interrupted['epoch']}, "
            f"which the run does not count (its training was interrupted there): the file holds those weights, and "
            f"training on from it starts epoch {run.interrupted['epoch']} anew from them, not as the uninterrupted "
            f"run would; the checkpoints fit(checkpoint_path=...) writes after each epoch resume exactly",
            InterruptedRunWarning,
        )
    arrays = {
        "format_version": np.array(FORMAT_VERSION if run.interrupted is not None else 2, np.int64),
        "model": _json(config),
        "params": model.params_,
        "training": _json(model.fit_options_),
        "data": _json(model.data_fingerprint_),
        "run": _json(run_record),
        "history": _json({name: value for name, value in model.history_.as_dict().items() if name not in TIMINGS}),
        "shuffle_rng": _json(model._shuffle_rng.bit_generator.state),
    }
    state = model.optimizer_state_
    if state is not None:
        arrays["optimizer_slots"] = state.slots
        arrays["optimizer_counters"] = state.counters
    for name, snapshot in (("best", run.best), ("last", run.last)):
        if snapshot is not None:
            arrays[f"{name}_params"] = snapshot.params
            arrays[f"{name}_slots"] = snapshot.state.slots
            arrays[f"{name}_counters"] = snapshot.state.counters
    with atomic_write(path, "wb") as f:
        np.savez(f, **arrays)


def _check_saveable(model, path):
    """What ``read`` would refuse in the arrays (weights set from elsewhere, a state replaced):
    refused before the write, which would replace a good file at ``path``."""
    try:
        model._check_params(in_place=False)
    except ValueError as error:
        raise ValueError(f"cannot save {os.fsdecode(path)!r}: {error}") from None
    run, state = model.run_, model.optimizer_state_
    n_params, dtype = model.params_.size, model.params_.dtype
    n_slots = None if model.fit_options_ is None else optim.Optimizer(
        **{name: model.fit_options_[name] for name in optim.Optimizer.__dataclass_fields__}).n_slots
    for where, held in [("optimizer_state_", state)] + [
            (f"run_.{name}", getattr(run, name) and getattr(run, name).state) for name in ("best", "last")]:
        if held is None:
            continue
        slots, counters = held.slots, held.counters
        if not (isinstance(slots, np.ndarray) and slots.dtype == dtype and slots.shape == (n_slots, n_params)
                and isinstance(counters, np.ndarray) and counters.dtype == np.int64 and counters.shape == (3,)):
            raise ValueError(
                f"cannot save {os.fsdecode(path)!r}: {where} holds slots {getattr(slots, 'dtype', type(slots).__name__)} "
                f"{getattr(slots, 'shape', '')} and counters {getattr(counters, 'dtype', type(counters).__name__)} "
                f"{getattr(counters, 'shape', '')}; the model's optimizer needs slots {np.dtype(dtype).name} "
                f"{(n_slots, n_params)} and counters int64 (3,)"
            )
        if not np.isfinite(slots).all():
            raise ValueError(f"cannot save {os.fsdecode(path)!r}: {where} holds NaN or infinity")


class _Reader:
    """Entries of one open archive, each checked, with errors that name the file and entry."""

    def __init__(self, path, archive):
        self.path = path
        self.archive = archive

    def fail(self, key, problem):
        return CheckpointError(f"{self.path}: checkpoint entry {key!r} {problem}")

    def header(self, key):
        """The dtype and shape entry ``key`` declares, read from its .npy header alone: a damaged
        or hostile file (a 1 MB zip member that inflates to gigabytes) is refused before its data
        is read."""
        if key not in self.archive.files:
            raise self.fail(key, "is missing (the file is incomplete or damaged)")
        members = [info for info in self.archive.zip.infolist() if info.filename == key + ".npy"]
        if len(members) != 1:  # (the last copy would win, unseen)
            raise self.fail(key, f"is in the archive {len(members)} times (the file is damaged)")
        try:
            with self.archive.zip.open(members[0]) as member:
                dtype, shape = npy_header(member)
        except _DAMAGED as error:
            raise self.fail(key, f"cannot be read (the file is damaged): {type(error).__name__}: {error}") from None
        return dtype, shape

    def array(self, key, dtype=None, shape=None, max_bytes=MAX_ENTRY_BYTES):
        declared_dtype, declared_shape = self.header(key)
        if dtype is not None and declared_dtype != dtype:
            raise self.fail(key, f"has dtype {declared_dtype}; expected {np.dtype(dtype).name}")
        if shape is not None and declared_shape != shape:
            raise self.fail(key, f"has shape {declared_shape}; expected {shape}")
        size = declared_dtype.itemsize * math.prod(declared_shape)
        if size > max_bytes:
            raise self.fail(key, f"declares {size:,} bytes ({declared_dtype} {declared_shape}), over the "
                                 f"{max_bytes:,} an entry of a fastmlp checkpoint can hold here")
        try:
            value = self.archive[key]
        except _DAMAGED as error:
            raise self.fail(key, f"cannot be read (the file is damaged): {type(error).__name__}: {error}") from None
        return value

    def json(self, key):
        value = self.array(key, max_bytes=MAX_JSON_BYTES)
        if value.shape != () or value.dtype.kind != "U":
            raise self.fail(key, f"is not JSON text (dtype {value.dtype}, shape {value.shape})")
        try:
            return json.loads(str(value))
        except (ValueError, RecursionError) as error:  # (JSONDecodeError, an integer of 4,300+ digits, nesting)
            raise self.fail(key, f"is not valid JSON: {type(error).__name__}: {str(error):.200}") from None


def npy_header(file):
    """(dtype, shape) that the .npy file open in ``file`` declares, read from its header alone
    (ValueError for a header NumPy's readers refuse)."""
    version = np.lib.format.read_magic(file)
    if version not in _HEADER_READERS:  # (3.0: structured dtypes with unicode field names only)
        raise ValueError(f".npy format {version[0]}.{version[1]}, which fastmlp does not write")
    shape, _, dtype = _HEADER_READERS[version](file)
    return dtype, shape


def _describe_start(path):
    """What a file that is neither .npz (zip) nor .npy starts with, for the error message."""
    with open(path, "rb") as f:
        head = f.read(8)
    if not head:
        return "the file is empty"
    if head.startswith(b"\x89PNG"):
        return "it is a PNG image"
    shown = " ".join(f"{b:02x}" for b in head)
    return f"it starts with the bytes {shown}, where an .npz archive (a zip file) starts with 50 4b ('PK')"


def _cut_short(file, head):
    """Whether ``file`` (starting with ``head``) begins as a zip archive, a local file header, and
    lacks a whole end-of-central-directory record (22 bytes, then a comment of up to 64 KB): a
    checkpoint cut short rather than another kind of file (audit 78: it was "not a fastmlp
    checkpoint", which sent the user looking for another file rather than another copy)."""
    if not head.startswith(b"PK\x03\x04"):
        return False
    size = os.fstat(file.fileno()).st_size
    file.seek(max(0, size - (22 + 65535)))
    tail = file.read()
    end = tail.rfind(b"PK\x05\x06")
    return end < 0 or len(tail) - end < 22


@contextlib.contextmanager
def _open(path):
    """The .npz archive at ``path``, open for the block, or a CheckpointError; the file closed
    after it either way (``np.load(path)`` left its file open when the archive was damaged, a
    truncated one: a ResourceWarning under ``-X dev``, audit 51)."""
    with open(path, "rb") as file:
        head = file.read(6)
        if not head.startswith(b"PK") and not head.startswith(b"\x93NUMPY"):
            # np.load would take it for a pickle and suggest loading it unsafely: never
            raise CheckpointError(f"{path}: not a fastmlp checkpoint (not a NumPy .npz archive: {_describe_start(path)})")
        file.seek(0)
        try:
            archive = np.load(file, allow_pickle=False)
        except _DAMAGED as error:
            if _cut_short(file, head):
                raise CheckpointError(
                    f"{path}: a damaged file, cut short: it starts as an .npz archive (a fastmlp checkpoint is one) "
                    f"but its {os.fstat(file.fileno()).st_size:,} bytes hold no end of the archive; an interrupted copy "
                    f"or write, perhaps: copy it again"
                ) from None
            raise CheckpointError(f"{path}: not a fastmlp checkpoint (not a NumPy .npz archive: {error})") from None
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise CheckpointError(f"{path}: not a fastmlp checkpoint (a single .npy array, not an .npz archive)")
        with archive:
            yield archive


def read(cls, path):
    """The model ``write`` wrote to ``path`` (``cls`` is ``MLP``); nothing is re-initialised."""
    path = os.fsdecode(path)  # (bytes paths named as text in errors)
    with _open(path) as archive:
        entries = _Reader(path, archive)
        if "format_version" not in archive.files:
            if {"config", "params"} <= set(archive.files):
                return _read_weights_only(cls, entries)
            raise CheckpointError(
                f"{path}: not a fastmlp checkpoint (an .npz archive without 'format_version'; "
                f"it holds {sorted(archive.files)[:6]})"
            )
        version = entries.array("format_version")
        if version.shape != () or version.dtype.kind not in "iu":
            raise entries.fail("format_version", f"is not an integer (dtype {version.dtype}, shape {version.shape})")
        version = int(version)
        if version > FORMAT_VERSION:
            raise CheckpointError(
                f"{path}: written by a newer fastmlp: format {version}, this version reads up to {FORMAT_VERSION}; "
                f"upgrade fastmlp to load it"
            )
        if version < 1:
            raise entries.fail("format_version", f"is {version}; formats start at 1")
        return _read_checkpoint(cls, entries, version)


def _model(cls, entries, key):
    config = entries.json(key)
    if not isinstance(config, dict) or set(config) - set(MODEL_KEYS):
        raise entries.fail(key, f"does not describe an MLP: {config!r:.200}")
    try:
        model = cls(**config)
        model._build()
    except (ValueError, TypeError) as error:
        raise entries.fail(key, f"describes an MLP this fastmlp cannot build: {error}") from None
    return model


def _params(model, entries, key):
    n_params = model.arch_.layout().n_params
    dtype = np.dtype(model.arch_.dtype)
    declared_dtype, shape = entries.header(key)  # (checked before its data is read)
    if shape != (n_params,):
        raise entries.fail(key, f"holds {math.prod(shape)} parameters (shape {shape}) but the layers "
                                f"{list(model.arch_.layers)} need {n_params}")
    if declared_dtype != dtype:
        raise entries.fail(key, f"has dtype {declared_dtype}; the model is {dtype.name}")
    return vector_aligned(entries.array(key))


def _read_weights_only(cls, entries):
    model = _model(cls, entries, "config")
    model.params_ = _params(model, entries, "params")
    try:
        model._check_params()
    except ValueError as error:  # (a plain ValueError that named no file)
        raise entries.fail("params", str(error)) from None
    return model


def _count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_pcg64_state(state):
    """ValueError unless ``state`` is a PCG64 state as NumPy writes it: NumPy takes 1.5 as 1, True
    as 1, any has_uint32, extra keys, and (1.x) a negative word modulo 2**64, and loads them (audit 55)."""
    keys = {"bit_generator", "state", "has_uint32", "uinteger"}
    if not isinstance(state, dict) or set(state) != keys or not isinstance(state["state"], dict) \
            or set(state["state"]) != {"state", "inc"}:
        raise ValueError(f"expected an object with the keys {sorted(keys)}, its 'state' with 'state' and 'inc'")
    if state["bit_generator"] != "PCG64":
        raise ValueError(f"its bit_generator is {state['bit_generator']!r}")

    def check(name, value, end):
        if type(value) is not int or not 0 <= value < end:  # noqa: E721 (bool is an int)
            raise ValueError(f"its {name} {value!r} is not an integer in 0 .. {end - 1}")

    check("state", state["state"]["state"], 1 << 128)
    check("inc", state["state"]["inc"], 1 << 128)
    check("has_uint32", state["has_uint32"], 2)
    check("uinteger", state["uinteger"], 1 << 32)


def _check_consistent(entries, model):
    """Entries that each load but contradict one another (a run's epochs against its history,
    a run without options that has trained): refused rather than trained on from."""
    run, history, training = model.run_, model.history_, model.fit_options_
    for name in ("epochs_done", "lr_reductions", "best_epoch", "epochs_without_improvement",
                 "epochs_at_rate_without_improvement"):
        if not _count(getattr(run, name)):
            raise entries.fail("run", f"has {name}={getattr(run, name)!r} (a count: an integer >= 0)")
    if run.best_epoch > run.epochs_done:
        raise entries.fail("run", f"has best_epoch={run.best_epoch} after epochs_done={run.epochs_done}")
    if training is None and run.epochs_done:
        raise entries.fail("training", f"is null, but the run has trained {run.epochs_done} epochs")
    if training is not None and run.epochs_done and training["schedule_epochs"] is None:
        # (a training call sets it: the run's horizon, which its schedule and a resume go by)
        raise entries.fail("training", f"has schedule_epochs=null, but the run has trained {run.epochs_done} epochs")
    epochs = run.epochs_done
    if len(history.epoch) != epochs or history.epoch != list(range(1, epochs + 1)):  # (the length first: 10**12)
        raise entries.fail("history", f"numbers epochs {history.epoch!r:.80} but the run has done {epochs}")
    for name in ("lr", "loss", "accuracy", "samples", "val_loss", "val_accuracy"):
        values = getattr(history, name)
        lengths = (0, epochs) if name.startswith("val_") or name == "accuracy" else (epochs,)
        if not isinstance(values, list) or len(values) not in lengths or not all(
                value is None or _number(value) for value in values):
            raise entries.fail("history", f"has {name}={values!r:.80}: not a list of {epochs} numbers")
    # (garbage here loaded and resumed: a monitor of {"x": 1} changed what train --resume decided)
    if history.monitor not in (None, "loss", "val_loss"):
        raise entries.fail("history", f"has monitor={history.monitor!r}: not 'loss', 'val_loss' or null")
    for name in ("best_epoch", "stopped_epoch"):
        value = getattr(history, name)
        if value is not None and not (_count(value) and 1 <= value <= epochs):
            raise entries.fail("history", f"has {name}={value!r}: not one of the epochs 1..{epochs} or null")
    if history.stop_reason is not None and not isinstance(history.stop_reason, str):
        raise entries.fail("history", f"has stop_reason={history.stop_reason!r}: not text or null")
    if math.isnan(run.best_loss):
        raise entries.fail("run", "has best_loss=NaN (the lowest monitored loss so far; inf before the first epoch)")
    for name in ("best", "last"):
        snapshot = getattr(run, name)
        if snapshot is not None and not 1 <= snapshot.epoch <= run.epochs_done:
            raise entries.fail("run", f"has {name}_snapshot={snapshot.epoch}: not one of the epochs 1..{run.epochs_done}")
        if snapshot is not None and not np.isfinite(snapshot.params).all():
            raise entries.fail(f"{name}_params", "holds NaN or infinity (weights the run would go back to)")
    adam = training is not None and training["optimizer"] == "adam"
    state = model.optimizer_state_
    for prefix, held in [("optimizer", state)] + [
            (name, snapshot.state) for name, snapshot in (("best", run.best), ("last", run.last)) if snapshot is not None]:
        if held is None:
            continue
        if (held.counters < 0).any():
            raise entries.fail(f"{prefix}_counters", f"holds negative counts {held.counters.tolist()}")
        if not np.isfinite(held.slots).all():
            raise entries.fail(f"{prefix}_slots", "holds NaN or infinity")
        if adam and (held.slots[1] < 0).any():
            raise entries.fail(f"{prefix}_slots", "holds a negative second moment (Adam's mean of squared gradients)")
    data = model.data_fingerprint_
    if data is not None and not (isinstance(data, dict) and {"n_samples", "crc32"} <= set(data)
                                 <= {"n_samples", "crc32", "sample_weight_crc32"} and all(map(_count, data.values()))):
        raise entries.fail("data", f"is not a record of training data: {data!r:.80}")


def _read_checkpoint(cls, entries, version):
    model = _model(cls, entries, "model")
    model.params_ = _params(model, entries, "params")
    try:
        model._check_params()
    except ValueError as error:
        raise entries.fail("params", str(error)) from None
    n_params = model.params_.size
    dtype = model.params_.dtype

    training = entries.json("training")
    if training is not None:
        from .model import FIT_DEFAULTS, check_fit_options

        if version == 1 and isinstance(training, dict) and not set(ADDED_IN_2) & set(training):
            training = {**training, **ADDED_IN_2}
        if not isinstance(training, dict) or set(training) != set(FIT_DEFAULTS):
            raise entries.fail("training", f"does not hold the training options {sorted(FIT_DEFAULTS)}")
        try:
            training = check_fit_options(training)
        except (ValueError, TypeError) as error:
            raise entries.fail("training", f"holds an invalid option: {error}") from None
    model.fit_options_ = training
    model.data_fingerprint_ = entries.json("data")

    def state(prefix):
        n_slots = optim.Optimizer(**{name: training[name] for name in optim.Optimizer.__dataclass_fields__}).n_slots
        slots = entries.array(f"{prefix}_slots", dtype, (n_slots, n_params))
        counters = entries.array(f"{prefix}_counters", np.int64, (3,))
        return optim.State(vector_aligned(slots), counters.copy())

    if training is not None:
        model.optimizer_state_ = state("optimizer")

    record = entries.json("run")
    run = trainer.RunState()
    keys = set(run.SCALARS) | {"best_snapshot", "last_snapshot"}
    if not isinstance(record, dict) or set(record) - {"interrupted"} != keys or (
            "interrupted" in record and version < 3):
        raise entries.fail("run", f"does not hold the run's position {sorted(run.SCALARS)}")
    if "interrupted" in record:
        mark = record["interrupted"]
        if not (isinstance(mark, dict) and set(mark) == {"epoch", "samples"} and _count(mark["epoch"])
                and _count(mark["samples"]) and mark["samples"] > 0 and mark["epoch"] == record["epochs_done"] + 1):
            raise entries.fail("run", f"has interrupted={mark!r:.80} (expected {{'epoch': epochs_done + 1, "
                                      f"'samples': a count > 0}})")
        run.interrupted = mark
    for name in run.SCALARS:
        value = record[name]
        expected = {"best_loss": (int, float, type(None)), "stopped": (str, type(None))}.get(name, int)
        if isinstance(value, bool) or not isinstance(value, expected):
            raise entries.fail("run", f"has {name}={value!r}")
        if name == "best_loss":  # null: none yet (inf, which strict JSON has no word for)
            value = math.inf if value is None else float(value)
        setattr(run, name, value)
    for name in ("best", "last"):
        epoch = record[f"{name}_snapshot"]
        if epoch is None:
            continue
        if training is None or isinstance(epoch, bool) or not isinstance(epoch, int):
            raise entries.fail("run", f"has {name}_snapshot={epoch!r}")
        snapshot_params = entries.array(f"{name}_params", dtype, (n_params,))
        setattr(run, name, trainer.Snapshot(epoch, np.ascontiguousarray(snapshot_params), state(name)))
    model.run_ = run

    record = entries.json("history")  # (its own CheckpointError for a missing or damaged entry)
    try:
        if not isinstance(record, dict) or set(TIMINGS) & set(record):
            raise ValueError(f"expected a JSON object without {TIMINGS}")
        record.update({name: [None] * len(record.get("epoch", [])) for name in TIMINGS})
        model.history_ = trainer.History.from_dict(record)
    except (TypeError, ValueError, AttributeError) as error:
        raise entries.fail("history", f"is not a training history: {error}") from None

    _check_consistent(entries, model)

    rng_state = entries.json("shuffle_rng")
    try:
        _check_pcg64_state(rng_state)
        model._shuffle_rng.bit_generator.state = rng_state
    except (TypeError, ValueError, KeyError, OverflowError) as error:
        raise entries.fail("shuffle_rng", f"is not a PCG64 generator state: {error}") from None
    return model
