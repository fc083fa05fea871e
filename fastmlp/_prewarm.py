"""A second process that compiles half of a kernel's helpers while this one compiles the rest.

A cold first run of per-sample SGD spends most of its wait compiling, one helper after the other,
in one process (Numba compiles under a global lock). The helpers a kernel calls are compiled
separately, and Numba's on-disk cache is shared by processes (each entry is written whole, then
renamed into place), so a second process can compile some of them meanwhile: this process types
the kernel's calls first to last and finds, when it reaches a helper, that the other one has
already stored it. ``start`` launches ``python -m fastmlp._prewarm`` for that, which calls the
kernel's helpers last to first on tiny arrays of the training run's types: for plain per-sample
SGD and for mini-batch training (``PLANS``). It runs only where it can help: on a cold cache (no index of the kernel yet), with two
cores available to this process and ``NUMBA_NUM_THREADS`` at least 2 (sweep workers and MPI ranks
run with 1), compiled (not under NUMBA_DISABLE_JIT), and unless ``FASTMLP_BACKGROUND_COMPILE=0``.
The other process changes nothing but the cache; if it is slow, killed or fails, this process
compiles whatever it has not stored, as it would alone.

``tests/test_prewarm.py`` checks that the calls below have exactly the types the kernel's own
calls have (every helper is then a cache hit for the kernel), so that an edit of the kernel's
helpers that this list misses fails a test instead of quietly wasting the second core.
"""

import argparse
import atexit
import inspect
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ENV_SWITCH = "FASTMLP_BACKGROUND_COMPILE"
_STARTED = []  # the processes started, kept (not collected while they run) and reaped by the next start


def per_sample_helpers(dtype, values_dtype):
    """The plain per-sample kernel's helpers (``kernels.sgd.sgd_persample_chunk``), as calls on tiny
    arrays of the types the kernel passes them, last used first."""
    from .kernels import activation, linear, loss

    real = np.dtype(dtype).type
    n_in, n_hidden, n_out = 6, 4, 3
    z, a = np.zeros(n_hidden, real), np.zeros(n_hidden, real)
    W, b = np.zeros((n_in, n_hidden), real), np.zeros(n_hidden, real)
    Wt, b_out = np.zeros((n_out, n_hidden), real), np.zeros(n_out, real)
    z_out, p = np.zeros(n_out, real), np.zeros(n_out, real)
    indices, values = np.arange(2, dtype=np.int32), np.ones(2, values_dtype)
    labels, targets = np.zeros(1, np.int64), np.empty((0, n_out), real)
    scale, lr = real(1 / 255), real(0.0)
    code = 1  # an activation or loss code: the value does not matter, the type does
    return [
        lambda: linear.sparse_row_update(W, b, z, indices, values, scale, lr),
        lambda: activation.activation_row_backward(z, a, code),
        lambda: linear.dense_row_backward_update(z, Wt, b_out, z_out, a, lr),
        lambda: loss.loss_row_backward(z_out, p, labels, targets, 0, code),
        lambda: loss.loss_row_forward(p, z_out, labels, targets, 0, code),
        lambda: linear.dense_row_forward(z_out, Wt, b_out, a),
        lambda: activation.activation_row_forward(a, code),
        lambda: linear.sparse_row_forward(z, W, b, indices, values, scale),
    ]


def minibatch_helpers(dtype, values_dtype):
    """The largest helpers of the mini-batch kernel (``kernels.minibatch.minibatch_sgd_chunk``),
    as calls on tiny arrays of the types the kernel passes them: the first layer's weight
    gradient (short, and needed early: in the first helper the kernel compiles, _part_gradient), the
    block of step 2 (used last, about a quarter of the kernel's compile with its own helpers),
    then the forward of step 1.
    The kernel compiles its first helpers meanwhile, and its parallel loops only it can lower."""
    from .kernels import codes, minibatch, sparse_rows, vectors

    real = np.dtype(dtype).type
    layers = np.array([6, 4, 3], np.int64)
    w_offsets, b_offsets, n_params = codes.parameter_layout(layers)
    params = np.zeros(n_params, real)
    _, weights_t, _, partials, spans, units, raw, deltas, losses, hits = minibatch.minibatch_scratch(
        params, layers, 4, 0, False)
    indptr, indices, values = sparse_rows(np.ones((4, 6), values_dtype))
    labels, targets, weights = np.zeros(4, np.int64), np.empty((0, 3), real), np.empty(0, real)
    batch, zero, no_dropout, one = np.arange(4, dtype=np.int64), np.int64(0), np.uint64(0), real(1)
    code = 1  # an activation or loss code: the value does not matter, the type does
    block = 8 * vectors.VECTOR_BYTES // np.dtype(real).itemsize  # _sparse_gradient's width: 8 vectors
    W, z = np.zeros((6, block), real), np.zeros(block, real)
    return [
        lambda: minibatch._sparse_gradient(W, z, indices, values, real(1 / 255)),
        lambda: minibatch._block_forward_backward(
            units, raw, deltas, losses, hits, (zero, np.int64(4)), partials, params, weights_t, layers, w_offsets,
            b_offsets, code, code, real(4), labels, targets, weights, batch, zero, zero, no_dropout, one),
        lambda: minibatch._part_forward(
            partials, spans, params, layers, w_offsets, b_offsets, zero, batch, indptr, indices, values,
            real(1 / 255), zero, zero, no_dropout, one),
    ]


