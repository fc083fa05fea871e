"""Training recipes: optimizer plumbing, schedules, warm-up, validation split, early stopping."""

import math

import numpy as np
import pytest

from fastmlp import MLP, DivergenceError, TrainingInterrupted, optim, trainer
from fastmlp._validation import validation_split
from fastmlp.backends import make_backend
from fastmlp.network import Architecture, init_params

LR = 0.2


# --- schedules -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "schedule, epoch, kwargs, expected",
    [
        (dict(name="constant"), 7, {}, LR),
        (dict(name="exponential", decay=0.5), 3, {}, LR / 8),
        (dict(name="step", decay=0.5), 9, {}, LR),
        (dict(name="step", decay=0.5), 10, {}, LR / 2),
        (dict(name="step", decay=0.1), 25, {}, LR * 0.1**2),
        (dict(name="step", decay=0.5, step_epochs=2), 1, {}, LR),
        (dict(name="step", decay=0.5, step_epochs=2), 5, {}, LR / 4),
        (dict(name="step", decay=0.5, step_epochs=1), 3, {}, LR / 8),
        (dict(name="cosine", horizon=4), 0, {}, LR),
        (dict(name="cosine", horizon=4), 2, {}, LR / 2),
        (dict(name="cosine", horizon=3), 1, {}, LR * 0.75),
        (dict(name="invscaling", power_t=0.5), 5, {"samples_before": 99}, LR / 10),
        (dict(name="invscaling", power_t=0.25), 0, {"samples_before": 0}, LR),
        (dict(name="invscaling", power_t=1.0), 1, {"samples_before": 3}, LR / 4),
        (dict(name="adaptive"), 4, {"reductions": 2}, LR / 25),
        (dict(name="constant", warmup_epochs=3), 0, {}, LR / 4),
        (dict(name="constant", warmup_epochs=3), 2, {}, LR * 3 / 4),
        (dict(name="constant", warmup_epochs=3), 3, {}, LR),
        (dict(name="exponential", decay=0.5, warmup_epochs=2), 1, {}, LR / 2 * 2 / 3),
        (dict(name="invscaling", power_t=0.5, warmup_epochs=1), 0, {"samples_before": 8}, LR / 3 / 2),
    ],
)
def test_schedule_formulas(schedule, epoch, kwargs, expected):
    assert trainer.Schedule(LR, **schedule).rate(epoch, **kwargs) == pytest.approx(expected, rel=1e-12)


def test_invscaling_counts_the_samples_trained_before_each_epoch(rng, synth):
    """t is the run's sample count: n per epoch here (the split's training part), carried on
    by partial_fit rather than restarted."""
    X, y = synth.digits(rng, 100)
    model = MLP([784, 8, 10], seed=0, backend="numpy")
    model.fit(X, y, epochs=2, batch_size=10, lr=LR, lr_schedule="invscaling", power_t=0.5,
              validation_fraction=0.2, progress=False)
    model.partial_fit(X, y, epochs=1, progress=False)
    assert model.history_.lr == pytest.approx([LR, LR / math.sqrt(81), LR / math.sqrt(161)], rel=1e-12)
    assert model.optimizer_state_.counters[optim.SAMPLES] == 240


def test_warmup_ramps_the_scheduled_rate(rng, synth):
    X, y = synth.digits(rng, 50)
    history = MLP([784, 4, 10], backend="numpy").fit(
        X, y, epochs=4, lr=0.3, lr_schedule="exponential", lr_decay=0.5, warmup_epochs=2, progress=False)
    assert history.lr == pytest.approx([0.3 / 3, 0.15 * 2 / 3, 0.075, 0.0375], rel=1e-12)


def test_partial_fit_continues_the_schedule_instead_of_restarting_it(rng, synth):
    X, y = synth.digits(rng, 60)
    kwargs = dict(batch_size=6, lr=LR, lr_schedule="exponential", lr_decay=0.5, momentum=0.5, progress=False)
    whole = MLP([784, 8, 10], seed=0, backend="numpy")
    whole.fit(X, y, epochs=3, **kwargs)
    pieces = MLP([784, 8, 10], seed=0, backend="numpy")
    pieces.fit(X, y, epochs=2, **kwargs)
    pieces.partial_fit(X, y, epochs=1, progress=False)
    assert pieces.history_.lr == whole.history_.lr == pytest.approx([LR, LR / 2, LR / 4])
    np.testing.assert_array_equal(pieces.params_, whole.params_)


def test_cosine_anneals_over_the_horizon_fit_set(rng, synth):
    X, y = synth.digits(rng, 40)
    model = MLP([784, 4, 10], backend="numpy")
    model.fit(X, y, epochs=2, lr=LR, lr_schedule="cosine", schedule_epochs=4, progress=False)
    model.partial_fit(X, y, epochs=2, progress=False)
    assert model.history_.lr == pytest.approx([LR, LR * (1 + math.cos(math.pi / 4)) / 2, LR / 2,
                                               LR * (1 + math.cos(3 * math.pi / 4)) / 2])
    assert model.fit_options_["schedule_epochs"] == 4
    before = model.params_.copy()
    with pytest.raises(ValueError, match="anneals over the run's 4 epochs .* pass schedule_epochs >= 5"):
        model.partial_fit(X, y, epochs=1, progress=False)
    np.testing.assert_array_equal(model.params_, before)
    model.partial_fit(X, y, epochs=1, schedule_epochs=8, progress=False)  # a longer horizon from here on
    assert model.history_.lr[-1] == pytest.approx(LR * (1 + math.cos(4 * math.pi / 8)) / 2)
    with pytest.raises(ValueError, match="anneals over the run's 2 epochs"):
        MLP([784, 4, 10], backend="numpy").fit(X, y, epochs=3, lr_schedule="cosine", schedule_epochs=2)


