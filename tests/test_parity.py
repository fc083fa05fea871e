"""The compiled backend against the NumPy reference: same seed, same steps, same numbers.

Tolerances (conftest.TOLERANCES): float64 rtol 1e-9; float32 rtol 1e-4, atol 1e-6. Both
backends compute the same sums in a different order (and the compiled one with fused
multiply-adds and a polynomial exp accurate to 2 ulp), so they agree to rounding, and 20 SGD
steps amplify a one-ulp difference by far less than these bounds.
"""

import itertools

import numpy as np
import pytest

from fastmlp import MLP
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
    if arch.is_classifier:
        targets = rng.integers(0, arch.n_classes, size=N_SAMPLES).astype(np.int64)
    else:
        targets = rng.normal(0, 1, size=(N_SAMPLES, layers[-1])).astype(dtype)
    return arch, params, X, targets


def run_steps(backend_name, arch, params, X, targets, batch_size, lr=0.1, threads=1):
    """Loss sums and parameters after each of STEPS batches."""
    backend = make_backend(backend_name, arch, threads)
    data = backend.prepare(X)
    params = params.copy()
    order = np.concatenate([np.random.default_rng(k).permutation(N_SAMPLES) for k in range(STEPS * batch_size // N_SAMPLES + 1)])
    losses, snapshots = [], []
    for step in range(STEPS):
        batch = order[step * batch_size : (step + 1) * batch_size].astype(np.int64)
        loss_sum, _, done, nonfinite_at = backend.train_chunk(params, data, targets, batch, lr, batch_size)
        assert nonfinite_at == -1 and done == len(batch)
        losses.append(loss_sum)
        snapshots.append(params.copy())
    return np.array(losses), np.array(snapshots)


def assert_same_run(arch, params, X, targets, batch_size, tol, **kwargs):
    ref_losses, ref_params = run_steps("numpy", arch, params, X, targets, batch_size, **kwargs)
    losses, compiled = run_steps("numba", arch, params, X, targets, batch_size, **kwargs)
    np.testing.assert_allclose(losses, ref_losses, rtol=tol["rtol"], atol=tol["atol"])
    np.testing.assert_allclose(compiled, ref_params, rtol=tol["rtol"], atol=tol["atol"])
    assert not np.array_equal(ref_params[0], ref_params[-1])  # training really moved


GRID = list(
    itertools.product(
        ACTIVATIONS,
        PAIRS,
        [True, False],
        [np.float64, np.float32],
        [1, 7, 32, N_SAMPLES],
        [1, 2, 3],
    )
)


def grid_id(case):
    activation, (output, loss), bias, dtype, batch_size, hidden = case
    return f"{activation}-{output}+{loss}-{'bias' if bias else 'nobias'}-{np.dtype(dtype).name}-bs{batch_size}-h{hidden}"


@pytest.mark.parametrize("case", GRID, ids=[grid_id(c) for c in GRID])
def test_k_steps_match_the_reference(case, synth):
    activation, (output, loss), bias, dtype, batch_size, hidden = case
    n_out = 1 if loss == "binary_cross_entropy" else 4
    layers = [12] + [9, 7, 6][:hidden] + [n_out]
    arch, params, X, targets = problem(layers, activation, output, loss, bias, dtype, "uint8")
    assert_same_run(arch, params, X, targets, batch_size, synth.tolerance(dtype))


@pytest.mark.parametrize("batch_size", [1, 7, N_SAMPLES])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("output,loss", PAIRS)
def test_dense_float_inputs_match_the_reference(output, loss, dtype, batch_size, synth):
    n_out = 1 if loss == "binary_cross_entropy" else 3
    arch, params, X, targets = problem([5, 8, n_out], "tanh", output, loss, True, dtype, "float")
    assert_same_run(arch, params, X, targets, batch_size, synth.tolerance(dtype))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_mnist_sized_network_matches_the_reference(dtype, synth):
    arch, params, X, targets = problem([784, 128, 10], "sigmoid", "softmax", "cross_entropy", True, dtype, "uint8")
    assert_same_run(arch, params, X, targets, 1, synth.tolerance(dtype))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_two_threads_match_one_thread(dtype, synth):
    arch, params, X, targets = problem([784, 64, 10], "sigmoid", "softmax", "cross_entropy", True, dtype, "uint8")
    one_losses, one = run_steps("numba", arch, params, X, targets, 1, threads=1)
    two_losses, two = run_steps("numba", arch, params, X, targets, 1, threads=2)
    tol = synth.tolerance(dtype)
    np.testing.assert_allclose(two_losses, one_losses, rtol=tol["rtol"], atol=tol["atol"])
    np.testing.assert_allclose(two, one, rtol=tol["rtol"], atol=tol["atol"])
    again_losses, again = run_steps("numba", arch, params, X, targets, 1, threads=2)
    np.testing.assert_array_equal(again, two)  # deterministic, not Hogwild


def test_divergence_is_reported_at_the_same_sample(synth):
    arch, params, X, targets = problem([12, 9, 4], "relu", "identity", "mse", True, np.float64, "float")
    X[np.arange(N_SAMPLES) == 17] *= 1e300  # sample 17 overflows the loss
    for name in ("numpy", "numba"):
        backend = make_backend(name, arch)
        for batch_size in (1, 8):
            p = params.copy()
            order = np.arange(N_SAMPLES, dtype=np.int64)
            with np.errstate(all="ignore"):
                loss_sum, _, done, nonfinite_at = backend.train_chunk(p, backend.prepare(X), targets, order, 0.01, batch_size)
            assert nonfinite_at == 17, (name, batch_size)
            assert done == (17 if batch_size == 1 else 16), (name, batch_size)
            assert np.isfinite(p).all()


@pytest.mark.mnist
def test_same_predictions_on_mnist_after_one_epoch(mnist):
    X_train, y_train, X_test, y_test = mnist
    predictions = {}
    for backend in ("numpy", "numba"):
        model = MLP([784, 128, 10], dtype="float64", seed=0, backend=backend)
        model.fit(X_train, y_train, epochs=1, batch_size=1, lr=0.1, progress=False)
        predictions[backend] = model.predict(X_test)
    np.testing.assert_array_equal(predictions["numba"], predictions["numpy"])
