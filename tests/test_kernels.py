"""Each compiled kernel against its NumPy reference, on random data and on edge cases."""

import copy
import os
import pickle

import numba
import numpy as np
import pytest
from numba import njit

from fastmlp import kernels, reference
from fastmlp.kernels._config import KERNEL_OPTIONS
from fastmlp.kernels.activation import activation_row_forward, fast_exp
from fastmlp.kernels import vectors
from fastmlp.kernels.codes import SIGMOID, TANH
from fastmlp.kernels.vectors import (hload, hload_part, hzeros, lanes, vfma, vfold, vload, vload_part, vsplat, vstore,
                                     vstore_part, vsum)
from fastmlp.network import ACTIVATIONS

DTYPES = [np.float32, np.float64]
SHAPES = [(1, 1), (1, 7), (5, 3), (13, 17)]


def random(rng, shape, dtype, scale=1.0):
    return (rng.normal(0, scale, size=shape)).astype(dtype)


# ---------------------------------------------------------------------------------------------
# exp, tanh and sigmoid (kernels/activation.py) compiled exactly as training compiles them: tanh
# and sigmoid through the production row kernel, exp inlined into a loop compiled with the
# production options, as the loss kernels call it. Default njit options would test other code:
# without the fast-math flags LLVM evaluates the polynomials in another order, or not vectorised.


def _exp_row(a):
    """a[n] = exp(a[n]), in place: fast_exp in a loop, as in loss.py's softmax."""
    for k in range(a.shape[0]):
        a[k] = fast_exp(a[k])


# The production options; caching off changes no code but keeps the cache away from tests/.
exp_row = njit(**{**KERNEL_OPTIONS, "cache": False})(_exp_row)

FUNCTIONS = {  # name: (kernel computing it in place on a 1-D array, reference for wider floats)
    "exp": (exp_row, np.exp),
    "tanh": (lambda a: activation_row_forward(a, TANH), np.tanh),
    "sigmoid": (lambda a: activation_row_forward(a, SIGMOID), lambda x: 1 / (1 + np.exp(-x))),
}

# The maximum errors kernels/activation.py states, in ulps of the result's dtype, and its
# absolute error bound for results below the smallest normal float.
ULP_BOUNDS = {"exp": 1.02, "tanh": 1.36, "sigmoid": 2.52}
SUBNORMAL_ABS_ERROR = {np.float32: 1.2e-38, np.float64: 2.3e-308}

# The worst inputs the measurements behind those figures found (every float32, 2*10^9 float64
# samples): the inputs sampled below need not hit them.
WORST_INPUTS = {
    np.float32: {"exp": -5.8778844, "tanh": 0.62830955, "sigmoid": -16.635704},
    np.float64: {"exp": -472.37959737978326, "tanh": 0.6273285547868909, "sigmoid": -36.73681988726253},
}

# Where fast_exp clamps its input (largest x with a finite result, ln of the smallest normal).
EXP_CLAMPS = {np.float32: (88.72283, -87.33654), np.float64: (709.782712893384, -708.3964185322641)}

COMPILED_ONLY = pytest.mark.skipif(
    numba.config.DISABLE_JIT,
    reason="NUMBA_DISABLE_JIT=1: fast_exp and fast_tanh are NumPy's exp and tanh, not the compiled "
    "polynomials these bounds are about",
)


def reference_dtype(dtype):
    """A float type wide enough to judge ``dtype`` results in ulps, or a visible skip."""
    if dtype == np.float32:
        return np.float64
    if np.finfo(np.longdouble).nmant < 60:
        pytest.skip("np.longdouble is no wider than float64 on this platform: no reference for float64 ulps")
    return np.longdouble


def ulps(result, exact, dtype):
    """|result - exact| in units in the last place of ``exact`` in ``dtype`` (exact: wider floats)."""
    info = np.finfo(dtype)
    _, exponent = np.frexp(exact)  # |exact| in [2^(exponent-1), 2^exponent)
    exponent = np.maximum(exponent, info.minexp + 1)  # subnormals: the spacing at the smallest normal
    ulp = np.ldexp(np.ones_like(exact), exponent - info.nmant - 1)
    return np.abs(result.astype(exact.dtype) - exact) / ulp


def accuracy_inputs(dtype, name):
    """10^6 inputs evenly spaced in value and 10^6 evenly spaced in bit pattern over |x| in
    [smallest subnormal, limit] (every binade, tiny |x| included), plus the edge cases."""
    info = np.finfo(dtype)
    # exp and sigmoid in float64 change up to |x| ~ 745; everything else saturates before 90
    limit = dtype(750.0 if (dtype == np.float64 and name != "tanh") else 90.0)
    bits_type = np.int32 if dtype == np.float32 else np.int64
    first_bits, last_bits = np.array([info.smallest_subnormal, limit], dtype).view(bits_type)
    magnitudes = np.linspace(first_bits, last_bits, 500_000).astype(bits_type).view(dtype)
    hi, lo = (dtype(clamp) for clamp in EXP_CLAMPS[dtype])
    edges = np.array([0.0, info.smallest_subnormal, info.tiny, 1.0, 0.625, hi, -lo, WORST_INPUTS[dtype][name]], dtype)
    edges = np.concatenate([edges, np.nextafter(edges, dtype(np.inf)), np.nextafter(edges, dtype(-np.inf))])
    return np.concatenate([np.linspace(-limit, limit, 1_000_001, dtype=dtype), magnitudes, -magnitudes, edges, -edges])


@COMPILED_ONLY
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_fast_exp_tanh_sigmoid_are_within_the_stated_ulps(name, dtype):
    kernel, reference_function = FUNCTIONS[name]
    wide = reference_dtype(dtype)
    info = np.finfo(dtype)
    x = accuracy_inputs(dtype, name)
    result = x.copy()
    kernel(result)
    with np.errstate(over="ignore"):
        exact = reference_function(x.astype(wide))
        rounded = exact.astype(dtype)
    assert not np.isnan(result).any()
    np.testing.assert_array_equal(np.isinf(result), np.isinf(rounded))  # inf exactly where exp overflows

    normal = (np.abs(exact) >= info.tiny) & np.isfinite(rounded)
    errors = ulps(result[normal], exact[normal], dtype)
    worst = int(np.argmax(errors))
    assert errors[worst] <= ULP_BOUNDS[name], f"{errors[worst]:.4f} ulp at x = {x[normal][worst]!r}"

    below_normal = np.abs(exact) < info.tiny
    assert below_normal.any()  # the inputs reach the subnormal range of every function
    assert np.all(np.abs(result[below_normal] - exact[below_normal]) < SUBNORMAL_ABS_ERROR[dtype])
    if name == "exp":
        assert np.all(result[below_normal] == 0)  # flushed to zero, never a subnormal


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_fast_exp_tanh_sigmoid_keep_inf_and_nan(name, dtype):
    """Under the production flags (no "nnan"/"ninf"), in the vectorised loop body and in its
    scalar remainder alike."""
    huge = np.finfo(dtype).max
    tiny = np.finfo(dtype).smallest_subnormal
    special = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, huge, -huge, tiny, -tiny], dtype)
    expected = {
        "exp": [np.inf, 0.0, np.nan, 1.0, 1.0, np.inf, 0.0, 1.0, 1.0],
        "tanh": [1.0, -1.0, np.nan, 0.0, 0.0, 1.0, -1.0, tiny, -tiny],  # tanh(-0): 0 of either sign ("nsz")
        "sigmoid": [1.0, 0.0, np.nan, 0.5, 0.5, 1.0, 0.0, 0.5, 0.5],
    }[name]
    kernel, _ = FUNCTIONS[name]
    for position in (0, 35, 58):  # 67 values: a vectorised body and a scalar remainder
        values = np.linspace(-3, 3, 67).astype(dtype)
        values[position : position + len(special)] = special
        kernel(values)
        np.testing.assert_array_equal(values[position : position + len(special)], np.array(expected, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_keeps_inf_and_nan_as_the_reference(dtype):
    """relu is a product (a select that keeps the loaded value compiles to a masked store, ~6x
    slower on AMD Zen 2): -inf must still give 0 (-inf * 0 is NaN), NaN stay NaN, and the
    backward pass be the reference's da * (a > 0), in the vectorised body and the remainder."""
    huge = np.finfo(dtype).max
    special = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, huge, -huge, -1.5, 2.5], dtype)
    for position in (0, 35, 58):
        z = np.linspace(-3, 3, 67).astype(dtype)
        z[position : position + len(special)] = special
        a = np.empty_like(z)[None]
        kernels.activation_forward(a, z[None], ACTIVATIONS["relu"])
        expected = reference.activation_forward(z, "relu")
        np.testing.assert_array_equal(a[0], expected)  # values: 0 of either sign ("nsz")
        da = np.linspace(-2, 2, 67).astype(dtype)
        da[position : position + len(special)] = [1.0, np.inf, -np.inf, np.nan, 3.0, -1.0, 2.0, np.nan, 4.0]
        dz = np.empty_like(da)[None]
        with np.errstate(invalid="ignore"):  # inf * 0: NaN in both (NumPy's warning when the kernel runs interpreted)
            kernels.activation_backward(dz, da[None], a, ACTIVATIONS["relu"])
            np.testing.assert_array_equal(dz[0], reference.activation_backward(da, expected, "relu"))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_activation_forward_and_backward(rng, activation, dtype, synth):
    code = ACTIVATIONS[activation]
    z = random(rng, (9, 11), dtype, 3.0)
    z[0, :4] = [1000, -1000, 0, 50]  # extremes stay finite
    out = np.empty_like(z)
    kernels.activation_forward(out, z, code)
    tol = synth.tolerance(dtype)
    np.testing.assert_allclose(out, reference.activation_forward(z, activation), **tol)
    da = random(rng, z.shape, dtype)
    dz = np.empty_like(z)
    kernels.activation_backward(dz, da, out, code)
    np.testing.assert_allclose(dz, reference.activation_backward(da, out, activation), **tol)
    assert np.isfinite(out).all() and np.isfinite(dz).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss_code", [0, 1, 2, 3])
