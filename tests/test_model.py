"""The public API: MLP fit/predict/evaluate/score, the trainer's semantics, the seeds' setups."""

import re
import warnings

import numba
import numpy as np
import pytest

import fastmlp
import fastmlp.data
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
    flat = MLP([784, 16, 10], seed=0, backend=backend)
    flat.fit(X, y, epochs=1, progress=False)
    images = MLP([784, 16, 10], seed=0, backend=backend)
    images.fit(X.reshape(-1, 28, 28), y, epochs=1, progress=False)
    np.testing.assert_array_equal(flat.params_, images.params_)
    np.testing.assert_array_equal(images.predict(X.reshape(-1, 28, 28)), flat.predict(X))


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


def test_shuffle_off_visits_samples_in_file_order(rng, synth, backend):
    """shuffle=False trains on rows 0, 1, 2, ... every epoch: the same weights as the backend
    run by hand in that order, and other weights than the same rows in reverse or shuffled."""
    X, y = synth.digits(rng, 60)
    kwargs = dict(epochs=2, batch_size=4, lr=0.3, progress=False)
    model = MLP([784, 8, 10], seed=0, backend=backend, dtype="float64")
    model.fit(X, y, shuffle=False, **kwargs)

    by_hand = MLP([784, 8, 10], seed=0, backend=backend, dtype="float64").initialize()
    data = by_hand.backend_.prepare(X)
    for _ in range(2):
        by_hand.backend_.train_chunk(by_hand.params_, data, y, np.arange(60, dtype=np.int64), 0.3, 4)
    np.testing.assert_array_equal(model.params_, by_hand.params_)

    reversed_rows = MLP([784, 8, 10], seed=0, backend=backend, dtype="float64")
    reversed_rows.fit(X[::-1], y[::-1], shuffle=False, **kwargs)
    shuffled = MLP([784, 8, 10], seed=0, backend=backend, dtype="float64")
    shuffled.fit(X, y, shuffle=True, **kwargs)
    assert np.abs(reversed_rows.params_ - model.params_).max() > 1e-6
    assert np.abs(shuffled.params_ - model.params_).max() > 1e-6


def test_partial_fit_continues_exactly_where_fit_stopped(rng, synth, backend):
    """fit(epochs=1) then partial_fit(epochs=1) is bit for bit fit(epochs=2): same weights,
    same shuffles, same history."""
    X, y = synth.digits(rng, 300)
    once = MLP([784, 8, 10], seed=0, backend=backend)
    once.fit(X, y, epochs=2, batch_size=3, progress=False)
    twice = MLP([784, 8, 10], seed=0, backend=backend)
    twice.fit(X, y, epochs=1, batch_size=3, progress=False)
    twice.partial_fit(X, y, epochs=1, batch_size=3, progress=False)
    np.testing.assert_array_equal(twice.params_, once.params_)
    assert twice.history_.epoch == once.history_.epoch == [1, 2]
    assert twice.history_.loss == once.history_.loss
    assert twice.epochs_trained_ == 2


def test_a_seed_set_after_fit_is_the_next_fits_not_the_runs(rng, synth, tmp_path):
    """Like the architecture (arch_), the run keeps the seed it was built with: partial_fit
    holds out the same validation rows and save records that seed; the next fit takes the new one."""
    X, y = synth.digits(rng, 160)
    options = dict(batch_size=4, validation_fraction=0.25, early_stopping=5, progress=False)
    kept = MLP([784, 8, 10], seed=0, backend="numpy")
    kept.fit(X, y, epochs=1, **options)
    kept.partial_fit(X, y, epochs=1, progress=False)
    changed = MLP([784, 8, 10], seed=0, backend="numpy")
    changed.fit(X, y, epochs=1, **options)
    changed.seed, changed.init = 7, "he"
    changed.partial_fit(X, y, epochs=1, progress=False)
    np.testing.assert_array_equal(changed.params_, kept.params_)
    assert changed.history_.val_loss == kept.history_.val_loss
    assert changed.run_seed == 0
    changed.save(tmp_path / "run.npz")
    loaded = MLP.load(tmp_path / "run.npz")
    assert (loaded.seed, loaded.init, loaded.run_seed) == (0, "auto", 0)
    loaded.partial_fit(X, y, epochs=1, progress=False)
    kept.partial_fit(X, y, epochs=1, progress=False)
    np.testing.assert_array_equal(loaded.params_, kept.params_)
    changed.fit(X, y, epochs=1, **options)
    assert changed.run_seed == 7
    fresh = MLP([784, 8, 10], seed=7, init="he", backend="numpy")
    fresh.fit(X, y, epochs=1, **options)
    np.testing.assert_array_equal(changed.params_, fresh.params_)


def test_lr_schedules(rng, synth):
    X, y = synth.digits(rng, 100)
    model = MLP([784, 8, 10], backend="numpy")
    h = model.fit(X, y, epochs=3, lr=0.2, lr_schedule="exponential", lr_decay=0.5, progress=False)
    assert h.lr == pytest.approx([0.2, 0.1, 0.05])
    h = model.fit(X, y, epochs=2, lr=0.2, lr_schedule="cosine", progress=False)
    assert h.lr == pytest.approx([0.2, 0.1])
    h = model.fit(X, y, epochs=5, lr=0.2, lr_schedule="step", lr_decay=0.5, lr_step_epochs=2, progress=False)
    assert h.lr == pytest.approx([0.2, 0.2, 0.1, 0.1, 0.05])
    assert model.fit_options_["lr_step_epochs"] == 2
    h = model.fit(X, y, epochs=2, lr=0.2, lr_schedule="step", progress=False)  # every 10 epochs by default
    assert h.lr == pytest.approx([0.2, 0.2])


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


@pytest.mark.parametrize("call", ["fit", "partial_fit"])
@pytest.mark.parametrize("mistake", ["X", "validation_data", "sample_weight"])
def test_a_call_that_fails_its_checks_leaves_the_model_as_it_was(rng, synth, backend, call, mistake):
    """fit re-initialises, but only once the data has passed its checks: a refused call keeps
    the trained weights, the run and the history (an unfitted model stays unfitted)."""
    X, y = synth.digits(rng, 120)
    model = MLP([784, 8, 10], seed=0, backend=backend)
    model.fit(X, y, epochs=2, batch_size=4, lr=0.2, momentum=0.5, progress=False)
    before = dict(vars(model))
    params, slots = model.params_.copy(), model.optimizer_state_.slots.copy()
    arguments = dict(X=X, y=y, epochs=1, batch_size=4, progress=False)
    arguments.update({"X": dict(X=X[:, :700]), "validation_data": dict(validation_data=(X, y[:10])),
                      "sample_weight": dict(sample_weight=-np.ones(len(y)))}[mistake])
    words = {"X": "X has 700 features per sample but layers[0] is 784",
             "validation_data": "validation_data[0] and validation_data[1] have different lengths: validation_data[0] has 120",
             "sample_weight": "sample_weight must be finite and >= 0; got -1.0 at row 0"}[mistake]
    with pytest.raises(ValueError, match=re.escape(words)):
        getattr(model, call)(**arguments)
    assert vars(model).keys() == before.keys()
    assert all(vars(model)[name] is value for name, value in before.items())
    np.testing.assert_array_equal(model.params_, params)
    np.testing.assert_array_equal(model.optimizer_state_.slots, slots)
    assert model.epochs_trained_ == 2 and len(model.history_.loss) == 2

    fresh = MLP([784, 8, 10], seed=0, backend=backend)
    with pytest.raises(ValueError, match=re.escape(words)):
        getattr(fresh, call)(**arguments)
    assert not hasattr(fresh, "params_")