# --- the optimizer reaches the backend, with its state ----------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        dict(momentum=0.9),
        dict(momentum=0.8, nesterov=True, weight_decay=1e-2),
        dict(optimizer="adam", lr=0.01, dropout=0.3, input_dropout=0.1),
        dict(optimizer="adam", lr=0.01, weight_decay=0.1, decoupled_weight_decay=True),
    ],
    ids=["momentum", "nesterov-decay", "adam-dropout", "adamw"],
)
def test_fit_trains_with_the_optimizer_and_its_state(rng, synth, options):
    """fit equals the backend driven by hand with the same Optimizer and a fresh State."""
    X, y = synth.digits(rng, 90)
    options = {"lr": 0.1, **options}
    model = MLP([784, 8, 10], seed=4, backend="numpy", dtype="float64")
    model.fit(X, y, epochs=2, batch_size=7, shuffle=False, progress=False, **options)

    lr = options.pop("lr")
    opt = optim.Optimizer(**options)
    arch = Architecture((784, 8, 10), dtype=np.float64)
    params = init_params(arch, "auto", 4)
    state = optim.State.fresh(opt, params, 4)
    backend = make_backend("numpy", arch)
    for _ in range(2):
        backend.train_chunk(params, X, y, np.arange(90, dtype=np.int64), lr, 7, opt, state)
    np.testing.assert_array_equal(model.params_, params)
    np.testing.assert_array_equal(model.optimizer_state_.slots, state.slots)
    np.testing.assert_array_equal(model.optimizer_state_.counters, state.counters)
    assert model.optimizer_state_.slots.shape == (opt.n_slots, params.size)
    assert list(model.optimizer_state_.counters[:2]) == [2 * 13, 2 * 90]
    # and the options made a difference: plain SGD ends elsewhere
    plain = MLP([784, 8, 10], seed=4, backend="numpy", dtype="float64")
    plain.fit(X, y, epochs=2, batch_size=7, shuffle=False, lr=lr, progress=False)
    assert np.abs(plain.params_ - model.params_).max() > 1e-6


def _rarely_lit(rng, rows=6000):
    """Four inputs lit in every row (the labels' source), twelve lit once each (the first layer's
    rows of those get one gradient and then none for, most of them, thousands of steps) and one
    faint input, 1e-33 in every row (its row's every step is below 1e-30)."""
    X = np.zeros((rows, 17), np.float32)
    X[:, :4] = rng.random((rows, 4))
    X[rng.choice(rows, 12, replace=False), np.arange(4, 16)] = 1.0
    X[:, 16] = 1e-33
    y = np.argmax(X[:, :3], axis=1)
    return X, y


@pytest.mark.parametrize("batch_size, options", [
    (1, dict(momentum=0.9)),  # per-sample: the first layer in modal coordinates
    (1, dict(momentum=0.98)),  # per-sample: too ill-conditioned for those, the first layer caught up lazily
    (1, dict(momentum=0.9, nesterov=True)),
    (1, dict(optimizer="adam", lr=0.01)),
    (2, dict(momentum=0.9)),
    (2, dict(momentum=0.9, nesterov=True)),
    (2, dict(optimizer="adam", lr=0.01)),
], ids=["per-sample momentum", "per-sample momentum 0.98", "per-sample nesterov", "per-sample adam",
        "batch 2 momentum", "batch 2 nesterov", "batch 2 adam"])
def test_the_compiled_optimizer_state_never_decays_into_subnormals(rng, batch_size, options):
    """A velocity (or Adam's m) whose gradient stays 0 decays by mu (b1) a step, below float32's
    smallest normal after ~800 steps at 0.9, where it stays for ever (0.9 times a few of the
    smallest subnormals rounds back to itself) and every step computes on it: Intel cores take a
    microcode assist each time (BENCHMARKS.md, session 62). The compiled steps flush a velocity
    below 1e-30 (Adam's m below its floor) to 0, whichever way it got there (a decay, a catch-up
    of idle steps, modal coordinates, a faint input's step). The NumPy reference, which does not,
    shows that the run takes its state there. (With weight decay the gradient is not 0: no such
    decay.)"""
    X, y = _rarely_lit(rng)
    options = {"lr": 0.05, **options}
    states = {}
    for backend in ("numba", "numpy"):
        model = MLP([17, 6, 3], activation="sigmoid", seed=1, backend=backend, threads=1)
        model.fit(X, y, epochs=1, batch_size=batch_size, progress=False, **options)
        states[backend] = np.abs(model.optimizer_state_.slots[0])
    tiny = np.finfo(np.float32).tiny
    assert np.any((states["numpy"] > 0) & (states["numpy"] < tiny))  # the reference's m or v went subnormal
    assert not np.any((states["numba"] > 0) & (states["numba"] < 1e-30))
    assert np.count_nonzero(states["numba"] == 0) > np.count_nonzero(states["numpy"] == 0)


