"""Sample weights and multilabel targets, in both backends.

Sample weights (``fit(X, y, sample_weight)``) are scaled to mean 1 and multiply each sample's
loss and gradient before the batch mean. Multilabel classification is K sigmoid units with
binary cross-entropy on a 0/1 indicator matrix y[N, K]; a sample counts as right when its
whole label set is.
"""

import itertools

import numpy as np
import pytest

from fastmlp import MLP
from fastmlp._validation import validation_split
from fastmlp.optim import Optimizer, State
from fastmlp.backends import make_backend
from fastmlp.network import Architecture, init_params

N = 48


def data(rng, n_features=6, kind="float"):
    X = rng.normal(0, 1, size=(N, n_features))
    if kind == "uint8":
        X = rng.integers(0, 256, size=(N, n_features)).astype(np.uint8)
        X[rng.random(X.shape) < 0.6] = 0
    return X


def labels(rng, kind, n_out):
    if kind == "multilabel":
        y = (rng.random((N, n_out)) < 0.4).astype(np.int64)
        y[0] = 0  # an empty label set
        return y
    if kind == "regression":
        return rng.normal(0, 1, size=(N, n_out))
    return rng.integers(0, n_out if kind == "multiclass" else 2, size=N)


def weights(rng):
    w = rng.uniform(0, 3, size=N)
    w[[2, 7, 11]] = 0  # zero weights: those samples must not move anything
    return w


SETUPS = {  # kind -> (loss, output units)
    "multiclass": ("cross_entropy", 4),
    "binary": ("binary_cross_entropy", 1),
    "multilabel": ("binary_cross_entropy", 3),
    "regression": ("mse", 2),
}
RECIPES = {
    "plain": {},
    "momentum+decay": {"momentum": 0.9, "nesterov": True, "weight_decay": 1e-3},
    "adam+dropout": {"optimizer": "adam", "dropout": 0.2},
}
# Every kind x recipe x batch size, weighted, in float64 (three epochs); multilabel also in
# float32, weighted or not (one epoch: 48 float32 steps with momentum 0.9 amplify rounding
# past the float32 tolerance, measured 1.3e-3 relative after three).
CASES = [(kind, recipe, batch, True, "float64") for kind, recipe, batch in itertools.product(SETUPS, RECIPES, [1, 5])]
CASES += [("multilabel", recipe, batch, weighted, "float32")
          for recipe, batch, weighted in itertools.product(RECIPES, [1, 5], [True, False])]


