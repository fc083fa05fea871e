"""How good a trained model is on labelled data: the confusion matrix, per-class precision and
recall, and the report ``fastmlp evaluate`` prints.

For K classes, ``C[i, j]`` counts the samples of true class i predicted as class j. Then, for
class k::

    precision_k = C[k, k] / sum_i C[i, k]    (of the samples predicted k, the share that are k)
    recall_k    = C[k, k] / sum_j C[k, j]    (of the samples that are k, the share predicted k)
    support_k   = sum_j C[k, j]              (samples of class k)
    accuracy    = trace(C) / sum(C)

A precision with nothing predicted as k, or a recall with no sample of k, is 0/0: NaN here,
None in the report (JSON null), "-" in its text.
"""

from __future__ import annotations

import math

import numpy as np

from ._validation import positive_int

# The most classes a confusion matrix counts: K x K int64 counts, 800 MB at this bound. Labels
# that are raw class ids (20,000, say) allocated gigabytes, or failed in NumPy (audit 60).
MAX_CLASSES = 10_000


def _labels(name, values):
    values = np.asarray(values)
    if values.ndim != 1:
        raise ValueError(f"{name} must be a 1-d array of class labels; got shape {values.shape}")
    if len(values) and not np.issubdtype(values.dtype, np.integer) and values.dtype != np.bool_:
        if not np.issubdtype(values.dtype, np.number) or not np.all(np.mod(values, 1) == 0):
            raise TypeError(f"{name} must hold integer class labels; got dtype {values.dtype}")
    if len(values):  # (before the cast to int64, which wraps 1e300 or 2**63 to a negative number)
        if values.min() < 0:
            raise ValueError(f"{name} must hold class labels >= 0; got {values.min()} at row {int(np.argmin(values))}")
        if values.max() >= MAX_CLASSES:
            raise ValueError(
                f"{name} holds the label {values.max()} at row {int(np.argmax(values))}: confusion_matrix counts "
                f"at most {MAX_CLASSES:,} classes, labelled 0..{MAX_CLASSES - 1}; number the classes 0..K-1 first "
                f"(np.unique(labels, return_inverse=True))")
    return values.astype(np.int64)


def confusion_matrix(y_true, y_pred, n_classes=None):
    """``C[i, j]`` = the number of samples of true class i predicted as class j (int64 [K, K]).

    ``y_true`` and ``y_pred`` are integer labels in ``[0, n_classes)``; ``n_classes`` defaults
    to one more than the largest label in either. At most ``MAX_CLASSES`` (10,000) classes.
    """
    if n_classes is not None:
        n_classes = positive_int("n_classes", n_classes)
        if n_classes > MAX_CLASSES:
            raise ValueError(f"n_classes must be at most {MAX_CLASSES:,} (a {MAX_CLASSES:,} x {MAX_CLASSES:,} matrix of "
                             f"counts); got {n_classes:,}")
    y_true, y_pred = _labels("y_true", y_true), _labels("y_pred", y_pred)
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true and y_pred have different lengths: {len(y_true)} and {len(y_pred)}")
    largest = int(max(y_true.max(initial=-1), y_pred.max(initial=-1)))
    if n_classes is None:
        n_classes = largest + 1
    elif largest >= n_classes:
        raise ValueError(f"labels must be in [0, {n_classes - 1}] for n_classes={n_classes}; got {largest}")
    if n_classes < 1:
        raise ValueError("confusion_matrix needs at least one label, or n_classes")
    counts = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes)
    return counts.reshape(n_classes, n_classes).astype(np.int64)


def precision_recall(matrix):
    """Per-class ``(precision, recall, support)`` of a confusion matrix (float64, float64,
    int64, each [K]); NaN where the ratio is 0/0 (module docstring)."""
    matrix = np.asarray(matrix, dtype=np.int64)
    hits = np.diag(matrix).astype(np.float64)
    predicted, support = matrix.sum(axis=0), matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return hits / predicted, hits / support, support


