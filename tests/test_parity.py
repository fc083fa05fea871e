"""The compiled backend against the NumPy reference: same seed, same steps, same numbers.

Tolerances (conftest.TOLERANCES): float64 rtol 1e-9; float32 rtol 1e-4, atol 1e-6. Both
backends compute the same sums in a different order (and the compiled one with fused
multiply-adds and a polynomial exp accurate to 2 ulp), so they agree to rounding, and 20 SGD
steps amplify a one-ulp difference by far less than these bounds.

The grid hands its 20 steps to ``train_chunk`` all in one call and again a few batches per
call, and compares at every call boundary the loss sum, the number correct and every weight,
so state a kernel carries from one batch to the next within a call is covered.
"""

import itertools
import os

import numba
import numpy as np
import pytest

from fastmlp import MLP, trainer
from fastmlp.backends import make_backend
from fastmlp.network import ACTIVATIONS, LOSSES, Architecture, init_params

STEPS = 20
N_SAMPLES = 64
PAIRS = list(LOSSES)


def problem(layers, activation, output, loss, bias, dtype, input_kind, seed=0):
    rng = np.random.default_rng(seed)
    arch = Architecture(layers, activation, loss, output, bias, dtype)
    params = init_params(arch, "xavier", seed=seed)
    if bias:
        for _, b in arch.layout().views(params):
            b[...] = rng.normal(0, 0.3, size=b.shape)
    if input_kind == "uint8":  # mostly zeros, like MNIST
        X = rng.integers(0, 256, size=(N_SAMPLES, layers[0])).astype(np.uint8)
        X[rng.random(X.shape) < 0.7] = 0
        X[3] = 0  # an all-zero row
    else:
        X = rng.normal(0, 1, size=(N_SAMPLES, layers[0])).astype(dtype)
        X[5, ::2] = 0  # some exact zeros: skipped by the sparse first layer, like pixels
    if arch.is_classifier:
        targets = rng.integers(0, arch.n_classes, size=N_SAMPLES).astype(np.int64)
    else:
        targets = rng.normal(0, 1, size=(N_SAMPLES, layers[-1])).astype(dtype)
    return arch, params, X, targets


def training_order(batch_size, steps=STEPS):
    """``steps`` batches' worth of sample positions: successive seeded permutations of the data."""
    n_permutations = steps * batch_size // N_SAMPLES + 1
    order = np.concatenate([np.random.default_rng(k).permutation(N_SAMPLES) for k in range(n_permutations)])
    return order[: steps * batch_size].astype(np.int64)


def run_calls(backend_name, arch, params, X, targets, batch_size, batches_per_call, lr=0.1):
    """STEPS batches handed to ``train_chunk`` ``batches_per_call`` at a time; one
    (loss_sum, n_correct, parameters after the call) per call."""
    backend = make_backend(backend_name, arch)
    data = backend.prepare(X)
    params = params.copy()
    order = training_order(batch_size)
    per_call = batches_per_call * batch_size
    calls = []
    for start in range(0, len(order), per_call):
        chunk = order[start : start + per_call]
        loss_sum, n_correct, done, nonfinite_at = backend.train_chunk(params, data, targets, chunk, lr, batch_size)
        assert nonfinite_at == -1 and done == len(chunk)
        calls.append((loss_sum, n_correct, params.copy()))
    return calls


def grouped(calls, batches_per_call):
    """One-batch calls summed into groups of ``batches_per_call`` (the last group may be shorter)."""
    out = []
    for first in range(0, len(calls), batches_per_call):
        group = calls[first : first + batches_per_call]
        out.append((sum(c[0] for c in group), sum(c[1] for c in group), group[-1][2]))
    return out


def assert_calls_match(got, expected, dtype, tol, where):
    assert len(got) == len(expected), where
    for k, ((loss, correct, params), (ref_loss, ref_correct, ref_params)) in enumerate(zip(got, expected)):
        at = f"{where}, call {k}"
        np.testing.assert_allclose(loss, ref_loss, rtol=tol["rtol"], atol=tol["atol"], err_msg=at)
        np.testing.assert_allclose(params, ref_params, rtol=tol["rtol"], atol=tol["atol"], err_msg=at)
        # Exact in float64. In float32 a sample whose two largest outputs tie to within rounding
        # may go either way, so one per call may differ; a counting bug (a count taken after the
        # update, a batch counted twice or not at all) moves it by a batch.
        assert abs(correct - ref_correct) <= (0 if dtype == np.float64 else 1), (at, correct, ref_correct)