def test_an_interrupted_fit_keeps_what_it_trained(rng, synth, monkeypatch):
    """Past the checks the run is the new one: an epoch interrupted by Ctrl-C leaves the new
    run's weights (what fit trained), not the old model's."""
    from fastmlp import trainer

    X, y = synth.digits(rng, 60)
    model = MLP([784, 8, 10], seed=0, backend="numpy")
    model.fit(X, y, epochs=2, progress=False)
    old = model.params_.copy()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, y, epochs=1, progress=False)
    assert model.epochs_trained_ == 0
    np.testing.assert_array_equal(model.params_, MLP([784, 8, 10], seed=0, backend="numpy").initialize().params_)
    assert not np.array_equal(model.params_, old)
    assert "_training" not in vars(model)


def test_load_does_not_reinitialise(tmp_path, rng, synth, monkeypatch):
    """A model saved with init='zeros' loads its own weights: no fresh draw, no SymmetryWarning."""
    X, y = synth.digits(rng, 100)
    with pytest.warns(SymmetryWarning):
        model = MLP([784, 8, 10], init="zeros", seed=0, backend="numpy")
        model.fit(X, y, epochs=1, progress=False)
    model.save(tmp_path / "model.npz")

    def no_init(*args, **kwargs):
        raise AssertionError("MLP.load drew fresh weights")

    monkeypatch.setattr("fastmlp.model.init_params", no_init)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = MLP.load(tmp_path / "model.npz")
    np.testing.assert_array_equal(loaded.params_, model.params_)


@pytest.mark.parametrize(
    "bad,words",
    [
        (lambda p: p[:-1].copy(), "parameters for layers \\[784, 8, 10\\]; got shape"),
        (lambda p: np.concatenate([p, p[:3]]), "got shape"),
        (lambda p: p.astype(np.float64), "float32 array .* got dtype float64"),
        (lambda p: p.reshape(1, -1), "got shape \\(1, "),
        (lambda p: list(p), "got list"),
        (lambda p: np.where(np.arange(p.size) == 7, np.float32(np.nan), p), "NaN or infinity \\(first at index 7\\)"),
    ],
    ids=["short", "long", "float64", "2-d", "list", "nan"],
)
def test_a_broken_params_vector_is_refused_before_any_kernel_runs(rng, synth, backend, bad, words, monkeypatch):
    X, y = synth.digits(rng, 50)
    model = MLP([784, 8, 10], seed=0, backend=backend)
    model.fit(X, y, epochs=1, progress=False)
    model.params_ = bad(model.params_)

    def no_kernel(*args, **kwargs):
        raise AssertionError("a kernel ran on a broken params_")

    monkeypatch.setattr(model.backend_, "train_chunk", no_kernel)
    monkeypatch.setattr(model.backend_, "logits", no_kernel)
    for call in (lambda: model.partial_fit(X, y, progress=False), lambda: model.predict(X), lambda: model.evaluate(X, y)):
        with pytest.raises(ValueError, match="params_ " + ("contains " if "NaN" in words else "must be ") + ".*" + words):
            call()


