"""The compiled backend against the NumPy reference: same seed, same steps, same numbers.

Tolerances (conftest.TOLERANCES): float64 rtol 1e-9; float32 rtol 1e-4, atol 1e-6. Both
backends compute the same sums in a different order (and the compiled one with fused
multiply-adds and a polynomial exp accurate to 2 ulp), so they agree to rounding, and 20 SGD
steps amplify a one-ulp difference by far less than these bounds.

The grid hands its 20 steps to ``train_chunk`` all in one call and again a few batches per
call, and compares at every call boundary the loss sum, the number correct and every weight,
so state a kernel carries from one batch to the next within a call is covered.
"""

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


def run_calls(backend_name, arch, params, X, targets, batch_size, batches_per_call, lr=0.1, steps=STEPS):
    """STEPS batches handed to ``train_chunk`` ``batches_per_call`` at a time; one
    (loss_sum, n_correct, parameters after the call) per call."""
    backend = make_backend(backend_name, arch)
    data = backend.prepare(X)
    params = params.copy()
    order = training_order(batch_size, steps)
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


def assert_same_run(arch, params, X, targets, batch_size, tol, steps=STEPS):
    """The reference one batch per call, against the compiled core (and the reference itself)
    with many batches per call; ``steps`` batches in all."""
    # Standard-normal float features are ~10x larger than scaled pixels: a smaller rate keeps
    # 20 per-sample steps of a linear regression from diverging.
    lr = 0.1 if X.dtype == np.uint8 else 0.02
    reference = run_calls("numpy", arch, params, X, targets, batch_size, 1, lr, steps)
    assert not np.array_equal(params, reference[-1][2])  # training really moved
    for split, per_call in SPLITS.items():
        expected = grouped(reference, per_call)
        # the reference does the same operations however the batches are grouped into calls
        regrouped = run_calls("numpy", arch, params, X, targets, batch_size, per_call, lr, steps)
        np.testing.assert_array_equal(regrouped[-1][2], expected[-1][2])
        compiled = run_calls("numba", arch, params, X, targets, batch_size, per_call, lr, steps)
        assert_calls_match(compiled, expected, arch.dtype, tol, split)


GRID_FACTORS = [
    list(ACTIVATIONS),
    PAIRS,
    [True, False],
    [np.float64, np.float32],
    [1, 7, 32, N_SAMPLES],
    [1, 2, 3],
    ["uint8", "float"],
]


def pairwise(factors, seed=0, tries=50):
    """Cases in which every pair of values of any two factors occurs (AETG-style greedy: each
    new case starts from a pair not yet covered and is the best of ``tries`` seeded fillings)."""
    rng = np.random.default_rng(seed)
    n = len(factors)
    pairs = [(p, q) for p in range(n) for q in range(p + 1, n)]
    uncovered = {(p, a, q, b) for p, q in pairs for a in range(len(factors[p])) for b in range(len(factors[q]))}
    chosen = []
    while uncovered:
        p0, a0, q0, b0 = min(uncovered)
        best, best_gain = None, -1
        for _ in range(tries):
            case = [int(rng.integers(len(f))) for f in factors]
            case[p0], case[q0] = a0, b0
            gain = sum((p, case[p], q, case[q]) in uncovered for p, q in pairs)
            if gain > best_gain:
                best, best_gain = case, gain
        chosen.append(tuple(best))
        uncovered -= {(p, best[p], q, best[q]) for p, q in pairs}
    return [tuple(f[k] for f, k in zip(factors, case)) for case in chosen]


def sampled(factors, n, seed=2026):
    """``factors``' product covered pairwise, plus ``n`` more cases drawn with a fixed seed."""
    rng = np.random.default_rng(seed)
    cases = pairwise(factors, seed)
    drawn = {tuple(int(rng.integers(len(f))) for f in factors) for _ in range(n)}
    cases += [tuple(f[k] for f, k in zip(factors, case)) for case in sorted(drawn)]
    unique = []
    for case in cases:
        if case not in unique:
            unique.append(case)
    return unique