def _or_none(values):
    return [None if math.isnan(v) else float(v) for v in values]


def evaluation_report(model, X, y):
    """What ``fastmlp evaluate`` reports about the fitted ``model`` on ``(X, y)``, as a dict
    ready for JSON.

    Always ``task`` ("classification" or "regression"), ``n_samples`` and ``loss`` (the mean
    per-sample loss the model trains on: cross-entropy, MSE, ...). A classifier adds
    ``accuracy``, ``classes`` (0..K-1), per-class ``precision``, ``recall`` (None for 0/0) and
    ``support``, and ``confusion_matrix`` (rows: true class); a regression model adds ``r2``
    (the coefficient of determination, ``MLP.score``; None for 0/0, targets that do not vary).
    """
    check_reportable(model)
    if model.arch_.is_multilabel:
        raise ValueError(
            f"evaluation_report is for single-label classifiers and regression models; this one has "
            f"{model.arch_.layers[-1]} sigmoid outputs (multilabel): use model.evaluate(X, y), and per label "
            f"confusion_matrix(y[:, k], model.predict(X)[:, k], 2)"
        )
    metrics = model.evaluate(X, y)
    report = {"task": "classification" if model.arch_.is_classifier else "regression",
              "n_samples": int(len(X)), "loss": metrics["loss"]}
    if not model.arch_.is_classifier:
        r2 = float(model.score(X, y))
        report["r2"] = None if math.isnan(r2) else r2  # 0/0: every target the same (JSON has no NaN)
        return report
    n_classes = model.arch_.n_classes
    matrix = confusion_matrix(y, model.predict(X), n_classes)
    precision, recall, support = precision_recall(matrix)
    report.update(
        accuracy=metrics["accuracy"],
        classes=list(range(n_classes)),
        precision=_or_none(precision),
        recall=_or_none(recall),
        support=[int(s) for s in support],
        confusion_matrix=matrix.tolist(),
    )
    return report


def check_reportable(model):
    """A ValueError if ``model`` has more classes than a report's confusion matrix counts (it was
    refused as "n_classes must be at most 10,000", as labels that did not fit; audit 61)."""
    arch = model.arch_
    if arch.is_classifier and not arch.is_multilabel and arch.n_classes > MAX_CLASSES:
        raise ValueError(f"the model has {arch.n_classes:,} classes, and the report's confusion matrix counts at most "
                         f"{MAX_CLASSES:,}: use model.evaluate(X, y) for its loss and accuracy")


def format_report(report, loss_name="loss"):
    """The text of an ``evaluation_report``: the summary line, a per-class table and the
    confusion matrix (rows: true class, columns: predicted class)."""
    if report["task"] == "regression":
        r2 = "- (undefined: the targets do not vary)" if report["r2"] is None else f"{report['r2']:.4f}"
        return f"{loss_name} {report['loss']:.6g}, R^2 {r2} on {report['n_samples']:,} samples"
    shown = lambda value: "-" if value is None else f"{value:.4f}"  # noqa: E731
    lines = [f"accuracy {report['accuracy']:.4f}, {loss_name} {report['loss']:.4f} on {report['n_samples']:,} samples", ""]
    lines.append(f"{'class':>5}  {'precision':>9}  {'recall':>6}  {'support':>7}")
    for label, precision, recall, support in zip(report["classes"], report["precision"], report["recall"], report["support"]):
        lines.append(f"{label:>5}  {shown(precision):>9}  {shown(recall):>6}  {support:>7}")
    matrix = report["confusion_matrix"]
    width = max(len(str(value)) for row in matrix for value in row + [len(matrix) - 1]) + 1
    lines += ["", "confusion matrix (rows: true class, columns: predicted class)"]
    lines.append(" " * 5 + "".join(f"{label:>{width}}" for label in report["classes"]))
    for label, row in zip(report["classes"], matrix):
        lines.append(f"{label:>5}" + "".join(f"{value:>{width}}" for value in row))
    return "\n".join(lines)