def test_outputs_that_overflow_are_warned_of(rng, synth, backend):
    """Finite weights whose outputs overflow (a run diverged without a non-finite loss or weight:
    loss 1.7e162, weights 1e147; audit 62) gave NaN probabilities, label 0 and a NaN loss
    without a word: every prediction says how many rows, and finite outputs say nothing."""
    X, y = synth.digits(rng, 40)
    model = MLP([784, 8, 10], seed=0, backend=backend, dtype="float64")
    model.fit(X, y, epochs=1, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        finite = model.predict_proba(X)
    # a digit's hidden units on (sigmoid(100 x - 1000) = 1), a blank image's off (sigmoid(-1000) =
    # 0): two outputs' logits overflow for the digits (8 units x 1e308), not for the blank image
    model.weights_[0][:] = 100
    model.biases_[0][:] = -1e3
    model.weights_[1][:, 3] = 1e308
    model.weights_[1][:, 4] = -1e308
    blank = np.zeros((1, 784), np.uint8)
    rows = X[:5]
    for call in (model.decision_function, model.predict_proba, model.predict, lambda X: model.evaluate(X, y[:len(X)]),
                 lambda X: model.score(X, y[:len(X)])):
        with pytest.warns(RuntimeWarning, match=r"outputs are NaN or infinite for 5 of 6 rows \(they overflow: its "
                                                r"largest weight is 1e\+308\); its training diverged") as said:
            call(np.vstack([rows, blank]))
        assert len(said) == 1 and said[0].filename == __file__  # said at the caller's line
    assert np.isfinite(finite).all()
    # finite outputs whose squared error overflows float32 keep NumPy's own warning (audit 64)
    regression = MLP([784, 8, 1], loss="mse", seed=0, backend=backend)
    regression.fit(X, y.astype(np.float32), epochs=1, progress=False)
    regression.weights_[1][:] = 1e20 / 8  # outputs near 5e19 (8 units about half on): finite, their squares not
    with pytest.warns(RuntimeWarning, match="overflow encountered") as said:
        assert regression.evaluate(X, y.astype(np.float32))["loss"] == np.inf
    assert not [w for w in said if "NaN or infinite" in str(w.message)]


@pytest.mark.parametrize("batch_size", [1, None])
def test_an_update_that_overflows_a_weight_is_divergence(backend, batch_size):
    """The only sample's loss (5e27) is finite, but its update overflows float32: no later loss
    would ever see it, so the check of the weights after the chunk must."""
    X = np.array([[1e15]], np.float32)
    y = np.zeros((1, 1), np.float32)
    model = MLP([1, 1], activation="identity", loss="mse", seed=0, backend=backend)
    with pytest.raises(fastmlp.DivergenceError, match="a weight became non-finite in epoch 1"):
        model.fit(X, y, epochs=1, batch_size=batch_size, lr=1e30, progress=False)
    assert np.isfinite(model.params_).all()


@pytest.mark.parametrize("batch_size", [1, 32])
def test_an_optimizer_state_that_overflows_is_divergence(backend, batch_size):
    """Adam's second moment of a gradient whose square overflows float32 is inf, and that weight's
    step m / sqrt(inf) is 0 for ever: every loss and weight stayed finite, the affected weights
    stopped training silently, and save refused the model afterwards (audit 60)."""
    rng = np.random.default_rng(0)
    X, y = rng.integers(0, 256, size=(64, 6)).astype(np.uint8), rng.integers(0, 3, size=64)
    model = MLP([6, 5, 3], seed=0, backend=backend)
    start = model.initialize().params_.copy()
    with pytest.raises(fastmlp.DivergenceError, match="Adam's moment estimates became non-finite in epoch 1 .*"
                                                      "too large for float32.*weight_decay=1e\\+30"):
        model.fit(X, y, epochs=2, batch_size=batch_size, optimizer="adam", weight_decay=1e30, progress=False)
    np.testing.assert_array_equal(model.params_, start)  # rolled back to before the epoch's first chunk
    assert np.isfinite(model.optimizer_state_.slots).all()


@pytest.mark.parametrize(
    "kwargs,error,words",
    [
        ({"lr_decay": 1.5}, ValueError, "lr_decay must be in \\(0, 1\\]"),
        ({"lr_decay": 0.0}, ValueError, "lr_decay must be a positive"),
        ({"lr_step_epochs": 0}, ValueError, "lr_step_epochs must be a positive"),
        ({"lr_step_epochs": 2.5}, TypeError, "lr_step_epochs must be"),
        ({"progress": "yes"}, TypeError, "progress must be None"),
        ({"progress": 1}, TypeError, "progress must be None"),
        ({"on_epoch": "print"}, TypeError, "on_epoch must be a function of the History"),
    ],
)
def test_out_of_range_fit_options_are_refused(rng, synth, kwargs, error, words):
    X, y = synth.digits(rng, 20)
    for method in ("fit", "partial_fit"):
        model = MLP([784, 4, 10], backend="numpy")
        with pytest.raises(error, match=words):
            getattr(model, method)(X, y, **kwargs)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_on_epoch_sees_each_epoch_as_it_ends_after_its_checkpoint(rng, synth, tmp_path, backend):
    X, y = synth.digits(rng, 200)
    model = MLP([784, 8, 10], seed=0, backend=backend)
    seen = []

    def on_epoch(history):
        saved = MLP.load(tmp_path / "run.npz")
        seen.append((list(history.epoch), history.loss[-1], saved.epochs_trained_, model.epochs_trained_))

    history = model.fit(X, y, epochs=3, batch_size=8, progress=False, checkpoint_path=tmp_path / "run.npz",
                        on_epoch=on_epoch)
    assert seen == [([1], history.loss[0], 1, 1), ([1, 2], history.loss[1], 2, 2), ([1, 2, 3], history.loss[2], 3, 3)]
    model.partial_fit(X, y, epochs=1, progress=False, on_epoch=lambda h: seen.append(h.epoch[-1]))
    assert seen[-1] == 4

    def stop_after_2(history):
        if history.epoch[-1] == 2:
            raise RuntimeError("enough")

    fresh = MLP([784, 8, 10], seed=0, backend=backend)
    with pytest.raises(RuntimeError, match="enough"):
        fresh.fit(X, y, epochs=3, batch_size=8, progress=False, on_epoch=stop_after_2)
    assert fresh.epochs_trained_ == 2 and fresh.history_.epoch == [1, 2]  # the epochs before it stay trained


# --- the notebooks' mistakes, at the API level ------------------------------------------------


def test_fastmlp_warnings_name_the_callers_line(rng, synth):
    # init="zeros" from fit was said at fastmlp/model.py (a fixed stacklevel, right for
    # initialize() only): a filter on the application's module missed it (audit 51)
    from fastmlp.compare import TOLERANCES, compare_backends

    X, y = synth.digits(rng, 60)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        MLP([784, 4, 10], init="zeros", seed=0, backend="numpy").fit(X, y, epochs=1, progress=False)
        MLP([784, 4, 10], init="zeros", seed=0, backend="numpy").initialize()
        MLP([784, 4, 10], seed=0, backend="numpy").fit(X, y, epochs=1, beta1=0.5, progress=False)
        compare_backends(lambda backend: MLP([784, 4, 10], init="zeros", seed=0, backend=backend), X, y, X, y, epochs=1,
                         fit_kwargs={"batch_size": 8}, tolerance=TOLERANCES["float32"])
    kinds = [w.category for w in caught]
    assert kinds == [SymmetryWarning, SymmetryWarning, UserWarning, SymmetryWarning], kinds  # compare's once
    assert {w.filename for w in caught} == {__file__}, [(w.filename, w.lineno) for w in caught]


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


def test_pixels_given_as_unscaled_floats_warn_where_uint8_and_scaled_floats_do_not(rng, synth):
    """X.astype(np.float32) without / 255 (the notebooks' kind of silent failure: floats are taken as
    they are, so the sigmoid units saturate) says so at the caller's line; the same pixels as uint8
    (scaled in the kernels) or divided by 255 train to the same weights without a word."""
    from fastmlp import InputScaleWarning

    X, y = synth.digits(rng, 600)
    with pytest.warns(InputScaleWarning, match=r"whole numbers from 0 to 255 as float32.*X / 255") as said:
        unscaled = MLP([784, 16, 10], seed=0, backend="numpy").fit(X.astype(np.float32), y, progress=False)
    assert {w.filename for w in said} == {__file__}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pixels = MLP([784, 16, 10], seed=0, backend="numpy").fit(X, y, progress=False)
        scaled = MLP([784, 16, 10], seed=0, backend="numpy").fit(X.astype(np.float32) / 255, y, progress=False)
    assert pixels.loss == pytest.approx(scaled.loss, rel=1e-5)
    assert unscaled.accuracy[0] + 0.25 < 0.9 < pixels.accuracy[0]  # (on MNIST: 10-20% against 90% and more)
    with pytest.warns(InputScaleWarning):  # partial_fit too
        MLP([784, 16, 10], seed=0, backend="numpy").partial_fit(X.astype(np.float64), y, progress=False)


def test_unscaled_float_pixels_given_to_a_model_trained_on_pixels_warn_at_prediction_and_validation(rng, synth):
    """The same mistake the other way: a model trained on uint8 pixels (or floats / 255) predicts,
    scores and validates on X.astype(np.float32) as on inputs 255 times as bright; a model that
    trained on such floats itself (it was told at fit) is not told again at prediction."""
    from fastmlp import InputScaleWarning

    X, y = synth.digits(rng, 200)
    floats = X.astype(np.float32)
    model = MLP([784, 8, 10], seed=0, backend="numpy")
    model.fit(X, y, progress=False)
    for predicting in (model.predict, model.predict_proba, model.decision_function,
                       lambda X: model.evaluate(X, y), lambda X: model.score(X, y)):
        with pytest.warns(InputScaleWarning, match=r"^X holds whole numbers from 0 to 255 .* 255 times as bright"):
            predicting(floats)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(model.predict(floats / 255), model.predict(X))
    with pytest.warns(InputScaleWarning, match=r"^validation_data\[0\] holds whole numbers") as said:
        MLP([784, 8, 10], seed=0, backend="numpy").fit(X, y, validation_data=(floats, y), progress=False)
    assert len(said) == 1 and {w.filename for w in said} == {__file__}
    unscaled = MLP([784, 8, 10], seed=0, backend="numpy")
    with pytest.warns(InputScaleWarning) as said:  # X's, once: its validation data is as X is
        unscaled.fit(floats, y, validation_data=(floats, y), progress=False)
    assert len(said) == 1 and str(said[0].message).startswith("X holds")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        unscaled.predict(floats)


@pytest.mark.parametrize("case", ["standardised", "counts below 128", "a negative value", "a fraction", "above 255"])
def test_float_features_that_are_no_unscaled_pixels_do_not_warn(rng, synth, case):
    X, y = synth.digits(rng, 200)
    X = X.astype(np.float32)
    if case == "standardised":
        X = (X - X.mean(axis=0)) / (X.std(axis=0) + 1)
    elif case == "counts below 128":
        X = np.minimum(X, 127)
    elif case == "a negative value":
        X[5, 3] = -1
    elif case == "a fraction":
        X[7, 0] = 0.5
    else:
        X[9, 9] = 256
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        MLP([784, 4, 10], seed=0, backend="numpy").fit(X, y, batch_size=64, progress=False)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_per_sample_learning_rate_is_not_divided_by_the_dataset_size(rng, synth, backend):
    """lr=1/60000 per sample (the sum-vs-mean confusion) barely moves; the default learns."""
    X, y = synth.digits(rng, 600)
    tiny = MLP([784, 16, 10], seed=0, backend=backend).fit(X, y, lr=1 / 60000, progress=False)
    default = MLP([784, 16, 10], seed=0, backend=backend).fit(X, y, lr=0.1, progress=False)
    assert tiny.accuracy[0] < 0.5 < 0.9 < default.accuracy[0]


# each scheme's spread of the weights, as init_params' docstring states it: std of W[fan_in, fan_out]
INIT_STD = {
    "uniform": lambda fan_in, fan_out: 1 / np.sqrt(3 * fan_in),  # U(-1/sqrt(fan_in), +1/sqrt(fan_in))
    "normal": lambda fan_in, fan_out: 1 / np.sqrt(fan_in),
    "xavier": lambda fan_in, fan_out: np.sqrt(6 / (fan_in + fan_out)) / np.sqrt(3),
    "he": lambda fan_in, fan_out: np.sqrt(2 / fan_in),
}


@pytest.mark.parametrize("init", sorted(INIT_STD))
def test_every_random_init_gives_each_unit_weights_of_its_own_at_the_stated_spread(rng, synth, init):
    # one draw broadcast over a layer (rng.uniform(-limit, limit) with no size) would make every
    # hidden unit the same, and they stay so: mistake 2 without init="zeros" and without its
    # warning, which no test saw (audit 52)
    from fastmlp.network import Architecture, init_params

    arch = Architecture((784, 64, 32, 10), "relu" if init == "he" else "sigmoid")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no SymmetryWarning
        params = init_params(arch, init, seed=0)
    for W, b in arch.layout().views(params):
        fan_in, fan_out = W.shape
        assert len({column.tobytes() for column in W.T}) == fan_out and len({row.tobytes() for row in W}) == fan_in
        expected = INIT_STD[init](fan_in, fan_out)
        assert abs(W.std() / expected - 1) < 6 / np.sqrt(W.size), (W.shape, W.std(), expected)
        assert abs(W.mean()) < 6 * expected / np.sqrt(W.size)
        if init in ("uniform", "xavier"):
            assert np.abs(W).max() <= np.sqrt(3) * expected * (1 + 1e-6)
        assert not b.any()  # biases start at zero
    X, y = synth.digits(rng, 200)
    for backend in ("numpy", "numba"):
        model = MLP([784, 16, 10], init=init, activation="relu" if init == "he" else "sigmoid", seed=0,
                    backend=backend)
        model.fit(X, y, epochs=1, progress=False)
        assert len({column.tobytes() for column in model.weights_[0].T}) == 16, backend


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
    with pytest.raises(ValueError, match="indicator matrix of shape \\[20, 10\\].*use loss='cross_entropy'"):
        MLP([2, 3, 10], loss="binary_cross_entropy", backend="numpy").fit(X, np.zeros(20, int))


# --- the five setups of the original notebooks ---------------------------------------------


def first_step_follows_the_loss_gradient(rng, X, y, batch_size, lr, **network):
    """One step of a setup, in float64 on this test's backend, from fresh weights over the first
    ``batch_size`` samples (None: a full batch of 8), moves every bias and a sample of the
    weights (of inputs the batch lights) by -lr times the central-difference gradient of the
    batch's mean loss, the loss computed by the reference's forward pass alone. The setups
    below score 100% on their synthetic data even with the notebooks' wrong gradients (the
    softmax Jacobian's diagonal alone under MSE, a bias gradient taken from another layer),
    so each also checks its own first step."""
    from fastmlp import reference

    rows = 8 if batch_size is None else batch_size
    X = np.asarray(X[:rows], np.float64) / (255.0 if X.dtype == np.uint8 else 1.0)
    y = y[:rows]
    model = MLP(dtype="float64", seed=0, **network).initialize()
    start = model.params_.copy()
    model.partial_fit(X, y, epochs=1, batch_size=batch_size, lr=lr, shuffle=False, progress=False)
    moved = model.params_ - start

    arch = model.arch_
    layout = arch.layout()
    targets = y if arch.is_classifier else np.asarray(y, np.float64).reshape(rows, -1)

    def mean_loss(params):
        _, z = reference.forward(arch, params, X)
        return reference.loss_forward(z, reference.output_forward(z, arch.loss_code), targets, arch.loss_code).mean()

    biases = [i for layer, b0 in enumerate(layout.b_offsets) if b0 >= 0
              for i in range(int(b0), int(b0) + int(layout.sizes[layer + 1]))]
    lit = np.flatnonzero(X.any(axis=0))
    n_hidden = layout.sizes[1]
    first = [layout.w_offsets[0] + int(i) * n_hidden + int(j)
             for i, j in zip(rng.choice(lit, 100), rng.integers(0, n_hidden, 100))]
    rest = [int(i) for i in rng.integers(layout.w_offsets[1], start.size, 100)] if len(layout.w_offsets) > 1 else []
    checked = sorted(set(biases + first + rest))
    expected = np.empty(len(checked))
    for k, i in enumerate(checked):
        up, down = start.copy(), start.copy()
        up[i] += 1e-6
        down[i] -= 1e-6
        expected[k] = -lr * (mean_loss(up) - mean_loss(down)) / 2e-6
    np.testing.assert_allclose(moved[checked], expected, rtol=1e-4, atol=1e-7 * np.abs(expected).max())


def test_setup_784_20_10_sigmoid_softmax_mse_per_sample(rng, synth, backend):
    X, y = synth.digits(rng, 1500)
    network = dict(layers=[784, 20, 10], activation="sigmoid", loss="mse", output="softmax", backend=backend)
    first_step_follows_the_loss_gradient(rng, X, y, 1, 0.5, **network)
    model = MLP(seed=0, **network)
    history = model.fit(X[:1000], y[:1000], epochs=3, batch_size=1, lr=0.5, progress=False)
    assert history.loss[-1] < history.loss[0]
    assert model.score(X[1000:], y[1000:]) > 0.9


def test_setup_784_10_10_relu_full_batch(rng, synth, backend):
    X, y = synth.digits(rng, 1500)
    first_step_follows_the_loss_gradient(rng, X, y, None, 0.5, layers=[784, 10, 10], activation="relu", backend=backend)
    model = MLP([784, 10, 10], activation="relu", seed=0, backend=backend)
    history = model.fit(X[:1000], y[:1000], epochs=60, batch_size=None, lr=0.5, progress=False)
    assert history.loss[-1] < 0.5 * history.loss[0]
    assert model.score(X[1000:], y[1000:]) > 0.9


def test_setup_784_128_10_sigmoid_without_biases(rng, synth, backend):
    X, y = synth.digits(rng, 1500)
    first_step_follows_the_loss_gradient(rng, X, y, 1, 0.1, layers=[784, 128, 10], activation="sigmoid", bias=False,
                                         backend=backend)
    model = MLP([784, 128, 10], activation="sigmoid", bias=False, seed=0, backend=backend)
    model.fit(X[:1000], y[:1000], epochs=2, batch_size=1, lr=0.1, progress=False)
    assert all(b is None for b in model.biases_)
    assert model.score(X[1000:], y[1000:]) > 0.9


def test_setup_2_3_1_regression(rng, backend):
    X = rng.uniform(-1, 1, size=(800, 2))
    y = np.sin(np.pi * X[:, 0]) + 0.5 * X[:, 1]
    first_step_follows_the_loss_gradient(rng, X, y, 1, 0.1, layers=[2, 3, 1], activation="tanh", loss="mse",
                                         backend=backend)
    model = MLP([2, 3, 1], activation="tanh", loss="mse", seed=0, backend=backend, dtype="float64")
    history = model.fit(X[:600], y[:600], epochs=200, batch_size=8, lr=0.1, progress=False)
    mse = float(((model.predict(X[600:])[:, 0] - y[600:]) ** 2).mean())
    assert mse < 0.05 * y.var()
    assert model.score(X[600:], y[600:]) > 0.95
    assert history.accuracy == [None] * 200  # regression has no accuracy (it was 0 each epoch)


def test_setup_784_128_10_relu_mini_batch(rng, synth, backend):
    X, y = synth.digits(rng, 1500)
    first_step_follows_the_loss_gradient(rng, X, y, 32, 0.1, layers=[784, 128, 10], activation="relu", backend=backend)
    model = MLP([784, 128, 10], activation="relu", seed=0, backend=backend)
    model.fit(X[:1000], y[:1000], epochs=3, batch_size=32, lr=0.1, progress=False)
    assert model.score(X[1000:], y[1000:]) > 0.9


@pytest.mark.mnist
@pytest.mark.slow
def test_full_mnist_reference_reaches_95_percent_in_one_epoch(mnist):
    X_train, y_train, X_test, y_test = mnist
    model = MLP([784, 128, 10], activation="sigmoid", loss="cross_entropy", seed=0, backend="numpy")
    model.fit(X_train, y_train, epochs=1, batch_size=1, lr=0.1, progress=False)
    assert model.score(X_test, y_test) >= 0.95


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="the numba backend's warm-up (nothing compiles under NUMBA_DISABLE_JIT=1)")
def test_partial_fit_warms_up_once_per_kind_of_call(rng, synth, monkeypatch):
    # each call trained two samples on a copy of the weights first, to compile or load the
    # kernels: 0.14-0.16 ms, a sixth of a partial_fit of 32 samples once they were loaded (session 60)
    import pickle

    from fastmlp import _numba_backend

    monkeypatch.setenv("FASTMLP_BACKGROUND_COMPILE", "0")  # (a cold cache's second process: below)
    X, y = synth.blobs(rng, 96, 20, 3)
    model = MLP([20, 8, 3], seed=0)
    model.partial_fit(X[:32], y[:32], batch_size=8, progress=False)
    warmed, inside = [], []
    backend = _numba_backend.NumbaBackend
    warmup, train_chunk = backend.warmup, backend.train_chunk

    def watched_warmup(self, *args, **kwargs):
        inside.append(True)
        try:
            return warmup(self, *args, **kwargs)
        finally:
            inside.pop()

    def watched_train_chunk(self, *args, **kwargs):
        if inside:
            warmed.append(True)
        return train_chunk(self, *args, **kwargs)

    monkeypatch.setattr(backend, "warmup", watched_warmup)
    monkeypatch.setattr(backend, "train_chunk", watched_train_chunk)

    def warmups(*calls):
        warmed.clear()
        for X_call, batch_size, options in calls:
            model.partial_fit(X_call, y[:len(X_call)], batch_size=batch_size, progress=False, **options)
        return len(warmed)

    assert warmups((X[32:64], 8, {}), (X[64:], 8, {}), (X[32:64], 8, {"lr": 0.05})) == 0
    # other kernels: per-sample SGD, another input dtype; a model unpickled (in another process)
    assert warmups((X[32:64], 1, {}), (X[32:64], 1, {})) == 1
    pixels = np.clip(np.abs(X) * 40, 0, 255).astype(np.uint8)  # (X is float32)
    assert warmups((pixels[32:64], 8, {}), (pixels[64:], 8, {})) == 1
    model = pickle.loads(pickle.dumps(model))
    assert warmups((X[32:64], 8, {}), (X[64:], 8, {})) == 1

    # a warm-up on the interpreted kernel while a second process compiles (this call's, or an
    # earlier call's for other inputs: audit 63) is not the last: the call after it loads the kernel
    class Compiling:  # stands in for that process, still running
        fastmlp_claims = None  # (share: nothing to claim)

        def poll(self):
            return None

    model.backend_._parallel_compiling = Compiling()
    model.backend_._warmed.clear()
    assert warmups((X[32:64], 8, {}), (X[64:], 8, {})) == 2
    model.backend_._parallel_compiling = None  # (it ended: the kernel is in the cache)
    assert warmups((X[32:64], 8, {}), (X[64:], 8, {})) == 1


