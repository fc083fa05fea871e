"""What a network is: layer sizes, activation and loss names, the flat parameter layout, init.

Every backend shares this module, so a network built from the same seed starts from the same
numbers whichever backend trains it.

Parameter layout (one flat vector, ``params``)::

    [W1 | b1 | W2 | b2 | ... | WL | bL]      W_l: [n_{l-1}, n_l] C-order (input-major)
                                             b_l: [n_l], absent when bias=False

Input-major weights make ``out[B, n_l] = act(x[B, n_{l-1}] @ W_l + b_l)`` a plain GEMM and make
the rows that one input unit touches contiguous, which the per-sample kernel relies on to skip
zero pixels.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ._warn import warn

# The names are the public API; the integer codes are what the compiled kernels branch on, so
# both come from the kernels' own definition (pure Python: importing it does not import Numba).
# ACTIVATIONS: name -> code; LOSSES: (output, loss) -> code, only these pairs exist.
try:
    from .kernels.codes import (
        ACTIVATIONS,
        IDENTITY_MSE,
        LOSSES,
        SIGMOID_BCE,
        SOFTMAX_CROSS_ENTROPY,  # noqa: F401 - re-exported, with the other codes (reference.py)
        SOFTMAX_MSE,  # noqa: F401 - re-exported
        parameter_layout,
    )
except ModuleNotFoundError as error:  # pragma: no cover - only in a source checkout on sys.path
    if error.name != __package__ + ".kernels":
        raise
    import os

    raise ImportError(
        f"fastmlp.kernels is missing next to {os.path.dirname(__file__)}: this looks like a source checkout "
        f"imported from its own directory, where kernels/ is not yet the subpackage fastmlp.kernels. "
        f"Install the project (pip install . or pip install -e .) and run from another directory"
    ) from error

# The output layer a loss implies when the caller does not name one.
DEFAULT_OUTPUT = {"cross_entropy": "softmax", "binary_cross_entropy": "sigmoid", "mse": "identity"}
OUTPUTS = ("softmax", "sigmoid", "identity")
LOSS_NAMES = ("cross_entropy", "mse", "binary_cross_entropy")

INITS = ("auto", "zeros", "uniform", "normal", "xavier", "he")
DTYPES = {"float32": np.float32, "float64": np.float64}
# Bounds that only a damaged file or a slip of the keyboard reaches: the kernels index a layer's
# units and inputs in int32 (CSR indices) and the parameters in int64
MAX_LAYER_SIZE = 2**31 - 1
MAX_WEIGHTS = 2**40


class SymmetryWarning(UserWarning):
    """Zero initialisation: every hidden unit gets the same gradient and stays identical."""


def _choice(name, value, allowed):
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value


@dataclass(frozen=True)
class Architecture:
    """Layer sizes plus the names that fix the maths. Validated on construction."""

    layers: tuple
    activation: str = "sigmoid"
    loss: str = "cross_entropy"
    output: str | None = None
    bias: bool = True
    dtype: type = np.float32

    def __post_init__(self):
        layers = self.layers
        if isinstance(layers, str):
            raise TypeError(f"layers must be a sequence of integers like [784, 128, 10]; got {layers!r}")
        try:
            layers = tuple(layers)
        except TypeError:
            raise TypeError(f"layers must be a sequence of integers like [784, 128, 10]; got {layers!r}") from None
        if len(layers) < 2:
            raise ValueError(f"layers needs at least an input and an output size; got {list(layers)}")
        for position, size in enumerate(layers):
            if isinstance(size, (bool, np.bool_)) or not isinstance(size, (int, np.integer)):
                raise TypeError(f"layers[{position}] must be an integer; got {size!r}")
            if size < 1:
                raise ValueError(f"layers[{position}] must be >= 1; got {size}")
            if size > MAX_LAYER_SIZE:
                raise ValueError(f"layers[{position}] must be at most {MAX_LAYER_SIZE:,} units; got {size:,}")
        weights = sum(int(a) * int(b) for a, b in zip(layers, layers[1:]))  # (Python integers: int64 wrapped round)
        if weights > MAX_WEIGHTS:
            raise ValueError(f"layers {[int(s) for s in layers]} would have {weights:,} weights; at most {MAX_WEIGHTS:,}")
        object.__setattr__(self, "layers", tuple(int(s) for s in layers))
        _choice("activation", self.activation, tuple(ACTIVATIONS))
        _choice("loss", self.loss, LOSS_NAMES)
        output = DEFAULT_OUTPUT[self.loss] if self.output is None else _choice("output", self.output, OUTPUTS)
        if (output, self.loss) not in LOSSES:
            pairs = ", ".join(f"{o}+{l}" for o, l in LOSSES)
            raise ValueError(f"output {output!r} cannot be trained with loss {self.loss!r}; supported pairs: {pairs}")
        object.__setattr__(self, "output", output)
        if not isinstance(self.bias, (bool, np.bool_)):
            raise TypeError(f"bias must be True or False; got {self.bias!r}")
        dtype = self.dtype
        if isinstance(dtype, str):
            dtype = DTYPES.get(dtype)
        elif isinstance(dtype, (type, np.dtype)):  # np.float32, np.dtype("float64")
            with contextlib.suppress(TypeError):
                dtype = np.dtype(dtype).type
            dtype = dtype if dtype in (np.float32, np.float64) else None
        else:  # (None is NumPy's float64, 5 or [1] NumPy's own errors, which name no dtype: audit 42)
            dtype = None
        if dtype is None:
            raise ValueError(f"dtype must be 'float32' or 'float64'; got {self.dtype!r}")
        object.__setattr__(self, "dtype", dtype)
        if self.output == "softmax" and self.layers[-1] < 2:
            raise ValueError(f"a softmax output needs at least 2 units; got layers[-1] = {self.layers[-1]}")

    @property
    def activation_code(self) -> int:
        return ACTIVATIONS[self.activation]

    @property
    def loss_code(self) -> int:
        return LOSSES[(self.output, self.loss)]

    @property
    def is_classifier(self) -> bool:
        """True when targets are class labels (softmax outputs or sigmoid units)."""
        return self.loss_code != IDENTITY_MSE

    @property
    def is_multilabel(self) -> bool:
        """Sigmoid units with binary cross-entropy, more than one: targets are [N, K] 0/1 label sets."""
        return self.loss_code == SIGMOID_BCE and self.layers[-1] > 1

    @property
    def n_classes(self) -> int:
        return 2 if self.loss_code == SIGMOID_BCE else self.layers[-1]

    @property
    def n_layers(self) -> int:
        """Number of weight layers (hidden layers + 1)."""
        return len(self.layers) - 1

    def layout(self) -> "Layout":
        return self._layout

    @cached_property
    def _layout(self) -> "Layout":
        return Layout.of(self.layers, self.bias)


@dataclass(frozen=True)
class Layout:
    """Offsets of each layer's W and b in the flat parameter vector (b_offsets -1: no bias)."""

    sizes: np.ndarray  # int64 [L+1]
    w_offsets: np.ndarray  # int64 [L]
    b_offsets: np.ndarray  # int64 [L], -1 when there are no biases
    n_params: int

    @classmethod
    def of(cls, layers, bias: bool) -> "Layout":
        return cls(np.asarray(layers, dtype=np.int64), *parameter_layout(layers, bool(bias)))

    def views(self, params: np.ndarray):
        """[(W_l, b_l or None)] as views into ``params``: writing to them writes ``params``."""
        out = []
        for l in range(len(self.w_offsets)):
            n_in, n_out = int(self.sizes[l]), int(self.sizes[l + 1])
            w0 = int(self.w_offsets[l])
            W = params[w0 : w0 + n_in * n_out].reshape(n_in, n_out)
            b0 = int(self.b_offsets[l])
            b = params[b0 : b0 + n_out] if b0 >= 0 else None
            out.append((W, b))
        return out


