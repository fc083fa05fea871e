"""The training loop every backend shares: epochs, shuffling, chunks, schedule, stopping, history.

An epoch is one pass over a permutation of the samples, drawn from the model's shuffle
generator (or the identity when shuffling is off). The permutation is cut into batches of
``batch_size`` (the last one shorter) and handed to the backend a chunk of whole batches at a
time, so the compiled core runs thousands of samples per call while progress, Ctrl-C and
divergence checks still happen between chunks.

A *run* is what ``MLP.fit`` starts and ``MLP.partial_fit`` continues. Everything about it that
changes from epoch to epoch lives in three objects the model owns and a checkpoint saves: the
weights, the optimizer state (``optim.State``) and ``RunState`` (epochs done, the adaptive
schedule's position, the best monitored loss so far). The rate of an epoch is a function of
those and of the run's ``Schedule`` only, so a run stopped after any epoch and resumed from
them repeats the uninterrupted run bit for bit.

Learning-rate schedules, for the 0-based epoch e of a run whose horizon is E epochs (the
``epochs`` of the ``fit`` that started it, or ``schedule_epochs``)::

    constant      lr
    exponential   lr * decay^e
    step          lr * decay^floor(e / S)     S = step_epochs (lr_step_epochs; default 10)
    cosine        lr * (1 + cos(pi * e / E)) / 2
    invscaling    lr / (t + 1)^power_t        t = samples trained in the run before epoch e
    adaptive      lr / 5^k                    k = reductions so far (below)
    warm-up       epochs e < W train at (e + 1) / (W + 1) times the rate above

Stopping, from the monitored loss (the validation loss when there is validation data, else the
epoch's mean training loss): an epoch *improves* when its loss is below the best so far minus
``tol``. ``adaptive`` divides the rate by 5 after ``n_iter_no_change`` epochs in a row without
improvement (the count restarts after each reduction) and stops the run when the next rate
would be below 1e-6; early stopping (``patience``) stops the run after that many epochs
without improvement. The two are scikit-learn's ``learning_rate="adaptive"`` and
``early_stopping``, except that the counts here stop at the patience, not one epoch past it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from . import optim
from ._warn import warn
from .progress import progress_bar, signals_held

SCHEDULES = ("constant", "exponential", "step", "cosine", "invscaling", "adaptive")
CHUNK_SAMPLES = 8192
ADAPTIVE_DIVISOR = 5
ADAPTIVE_MIN_LR = 1e-6
MAX_EPOCHS = "max epochs"
ADAPTIVE_STOP = "adaptive learning rate fell below 1e-6"


class DivergenceError(FloatingPointError, ValueError):
    """The training loss, or a weight, became NaN or infinite (a ``FloatingPointError``, and a
    ``ValueError`` as scikit-learn's error for it is, so that code written for scikit-learn
    catches it). The model keeps the weights from
    before the chunk of samples where it happened, or with early stopping the best epoch's (the
    message says which).

    Attributes: ``epoch`` (from 1) and ``sample`` (its position in that epoch's order) where it
    was seen, ``row`` (that sample's row of the training data), ``lr`` (the rate then) and
    ``samples_done`` (the samples of the epoch the kept weights trained on)."""

    def __init__(self, message, *, epoch, sample, row, lr):
        super().__init__(message)
        self.epoch = epoch
        self.sample = sample
        self.row = row
        self.lr = lr
        self.samples_done = 0  # samples of the epoch the kept weights have trained on

    def __reduce__(self):
        # pickled whole (joblib's and Dask's workers send it back): the default rebuilt it from
        # the message alone, and the required keywords made that a TypeError (audit 49)
        return _rebuilt_divergence, (self.args,), self.__dict__


def _rebuilt_divergence(args):
    error = DivergenceError(*(args[:1] or ("",)), epoch=None, sample=None, row=None, lr=None)
    error.args = args
    return error


def _pad_validation(history, n_epochs):
    """Pad ``val_loss`` and ``val_accuracy`` with None to ``n_epochs`` entries (epochs trained
    without validation data), so that they stay one entry per epoch; a run never validated
    keeps them empty."""
    if not history.val_loss and n_epochs == len(history.epoch):
        return  # never validated: the lists stay empty
    missing = n_epochs - len(history.val_loss)
    history.val_loss.extend([None] * missing)
    history.val_accuracy.extend([None] * missing)


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during fit: the model holds the weights of the last completed chunk.
    ``samples_done``: how many samples of the interrupted epoch those weights have trained on;
    ``where``: the message's first part, where training stopped (without the model's account)."""

    samples_done = 0
    where = None


@dataclass
class History:
    """Per-epoch records of a run (lists indexed by epoch) and how its last training call ended.

    The lists hold one entry per epoch of the model's run so far, over all its ``fit`` and
    ``partial_fit`` calls (``epoch`` its number, from 1): ``lr`` the epoch's learning rate as its
    schedule gave it; ``loss`` and ``accuracy`` the mean training loss and accuracy over the
    epoch's samples as they trained (``accuracy`` None for regression); ``val_loss`` and
    ``val_accuracy`` on the validation data after the epoch (empty while no epoch had any, None for
    an epoch without; ``val_accuracy`` None for regression); ``seconds`` the epoch's training time
    (validation not included), ``samples`` the samples it trained and ``samples_per_second``.

    ``monitor`` is the loss early stopping and the adaptive schedule watch ("val_loss" or
    "loss"); ``best_epoch`` the 1-based epoch with the lowest monitored loss; ``stopped_epoch``
    the last epoch trained; ``stop_reason`` why training ended ("max epochs", "early stopping:
    ...", "adaptive learning rate fell below 1e-6": ``ADAPTIVE_STOP``).
    """

    epoch: list = field(default_factory=list)
    lr: list = field(default_factory=list)
    loss: list = field(default_factory=list)
    accuracy: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    val_accuracy: list = field(default_factory=list)
    seconds: list = field(default_factory=list)
    samples: list = field(default_factory=list)
    samples_per_second: list = field(default_factory=list)
    monitor: str | None = None
    best_epoch: int | None = None
    stopped_epoch: int | None = None
    stop_reason: str | None = None

    def __repr__(self):
        # a summary: the lists in full (every value to 17 digits) are as_dict()'s, or the fields'
        n = len(self.epoch)
        if n == 0:
            return "History(no epochs)"
        parts = [f"epochs {self.epoch[0]}-{self.epoch[-1]}" if n > 1 else f"epoch {self.epoch[0]}"]
        for name in ("loss", "accuracy", "val_loss", "val_accuracy"):
            values = [value for value in getattr(self, name) if value is not None]
            if values:
                parts.append(f"{name} {values[0]:.4g}" + (f" -> {values[-1]:.4g}" if len(values) > 1 else ""))
        parts += [f"{name}={getattr(self, name)!r}" for name in ("monitor", "best_epoch", "stopped_epoch", "stop_reason")
                  if getattr(self, name) is not None]
        return f"History({', '.join(parts)})"

    def as_dict(self):
        """Every field as plain lists and values (what ``--json`` and checkpoints store)."""
        return {name: list(value) if isinstance(value, list) else value for name, value in self.__dict__.items()}

    @classmethod
    def from_dict(cls, record):
        """The History of an ``as_dict()`` record; ValueError for a field it does not know."""
        unknown = set(record) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown history fields {sorted(unknown)}")
        return cls(**record)


@dataclass(frozen=True)
class Schedule:
    """The learning rate of each epoch (formulas in the module docstring)."""

    lr: float
    name: str = "constant"
    decay: float = 0.5
    step_epochs: int = 10
    power_t: float = 0.5
    warmup_epochs: int = 0
    horizon: int = 1

    def rate(self, epoch, samples_before=0, reductions=0):
        """The rate of 0-based ``epoch`` after ``samples_before`` samples and ``reductions``
        adaptive reductions."""
        lr = self.lr
        if self.name == "exponential":
            lr = lr * self.decay**epoch
        elif self.name == "step":
            lr = lr * self.decay ** (epoch // self.step_epochs)
        elif self.name == "cosine":
            lr = lr * 0.5 * (1 + math.cos(math.pi * epoch / self.horizon))
        elif self.name == "invscaling":
            lr = lr / (samples_before + 1) ** self.power_t
        elif self.name == "adaptive":
            lr = lr / ADAPTIVE_DIVISOR**reductions
        if epoch < self.warmup_epochs:
            lr = lr * (epoch + 1) / (self.warmup_epochs + 1)
        return lr


@dataclass(frozen=True)
class Stopping:
    """When a run stops or slows down: ``patience`` (early stopping; None = off), ``tol``,
    and ``n_iter_no_change`` (the adaptive schedule's patience)."""

    patience: int | None = None
    tol: float = 1e-4
    n_iter_no_change: int = 10


@dataclass
class Snapshot:
    """Weights and optimizer state as they were after ``epoch`` (1-based)."""

    epoch: int
    params: np.ndarray
    state: optim.State


@dataclass
class RunState:
    """Where a run stands between epochs, besides its weights, optimizer state and shuffle
    generator: everything exact resumption needs.

    ``best`` holds the weights and optimizer state of the best epoch while early stopping is
    on. At the end of a training call with early stopping the model takes the best weights;
    ``last`` then keeps the weights the last epoch left, which is where the run goes on from
    (unless it has ``stopped``, in which case it goes on from the best).
    """

    epochs_done: int = 0
    lr_reductions: int = 0
    best_loss: float = math.inf
    best_epoch: int = 0
    epochs_without_improvement: int = 0
    epochs_at_rate_without_improvement: int = 0
    stopped: str | None = None
    best: Snapshot | None = None
    last: Snapshot | None = None
    # {"epoch": e, "samples": n} while the weights are n samples into epoch e, which the run
    # does not count (a training call interrupted, or stopped by divergence, mid-epoch); None
    # at an epoch's end. Training on goes on from those weights, not as the run would have.
    interrupted: dict | None = None

    SCALARS = ("epochs_done", "lr_reductions", "best_loss", "best_epoch", "epochs_without_improvement",
               "epochs_at_rate_without_improvement", "stopped")

    def scalars(self):
        return {name: getattr(self, name) for name in self.SCALARS}

    def continue_from(self, params, state):
        """Put the run's trajectory back into ``params``/``state`` before training on. Returns
        what ``undo`` needs to put the run, ``params`` and ``state`` back as they were (a call
        that trains nothing changes nothing): the weights are copied only when the trajectory
        replaces them (early stopping's best weights, which the model holds between calls)."""
        record = (self.scalars(), self.last, self.interrupted, None)
        if self.stopped is not None:
            # A stopped run has no longer trajectory to go back to: it goes on from the weights
            # the model holds (the best ones, with early stopping), with fresh patience.
            self.stopped = None
            self.last = None
            self.epochs_without_improvement = 0
            self.epochs_at_rate_without_improvement = 0
        elif self.last is not None:
            record = record[:3] + ((params.copy(), state.copy()),)
            params[...] = self.last.params
            state.restore(self.last.state)
            self.last = None
        return record

    def undo(self, record, params, state):
        """Back to before ``continue_from`` returned ``record``."""
        scalars, self.last, self.interrupted, held = record
        for name, value in scalars.items():
            setattr(self, name, value)
        if held is not None:
            params[...] = held[0]
            state.restore(held[1])

    def observe(self, loss, params, state, schedule: Schedule, stopping: Stopping, monitor):
        """Book the monitored ``loss`` of the epoch just done; return why the run must stop, or None."""
        if loss < self.best_loss - stopping.tol:
            self.epochs_without_improvement = 0
            self.epochs_at_rate_without_improvement = 0
        else:
            self.epochs_without_improvement += 1
            self.epochs_at_rate_without_improvement += 1
        if loss < self.best_loss:
            self.best_loss = float(loss)
            self.best_epoch = self.epochs_done
            if stopping.patience is not None:
                if self.best is None:
                    self.best = Snapshot(self.epochs_done, params.copy(), state.copy())
                else:
                    self.best.epoch = self.epochs_done
                    self.best.params[...] = params
                    self.best.state.restore(state)
        if stopping.patience is not None and self.epochs_without_improvement >= stopping.patience:
            return (f"early stopping: no improvement of {monitor} by more than tol={stopping.tol:g} "
                    f"for {stopping.patience} epochs")
        if schedule.name == "adaptive" and self.epochs_at_rate_without_improvement >= stopping.n_iter_no_change:
            self.epochs_at_rate_without_improvement = 0
            if schedule.lr / ADAPTIVE_DIVISOR ** (self.lr_reductions + 1) < ADAPTIVE_MIN_LR:
                return ADAPTIVE_STOP
            self.lr_reductions += 1
        return None

    def take_best(self, params, state, part_way=False):
        """End of a training call with early stopping: the model takes the best epoch's weights
        and optimizer state; the last epoch's are kept in ``last`` to go on from (``part_way``:
        the weights are part-way into the epoch after the last one done, so they are not the
        best even where the best epoch is that last one). Returns whether the weights changed."""
        best = self.best
        if best is None or best.epoch != self.best_epoch or (best.epoch == self.epochs_done and not part_way):
            return False
        self.last = Snapshot(self.epochs_done, params.copy(), state.copy())
        params[...] = best.params
        state.restore(best.state)
        return True


def chunk_bounds(n_samples, batch_size, chunk_samples=CHUNK_SAMPLES):
    """[(start, stop)] covering range(n_samples) in runs of whole batches."""
    per_chunk = max(1, chunk_samples // batch_size) * batch_size
    return [(start, min(start + per_chunk, n_samples)) for start in range(0, n_samples, per_chunk)]


def _advice(optimizer, lr):
    """What to try after a divergence with ``optimizer`` (None: plain SGD) at rate ``lr``."""
    if optimizer is not None and optimizer.weight_decay:
        # the decay's own step, w <- (1 - lr * decay) w, grows the weights past this product
        # (with momentum mu, the stability limit of its two-term recurrence: 2(1 + mu), or
        # 2(1 + mu)/(1 + 2mu) for Nesterov's); Adam's coupled decay is normalised with the
        # gradient and has no such limit
        if optimizer.decoupled_weight_decay:
            limit = 2.0
        elif optimizer.optimizer == "sgd":
            mu = optimizer.momentum
            limit = 2.0 * (1.0 + mu) / (1.0 + 2.0 * mu if optimizer.nesterov else 1.0)
        else:
            limit = math.inf
        if lr * optimizer.weight_decay > limit:
            return (f"The weight decay alone makes the weights grow: lr x weight_decay = "
                    f"{lr * optimizer.weight_decay:g} is above {limit:g}, where the decay step stops "
                    f"shrinking them. Try a smaller weight decay or learning rate")
    return "Try a smaller learning rate"


def _diverged(what, epoch, sample, order, lr, start, optimizer=None, advice=None):
    """The DivergenceError for ``what`` went wrong in the chunk that began at ``start``, with
    ``advice`` (by default ``_advice``'s, of the rate and the weight decay)."""
    error = DivergenceError(
        f"training diverged: {what} with lr={lr:g}; the model keeps the weights from before sample "
        f"{start} of that epoch. {_advice(optimizer, lr) if advice is None else advice}",
        epoch=epoch,
        sample=sample,
        row=int(order[sample]),
        lr=lr,
    )
    error.samples_done = start
    return error


def _interrupted(epoch, done):
    if done == 0:  # (it said "after 0 samples; ... the weights from after sample 0")
        # (which weights the model then holds depends on the run: early stopping's best ones, or
        # those of an epoch an earlier call stopped part-way: audit 55)
        where = f"training interrupted at the start of epoch {epoch}, before its first sample"
        error = TrainingInterrupted(f"{where}: nothing of epoch {epoch} trained")
    else:
        where = f"training interrupted in epoch {epoch} after {done} samples"
        error = TrainingInterrupted(f"{where}; the model holds the weights from after sample {done} of that epoch")
    error.samples_done, error.where = done, where
    return error


def _interrupted_after_training(epoch, n_samples, where):
    """The TrainingInterrupted of an interrupt after epoch ``epoch`` + 1 trained all its
    ``n_samples`` but before the run recorded it (``where``: "while validating", ...)."""
    where = f"training interrupted {where} epoch {epoch + 1}"
    error = TrainingInterrupted(
        f"{where}: its training ran to the end, but the run counts only the {epoch} epoch{'s' if epoch != 1 else ''} "
        f"before it; the model holds the weights from the end of that training"
    )
    error.samples_done, error.where = n_samples, where
    return error


def train_epoch(backend, params, data, targets, order, lr, batch_size, *, epoch=1, on_chunk=None,
                optimizer=None, state=None, sample_weight=None):
    """One pass over the sample positions ``order``, in chunks of whole batches, in place on
    ``params`` (and on ``state``, the ``optim.State`` of ``optimizer``; without them, plain
    SGD); returns (loss_sum, n_correct, seconds in the backend).

    After every chunk the parameters are checked: a chunk that produced a non-finite loss or
    left a non-finite weight (a last update that overflowed) is rolled back, weights and
    optimizer state, and ``DivergenceError`` raised; Ctrl-C inside a chunk rolls it back the
    same way and raises ``TrainingInterrupted``. ``epoch`` (1-based) only labels those
    messages. ``on_chunk(n_chunk, mean_loss)`` is called after each chunk with its sample count
    and the mean loss of the epoch so far (progress bars).
    ``sample_weight`` (dtype [N], mean 1, or None) weighs each sample's loss and gradient.
    """
    weighted = {} if sample_weight is None else {"sample_weight": sample_weight}
    snapshot = np.empty_like(params)
    state_snapshot = None if state is None else state.copy()
    loss_sum, n_correct, done = 0.0, 0, 0
    seconds = 0.0
    counted = True  # every chunk trained so far is in ``done``

    def roll_back():
        params[...] = snapshot
        if state is not None:
            state.restore(state_snapshot)

    try:
        for start, stop in chunk_bounds(len(order), batch_size):
            snapshot[...] = params
            if state is not None:
                state_snapshot.restore(state)
            tic = time.perf_counter()
            try:
                # optimizer and state go positionally: wrappers of train_chunk pass *args through
                chunk_loss, chunk_correct, chunk_done, nonfinite_at = backend.train_chunk(
                    params, data, targets, order[start:stop], lr, batch_size, optimizer, state, **weighted
                )
                counted = False  # (no signal is taken between a call's end and here)
            except KeyboardInterrupt:
                roll_back()
                raise _interrupted(epoch, done) from None
            seconds += time.perf_counter() - tic
            if nonfinite_at >= 0:
                roll_back()
                sample = start + nonfinite_at
                raise _diverged(
                    f"the loss became non-finite in epoch {epoch} at sample {sample} (data row {int(order[sample])})",
                    epoch, sample, order, lr, start, optimizer,
                )
            if not np.isfinite(params).all():
                # Every loss was finite, but an update overflowed a weight (typically the last one
                # of the chunk, whose result no loss has seen yet).
                roll_back()
                raise _diverged(
                    f"a weight became non-finite in epoch {epoch} by the update of the samples {start}..{stop - 1}",
                    epoch, stop - 1, order, lr, start, optimizer,
                )
            if state is not None and not np.isfinite(state.slots).all():
                # The weights are finite, but the optimizer's state overflowed: Adam's second
                # moment of a gradient whose square is past the dtype's range is inf, and that
                # weight's step m / sqrt(inf) is 0 from then on, a weight that silently stopped
                # training (and a model that cannot be saved; audit 60)
                roll_back()
                kind = "Adam's moment estimates" if optimizer.optimizer == "adam" else "the momentum's velocities"
                decay = f" (weight_decay={optimizer.weight_decay:g})" if optimizer.weight_decay else ""
                raise _diverged(
                    f"{kind} became non-finite in epoch {epoch} by the update of the samples {start}..{stop - 1}",
                    epoch, stop - 1, order, lr, start, optimizer,
                    advice=f"A gradient was too large for {params.dtype}: scale the inputs, lower the weight "
                           f"decay{decay}, or train in float64.",
                )
            loss_sum += chunk_loss
            n_correct += chunk_correct
            done += chunk_done
            counted = True
            if on_chunk is not None:
                try:
                    on_chunk(chunk_done, loss_sum / max(done, 1))
                except KeyboardInterrupt:  # in the progress bar's update: the chunk is trained
                    raise _interrupted(epoch, done) from None
    except KeyboardInterrupt as interrupt:  # outside a chunk's call (a snapshot's copy, a check)
        if isinstance(interrupt, TrainingInterrupted):
            raise
        if not counted:  # a chunk trained but not counted yet: undone, so that the weights stand after ``done``
            roll_back()
        raise _interrupted(epoch, done) from None
    return loss_sum, n_correct, seconds


def train(
    backend,
    params,
    data,
    targets,
    *,
    epochs,
    batch_size,
    schedule: Schedule,
    optimizer: optim.Optimizer,
    state: optim.State,
    run: RunState,
    stopping: Stopping = Stopping(),
    shuffle_rng=None,
    evaluate=None,
    progress=None,
    history=None,
    on_epoch=None,
    sample_weight=None,
    classifies=True,
):
    """Train up to ``epochs`` more epochs of the run ``run``, in place on ``params``, ``state``
    and ``run``; return the History (``history``, appended to). A regression's (``classifies``
    false) training accuracy is recorded as None, as its validation accuracy is.

    ``data``/``targets`` are already validated and prepared for ``backend``; ``evaluate`` is an
    optional callable returning (val_loss, val_accuracy) after each epoch, and its loss is then
    the monitored one. ``on_epoch()`` is called after each epoch's bookkeeping (checkpoints).
    ``sample_weight``: see ``train_epoch``; the training loss is then the weighted mean.
    ``progress`` (None, True or False, see ``fastmlp.progress``) draws one bar per epoch with the
    running mean loss as its postfix.
    """
    history = History() if history is None else history
    monitor = "val_loss" if evaluate is not None else "loss"
    monitored_before, history.monitor = history.monitor, monitor
    n_samples = len(targets)
    before = run.continue_from(params, state)
    first_epoch = run.epochs_done
    said_non_finite = False  # a call's first non-finite validation loss has a warning
    # a run going on has not ended: until this call's end (record_end) its history says so, as
    # the uninterrupted run's checkpoints and on_epoch see it (the last call's end stayed in
    # them: a checkpoint of 5 epochs of an unfinished run said "max epochs" at epoch 2, audit 67)
    ended_before = history.best_epoch, history.stopped_epoch, history.stop_reason
    history.best_epoch = history.stopped_epoch = history.stop_reason = None

    def untrained(error):
        # nothing of the call trained: the run as it was before it (early stopping's best
        # weights, a stopped run's patience), and the model's options (``trained_nothing``)
        run.undo(before, params, state)
        history.monitor = monitored_before
        history.best_epoch, history.stopped_epoch, history.stop_reason = ended_before
        error.trained_nothing = True

    last_epoch = run.epochs_done + epochs
    while run.epochs_done < last_epoch:
        epoch = run.epochs_done
        drawn_from, trained = None, None
        try:
            rate = schedule.rate(epoch, int(state.counters[optim.SAMPLES]), run.lr_reductions)
            drawn_from = None if shuffle_rng is None else shuffle_rng.bit_generator.state
            order = shuffle_rng.permutation(n_samples) if shuffle_rng is not None else np.arange(n_samples)
            order = order.astype(np.int64, copy=False)
            with progress_bar(n_samples, f"epoch {epoch + 1}/{last_epoch}", enabled=progress,
                              unit="sample", unit_scale=True) as bar:

                def on_chunk(n_done, mean_loss):
                    bar.set_postfix(loss=mean_loss, refresh=False)
                    bar.update(n_done)

                trained = train_epoch(
                    backend, params, data, targets, order, rate, batch_size, epoch=epoch + 1,
                    on_chunk=on_chunk, optimizer=optimizer, state=state, sample_weight=sample_weight,
                )
        except (TrainingInterrupted, DivergenceError) as error:
            if error.samples_done == 0:
                # nothing of the epoch trained: the run stands at its end as if the epoch never
                # began, its permutation not drawn either (so it goes on exactly)
                if shuffle_rng is not None and drawn_from is not None:
                    shuffle_rng.bit_generator.state = drawn_from
                if epoch == first_epoch:
                    untrained(error)
                    raise
            else:
                run.interrupted = {"epoch": epoch + 1, "samples": int(error.samples_done)}
            _cut_short(error, history, run, params, state, stopping)
            raise
        except KeyboardInterrupt:
            # outside the chunks (the permutation, the bar's start or end): before the epoch
            # trained, as if it never began; after, as an interrupt while validating
            if trained is None:
                if shuffle_rng is not None and drawn_from is not None:
                    shuffle_rng.bit_generator.state = drawn_from
                error = _interrupted(epoch + 1, 0)
                if epoch == first_epoch:
                    untrained(error)
                else:
                    _cut_short(error, history, run, params, state, stopping)
                raise error from None
            run.interrupted = {"epoch": epoch + 1, "samples": n_samples}
            error = _interrupted_after_training(epoch, n_samples, "at the end of")
            _cut_short(error, history, run, params, state, stopping)
            raise error from None
        loss_sum, n_correct, seconds = trained
        validation = None
        if evaluate is not None:
            try:
                validation = evaluate()
            except KeyboardInterrupt:
                # nothing of the epoch is recorded yet: the run stays at the epochs before it,
                # as after an interrupt inside a chunk, with the weights as they are
                run.interrupted = {"epoch": epoch + 1, "samples": n_samples}
                error = _interrupted_after_training(epoch, n_samples, "while validating")
                _cut_short(error, history, run, params, state, stopping)
                raise error from None
            if not math.isfinite(validation[0]) and not said_non_finite:
                said_non_finite = True
                # finite weights whose outputs overflow on the validation data (its values far
                # out of the training data's range): no divergence of training, but early stopping
                # and the adaptive schedule count the epoch as no improvement, and said nothing
                warn(f"the validation loss is {validation[0]} in epoch {epoch + 1}: the model's outputs "
                              f"overflow on the validation data (far out of the training data's range?); early "
                              f"stopping and the adaptive schedule count such epochs as no improvement",
                              RuntimeWarning)
        try:
            # the epoch's record, whole: an interrupt between its lines left the history an epoch
            # ahead of the run, in a file no load would take
            with signals_held():
                run.interrupted = None
                history.epoch.append(epoch + 1)
                history.lr.append(rate)
                history.loss.append(loss_sum / n_samples)
                history.accuracy.append(n_correct / n_samples if classifies else None)
                history.seconds.append(seconds)
                history.samples.append(n_samples)
                history.samples_per_second.append(n_samples / seconds if seconds > 0 else float("inf"))
                monitored = history.loss[-1]
                if validation is not None:
                    val_loss, val_accuracy = validation
                    _pad_validation(history, len(history.epoch) - 1)
                    history.val_loss.append(val_loss)
                    history.val_accuracy.append(val_accuracy)
                    monitored = val_loss
                else:
                    _pad_validation(history, len(history.epoch))
                run.epochs_done += 1
                stop = run.observe(monitored, params, state, schedule, stopping, monitor)
                if stop is not None:
                    # the end of the run: take the best weights before a checkpoint records it
                    run.stopped = stop
                    if stopping.patience is not None:
                        run.take_best(params, state)
                elif run.epochs_done == last_epoch and stopping.patience is not None:
                    # the call's end: the best weights too before the checkpoint (a run killed after it
                    # kept the last epoch's weights, in a file no resume could finish)
                    run.take_best(params, state)
            if on_epoch is not None:
                on_epoch()
        except KeyboardInterrupt as interrupt:  # the epoch is recorded: the run stands at its end
            if isinstance(interrupt, TrainingInterrupted):
                raise
            if stop is None and run.epochs_done < last_epoch:
                error = _interrupted(epoch + 2, 0)
                _cut_short(error, history, run, params, state, stopping)
                raise error from None
            # after the call's last epoch (or the run's stop): its training is done, and so is
            # the record of its end; the interrupt still ends the call (on_epoch, a checkpoint)
            record_end(history, run)
            where = f"training interrupted after epoch {epoch + 1}, the call's last, was recorded"
            error = TrainingInterrupted(f"{where}; the model holds the weights the call ended with")
            error.samples_done, error.where = 0, where
            raise error from None
        if stop is not None:
            break
    record_end(history, run)
    return history


def _cut_short(error, history, run, params, state, stopping):
    """A call that trained part of its epochs and ended by ``error``: the history's end says the
    run has not ended (its best epoch so far, no stop), and with early stopping a divergence,
    like any end of a call, leaves the best epoch's weights in the model, the trajectory kept
    to go on from (``run.last``); an interrupt leaves the weights it stopped at."""
    if (isinstance(error, DivergenceError) and stopping.patience is not None
            and run.take_best(params, state, part_way=run.interrupted is not None)):
        error.args = (f"{error.args[0]}. Early stopping: the model holds the best epoch's weights (epoch "
                      f"{run.best.epoch}); partial_fit goes on from the weights before the divergence",)
    history.best_epoch = run.best_epoch or None
    history.stopped_epoch = None
    history.stop_reason = None


def record_end(history, run):
    """The run's end in its history: its best epoch, its last, and why it stopped (the stop that
    ended it, else its epochs ran out). A checkpoint written at the last epoch comes before this."""
    history.best_epoch = run.best_epoch or None
    history.stopped_epoch = run.epochs_done
    history.stop_reason = run.stopped or MAX_EPOCHS