def test_the_inference_kernel_compiles_when_first_needed_and_counts_as_compile_time(rng, synth):
    X, y = synth.blobs(rng, 64, 20, 3)
    # no validation data: training needs no inference, so the fit leaves it to the first prediction
    model = MLP([20, 8, 3], seed=0)
    model.fit(X, y, epochs=1, batch_size=4, progress=False)
    assert model.backend_._inference_ready == set()
    before = model.compile_seconds_
    model.predict(X)
    assert model.backend_._inference_ready == {("float32", False)} and model.compile_seconds_ > before
    after_first = model.compile_seconds_
    model.predict(X)
    assert model.compile_seconds_ == after_first  # compiled (or loaded) once per model and input dtype
    # another input dtype is another compile: it was counted as prediction (audit 63)
    model.predict(np.clip(np.abs(X) * 40, 0, 255).astype(np.uint8))
    assert model.backend_._inference_ready == {("float32", False), ("uint8", False)} and model.compile_seconds_ > after_first
    # a fit that evaluates while it trains warms it up with the training kernels
    watched = MLP([20, 8, 3], seed=0)
    watched.fit(X, y, epochs=1, batch_size=4, validation_fraction=0.25, progress=False)
    assert watched.backend_._inference_ready == {("float32", False)}


def test_a_model_memory_mapped_by_joblib_trains_on(tmp_path):
    # joblib.load(mmap_mode="r") gives read-only arrays (weights, optimizer state, the backend's
    # counters, early stopping's snapshots): partial_fit must go on as from a pickled copy
    import pickle

    joblib = pytest.importorskip("joblib")
    rng = np.random.default_rng(0)
    X, y = rng.random((120, 6)).astype(np.float32), rng.integers(0, 3, 120)
    model = MLP([6, 5, 3], seed=0)
    model.fit(X, y, epochs=3, batch_size=8, momentum=0.9, validation_fraction=0.2, early_stopping=1, lr=2.0)
    joblib.dump(model, tmp_path / "model.joblib")
    expected = pickle.loads(pickle.dumps(model))
    expected.partial_fit(X, y, epochs=2)
    loaded = joblib.load(tmp_path / "model.joblib", mmap_mode="r")
    loaded.partial_fit(X, y, epochs=2)
    np.testing.assert_array_equal(loaded.params_, expected.params_)


