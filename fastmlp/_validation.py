"""Checks at the API edge. The compiled kernels trust their input; everything is checked here.

Each failure is a ValueError or TypeError that names the argument, the offending value and,
for data, the first offending row.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .network import Architecture


def positive_int(name, value):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive integer; got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value}")
    return int(value)


def thread_count(value, name="threads"):
    """"auto" or a positive integer (``positive_int``'s checks, with "auto" in the message)."""
    if isinstance(value, str) and value == "auto":
        return value
    try:
        return positive_int(name, value)
    except (TypeError, ValueError) as error:
        raise type(error)(f"{name} must be 'auto' or a positive integer; got {value!r}") from None


def positive_float(name, value):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a positive number; got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number; got {value!r}")
    return float(value)


def non_negative_int(name, value):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a non-negative integer; got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be a non-negative integer; got {value}")
    return int(value)


def non_negative_float(name, value):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a non-negative number; got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0; got {value!r}")
    return float(value)


def open_fraction(name, value):
    """A number strictly between 0 and 1."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number in (0, 1); got {value!r}")
    if not 0 < value < 1:
        raise ValueError(f"{name} must be in (0, 1); got {value!r}")
    return float(value)


def boolean(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {value!r}")
    return bool(value)


def plain_bool(value):
    """NumPy's booleans as Python's (for arguments that take True/False or something else, such
    as ``distributed``: a communicator; np.True_ was refused there; audit 61); else ``value``."""
    return bool(value) if isinstance(value, np.bool_) else value


def progress_flag(value):
    """``progress=`` of fit, partial_fit and the loaders: None (a bar on terminals only), True or False."""
    if value is not None and not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"progress must be None (a bar on terminals only), True or False; got {value!r}")
    return value


def n_held_out(n, fraction):
    """How many of ``n`` samples a ``validation_fraction`` of ``fraction`` holds out: ceil(fraction * n)."""
    return math.ceil(fraction * n)


def validation_split(y, fraction, seed, stratify):
    """(train_rows, validation_rows), each sorted int64: ceil(fraction * n) rows held out,
    drawn with ``seed``; with ``stratify`` (classifiers) each class contributes in proportion
    to its size (largest remainders get the rows left over)."""
    n = len(y)
    n_val = n_held_out(n, fraction)
    if n_val >= n:
        raise ValueError(
            f"validation_fraction={fraction!r} of {n} sample{'s' if n != 1 else ''} holds out {n_val} "
            f"and leaves no training sample; use a smaller fraction or more data"
        )
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(3,)))
    shuffled = rng.permutation(n)
    if not stratify:
        held_out = shuffled[:n_val]
    else:
        labels = y[shuffled]
        classes, counts = np.unique(labels, return_counts=True)
        ideal = n_val * counts / n
        take = np.floor(ideal).astype(np.int64)
        left_over = n_val - int(take.sum())
        take[np.argsort(-(ideal - take), kind="stable")[:left_over]] += 1
        held_out = np.concatenate([shuffled[labels == c][:k] for c, k in zip(classes, take)])
    is_val = np.zeros(n, bool)
    is_val[held_out] = True
    return np.flatnonzero(~is_val).astype(np.int64), np.flatnonzero(is_val).astype(np.int64)


def _first_bad_row(mask):
    rows = np.flatnonzero(mask.reshape(len(mask), -1).any(axis=1))
    return int(rows[0])


def _numbers(values, name, expected):
    """``values`` as a NumPy array of numbers (or bools, or strings: refused later with their own
    messages). Numbers held as Python objects (``dtype=object``; a pandas frame of nullable
    columns) become float64, as scikit-learn's ``check_array`` makes them; a scipy.sparse matrix,
    a generator or anything else NumPy cannot see as an array is refused naming what it is."""
    if hasattr(values, "toarray") and hasattr(values, "nnz"):
        raise TypeError(f"{name} is a scipy.sparse {type(values).__name__}; fastmlp takes dense arrays: pass "
                        f"{name}.toarray()")
    if isinstance(values, np.ma.MaskedArray) and np.ma.getmaskarray(values).any():
        # (np.asarray drops the mask: the masked entries trained, as numbers)
        first = np.argwhere(np.ma.getmaskarray(values))[0]
        where = f", first at row {int(first[0])}" if len(first) else ""
        raise ValueError(f"{name} is a masked array with masked entries{where}; fill them ({name}.filled(value)) or "
                         f"drop those rows")
    try:
        array = np.asarray(values)
    except ValueError as error:  # rows of different lengths ("inhomogeneous shape")
        raise ValueError(f"{name} must be {expected}; NumPy cannot make an array of it: {error}") from None
    if array.dtype == object:
        if array.ndim == 0:
            raise TypeError(f"{name} must be {expected}; got {type(values).__name__}")
        flat = array.reshape(-1)
        # ("1.5" is no number; set(map(type, ...)) takes 0.73x a comprehension's time: about 1 s at MNIST's size)
        types = set(map(type, flat))
        # Integers and bools held as objects (a frame of nullable Int64 and UInt8 columns) are
        # integers and bools, as the same numbers in an int64 or bool array: X's check then asks
        # whether they are pixels or features. As float64 they were taken for features, and a
        # model trained on the same pixels as uint8 (scaled by 1/255) saw them 255x too large.
        if types and all(issubclass(kind, (bool, np.bool_)) for kind in types):
            return array.astype(np.bool_)
        if types and all(issubclass(kind, (int, np.integer)) for kind in types):
            try:
                return array.astype(np.int64)
            except OverflowError:  # (beyond int64: as floats below, where they fit a float64)
                pass
        try:
            converted = array.astype(np.float64)
        except (TypeError, ValueError, OverflowError):
            converted = None
        if converted is None or not types.isdisjoint((str, bytes)):
            for i, value in enumerate(flat):
                row = np.unravel_index(i, array.shape)[0]
                if isinstance(value, (str, bytes)) or not _is_number(value):
                    if isinstance(value, int):  # (an int fails float() only by overflowing it)
                        raise TypeError(f"{name} holds an integer too large for a float64 (about {len(str(abs(value)))} "
                                        f"digits) at row {row}")
                    raise TypeError(f"{name} must hold numbers; got {value!r:.80} ({type(value).__name__}) at row {row}")
            raise TypeError(f"{name} must hold numbers that fit a float64")
        return converted
    if array.dtype.kind in "mM" or not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        # (NumPy counts timedelta64 among the integers)
        raise TypeError(f"{name} must hold numbers; got an array of dtype {array.dtype}")
    return array


def _is_number(value):
    try:
        float(value)
    except (TypeError, ValueError, OverflowError):
        return False
    return True


def check_X(X, arch: Architecture, name="X"):
    """Return X as C-contiguous uint8 [N, D] (scaled later, in the kernels) or arch.dtype [N, D].

    Accepts [N, D] or images [N, h, w] with h*w == D.
    """
    if X is None:
        raise TypeError(f"{name} must be an array of shape [n_samples, {arch.layers[0]}]; got None")
    X = _numbers(X, name, f"an array of shape [n_samples, {arch.layers[0]}]")
    if X.dtype == np.bool_ or (np.issubdtype(X.dtype, np.integer) and X.dtype != np.uint8):
        raise TypeError(
            f"{name} must be uint8 pixels (scaled by 1/255) or floats; got dtype {X.dtype}. "
            f"Use {name}.astype(np.uint8) for 0..255 pixels or {name}.astype(np.float32) for features"
        )
    if np.issubdtype(X.dtype, np.complexfloating):
        raise TypeError(f"{name} must be real; got dtype {X.dtype}")
    if X.ndim == 3:
        X = X.reshape(X.shape[0], X.shape[1] * X.shape[2])  # (-1 cannot be worked out for no images)
    if X.ndim != 2:
        raise ValueError(
            f"{name} must have shape [n_samples, {arch.layers[0]}] or [n_samples, height, width]; got shape {X.shape}"
        )
    if len(X) == 0:
        raise ValueError(f"{name} is empty (shape {X.shape}); need at least one sample")
    if X.shape[1] != arch.layers[0]:
        raise ValueError(
            f"{name} has {X.shape[1]} features per sample but layers[0] is {arch.layers[0]}; "
            f"make the first layer size equal the number of features"
        )
    if X.dtype == np.uint8:
        return np.ascontiguousarray(X)
    return _finite_floats(X, arch.dtype, name, "data")


class InputScaleWarning(UserWarning):
    """Float inputs that look like 8-bit pixels, unscaled: fastmlp scales uint8 pixels by 1/255
    and uses floats as they are."""


PIXEL_CHECK_ROWS = 1000  # rows of X that ``unscaled_pixels`` looks at (about 3 MB of float32 at 784 features)


def unscaled_pixels(X):
    """The largest value, when float ``X``'s first PIXEL_CHECK_ROWS rows hold whole numbers from 0
    to 255 that reach 128 or more, as 8-bit pixels given as floats do (MNIST's
    ``X.astype(np.float32)`` without ``/ 255``, on which the defaults reach 10-20% test accuracy
    after an epoch); else None. uint8 X is None: the kernels scale it."""
    if X.dtype == np.uint8:
        return None
    head = X[:PIXEL_CHECK_ROWS]
    top = float(head.max())
    if not 128 <= top <= 255 or head.min() < 0 or not (head == np.rint(head)).all():
        return None
    return top


def _finite_floats(given, dtype, name, what):
    """``given`` as C-contiguous ``dtype``, refused naming the first row that holds a NaN or an
    infinity, or a finite value beyond ``dtype``'s range (which the cast makes infinite)."""
    with np.errstate(over="ignore"):  # a value beyond float32's range becomes inf: reported below
        converted = np.ascontiguousarray(given, dtype=dtype)
    # A NaN or infinity makes the sum non-finite; so may an overflow, so then every entry is
    # checked: one pass, and no [N, D] mask, for data that is fine
    with np.errstate(over="ignore", invalid="ignore"):
        total = converted.sum()
    if not np.isfinite(total):
        finite = np.isfinite(converted)
        if not finite.all():
            row = _first_bad_row(~finite)
            if np.isfinite(given[row]).all():
                advice = f"scale the {what}" + (", or train in float64" if np.dtype(dtype) != np.float64 else "")
                raise ValueError(
                    f"{name} holds a value beyond the range of {np.dtype(dtype).name} (about "
                    f"{float(np.finfo(dtype).max):.3g}); first at row {row}: {advice}"
                )
            raise ValueError(f"{name} contains NaN or infinity; first at row {row}")
    return converted


def check_y(y, arch: Architecture, n_samples, name="y", x_name="X"):
    """Labels as int64 [N] in [0, n_classes) for classifiers; int64 [N, K] of 0/1 for multilabel
    (K sigmoid units); floats [N, K] for regression. ``x_name``: the inputs they go with."""
    if y is None:
        raise TypeError(f"{name} must be an array of {n_samples} targets; got None")
    y = _numbers(y, name, f"an array of {n_samples} targets")
    if np.issubdtype(y.dtype, np.complexfloating):
        raise TypeError(f"{name} must be real; got dtype {y.dtype}")
    if y.ndim == 0 or len(y) != n_samples:
        got = len(y) if y.ndim else "a scalar"
        raise ValueError(f"{x_name} and {name} have different lengths: {x_name} has {n_samples} samples, {name} has {got}")
    if not arch.is_classifier:
        n_out = arch.layers[-1]
        if y.ndim == 1 and n_out == 1:
            y = y[:, None]
        if y.ndim != 2 or y.shape[1] != n_out:
            raise ValueError(f"{name} must have shape [{n_samples}, {n_out}] for regression; got shape {y.shape}")
        return _finite_floats(y, arch.dtype, name, "targets")
    if arch.is_multilabel:
        return _check_label_sets(y, arch, n_samples, name)
    if y.ndim != 1:
        raise ValueError(
            f"{name} must be a 1-D array of class labels, shape [{n_samples}]; got shape {y.shape}"
            + (" (a column of labels? pass y.ravel())" if y.ndim == 2 and y.shape[1] == 1
               else " (one-hot targets? pass y.argmax(axis=1))" if y.ndim == 2 else "")
        )
    if not np.issubdtype(y.dtype, np.integer):
        if y.dtype == np.bool_:
            y = y.astype(np.int64)
        else:
            integral = np.isfinite(y) & (np.round(y) == y)
            if not integral.all():
                row = int(np.flatnonzero(~integral)[0])
                raise ValueError(
                    f"{name} must hold integer class labels for loss {arch.loss!r}; got {y[row]!r} at row {row}"
                )
    n_classes = arch.n_classes
    outside = (y < 0) | (y >= n_classes)
    if outside.any():
        row = int(np.flatnonzero(outside)[0])
        value = y[row].item()
        raise ValueError(
            f"{name if 'labels' in name else name + ' labels'} must be in [0, {n_classes - 1}] to match "
            f"layers[-1] = {arch.layers[-1]} "
            f"with loss {arch.loss!r}; got {value!r} at row {row}"
        )
    return np.ascontiguousarray(y, dtype=np.int64)


def _check_label_sets(y, arch: Architecture, n_samples, name):
    """Multilabel targets: int64 [N, K], each entry 0 or 1 (an indicator matrix)."""
    n_out = arch.layers[-1]
    if y.ndim != 2 or y.shape[1] != n_out:
        hint = (f". For {n_out} classes with one label per sample use loss='cross_entropy'; for binary labels, "
                f"binary_cross_entropy with one output unit (layers[-1] == 1)") if y.ndim == 1 else ""
        raise ValueError(
            f"{name} must be a 0/1 indicator matrix of shape [{n_samples}, {n_out}] for {n_out} sigmoid outputs "
            f"with loss 'binary_cross_entropy' (multilabel); got shape {y.shape}{hint}"
        )
    binary = (y == 0) | (y == 1)
    if not binary.all():
        row = _first_bad_row(~binary)
        raise ValueError(f"{name} must hold only 0 and 1 (label present or not); got {y[row]!r} at row {row}")
    return np.ascontiguousarray(y, dtype=np.int64)


def check_sample_weight(sample_weight, n_samples, dtype):
    """Weights as dtype [N], finite, >= 0, not all 0, normalised to mean 1 (so a weight
    scales its sample's step relative to the others and the learning rate keeps its meaning)."""
    if sample_weight is None:
        return None
    w = _numbers(sample_weight, "sample_weight", f"an array of {n_samples} weights")  # (objects as X's and y's)
    if np.issubdtype(w.dtype, np.complexfloating):
        raise TypeError(f"sample_weight must hold real numbers; got an array of dtype {w.dtype}")
    if w.ndim != 1 or len(w) != n_samples:
        raise ValueError(f"sample_weight must have shape [{n_samples}], one weight per sample; got shape {w.shape}")
    w = w.astype(np.float64)
    bad = ~np.isfinite(w) | (w < 0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"sample_weight must be finite and >= 0; got {float(w[row])!r} at row {row}")
    largest = w.max()
    if largest <= 0:
        raise ValueError("sample_weight is 0 for every sample: nothing would be trained")
    with np.errstate(over="ignore"):
        total = w.sum()
        inverse = n_samples / total
    if not (np.isfinite(total) and np.isfinite(inverse)):
        # weights near the float64 limits (1e308 each: the sum overflows; 1e-320: n / sum does)
        w = w / largest
        total = w.sum()
    return np.ascontiguousarray(w * (n_samples / total), dtype=dtype)
