"""The public API: MLP fit/predict/evaluate/score, the trainer's semantics, the seeds' setups."""

import warnings

import numpy as np
import pytest

import fastmlp
from fastmlp import MLP, SymmetryWarning

BACKENDS = ["numpy", "numba"]


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


def test_fit_returns_history_with_one_record_per_epoch(rng, synth, backend):
    X, y = synth.digits(rng, 600)
    model = MLP([784, 32, 10], seed=1, backend=backend)
    history = model.fit(X, y, epochs=3, batch_size=1, lr=0.1, validation_data=(X[:100], y[:100]), progress=False)
    assert history is model.history_
    assert history.epoch == [1, 2, 3]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "samples_per_second", "seconds", "lr"):
        assert len(getattr(history, key)) == 3, key
    assert history.loss[2] < history.loss[0]
    assert all(s > 0 for s in history.samples_per_second)
    assert model.score(X, y) > 0.9


def test_predict_proba_predict_evaluate_score_agree(rng, synth, backend):
    X, y = synth.digits(rng, 400)
    model = MLP([784, 16, 10], seed=0, backend=backend)
    model.fit(X, y, epochs=2, batch_size=8, lr=0.5, progress=False)
    proba = model.predict_proba(X)
    assert proba.shape == (400, 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(model.predict(X), proba.argmax(axis=1))
    metrics = model.evaluate(X, y)
    assert metrics["accuracy"] == pytest.approx(model.score(X, y))
    assert metrics["accuracy"] == pytest.approx((model.predict(X) == y).mean())
    expected_loss = -np.log(proba[np.arange(400), y].astype(np.float64)).mean()
    assert metrics["loss"] == pytest.approx(expected_loss, rel=1e-4)


def test_images_may_be_n_by_28_by_28(rng, synth, backend):
    X, y = synth.digits(rng, 200)
    model = MLP([784, 16, 10], seed=0, backend=backend).fit(X, y, epochs=1, progress=False)
    flat = MLP([784, 16, 10], seed=0, backend=backend)
    flat.fit(X, y, epochs=1, progress=False)
    images = MLP([784, 16, 10], seed=0, backend=backend)
    images.fit(X.reshape(-1, 28, 28), y, epochs=1, progress=False)
    np.testing.assert_array_equal(flat.params_, images.params_)
    np.testing.assert_array_equal(images.predict(X.reshape(-1, 28, 28)), flat.predict(X))
    assert model is not None


def test_uint8_and_float_pixels_give_the_same_model(rng, synth):
    X, y = synth.digits(rng, 300)
    as_uint8 = MLP([784, 16, 10], seed=3, backend="numpy", dtype="float64")
    as_uint8.fit(X, y, epochs=1, progress=False)
    as_float = MLP([784, 16, 10], seed=3, backend="numpy", dtype="float64")
    as_float.fit(X.astype(np.float64) * (1 / 255), y, epochs=1, progress=False)
    np.testing.assert_allclose(as_uint8.params_, as_float.params_, rtol=1e-12, atol=1e-15)


def test_same_seed_same_weights_other_seed_other_weights(rng, synth, backend):
    X, y = synth.digits(rng, 300)
    runs = [MLP([784, 16, 10], seed=s, backend=backend) for s in (7, 7, 8)]
    for model in runs:
        model.fit(X, y, epochs=2, batch_size=4, progress=False)
    np.testing.assert_array_equal(runs[0].params_, runs[1].params_)
    assert not np.array_equal(runs[0].params_, runs[2].params_)


def test_shuffle_off_visits_samples_in_order(rng, synth):
    X, y = synth.digits(rng, 50)
    model = MLP([784, 8, 10], seed=0, backend="numpy", dtype="float64")
    model.fit(X, y, epochs=1, batch_size=50, shuffle=False, progress=False)
    reversed_model = MLP([784, 8, 10], seed=0, backend="numpy", dtype="float64")
    reversed_model.fit(X[::-1], y[::-1], epochs=1, batch_size=50, shuffle=False, progress=False)
    # one full batch: the order of the rows does not matter beyond rounding
    np.testing.assert_allclose(model.params_, reversed_model.params_, rtol=1e-10, atol=1e-14)


def test_partial_fit_continues_where_fit_stopped(rng, synth):
    X, y = synth.digits(rng, 200)
    once = MLP([784, 8, 10], seed=0, backend="numpy").fit(X, y, epochs=2, progress=False)
    assert once.epoch == [1, 2]
    twice = MLP([784, 8, 10], seed=0, backend="numpy")
    twice.fit(X, y, epochs=1, progress=False)
    twice.partial_fit(X, y, epochs=1, progress=False)
    assert twice.history_.epoch == [1, 2]


def test_lr_schedules(rng, synth):
    X, y = synth.digits(rng, 100)
    model = MLP([784, 8, 10], backend="numpy")
    h = model.fit(X, y, epochs=3, lr=0.2, lr_schedule="exponential", lr_decay=0.5, progress=False)
    assert h.lr == pytest.approx([0.2, 0.1, 0.05])
    h = model.fit(X, y, epochs=2, lr=0.2, lr_schedule="cosine", progress=False)
    assert h.lr == pytest.approx([0.2, 0.1])


def test_save_and_load_round_trip(tmp_path, rng, synth):
    X, y = synth.digits(rng, 100)
    model = MLP([784, 8, 10], seed=0, backend="numpy")
    model.fit(X, y, epochs=1, progress=False)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = MLP.load(path)
    np.testing.assert_array_equal(loaded.params_, model.params_)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]


