"""The training loop every backend shares: epochs, shuffling, chunks, schedule, history, progress.

An epoch is one pass over a permutation of the samples, drawn from the model's shuffle
generator (or the identity when shuffling is off). The permutation is cut into batches of
``batch_size`` (the last one shorter) and handed to the backend a chunk of whole batches at a
time, so the compiled core runs thousands of samples per call while progress, Ctrl-C and
divergence checks still happen between chunks.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from .progress import Progress

SCHEDULES = ("constant", "exponential", "step", "cosine")
CHUNK_SAMPLES = 8192


class DivergenceError(FloatingPointError):
    """The training loss became NaN or infinite. The model keeps the weights from before it."""

    def __init__(self, message, *, epoch, sample, row, lr):
        super().__init__(message)
        self.epoch = epoch
        self.sample = sample
        self.row = row
        self.lr = lr


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during fit: the model holds the weights of the last completed chunk."""


@dataclass
class History:
    """Per-epoch records of one ``fit`` (lists indexed by epoch)."""

    epoch: list = field(default_factory=list)
    lr: list = field(default_factory=list)
    loss: list = field(default_factory=list)
    accuracy: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    val_accuracy: list = field(default_factory=list)
    seconds: list = field(default_factory=list)
    samples_per_second: list = field(default_factory=list)

    def as_dict(self):
        return {name: list(values) for name, values in self.__dict__.items()}


def learning_rate(lr, schedule, epoch, epochs, decay):
    """The rate for 0-based ``epoch``: constant; exponential lr*decay^epoch;
    step lr*decay^(epoch // 10); cosine from lr down towards 0 over ``epochs``."""
    if schedule == "constant":
        return lr
    if schedule == "exponential":
        return lr * decay**epoch
    if schedule == "step":
        return lr * decay ** (epoch // 10)
    return lr * 0.5 * (1 + math.cos(math.pi * epoch / epochs))


def chunk_bounds(n_samples, batch_size, chunk_samples=CHUNK_SAMPLES):
    """[(start, stop)] covering range(n_samples) in runs of whole batches."""
    per_chunk = max(1, chunk_samples // batch_size) * batch_size
    return [(start, min(start + per_chunk, n_samples)) for start in range(0, n_samples, per_chunk)]


def train_epoch(backend, params, data, targets, order, lr, batch_size, *, epoch=1, on_chunk=None):
    """One pass over the sample positions ``order``, in chunks of whole batches, in place on
    ``params``; returns (loss_sum, n_correct, seconds in the backend).

    After every chunk the parameters are checked: a chunk that produced a non-finite loss or
    left a non-finite weight (a last update that overflowed) is rolled back and
    ``DivergenceError`` raised; Ctrl-C inside a chunk rolls it back and raises
    ``TrainingInterrupted``. ``epoch`` (1-based) only labels those messages. ``on_chunk(n_done,
    loss_sum)`` is called after each chunk (progress bars).
    """
    snapshot = np.empty_like(params)
    loss_sum, n_correct, done = 0.0, 0, 0
    seconds = 0.0
    for start, stop in chunk_bounds(len(order), batch_size):
        snapshot[...] = params
        tic = time.perf_counter()
        try:
            chunk_loss, chunk_correct, chunk_done, nonfinite_at = backend.train_chunk(
                params, data, targets, order[start:stop], lr, batch_size
            )
        except KeyboardInterrupt:
            params[...] = snapshot
            raise TrainingInterrupted(
                f"training interrupted in epoch {epoch} after {done} samples; "
                f"the model holds the weights from after sample {done} of that epoch"
            ) from None
        seconds += time.perf_counter() - tic
        if nonfinite_at >= 0:
            params[...] = snapshot
            sample = start + nonfinite_at
            raise DivergenceError(
                f"training diverged: the loss became non-finite in epoch {epoch} at sample "
                f"{sample} (data row {int(order[sample])}) with lr={lr:g}; the model keeps the "
                f"weights from before sample {start} of that epoch. Try a smaller learning rate",
                epoch=epoch,
                sample=sample,
                row=int(order[sample]),
                lr=lr,
            )
        if not np.isfinite(params).all():
            # Every loss was finite, but an update overflowed a weight (typically the last one
            # of the chunk, whose result no loss has seen yet).
            params[...] = snapshot
            sample = stop - 1
            raise DivergenceError(
                f"training diverged: a weight became non-finite in epoch {epoch} by the update of the "
                f"samples {start}..{stop - 1} with lr={lr:g}; the model keeps the weights from before "
                f"sample {start} of that epoch. Try a smaller learning rate",
                epoch=epoch,
                sample=sample,
                row=int(order[sample]),
                lr=lr,
            )
        loss_sum += chunk_loss
        n_correct += chunk_correct
        done += chunk_done
        if on_chunk is not None:
            on_chunk(chunk_done, loss_sum / max(done, 1))
    return loss_sum, n_correct, seconds


def train(
    backend,
    params,
    data,
    targets,
    *,
    epochs,
    batch_size,
    lr,
    schedule="constant",
    decay=0.5,
    shuffle_rng=None,
    evaluate=None,
    progress=None,
    first_epoch=0,
    history=None,
):
    """Run ``epochs`` epochs in place on ``params``; return the History.

    ``data``/``targets`` are already validated and prepared for ``backend``; ``evaluate`` is an
    optional callable returning (val_loss, val_accuracy) after each epoch.
    """
    history = History() if history is None else history
    n_samples = len(targets)
    for epoch in range(first_epoch, first_epoch + epochs):
        rate = learning_rate(lr, schedule, epoch - first_epoch, epochs, decay)
        order = shuffle_rng.permutation(n_samples) if shuffle_rng is not None else np.arange(n_samples)
        order = order.astype(np.int64, copy=False)
        bar = Progress(n_samples, f"epoch {epoch + 1}/{first_epoch + epochs}", enabled=progress)
        try:
            loss_sum, n_correct, seconds = train_epoch(
                backend, params, data, targets, order, rate, batch_size, epoch=epoch + 1,
                on_chunk=lambda n, loss: bar.update(n, loss=loss),
            )
        finally:
            bar.close()
        history.epoch.append(epoch + 1)
        history.lr.append(rate)
        history.loss.append(loss_sum / n_samples)
        history.accuracy.append(n_correct / n_samples)
        history.seconds.append(seconds)
        history.samples_per_second.append(n_samples / seconds if seconds > 0 else float("inf"))
        if evaluate is not None:
            val_loss, val_accuracy = evaluate()
            history.val_loss.append(val_loss)
            history.val_accuracy.append(val_accuracy)
    return history