# The whole grid is 1,536 cases: compiled, about 90 s of CI on an AMD EPYC Zen 3 (2026-12-02),
# where CI ran over its 15 minutes; as plain Python (NUMBA_DISABLE_JIT=1, the CI pass that
# executes the kernels' source line by line) several minutes more. So it is covered pairwise
# (every pair of factor values occurs in some case) plus cases drawn with a fixed seed: 400
# draws compiled (366 cases in all, about a quarter of the grid), 45 as plain Python.
CASES = sampled(GRID_FACTORS, 45 if numba.config.DISABLE_JIT else 400)


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


# Wide dense layers after the first (the grid's hidden layers have at most 9 units): 70 inputs
# and 66 outputs leave remainders after the mini-batch kernel's blocks of four samples, rows
# and units; a batch of 7 has a block of fewer than four rows. As plain Python
# (NUMBA_DISABLE_JIT=1) five batches, two calls of 3 + 2 among them, take every one of those
# paths (twenty took 22 s of that pass, 2026-12-02).
# From minibatch.PAIRED_INPUTS inputs on, a full block's forward takes two units per pass: 260
# inputs and 7 outputs (three pairs and one unit left).
WIDE_LAYERS = [12, 70, 66, 4]
PAIRED_LAYERS = [12, 260, 7, 4]
WIDE_STEPS = 5 if numba.config.DISABLE_JIT else STEPS


def test_the_paired_layer_is_wide_enough_to_pair():
    from fastmlp.kernels import minibatch

    assert PAIRED_LAYERS[1] >= minibatch.PAIRED_INPUTS > WIDE_LAYERS[1] and PAIRED_LAYERS[2] % 2 == 1


@pytest.mark.parametrize("layers", [WIDE_LAYERS, PAIRED_LAYERS], ids=["70x66", "260x7 paired"])
@pytest.mark.parametrize("batch_size", [7, 32])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_wide_dense_layer_matches_the_reference(dtype, batch_size, layers, synth):
    arch, params, X, targets = problem(layers, "tanh", "softmax", "cross_entropy", True, dtype, "uint8")
    assert_same_run(arch, params, X, targets, batch_size, synth.tolerance(dtype), WIDE_STEPS)


@pytest.mark.parametrize("name, dropout", [("nesterov-decay", "dropout"), ("adamw", "input+dropout")])
def test_a_wide_dense_layer_matches_the_reference_with_optimizers(name, dropout, synth):
    from fastmlp import optim

    dtype = np.float64
    arch, params, X, targets = problem(WIDE_LAYERS, "relu", "softmax", "cross_entropy", True, dtype, "float")
    optimizer = optim.Optimizer(**OPTIMIZERS[name], **DROPOUTS[dropout])
    assert_optimizer_calls_match(arch, params, X, targets, optimizer, synth.tolerance(dtype), name)


# The mini-batch kernel's first layer keeps its sums in eight 64-byte vectors (128 float32 or 64
# float64 units) for widths of five to eight vectors, masked at the row's end, and its weight
# gradient too, on rows padded to eight vectors below eight (minibatch._padded_gradient); other
# widths take plain loops: widths on both sides of those edges, and with input dropout (plain
# loops, on the padded rows at width 100).
FIRST_LAYER_WIDTHS = [1, 16, 17, 32, 33, 63, 64, 65, 100, 127, 128, 129, 256]