@pytest.mark.parametrize("seed", [4, 5])
def test_each_epoch_trains_on_a_fresh_permutation_drawn_from_the_seed(rng, synth, seed):
    """fit(shuffle=True) equals the backend driven by hand on the documented stream: one
    permutation per epoch from default_rng(SeedSequence(seed, spawn_key=(1,))); a shuffle that
    ignored the seed, or repeated one order every epoch, would differ."""
    X, y = synth.digits(rng, 90)
    model = MLP([784, 8, 10], seed=seed, backend="numpy", dtype="float64")
    model.fit(X, y, epochs=3, batch_size=7, lr=0.1, progress=False)

    arch = Architecture((784, 8, 10), dtype=np.float64)
    params = init_params(arch, "auto", seed)
    opt = optim.Optimizer()
    state = optim.State.fresh(opt, params, seed)
    backend = make_backend("numpy", arch)
    stream = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,)))
    orders = [stream.permutation(90).astype(np.int64) for _ in range(3)]
    assert not np.array_equal(orders[0], orders[1])
    for order in orders:
        backend.train_chunk(params, X, y, order, 0.1, 7, opt, state)
    np.testing.assert_array_equal(model.params_, params)


def test_fit_starts_a_fresh_optimizer_state_and_partial_fit_keeps_it(rng, synth):
    X, y = synth.digits(rng, 60)
    kwargs = dict(batch_size=5, lr=0.05, momentum=0.9, dropout=0.2, progress=False)
    once = MLP([784, 8, 10], seed=1, backend="numpy")
    once.fit(X, y, epochs=2, **kwargs)
    again = MLP([784, 8, 10], seed=1, backend="numpy")
    again.fit(X, y, epochs=3, **kwargs)
    again.fit(X, y, epochs=2, **kwargs)  # a new run: no velocity, counters or dropout stream carried over
    np.testing.assert_array_equal(again.params_, once.params_)
    np.testing.assert_array_equal(again.optimizer_state_.counters, once.optimizer_state_.counters)

    pieces = MLP([784, 8, 10], seed=1, backend="numpy")
    pieces.fit(X, y, epochs=1, **kwargs)
    velocity = pieces.optimizer_state_.slots.copy()
    assert np.abs(velocity).max() > 0
    pieces.partial_fit(X, y, epochs=1, progress=False)
    np.testing.assert_array_equal(pieces.params_, once.params_)
    np.testing.assert_array_equal(pieces.optimizer_state_.slots, once.optimizer_state_.slots)


def test_partial_fit_keeps_the_runs_options_unless_told(rng, synth):
    X, y = synth.digits(rng, 40)
    model = MLP([784, 4, 10], backend="numpy")
    model.fit(X, y, epochs=1, batch_size=4, lr=0.05, momentum=0.9, weight_decay=1e-3, progress=False)
    model.partial_fit(X, y, epochs=1, progress=False)
    assert model.history_.lr == [0.05, 0.05]
    assert model.fit_options_["momentum"] == 0.9 and model.fit_options_["batch_size"] == 4
    model.partial_fit(X, y, epochs=1, lr=0.01, momentum=0.5, progress=False)
    assert model.history_.lr[-1] == 0.01 and model.fit_options_["momentum"] == 0.5
    assert model.optimizer_state_.counters[optim.STEPS] == 30


