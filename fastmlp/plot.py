"""Pictures of a run and of a model's mistakes: learning curves and confusion matrices.

Needs matplotlib (``pip install "fastmlp[plot]"``), imported only when a function here is
called, so ``import fastmlp`` never needs it. Figures are built as ``matplotlib.figure.Figure``
objects, not through ``pyplot``: no display or GUI backend is touched (works headless, in a
script, a test or a notebook, where the returned figure shows as the cell's value), and no
global figure is left open. ``save_figure`` writes one atomically.
"""

from __future__ import annotations

import numbers
import os
import reprlib

import numpy as np

from ._atomic import atomic_write
from ._extras import which_is

# The file types save_figure writes (matplotlib's own formats that need nothing beyond it).
FIGURE_SUFFIXES = (".png", ".pdf", ".svg")
# Above this many classes the confusion matrix cells are too small for their counts.
MAX_ANNOTATED_CLASSES = 20


def require_matplotlib():
    """Raise a clear ImportError now if matplotlib is missing (the commands call this before
    training or loading anything they would then be unable to draw)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as error:
        raise ImportError(f"plotting needs matplotlib, {which_is(error, 'matplotlib', 'plot')}") from None


def _figure(**kwargs):
    require_matplotlib()
    from matplotlib.figure import Figure

    return Figure(layout="constrained", **kwargs)


def _curves(history):
    """(epochs, loss, accuracy, val_loss, val_accuracy) lists from a History or its dict. The
    validation values are None for epochs trained without validation data; histories of
    checkpoints written before that rule may hold them for the last epochs only."""
    record = history if isinstance(history, dict) else getattr(history, "__dict__", None)
    if record is None or "epoch" not in record or "loss" not in record:
        raise TypeError(f"history must be a fastmlp.History (or its as_dict()); got {type(history).__name__}")
    epochs = list(record["epoch"])
    if not epochs:
        raise ValueError("history has no epochs: train the model first")
    keys = ("loss", "accuracy", "val_loss", "val_accuracy")
    # (not ``record.get(key) or []``: an array's truth value is ambiguous; a dict of arrays, a
    # history read back from np.savez, or of pandas Series draws as lists do: audit 80)
    curves = [[] if record.get(key) is None else list(record.get(key)) for key in keys]
    # A dict (train --json's, or one edited by hand) may not fit its epochs: say which list, not
    # matplotlib's "x and y must have same first dimension". Accuracy may be missing; validation
    # values may cover the last epochs only.
    for key, values in zip(keys, curves):
        fits = len(values) <= len(epochs) if key.startswith("val_") else len(values) == len(epochs)
        if not fits and not (key == "accuracy" and not values):
            name = f"history[{key!r}]" if isinstance(history, dict) else f"history.{key}"
            raise ValueError(f"{name} has {len(values)} values for {len(epochs)} epochs")
    return (epochs, *curves)


def _axes_pair(ax):
    """``ax`` as (loss Axes, accuracy Axes) if it is a pair of Axes, None if it is one Axes; an
    error naming what it is otherwise (ValueError: Axes, but not two; TypeError: not Axes)."""
    require_matplotlib()
    from matplotlib.axes import Axes

    if isinstance(ax, Axes):
        return None
    # an array of Axes as fig.subplots returns it: of any shape, but two of them
    items = list(np.ravel(ax)) if isinstance(ax, np.ndarray) else list(ax) if isinstance(ax, (list, tuple)) else None
    expected = "ax must be one matplotlib Axes or a pair (loss, accuracy) of them"
    if items is None:
        raise TypeError(f"{expected}; got {type(ax).__name__} {reprlib.repr(ax)}")
    container = "an array" if isinstance(ax, np.ndarray) else f"a {type(ax).__name__}"
    if not all(isinstance(item, Axes) for item in items):
        raise TypeError(f"{expected}; got {container} of {', '.join(sorted({type(item).__name__ for item in items}))}")
    if len(items) != 2:
        shape = f" of shape {ax.shape}" if isinstance(ax, np.ndarray) else ""
        raise ValueError(f"{expected}; got {container} of {len(items)} Axes{shape}")
    return tuple(items)


def plot_history(history, ax=None, *, accuracy=None):
    """Learning curves: training (and validation) loss and accuracy per epoch.

    Parameters
    ----------
    history : fastmlp.History or dict
        ``model.history_``, what ``fit`` returns, or ``History.as_dict()`` (the ``history`` of
        ``fastmlp train --json``). Validation curves are drawn when it has validation data.
    ax : matplotlib Axes, or a pair of them, optional
        None: a new figure, loss on the left and accuracy on the right. One Axes: loss on it,
        accuracy on a second y axis at its right. A pair: loss on the first, accuracy on the
        second.
    accuracy : bool, optional
        Whether to draw accuracy. By default it is drawn unless the history is a regression's
        (its accuracy is None every epoch; 0 in histories of fastmlp before 2026-12-05).

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn on (the new one, or the one ``ax`` belongs to).
    """
    epochs, loss, train_accuracy, val_loss, val_accuracy = _curves(history)
    # None: an epoch trained without validation data (a gap in the line), or a regressor's accuracy
    val_loss = [np.nan if value is None else value for value in val_loss]
    if all(value is None for value in val_accuracy):
        val_accuracy = []
    val_accuracy = [np.nan if value is None else value for value in val_accuracy]
    if all(value is None for value in train_accuracy):
        train_accuracy = []
    train_accuracy = [np.nan if value is None else value for value in train_accuracy]
    if accuracy is None:
        accuracy = bool(val_accuracy) or any(value != 0 and not np.isnan(value) for value in train_accuracy)
    elif accuracy and not (train_accuracy or val_accuracy):
        raise ValueError("accuracy=True, but the history has no accuracy values: there is nothing to draw")
    pair = None if ax is None else _axes_pair(ax)
    twin = ax is not None and pair is None
    if ax is None:
        fig = _figure(figsize=(9.0 if accuracy else 4.8, 3.6))
        axes = fig.subplots(1, 2 if accuracy else 1, squeeze=False)[0]
        loss_ax, accuracy_ax = axes[0], (axes[1] if accuracy else None)
    elif twin:
        loss_ax, accuracy_ax = ax, (ax.twinx() if accuracy else None)
    else:  # without accuracy the second Axes stays as it was (an empty legend would warn)
        loss_ax, accuracy_ax = pair[0], (pair[1] if accuracy else None)
    style = {"marker": "o", "markersize": 3}
    lines = loss_ax.plot(epochs, loss, color="C0", label="training loss", **style)
    if val_loss:
        lines += loss_ax.plot(epochs[-len(val_loss):], val_loss, color="C1", label="validation loss", **style)
    loss_ax.set_ylabel("loss")
    if accuracy and accuracy_ax is not None:
        # On a shared panel accuracy is dashed, in colours of its own; on its own panel it
        # takes the loss panel's colours (training C0, validation C1).
        shared = {"linestyle": "--"} if twin else {}
        if train_accuracy:
            lines += accuracy_ax.plot(epochs, train_accuracy, color="C2" if twin else "C0", label="training accuracy",
                                      **style, **shared)
        if val_accuracy:
            lines += accuracy_ax.plot(epochs[-len(val_accuracy):], val_accuracy, color="C3" if twin else "C1",
                                      label="validation accuracy", **style, **shared)
        accuracy_ax.set_ylabel("accuracy")
    for axis in (loss_ax,) if twin else (loss_ax, accuracy_ax):
        if axis is None:
            continue
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        if len(epochs) <= 20:
            axis.set_xticks(epochs)
        if not twin:
            axis.legend(fontsize="small")
    if twin:
        loss_ax.legend(lines, [line.get_label() for line in lines], fontsize="small")
    return loss_ax.figure


def _counts(matrix):
    """``matrix`` as a square int64 array of counts, or a ValueError naming what is wrong. Whole
    numbers stored as floats (counts read back with ``np.loadtxt``) are counts too."""
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] == 0:
        raise ValueError(f"matrix must be a square [K, K] array of counts; got shape {matrix.shape}")
    if matrix.dtype == object:  # a list mixing numbers with None or strings
        for (row, column), value in np.ndenumerate(matrix):
            if not isinstance(value, numbers.Real):
                raise ValueError(f"matrix must hold counts (whole numbers >= 0); got {value!r} "
                                 f"at row {row}, column {column}")
        matrix = matrix.astype(np.float64)
    if matrix.dtype.kind not in "iuf":
        raise ValueError(f"matrix must hold counts (whole numbers >= 0); got dtype {matrix.dtype}")
    # shares (a normalised matrix), negative numbers, NaN and inf would be drawn as if they were counts
    bad = ~np.isfinite(matrix) | (matrix < 0) | (matrix != np.round(matrix)) if matrix.dtype.kind == "f" else matrix < 0
    if bad.any():
        row, column = np.argwhere(bad)[0]
        raise ValueError(f"matrix must hold counts (whole numbers >= 0); got {matrix[row, column]} "
                         f"at row {row}, column {column}")
    return matrix.astype(np.int64)


def plot_confusion_matrix(matrix, ax=None, *, classes=None):
    """The confusion matrix as an image: row i, column j counts the samples of true class i
    predicted as class j.

    Cells are coloured by their share of the row (the recall of the true class, on the
    diagonal), so a class's mistakes stand out whatever its size; counts are written in the
    cells up to 20 classes. ``matrix`` is ``fastmlp.confusion_matrix``'s ``[K, K]`` counts
    (whole numbers >= 0); ``ax`` the matplotlib Axes to draw on (default a new figure's);
    ``classes`` the K tick labels (default 0..K-1). Returns the figure drawn on.
    """
    matrix = _counts(matrix)
    n_classes = len(matrix)
    classes = list(range(n_classes)) if classes is None else list(classes)
    if len(classes) != n_classes:
        raise ValueError(f"classes must have {n_classes} labels, one per row of matrix; got {len(classes)}")
    if ax is None:
        side = min(3.0 + 0.45 * n_classes, 12.0)
        ax = _figure(figsize=(side + 1.0, side)).subplots()
    totals = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.figure.colorbar(image, ax=ax, label="share of the true class")
    ticks = range(n_classes)
    ax.set_xticks(ticks, [str(c) for c in classes])
    ax.set_yticks(ticks, [str(c) for c in classes])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if n_classes <= MAX_ANNOTATED_CLASSES:
        for (row, column), count in np.ndenumerate(matrix):
            ax.text(column, row, str(count), ha="center", va="center", fontsize="x-small",
                    color="white" if share[row, column] > 0.5 else "black")
    return ax.figure


def plot_evaluation(report, *, targets=None, outputs=None):
    """The picture of ``fastmlp evaluate``: for a classifier the confusion matrix beside the
    per-class precision and recall; for a regression model the outputs against the targets
    (``targets`` and ``outputs``, ``[N]`` or ``[N, K]``; the first output column is drawn).
    ``report`` is ``fastmlp.metrics.evaluation_report``'s dict. Returns a new figure."""
    if report["task"] == "regression":
        fig = _figure(figsize=(4.8, 4.4))
        ax = fig.subplots()
        t = np.asarray(targets, dtype=np.float64).reshape(len(targets), -1)[:, 0]
        o = np.asarray(outputs, dtype=np.float64).reshape(len(outputs), -1)[:, 0]
        ax.scatter(t, o, s=4, alpha=0.5)
        low, high = min(t.min(), o.min()), max(t.max(), o.max())
        ax.plot([low, high], [low, high], color="C1", linewidth=1, label="output = target")
        ax.set_xlabel("target")
        ax.set_ylabel("model output")
        ax.legend(fontsize="small")
        ax.set_title(f"{report['n_samples']:,} samples: loss {report['loss']:.4g}, R² {'-' if report['r2'] is None else format(report['r2'], '.4f')}", fontsize="medium")
        return fig
    n_classes = len(report["classes"])
    side = min(3.0 + 0.45 * n_classes, 12.0)
    fig = _figure(figsize=(2 * side + 1.5, side))
    matrix_ax, bars_ax = fig.subplots(1, 2, width_ratios=[1.15, 1])
    plot_confusion_matrix(report["confusion_matrix"], matrix_ax, classes=report["classes"])
    positions = np.arange(n_classes)
    missing = lambda values: [np.nan if v is None else v for v in values]  # noqa: E731
    bars_ax.bar(positions - 0.2, missing(report["precision"]), 0.4, label="precision")
    bars_ax.bar(positions + 0.2, missing(report["recall"]), 0.4, label="recall")
    bars_ax.set_xticks(positions, [str(c) for c in report["classes"]])
    bars_ax.set_xlabel("class")
    bars_ax.set_ylim(0, 1.05)
    bars_ax.grid(axis="y", alpha=0.3)
    bars_ax.legend(fontsize="small", loc="lower right")
    fig.suptitle(f"{report['n_samples']:,} samples: accuracy {report['accuracy']:.4f}, loss {report['loss']:.4g}",
                 fontsize="medium")
    return fig


def save_figure(fig, path):
    """Write ``fig`` to ``path`` atomically, in the format its suffix names (FIGURE_SUFFIXES)."""
    suffix = os.path.splitext(os.fsdecode(path))[1].lower()
    if suffix not in FIGURE_SUFFIXES:
        raise ValueError(f"path must end in {', '.join(FIGURE_SUFFIXES)} (the picture's file type); got {os.fsdecode(path)!r}")
    with atomic_write(path, "wb") as file:
        fig.savefig(file, format=suffix[1:], dpi=110)