def resolve_init(init: str, activation: str) -> str:
    _choice("init", init, INITS)
    if init == "auto":
        return "he" if activation == "relu" else "xavier"
    return init


# The compiled kernels load the weights' rows as 64-byte vectors (kernels/vectors.py). A row that
# starts off a 64-byte boundary splits its loads across two cache lines: per-sample SGD trained
# at 0.79-0.86x (784-128-10, one thread) with its parameters 16 or 48 bytes off, mini-batch at
# 0.87-0.99x (two threads); NumPy's arrays start on any multiple of 16 (BENCHMARKS.md, session 53).
VECTOR_ALIGNMENT = 64
# Parameters off a boundary that a training call is given (an array of the user's) are trained on an
# aligned copy, written back, when the call trains at least this many samples: in a call of one
# batch the copy cost more than it saved (partial_fit of 32-512 rows, one thread: 1.02-1.16x slower
# per call at 784-800-10; audit 57), in an epoch's chunks of 8,192 it pays back.
ALIGNED_COPY_SAMPLES = 1024


def vector_aligned(array):
    """``array`` itself when it is C-contiguous and starts on a VECTOR_ALIGNMENT-byte boundary,
    else ``aligned_copy(array)``."""
    array = np.asarray(array)
    if array.flags.c_contiguous and array.ctypes.data % VECTOR_ALIGNMENT == 0:
        return array
    return aligned_copy(array)