@pytest.mark.parametrize(
    "first, then, words",
    [
        (dict(momentum=0.9), dict(optimizer="adam", momentum=0.0), "optimizer='sgd' with momentum=0.9.*optimizer='adam'"),
        # (the run's momentum beside the new optimizer read "momentum applies to optimizer='sgd'":
        # an option the caller never passed; audit 27)
        (dict(momentum=0.9), dict(optimizer="adam"), "^partial_fit continues a run trained with optimizer='sgd' with "
                                                     "momentum=0.9, whose optimizer state does not fit optimizer='adam'"),
        (dict(), dict(momentum=0.9), "momentum=0, whose optimizer state does not fit .*momentum=0.9"),
        (dict(optimizer="adam"), dict(optimizer="sgd"), "optimizer='adam'.*start a new run with fit"),
    ],
)
def test_switching_the_optimizer_state_mid_run_is_refused(rng, synth, first, then, words):
    X, y = synth.digits(rng, 30)
    model = MLP([784, 4, 10], backend="numpy")
    model.fit(X, y, lr=0.01, progress=False, **first)
    before = model.params_.copy(), model.optimizer_state_.copy(), dict(model.fit_options_)
    with pytest.raises(ValueError, match=words):
        model.partial_fit(X, y, progress=False, **then)
    np.testing.assert_array_equal(model.params_, before[0])
    np.testing.assert_array_equal(model.optimizer_state_.slots, before[1].slots)
    assert model.fit_options_ == before[2]


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"momentum": 1.0}, ValueError, "momentum must be in \\[0, 1\\)"),
        ({"nesterov": True}, ValueError, "nesterov=True needs a momentum"),
        ({"optimizer": "adam", "nesterov": True, "momentum": 0.5}, ValueError, "Nesterov"),
        ({"optimizer": "rmsprop"}, ValueError, "optimizer must be one of"),
        ({"dropout": 1.0}, ValueError, "dropout must be in"),
        # the masks drop no unit at such a rate: the kernels trained without dropout, the
        # reference scaled every unit by 1 / (1 - rate) (float64 runs parted past compare's 1e-8)
        ({"dropout": 2.9e-8}, ValueError, "dropout=2.9e-08 is below the smallest rate the dropout masks draw"),
        ({"input_dropout": 1e-12}, ValueError, "input_dropout=1e-12 is below the smallest rate"),
        ({"power_t": -1}, ValueError, "power_t must be a finite number >= 0"),
        ({"warmup_epochs": -1}, ValueError, "warmup_epochs must be a non-negative integer"),
        ({"warmup_epochs": 1.5}, TypeError, "warmup_epochs"),
        ({"validation_fraction": 1.0}, ValueError, "validation_fraction must be in \\(0, 1\\)"),
        ({"validation_fraction": 0}, ValueError, "validation_fraction must be in \\(0, 1\\)"),
        ({"early_stopping": 0}, ValueError, "early_stopping must be a positive integer"),
        ({"early_stopping": True}, TypeError, "early_stopping"),
        ({"tol": -1e-3}, ValueError, "tol must be a finite number >= 0"),
        ({"n_iter_no_change": 0}, ValueError, "n_iter_no_change"),
        ({"schedule_epochs": 0}, ValueError, "schedule_epochs"),
        ({"lr_schedule": "onecycle"}, ValueError, "lr_schedule must be one of .*'invscaling', 'adaptive'"),
        ({"checkpoint_every": 2}, ValueError, "checkpoint_every needs checkpoint_path"),
        ({"checkpoint_path": "/no/such/directory/model.npz"}, ValueError, "directory '/no/such/directory' does not exist"),
        ({"validation_fraction": 0.2, "validation_data": "set below"}, ValueError, "validation_data or validation_fraction, not both"),
    ],
)
def test_bad_training_options_are_refused_before_anything_changes(rng, synth, kwargs, error, words):
    X, y = synth.digits(rng, 20)
    if kwargs.get("validation_data") == "set below":
        kwargs = {**kwargs, "validation_data": (X, y)}
    for method in ("fit", "partial_fit"):
        model = MLP([784, 4, 10], backend="numpy")
        model.fit(X, y, progress=False)
        before = model.params_.copy()
        with pytest.raises(error, match=words):
            getattr(model, method)(X, y, progress=False, **kwargs)
        np.testing.assert_array_equal(model.params_, before)
        assert model.epochs_trained_ == 1


@pytest.mark.parametrize("kwargs, words", [
    ({"beta1": 0.5}, "beta1=0.5 has no effect: it applies to optimizer='adam'; got optimizer='sgd'"),
    ({"eps": 1e-6, "momentum": 0.9}, "eps=1e-06 has no effect: it applies to optimizer='adam'"),
    ({"power_t": 0.9, "lr_schedule": "step"}, "power_t=0.9 has no effect: it applies to lr_schedule='invscaling'"),
    ({"lr_decay": 0.3}, "lr_decay=0.3 has no effect: it applies to lr_schedule='exponential' or 'step'"),
    ({"n_iter_no_change": 3}, "n_iter_no_change=3 has no effect: it applies to lr_schedule='adaptive'"),
    ({"tol": 1e-3}, "tol=0.001 has no effect: it applies to lr_schedule='adaptive' and to early_stopping"),
    ({"decoupled_weight_decay": True}, "decoupled_weight_decay=True has no effect: it needs a weight_decay above 0"),
])
def test_an_option_the_others_leave_without_effect_is_a_warning(rng, synth, kwargs, words):
    """fit(beta1=0.5) with SGD trained as if it were not there, without a word; the command line
    refuses it (audit 45). A warning, as a sweep's trials may set it for the optimizers that use it."""
    X, y = synth.digits(rng, 20)
    model = MLP([784, 4, 10], backend="numpy")
    with pytest.warns(UserWarning, match=words) as caught:
        model.fit(X, y, progress=False, **kwargs)
    assert caught[0].filename == __file__  # pointing at the call
    with pytest.warns(UserWarning, match=words):
        model.partial_fit(X, y, progress=False, **kwargs)


@pytest.mark.parametrize("kwargs", [{"beta1": 0.5, "optimizer": "adam"}, {"power_t": 0.9, "lr_schedule": "invscaling"},
                                    {"tol": 1e-3, "early_stopping": 2, "validation_fraction": 0.25}, {"beta1": 0.9},
                                    {"beta1": np.float32(0.9)}])  # (a default read from a float32 array)
