"""Each compiled kernel against its NumPy reference, on random data and on edge cases."""

import numpy as np
import pytest

from fastmlp import kernels, reference
from fastmlp.network import ACTIVATIONS

DTYPES = [np.float32, np.float64]
SHAPES = [(1, 1), (1, 7), (5, 3), (13, 17)]


def random(rng, shape, dtype, scale=1.0):
    return (rng.normal(0, scale, size=shape)).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fast_exp_matches_numpy_including_inf_and_nan(dtype, synth):
    from numba import njit

    fast_exp = kernels.fast_exp  # loaded on first access: Numba only sees loaded overloads

    @njit
    def exp_all(out, x):
        for k in range(x.shape[0]):
            out[k] = fast_exp(x[k])

    limit = 88.0 if dtype == np.float32 else 709.0
    x = np.concatenate([np.linspace(-limit, limit, 20001), [0.0, -0.0, 1e-30, -1e-30, np.inf, -np.inf, np.nan, -1e4, 1e4]]).astype(dtype)
    out = np.empty_like(x)
    exp_all(out, x)
    with np.errstate(over="ignore"):
        expected = np.exp(x)
    finite = np.isfinite(expected) & (expected > np.finfo(dtype).tiny)
    np.testing.assert_allclose(out[finite], expected[finite], rtol=4 * np.finfo(dtype).eps)
    assert out[x == np.inf] == np.inf and out[x == -np.inf] == 0 and np.isnan(out[np.isnan(x)]).all()
    assert out[x == 1e4] == np.inf and out[x == -1e4] == 0


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
    with np.errstate(over="raise", invalid="raise", divide="raise"):
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
@pytest.mark.parametrize("pixels", ["uint8", "float"])
def test_sparse_rows_give_the_dense_product(rng, dtype, pixels, synth):
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
    b = random(rng, 8, dtype)
    rows = np.array([4, 0, 9, 4], np.int64)
    out = np.empty((4, 8), dtype)
    kernels.sparse_linear_forward(out, rows, indptr, indices, values, scale, W, b, ACTIVATIONS["identity"])
    x = reference.as_input(X[rows], dtype)
    tol = synth.tolerance(dtype)
    np.testing.assert_allclose(out, x @ W + b, **tol)
    dz = random(rng, (4, 8), dtype)
    dW, db = np.empty_like(W), np.empty(8, dtype)
    kernels.sparse_linear_backward(dW, db, dz, rows, indptr, indices, values, scale)
    np.testing.assert_allclose(dW, x.T @ dz, **tol)
    np.testing.assert_allclose(db, dz.sum(axis=0), **tol)