def test_a_model_shows_the_arguments_it_was_made_with_and_what_it_trained():
    # a notebook showed <fastmlp.model.MLP at 0x7f90dd226e50> (audit 25)
    assert repr(MLP()) == "MLP()"
    assert repr(MLP([784, 64, 10], activation="relu", seed=3)) == "MLP(layers=[784, 64, 10], activation='relu', seed=3)"
    assert repr(MLP((2, 3, 1), loss="mse", dtype="float64", bias=False)) == \
        "MLP(layers=[2, 3, 1], loss='mse', bias=False, dtype='float64')"
    model = MLP([12, 8, 3], backend="numpy")
    X = np.random.default_rng(0).random((20, 12))
    model.fit(X, np.arange(20) % 3, epochs=2, progress=False)
    assert repr(model) == "MLP(layers=[12, 8, 3], backend='numpy') (2 epochs trained)"
    # NumPy's integers as plain ones; a size fit refuses as it is (int() showed 8.5 as 8; audit 51)
    assert repr(MLP(np.array([784, 64, 10]))) == "MLP(layers=[784, 64, 10])"
    assert repr(MLP([20, 8.5, 3])) == "MLP(layers=[20, 8.5, 3])"


@pytest.mark.parametrize("call, name", [
    (lambda model, X, y: model.save(123), "path"),
    (lambda model, X, y: MLP.load(None), "path"),
    (lambda model, X, y: model.fit(X, y, epochs=1, progress=False, checkpoint_path=123), "checkpoint_path"),
    # open() takes an int for a file descriptor: read_idx(0) read the caller's stdin and read_idx(1)
    # closed its stdout, read_csv(False) closed stdin (audit 60); 12345 is no open descriptor here
    (lambda model, X, y: fastmlp.read_idx(12345), "path"),
    (lambda model, X, y: fastmlp.data.read_idx_images(12345), "path"),
    (lambda model, X, y: fastmlp.data.read_idx_labels(12345), "path"),
    (lambda model, X, y: fastmlp.read_csv(12345), "path"),
    (lambda model, X, y: fastmlp.load_mnist(3), "data_dir"),
    (lambda model, X, y: fastmlp.load_dataset("mnist", 3), "data_dir"),
    (lambda model, X, y: fastmlp.data.load_test_set("mnist", 3.0), "data_dir"),
])
def test_a_path_argument_that_is_not_a_path_is_named(call, name):
    # os.fsdecode's "expected str, bytes or os.PathLike object, not int" named no argument (audit 51)
    X, y = np.random.default_rng(0).random((20, 4)), np.arange(20) % 2
    model = MLP([4, 3, 2], backend="numpy")
    model.fit(X, y, epochs=1, progress=False)
    with pytest.raises(TypeError, match=f"^{name} must be a file path \\(str, bytes or os.PathLike\\); got "):
        call(model, X, y)