def test_an_option_that_takes_effect_or_keeps_its_default_is_no_warning(rng, synth, kwargs):
    import warnings

    X, y = synth.digits(rng, 20)
    model = MLP([784, 4, 10], backend="numpy")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        model.fit(X, y, progress=False, **kwargs)
        model.partial_fit(X, y, progress=False)  # the run's options, not passed again: nothing said


def test_checking_an_option_against_its_default_says_no_overflow(rng, synth):
    # fit(lr=1e100) diverges with a DivergenceError; first, the check of which options were set
    # away from their defaults cast 1e100 to float32, and NumPy warned of an overflow in the cast,
    # a warning of fastmlp's own code (session 65, from the drop-in's divergence test)
    import warnings

    from fastmlp import DivergenceError

    X, y = synth.digits(rng, 20)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(DivergenceError):
            MLP([784, 4, 10], backend="numpy").fit(X, y, progress=False, lr=1e100, momentum=0.9)


# --- rollback of weights and optimizer state --------------------------------------------------


def test_divergence_rolls_back_the_optimizer_state_with_the_weights(rng):
    X = rng.normal(size=(4000, 4)).astype(np.float32)
    y = (X @ rng.normal(size=(4, 1)) * 10).astype(np.float32)
    model = MLP([4, 8, 1], activation="relu", loss="mse", seed=0, backend="numpy").initialize()
    real = model.backend_.train_chunk
    before_chunk = []

    def recording(params, data, targets, order, lr, batch_size, optimizer, state):
        before_chunk.append((params.copy(), state.copy()))
        return real(params, data, targets, order, lr, batch_size, optimizer, state)

    model.backend_.train_chunk = recording
    with pytest.raises(DivergenceError):
        model.partial_fit(X, y, epochs=3, batch_size=16, lr=5.0, momentum=0.9, progress=False)
    params, state = before_chunk[-1]
    np.testing.assert_array_equal(model.params_, params)
    np.testing.assert_array_equal(model.optimizer_state_.slots, state.slots)
    np.testing.assert_array_equal(model.optimizer_state_.counters, state.counters)


@pytest.mark.parametrize("early_stopping", [None, 2])
def test_a_divergence_error_pickles_and_copies_whole(rng, early_stopping):
    """joblib's workers (cross_val_score(n_jobs=2)) send it back pickled: its required keywords
    made that a TypeError, and the caller got joblib's BrokenProcessPool, not a ValueError
    (audit 49)."""
    import copy
    import pickle

    X = rng.normal(size=(400, 4)).astype(np.float32)
    y = (X @ rng.normal(size=(4, 1)) * 10).astype(np.float32)
    model = MLP([4, 8, 1], activation="relu", loss="mse", seed=0, backend="numpy")
    with pytest.raises(DivergenceError) as raised:
        model.fit(X, y, epochs=30, batch_size=16, lr=5.0, momentum=0.9, early_stopping=early_stopping, progress=False)
    error = raised.value
    for again in (pickle.loads(pickle.dumps(error)), copy.copy(error), copy.deepcopy(error)):
        assert type(again) is DivergenceError and isinstance(again, ValueError)
        assert again.args == error.args and vars(again) == vars(error)


def test_ctrl_c_rolls_back_the_optimizer_state_with_the_weights(rng, synth):
    X, y = synth.digits(rng, 20000)
    model = MLP([784, 8, 10], seed=0, backend="numpy").initialize()
    real = model.backend_.train_chunk
    after_chunk = []

    def interrupted_on_third_chunk(params, *args):
        state = args[-1]
        if len(after_chunk) == 2:
            params += 1.0  # half-done work that must be rolled back
            state.slots += 1.0
            state.counters += 7
            raise KeyboardInterrupt
        result = real(params, *args)
        after_chunk.append((params.copy(), state.copy()))
        return result

    model.backend_.train_chunk = interrupted_on_third_chunk
    with pytest.raises(TrainingInterrupted, match="after 16384 samples"):
        model.partial_fit(X, y, epochs=1, batch_size=64, momentum=0.9, dropout=0.1, progress=False)
    params, state = after_chunk[-1]
    np.testing.assert_array_equal(model.params_, params)
    np.testing.assert_array_equal(model.optimizer_state_.slots, state.slots)
    np.testing.assert_array_equal(model.optimizer_state_.counters, state.counters)
    assert model.optimizer_state_.counters[optim.SAMPLES] == 16384


# --- validation split --------------------------------------------------------------------------


def test_validation_split_is_seeded_disjoint_complete_and_stratified():
    y = np.repeat(np.arange(4), [50, 30, 15, 5])
    train, val = validation_split(y, 0.2, seed=3, stratify=True)
    assert len(val) == 20 and len(train) == 80
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(100))
    assert list(np.bincount(y[val], minlength=4)) == [10, 6, 3, 1]  # each class in proportion
    again_train, again_val = validation_split(y, 0.2, seed=3, stratify=True)
    np.testing.assert_array_equal(again_val, val)
    _, other_val = validation_split(y, 0.2, seed=4, stratify=True)
    assert set(other_val) != set(val)
    _, plain_val = validation_split(y, 0.2, seed=3, stratify=False)
    assert len(plain_val) == 20