# Every batch in one call, and three batches per call (the last call shorter).
SPLITS = {"all batches in one call": STEPS, "3 batches per call": 3}


def assert_same_run(arch, params, X, targets, batch_size, tol):
    """The reference one batch per call, against the compiled core (and the reference itself)
    with many batches per call."""
    # Standard-normal float features are ~10x larger than scaled pixels: a smaller rate keeps
    # 20 per-sample steps of a linear regression from diverging.
    lr = 0.1 if X.dtype == np.uint8 else 0.02
    reference = run_calls("numpy", arch, params, X, targets, batch_size, 1, lr)
    assert not np.array_equal(params, reference[-1][2])  # training really moved
    for split, per_call in SPLITS.items():
        expected = grouped(reference, per_call)
        # the reference does the same operations however the batches are grouped into calls
        regrouped = run_calls("numpy", arch, params, X, targets, batch_size, per_call, lr)
        np.testing.assert_array_equal(regrouped[-1][2], expected[-1][2])
        compiled = run_calls("numba", arch, params, X, targets, batch_size, per_call, lr)
        assert_calls_match(compiled, expected, arch.dtype, tol, split)


GRID = list(
    itertools.product(
        ACTIVATIONS,
        PAIRS,
        [True, False],
        [np.float64, np.float32],
        [1, 7, 32, N_SAMPLES],
        [1, 2, 3],
        ["uint8", "float"],
    )
)


def pairwise(grid):
    """A subset of ``grid`` in which every pair of values of any two factors still occurs:
    greedily, the case covering the most pairs not yet covered, first in grid order on ties."""
    def pairs(case):
        return {(i, j, repr(case[i]), repr(case[j])) for i in range(len(case)) for j in range(i + 1, len(case))}

    uncovered = set().union(*(pairs(case) for case in grid))
    chosen = []
    while uncovered:
        best = max(grid, key=lambda case: len(pairs(case) & uncovered))
        chosen.append(best)
        uncovered -= pairs(best)
    return chosen


def sampled(grid, n, seed=2026):
    """``grid`` pairwise, plus ``n`` more cases drawn with a fixed seed, in grid order."""
    chosen = {grid.index(case) for case in pairwise(grid)}
    rest = [k for k in range(len(grid)) if k not in chosen]
    chosen |= set(np.random.default_rng(seed).choice(rest, size=n, replace=False).tolist())
    return [grid[k] for k in sorted(chosen)]


# Compiled, the whole grid (1,536 cases) runs in well under a minute. As plain Python
# (NUMBA_DISABLE_JIT=1, the CI pass that executes the kernels' source line by line) it would
# take about seven, so that pass covers the grid pairwise (every pair of factor values occurs,
# 19 cases) plus 45 more cases drawn with a fixed seed.
CASES = sampled(GRID, 45) if numba.config.DISABLE_JIT else GRID


def grid_id(case):
    activation, (output, loss), bias, dtype, batch_size, hidden, inputs = case
    return (
        f"{activation}-{output}+{loss}-{'bias' if bias else 'nobias'}-{np.dtype(dtype).name}"
        f"-bs{batch_size}-h{hidden}-{inputs}"
    )


@pytest.mark.parametrize("case", CASES, ids=[grid_id(c) for c in CASES])
def test_k_steps_match_the_reference(case, synth):
    activation, (output, loss), bias, dtype, batch_size, hidden, inputs = case
    n_out = 1 if loss == "binary_cross_entropy" else 4
    layers = [12] + [9, 7, 6][:hidden] + [n_out]
    arch, params, X, targets = problem(layers, activation, output, loss, bias, dtype, inputs)
    assert_same_run(arch, params, X, targets, batch_size, synth.tolerance(dtype))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_mnist_sized_network_matches_the_reference(dtype, synth):
    arch, params, X, targets = problem([784, 128, 10], "sigmoid", "softmax", "cross_entropy", True, dtype, "uint8")
    assert_same_run(arch, params, X, targets, 1, synth.tolerance(dtype))


# --- the threaded per-sample kernel ----------------------------------------------------------