@pytest.mark.parametrize("width", FIRST_LAYER_WIDTHS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_first_layer_widths_at_the_vector_edges_match_the_reference(width, dtype, synth):
    arch, params, X, targets = problem([30, width, 5], "relu", "softmax", "cross_entropy", True, dtype, "uint8")
    assert_same_run(arch, params, X, targets, 7, synth.tolerance(dtype))


# From minibatch.CSC_ROWS rows on, a first layer of rows wider than minibatch.CSC_ROW_BYTES adds
# its weight gradient input by input (minibatch._part_gradient_by_input); 300 units end, after the
# blocks of four vectors, in a whole vector and a masked one (float32 and float64 alike).
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_wide_first_layer_in_batches_of_32_matches_the_reference(dtype, synth):
    from fastmlp.kernels import minibatch

    assert 32 >= minibatch.CSC_ROWS and 300 * np.dtype(dtype).itemsize > minibatch.CSC_ROW_BYTES
    arch, params, X, targets = problem([30, 300, 5], "relu", "softmax", "cross_entropy", True, dtype, "uint8")
    assert_same_run(arch, params, X, targets, 32, synth.tolerance(dtype), WIDE_STEPS)


# (audit 75) The same wide first layer with plain SGD and weight decay, coupled or decoupled: its
# FUSED_STEP (minibatch._part_gradient_by_input's ``stepped``) steps only the rows the batch's inputs
# light, so it must not be taken where the step also decays the rows no input lit (inputs never
# lit, as MNIST's border pixels, here the first five). Without the decoupled decay's condition the
# five rows kept their weights: 1,500 of 10,805 parameters apart.
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("recipe", ["sgd-decoupled", "sgd-decay"])
def test_a_wide_first_layer_in_batches_of_32_decays_unlit_rows_as_the_reference(recipe, dtype, synth):
    from fastmlp import optim
    from fastmlp.kernels import minibatch

    assert 32 >= minibatch.CSC_ROWS and 300 * np.dtype(dtype).itemsize > minibatch.CSC_ROW_BYTES
    arch, params, X, targets = problem([30, 300, 5], "relu", "softmax", "cross_entropy", True, dtype, "uint8")
    X[:, :5] = 0
    optimizer = optim.Optimizer(**OPTIMIZERS[recipe])
    tol = synth.tolerance(dtype)
    expected = run_optimizer_calls("numpy", arch, params, X, targets, 32, 2, optimizer, "decaying", 0.1, WIDE_STEPS)
    compiled = run_optimizer_calls("numba", arch, params, X, targets, 32, 2, optimizer, "decaying", 0.1, WIDE_STEPS)
    assert not np.array_equal(compiled[-1][2], params)
    assert_calls_match([c[:3] for c in compiled], [c[:3] for c in expected], arch.dtype, tol, recipe)


@pytest.mark.parametrize("width", [17, 100, 129])
def test_first_layer_widths_match_the_reference_with_input_dropout(width, synth):
    from fastmlp import optim

    dtype = np.float64
    arch, params, X, targets = problem([30, width, 5], "tanh", "softmax", "cross_entropy", True, dtype, "uint8")
    optimizer = optim.Optimizer(**OPTIMIZERS["nesterov-decay"], **DROPOUTS["input+dropout"])
    tol = synth.tolerance(dtype)
    expected = run_optimizer_calls("numpy", arch, params, X, targets, 7, 3, optimizer, "decaying", 0.015)
    compiled = run_optimizer_calls("numba", arch, params, X, targets, 7, 3, optimizer, "decaying", 0.015)
    assert not np.array_equal(compiled[-1][2], params)
    assert_calls_match([c[:3] for c in compiled], [c[:3] for c in expected], arch.dtype, tol, f"width {width}")


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


def two_threads_and_one(threaded, arch, rng, n, inputs=np.uint8):
    """One epoch of ``n`` random sparse 30-pixel rows (4 classes; ``inputs`` uint8 pixels, or
    floats in [0, 1]) on ``threaded`` and on one thread: (loss sum, number correct, weights) of each."""
    X = rng.integers(0, 256, size=(n, 30)).astype(np.uint8)
    X[rng.random(X.shape) < 0.6] = 0
    if inputs != np.uint8:
        X = (X / 255).astype(inputs)
    y = rng.integers(0, 4, n).astype(np.int64)
    params = init_params(arch, "xavier", seed=0)
    order = np.arange(n, dtype=np.int64)
    return (one_epoch(threaded, params, X, y, order),
            one_epoch(make_backend("numba", arch, threads=1), params, X, y, order))


@pytest.mark.parametrize("hidden", [40, 100])
def test_two_threads_split_uneven_hidden_layers_whole(hidden, rng):
    # the test above splits 64 units 32 + 32; with the split rounded down to whole blocks of 16, the
    # last hidden % 16 units were never trained and every test still passed (audit 28, mutation M2:
    # 0.14-0.16 between the thread counts); since session 69 the same bits (logits_in_halves)
    arch = Architecture([30, hidden, 4], "tanh", "cross_entropy", dtype=np.float64)
    two, one = two_threads_and_one(two_threads_or_skip(arch), arch, rng, 400)
    np.testing.assert_array_equal(two[2], one[2])
    assert two[:2] == one[:2]


class Alternating:
    """threads="auto"'s chooser (``fastmlp._adaptive.ThreadChooser``) for a test: each chunk in
    calls of the sizes given in turn, on one thread and two in turn, so that a run moves between
    the counts at many places (a chooser on a real machine moves only where the load changes)."""

    def __init__(self, sizes=(700, 256, 1500, 3)):
        self.sizes = sizes
        self.calls = []

    def run(self, n_samples, unit, call):
        start = 0
        while start < n_samples:
            n = min(self.sizes[len(self.calls) % len(self.sizes)], n_samples - start)
            count = 1 + len(self.calls) % 2
            self.calls.append(count)
            done = call(count, start, n)
            start += done
            if done < n:
                break
        return start


# (hidden units, dtype, activation, loss): one hidden layer of 32 units or more
# (kernels.logits_in_halves; register blocks, the masked block and the loop, halves of 16-unit
# blocks), each activation and loss once (pairwise with the widths and dtypes)
HALVES = [
    (128, np.float32, "sigmoid", "cross_entropy"),
    (256, np.float32, "relu", "mse"),
    (100, np.float32, "tanh", "cross_entropy"),
    (64, np.float64, "tanh", "cross_entropy"),
    (192, np.float64, "sigmoid", "mse"),
    (300, np.float64, "relu", "cross_entropy"),
]


@pytest.mark.slow
@pytest.mark.parametrize("hidden, dtype, activation, loss", HALVES)
def test_auto_moves_between_one_and_two_threads_per_sample_without_changing_a_bit(hidden, dtype, activation, loss,
                                                                                  rng, synth):
    # issue 11: threads="auto" may take two threads per sample only because one thread sums the
    # logits in the two threads' halves; a call's start, its end and the count may then change
    # anywhere in an epoch and the weights stay the very bits of one thread (and of threads=2)
    from fastmlp import kernels

    arch = Architecture([784, hidden, 10], activation, loss, "softmax", dtype=dtype)  # (MSE: on softmax outputs)
    assert kernels.logits_in_halves(arch.layers)
    two_threads_or_skip(arch)
    X, y = synth.digits(rng, THREADED_SAMPLES)
    params = init_params(arch, "xavier", seed=1)
    order = np.random.default_rng(2).permutation(len(y)).astype(np.int64)

    auto = make_backend("numba", arch, threads="auto")
    chooser = auto.persample_threads = Alternating()
    moved = one_epoch(auto, params, X, y, order)
    one = one_epoch(make_backend("numba", arch, threads=1), params, X, y, order)
    two = one_epoch(make_backend("numba", arch, threads=2), params, X, y, order)
    assert chooser.calls.count(2) >= 3 and auto.threads_used == 2, chooser.calls  # it moved, and says so
    for name, other in (("one thread", one), ("two threads", two)):
        np.testing.assert_array_equal(moved[2], other[2], err_msg=f"weights, auto vs {name}")
        assert moved[:2] == other[:2], (name, moved[:2], other[:2])
    reference = one_epoch(make_backend("numpy", arch), params, X, y, order)
    np.testing.assert_allclose(moved[2], reference[2], **THREADED_TOLERANCES[dtype])
    assert moved[1] > 0.9 * len(y)  # it learned


# widths of every first-layer path: register blocks of eight and four vectors, the masked block
# (65-127 float32 units with AVX-512), the loop (others), and halves split off a block of 16
@pytest.mark.parametrize("hidden", [16, 31, 32, 33, 48, 64, 96, 100, 128, 144, 192, 200, 256, 320, 384, 800])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("inputs", [np.uint8, np.float64])
def test_auto_takes_two_threads_per_sample_only_where_they_give_one_thread_s_bits(hidden, dtype, inputs, rng):
    # kernels.logits_in_halves says where one and two threads share their sums: there they must
    # give the same bits (an activation each: tanh), elsewhere "auto" must not choose two threads.
    # Since session 69 every one-hidden-layer width of 32 units or more (before: multiples of
    # eight vectors only, 128 float32 units, 64 float64). Float inputs on float32 weights: the
    # first layer's loop had summed in float64 what the register blocks rounded to float32 first
    # (100 units split 48 + 52 and 200 split 96 + 104 differed in the forward, 192 in the update)
    from fastmlp import kernels

    arch = Architecture([30, hidden, 4], "tanh", "cross_entropy", dtype=dtype)
    halves = kernels.logits_in_halves(arch.layers)
    assert halves == (hidden >= 32)
    if not halves:
        assert make_backend("numba", arch, threads="auto").persample_threads is None
        return
    threaded = two_threads_or_skip(arch)
    # "auto" tries two threads only where they can pay, from 112 units (README: two threads ran at
    # 0.70-1.20x one thread below), though the bits would be one thread's at any width here
    tries_two = make_backend("numba", arch, threads="auto").persample_threads is not None
    assert tries_two == (hidden >= 112)
    two, one = two_threads_and_one(threaded, arch, rng, 300, inputs)
    np.testing.assert_array_equal(two[2], one[2])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_mini_batch_parts_of_eight_lit_inputs_and_more_match_the_reference(dtype, rng, synth):
    # the parity grid's 12 and 30 inputs never gave a part 8 nonzero inputs, so the sparse
    # forward's eight-inputs-per-pass loop ran in no kernel test: a wrong row there passed all of
    # them (audit 28, mutation M1); 16 units: not a register block's width
    arch = Architecture([40, 16, 4], "tanh", "cross_entropy", dtype=dtype)
    X = rng.integers(1, 256, size=(64, 40)).astype(np.uint8)
    X[rng.random(X.shape) < 0.1] = 0  # parts of 10 inputs, mostly all lit
    y = rng.integers(0, 4, 64).astype(np.int64)
    params = init_params(arch, "xavier", seed=0)
    order = np.arange(64, dtype=np.int64)
    trained = {}
    for name in ("numpy", "numba"):
        backend = make_backend(name, arch)
        trained[name] = params.copy()
        backend.train_chunk(trained[name], backend.prepare(X), y, order, 0.1, 8)
    np.testing.assert_allclose(trained["numba"], trained["numpy"], **synth.tolerance(np.dtype(dtype).name))
    assert not np.array_equal(trained["numba"], params)


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
def test_same_predictions_on_mnist_after_20000_samples(mnist):
    # a third of an epoch: the NumPy reference trains per sample at a few thousand samples/s
    # (the whole epoch took 32 s of CI on an AMD EPYC Zen 3)
    X_train, y_train, X_test, y_test = mnist
    predictions = {}
    for backend in ("numpy", "numba"):
        model = MLP([784, 128, 10], dtype="float64", seed=0, backend=backend)
        model.fit(X_train[:20_000], y_train[:20_000], epochs=1, batch_size=1, lr=0.1, progress=False)
        predictions[backend] = model.predict(X_test)
    np.testing.assert_array_equal(predictions["numba"], predictions["numpy"])


# --- optimizers, weight decay, dropout, schedules ----------------------------------------------

# Each update rule with each kind of weight decay (none, coupled, decoupled), and Nesterov's with
# and without (audit 45: Adam with coupled decay, SGDW and Nesterov without decay were missing).
OPTIMIZERS = {
    "sgd": {},
    "sgd-decay": {"weight_decay": 0.05},
    "sgd-decoupled": {"weight_decay": 0.08, "decoupled_weight_decay": True},
    "momentum": {"momentum": 0.9},
    "nesterov": {"momentum": 0.9, "nesterov": True},
    "nesterov-decay": {"momentum": 0.8, "nesterov": True, "weight_decay": 0.03},
    "nesterov-decoupled": {"momentum": 0.7, "nesterov": True, "weight_decay": 0.1, "decoupled_weight_decay": True},
    "momentum-decoupled": {"momentum": 0.5, "weight_decay": 0.1, "decoupled_weight_decay": True},
    "adam": {"optimizer": "adam"},
    "adam-decay": {"optimizer": "adam", "beta1": 0.85, "weight_decay": 0.05},
    "adamw": {"optimizer": "adam", "beta1": 0.8, "beta2": 0.99, "weight_decay": 0.1, "decoupled_weight_decay": True},
}
DROPOUTS = {"no-dropout": {}, "dropout": {"dropout": 0.3}, "input": {"input_dropout": 0.25},
            "input+dropout": {"input_dropout": 0.2, "dropout": 0.3}}
# The rate changes between calls as a schedule changes it between epochs: lazily updated rows
# must be brought up to date at the end of each call, under the rate of that call. A falling
# rate (exponential, step, cosine, invscaling and adaptive schedules) and a rising one (a
# linear warm-up); the named schedules' rates through MLP.fit: test_named_schedules_match_...
SCHEDULES = {"constant": lambda call: 1.0, "decaying": lambda call: 0.7**call,
             "warming-up": lambda call: (call + 1) / 4}

# The full cross with the grid (202,752 cases) is far too many for CI: every pair of factor
# values occurs (pairwise), plus a seeded sample.
OPTIMIZER_FACTORS = GRID_FACTORS + [list(OPTIMIZERS), list(DROPOUTS), list(SCHEDULES)]
OPTIMIZER_CASES = sampled(OPTIMIZER_FACTORS, 30 if numba.config.DISABLE_JIT else 200, seed=9)


def run_optimizer_calls(backend_name, arch, params, X, targets, batch_size, batches_per_call, optimizer, schedule, lr,
                        steps=STEPS):
    from fastmlp import optim

    backend = make_backend(backend_name, arch)
    data = backend.prepare(X)
    params = params.copy()
    state = optim.State.fresh(optimizer, params, seed=7)
    order = training_order(batch_size, steps)
    per_call = batches_per_call * batch_size
    calls = []
    for call, start in enumerate(range(0, len(order), per_call)):
        chunk = order[start : start + per_call]
        rate = lr * SCHEDULES[schedule](call)
        loss_sum, n_correct, done, nonfinite_at = backend.train_chunk(
            params, data, targets, chunk, rate, batch_size, optimizer, state
        )
        assert nonfinite_at == -1 and done == len(chunk)
        calls.append((loss_sum, n_correct, params.copy(), state.copy()))
    return calls


def assert_optimizer_calls_match(arch, params, X, targets, optimizer, tol, name):
    """Three calls of three batches of 7 under a decaying rate, the compiled core against the
    reference: losses, weights and optimizer slots after every call; the weights moved."""
    lr = 0.003 if optimizer.optimizer == "adam" else 0.015
    if optimizer.optimizer == "adam":  # as in test_optimizers_match_the_reference
        tol = {"rtol": tol["rtol"] * 10, "atol": tol["atol"] * 100}
    expected = run_optimizer_calls("numpy", arch, params, X, targets, 7, 3, optimizer, "decaying", lr)
    compiled = run_optimizer_calls("numba", arch, params, X, targets, 7, 3, optimizer, "decaying", lr)
    assert not np.array_equal(compiled[-1][2], params)
    assert_calls_match([c[:3] for c in compiled], [c[:3] for c in expected], arch.dtype, tol, name)
    for k, (got, want) in enumerate(zip(compiled, expected)):
        np.testing.assert_allclose(got[3].slots, want[3].slots, rtol=tol["rtol"], atol=tol["atol"],
                                   err_msg=f"{name}, call {k}: optimizer slots")


def optimizer_case_id(case):
    return grid_id(case[:7]) + "-" + "-".join(case[7:])


@pytest.mark.parametrize("case", OPTIMIZER_CASES, ids=[optimizer_case_id(c) for c in OPTIMIZER_CASES])
def test_optimizers_match_the_reference(case, synth):
    """Every optimizer, weight decay and dropout option, on the grid: the compiled core against
    the reference one step per call, at every call boundary, weights and optimizer state."""
    from fastmlp import optim

    activation, (output, loss), bias, dtype, batch_size, hidden, inputs, name, dropout, schedule = case
    n_out = 1 if loss == "binary_cross_entropy" else 4
    layers = [12] + [9, 7, 6][:hidden] + [n_out]
    arch, params, X, targets = problem(layers, activation, output, loss, bias, dtype, inputs)
    optimizer = optim.Optimizer(**OPTIMIZERS[name], **DROPOUTS[dropout])
    lr = (0.01 if optimizer.optimizer == "adam" else 0.05) * (1.0 if X.dtype == np.uint8 else 0.3)
    tol = synth.tolerance(dtype)
    # Adam divides by sqrt(s) + eps: where a gradient is ~0, rounding differences are amplified.
    if optimizer.optimizer == "adam":
        tol = {"rtol": tol["rtol"] * 10, "atol": tol["atol"] * 100}
    reference = run_optimizer_calls("numpy", arch, params, X, targets, batch_size, 1, optimizer, schedule, lr)
    for split, per_call in SPLITS.items():
        # the reference's rate changes per call too: compare like with like
        expected = run_optimizer_calls("numpy", arch, params, X, targets, batch_size, per_call, optimizer, schedule, lr)
        compiled = run_optimizer_calls("numba", arch, params, X, targets, batch_size, per_call, optimizer, schedule, lr)
        assert_calls_match([c[:3] for c in compiled], [c[:3] for c in expected], arch.dtype, tol, split)
        for k, (got, want) in enumerate(zip(compiled, expected)):
            np.testing.assert_array_equal(got[3].counters, want[3].counters, err_msg=f"{split}, call {k}: counters")
            np.testing.assert_allclose(got[3].slots, want[3].slots, rtol=tol["rtol"], atol=tol["atol"],
                                       err_msg=f"{split}, call {k}: optimizer slots")
    if schedule == "constant":
        # with a constant rate, grouping the steps into calls changes nothing in the reference
        np.testing.assert_array_equal(expected[-1][2], reference[-1][2])


NAMED_SCHEDULES = {
    "exponential": {"lr_schedule": "exponential", "lr_decay": 0.6},
    "step": {"lr_schedule": "step", "lr_decay": 0.5, "lr_step_epochs": 2},
    "cosine+warm-up": {"lr_schedule": "cosine", "warmup_epochs": 2},
    "invscaling": {"lr_schedule": "invscaling", "power_t": 0.3},
    # a tol no epoch beats: the rate is divided after every epoch without improvement
    "adaptive": {"lr_schedule": "adaptive", "n_iter_no_change": 1, "tol": 10.0},
}


@pytest.mark.parametrize("batch_size", [1, 8])
@pytest.mark.parametrize("schedule", list(NAMED_SCHEDULES))
def test_named_schedules_match_the_reference(schedule, batch_size, synth, rng):
    """Each named schedule through MLP.fit, five epochs of momentum with weight decay and dropout:
    the same rates in both backends, and the compiled run's losses and weights the reference's
    (the grid above feeds the kernels schedule-shaped rates directly; audit 45)."""
    X, y = synth.blobs(rng, 96, 12, 4, dtype=np.float64)
    runs = {}
    for backend in ("numpy", "numba"):
        model = MLP([12, 9, 4], activation="tanh", dtype="float64", seed=3, backend=backend, threads=1)
        runs[backend] = model, model.fit(X, y, epochs=5, batch_size=batch_size, lr=0.05, momentum=0.8, weight_decay=1e-3,
                                         dropout=0.2, progress=False, **NAMED_SCHEDULES[schedule])
    (reference, expected), (compiled, got) = runs["numpy"], runs["numba"]
    assert got.lr == expected.lr and len(set(got.lr)) >= 3  # the schedule moved the rate
    tol = synth.tolerance(np.float64)
    np.testing.assert_allclose(got.loss, expected.loss, rtol=tol["rtol"], atol=tol["atol"])
    np.testing.assert_allclose(compiled.params_, reference.params_, rtol=tol["rtol"], atol=tol["atol"])


# The grid's layers are too narrow for the mini-batch kernel's padded first-layer gradient rows
# (widths of five to eight 64-byte vectors, below eight: minibatch._padded_gradient), whose
# rows take each optimizer's step in one call per part (optimizer.apply_step_rows).
@pytest.mark.parametrize("name", ["sgd-decay", "nesterov-decay", "momentum-decoupled", "adamw"])
@pytest.mark.parametrize("dtype, width", [(np.float32, 100), (np.float64, 40)])
def test_padded_first_layer_rows_take_every_optimizers_step_as_the_reference(name, dtype, width, synth):
    from fastmlp import optim
    from fastmlp.kernels import vectors

    n_lanes = vectors.VECTOR_BYTES // np.dtype(dtype).itemsize
    assert 4 * n_lanes < width < 8 * n_lanes  # the padded rows
    arch, params, X, targets = problem([30, width, 5], "relu", "softmax", "cross_entropy", True, dtype, "uint8")
    optimizer = optim.Optimizer(**OPTIMIZERS[name])
    assert_optimizer_calls_match(arch, params, X, targets, optimizer, synth.tolerance(dtype), f"{name}, width {width}")


# A batch longer than the mini-batch kernel's sub-batch (minibatch.sub_batch_rows: 64 to 256 rows, more
# for narrow first layers) runs its forward pass a sub-batch at a time and adds each sub-batch's
# share of the gradient in the next one's step 1. The grid's batches are far too short to reach
# that: batches of three sub-batches, the last shorter, two batches per call, with plain SGD and
# with input and hidden dropout (each sample's masks are numbered by its place in the batch).
# As plain Python (NUMBA_DISABLE_JIT=1) a batch of 556 rows takes seconds: three batches, float64.
SUB_BATCH_STEPS = 3 if numba.config.DISABLE_JIT else 5


@pytest.mark.parametrize("dtype", [np.float64] if numba.config.DISABLE_JIT else [np.float64, np.float32])
def test_batches_longer_than_a_sub_batch_match_the_reference(dtype, synth):
    from fastmlp import optim
    from fastmlp.kernels import minibatch

    width = 160
    sub_rows = minibatch.sub_batch_rows(width, np.dtype(dtype).itemsize)
    batch_size = 2 * sub_rows + 44  # three sub-batches, the last shorter (the data's 64 samples repeat)
    arch, params, X, targets = problem([30, width, 5], "tanh", "softmax", "cross_entropy", True, dtype, "uint8")
    tol = synth.tolerance(dtype)
    expected = run_calls("numpy", arch, params, X, targets, batch_size, 1, 0.1, SUB_BATCH_STEPS)
    compiled = run_calls("numba", arch, params, X, targets, batch_size, 2, 0.1, SUB_BATCH_STEPS)
    assert not np.array_equal(compiled[-1][2], params)
    assert_calls_match(compiled, grouped(expected, 2), arch.dtype, tol, "sgd")
    optimizer = optim.Optimizer(**OPTIMIZERS["adamw"], **DROPOUTS["input+dropout"])
    tol = {"rtol": tol["rtol"] * 10, "atol": tol["atol"] * 100}  # Adam, as in test_optimizers_match_the_reference
    expected = run_optimizer_calls("numpy", arch, params, X, targets, batch_size, 2, optimizer, "decaying", 0.003,
                                   SUB_BATCH_STEPS)
    compiled = run_optimizer_calls("numba", arch, params, X, targets, batch_size, 2, optimizer, "decaying", 0.003,
                                   SUB_BATCH_STEPS)
    assert not np.array_equal(compiled[-1][2], params)
    assert_calls_match([c[:3] for c in compiled], [c[:3] for c in expected], arch.dtype, tol, "adamw, dropout")


def fit_on_both(layers, X, y, activation="sigmoid", **options):
    """{"numpy": model, "numba": model}: the same float64 fit (seed 0) on each backend."""
    models = {}
    for backend in ("numpy", "numba"):
        models[backend] = MLP(layers, activation=activation, dtype="float64", seed=0, backend=backend)
        models[backend].fit(X, y, progress=False, **options)
    return models


@pytest.mark.parametrize("scale, eps", [(1e-14, 1e-20), (1e-16, 1e-30), (1.0, 1e-8)])
@pytest.mark.parametrize("batch_size", [1, 16])
def test_adam_with_a_tiny_eps_steps_as_the_reference(scale, eps, batch_size):
    # The kernels flushed Adam's second moment below 1e-30 to 0, taking sqrt(s) out of the
    # denominator where it was not small beside a tiny eps: with features of 1e-14 and eps=1e-20
    # the first layer's weights reached ~1e3 where the reference's stay below 1
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(64, 8)) * scale, rng.integers(0, 3, 64)
    models = fit_on_both([8, 5, 3], X, y, activation="tanh", epochs=3, batch_size=batch_size, lr=1e-3,
                         optimizer="adam", eps=eps)
    np.testing.assert_allclose(models["numba"].params_, models["numpy"].params_, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("n_samples, batch_size", [(103, 10), (103, 64), (4099, 128)])
def test_an_epoch_whose_last_batch_is_short_trains_as_the_reference(n_samples, batch_size):
    # The grid above hands the kernels whole batches only: a mini-batch kernel that skipped an
    # epoch's short last batch (103 = 10 x 10 + 3) passed it. Two epochs of fit, shuffled, as a
    # user runs them; 4099 samples cross a chunk boundary too.
    rng = np.random.default_rng(1)
    X, y = rng.random((n_samples, 12)), rng.integers(0, 4, n_samples)
    models = fit_on_both([12, 9, 4], X, y, epochs=2, batch_size=batch_size, lr=0.3, momentum=0.5)
    assert models["numba"].history_.samples == [n_samples, n_samples]
    np.testing.assert_allclose(models["numba"].params_, models["numpy"].params_, rtol=1e-9, atol=1e-12)