def test_the_horizon_of_a_schedule_other_than_cosine_follows_the_runs_length(rng, synth):
    """Only cosine anneals over schedule_epochs; for the others the run's recorded horizon (what a
    checkpoint's resume goes by) is its length so far: partial_fit kept the first fit's (audit 73)."""
    X, y = synth.digits(rng, 20)
    model = MLP([784, 4, 10], backend="numpy")
    model.fit(X, y, epochs=3, progress=False)
    assert model.fit_options_["schedule_epochs"] == 3
    model.partial_fit(X, y, epochs=2, progress=False)
    assert model.fit_options_["schedule_epochs"] == 5 and model.epochs_trained_ == 5


def test_validation_split_rounds_up_and_gives_the_rows_left_over_to_the_largest_remainders():
    """ceil(fraction * n) rows held out; stratified, each class its floor of n_val * share and the
    rows left over to the largest remainders (a split of 20 of 100 rounds nothing; audit 73)."""
    y = np.repeat(np.arange(3), [5, 3, 2])
    for stratify in (False, True):
        train, val = validation_split(y, 0.25, seed=0, stratify=stratify)  # 2.5 rows: 3 held out
        assert len(val) == 3 and len(train) == 7
        np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(10))
    _, val = validation_split(y, 0.25, seed=0, stratify=True)
    # ideal shares 1.5, 0.9, 0.6: floors 1, 0, 0; the 2 rows left over to classes 1 and 2
    assert list(np.bincount(y[val], minlength=3)) == [1, 1, 1]


def test_a_validation_fraction_that_leaves_no_training_data_is_refused(rng, synth):
    X, y = synth.digits(rng, 3)
    with pytest.raises(ValueError, match="validation_fraction=0.9 of 3 samples holds out 3 and leaves no training sample"):
        MLP([784, 4, 10], backend="numpy").fit(X, y, validation_fraction=0.9)
    with pytest.raises(ValueError, match="of 1 sample holds out 1"):
        MLP([784, 4, 10], backend="numpy").fit(X[:1], y[:1], validation_fraction=0.01)


def test_validation_fraction_holds_the_split_out_of_training(rng, synth):
    X, y = synth.digits(rng, 100)
    model = MLP([784, 8, 10], seed=2, backend="numpy")
    history = model.fit(X, y, epochs=2, batch_size=5, validation_fraction=0.25, progress=False)
    train, val = validation_split(y, 0.25, seed=2, stratify=True)
    assert history.samples == [75, 75] and history.monitor == "val_loss"
    assert len(history.val_loss) == len(history.val_accuracy) == 2
    assert history.val_loss[-1] == pytest.approx(model.evaluate(X[val], y[val])["loss"], rel=1e-12)
    by_hand = MLP([784, 8, 10], seed=2, backend="numpy")
    by_hand.fit(X[train], y[train], epochs=2, batch_size=5, progress=False)
    np.testing.assert_array_equal(model.params_, by_hand.params_)


# --- early stopping and the adaptive schedule, on scripted losses -----------------------------


def scripted(model, losses):
    """Make the model's validation loss follow ``losses`` epoch after epoch."""
    calls = iter(losses)
    model._metrics = lambda data, y: {"loss": next(calls), "accuracy": 0.5}


def trained_epochs(model, X, y, losses, **kwargs):
    """fit with scripted validation losses; returns the weights and optimizer state after each epoch."""
    scripted(model, losses)
    after = {}

    def record():
        # (a run's last epoch has its best weights taken before its checkpoint: the epoch's own
        # are then the snapshot it goes on from)
        last = model.run_.last
        if last is not None and last.epoch == model.epochs_trained_:
            after[model.epochs_trained_] = (last.params.copy(), last.state.copy())
        else:
            after[model.epochs_trained_] = (model.params_.copy(), model.optimizer_state_.copy())

    real_train = trainer.train

    def spy(*args, on_epoch=None, **kw):
        def both():
            record()
            if on_epoch is not None:
                on_epoch()

        return real_train(*args, on_epoch=both, **kw)

    trainer.train = spy  # the model calls fastmlp.trainer.train
    try:
        model.fit(X, y, validation_data=(X[:10], y[:10]), progress=False, **kwargs)
    finally:
        trainer.train = real_train
    return after


def test_early_stopping_stops_after_patience_and_restores_the_best_epoch(rng, synth):
    X, y = synth.digits(rng, 40)
    model = MLP([784, 4, 10], backend="numpy")
    losses = [1.0, 0.9, 0.95, 0.91, 0.92, 0.5, 0.4]
    after = trained_epochs(model, X, y, losses, epochs=7, batch_size=4, momentum=0.9, early_stopping=3, tol=0.0)
    history = model.history_
    assert history.epoch == [1, 2, 3, 4, 5] and history.val_loss == losses[:5]
    assert history.stopped_epoch == 5 and history.best_epoch == 2 and model.epochs_trained_ == 5
    assert history.stop_reason == "early stopping: no improvement of val_loss by more than tol=0 for 3 epochs"
    np.testing.assert_array_equal(model.params_, after[2][0])
    np.testing.assert_array_equal(model.optimizer_state_.slots, after[2][1].slots)
    np.testing.assert_array_equal(model.optimizer_state_.counters, after[2][1].counters)
    assert model.run_.stopped == history.stop_reason