# More samples than one trainer chunk, so the threaded kernel's per-call repacking of the
# weights and its copy back are crossed several times.
THREADED_SAMPLES = 2 * trainer.CHUNK_SAMPLES + 1500
# After 17,884 per-sample steps (784-64-10, weights up to 0.28) the largest differences measured
# were, two threads vs one / vs the reference: float64 6.7e-16 / 3.8e-15 absolute; float32
# 3.6e-7 / 1.5e-6 absolute (1.6e-2 relative, on weights near zero). The bounds leave 10x room.
THREADED_TOLERANCES = {np.float64: dict(rtol=1e-9, atol=1e-12), np.float32: dict(rtol=1e-3, atol=2e-5)}


def two_threads_or_skip(arch):
    backend = make_backend("numba", arch, threads=2)
    if backend.threads < 2:
        if numba.config.DISABLE_JIT:
            reason = "NUMBA_DISABLE_JIT=1: the threaded per-sample kernel runs on one thread"
        else:
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
            reason = f"only {cores} core(s) available to this process: threads=2 would run on one"
        pytest.skip(f"cannot run two threads here ({reason}); comparing one thread with itself proves nothing")
    return backend


def one_epoch(backend, params, X, y, order, lr=0.1):
    params = params.copy()
    loss_sum, n_correct, _ = trainer.train_epoch(backend, params, backend.prepare(X), y, order, lr, 1)
    return loss_sum, n_correct, params


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_two_threads_over_several_chunks_match_one_thread_and_the_reference(dtype, rng, synth):
    arch = Architecture([784, 64, 10], "sigmoid", "cross_entropy", dtype=dtype)
    threaded = two_threads_or_skip(arch)
    X, y = synth.digits(rng, THREADED_SAMPLES)
    params = init_params(arch, "xavier", seed=1)
    order = np.random.default_rng(2).permutation(len(y)).astype(np.int64)

    two = one_epoch(threaded, params, X, y, order)
    one = one_epoch(make_backend("numba", arch, threads=1), params, X, y, order)
    reference = one_epoch(make_backend("numpy", arch), params, X, y, order)
    tol = THREADED_TOLERANCES[dtype]
    for name, other in (("one thread", one), ("the NumPy reference", reference)):
        np.testing.assert_allclose(two[0], other[0], **tol, err_msg=f"loss sum, two threads vs {name}")
        np.testing.assert_allclose(two[2], other[2], **tol, err_msg=f"weights, two threads vs {name}")
        assert abs(two[1] - other[1]) <= (0 if dtype == np.float64 else 2), (name, two[1], other[1])
    assert not np.array_equal(two[2], params)
    assert two[1] > 0.9 * len(y)  # it learned (the synthetic digits are easy)

    again = one_epoch(make_backend("numba", arch, threads=2), params, X, y, order)
    np.testing.assert_array_equal(again[2], two[2])  # deterministic, not Hogwild


# As plain Python (NUMBA_DISABLE_JIT=1) the kernels' scalar maths warns on the overflow it reports.
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_divergence_is_reported_at_the_same_sample(synth):
    arch, params, X, targets = problem([12, 9, 4], "relu", "identity", "mse", True, np.float64, "float")
    X[np.arange(N_SAMPLES) == 17] *= 1e300  # sample 17 overflows the loss
    for name in ("numpy", "numba"):
        backend = make_backend(name, arch)
        for batch_size in (1, 8):
            p = params.copy()
            order = np.arange(N_SAMPLES, dtype=np.int64)
            loss_sum, _, done, nonfinite_at = backend.train_chunk(p, backend.prepare(X), targets, order, 0.01, batch_size)
            assert nonfinite_at == 17, (name, batch_size)
            assert done == (17 if batch_size == 1 else 16), (name, batch_size)
            assert np.isfinite(p).all()


@pytest.mark.mnist
@pytest.mark.slow
def test_same_predictions_on_mnist_after_one_epoch(mnist):
    X_train, y_train, X_test, y_test = mnist
    predictions = {}
    for backend in ("numpy", "numba"):
        model = MLP([784, 128, 10], dtype="float64", seed=0, backend=backend)
        model.fit(X_train, y_train, epochs=1, batch_size=1, lr=0.1, progress=False)
        predictions[backend] = model.predict(X_test)
    np.testing.assert_array_equal(predictions["numba"], predictions["numpy"])