def test_a_history_shows_a_summary_of_its_run():
    # it showed every list in full, each value to 17 digits: 9 lists of 100 numbers after 100 epochs
    model = MLP([12, 8, 3], backend="numpy")
    X = np.random.default_rng(0).random((40, 12))
    history = model.fit(X, np.arange(40) % 3, epochs=100, validation_fraction=0.25, early_stopping=100, progress=False)
    h = history
    assert repr(h) == (f"History(epochs 1-100, loss {h.loss[0]:.4g} -> {h.loss[-1]:.4g}, accuracy {h.accuracy[0]:.4g} -> "
                       f"{h.accuracy[-1]:.4g}, val_loss {h.val_loss[0]:.4g} -> {h.val_loss[-1]:.4g}, val_accuracy "
                       f"{h.val_accuracy[0]:.4g} -> {h.val_accuracy[-1]:.4g}, monitor='val_loss', best_epoch="
                       f"{h.best_epoch}, stopped_epoch=100, stop_reason='max epochs')")
    assert len(repr(h)) < 250
    regression = MLP([12, 1], loss="mse", backend="numpy").fit(X, X[:, 0], epochs=1, progress=False)
    assert repr(regression) == f"History(epoch 1, loss {regression.loss[0]:.4g}, monitor='loss', best_epoch=1, " \
                               f"stopped_epoch=1, stop_reason='max epochs')"
    assert repr(type(h)()) == "History(no epochs)"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_probability_of_exactly_one_half_is_class_0_everywhere(dtype):
    """MLP.predict said 1 at p = 0.5 (a bias-free network on a blank image), MLPClassifier and
    scikit-learn 0 (audit 33); argmax takes the first of equal probabilities, so a tie goes to
    the lower class there as well. The accuracy counts (NumPy's and the kernels') go by the same."""
    from fastmlp import kernels, network, reference

    X = np.random.default_rng(0).random((40, 5))
    y = (X[:, 0] > 0.5).astype(np.int64)
    binary = MLP([5, 4, 1], loss="binary_cross_entropy", activation="relu", bias=False, seed=0, dtype=dtype)
    binary.fit(X, y, epochs=1, progress=False)
    blank = np.zeros((2, 5))
    assert binary.predict_proba(blank).ravel().tolist() == [0.5, 0.5]
    assert binary.predict(blank).tolist() == [0, 0]
    assert binary.evaluate(blank, [0, 0])["accuracy"] == 1.0 and binary.evaluate(blank, [1, 1])["accuracy"] == 0.0
    multilabel = MLP([5, 4, 3], loss="binary_cross_entropy", activation="relu", bias=False, seed=0, dtype=dtype)
    multilabel.fit(X, np.stack([y, 1 - y, y], axis=1), epochs=1, progress=False)
    assert multilabel.predict(blank).tolist() == [[0, 0, 0], [0, 0, 0]]
    softmax = MLP([5, 4, 2], activation="relu", bias=False, seed=0, dtype=dtype)
    softmax.fit(X, y, epochs=1, progress=False)
    assert softmax.predict(blank).tolist() == [0, 0]
    # the counts alone, at p = 0.5 exactly
    z = np.zeros((2, 2), dtype)
    targets = np.array([[0, 0], [1, 0]], dtype)
    out = reference.output_forward(z, network.SIGMOID_BCE)
    assert reference.count_correct(out, targets, network.SIGMOID_BCE) == 1
    p, losses, correct = np.empty_like(z), np.empty(2, dtype), np.empty(2, np.int64)
    kernels.loss_forward(losses, correct, p, z, np.zeros(2, np.int64), targets, network.SIGMOID_BCE)
    assert correct.tolist() == [1, 0]


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_predictions_convert_the_inputs_a_chunk_at_a_time_to_the_same_bits(backend, monkeypatch):
    """predict and evaluate converted all of X to sparse rows at once (3-6x a dense X's memory
    more: audit 33); now PREDICT_ROWS rows at a time, a multiple of the inference blocks, so the
    outputs are the bits of one conversion of the whole."""
    from fastmlp import model as model_module

    rng = np.random.default_rng(5)
    X = rng.integers(0, 256, size=(9000, 30)).astype(np.uint8)
    X[:, ::3] = 0
    y = rng.integers(0, 4, size=9000)
    model = MLP([30, 8, 4], backend=backend, seed=2)
    model.fit(X[:500], y[:500], epochs=1, progress=False)
    whole = model.decision_function(X), model.predict_proba(X), model.predict(X), model.evaluate(X, y)
    prepared = []
    convert = model.backend_.for_inference
    monkeypatch.setattr(model.backend_, "for_inference", lambda X: prepared.append(len(X)) or convert(X))
    monkeypatch.setattr(model_module, "PREDICT_ROWS", 4096)  # (as it is: the test stands if it grows)
    chunked = model.decision_function(X), model.predict_proba(X), model.predict(X), model.evaluate(X, y)
    assert prepared == [4096, 4096, 808] * 4
    for got, want in zip(chunked[:3], whole[:3]):
        np.testing.assert_array_equal(got, want)
    assert chunked[3] == whole[3]


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="the numba backend's forward pass, on threads")
def test_each_rows_outputs_are_the_same_bits_alone_in_any_block_and_on_any_threads(monkeypatch):
    """The compiled forward pass takes dense layers a vector's worth of rows at a time
    (kernels.linear_forward, the rows after the last whole block one at a time) and shares a
    large prediction among threads: a row's logits must not depend on where it stands, how many
    rows came with it, or on how many threads."""
    import fastmlp.kernels as fastmlp_kernels

    rng = np.random.default_rng(4)
    X = rng.integers(0, 256, size=(3001, 30)).astype(np.uint8)
    X[rng.random(X.shape) < 0.7] = 0
    y = rng.integers(0, 5, size=len(X))
    model = MLP([30, 133, 70, 5], activation="tanh", seed=2, threads=2)  # (odd widths: the loops' tails)
    model.fit(X[:300], y[:300], epochs=1, batch_size=16, progress=False)
    model.decision_function(X[:1])  # (its first prediction warms the forward pass up, on one row)
    shares = []
    in_blocks = fastmlp_kernels.in_blocks
    monkeypatch.setattr(fastmlp_kernels, "in_blocks", lambda blocks, *args: shares.append(blocks) or in_blocks(blocks, *args))
    whole = model.decision_function(X)
    two = min(2, fastmlp.kernels._threads.available_cores(), numba.config.NUMBA_NUM_THREADS)
    assert shares == [two]
    # threads="auto" keeps within a caller's numba.set_num_threads(1), as training does (audit 64)
    auto = MLP([30, 133, 70, 5], activation="tanh", seed=2)
    auto.fit(X[:300], y[:300], epochs=1, batch_size=16, progress=False)
    auto.decision_function(X[:1])
    outer = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        shares.clear()
        np.testing.assert_array_equal(auto.decision_function(X), whole)
        assert shares == [1]
    finally:
        numba.set_num_threads(outer)
    shares.clear()
    auto.decision_function(X)
    assert shares == [min(two, outer)]
    for rows in (slice(0, 1), slice(1, 2), slice(2, 4), slice(3, 8), slice(1499, 1503), slice(2997, 3001)):
        np.testing.assert_array_equal(model.decision_function(X[rows]), whole[rows], err_msg=str(rows))
    one_thread = MLP([30, 133, 70, 5], activation="tanh", seed=2, threads=1)
    one_thread.fit(X[:300], y[:300], epochs=1, batch_size=16, progress=False)
    np.testing.assert_array_equal(one_thread.params_, model.params_)
    one_thread.decision_function(X[:1])
    shares.clear()
    np.testing.assert_array_equal(one_thread.decision_function(X), whole)
    assert shares == [1]
    reference_model = MLP([30, 133, 70, 5], activation="tanh", seed=2, backend="numpy").initialize()
    reference_model.params_ = model.params_
    np.testing.assert_allclose(reference_model.decision_function(X), whole, rtol=1e-5, atol=1e-5)


