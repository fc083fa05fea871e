"""Per-sample momentum and weight decay in modal coordinates (kernels/sgd.py), against the
reference, on both sides of every switch the kernel makes.

The general per-sample kernel stores the first layer in the idle map's modal coordinates when
that map is well conditioned (real eigenvalues, or a complex pair), renormalises them every
``period`` steps, and falls back to the catch-up of idle rows otherwise. Each case below first
checks which of those paths each of its three calls takes (the rate changes per call, so two
cases switch path between calls), so that a change of thresholds cannot leave a path
untested, and then trains long enough to cross a renormalisation and the call boundaries.
"""

import numpy as np
import pytest

from fastmlp import optim
from fastmlp.backends import make_backend
from fastmlp.kernels import optimizer as kopt
from fastmlp.kernels import sgd
from fastmlp.network import Architecture, init_params

LAYERS = (12, 8, 3)


def modal_path(optimizer, lr):
    """(period, pair) the kernel chooses: period 0 means the catch-up fallback."""
    hyper = optimizer.hyper(lr)
    sc = np.empty(kopt.N_STEP_SCALARS, np.float64)
    kopt.step_scalars(sc, hyper, 1)
    lam = np.empty(2, np.complex128)
    P = np.empty((2, 2), np.complex128)
    gain = np.empty(2, np.complex128)
    Q = np.empty((2, 2))
    return sgd._modal_form(lam, P, gain, Q, hyper, kopt.step_kind(hyper), sc)


