"""The NumPy reference against finite differences, and its numerically delicate pieces."""

import warnings

import numpy as np
import pytest

from fastmlp import reference
from fastmlp.network import ACTIVATIONS, LOSSES, Architecture, init_params

PAIRS = [(output, loss) for output, loss in LOSSES]


def make_problem(rng, layers, activation, output, loss, bias, batch=4):
    arch = Architecture(layers, activation, loss, output, bias, np.float64)
    params = init_params(arch, "normal", seed=int(rng.integers(1 << 31)))
    if bias:  # non-zero biases so their gradients are exercised away from the init point
        for _, b in arch.layout().views(params):
            b[...] = rng.normal(0, 0.5, size=b.shape)
    X = rng.normal(0, 1, size=(batch, layers[0]))
    if arch.is_classifier:
        targets = rng.integers(0, arch.n_classes, size=batch)
    else:
        targets = rng.normal(0, 1, size=(batch, layers[-1]))
    return arch, params, X, targets


def mean_loss(arch, params, X, targets):
    _, z = reference.forward(arch, params, X)
    out = reference.output_forward(z, arch.loss_code)
    return reference.loss_forward(z, out, targets, arch.loss_code).mean()


def analytic_gradient(arch, params, X, targets):
    activations, z = reference.forward(arch, params, X)
    out = reference.output_forward(z, arch.loss_code)
    return reference.backward(arch, params, activations, reference.loss_backward(out, targets, arch.loss_code))


def numeric_gradient(arch, params, X, targets, h=1e-6):
    grad = np.empty_like(params)
    for i in range(params.size):
        saved = params[i]
        params[i] = saved + h
        up = mean_loss(arch, params, X, targets)
        params[i] = saved - h
        down = mean_loss(arch, params, X, targets)
        params[i] = saved
        grad[i] = (up - down) / (2 * h)
    return grad


@pytest.mark.parametrize("hidden", [1, 2, 3], ids=lambda d: f"depth{d}")
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("output,loss", PAIRS, ids=[f"{o}+{l}" for o, l in PAIRS])
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_gradient_matches_central_differences(rng, activation, output, loss, bias, hidden):
    n_out = 1 if loss == "binary_cross_entropy" else 3
    layers = [5] + [4, 3, 4][:hidden] + [n_out]
    arch, params, X, targets = make_problem(rng, layers, activation, output, loss, bias)
    analytic = analytic_gradient(arch, params, X, targets)
    numeric = numeric_gradient(arch, params, X, targets)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-8)