def test_the_checkpoint_written_at_the_stop_holds_the_best_weights(rng, synth, tmp_path):
    # The stopping epoch's own checkpoint (on_epoch) is written after the best weights are taken:
    # a run killed before the final write leaves a file that continues as the stopped run would.
    X, y = synth.digits(rng, 40)
    model = MLP([784, 4, 10], backend="numpy")
    saved = []
    model.save = lambda path: saved.append((model.run_.epochs_done, model.run_.stopped, model.params_.copy()))
    after = trained_epochs(model, X, y, [1.0, 0.9, 0.95, 0.91], epochs=6, batch_size=4, early_stopping=2, tol=0.0,
                           checkpoint_path=tmp_path / "run.npz", checkpoint_every=1)
    assert model.history_.stopped_epoch == 4 and [epoch for epoch, _, _ in saved] == [1, 2, 3, 4, 4]
    for epoch, stopped, params in saved[3:]:
        assert stopped is not None
        np.testing.assert_array_equal(params, after[2][0])
    assert not np.array_equal(saved[2][2], after[2][0])  # epoch 3's checkpoint: its own weights


def test_an_improvement_must_beat_tol_but_the_best_epoch_is_the_lowest_loss(rng, synth):
    X, y = synth.digits(rng, 40)
    model = MLP([784, 4, 10], backend="numpy")
    losses = [1.0, 0.95, 0.949, 0.9485, 0.2]
    after = trained_epochs(model, X, y, losses, epochs=5, batch_size=8, early_stopping=2, tol=0.01)
    # epoch 2 improves by 0.05 > tol; epochs 3 and 4 are lower but by less than tol: patience runs out
    assert model.history_.stopped_epoch == 4 and model.history_.best_epoch == 4
    assert "by more than tol=0.01 for 2 epochs" in model.history_.stop_reason
    np.testing.assert_array_equal(model.params_, after[4][0])


def test_a_loss_equal_to_the_best_leaves_the_earlier_epoch_the_best(rng, synth):
    # the first of equal losses stays the best (scikit-learn keeps the first of equal scores);
    # a later epoch taking it passed every other test (audit 21)
    X, y = synth.digits(rng, 40)
    model = MLP([784, 4, 10], backend="numpy")
    after = trained_epochs(model, X, y, [1.0, 0.5, 0.5, 0.7], epochs=4, batch_size=8, early_stopping=2, tol=0.0)
    assert model.history_.stopped_epoch == 4 and model.history_.best_epoch == 2
    np.testing.assert_array_equal(model.params_, after[2][0])
    assert not np.array_equal(after[2][0], after[3][0])


def test_run_that_reaches_its_epochs_keeps_the_best_weights_and_goes_on_from_the_last(rng, synth):
    X, y = synth.digits(rng, 40)
    losses = [1.0, 0.5, 0.7, 0.8, 0.6, 0.9]
    kwargs = dict(batch_size=4, momentum=0.9, early_stopping=10)
    whole = MLP([784, 4, 10], backend="numpy")
    after = trained_epochs(whole, X, y, losses, epochs=6, **kwargs)
    assert whole.history_.stop_reason == "max epochs" and whole.history_.best_epoch == 2
    np.testing.assert_array_equal(whole.params_, after[2][0])

    pieces = MLP([784, 4, 10], backend="numpy")
    trained_epochs(pieces, X, y, losses[:3], epochs=3, **kwargs)
    np.testing.assert_array_equal(pieces.params_, after[2][0])  # the best of the first 3 epochs
    scripted(pieces, losses[3:])
    pieces.partial_fit(X, y, epochs=3, validation_data=(X[:10], y[:10]), progress=False)
    np.testing.assert_array_equal(pieces.params_, whole.params_)
    np.testing.assert_array_equal(pieces.optimizer_state_.slots, whole.optimizer_state_.slots)
    assert pieces.history_.loss == whole.history_.loss
    assert pieces.run_.last.epoch == 6
    np.testing.assert_array_equal(pieces.run_.last.params, after[6][0])


def test_a_stopped_run_goes_on_from_its_best_weights_with_fresh_patience(rng, synth):
    X, y = synth.digits(rng, 40)
    model = MLP([784, 4, 10], backend="numpy")
    after = trained_epochs(model, X, y, [1.0, 2.0, 3.0, 4.0], epochs=4, batch_size=4, early_stopping=1, tol=0.0)
    assert model.history_.stopped_epoch == 2 and model.history_.best_epoch == 1
    np.testing.assert_array_equal(model.params_, after[1][0])
    scripted(model, [0.5, 0.6])
    model.partial_fit(X, y, epochs=2, validation_data=(X[:10], y[:10]), progress=False)
    assert model.history_.epoch == [1, 2, 3, 4] and model.history_.stopped_epoch == 4
    assert model.history_.best_epoch == 3 and model.history_.stop_reason.startswith("early stopping")