def test_loss_forward_and_backward(rng, loss_code, dtype, synth):
    B, K = 12, (1 if loss_code == 2 else 5)
    z = random(rng, (B, K), dtype, 3.0)
    z[0] = 1000  # large logits: no overflow, no NaN
    z[1] = -1000
    labels = rng.integers(0, 2 if loss_code == 2 else K, size=B).astype(np.int64)
    if loss_code == 3:
        target_rows = random(rng, (B, K), dtype)
        ref_targets, kernel_labels = target_rows, np.empty(0, np.int64)
    elif loss_code == 2:
        target_rows = labels.astype(dtype).reshape(B, 1)
        ref_targets, kernel_labels = labels, np.empty(0, np.int64)
    else:
        target_rows = np.empty((0, K), dtype)
        ref_targets, kernel_labels = labels, labels
    losses, correct, p = np.empty(B, dtype), np.empty(B, np.int64), np.empty_like(z)
    # np.errstate would not reach compiled code: finiteness is asserted on the results below
    kernels.loss_forward(losses, correct, p, z, kernel_labels, target_rows, loss_code)
    expected_p = reference.output_forward(z, loss_code)
    tol = synth.tolerance(dtype)
    np.testing.assert_allclose(p, expected_p, **tol)
    np.testing.assert_allclose(losses, reference.loss_forward(z, expected_p, ref_targets, loss_code), **tol)
    if loss_code != 3:
        assert correct.sum() == reference.count_correct(expected_p, ref_targets, loss_code)
    dz = np.empty_like(z)
    kernels.loss_backward(dz, p, kernel_labels, target_rows, loss_code)
    np.testing.assert_allclose(dz, reference.loss_backward(expected_p, ref_targets, loss_code), **tol)
    assert np.isfinite(losses).all() and np.isfinite(dz).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch,n_in", SHAPES)