# --- finite for any input --------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_log_softmax_sigmoid_finite_at_extreme_logits(dtype):
    z = np.array([[1000.0, -1000.0, 0.0], [-1000.0, -1000.0, -1000.0], [1000.0, 1000.0, 999.0]], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            p = reference.softmax(z)
            logp = reference.log_softmax(z)
            s = reference.sigmoid(z)
            losses = reference.loss_forward(z, p, np.array([1, 0, 2]), 0)
            bce = reference.loss_forward(z[:, :1], reference.sigmoid(z[:, :1]), np.array([0, 1, 1]), 2)
    for array in (p, logp, s, losses, bce):
        assert np.isfinite(array).all()
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_allclose(p[0], [1, 0, 0], atol=1e-30)
    np.testing.assert_allclose(p[1], [1 / 3] * 3, rtol=1e-6)
    np.testing.assert_allclose(s[0], [1, 0, 0.5])
    # -log p[1] for row 0 is exactly the gap between the logits
    np.testing.assert_allclose(losses[0], 2000.0, rtol=1e-6)
    np.testing.assert_allclose(bce, [1000.0, 1000.0, 0.0], atol=1e-6)


def test_sigmoid_matches_the_textbook_formula_where_that_is_safe(rng):
    z = rng.normal(0, 5, size=1000)
    np.testing.assert_allclose(reference.sigmoid(z), 1 / (1 + np.exp(-z)), rtol=1e-14)


# --- the softmax Jacobian under mean squared error --------------------------------------------


def test_softmax_mse_gradient_uses_the_full_jacobian(rng):
    z = rng.normal(0, 2, size=(6, 4))
    labels = rng.integers(0, 4, size=6)
    p = reference.softmax(z)
    dz = reference.loss_backward(p, labels, 1)
    g = p - reference.one_hot(labels, 4, z.dtype)
    for row in range(6):
        jacobian = np.diag(p[row]) - np.outer(p[row], p[row])
        np.testing.assert_allclose(dz[row], jacobian @ g[row], rtol=1e-12)
    # the notebooks' mistakes give visibly different answers
    assert not np.allclose(dz, g)  # derivative treated as 1
    assert not np.allclose(dz, g * p * (1 - p))  # only the diagonal s*(1-s)


# --- targets --------------------------------------------------------------------------------


def test_one_hot_marks_every_row_at_its_own_label():
    labels = np.array([3, 0, 2, 2, 1])
    t = reference.one_hot(labels, 4, np.float64)
    assert t.shape == (5, 4)
    np.testing.assert_array_equal(t.sum(axis=1), 1)
    np.testing.assert_array_equal(t.argmax(axis=1), labels)


def test_cross_entropy_gradient_is_p_minus_onehot_in_every_row(rng):
    z = rng.normal(size=(5, 4))
    labels = np.array([3, 0, 2, 2, 1])
    p = reference.softmax(z)
    dz = reference.loss_backward(p, labels, 0)
    np.testing.assert_allclose(dz.sum(axis=1), 0, atol=1e-12)
    np.testing.assert_allclose(dz[np.arange(5), labels], p[np.arange(5), labels] - 1)


# --- biases ---------------------------------------------------------------------------------


def test_each_bias_gradient_has_its_layers_shape_and_its_own_values(rng):
    arch, params, X, targets = make_problem(rng, [6, 5, 3], "tanh", "softmax", "cross_entropy", True, batch=7)
    grad = analytic_gradient(arch, params, X, targets)
    numeric = numeric_gradient(arch, params, X, targets)
    views = arch.layout().views(grad)
    numeric_views = arch.layout().views(numeric)
    assert [b.shape for _, b in views] == [(5,), (3,)]
    for (_, db), (_, db_numeric) in zip(views, numeric_views):
        np.testing.assert_allclose(db, db_numeric, rtol=1e-6, atol=1e-9)
    # the hidden bias gradient is not the output one (the 'bias returned twice' mistake)
    assert not np.allclose(views[0][1][:3], views[1][1])


def test_no_bias_means_no_bias_parameters():
    with_bias = Architecture([784, 128, 10], bias=True).layout()
    without = Architecture([784, 128, 10], bias=False).layout()
    assert with_bias.n_params == 784 * 128 + 128 + 128 * 10 + 10
    assert without.n_params == 784 * 128 + 128 * 10
    assert all(b is None for _, b in without.views(np.zeros(without.n_params)))


# --- the update rule ------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_one_sgd_step_moves_params_by_lr_times_the_batch_mean_gradient(rng, batch_size):
    arch, params, X, targets = make_problem(rng, [5, 4, 3], "sigmoid", "softmax", "cross_entropy", True, batch=8)
    order = np.arange(batch_size)
    expected = params - 0.5 * analytic_gradient(arch, params, X[:batch_size], targets[:batch_size])
    reference.train_batches(arch, params, X, targets, order, 0.5, batch_size)
    np.testing.assert_allclose(params, expected, rtol=1e-14)


def test_divergence_stops_before_the_bad_batch(rng):
    arch, params, X, targets = make_problem(rng, [5, 4, 3], "relu", "identity", "mse", True, batch=8)
    X[5, 0] = np.inf  # the loss of sample 5 is not finite
    before = params.copy()
    loss_sum, correct, done, nonfinite_at = reference.train_batches(arch, params, X, targets, np.arange(8), 0.01, 2)
    assert nonfinite_at == 5
    assert done == 4
    assert np.isfinite(params).all()
    assert not np.array_equal(params, before)


def test_pixels_are_scaled_by_one_over_255():
    x = np.array([[0, 51, 255]], dtype=np.uint8)
    np.testing.assert_allclose(reference.as_input(x, np.float64), [[0, 0.2, 1.0]])
    assert reference.as_input(x, np.float32).dtype == np.float32


def test_regression_targets_of_one_output_may_be_1d_and_others_are_refused(rng):
    # [B] targets of a one-output regression broadcast against z[B,1] to [B,B]: wrong losses, no error
    z = rng.normal(size=(5, 1)).astype(np.float32)
    t = rng.normal(size=5)  # float64 targets: the arithmetic stays in z's float32
    losses = reference.loss_forward(z, z, t, reference.IDENTITY_MSE)
    assert losses.shape == (5,) and losses.dtype == np.float32
    np.testing.assert_allclose(losses, 0.5 * (z[:, 0] - t) ** 2, rtol=1e-6)
    dz = reference.loss_backward(z, t, reference.IDENTITY_MSE)
    assert dz.shape == (5, 1) and dz.dtype == np.float32
    # [3] targets for three outputs of three samples would broadcast to [3,3] without a word
    with pytest.raises(ValueError, match=r"regression targets must have shape \[3, 3\]; got \[3\]"):
        reference.loss_forward(rng.normal(size=(3, 3)), None, t[:3], reference.IDENTITY_MSE)
    # [K, B] targets (a transpose's shape, as the notebooks' reshape(-1, N) made) reshaped to [B, K]
    # without a word: every target in the wrong place
    z = rng.normal(size=(4, 2))
    with pytest.raises(ValueError, match=r"must have shape \[4, 2\]; got \[2, 4\]"):
        reference.loss_forward(z, z, rng.normal(size=(2, 4)), reference.IDENTITY_MSE)
    with pytest.raises(ValueError, match=r"must have shape \[4, 2\]; got \[2, 4\]"):
        reference.loss_backward(z, rng.normal(size=(2, 4)), reference.IDENTITY_MSE)