def test_the_validation_set_is_the_one_the_fit_started_with(rng, synth, backend):
    """Validation reads the rows as they are (for_inference): a caller's arrays changed during
    the fit (in on_epoch) changed the later epochs' scores; the set is the fit's own (audit 65)."""
    X, y = synth.digits(rng, 200)
    X_val, y_val = X[:60].copy(), y[:60].copy()
    histories = []
    for spoil in (False, True):
        def on_epoch(history, X_val=X_val, y_val=y_val, spoil=spoil):
            if spoil:
                X_val[:] = 0
                y_val[:] = 0
        model = MLP([784, 16, 10], seed=0, backend=backend)
        histories.append(model.fit(X, y, epochs=3, batch_size=16, validation_data=(X_val, y_val), on_epoch=on_epoch,
                                   progress=False).val_loss)
    assert histories[0] == histories[1]


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="the compiled forward pass's signatures")
def test_predictions_compile_one_forward_pass_for_writeable_and_read_only_inputs(rng, synth):
    """for_inference makes every input a read-only view: Numba types read-only arrays apart, and
    a read-only X's prediction compiled dense_rows_forward again, uncounted (audit 65)."""
    from fastmlp.kernels import linear

    X, y = synth.digits(rng, 64)
    model = MLP([784, 16, 10], seed=0)
    model.fit(X, y, epochs=1, batch_size=16, progress=False)
    model.predict(X)
    signatures = len(linear.dense_rows_forward.signatures)
    read_only = X.copy()
    read_only.flags.writeable = False
    model.predict(read_only)
    assert len(linear.dense_rows_forward.signatures) == signatures


def test_weights_only_on_the_held_out_samples_are_refused_naming_the_split():
    # "sample_weight is 0 for every sample", of weights that were not (audit 33)
    from fastmlp._validation import validation_split

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(200, 10)), rng.integers(0, 3, size=200)
    model = MLP([10, 4, 3], seed=0)
    model.fit(X, y, epochs=1, progress=False)
    before = model.params_.copy()
    _, held_out = validation_split(y, 0.5, model.run_seed, True)
    weights = np.zeros(200)
    weights[held_out[:3]] = 1.0
    with pytest.raises(ValueError, match=r"^sample_weight is 0 on every sample that trains: its nonzero weights are all "
                                         r"on the samples validation_fraction=0\.5 holds out; give weight"):
        model.fit(X, y, sample_weight=weights, validation_fraction=0.5, progress=False)
    np.testing.assert_array_equal(model.params_, before)


def test_a_checkpoint_file_another_run_wrote_stops_the_run(tmp_path):
    """Two runs given one checkpoint_path wrote it in turn, each replacing the other's run
    (audit 34): the run that finds the file written by another since its last write stops."""
    rng = np.random.default_rng(1)
    X, y = rng.random((64, 6)), rng.integers(0, 3, size=64)
    path = tmp_path / "run.npz"
    other = MLP([6, 4, 3], seed=9)
    other.fit(X, y, epochs=1, progress=False)

    def another_run_writes(history):
        if len(history.epoch) == 2:
            other.save(path)

    model = MLP([6, 4, 3], seed=0)
    with pytest.raises(fastmlp.CheckpointReplacedError,
                       match=rf"^{re.escape(str(path))} was replaced by another writer \(another process, or another "
                             r"model in this one\) since this run wrote it after "
                             r"epoch 2: two runs write the same file; give each its own"):
        model.fit(X, y, epochs=4, checkpoint_path=path, on_epoch=another_run_writes, progress=False)
    assert model.epochs_trained_ == 3  # (it stopped at epoch 3's checkpoint; the weights are its)
    np.testing.assert_array_equal(MLP.load(path).params_, other.params_)
    # a file there before the call is this run's to replace; one written during it is not
    model.fit(X, y, epochs=2, checkpoint_path=path, progress=False)
    assert MLP.load(path).epochs_trained_ == 2


def test_a_checkpoint_another_run_wrote_between_two_calls_of_a_run_stops_it(tmp_path):
    """Audit 79: the check took the file as the call found it, so a run's partial_fit replaced
    another run's file written since the run's last call (fit, b.fit on the same path, then
    a.partial_fit: b's run lost, silently). It now starts from what the run's own last write left."""
    rng = np.random.default_rng(1)
    X, y = rng.random((64, 6)), rng.integers(0, 3, size=64)
    path = tmp_path / "run.npz"
    a, b = MLP([6, 4, 3], seed=0), MLP([6, 4, 3], seed=1)
    a.fit(X, y, epochs=1, checkpoint_path=path, progress=False)
    b.fit(X, y, epochs=1, checkpoint_path=path, progress=False)  # (a new run: the file there is its to replace)
    with pytest.raises(fastmlp.CheckpointReplacedError, match=r"since this run wrote it after epoch 1: two runs"):
        a.partial_fit(X, y, epochs=1, checkpoint_path=path, progress=False)
    np.testing.assert_array_equal(MLP.load(path).params_, b.params_)  # b's file kept
    # the run's own file, or none there, or another path of the run: trains on as before
    b.partial_fit(X, y, epochs=1, checkpoint_path=path, progress=False)
    assert MLP.load(path).epochs_trained_ == 2
    path.unlink()
    b.partial_fit(X, y, epochs=1, checkpoint_path=path, progress=False)
    assert MLP.load(path).epochs_trained_ == 3
    a.fit(X, y, epochs=1, checkpoint_path=path, progress=False)  # a new run of a replaces the file, as fit does
    assert MLP.load(path).epochs_trained_ == 1


def test_the_runs_own_save_to_its_checkpoint_path_is_not_another_writer(tmp_path):
    # on_epoch saving the model to its own checkpoint_path stopped the run with "replaced by another
    # process" (audit 38)
    rng = np.random.default_rng(1)
    X, y = rng.random((64, 6)), rng.integers(0, 3, size=64)
    path = tmp_path / "run.npz"
    model = MLP([6, 4, 3], seed=0)
    model.fit(X, y, epochs=3, checkpoint_path=path, on_epoch=lambda history: model.save(path), progress=False)
    assert model.epochs_trained_ == 3 and MLP.load(path).epochs_trained_ == 3


@pytest.mark.parametrize("again", ["fit", "partial_fit"])
def test_a_training_call_of_the_model_from_its_own_on_epoch_is_refused(rng, synth, again):
    """fit (or partial_fit) of the model from its own on_epoch replaced the run under the running
    call: it returned a 3-epoch history while the model held the inner 1-epoch run (partial_fit:
    the call trained 2 of its 3 epochs), silently (audit 38). Refused, the call ends there, as with
    any error of on_epoch; a copy of the model may train."""
    import copy

    X, y = synth.blobs(rng, 60, 5, 3)
    model = MLP([5, 4, 3], seed=0)
    copies = []

    def train_again(history):
        copies.append(copy.deepcopy(model))
        copies[-1].fit(X, y, epochs=2, progress=False)  # not this model: it trains
        getattr(model, again)(X, y, epochs=1, progress=False)

    with pytest.raises(RuntimeError, match=r"^a fit or partial_fit of this MLP is already running \(this call came "
                                           r"from its on_epoch, or from another thread\)"):
        model.fit(X, y, epochs=3, on_epoch=train_again, progress=False)
    assert model.history_.epoch == [1] and model.epochs_trained_ == 1
    assert copies[0].history_.epoch == [1, 2]
    model.fit(X, y, epochs=2, progress=False)  # once the call has returned
    assert model.history_.epoch == [1, 2]