# --- the notebooks' mistakes, at the API level ------------------------------------------------


def test_zero_init_warns_and_really_keeps_hidden_units_identical(rng, synth):
    X, y = synth.digits(rng, 200)
    with pytest.warns(SymmetryWarning, match="identical"):
        zero = MLP([784, 6, 10], init="zeros", seed=0, backend="numpy")
        zero.fit(X, y, epochs=1, progress=False)
    W1 = zero.weights_[0]
    assert np.allclose(W1, W1[:, :1])  # every hidden unit's incoming weights are the same
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        default = MLP([784, 6, 10], seed=0, backend="numpy")
        default.fit(X, y, epochs=1, progress=False)
    assert not np.allclose(default.weights_[0], default.weights_[0][:, :1])


def test_per_sample_learning_rate_is_not_divided_by_the_dataset_size(rng, synth):
    """lr=1/60000 per sample (the sum-vs-mean confusion) barely moves; the default learns."""
    X, y = synth.digits(rng, 600)
    tiny = MLP([784, 16, 10], seed=0, backend="numpy").fit(X, y, lr=1 / 60000, progress=False)
    default = MLP([784, 16, 10], seed=0, backend="numpy").fit(X, y, lr=0.1, progress=False)
    assert tiny.accuracy[0] < 0.5 < 0.9 < default.accuracy[0]


def test_transposed_data_is_refused_not_scrambled(rng, synth):
    X, y = synth.digits(rng, 100)
    model = MLP([784, 8, 10], backend="numpy")
    with pytest.raises(ValueError, match="100 features per sample but layers\\[0\\] is 784"):
        model.fit(X.T, y)
    # a [N, 28, 28] stack is flattened row by row, exactly as the [N, 784] array
    flat = MLP([784, 8, 10], backend="numpy").fit(X.reshape(100, 28, 28), y, progress=False)
    assert flat.loss[0] == pytest.approx(MLP([784, 8, 10], backend="numpy").fit(X, y, progress=False).loss[0])


def test_logistic_loss_is_refused_for_regression_targets(rng):
    X = rng.normal(size=(20, 2))
    with pytest.raises(ValueError, match="integer class labels"):
        MLP([2, 3, 1], loss="binary_cross_entropy", backend="numpy").fit(X, rng.normal(size=20))
    with pytest.raises(ValueError, match="exactly one output unit"):
        MLP([2, 3, 10], loss="binary_cross_entropy", backend="numpy").fit(X, np.zeros(20, int))


# --- the five setups of the original notebooks ---------------------------------------------


def test_setup_784_20_10_sigmoid_softmax_mse_per_sample(rng, synth, backend):
    X, y = synth.digits(rng, 1500)
    model = MLP([784, 20, 10], activation="sigmoid", loss="mse", output="softmax", seed=0, backend=backend)
    history = model.fit(X[:1000], y[:1000], epochs=3, batch_size=1, lr=0.5, progress=False)
    assert history.loss[-1] < history.loss[0]
    assert model.score(X[1000:], y[1000:]) > 0.9


def test_setup_784_10_10_relu_full_batch(rng, synth, backend):
    X, y = synth.digits(rng, 1500)
    model = MLP([784, 10, 10], activation="relu", seed=0, backend=backend)
    history = model.fit(X[:1000], y[:1000], epochs=60, batch_size=None, lr=0.5, progress=False)
    assert history.loss[-1] < 0.5 * history.loss[0]
    assert model.score(X[1000:], y[1000:]) > 0.9


def test_setup_784_128_10_sigmoid_without_biases(rng, synth, backend):
    X, y = synth.digits(rng, 1500)
    model = MLP([784, 128, 10], activation="sigmoid", bias=False, seed=0, backend=backend)
    model.fit(X[:1000], y[:1000], epochs=2, batch_size=1, lr=0.1, progress=False)
    assert all(b is None for b in model.biases_)
    assert model.score(X[1000:], y[1000:]) > 0.9


def test_setup_2_3_1_regression(rng, backend):
    X = rng.uniform(-1, 1, size=(800, 2))
    y = np.sin(np.pi * X[:, 0]) + 0.5 * X[:, 1]
    model = MLP([2, 3, 1], activation="tanh", loss="mse", seed=0, backend=backend, dtype="float64")
    history = model.fit(X[:600], y[:600], epochs=200, batch_size=8, lr=0.1, progress=False)
    mse = float(((model.predict(X[600:])[:, 0] - y[600:]) ** 2).mean())
    assert mse < 0.05 * y.var()
    assert model.score(X[600:], y[600:]) > 0.95
    assert history.accuracy[-1] == 0  # regression has no accuracy


def test_setup_784_128_10_relu_mini_batch(rng, synth, backend):
    X, y = synth.digits(rng, 1500)
    model = MLP([784, 128, 10], activation="relu", seed=0, backend=backend)
    model.fit(X[:1000], y[:1000], epochs=3, batch_size=32, lr=0.1, progress=False)
    assert model.score(X[1000:], y[1000:]) > 0.9


@pytest.mark.mnist
def test_full_mnist_reference_reaches_95_percent_in_one_epoch(mnist):
    X_train, y_train, X_test, y_test = mnist
    model = MLP([784, 128, 10], activation="sigmoid", loss="cross_entropy", seed=0, backend="numpy")
    model.fit(X_train, y_train, epochs=1, batch_size=1, lr=0.1, progress=False)
    assert model.score(X_test, y_test) >= 0.95
