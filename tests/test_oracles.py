"""The reference's update rules and dropout masks against independent oracles.

The parity tests compare the compiled kernels with ``fastmlp.optim.step`` and the reference, so
a mistake both share (Nesterov's form, where eps goes, the bias correction, what decays) would
pass them. Here the reference's optimizer meets the README's formulas written out again, line by
line, and scikit-learn's own optimizers; and the dropout hash both backends use meets the
probabilities it promises.
"""

import math

import numpy as np
import pytest

from fastmlp import optim
from fastmlp.kernels import codes
from fastmlp.network import Architecture

LAYERS = (5, 4, 3)
RATES = [0.1, 0.1, 0.05, 0.05, 0.02, 0.02]  # the rate changes between steps, as a schedule's does


@pytest.fixture
def problem():
    layout = Architecture(LAYERS, dtype=np.float64).layout()
    rng = np.random.default_rng(0)
    p0 = rng.normal(size=layout.n_params)
    grads = [rng.normal(size=layout.n_params) for _ in RATES]
    return p0, grads, optim.weight_mask(layout, np.float64)


def reference_run(p0, grads, mask, **options):
    opt = optim.Optimizer(**options)
    params = p0.copy()
    state = optim.State.fresh(opt, params, 0)
    for g, lr in zip(grads, RATES):
        optim.step(params, g.copy(), state, opt, lr, mask)
    return params


def readme_run(p0, grads, mask, optimizer="sgd", momentum=0.0, nesterov=False, weight_decay=0.0,
               decoupled_weight_decay=False, beta1=0.9, beta2=0.999, eps=1e-8):
    """README, "Optimizers": the formulas as written there, one step at a time."""
    w, v, m, s = p0.copy(), np.zeros_like(p0), np.zeros_like(p0), np.zeros_like(p0)
    for t, (g, lr) in enumerate(zip(grads, RATES), start=1):
        w_before = w.copy()
        if weight_decay and not decoupled_weight_decay:
            g = g + weight_decay * mask * w  # scikit-learn's alpha: weights only, never biases
        if optimizer == "adam":
            m = beta1 * m + (1 - beta1) * g
            s = beta2 * s + (1 - beta2) * g * g
            # the corrections folded into the rate and eps beside sqrt(s): scikit-learn's form, which is
            # lr * m_hat / (sqrt(s_hat) + eps / sqrt(1 - beta2^t)) in the textbook's bias-corrected moments
            w = w - lr * math.sqrt(1 - beta2**t) / (1 - beta1**t) * m / (np.sqrt(s) + eps)
        elif momentum:
            v = momentum * v - lr * g
            w = w + (momentum * v - lr * g if nesterov else v)
        else:
            w = w - lr * g
        if weight_decay and decoupled_weight_decay:
            w = w - lr * weight_decay * mask * w_before  # AdamW: from the weights before the step
    return w


CASES = {
    "sgd": {},
    "sgd + decay": {"weight_decay": 0.03},
    "sgd + decoupled decay": {"weight_decay": 0.03, "decoupled_weight_decay": True},
    "momentum": {"momentum": 0.9},
    "nesterov + decay": {"momentum": 0.8, "nesterov": True, "weight_decay": 0.03},
    "momentum + decoupled decay": {"momentum": 0.9, "weight_decay": 0.05, "decoupled_weight_decay": True},
    "adam": {"optimizer": "adam"},
    "adam + decay": {"optimizer": "adam", "weight_decay": 0.03},
    "adamw": {"optimizer": "adam", "weight_decay": 0.03, "decoupled_weight_decay": True},
    "adam, other betas and eps": {"optimizer": "adam", "beta1": 0.5, "beta2": 0.9, "eps": 1e-3},
}


@pytest.mark.parametrize("options", CASES.values(), ids=CASES.keys())
def test_the_reference_steps_are_the_readme_formulas(problem, options):
    np.testing.assert_allclose(reference_run(*problem, **options), readme_run(*problem, **options), rtol=0, atol=1e-14)


SKLEARN_CASES = {
    "sgd + alpha": ({"weight_decay": 0.03}, {"momentum": 0.0, "nesterov": False}, 0.03),
    "momentum": ({"momentum": 0.9}, {"momentum": 0.9, "nesterov": False}, 0.0),  # its default is Nesterov
    "nesterov + alpha": ({"momentum": 0.8, "nesterov": True, "weight_decay": 0.03},
                         {"momentum": 0.8, "nesterov": True}, 0.03),
    "adam": ({"optimizer": "adam"}, {}, 0.0),
    "adam, other betas and eps": ({"optimizer": "adam", "beta1": 0.5, "beta2": 0.9, "eps": 1e-3},
                                  {"beta_1": 0.5, "beta_2": 0.9, "epsilon": 1e-3}, 0.0),
}


@pytest.mark.parametrize("ours, theirs, alpha", SKLEARN_CASES.values(), ids=SKLEARN_CASES.keys())
def test_the_reference_steps_are_scikit_learns(problem, ours, theirs, alpha):
    """scikit-learn's MLP optimizers (a private module, hence the skip if it moves), with its
    alpha added to the weights' gradient as its MLP does."""
    stochastic = pytest.importorskip("sklearn.neural_network._stochastic_optimizers",
                                     reason="scikit-learn (or its private optimizer module) is not available")
    p0, grads, mask = problem
    params = [p0.copy()]
    adam = ours.get("optimizer") == "adam"
    theirs_opt = (stochastic.AdamOptimizer(params, learning_rate_init=RATES[0], **theirs) if adam
                  else stochastic.SGDOptimizer(params, learning_rate_init=RATES[0], **theirs))
    for g, lr in zip(grads, RATES):
        if adam:
            theirs_opt.learning_rate_init = lr
        else:
            theirs_opt.learning_rate = lr
        theirs_opt.update_params(params, [g + alpha * mask * params[0]])
    np.testing.assert_allclose(reference_run(p0, grads, mask, **ours), params[0], rtol=0, atol=1e-14)


@pytest.mark.parametrize("rate", [0.03, 0.2, 0.5, 0.9])
def test_dropout_keeps_each_unit_with_probability_one_minus_the_rate(rate):
    samples, units = np.meshgrid(np.arange(2000, dtype=np.uint64), np.arange(300, dtype=np.uint64), indexing="ij")
    kept = codes.keep_unit(optim.dropout_seed(7), samples, units, np.uint64(codes.drop_threshold(rate)))
    n = kept.size
    assert abs(kept.mean() - (1 - rate)) < 5 * math.sqrt(rate * (1 - rate) / n)
    # per unit and per sample, too: no unit (or sample) is dropped more often than the others
    sd_unit = math.sqrt(rate * (1 - rate) / samples.shape[0])
    assert np.abs(kept.mean(axis=0) - (1 - rate)).max() < 5 * sd_unit
    # neighbouring units and consecutive samples draw independently
    k = kept.astype(np.float64)
    for a, b in ((k[:, 1:], k[:, :-1]), (k[1:], k[:-1])):
        assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 5 / math.sqrt(a.size)
    # and another seed draws other masks
    other = codes.keep_unit(optim.dropout_seed(8), samples, units, np.uint64(codes.drop_threshold(rate)))
    assert abs(np.corrcoef(k.ravel(), other.ravel())[0, 1]) < 5 / math.sqrt(n)
