"""Backends do the arithmetic; the trainer (``fastmlp.trainer``) does everything else.

A backend is built for one ``Architecture`` and offers:

- ``prepare(X, *, batches=True)``: the dataset in the form its kernels read (once per dataset;
  ``batches``: whether mini-batch training will read it, or only per-sample training and
  predictions);
- ``train_chunk(params, data, targets, order, lr, batch_size, optimizer=None, state=None,
  sample_weight=None)``: training over the sample positions in ``order`` in place on
  ``params`` (and ``state``, an ``optim.State``: slots and counters), returning ``(loss_sum,
  n_correct, n_done, nonfinite_at)`` exactly as ``reference.train_batches``; without
  ``optimizer``, plain SGD; ``sample_weight`` (dtype [N], mean 1) weighs each sample;
- ``for_inference(X)``: the rows in the form ``logits`` reads for predictions (numba: as they
  are, with no conversion to CSR rows; ``prepare``'s form gives ``logits`` the same bits);
- ``logits(params, data)``: the output layer's pre-activation z[N, K];
- ``start_compiling(input_dtype, batch_size, optimizer, sample_weight)`` and ``warmup(...)``:
  compile what training will call, the first in the background where it can (numba only).

``compile_seconds`` is the JIT time spent so far (0 for NumPy).
"""

from __future__ import annotations

import numpy as np

from . import reference
from .network import Architecture

BACKENDS = ("numba", "numpy")
# The rows the compiled backend's inference takes at a time (each row's sums are the same bits in
# any block); the model's predictions convert X a multiple of it at a time (model.PREDICT_ROWS)
INFERENCE_BLOCK = 4096
# A prediction of this many rows or more is shared among threads (numba's logits): 1024 rows are
# about 1.1 ms of a 784-128-10 forward pass on one thread, a thread pool's start and end about
# 0.1 ms (Intel Xeon, Emerald Rapids; bench/experiments/predict_rows.py)
INFERENCE_SPLIT_ROWS = 1024


class NumpyBackend:
    """The reference, batch by batch, in plain NumPy."""

    name = "numpy"

    def __init__(self, arch: Architecture, threads="auto"):
        self.arch = arch
        self.threads = 1
        self.compile_seconds = 0.0

    def prepare(self, X, *, batches=True):
        return X

    def for_inference(self, X):
        return X

    def start_compiling(self, input_dtype, batch_size, optimizer=None, sample_weight=None):
        """Nothing to compile."""

    def warmup(self, params, data, targets, batch_size, optimizer=None, state=None, sample_weight=None,
               inference=True):
        """Nothing to compile."""

    def train_chunk(self, params, data, targets, order, lr, batch_size, optimizer=None, state=None,
                    sample_weight=None):
        return reference.train_batches(self.arch, params, data, targets, order, lr, batch_size, optimizer, state,
                                       sample_weight)

    def logits(self, params, data):
        # an overflow is said once, by the model (model._say_non_finite), as with the compiled kernels
        with np.errstate(over="ignore", invalid="ignore"):
            return reference.predict_logits(self.arch, params, data)


def check_backend(name):
    """A ValueError unless ``name`` is one of ``BACKENDS``."""
    if not isinstance(name, str) or name not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}; got {name!r}")


def make_backend(name, arch: Architecture, threads="auto"):
    check_backend(name)
    if name == "numpy":
        return NumpyBackend(arch, threads)
    from ._numba_backend import NumbaBackend  # imported lazily: numba's import costs ~0.5 s

    return NumbaBackend(arch, threads)