@pytest.mark.parametrize("through_file", [False, True])
def test_a_stopped_run_waits_its_whole_patience_again_when_nothing_improves(rng, synth, tmp_path, through_file):
    # The counts of the stop are not carried on: a stopped run continued (as it is, or saved and
    # loaded) that never improves again trains `patience` more epochs, not one.
    X, y = synth.digits(rng, 40)
    model = MLP([784, 4, 10], backend="numpy")
    trained_epochs(model, X, y, [1.0, 2.0, 3.0, 4.0], epochs=4, batch_size=4, early_stopping=3, tol=0.0)
    assert model.history_.stopped_epoch == 4 and model.run_.epochs_without_improvement == 3
    if through_file:
        model.save(tmp_path / "stopped.npz")
        model = MLP.load(tmp_path / "stopped.npz")
    scripted(model, [5.0, 6.0, 7.0, 8.0])
    model.partial_fit(X, y, epochs=4, validation_data=(X[:10], y[:10]), progress=False)
    assert model.history_.epoch == [1, 2, 3, 4, 5, 6, 7] and model.history_.stopped_epoch == 7
    assert model.history_.best_epoch == 1


def test_a_stopped_adaptive_run_waits_n_iter_no_change_again_before_dividing_the_rate(rng, synth):
    X, y = synth.digits(rng, 40)
    model = MLP([784, 4, 10], backend="numpy")
    trained_epochs(model, X, y, [1.0, 2.0, 3.0, 4.0], epochs=4, batch_size=4, lr_schedule="adaptive",
                   n_iter_no_change=2, early_stopping=3, tol=0.0)
    assert model.history_.stopped_epoch == 4 and model.run_.lr_reductions == 1
    assert model.run_.epochs_at_rate_without_improvement == 1
    scripted(model, [5.0])
    model.partial_fit(X, y, epochs=1, validation_data=(X[:10], y[:10]), progress=False)
    assert model.run_.lr_reductions == 1  # one epoch without improvement: not yet n_iter_no_change


def test_adaptive_divides_the_rate_by_5_and_stops_below_1e_6(rng, synth):
    X, y = synth.digits(rng, 40)
    model = MLP([784, 4, 10], backend="numpy")
    losses = [1.0, 1.0, 1.0, 0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6]
    trained_epochs(model, X, y, losses, epochs=10, lr=2e-5, lr_schedule="adaptive", n_iter_no_change=2, tol=0.0)
    history = model.history_
    # epochs 2-3 don't improve: /5 from epoch 4; 4 improves; 5-6 don't: the next rate 8e-7 < 1e-6 stops
    assert history.lr == pytest.approx([2e-5, 2e-5, 2e-5, 4e-6, 4e-6, 4e-6], rel=1e-12)
    assert history.stop_reason == "adaptive learning rate fell below 1e-6" and history.stopped_epoch == 6
    assert model.run_.lr_reductions == 1


def test_adaptive_counts_an_improvement_smaller_than_tol_as_none(rng, synth):
    # losses that fall by less than tol each epoch: the rate is divided all the same (a counter
    # reset by any fall passed every test in this file, audit 21)
    X, y = synth.digits(rng, 40)
    model = MLP([784, 4, 10], backend="numpy")
    losses = [1.0, 0.999, 0.998, 0.5, 0.499, 0.498]
    trained_epochs(model, X, y, losses, epochs=6, lr=2e-5, lr_schedule="adaptive", n_iter_no_change=2, tol=0.01)
    history = model.history_
    assert history.lr == pytest.approx([2e-5, 2e-5, 2e-5, 4e-6, 4e-6, 4e-6], rel=1e-12)
    assert history.stop_reason == "adaptive learning rate fell below 1e-6" and history.stopped_epoch == 6


def test_adaptive_without_validation_watches_the_training_loss(rng, synth):
    X, y = synth.digits(rng, 60)
    model = MLP([784, 8, 10], backend="numpy")
    history = model.fit(X, y, epochs=3, batch_size=6, lr_schedule="adaptive", progress=False)
    assert history.monitor == "loss" and history.val_loss == []
    assert model.run_.best_loss == min(history.loss)
    with pytest.raises(ValueError, match="has watched loss so far .*; leave out the validation data"):
        model.partial_fit(X, y, validation_data=(X, y), progress=False)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_early_stopping_keeps_the_weights_a_shorter_run_ends_with(rng, synth, backend):
    """Real losses: the restored model is bit for bit the run cut at its best epoch."""
    X, y = synth.digits(rng, 300)
    noisy = rng.random(300) < 0.3
    y[noisy] = rng.integers(0, 10, int(noisy.sum()))  # wrong labels to overfit to
    kwargs = dict(batch_size=8, lr=0.5, validation_fraction=0.3, progress=False)
    model = MLP([784, 16, 10], seed=0, backend=backend)
    history = model.fit(X, y, epochs=12, early_stopping=2, tol=0.0, **kwargs)
    assert history.best_epoch < history.stopped_epoch < 12
    assert history.val_loss[history.best_epoch - 1] == min(history.val_loss)
    cut = MLP([784, 16, 10], seed=0, backend=backend)
    cut.fit(X, y, epochs=history.best_epoch, **kwargs)
    np.testing.assert_array_equal(model.params_, cut.params_)
