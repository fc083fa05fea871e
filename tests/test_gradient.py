"""kernels/gradient.py: a batch's gradient apart from its step, checked against the fused
mini-batch kernel (one batch) and against itself split in two (what two processes compute)."""

import numpy as np
import pytest

from fastmlp import kernels, optim
from fastmlp.kernels import codes

LAYERS = np.array([30, 9, 6, 4], np.int64)  # two hidden layers: the loops over layers l >= 1 run
RECIPES = {
    "sgd": {},
    "momentum+dropout": {"momentum": 0.9, "nesterov": True, "weight_decay": 1e-3, "dropout": 0.3, "input_dropout": 0.2},
    "adam+dropout": {"optimizer": "adam", "weight_decay": 1e-2, "decoupled_weight_decay": True, "dropout": 0.25},
}


def make_case(rng, dtype, recipe, weighted, bias=True):
    w_offsets, b_offsets, n_params = codes.parameter_layout(LAYERS, bias)
    X = rng.integers(0, 256, size=(40, LAYERS[0])).astype(np.uint8)
    X[rng.random(X.shape) < 0.6] = 0  # sparse rows, as images are
    part_ptr, indices, values = kernels.sparse_rows(X, parts=kernels.PARTS)
    labels = rng.integers(0, LAYERS[-1], size=len(X)).astype(np.int64)
    weights = rng.uniform(0.5, 1.5, size=len(X)).astype(dtype) if weighted else np.empty(0, dtype)
    optimizer = optim.Optimizer(**recipe)
    state = optim.State.fresh(optimizer, np.empty(n_params, dtype), seed=7)
    state.slots[...] = np.abs(rng.normal(0, 0.01, size=state.slots.shape))  # a run in progress
    state.counters[codes.STEPS] = 5
    state.counters[codes.SAMPLES] = 123
    return {
        "params": rng.normal(0, 0.4, size=n_params).astype(dtype),
        "layout": (LAYERS, w_offsets, b_offsets),
        "codes": (codes.RELU, codes.SOFTMAX_CROSS_ENTROPY),
        "hyper": optimizer.hyper(0.05),
        "optimizer": optimizer,
        "state": state,
        # the mini-batch and gradient kernels take the rows' pointers split at their parts
        "data": (part_ptr, indices, values, 1 / 255),
        "indptr": part_ptr[::kernels.PARTS],
        "targets": (labels, np.empty((0, LAYERS[-1]), dtype), weights),
        "order": rng.permutation(len(X)).astype(np.int64),
    }


def gradient(case, rows, first_sample, batch_rows):
    """(grad, stats) of batch_gradient on ``rows`` at the case's params."""
    params = case["params"]
    grad = np.empty_like(params)
    stats = np.empty(3, np.float64)
    scratch = kernels.gradient_scratch(params, LAYERS, case["optimizer"].dropout > 0 or case["optimizer"].input_dropout > 0)
    kernels.batch_gradient(
        grad, stats, *scratch, params, *case["layout"], *case["codes"], case["hyper"], case["state"].counters,
        *case["data"], *case["targets"], rows, first_sample, batch_rows,
    )
    return grad, stats


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
# (without biases: batch_gradient's and gradient_step's own branches, which no test reached: audit 28)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
def test_gradient_then_step_equals_one_fused_batch(rng, synth, recipe, dtype, weighted, bias):
    case = make_case(rng, dtype, RECIPES[recipe], weighted, bias)
    batch = 16
    order = case["order"]
    params, state = case["params"], case["state"]

    fused_params, fused_state = params.copy(), state.copy()
    fused_stats = np.zeros(4, np.float64)
    scratch = kernels.minibatch_scratch(params, LAYERS, batch, fused_state.slots.shape[0], True)
    kernels.minibatch_sgd_chunk(
        fused_params, fused_stats, *scratch, *case["layout"], *case["codes"], case["hyper"], fused_state.slots,
        fused_state.counters, *case["data"], *case["targets"], order, 0, batch, batch,
    )

    grad, stats = gradient(case, order[:batch], int(state.counters[codes.SAMPLES]), batch)
    stepped, stepped_state = params.copy(), state.copy()
    scalars = np.empty(9, dtype)
    kernels.gradient_step(stepped, stepped_state.slots, stepped_state.counters, scalars, grad, *case["layout"],
                          case["hyper"], batch)

    tolerance = synth.tolerance(dtype)
    assert stats[2] == -1
    np.testing.assert_allclose(stats[0], fused_stats[0], rtol=tolerance["rtol"])
    assert stats[1] == fused_stats[1]
    assert not np.allclose(stepped, params)  # the step moved the weights
    np.testing.assert_allclose(stepped, fused_params, **tolerance)
    np.testing.assert_allclose(stepped_state.slots, fused_state.slots, **tolerance)
    np.testing.assert_array_equal(stepped_state.counters, fused_state.counters)