@pytest.mark.parametrize("bias", [True, False])
def test_linear_forward_and_backward(rng, batch, n_in, bias, dtype, synth):
    n_out = 6
    x = random(rng, (batch, n_in), dtype)
    x[0] = 0  # an all-zero row
    W = random(rng, (n_in, n_out), dtype)
    b = random(rng, n_out, dtype) if bias else np.empty(0, dtype)
    out = np.empty((batch, n_out), dtype)
    kernels.linear_forward(out, x, W, b, ACTIVATIONS["identity"])
    tol = synth.tolerance(dtype)
    np.testing.assert_allclose(out, x @ W + (b if bias else 0), **tol)
    dz = random(rng, (batch, n_out), dtype)
    dx, dW = np.empty_like(x), np.empty_like(W)
    db = np.empty(n_out if bias else 0, dtype)
    kernels.linear_backward(dx, dW, db, dz, x, W)
    np.testing.assert_allclose(dx, dz @ W.T, **tol)
    np.testing.assert_allclose(dW, x.T @ dz, **tol)
    if bias:
        np.testing.assert_allclose(db, dz.sum(axis=0), **tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
def test_the_dense_forward_in_blocks_of_rows_gives_each_row_the_bits_it_has_alone(rng, dtype, bias, synth):
    """linear_forward takes a vector's worth of rows at a time (16 float32, 8 float64) and eight
    units at once, then the rest one by one: 37 rows are blocks and a short last one, 21 units
    two groups of eight and five more; each row's outputs are the bits it gets alone."""
    x = random(rng, (37, 45), dtype)
    x[3] = 0
    W = random(rng, (45, 21), dtype)
    b = random(rng, 21, dtype) if bias else np.empty(0, dtype)
    out = np.full((37, 21), np.nan, dtype)
    kernels.linear_forward(out, x, W, b, ACTIVATIONS["tanh"])
    np.testing.assert_allclose(out, np.tanh(x @ W + (b if bias else 0)), **synth.tolerance(dtype))
    for rows in (slice(0, 1), slice(5, 6), slice(15, 17), slice(30, 37), slice(2, 37)):
        alone = np.full((rows.stop - rows.start, 21), np.nan, dtype)
        kernels.linear_forward(alone, x[rows], W, b, ACTIVATIONS["tanh"])
        np.testing.assert_array_equal(alone, out[rows], err_msg=str(rows))


@pytest.mark.parametrize("n_rows", [1, 9, 17])
def test_the_dense_forward_adds_the_inputs_in_their_order(n_rows):
    """Each of linear_forward's sums is the bias, then each input's product, in input order (row
    by row and in blocks of rows; predictions keep the bits they had): inputs 1e16, -1e16 and 1
    sum to exactly 1 in that order, to 0 in the reverse one (audit 65: a kernel summing in
    reverse passed every other test)."""
    x = np.zeros((n_rows, 20))
    x[:, :3] = [1e16, -1e16, 1.0]
    W = np.ones((20, 9))  # eight units at once and one alone
    out = np.full((n_rows, 9), np.nan)
    kernels.linear_forward(out, x, W, np.zeros(9), ACTIVATIONS["identity"])
    np.testing.assert_array_equal(out, 1.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pixels", ["uint8", "float"])
@pytest.mark.parametrize("bias", [True, False])
def test_sparse_rows_give_the_dense_product(rng, dtype, pixels, bias, synth):
    """The CSR forward and backward, with a bias and without one (b and db empty)."""
    X = rng.integers(0, 256, size=(10, 30)).astype(np.uint8)
    X[rng.random(X.shape) < 0.8] = 0
    X[4] = 0
    scale = reference.PIXEL_SCALE
    if pixels == "float":
        X = (X * rng.normal(size=X.shape)).astype(dtype)
        scale = 1.0
    indptr, indices, values = kernels.sparse_rows(X)
    assert indptr[-1] == np.count_nonzero(X) and indptr[5] == indptr[4]
    W = random(rng, (30, 8), dtype)
    b = random(rng, 8, dtype) if bias else np.empty(0, dtype)
    rows = np.array([4, 0, 9, 4], np.int64)
    out = np.full((4, 8), np.nan, dtype)
    kernels.sparse_linear_forward(out, rows, indptr, indices, values, scale, W, b, ACTIVATIONS["identity"])
    x = reference.as_input(X[rows], dtype)
    tol = synth.tolerance(dtype)
    np.testing.assert_allclose(out, x @ W + (b if bias else 0), **tol)
    # the rows as they are, each row's nonzeros gathered as it is read: the CSR rows' bits
    as_read = np.full((4, 8), np.nan, dtype)
    kernels.dense_rows_forward(as_read, X[rows], W, b, scale, ACTIVATIONS["identity"])
    np.testing.assert_array_equal(as_read, out)
    dz = random(rng, (4, 8), dtype)
    dW, db = np.full_like(W, np.nan), np.full(len(b), np.nan, dtype)
    kernels.sparse_linear_backward(dW, db, dz, rows, indptr, indices, values, scale)
    np.testing.assert_allclose(dW, x.T @ dz, **tol)
    if bias:
        np.testing.assert_allclose(db, dz.sum(axis=0), **tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("width", ["4 vectors", "4 vectors + 1", "5.5 vectors", "8 vectors - 1", "8 vectors"])
@pytest.mark.parametrize("bias", [True, False])
def test_the_register_block_sums_its_columns_and_writes_nothing_past_them(rng, width, bias, dtype, synth):
    """linear.sparse_forward_block for m of four to eight vectors, from column c = one vector in:
    z[c : c + m] = b + x @ W over the nonzero x, and no entry of z outside it written (its first
    four vectors are loaded and stored whole, the last four masked to m)."""
    from fastmlp.kernels.linear import sparse_forward_block

    L = vectors.VECTOR_BYTES // np.dtype(dtype).itemsize
    m = {"4 vectors": 4 * L, "4 vectors + 1": 4 * L + 1, "5.5 vectors": 5 * L + L // 2, "8 vectors - 1": 8 * L - 1,
         "8 vectors": 8 * L}[width]
    c = L
    n = c + 8 * L + L  # room for a whole block past c + m, and a vector after it
    X = rng.integers(0, 256, size=(2, 30)).astype(np.uint8)
    X[rng.random(X.shape) < 0.6] = 0
    indptr, indices, values = kernels.sparse_rows(X)
    W = random(rng, (30, n), dtype)
    b = random(rng, n, dtype) if bias else np.empty(0, dtype)
    scale = dtype(reference.PIXEL_SCALE)
    for i in range(2):
        x = reference.as_input(X[i : i + 1], dtype)[0]
        z = np.full(n, np.nan, dtype)
        sparse_forward_block(z, W, b, indices[indptr[i] : indptr[i + 1]], values[indptr[i] : indptr[i + 1]], scale,
                             c, m)
        expected = x @ W[:, c : c + m] + (b[c : c + m] if bias else 0)
        np.testing.assert_allclose(z[c : c + m], expected, **synth.tolerance(dtype))
        assert np.isnan(z[:c]).all() and np.isnan(z[c + m :]).all(), "wrote outside z[c : c + m]"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_hidden", [16, 64, 96, 100, 128, 192])
@pytest.mark.parametrize("bias", [True, False])
def test_per_sample_sparse_row_steps_at_every_register_block_width(rng, n_hidden, bias, dtype, synth):
    """linear.sparse_row_forward and sparse_row_update, the per-sample kernels' first layer: with
    widths of four vectors' multiples in registers (blocks of eight vectors and of four: 64, 96,
    128 and 192 units take one or both in float32 or float64), others in plain loops (16, 100)."""
    from fastmlp.kernels.linear import sparse_row_forward, sparse_row_update

    X = rng.integers(0, 256, size=(3, 40)).astype(np.uint8)
    X[rng.random(X.shape) < 0.7] = 0
    X[1] = 0  # no nonzero input: the bias alone
    indptr, indices, values = kernels.sparse_rows(X)
    W = random(rng, (40, n_hidden), dtype)
    b = random(rng, n_hidden, dtype) if bias else np.empty(0, dtype)
    scale = dtype(reference.PIXEL_SCALE)
    lr = dtype(0.05)
    tol = synth.tolerance(dtype)
    for i in range(3):
        nz_indices, nz_values = indices[indptr[i] : indptr[i + 1]], values[indptr[i] : indptr[i + 1]]
        x = reference.as_input(X[i : i + 1], dtype)[0]
        z = np.full(n_hidden, np.nan, dtype)
        sparse_row_forward(z, W, b, nz_indices, nz_values, scale)
        np.testing.assert_allclose(z, x @ W + (b if bias else 0), **tol)
        dz = random(rng, n_hidden, dtype)
        expected_W = W - lr * np.outer(x, dz).astype(dtype)
        expected_b = b - lr * dz if bias else b
        sparse_row_update(W, b, dz, nz_indices, nz_values, scale, lr)
        np.testing.assert_allclose(W, expected_W, **tol)
        np.testing.assert_array_equal(W[X[i] == 0], expected_W[X[i] == 0])  # zero inputs' rows untouched
        np.testing.assert_allclose(b, expected_b, **tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_hidden, n_rows", [(240, 16), (257, 16), (512, 40), (500, 140), (600, 130)])
def test_the_weight_gradient_ordered_by_input_adds_what_row_by_row_adds(rng, n_hidden, n_rows, dtype):
    """The mini-batch first layer's weight gradient of rows of CSC_ROW_BYTES or more, for
    sub-batches of CSC_ROWS rows on, goes input by input (minibatch._part_gradient_by_input):
    the same bits as the rows added one at a time (each entry sums over the rows in the same
    order), and x^T dz. Widths with whole blocks of four vectors and then whole vectors and a
    masked one (257, 500, 600) or neither (240, 512); 140 rows of 500 units and 130 of 600 are
    several of its groups of rows (CSC_BYTES). Inputs are lit by overlapping sets of rows (so
    neighbours go in pairs over their merged rows, _csc_pair), by none (input 5), or alone
    between unlit ones (input 9: _csc_one)."""
    from fastmlp.kernels import minibatch

    assert n_rows >= minibatch.CSC_ROWS and n_hidden * np.dtype(dtype).itemsize >= minibatch.CSC_ROW_BYTES
    n_in = 30
    X = rng.integers(0, 256, size=(n_rows, n_in)).astype(np.uint8)
    X[rng.random(X.shape) < 0.6] = 0
    X[3] = 0  # no nonzero input
    X[:, [5, 8, 10]] = 0  # inputs lit by no row, and input 9 between two of them
    part_ptr, indices, values = kernels.sparse_rows(X, parts=kernels.PARTS)
    spans = np.stack([part_ptr[:-1].reshape(n_rows, kernels.PARTS), part_ptr[1:].reshape(n_rows, kernels.PARTS)],
                     axis=2)
    deltas = random(rng, (n_rows, n_hidden + 7), dtype)  # the kernel's rows hold later layers' dz after H
    scale = dtype(reference.PIXEL_SCALE)
    start = random(rng, (n_in, n_hidden), dtype)
    layout = (np.array([n_in, n_hidden], np.int64), np.zeros(1, np.int64), np.full(1, -1, np.int64))
    ordered, by_rows = start.ravel().copy(), start.copy()
    no_dropout = (np.int64(0), np.int64(0), np.uint64(0), dtype(1))
    for part in range(kernels.PARTS):
        minibatch._part_gradient_by_input(ordered, deltas, spans, *layout, np.int64(part), indices, values, scale,
                                          start.ravel(), np.zeros(8, dtype), False)
        for r in range(n_rows):
            minibatch._part_sparse_gradient(by_rows, n_hidden, deltas[r : r + 1], spans[r : r + 1], part, indices,
                                            values, scale, *no_dropout)
    ordered = ordered.reshape(n_in, n_hidden)
    np.testing.assert_array_equal(ordered, by_rows)
    x = reference.as_input(X, np.float64)
    expected = start + x.T @ deltas[:, :n_hidden].astype(np.float64)
    # a sum of n_rows terms rounds by up to about n_rows ulps of its largest entries
    np.testing.assert_allclose(ordered, expected, rtol=0, atol=n_rows * np.finfo(dtype).eps * np.abs(expected).max())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_hidden, n_rows", [(257, 16), (500, 40)])
def test_the_first_layers_step_taken_with_its_gradient_is_the_step_after_it(rng, n_hidden, n_rows, dtype):
    """The chunk's FUSED_STEP (plain SGD without decay, the batch summed input by input in one
    group): each row of W lit by an input steps as soon as its gradient row is summed, and
    _part_update leaves the first layer alone; the same bits as the gradient summed first and
    _part_update's step over every row after, dW back to 0 either way. A weight of -0.0 in an
    unlit row stays -0.0 (the step over every row makes it 0.0: the same number)."""
    from fastmlp import optim
    from fastmlp.kernels import minibatch

    n_in = 30
    X = rng.integers(0, 256, size=(n_rows, n_in)).astype(np.uint8)
    X[rng.random(X.shape) < 0.6] = 0
    X[:, [5, 8, 10]] = 0  # inputs lit by no row, and input 9 between two of them
    part_ptr, indices, values = kernels.sparse_rows(X, parts=kernels.PARTS)
    spans = np.stack([part_ptr[:-1].reshape(n_rows, kernels.PARTS), part_ptr[1:].reshape(n_rows, kernels.PARTS)],
                     axis=2)
    deltas = random(rng, (n_rows, n_hidden + 7), dtype)
    scale = dtype(reference.PIXEL_SCALE)
    layout = (np.array([n_in, n_hidden], np.int64), np.zeros(1, np.int64), np.full(1, -1, np.int64))
    sc = np.empty(minibatch.N_STEP_SCALARS, dtype)
    hyper = optim.Optimizer().hyper(0.05)
    minibatch.step_scalars(sc, hyper, 1)
    kind = minibatch.step_kind(hyper)
    start = random(rng, n_in * n_hidden, dtype)
    start.reshape(n_in, n_hidden)[5, :3] = -0.0
    results = []
    for stepped in (True, False):
        params, grad = start.copy(), np.zeros_like(start)
        empty = np.zeros((0, params.size), dtype)
        marks = np.zeros(n_in, np.int64)
        for part in range(kernels.PARTS):
            minibatch._part_gradient_by_input(grad, deltas, spans, *layout, np.int64(part), indices, values, scale,
                                              params, sc, stepped)
            minibatch._part_update(params, grad, params.copy(), empty, empty, *layout, kind, sc, np.int64(part),
                                   spans, indices, marks, np.int64(1), stepped)
        assert not grad.any()
        results.append(params)
    fused, after = results
    np.testing.assert_array_equal(fused, after)  # (-0.0 == 0.0)
    assert np.signbit(fused.reshape(n_in, n_hidden)[5, :3]).all()
    assert not np.array_equal(fused, start)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fresh", [True, False])
def test_the_bias_gradient_sums_each_unit_down_its_column_in_row_order(rng, dtype, fresh):
    """minibatch._bias_part_gradient walks the rows in order, all the part's units of a row at
    a time: each unit's sum takes the same steps as a loop down its column (the same bits),
    from 0 for a batch's first rows (``fresh``) or onto what db holds; units outside the part
    and columns outside the layer are left alone."""
    from fastmlp.kernels import minibatch

    n_rows, column, first, last = 37, 5, 3, 70
    deltas = random(rng, (n_rows, 90), dtype) * dtype(1e3) ** rng.integers(-2, 3, size=(n_rows, 90))
    start = random(rng, 80, dtype)
    db = start.copy()
    minibatch._bias_part_gradient(db, deltas, np.int64(column), np.int64(first), np.int64(last), fresh)
    expected = start.copy()
    for k in range(first, last):
        total = dtype(0) if fresh else start[k]
        for r in range(n_rows):
            total = dtype(total + deltas[r, column + k])
        expected[k] = total
    np.testing.assert_array_equal(db, expected)
    np.testing.assert_array_equal(db[:first], start[:first])
    np.testing.assert_array_equal(db[last:], start[last:])


@pytest.mark.parametrize("n_in", [30, 7])
@pytest.mark.parametrize("threads", [1, 2])
def test_rows_split_at_parts_point_at_each_parts_nonzeros(rng, monkeypatch, n_in, threads):
    """The mini-batch kernel reads part k of row i (the nonzeros in the columns of
    minibatch._part_range(n_in, k)) at part_ptr[i * PARTS + k] .. part_ptr[i * PARTS + k + 1]: an
    empty row, a row whose nonzeros are all in the last part and a full row among random ones; 7
    columns make some parts one column wide; converted on one thread and in blocks of rows."""
    from fastmlp.kernels import linear, minibatch

    monkeypatch.setattr(linear, "PARALLEL_CSR_ENTRIES", 1)
    X = rng.integers(0, 256, size=(12, n_in)).astype(np.uint8)
    X[rng.random(X.shape) < 0.6] = 0
    X[3] = 0
    X[5] = 0
    X[5, -1] = 9
    X[7] = 200
    indptr, indices, values = kernels.sparse_rows(X)
    part_ptr, split_indices, split_values = kernels.sparse_rows(X, threads, parts=kernels.PARTS)
    parts = kernels.PARTS
    assert part_ptr.dtype == np.int64 and part_ptr.shape == (len(X) * parts + 1,)
    np.testing.assert_array_equal(part_ptr[::parts], indptr)
    np.testing.assert_array_equal(split_indices, indices)
    np.testing.assert_array_equal(split_values, values)
    for i in range(len(X)):
        for part in range(parts):
            first, last = minibatch._part_range(n_in, np.int64(part))
            span = slice(part_ptr[i * parts + part], part_ptr[i * parts + part + 1])
            np.testing.assert_array_equal(indices[span], np.flatnonzero(X[i, first:last]) + first)
            np.testing.assert_array_equal(values[span], X[i, first:last][X[i, first:last] != 0])


@pytest.mark.parametrize("threads", [2, 3])
def test_sparse_rows_in_blocks_of_rows_on_threads_are_the_same(rng, monkeypatch, threads):
    # blocks of 3, 4 and 4 rows (or 5 and 6), one of them all zeros
    from fastmlp.kernels import linear

    monkeypatch.setattr(linear, "PARALLEL_CSR_ENTRIES", 1)
    X = rng.integers(0, 256, size=(11, 30)).astype(np.uint8)
    X[rng.random(X.shape) < 0.8] = 0
    X[4:8] = 0
    for x in (X, (X * rng.normal(size=X.shape)).astype(np.float32)):
        one = kernels.sparse_rows(x)
        rows = np.repeat(np.arange(len(x)), np.diff(one[0]))
        assert np.array_equal(x[rows, one[1]], one[2]) and np.count_nonzero(x) == len(one[2])
        for got, want in zip(kernels.sparse_rows(x, threads), one):
            assert got.dtype == want.dtype and np.array_equal(got, want)


@pytest.mark.parametrize("compiled", [True, False])
def test_sparse_rows_refuses_parts_below_one_and_x_not_2d(compiled):
    # parts=0 wrote past the end of indptr: the heap was corrupted and the process aborted
    x = np.ones((3, 4), np.uint8)
    for bad in ({"x": x, "parts": 0}, {"x": x, "parts": -2}, {"x": x[0], "parts": 1}):
        with pytest.raises(ValueError, match="sparse_rows needs a 2-D x and parts >= 1"):
            kernels.sparse_rows(bad["x"], parts=bad["parts"], compiled=compiled)


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("dtype", [">f4", ">f8"])
def test_sparse_rows_of_big_endian_x_are_those_of_native_x(rng, compiled, dtype):
    # the compiled conversion raised a Numba TypingError ("Unsupported array dtype: >f8"); NumPy's
    # returned big-endian values (audit 23)
    x = rng.normal(size=(5, 9)) * (rng.random((5, 9)) < 0.5)
    native = kernels.sparse_rows(x.astype(dtype[1:]), parts=2, compiled=compiled)
    for got, want in zip(kernels.sparse_rows(x.astype(dtype), parts=2, compiled=compiled), native):
        assert got.dtype == want.dtype and np.array_equal(got, want)


@pytest.mark.parametrize("parts", [1, 2, 3])
def test_sparse_rows_by_numpy_are_the_compiled_ones(rng, monkeypatch, parts):
    """``sparse_rows(..., compiled=False)`` (NumPy, what a cold start converts with) gives the
    compiled conversion's arrays, dtypes included: for uint8, float32 and float64 inputs, blocks
    of rows (NUMPY_CSR_ROWS 4: rows 0-3, 4-7, 8-10; one block all zeros), NaN (nonzero) and -0.0
    (zero), no rows and no columns."""
    from fastmlp.kernels import linear

    monkeypatch.setattr(linear, "NUMPY_CSR_ROWS", 4)
    X = rng.integers(0, 256, size=(11, 31)).astype(np.uint8)
    X[rng.random(X.shape) < 0.7] = 0
    X[4:8] = 0
    X[9] = 255
    floats = (X * rng.normal(size=X.shape)).astype(np.float64)
    floats[0, :3] = [np.nan, -0.0, np.inf]
    for x in (X, floats.astype(np.float32), floats, X[:0], X[:, :0]):
        want = linear.sparse_rows(x, parts=parts)
        got = linear.sparse_rows(x, parts=parts, compiled=False)
        for g, w in zip(got, want):
            assert g.dtype == w.dtype and g.shape == w.shape
            np.testing.assert_array_equal(g, w)


def test_a_cold_start_converts_by_numpy_while_the_second_process_compiles_the_conversion(rng, monkeypatch):
    """NumbaBackend.prepare converts by NumPy only while its second process (a cold start) runs,
    which will compile the conversion, and the conversion is neither compiled here nor cached for
    the input's dtype; otherwise (also within ``compiling_ahead``: fastmlp warmup), or when told
    (``compiled``), by the compiled kernels; both give the same arrays."""
    from fastmlp import _numba_backend
    from fastmlp.backends import make_backend
    from fastmlp.network import Architecture

    calls = []
    original = kernels.sparse_rows

    def spy(x, threads=1, parts=1, compiled=True):
        calls.append(compiled)
        return original(x, threads, parts, compiled)

    monkeypatch.setattr(kernels, "sparse_rows", spy)
    backend = make_backend("numba", Architecture((6, 4, 3), "sigmoid", "cross_entropy"), 1)
    X = rng.integers(0, 3, size=(5, 6)).astype(np.uint8)
    ready = {"yes": False}
    monkeypatch.setattr(_numba_backend, "_csr_ready", lambda dtype: ready["yes"])
    class Second:  # the second process, running until it has ended
        ended = None

        def poll(self):
            return self.ended

    alone = backend.prepare(X)  # no second process: compiled, as always
    backend._background = Second()  # a second process, running, will compile the conversion
    cold = backend.prepare(X)
    told = backend.prepare(X, compiled=True)
    ready["yes"] = True
    stored = backend.prepare(X)
    ready["yes"] = False
    with _numba_backend.compiling_ahead():  # fastmlp warmup: compiled, to leave them in the cache
        ahead = backend.prepare(X)
    backend._background.ended = 1  # it ended without storing them: compiled here
    failed = backend.prepare(X)
    assert calls == [True, False, True, True, True, True]
    for data in (cold, told, stored, ahead, failed):
        for field in ("indptr", "indices", "values", "part_ptr"):
            np.testing.assert_array_equal(getattr(data, field), getattr(alone, field))


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="compiled signatures (nothing compiles under NUMBA_DISABLE_JIT=1)")
@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_sparse_rows_compile_once_for_writeable_and_read_only_inputs(rng, dtype):
    # a read-only X (a memory map, joblib's, pandas') compiled both conversion kernels a second
    # time, 0.66 s, and fastmlp warmup had not stored that copy
    from fastmlp.kernels import linear

    X = rng.integers(0, 3, size=(20, 9)).astype(dtype)
    written = kernels.sparse_rows(X, parts=2)
    compiled = {kernel: set(kernel.signatures) for kernel in (linear._count_row_nonzeros, linear._gather_row_nonzeros)}
    read_only = X.copy()
    read_only.flags.writeable = False
    for got, want in zip(kernels.sparse_rows(read_only, parts=2), written):
        np.testing.assert_array_equal(got, want)
    assert {kernel: set(kernel.signatures) for kernel in compiled} == compiled
    assert X.flags.writeable  # the caller's array as it was


def test_sparse_rows_on_threads_raise_a_blocks_error(monkeypatch):
    from fastmlp.kernels import linear

    monkeypatch.setattr(linear, "PARALLEL_CSR_ENTRIES", 1)
    calls = []

    def failing(counts, x, parts):
        calls.append(len(x))
        if len(calls) == 1:
            raise RuntimeError("block failed")
        counts[:] = np.count_nonzero(x, axis=1)

    monkeypatch.setattr(linear, "_count_row_nonzeros", failing)
    with pytest.raises(RuntimeError, match="block failed"):
        linear.sparse_rows(np.ones((6, 4), np.uint8), 2)
    assert sorted(calls) == [3, 3]


# ---------------------------------------------------------------------------------------------
# 64-byte vectors (kernels/vectors.py): compiled loads, stores, splats and multiply-adds against
# their plain-Python versions (which NUMBA_DISABLE_JIT runs), for every lane count of a masked
# move, at offsets that are not multiples of the vector size.


def _vector_axpy(out, a, i, m, x):
    """out[i : i + m] = 1 + x * a[i : i + m] through masked moves; out[:lanes] = 2 * a[:lanes]
    through whole ones."""
    acc = vfma(vsplat(a, x), vload_part(a, i, m), vsplat(a, 1.0))
    vstore_part(out, i, acc, m)
    if lanes(a) <= a.shape[0]:
        vstore(out, 0, vfma(vsplat(a, 2.0), vload(a, 0), vsplat(a, 0.0)))


def _python_vector_axpy(out, a, i, m, x):
    """_vector_axpy through the plain-Python versions."""
    v = vectors
    acc = v.python_vfma(v.python_vsplat(a, x), v.python_vload_part(a, i, m), v.python_vsplat(a, 1.0))
    v.python_vstore_part(out, i, acc, m)
    if v.python_lanes(a) <= a.shape[0]:
        v.python_vstore(out, 0, v.python_vfma(v.python_vsplat(a, 2.0), v.python_vload(a, 0), v.python_vsplat(a, 0.0)))


vector_axpy = njit(**{**KERNEL_OPTIONS, "cache": False})(_vector_axpy)


@pytest.mark.parametrize("dtype", DTYPES)
def test_vector_moves_touch_exactly_their_lanes(dtype):
    n_lanes = vectors.VECTOR_BYTES // np.dtype(dtype).itemsize
    a = np.arange(3 * n_lanes, dtype=dtype) + 0.5
    for i in (0, 1, n_lanes - 1, n_lanes + 3):
        for m in range(-1, n_lanes + 2):
            count = max(0, min(m, n_lanes))
            out = np.full_like(a, -7.0)
            vector_axpy(out, a, i, m, 3.0)
            want = np.full_like(a, -7.0)
            want[i : i + count] = 1 + 3.0 * a[i : i + count]
            want[:n_lanes] = 2 * a[:n_lanes]
            np.testing.assert_array_equal(out, want, err_msg=f"offset {i}, {m} lanes")
            plain = np.full_like(a, -7.0)
            _python_vector_axpy(plain, a, i, m, 3.0)
            np.testing.assert_array_equal(plain, want, err_msg=f"plain Python, offset {i}, {m} lanes")


def _lane_sums(a, i, m):
    """(vsum of a[i : i + m] as a 64-byte vector, and as a 32-byte one) and hload's masked and
    whole loads through a multiply-add."""
    whole = vsum(vload_part(a, i, m))
    half = vsum(vfma(hload_part(a, i, m), hload(a, 0), hzeros(a)) if m > 0 else hzeros(a))
    return whole, half


lane_sums = njit(**{**KERNEL_OPTIONS, "cache": False})(_lane_sums)


def _tree(values):
    """vsum's order written out: the upper half added to the lower half until one is left."""
    values = list(values)
    while len(values) > 1:
        half = len(values) // 2
        values = [values[k] + values[k + half] for k in range(half)]
    return values[0]


@pytest.mark.parametrize("dtype", DTYPES)
def test_vsum_adds_the_lanes_in_one_order(dtype):
    # values whose sum depends on the order: 1e16 and -1e16 cancel only when added to each other
    # before the small ones are lost in them (float32: 1e8)
    big = dtype(1e8 if dtype == np.float32 else 1e16)
    n_lanes = vectors.VECTOR_BYTES // np.dtype(dtype).itemsize
    rng = np.random.default_rng(0)
    for trial in range(20):
        a = rng.choice(np.array([big, -big, 1, -1, 0.5, 3], dtype), 2 * n_lanes).astype(dtype)
        for m in (n_lanes, n_lanes // 2, 3):
            whole, half = lane_sums(a, 0, m)
            lanes_of = lambda n: np.where(np.arange(n) < m, np.resize(a, n), 0).astype(dtype)  # noqa: E731
            assert whole == _tree(lanes_of(n_lanes)) == vectors.python_vsum(lanes_of(n_lanes)), (trial, m)
            products = (lanes_of(n_lanes // 2) * a[: n_lanes // 2]).astype(dtype)
            assert half == _tree(products) == vectors.python_vsum(products), (trial, m)
            v = vectors  # the plain-Python versions (NUMBA_DISABLE_JIT's)
            plain_half = v.python_vsum(v.python_vfma(v.python_hload_part(a, 0, m), v.python_hload(a, 0), v.python_hzeros(a)))
            assert (whole, half) == (v.python_vsum(v.python_vload_part(a, 0, m)), plain_half)
    a = np.zeros(n_lanes, dtype)
    a[[0, n_lanes // 2, 1]] = big, -big, 1  # (big + -big) + 1 in the tree; left to right, 1 is lost
    assert lane_sums(a, 0, n_lanes)[0] == 1


@njit(**KERNEL_OPTIONS)
def _folded_sums(T, out):
    """out[:8] = the eight rows of T (one vector each) summed by folds, out[8:16] by vsum."""
    t0, t1, t2, t3 = vload(T[0], 0), vload(T[1], 0), vload(T[2], 0), vload(T[3], 0)
    t4, t5, t6, t7 = vload(T[4], 0), vload(T[5], 0), vload(T[6], 0), vload(T[7], 0)
    c = vfold(vfold(vfold(t0, t1, 1), vfold(t2, t3, 1), 2), vfold(vfold(t4, t5, 1), vfold(t6, t7, 1), 2), 3)
    vstore_part(out, 0, vfold(c, c, 4), 8)
    for k in range(8):
        out[8 + k] = vsum(vload(T[k], 0))


@pytest.mark.parametrize("dtype", DTYPES)
def test_vfold_sums_many_vectors_as_vsum_sums_each(dtype):
    big = dtype(1e8 if dtype == np.float32 else 1e16)
    n_lanes = vectors.VECTOR_BYTES // np.dtype(dtype).itemsize
    rng = np.random.default_rng(2)
    for trial in range(20):
        T = rng.choice(np.array([big, -big, 1, -1, 0.5, 3], dtype), (8, n_lanes)).astype(dtype)
        out = np.zeros(16, dtype)
        _folded_sums(T, out)
        expected = [vectors.python_vsum(row) for row in T]
        assert list(out[:8]) == list(out[8:]) == expected, trial
        # the plain-Python fold (NUMBA_DISABLE_JIT's) alike
        fold = vectors.python_vfold
        c = fold(fold(fold(T[0], T[1], 1), fold(T[2], T[3], 1), 2), fold(fold(T[4], T[5], 1), fold(T[6], T[7], 1), 2), 3)
        assert list(fold(c, c, 4)[:8]) == expected, trial


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_per_sample_dense_forward_gives_each_unit_its_sum_alone(dtype):
    """dense_row_forward's passes (eight units with AVX-512, four, two: their sums folded
    together; one unit: vsum) group the same sums: each unit's output is the bits it gets as a
    layer of its own, with and without a bias, for widths with and without a masked last
    vector, and near the float sum."""
    from fastmlp.kernels.linear import dense_row_forward

    rng = np.random.default_rng(3)
    n_lanes = vectors.VECTOR_BYTES // np.dtype(dtype).itemsize
    for n_in in (1, 7, n_lanes, n_lanes + 3, 64, 100):
        for n_out in (1, 2, 3, 4, 5, 8, 9, 10, 13, 17):
            Wt = rng.standard_normal((n_out, n_in)).astype(dtype)
            a = rng.standard_normal(n_in).astype(dtype)
            for b in (rng.standard_normal(n_out).astype(dtype), np.zeros(0, dtype)):
                z = np.full(n_out, np.nan, dtype)
                dense_row_forward(z, Wt, b, a)
                alone = np.empty(n_out, dtype)
                for k in range(n_out):
                    one = np.empty(1, dtype)
                    dense_row_forward(one, Wt[k : k + 1].copy(), b[k : k + 1].copy(), a)
                    alone[k] = one[0]
                np.testing.assert_array_equal(z, alone, err_msg=f"{n_in} inputs, {n_out} units, bias {b.size > 0}")
                exact = Wt.astype(np.float64) @ a + (b if b.size else 0)
                np.testing.assert_allclose(z, exact, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5)


def _dense_forward(units, rows, n_in, Wt, b):
    from fastmlp.kernels import minibatch

    minibatch._dense_block_forward(units, rows, 0, n_in, n_in + Wt.shape[0], Wt, b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_mini_batch_dense_forward_gives_a_row_the_same_sums_in_any_block(dtype):
    """_dense_block_forward's blocks (four rows; two or, with AVX-512, four units a pass from
    PAIRED_INPUTS inputs on; one unit; rows one by one in a short block) group the same sums:
    each row's outputs are the bits it gets alone, for widths with and without a masked last
    vector, and near the float sum of its products."""
    from fastmlp.kernels.minibatch import PAIRED_INPUTS

    rng = np.random.default_rng(1)
    for n_in in (3, 8, 37, PAIRED_INPUTS, PAIRED_INPUTS + 44):
        for n_out in (1, 2, 3, 5, 9):
            units = rng.standard_normal((4, n_in + n_out)).astype(dtype)
            Wt = rng.standard_normal((n_out, n_in)).astype(dtype)
            b = rng.standard_normal(n_out).astype(dtype)
            block = units.copy()
            _dense_forward(block, (0, 4), n_in, Wt, b)
            alone = units.copy()
            for r in range(4):
                _dense_forward(alone, (r, r + 1), n_in, Wt, b)
            np.testing.assert_array_equal(block, alone, err_msg=f"{n_in} inputs, {n_out} units")
            three = units.copy()
            _dense_forward(three, (1, 4), n_in, Wt, b)
            np.testing.assert_array_equal(three[1:], block[1:], err_msg=f"{n_in} inputs, {n_out} units, 3 rows")
            want = units[:, :n_in].astype(np.float64) @ Wt.T.astype(np.float64) + b
            np.testing.assert_allclose(block[:, n_in:], want, rtol=1e-4 if dtype == np.float32 else 1e-12, atol=1e-4)


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="a typing error: only when compiling")
def test_vector_moves_refuse_strided_arrays():
    a = np.zeros(64, np.float32)
    with pytest.raises(numba.core.errors.TypingError, match="C-contiguous 1-d float array"):
        vector_axpy(a[::2], a[::2], 0, 4, 1.0)


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="views without an owner exist only in compiled code")
def test_a_borrowed_array_aliases_the_data_and_its_views_hold_no_reference():
    """linear.borrowed: views made from it read and write the array's own memory, and none of
    them holds a reference to it (no meminfo: nothing to count, from any thread). Returned to
    Python, such a view has no base, where a view of the array itself keeps its owner alive."""
    from fastmlp.kernels.linear import borrowed

    @njit
    def view(a):
        return a[1:]

    @njit
    def borrowed_view(a):
        return borrowed(a)[1:]

    @njit
    def write_through(a):
        b = borrowed(a)
        b[1:][0] = 7.0
        return b[2:].sum()

    a = np.arange(5.0)
    assert view(a).base is not None
    unowned = borrowed_view(a)
    assert unowned.base is None and not unowned.flags.owndata
    np.testing.assert_array_equal(unowned, [1.0, 2.0, 3.0, 4.0])
    assert write_through(a) == 9.0
    np.testing.assert_array_equal(a, [0.0, 7.0, 2.0, 3.0, 4.0])
    assert borrowed(a) is a  # the interpreter's (and the interpreted kernels') version


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_minibatch_scratch_gives_padded_gradient_rows_between_four_and_eight_vectors(dtype):
    """The mini-batch scratch ``grad`` starts on a cache line; for first layers of 4L < H < 8L
    units (L lanes per vector) it holds, after the parameters, dW with rows of 8L on a vector
    boundary (minibatch._padded_gradient); for other widths that view is empty."""
    from fastmlp.kernels import minibatch
    from fastmlp.network import Architecture, init_params

    n_lanes = vectors.VECTOR_BYTES // np.dtype(dtype).itemsize
    for width in (4 * n_lanes, 4 * n_lanes + 1, 6 * n_lanes + 3, 8 * n_lanes - 1, 8 * n_lanes, 8 * n_lanes + 1):
        arch = Architecture((30, width, 5), "relu", "cross_entropy", dtype=dtype)
        params = init_params(arch, "he", seed=0)
        grad = kernels.minibatch_scratch(params, np.array(arch.layers, np.int64), 4)[0]
        assert grad.ctypes.data % 64 == 0
        padded = minibatch._padded_gradient(grad, params, 30)
        assert padded.shape == ((30 if 4 * n_lanes < width < 8 * n_lanes else 0), 8 * n_lanes), width
        if padded.size:
            offset = (padded.ctypes.data - grad.ctypes.data) // grad.itemsize
            assert offset >= params.size and padded.ctypes.data % 64 == 0, width


def _offsets(arrays):
    return [array.ctypes.data % vectors.VECTOR_BYTES for array in arrays]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_parameters_slots_and_scratch_start_on_a_vector_boundary(dtype, tmp_path):
    """The kernels load the weights' rows as 64-byte vectors, and NumPy's arrays start on any
    multiple of 16: per-sample SGD trained at 0.79x with its parameters 16 bytes off (784-128-10,
    one thread; BENCHMARKS.md, session 53). Parameters as init_params and a checkpoint make them,
    the optimizer's slots and every array of the mini-batch scratch start on a 64-byte boundary
    (each made 20 times: an allocator's luck gives about one in four)."""
    import fastmlp
    from fastmlp import optim
    from fastmlp.network import Architecture, init_params

    for layers, init in [((30, 17, 5), "he"), ((784, 128, 10), "xavier"), ((3, 2, 2), "zeros")]:
        arch = Architecture(layers, "relu", "cross_entropy", dtype=dtype)
        made = [init_params(arch, init, seed, symmetry_warning=False) for seed in range(20)]
        assert _offsets(made) == [0] * 20, layers
        assert all(params.dtype == dtype and params.shape == (arch.layout().n_params,) for params in made)
        np.testing.assert_array_equal(made[3], init_params(arch, init, 3, symmetry_warning=False))
        momentum, adam = optim.Optimizer(momentum=0.9), optim.Optimizer(optimizer="adam")
        assert _offsets(optim.State.fresh(momentum, made[0], 0).slots for _ in range(20)) == [0] * 20
        assert _offsets(optim.State.fresh(adam, made[0], 0).slots for _ in range(20)) == [0] * 20
        sizes = np.array(layers, np.int64)
        for batch in (1, 8, 64):
            scratch = kernels.minibatch_scratch(made[0], sizes, batch, 2, True)
            assert _offsets(scratch) == [0] * len(scratch)
            assert all(not array.any() for array in scratch)
            # every row of units, raw and deltas too (rows of whole vectors: 784-800-10 at batch
            # 1024 1.12-1.24x, 784-500-150-10 1.05-1.09x on an Intel Xeon, session 55)
            n_units = int(sizes[1:].sum())
            for array, least in zip(scratch[5:8], (n_units + int(sizes[-1]), n_units, n_units)):
                assert array.shape == (batch, array.shape[1]) and least <= array.shape[1] < least + 64, layers
                assert _offsets(array[r] for r in range(batch)) == [0] * batch, layers
            partials = scratch[3]  # [PARTS, rows, >= H]: the first layer's partial sums, row by row
            assert sizes[1] <= partials.shape[2] < sizes[1] + 64, layers
            assert _offsets(row for part in partials for row in part) == [0] * partials[:, :, 0].size, layers

    model = fastmlp.MLP([12, 8, 3], dtype=dtype, seed=0)
    model.fit(np.random.default_rng(0).random((40, 12)).astype(dtype), np.arange(40) % 3, momentum=0.9, progress=False)
    model.save(tmp_path / "model.npz")
    models = [fastmlp.MLP.load(tmp_path / "model.npz") for _ in range(20)]
    assert _offsets(loaded.optimizer_state_.slots for loaded in models) == [0] * 20
    loaded = [loaded.params_ for loaded in models]
    assert _offsets(loaded) == [0] * 20
    np.testing.assert_array_equal(loaded[0], model.params_)
    # a pickle or a deep copy (joblib, scikit-learn's cloning of fitted models, a saved estimator)
    copies = [pickle.loads(pickle.dumps(model)).params_ for _ in range(10)]
    copies += [copy.deepcopy(model).params_ for _ in range(10)]
    assert _offsets(copies) == [0] * 20
    np.testing.assert_array_equal(copies[-1], model.params_)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vector_empty_starts_on_a_vector_boundary(dtype):
    """The per-sample kernels' own copies of the layers (kernels.linear.vector_empty): Numba's
    arrays start on 32-byte boundaries, where half of a row's 64-byte vectors cross a cache line."""
    from fastmlp.kernels.linear import vector_empty

    like = np.zeros(1, dtype)
    for make in (vector_empty, getattr(vector_empty, "py_func", vector_empty)):
        assert make(0, like).shape == (0,)
        for n in (1, 15, 1000, 100_003):
            made = [make(n, like) for _ in range(20)]
            assert _offsets(made) == [0] * 20, n
            assert all(array.shape == (n,) and array.dtype == dtype and array.flags.c_contiguous for array in made)
            made[0][:] = 7  # writeable, all of it
            assert (made[0] == 7).all()


@pytest.mark.parametrize("batch_size", [1, 4])
def test_parameters_off_a_vector_boundary_train_on_an_aligned_copy_written_back(batch_size, monkeypatch):
    """Parameters the model did not allocate (a user's array) train as fast: in a call of
    ALIGNED_COPY_SAMPLES or more the backend hands the kernel an aligned copy and writes it back,
    to the same bits, also when the kernel stops with an exception (what it trained stays
    trained); a shorter call trains them where they are (the copy would cost more)."""
    from fastmlp import network
    from fastmlp.backends import make_backend
    from fastmlp.network import Architecture, init_params

    arch = Architecture((20, 16, 3), "sigmoid", "cross_entropy", dtype=np.float32)
    start = init_params(arch, "xavier", seed=1)
    rng = np.random.default_rng(0)
    X = (rng.random((64, 20)) * 255).astype(np.uint8)
    y = rng.integers(0, 3, 64)
    order = rng.permutation(64).astype(np.int64)

    def train(params):
        backend = make_backend("numba", arch, 1)
        backend.train_chunk(params, backend.prepare(X), y, order, 0.1, batch_size)
        return params

    expected = train(start.copy())
    buffer = np.empty(start.nbytes + 64, np.uint8)
    first = -buffer.ctypes.data % 64 + 16
    off = buffer[first : first + start.nbytes].view(np.float32)
    off[:] = start
    assert off.ctypes.data % 64 == 16
    name = "sgd_persample_chunk" if batch_size == 1 else "minibatch_sgd_chunk"
    real = getattr(kernels, name)
    seen = []

    def kernel(params, *args):
        seen.append(params.ctypes.data % 64)
        return real(params, *args)

    monkeypatch.setattr(kernels, name, kernel)
    assert network.ALIGNED_COPY_SAMPLES > 64
    assert train(off) is off  # 64 samples: in place
    assert seen and set(seen) == {16}
    np.testing.assert_array_equal(off, expected)
    off[:] = start
    seen.clear()
    monkeypatch.setattr(network, "ALIGNED_COPY_SAMPLES", 64)
    assert train(off) is off
    assert seen and set(seen) == {0}
    np.testing.assert_array_equal(off, expected)

    def failing(params, *args):
        params[:5] = -1.0
        raise RuntimeError("stopped")

    monkeypatch.setattr(kernels, name, failing)
    off[:] = start
    with pytest.raises(RuntimeError, match="stopped"):
        train(off)
    np.testing.assert_array_equal(off[:5], -1.0)
    np.testing.assert_array_equal(off[5:], start[5:])

    # read-only parameters are refused before anything trains (an aligned copy would have
    # trained, then failed to write back: audit 57)
    monkeypatch.setattr(kernels, name, kernel)
    seen.clear()
    off[:] = start
    off.flags.writeable = False
    with pytest.raises(ValueError, match="params is read-only"):
        train(off)
    assert seen == []


def test_a_fit_and_its_warm_up_train_aligned_parameters_and_a_copy_of_a_model_too(monkeypatch):
    """Every training call of a fit (its two-sample warm-up included, whose scratch was a
    NumPy copy) and of partial_fit on a deep copy of a fitted model gets parameters on a 64-byte
    boundary: none pays for the backend's copy and write-back."""
    import fastmlp
    from fastmlp._numba_backend import NumbaBackend

    seen = []
    real = NumbaBackend.train_chunk

    def train_chunk(self, params, *args, **kwargs):
        seen.append(params.ctypes.data % 64)
        return real(self, params, *args, **kwargs)

    monkeypatch.setattr(NumbaBackend, "train_chunk", train_chunk)
    rng = np.random.default_rng(0)
    X, y = (rng.random((64, 20)) * 255).astype(np.uint8), rng.integers(0, 3, 64)
    for batch_size in (1, 8):
        model = fastmlp.MLP([20, 16, 3], threads=1, seed=0)
        model.fit(X, y, batch_size=batch_size, progress=False)
        twin = copy.deepcopy(model)
        for start in range(0, 64, 16):
            twin.partial_fit(X[start : start + 16], y[start : start + 16], batch_size=batch_size, progress=False)
    # (per batch size: the fit's warm-up and chunk, the copy's first warm-up, its four chunks; the
    # copy's later calls warm up no more: partial_fit warms up once per kind of call)
    assert len(seen) >= 14 and set(seen) == {0}, seen


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="inspects compiled code")
def test_a_float32_optimizer_step_is_computed_in_float32():
    """A literal 1 or 0 in an update rule is an int64 to Numba, and int64 with float32 gives
    float64: the float32 steps were once computed in float64 (half the vector lanes, with
    conversions; Adam 3.6x slower) and rounded otherwise than the float32 reference. The
    compiled step of float32 parameters (every rule: one function) converts nothing to float64."""
    from fastmlp.kernels import optimizer

    options = {name: value for name, value in KERNEL_OPTIONS.items() if name != "cache"}
    step = njit(**options)(optimizer.apply_step.py_func)  # fresh: cached code cannot be inspected
    for kind in (optimizer.PLAIN, optimizer.MOMENTUM, optimizer.ADAM):
        w = np.full(40, 0.5, np.float32)
        slots = np.zeros((2, 40), np.float32)
        scalars = np.full(optimizer.N_STEP_SCALARS, 0.1, np.float32)
        step(w, np.ones_like(w), slots, 0, kind, scalars, optimizer.DECAY)
        assert np.all(w < 0.5), kind  # it stepped
    (signature,) = step.signatures
    ir = step.inspect_llvm(signature)
    assert "fpext" not in ir and " double " not in ir


# ---------------------------------------------------------------------------------------------
# The kernels' last cache place (kernels/_config.py): with neither their __pycache__ nor the
# user's cache folder writable (a site-packages installed by root, no HOME), every kernel failed
# to compile, "cannot cache function 'sigmoid': no locator available", even NumPy training
# from the command line (audit 30). As root every place is writable, so the child below keeps
# only the fallback in Numba's list of cache places.

FALLBACK_ONLY = (
    "import sys, warnings\n"
    "import numpy as np\n"
    "from numba.core import caching\n"
    "from fastmlp.kernels import _config\n"
    "registry = getattr(caching, 'CacheImpl', None) or caching._CacheImpl\n"
    "registry._locator_classes[:] = [c for c in registry._locator_classes if c.__name__ == 'KernelsTemporaryCacheLocator']\n"
    "warnings.simplefilter('always')\n"
    "from fastmlp.kernels import activation\n"
    "out = np.zeros(4, np.float32)\n"
    "activation.activation_row_forward(out, 1)\n"
    "print(activation.activation_row_forward.stats.cache_hits.most_common(1))\n"
)


NO_CACHE_WITHOUT_JIT = pytest.mark.skipif(numba.config.DISABLE_JIT, reason="nothing is cached under NUMBA_DISABLE_JIT=1")


@NO_CACHE_WITHOUT_JIT
def test_kernels_cache_in_the_temporary_folder_when_nowhere_else_is_writable(tmp_path):
    import subprocess
    import sys

    env = dict(os.environ, TMPDIR=str(tmp_path))
    env.pop("NUMBA_CACHE_DIR", None)
    runs = [subprocess.run([sys.executable, "-c", FALLBACK_ONLY], env=env, capture_output=True, text=True, cwd=tmp_path,
                           timeout=300) for _ in range(2)]
    for done in runs:
        assert done.returncode == 0, done.stderr
    folder = tmp_path / f"fastmlp-numba-cache-{os.getuid()}"
    assert runs[0].stderr.count("caching them in " + str(folder)) == 1, runs[0].stderr  # said once
    assert any(folder.rglob("*.nbi")) and (folder.stat().st_mode & 0o777) == 0o700
    assert runs[0].stdout.strip() == "[]" and "1)]" in runs[1].stdout  # compiled, then loaded from there


@NO_CACHE_WITHOUT_JIT
@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX owners and modes")
@pytest.mark.parametrize("folder", ["writable by others", "a symbolic link"])
def test_the_kernels_fallback_cache_is_never_one_others_could_write(tmp_path, monkeypatch, folder):
    import tempfile

    from fastmlp.kernels import _config, activation

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    place = tmp_path / f"fastmlp-numba-cache-{os.getuid()}"
    if folder == "writable by others":
        place.mkdir()
        place.chmod(0o777)
    else:
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        place.symlink_to(tmp_path / "elsewhere")
    locator = next(c for c in _config._registry if c.__name__ == "KernelsTemporaryCacheLocator")
    function = activation.activation_row_forward.py_func
    assert locator.from_function(function, function.__code__.co_filename) is None
    place.unlink() if place.is_symlink() else place.rmdir()
    with pytest.warns(RuntimeWarning, match="caching them in"):
        monkeypatch.setattr(_config, "_fallback_said", [])
        found = locator.from_function(function, function.__code__.co_filename)
    assert found is not None and found.get_cache_path().startswith(str(place))


@NO_CACHE_WITHOUT_JIT
@pytest.mark.parametrize("chosen", [None, "/read-only/cache"])
def test_the_fallback_warning_names_a_numba_cache_dir_that_cannot_be_written(tmp_path, monkeypatch, chosen):
    # it told a user whose NUMBA_CACHE_DIR could not be written to set NUMBA_CACHE_DIR (audit 41)
    import tempfile

    from fastmlp.kernels import _config, activation

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    if chosen is None:
        monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    else:
        monkeypatch.setenv("NUMBA_CACHE_DIR", chosen)
    monkeypatch.setattr(_config, "_fallback_said", [])
    locator = next(c for c in _config._registry if c.__name__ == "KernelsTemporaryCacheLocator")
    function = activation.activation_row_forward.py_func
    with pytest.warns(RuntimeWarning) as caught:
        locator.from_function(function, function.__code__.co_filename)
    said = str(caught[0].message)
    assert "caching them in " + str(tmp_path) in said
    if chosen is None:
        assert "no writable cache" in said and "(set NUMBA_CACHE_DIR to choose a place)" in said
    else:
        assert "NUMBA_CACHE_DIR (/read-only/cache) cannot be written" in said and "set NUMBA_CACHE_DIR" not in said


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_out", [128, 100])
def test_sparse_plain_step_is_the_dense_step_on_the_rows_a_small_batch_touched(rng, dtype, n_out):
    """A plain SGD step of a batch of a few sparse rows updates only the first-layer rows of
    their nonzero inputs (minibatch._sparse_plain_step, part by part): the same bits as the step
    over every row (apply_step_rows, which a zero gradient row leaves as it is), and the gradient
    left zero (padded rows too). The batch holds one row twice (its rows' weights stepped once)."""
    from fastmlp.kernels import codes, minibatch, optimizer

    n_in = 60
    X = rng.integers(0, 256, size=(3, n_in)).astype(np.uint8)
    X[rng.random(X.shape) < 0.85] = 0
    part_ptr, indices, _ = kernels.sparse_rows(X, parts=kernels.PARTS)
    batch = np.array([0, 2, 0])
    spans = np.empty((len(batch), kernels.PARTS, 2), np.int64)
    for r, i in enumerate(batch):
        for part in range(kernels.PARTS):
            spans[r, part] = part_ptr[i * kernels.PARTS + part : i * kernels.PARTS + part + 2]
    W = random(rng, (n_in, n_out), dtype)
    padded = n_out == 100  # rows of the gradient longer than W's (_padded_gradient), their tails zeroed too
    G = np.zeros((n_in, n_out + 28 * padded), dtype)
    touched = np.flatnonzero(X[batch].any(axis=0))
    G[touched] = random(rng, (len(touched), G.shape[1]), dtype)
    G[touched[0], :3] = 0  # zeros within a touched row
    hyper = np.zeros(codes.N_HYPER)
    hyper[codes.LR] = 0.37
    sc = np.empty(optimizer.N_STEP_SCALARS, dtype)
    optimizer.step_scalars(sc, hyper, 1)
    slots = np.empty((0, W.size), dtype)
    expected = W.copy()
    optimizer.apply_step_rows(expected, G.copy(), slots, 0, optimizer.PLAIN, sc, optimizer.DECAY)
    marks = np.zeros(n_in, np.int64)
    for part in range(kernels.PARTS):
        first, last = minibatch._part_range(n_in, np.int64(part))
        assert minibatch._sparse_plain_step(W, G, optimizer.PLAIN, sc, spans, np.int64(part), last - first, indices,
                                            marks, np.int64(1))
    assert W.tobytes() == expected.tobytes()
    assert not G.any()
    assert set(np.flatnonzero(marks)) == set(touched)
    # never for other steps, nor for batches with more nonzero inputs than twice a part's rows
    for kind, slot, value in [(optimizer.MOMENTUM, codes.MOMENTUM, 0.9),
                              (optimizer.PLAIN, codes.WEIGHT_DECAY, 1e-4)]:
        other = hyper.copy()
        other[slot] = value
        for decoupled in (0, 1):
            other[codes.DECOUPLED] = decoupled
            optimizer.step_scalars(sc, other, 1)
            assert not minibatch._sparse_plain_step(W, G, kind, sc, spans, np.int64(1), np.int64(n_in),
                                                    indices, marks, np.int64(2))
    optimizer.step_scalars(sc, hyper, 1)
    visits = int((spans[:, 1, 1] - spans[:, 1, 0]).sum())
    assert visits > 0
    assert not minibatch._sparse_plain_step(W, G, optimizer.PLAIN, sc, spans, np.int64(1),
                                            np.int64(visits // minibatch.SPARSE_STEP_VISITS), indices, marks,
                                            np.int64(2))