def case_id(case):
    kind, recipe, batch, weighted, dtype = case
    return f"{kind}-{recipe}-bs{batch}-{'weighted' if weighted else 'unweighted'}-{dtype}"


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_both_backends_train_the_same(case, synth):
    """Whole epochs through the trainer (shuffling, schedule, optimizer state)."""
    kind, recipe, batch, weighted, dtype = case
    rng = np.random.default_rng(len(case_id(case)))
    loss, n_out = SETUPS[kind]
    X = data(rng, kind="uint8" if batch == 1 else "float")
    y = labels(rng, kind, n_out)
    w = weights(rng) if weighted else None
    lr = 0.05 if kind == "regression" and batch == 1 else 0.1
    if RECIPES[recipe].get("optimizer") == "adam":
        lr = 0.01
    runs = {}
    for backend in ("numpy", "numba"):
        model = MLP([X.shape[1], 7, 5, n_out], activation="tanh", loss=loss, dtype=dtype, seed=3, backend=backend)
        history = model.fit(X, y, w, epochs=3 if dtype == "float64" else 1, batch_size=batch, lr=lr, **RECIPES[recipe])
        runs[backend] = (model.params_, history.loss, history.accuracy)
    tol = synth.tolerance(dtype)
    if dtype == "float32":
        # 48 per-sample float32 steps with momentum 0.9 and weights up to ~3: measured up to
        # 7.5e-6 absolute on weights of ~0.01 (the shared bound's 1e-6 is for 20 steps)
        tol = {"rtol": tol["rtol"], "atol": 3e-5}
    np.testing.assert_allclose(runs["numba"][0], runs["numpy"][0], **tol)
    np.testing.assert_allclose(runs["numba"][1], runs["numpy"][1], **tol)
    if dtype == "float64":
        assert runs["numba"][2] == runs["numpy"][2]


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_integer_weights_equal_repeated_samples(backend):
    """Full-batch gradient descent on weights (2, 0, 1, 3, ...) is gradient descent on the data
    with each sample repeated that many times: the weighted mean of the gradients is the
    plain mean over the repeated data. Momentum carries it over several steps."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(N, 5))
    y = rng.integers(0, 3, size=N)
    counts = rng.integers(0, 4, size=N)
    counts[:2] = (0, 2)
    fits = []
    for Xs, ys, w in [(X, y, counts), (np.repeat(X, counts, axis=0), np.repeat(y, counts), None)]:
        model = MLP([5, 6, 3], activation="relu", dtype="float64", seed=2, backend=backend)
        model.fit(Xs, ys, w, epochs=4, batch_size=None, lr=0.3, momentum=0.5)
        fits.append(model.params_)
    np.testing.assert_allclose(fits[0], fits[1], rtol=1e-12, atol=1e-14)


def test_weights_are_scale_free_and_ones_change_nothing():
    rng = np.random.default_rng(2)
    X, y = data(rng), labels(rng, "multiclass", 4)
    w = weights(rng)

    def fit(sample_weight, batch_size):
        model = MLP([6, 8, 4], activation="sigmoid", dtype="float32", seed=0)
        model.fit(X, y, sample_weight, epochs=2, batch_size=batch_size, lr=0.2, momentum=0.5)
        return model.params_

    for batch in (1, 8):
        # scaled to mean 1 first: multiplying every weight by 4 (exact in binary) changes nothing
        np.testing.assert_array_equal(fit(w, batch), fit(4 * w, batch))
        assert not np.allclose(fit(w, batch), fit(None, batch), atol=1e-4)  # the weights act
    # weights of one are the unweighted run: bitwise in the mini-batch kernel (the same kernel)
    np.testing.assert_array_equal(fit(np.ones(N), 8), fit(None, 8))
    # at the float64 limits too: weights of 1e308 summed to inf (every weight became 0 and
    # nothing trained), weights of 1e-320 made n / sum inf (a DivergenceError)
    for extreme in (1e308, 1e-320):
        np.testing.assert_array_equal(fit(np.full(N, extreme), 8), fit(None, 8))
    np.testing.assert_array_equal(fit(w * 1e300, 8), fit(w, 8))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("batch", [1, 4])
def test_zero_weight_samples_do_not_move_plain_sgd(backend, batch):
    """With plain SGD and no shuffling, a run of zero-weight samples leaves the weights alone."""
    rng = np.random.default_rng(3)
    X, y = data(rng), labels(rng, "multiclass", 4)
    w = np.zeros(N)
    w[:8] = 1  # only the first two batches of four (or first eight samples) count
    model = MLP([6, 8, 4], activation="tanh", dtype="float64", seed=0, backend=backend)
    model.fit(X[:8], y[:8], epochs=1, batch_size=batch, lr=0.2, shuffle=False)
    first_eight = model.params_.copy()
    model.fit(X, y, w, epochs=1, batch_size=batch, lr=0.2 * 8 / N, shuffle=False)
    # normalised to mean 1 over N, the eight weights are N/8 each: lr * N/8 = the same step
    np.testing.assert_allclose(model.params_, first_eight, rtol=1e-12, atol=1e-15)


def test_weighted_training_loss_is_the_weighted_mean():
    rng = np.random.default_rng(4)
    X, y = data(rng), labels(rng, "multiclass", 4)
    w = weights(rng)
    model = MLP([6, 8, 4], activation="tanh", dtype="float64", seed=0, backend="numpy")
    history = model.fit(X, y, w, epochs=1, batch_size=None, lr=1e-12)  # the weights barely move
    z = model.decision_function(X)
    per_sample = np.log(np.exp(z).sum(axis=1)) - z[np.arange(N), y]
    np.testing.assert_allclose(history.loss[0], np.average(per_sample, weights=w), rtol=1e-9)


@pytest.mark.parametrize(
    "sample_weight, error, match",
    [
        (np.ones(N - 1), ValueError, r"shape \[48\]"),
        (np.ones((N, 1)), ValueError, r"shape \[48\]"),
        (np.r_[np.ones(N - 1), -1.0], ValueError, "finite and >= 0; got -1.0 at row 47"),
        (np.r_[np.nan, np.ones(N - 1)], ValueError, "finite and >= 0; got nan at row 0"),
        (np.zeros(N), ValueError, "0 for every sample"),
        (np.array(["1"] * N), TypeError, "sample_weight must hold numbers; got an array of dtype <U1"),
        (np.full(N, 1 + 1j), TypeError, "sample_weight must hold real numbers; got an array of dtype complex128"),
    ],
)
def test_bad_sample_weight_is_refused_before_training(sample_weight, error, match):
    rng = np.random.default_rng(5)
    X, y = data(rng), labels(rng, "multiclass", 4)
    model = MLP([6, 8, 4], seed=0)
    model.fit(X, y, epochs=1)
    before = model.params_.copy()
    with pytest.raises(error, match=match):
        model.partial_fit(X, y, sample_weight)
    np.testing.assert_array_equal(model.params_, before)


def test_validation_fraction_splits_the_weights_too():
    rng = np.random.default_rng(6)
    X, y = data(rng), labels(rng, "multiclass", 4)
    w = np.ones(N)
    w[::2] = 0  # every other sample: the training rows keep some weight whichever are held out
    w[1::4] = rng.random(len(w[1::4])) * 3  # and unequal weights on the others
    model = MLP([6, 8, 4], seed=0, backend="numpy", dtype="float64")
    history = model.fit(X, y, w, epochs=2, validation_fraction=0.25)
    assert len(history.val_loss) == 2 and np.isfinite(history.loss).all()
    # the training rows' weights are normalised again (to mean 1 over them): the run is the one
    # on the training rows alone (to rounding: normalised twice, the weights' last bits differ)
    train, val = validation_split(y, 0.25, seed=0, stratify=True)
    by_hand = MLP([6, 8, 4], seed=0, backend="numpy", dtype="float64")
    by_hand.fit(X[train], y[train], w[train], epochs=2)
    np.testing.assert_allclose(model.params_, by_hand.params_, rtol=1e-12, atol=1e-14)


# --- multilabel ------------------------------------------------------------------------------


def test_multilabel_learns_and_predicts_label_sets():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(400, 5)).astype(np.float32)
    Y = np.stack([X[:, 0] > 0, X[:, 1] + X[:, 2] > 0, X[:, 3] < -0.5], axis=1).astype(int)
    model = MLP([5, 16, 3], activation="tanh", loss="binary_cross_entropy", seed=0)
    history = model.fit(X, Y, epochs=20, batch_size=8, lr=0.3)
    predicted = model.predict(X)
    assert predicted.shape == (400, 3) and set(np.unique(predicted)) <= {0, 1}
    proba = model.predict_proba(X)
    assert proba.shape == (400, 3) and ((proba > 0) & (proba < 1)).all()
    np.testing.assert_array_equal(predicted, (proba > 0.5).astype(int))
    subset_accuracy = (predicted == Y).all(axis=1).mean()
    assert subset_accuracy > 0.9
    assert model.score(X, Y) == pytest.approx(subset_accuracy)  # the whole label set must be right
    assert history.accuracy[-1] > 0.85  # counted per sample in the kernel the same way


def test_multilabel_accuracy_counts_whole_label_sets():
    arch = Architecture((3, 2), "identity", "binary_cross_entropy")
    params = init_params(arch, seed=0)
    params[:] = 0
    W, b = arch.layout().views(params)[0]
    b[:] = (5.0, -5.0)  # always predicts {label 0}
    X = np.zeros((4, 3), np.float32)
    Y = np.array([[1, 0], [1, 1], [0, 0], [1, 0]])
    for name in ("numpy", "numba"):
        backend = make_backend(name, arch)
        order = np.arange(4, dtype=np.int64)
        _, n_correct, _, _ = backend.train_chunk(params.copy(), backend.prepare(X), Y, order, 1e-9, 1, Optimizer(),
                                                 State.fresh(Optimizer(), params, 0))
        assert n_correct == 2, name


@pytest.mark.parametrize(
    "y, match",
    [
        (np.zeros((N, 2), int), r"shape \[48, 3\]"),
        (np.zeros(N, int), r"shape \[48, 3\]"),
        (np.full((N, 3), 2), "only 0 and 1"),
        (np.full((N, 3), 0.5), "only 0 and 1"),
    ],
)
def test_bad_multilabel_targets_are_refused(y, match):
    rng = np.random.default_rng(8)
    model = MLP([6, 4, 3], loss="binary_cross_entropy", seed=0)
    with pytest.raises(ValueError, match=match):
        model.fit(data(rng), y)


@pytest.mark.parametrize("n_outputs", [1, 3], ids=["binary", "multilabel"])
@pytest.mark.parametrize("batch_size", [1, 8])
def test_a_label_buffer_refilled_between_partial_fit_calls_trains_on_its_new_labels(n_outputs, batch_size):
    # streaming partial_fit reuses one y array: the numba backend kept the first call's
    # converted (float) targets, keyed by the array's identity, and trained on stale labels
    rng = np.random.default_rng(0)
    X = rng.random((60, 20)).astype(np.float32)
    first = rng.integers(0, 2, (60, n_outputs)).reshape(60, -1 if n_outputs > 1 else 1)
    first = first if n_outputs > 1 else first[:, 0]
    runs = []
    for reuse in (True, False):
        model = MLP([20, 8, n_outputs], loss="binary_cross_entropy", backend="numba", seed=0)
        buffer = first.copy()
        model.partial_fit(X, buffer, batch_size=batch_size, progress=False)
        if reuse:
            buffer[...] = 1 - first
        else:
            buffer = (1 - first).copy()
        model.partial_fit(X, buffer, batch_size=batch_size, progress=False)
        runs.append(model.params_.copy())
    np.testing.assert_array_equal(runs[0], runs[1])