def train(backend_name, optimizer, lr, n_samples, per_call, dtype, seed=0):
    rng = np.random.default_rng(seed)
    arch = Architecture(LAYERS, "tanh", "cross_entropy", dtype=dtype)
    params = init_params(arch, "xavier", seed=seed)
    X = rng.integers(0, 256, size=(200, LAYERS[0])).astype(np.uint8)
    X[rng.random(X.shape) < 0.6] = 0  # rows idle for a few steps, as pixels are
    y = rng.integers(0, LAYERS[-1], size=200).astype(np.int64)
    order = np.concatenate([rng.permutation(200) for _ in range(n_samples // 200 + 1)])[:n_samples].astype(np.int64)
    backend = make_backend(backend_name, arch, 1)
    data = backend.prepare(X)
    state = optim.State.fresh(optimizer, params, seed=seed)
    for start in range(0, n_samples, per_call):
        rate = lr * RATE_PER_CALL ** (start // per_call)  # a schedule: each call has its own idle map
        _, _, done, bad = backend.train_chunk(params, data, y, order[start : start + per_call], rate, 1, optimizer, state)
        assert bad == -1 and done == min(per_call, n_samples - start)
    return params, state


def path_of(optimizer, lr):
    period, pair = modal_path(optimizer, lr)
    return "fallback" if period == 0 else "pair" if pair else "real"


RATE_PER_CALL = 0.9  # train()'s schedule: call k runs at lr * 0.9**k, with its own idle map

CASES = {
    # name: (optimizer options, lr, the path the kernel takes in each of the three calls:
    # "real", "pair" or "fallback"; two cases switch between calls, which tests the handoff)
    "plain + decay (one real mode)": (dict(weight_decay=0.05), 0.05, ("real",) * 3),
    "momentum 0.5 + decay (renormalised every 39 steps)": (dict(momentum=0.5, weight_decay=0.01), 0.05, ("real",) * 3),
    "momentum 0.9, decoupled decay": (dict(momentum=0.9, weight_decay=0.1, decoupled_weight_decay=True), 0.05,
                                      ("real",) * 3),
    "momentum 0.9 + decay (complex pair)": (dict(momentum=0.9, weight_decay=0.1), 0.05, ("pair",) * 3),
    "nesterov 0.95 + decay (complex pair, then fallback)": (dict(momentum=0.95, nesterov=True, weight_decay=0.1), 0.01,
                                                            ("pair", "pair", "fallback")),
    # (a1 - mu)^2 = 4 mu lr decay: a double eigenvalue at the first call's rate
    "nearly defective map (fallback, then real)": (dict(momentum=0.9, weight_decay=0.131670), 0.02,
                                                   ("fallback", "real", "real")),
    "momentum 0.99 (fallback: ill-conditioned)": (dict(momentum=0.99, weight_decay=0.01), 0.005, ("fallback",) * 3),
    "momentum 0.01 (fallback: renormalised too often)": (dict(momentum=0.01), 0.1, ("fallback",) * 3),
    # the fallback's decoupled decay, and its rows without velocity (plain SGD, where lr * decay
    # nears 1): an idle row that skipped its decay there passed every other case (audit 21)
    "momentum 0.99, decoupled decay (fallback)": (dict(momentum=0.99, weight_decay=0.05, decoupled_weight_decay=True),
                                                  0.005, ("fallback",) * 3),
    "nesterov 0.99, decoupled decay (fallback)": (dict(momentum=0.99, nesterov=True, weight_decay=0.05,
                                                       decoupled_weight_decay=True), 0.005, ("fallback",) * 3),
    "plain + heavy decay (fallback, then real)": (dict(weight_decay=1.9), 0.5, ("fallback", "fallback", "real")),
    "plain + heavy decoupled decay (fallback, then real)": (dict(weight_decay=0.95, decoupled_weight_decay=True), 1.0,
                                                            ("fallback", "fallback", "real")),
    # exact edges, reached by no case above (audit 28): a map exactly defective ((a1 - mu)^2 =
    # 4 mu lr decay in binary fractions: a double eigenvalue 0.5, the eigenvectors' matrix P
    # singular), and an eigenvalue exactly 0 (lr x decay = 1), whose coordinates cannot be scaled
    "exactly defective map (fallback: P singular, then real)": (dict(momentum=0.25, weight_decay=1.0), 0.25,
                                                                ("fallback", "real", "real")),
    "plain, lr x decay = 1 (fallback: an eigenvalue 0)": (dict(weight_decay=2.0), 0.5, ("fallback", "fallback", "real")),
    "momentum, decoupled lr x decay = 1 (fallback: an eigenvalue 0)": (
        dict(momentum=0.5, weight_decay=1.0, decoupled_weight_decay=True), 1.0, ("fallback", "fallback", "real")),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(CASES))
def test_modal_coordinates_match_the_reference(name, dtype, synth):
    options, lr, paths = CASES[name]
    optimizer = optim.Optimizer(**options)
    taken = tuple(path_of(optimizer, lr * RATE_PER_CALL**call) for call in range(3))
    assert taken == paths, f"{name}: the kernel takes the paths {taken}"
    # calls longer than a period, so that the run crosses renormalisations and call boundaries
    # (the longest of the three calls' periods: sized from the first call's alone, a case whose
    # first call falls back ran its modal calls shorter than a period: audit 32)
    period = max(modal_path(optimizer, lr * RATE_PER_CALL**call)[0] for call in range(3))
    per_call = period + 37 if period else 170
    n_samples = 2 * per_call + 50  # three calls
    got, got_state = train("numba", optimizer, lr, n_samples, per_call, dtype)
    want, want_state = train("numpy", optimizer, lr, n_samples, per_call, dtype)
    tol = synth.tolerance(dtype)
    if dtype == "float32":
        # 300-2,200 steps, not the grid's 20: a weight near 0 drifts by up to 2e-6 (measured, the
        # catch-up run as plain Python), over the grid's atol of 1e-6
        tol = dict(tol, atol=1e-5)
    np.testing.assert_allclose(got, want, **tol)
    np.testing.assert_allclose(got_state.slots, want_state.slots, **tol)
    np.testing.assert_array_equal(got_state.counters, want_state.counters)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_one_call_over_many_periods_is_renormalised(dtype, synth):
    # the calls above span one period and 37 steps: with the renormalisation dropped they still
    # passed, where a float32 call of four periods overflows its coordinates (audit 28, mutation M3)
    optimizer = optim.Optimizer(momentum=0.5, weight_decay=0.01)
    period, _ = modal_path(optimizer, 0.05)
    assert 0 < period < 100  # (so that the call below renormalises about 25 times)
    n_samples = 25 * period + 1
    got, _ = train("numba", optimizer, 0.05, n_samples, n_samples, dtype)
    want, _ = train("numpy", optimizer, 0.05, n_samples, n_samples, dtype)
    np.testing.assert_allclose(got, want, **dict(synth.tolerance(dtype), atol=1e-5))