@pytest.mark.parametrize("recipe", ["sgd", "momentum+dropout"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_mini_batch_kernel_reads_its_scratch_rows_by_range_never_to_their_end(rng, recipe, dtype):
    # minibatch_scratch pads the rows of units, raw, deltas and partials to whole vectors (each
    # row on a cache line): the kernels must read every column by its range. Rows padded further and
    # filled with NaN must train to the same bits as the scratch's own (p = units[r, end:], the
    # output's probabilities to the row's end, took the padding in). A sparse forward over a whole
    # partials row would only fill its padding, which nothing reads: no result shows it.
    case = make_case(rng, dtype, RECIPES[recipe], weighted=True)
    params, state = case["params"], case["state"]
    batch = 16
    results = []
    for extra in (0, 7, 33):
        trained, trained_state = params.copy(), state.copy()
        stats = np.zeros(4, np.float64)
        scratch = list(kernels.minibatch_scratch(params, LAYERS, batch, state.slots.shape[0], True))
        for k in (3, 5, 6, 7):  # partials, units, raw, deltas
            *rows, width = scratch[k].shape
            wider = np.full((*rows, width + extra), np.nan, dtype)
            wider[..., :width] = scratch[k]
            scratch[k] = wider
        kernels.minibatch_sgd_chunk(
            trained, stats, *scratch, *case["layout"], *case["codes"], case["hyper"], trained_state.slots,
            trained_state.counters, *case["data"], *case["targets"], case["order"], 0, 3 * batch, batch,
        )
        results.append((trained, trained_state.slots, stats))
    assert np.isfinite(results[0][0]).all() and not np.array_equal(results[0][0], params)
    for trained, slots, stats in results[1:]:
        np.testing.assert_array_equal(trained, results[0][0])
        np.testing.assert_array_equal(slots, results[0][1])
        np.testing.assert_array_equal(stats, results[0][2])


@pytest.mark.parametrize("recipe", ["sgd", "momentum+dropout"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_two_halves_sum_to_the_whole_batch(rng, synth, recipe, dtype):
    case = make_case(rng, dtype, RECIPES[recipe], weighted=True)
    rows = case["order"][:21]
    first = int(case["state"].counters[codes.SAMPLES])
    whole, whole_stats = gradient(case, rows, first, len(rows))
    head, head_stats = gradient(case, rows[:10], first, len(rows))  # the global batch size divides
    tail, tail_stats = gradient(case, rows[10:], first + 10, len(rows))  # global sample numbers
    tolerance = synth.tolerance(dtype)
    assert np.abs(whole).max() > 0
    np.testing.assert_allclose(head + tail, whole, **tolerance)
    np.testing.assert_allclose(head_stats[0] + tail_stats[0], whole_stats[0], rtol=tolerance["rtol"])
    assert head_stats[1] + tail_stats[1] == whole_stats[1]
    # the halves differ from the whole: each holds only its samples' share
    assert not np.allclose(head, whole, **tolerance)


# As plain Python (NUMBA_DISABLE_JIT=1) the kernels' scalar maths warns on the inf - inf it reports.
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_a_non_finite_loss_is_reported_at_its_row(rng):
    case = make_case(rng, np.float64, {}, weighted=False)
    case["params"][0 : LAYERS[0] * LAYERS[1]] = np.inf  # every nonzero input makes the first layer infinite
    rows = case["order"][:8]
    _, stats = gradient(case, rows, 0, len(rows))
    indptr = case["indptr"]
    first_nonzero_row = next(r for r, sample in enumerate(rows) if indptr[sample + 1] > indptr[sample])
    assert stats[2] == first_nonzero_row


def test_the_gradient_kernel_shares_the_mini_batch_kernels_block_helper(rng):
    """batch_gradient calls step 2's block (``_block_forward_backward``, seconds of compile) with
    the same argument types as the mini-batch kernel, so a process that runs both (a distributed
    run, ``fastmlp warmup --distributed``) compiles and caches it once. A literal ``(0, 1)`` for
    its rows would be a type of its own."""
    import numba

    if numba.config.DISABLE_JIT:
        pytest.skip("NUMBA_DISABLE_JIT=1: nothing is compiled")
    if numba.config.BOUNDSCHECK:
        pytest.skip("checks the types of a compile, not an index: 33 s of float32 compiling in the bounds-checked "
                    "pass, which runs float64 cases only")
    from fastmlp.kernels import minibatch

    case = make_case(rng, np.float32, {}, False)
    params, state = case["params"].copy(), case["state"].copy()
    scratch = kernels.minibatch_scratch(params, LAYERS, 8, state.slots.shape[0], False)
    kernels.minibatch_sgd_chunk(
        params, np.zeros(4, np.float64), *scratch, *case["layout"], *case["codes"], case["hyper"], state.slots,
        state.counters, *case["data"], *case["targets"], case["order"], 0, 8, 8,
    )
    gradient(case, case["order"][:8], 0, 8)
    helper = minibatch._block_forward_backward
    # compiled in this process, or, where both kernels were loaded from the cache (whose
    # helpers then hold no signatures here), as the helper's cache index lists them
    signatures = list(helper.signatures) or [key[0] for key in helper._cache._cache_file._load_index()]
    rows_types = {signature[5] for signature in signatures}
    assert rows_types == {numba.types.UniTuple(numba.types.int64, 2)}, rows_types