def aligned_empty(shape, dtype):
    """An uninitialised C-contiguous array that starts on a VECTOR_ALIGNMENT-byte boundary (a view
    into a slightly larger buffer)."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    buffer = np.empty(nbytes + VECTOR_ALIGNMENT, np.uint8)
    first = -buffer.ctypes.data % VECTOR_ALIGNMENT
    return buffer[first : first + nbytes].view(dtype).reshape(shape)


def aligned_copy(array, dtype=None):
    """A C-contiguous copy of ``array`` (cast to ``dtype`` if given, as astype casts) that starts
    on a VECTOR_ALIGNMENT-byte boundary."""
    array = np.asarray(array)
    aligned = aligned_empty(array.shape, array.dtype if dtype is None else dtype)
    aligned[...] = array
    return aligned


@contextlib.contextmanager
def aligned_for_training(params, n_samples):
    """The array a training call of ``n_samples`` samples trains in place of ``params``: itself,
    or, when it starts off a VECTOR_ALIGNMENT boundary (an array of the user's: the model's own
    are aligned) and the call has ALIGNED_COPY_SAMPLES or more, an aligned copy, written back into
    ``params`` however the block ends. Read-only parameters are refused first (the kernels train
    in place: an aligned copy would train, then fail to write back)."""
    if not params.flags.writeable:
        raise ValueError("params is read-only: the kernels train it in place")
    if params.ctypes.data % VECTOR_ALIGNMENT == 0 or n_samples < ALIGNED_COPY_SAMPLES:
        yield params
        return
    aligned = aligned_copy(params)
    try:
        yield aligned
    finally:
        params[...] = aligned


def init_params(arch: Architecture, init: str = "auto", seed=0, *, symmetry_warning=True) -> np.ndarray:
    """A fresh flat parameter vector, drawn in float64 from ``seed`` then cast to arch.dtype
    (starting on a VECTOR_ALIGNMENT-byte boundary, as the compiled kernels load it fastest).

    Biases start at zero. Weight schemes, with fan_in = n_{l-1}, fan_out = n_l:
    zeros; uniform U(-1/sqrt(fan_in), 1/sqrt(fan_in)); normal N(0, 1/fan_in);
    xavier (Glorot) U(-sqrt(6/(fan_in+fan_out)), +...); he N(0, 2/fan_in).
    ``auto`` is he for relu and xavier otherwise. ``zeros`` with a hidden layer says a
    SymmetryWarning unless not ``symmetry_warning``.
    """
    scheme = resolve_init(init, arch.activation)
    layout = arch.layout()
    params = np.zeros(layout.n_params, dtype=np.float64)
    rng = np.random.default_rng(seed)
    if scheme == "zeros":
        if arch.n_layers > 1 and symmetry_warning:
            warn(
                "init='zeros': every hidden unit receives the same gradient and they stay identical "
                "forever (the network behaves as if it had one hidden unit per layer); use init='auto'",
                SymmetryWarning,
            )
        return aligned_copy(params, arch.dtype)
    for W, _ in layout.views(params):
        fan_in, fan_out = W.shape
        if scheme == "uniform":
            limit = 1.0 / np.sqrt(fan_in)
            W[...] = rng.uniform(-limit, limit, size=W.shape)
        elif scheme == "normal":
            W[...] = rng.normal(0.0, 1.0 / np.sqrt(fan_in), size=W.shape)
        elif scheme == "xavier":
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            W[...] = rng.uniform(-limit, limit, size=W.shape)
        else:  # he
            W[...] = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=W.shape)
    return aligned_copy(params, arch.dtype)