def minibatch_kernel(dtype, values_dtype):
    """The mini-batch helpers, then the parallel mini-batch kernel itself, called as the backend
    calls it (the fit's process trains on the serial kernel meanwhile: ``NumbaBackend``)."""
    from .backends import make_backend
    from .network import Architecture, init_params

    def kernel():
        arch = Architecture((6, 4, 3), "sigmoid", "cross_entropy", dtype=dtype)
        backend = make_backend("numba", arch, "auto")
        params = init_params(arch, "xavier", seed=0)
        data = backend.prepare(np.ones((2, 6), values_dtype))
        backend.warmup(params, data, np.zeros(2, np.int64), 2, inference=False)

    return minibatch_helpers(dtype, values_dtype) + [kernel]


PLANS = {"per-sample": per_sample_helpers, "mini-batch": minibatch_kernel}


def cache_is_cold(kernel, dtype=None, values_dtype=None):
    """True when Numba's cache has nothing of ``kernel`` to load: no index, or one that Numba
    would not use (the sources changed since), or, given a training run's float ``dtype`` and
    input ``values_dtype``, none compiled for those types (a float32 run does not warm a
    float64 one). Where Numba's cache internals differ from the ones read here, a present index
    counts as warm."""
    path = Path(kernel.stats.cache_path)
    name = kernel.py_func.__qualname__
    if not any(path.glob(f"*.{name}-*.nbi")):
        return True
    try:
        # Numba's own reader: {} for an index of other sources; keys start with the signature
        index = kernel._cache._cache_file._load_index()
        if dtype is None:
            return not index
        arguments = list(inspect.signature(kernel.py_func).parameters)
        where = (arguments.index("params"), arguments.index("values"))
        wanted = (np.dtype(dtype), np.dtype(values_dtype))
        return not any(tuple(np.dtype(str(key[0][i].dtype)) for i in where) == wanted for key in index)
    except Exception:  # noqa: BLE001 - internals of another Numba version: keep the old answer
        return False


def start(plan, dtype, values_dtype):
    """Start the second process for ``plan`` ("per-sample": plain per-sample SGD, or "mini-batch")
    if it can help (module docstring); returns the process or None."""
    import numba

    from . import kernels
    from .kernels._threads import available_cores

    if numba.config.DISABLE_JIT or os.environ.get(ENV_SWITCH, "1") == "0":
        return None
    kernel = kernels.sgd_persample_chunk if plan == "per-sample" else kernels.minibatch_sgd_chunk
    if getattr(sys, "frozen", False) or not sys.executable:
        return None  # a frozen application's executable is not a Python to run "-m" with
    if available_cores() < 2 or numba.config.NUMBA_NUM_THREADS < 2 or kernel.signatures:
        return None  # one core, or told to use one thread (sweep workers, MPI ranks), or compiled
    key = (plan, np.dtype(dtype).name, np.dtype(values_dtype).name)
    for running in _STARTED:
        if getattr(running, "fastmlp_plan", None) == key and running.poll() is None:
            return running  # already compiling this (several fits at once, or one after another)
    try:
        if not cache_is_cold(kernel, dtype, values_dtype):
            return None
        process = subprocess.Popen(
            [sys.executable, "-m", "fastmlp._prewarm", plan, np.dtype(dtype).name, np.dtype(values_dtype).name],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
    except (OSError, ValueError, AttributeError):  # no process, or a Numba without these cache attributes
        return None
    process.fastmlp_plan = key
    _STARTED[:] = [running for running in _STARTED if running.poll() is None]
    _STARTED.append(process)
    return process


def _stop_started():
    """At exit: stop what is still compiling. Once this process has compiled its kernel, the
    kernel's cache entry holds the helpers too, so their own entries no longer matter; a parallel
    mini-batch kernel not stored yet is left to the next run's second process."""
    for process in _STARTED:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


atexit.register(_stop_started)


def main(argv=None):
    parser = argparse.ArgumentParser(description="compile a kernel's helpers into Numba's cache")
    parser.add_argument("plan", choices=list(PLANS))
    parser.add_argument("dtype", choices=["float32", "float64"])
    parser.add_argument("values_dtype", choices=["uint8", "float32", "float64"])
    args = parser.parse_args(argv)
    for call in PLANS[args.plan](args.dtype, args.values_dtype):
        call()
    return 0


if __name__ == "__main__":
    sys.exit(main())