@pytest.mark.parametrize("batch_size", [1, 16])
def test_only_mini_batch_training_gets_the_rows_part_pointers(batch_size, monkeypatch):
    """The part pointers (4 x 8 bytes a row) were built for every fit and prediction, though only
    mini-batch training reads them: a million 4-feature float32 rows took twice their own size in
    pointers (audit 36). Without them, per-sample training gives the same bits; validation and
    predictions convert nothing (``for_inference``: the rows as they are), with the bits of the
    CSR rows."""
    from fastmlp import _numba_backend

    rng = np.random.default_rng(3)
    X, y = rng.random((300, 12)), rng.integers(0, 3, size=300)
    X[X < 0.4] = 0
    made, read = [], []
    prepare = _numba_backend.NumbaBackend.prepare
    for_inference = _numba_backend.NumbaBackend.for_inference

    def recording(self, X, *, batches=True, compiled=None):
        data = prepare(self, X, batches=batches, compiled=compiled)
        made.append((len(X), data.part_ptr is not None))
        return data

    monkeypatch.setattr(_numba_backend.NumbaBackend, "prepare", recording)
    monkeypatch.setattr(_numba_backend.NumbaBackend, "for_inference",
                        lambda self, X: read.append(len(X)) or for_inference(self, X))
    model = MLP([12, 8, 3], seed=0, threads=1)
    model.fit(X, y, epochs=2, batch_size=batch_size, validation_fraction=0.2, progress=False)
    predicted = model.predict_proba(X)
    assert made == [(240, batch_size > 1)]  # training
    assert read == [60, 1, 300], read  # validation, its warm-up (one row), prediction
    # and the same bits as with the pointers everywhere, and CSR rows for validation and predictions
    monkeypatch.setattr(_numba_backend.NumbaBackend, "prepare",
                        lambda self, X, *, batches=True, compiled=None: prepare(self, X, batches=True, compiled=compiled))
    monkeypatch.setattr(_numba_backend.NumbaBackend, "for_inference", lambda self, X: prepare(self, X, batches=True))
    again = MLP([12, 8, 3], seed=0, threads=1)
    again.fit(X, y, epochs=2, batch_size=batch_size, validation_fraction=0.2, progress=False)
    np.testing.assert_array_equal(again.params_, model.params_)
    np.testing.assert_array_equal(again.predict_proba(X), predicted)
    assert again.history_.val_loss == model.history_.val_loss


@pytest.mark.parametrize("method", ["predict", "predict_proba", "decision_function", "evaluate", "score"])
def test_inference_reads_the_network_once_while_a_fit_in_another_thread_replaces_it(rng, synth, method):
    """A fit in another thread that builds another network replaces arch_, backend_ and params_ one
    at a time. Inference reads them once (the network it checked X against is the one it runs):
    it read backend_ and params_ again after checking X, and with another network's (other layers)
    the kernels read past the arrays' ends and the process crashed (audit 38). Here the swap comes
    in the middle of the call (as the inputs are converted), to a network of the same shapes, so
    that the old code gives the other network's answers rather than a crash."""
    X, y = synth.blobs(rng, 300, 12, 3)
    model, other = MLP([12, 8, 3], seed=0), MLP([12, 8, 3], seed=1)
    model.fit(X, y, epochs=2, batch_size=4, progress=False)
    other.fit(X, (y + 1) % 3, epochs=2, batch_size=4, progress=False)  # other answers
    args = (X, y) if method in ("evaluate", "score") else (X,)
    expected = getattr(model, method)(*args)
    prepare = model.backend_.for_inference

    def swapped_in_the_middle(*prepare_args, **kwargs):
        model.arch_, model.backend_, model.params_ = other.arch_, other.backend_, other.params_
        return prepare(*prepare_args, **kwargs)

    model.backend_.for_inference = swapped_in_the_middle
    got = getattr(model, method)(*args)
    assert not np.array_equal(getattr(other, method)(*args), expected)
    if isinstance(expected, dict):
        assert got == expected
    else:
        np.testing.assert_array_equal(got, expected)


def test_inference_refuses_a_network_caught_half_replaced(rng, synth):
    # backend_ read before a fit elsewhere replaced it, params_ after: a RuntimeError that says so
    X, y = synth.blobs(rng, 100, 12, 3)
    model, wider = MLP([12, 8, 3], seed=0), MLP([12, 9, 3], seed=0)
    model.fit(X, y, epochs=1, progress=False)
    wider.fit(X, y, epochs=1, progress=False)

    class HalfReplaced(MLP):
        reads = 0

        @property
        def backend_(self):
            HalfReplaced.reads += 1
            return wider.backend_ if HalfReplaced.reads == 1 else self.__dict__["backend_"]

        @backend_.setter
        def backend_(self, value):
            self.__dict__["backend_"] = value

    half = HalfReplaced([12, 8, 3], seed=0)
    half.__dict__.update({name: value for name, value in model.__dict__.items()})
    with pytest.raises(RuntimeError, match="network was replaced while it was being used"):
        half.predict(X)
    np.testing.assert_array_equal(half.predict(X), model.predict(X))  # the next call reads it whole


def test_inference_during_a_training_call_names_the_weights_own_fault(rng, synth):
    # from on_epoch (a training call running): weights of the right shape that the checks refuse
    # are that, not "a network replaced"
    X, y = synth.blobs(rng, 60, 5, 3)
    model = MLP([5, 4, 3], seed=0)
    model.fit(X, y, epochs=1, progress=False)
    raised = []

    def predict_with_nan_weights(history):
        model.params_[0] = np.nan
        with pytest.raises(ValueError, match="params_ contains NaN or infinity") as error:
            model.predict(X)
        raised.append(error)

    model.partial_fit(X, y, epochs=1, on_epoch=predict_with_nan_weights, progress=False)
    assert len(raised) == 1


def test_the_lists_of_parameters_follow_the_signatures():
    # the constructor's names were written five times over (repr, get_params, checkpoint, sweeps)
    # and fit's defaults twice (FIT_DEFAULTS, the signature): a name added in one place would not
    # be saved, swept or shown (audit 42)
    import inspect

    from fastmlp import checkpoint, model, sweeps

    constructor = [name for name in inspect.signature(MLP.__init__).parameters if name != "self"]
    assert list(model.MODEL_PARAMS) == list(checkpoint.MODEL_KEYS) == list(sweeps.MODEL_PARAMS) == constructor
    assert list(MLP().get_params()) == constructor
    fit = inspect.signature(MLP.fit).parameters
    assert {name: fit[name].default for name in model.FIT_DEFAULTS} == model.FIT_DEFAULTS
    kept = [name for name, parameter in inspect.signature(MLP.partial_fit).parameters.items()
            if parameter.default is model.RUN]
    assert sorted(kept) == sorted(model.FIT_DEFAULTS)
    assert repr(MLP(layers=(784, 128, 10))) == repr(MLP()) and "layers" in repr(MLP(layers=[784, 64, 10]))


def test_small_data_is_fingerprinted_without_a_thread(rng, synth, monkeypatch):
    """Each fit and partial_fit call started a thread to fingerprint the data: 0.6 ms a call, a
    third of an epoch of an estimator with early stopping on 500 samples (one call an epoch:
    audit 48). Below BACKGROUND_BYTES it is computed in place, to the same record."""
    from fastmlp import model as model_module

    X, y = synth.blobs(rng, 50, 6, 3)
    started = []

    class Counting(model_module.ThreadPoolExecutor):
        def __init__(self, *args, **kwargs):
            started.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(model_module, "ThreadPoolExecutor", Counting)
    small = MLP([6, 4, 3], backend="numpy", seed=1)
    small.fit(X, y, batch_size=10, progress=False)
    assert started == []
    monkeypatch.setattr(model_module, "BACKGROUND_BYTES", 0)
    large = MLP([6, 4, 3], backend="numpy", seed=1)
    large.fit(X, y, batch_size=10, progress=False)
    assert started == [1]
    assert small.data_fingerprint_ == large.data_fingerprint_ == model_module.data_fingerprint(X, y)


def test_the_data_fingerprint_covers_the_labels_and_the_samples(rng, synth):
    """A checkpoint's record of its data tells a resume on other data from the run's own: the
    same samples relabelled, or the same labels on other samples, are other data (a fingerprint
    of X alone took relabelled data for the run's; audit 73)."""
    from fastmlp.model import data_fingerprint

    X, y = synth.blobs(rng, 50, 6, 3)
    relabelled = y.copy()
    relabelled[0] = (y[0] + 1) % 3
    moved = X.copy()
    moved[0, 0] += 1
    assert data_fingerprint(X, y) == data_fingerprint(X.copy(), y.copy())
    assert data_fingerprint(X, relabelled) != data_fingerprint(X, y)
    assert data_fingerprint(moved, y) != data_fingerprint(X, y)
