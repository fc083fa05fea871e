"""Optimizers, weight decay and dropout: the hyperparameters, the state, and the NumPy rules.

One step, with g the batch-mean gradient of the loss, lr the epoch's learning rate, lambda the
weight decay (applied to weights only, never to biases), t the number of steps taken so far
including this one::

    coupled decay (default)   g <- g + lambda * w                  (L2 penalty lambda/2 |w|^2)
    sgd                       w <- w - lr * g                      (momentum 0)
    sgd + momentum mu         v <- mu * v - lr * g;  w <- w + v
    sgd + nesterov            v <- mu * v - lr * g;  w <- w + mu * v - lr * g
    adam                      m <- b1 * m + (1 - b1) * g;  s <- b2 * s + (1 - b2) * g^2
                              w <- w - lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(s) + eps)
    decoupled decay           w <- w - lr * lambda * w_before, outside g (AdamW, SGDW)

The compiled steps (``fastmlp.kernels.optimizer``) then set a velocity below 1e-30, and Adam's
moments below floors of about that size, to 0: a state whose gradient stays 0 would decay into
subnormal numbers and stay there, each step on it a microcode assist on Intel cores. These rules
do not (within the backends' parity tolerance of them).

The momentum and Adam forms are scikit-learn's (``sklearn.neural_network._stochastic_optimizers``):
the velocity is a displacement, and eps is added to sqrt(s) with the bias corrections folded
into the rate. scikit-learn's ``alpha`` is a coupled decay of alpha / batch_size.

Dropout (inverted): during training a hidden unit's output, or an input, is kept with
probability 1 - rate and scaled by 1 / (1 - rate), else set to 0. Whether unit u of the sample
trained as the n-th sample of the run is kept is a pure function of (seed, n, u): a counter-
based hash (``fastmlp.kernels.codes.keep_unit``), so both backends draw the same masks, a
resumed run draws the masks the uninterrupted run would have, and nothing depends on threads.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

import numpy as np

OPTIMIZERS = ("sgd", "adam")

from .kernels import codes
from .network import aligned_empty
from .kernels.codes import (  # noqa: F401 - the slots are defined once, with the kernels
    ADAM,
    BETA1,
    BETA2,
    DECOUPLED,
    DROPOUT,
    DROPOUT_SEED,
    EPS,
    INPUT_DROPOUT,
    LR,
    MOMENTUM,
    N_HYPER,
    NESTEROV,
    SAMPLES,
    STEPS,
    WEIGHT_DECAY,
)

def _number(name, value, low, high, *, low_open=False, high_open=True):
    """A float in [low, high) (or the interval the flags say), else an error that names it."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number; got {value!r}")
    value = float(value)
    below = value <= low if low_open else value < low
    above = value >= high if high_open else value > high
    if not math.isfinite(value) or below or above:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be in {interval}; got {value!r}")
    return value


@dataclass
class Optimizer:
    """The hyperparameters of the update rule and of dropout, checked on construction."""

    optimizer: str = "sgd"
    momentum: float = 0.0
    nesterov: bool = False
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    decoupled_weight_decay: bool = False
    dropout: float = 0.0
    input_dropout: float = 0.0

    def __post_init__(self):
        if not isinstance(self.optimizer, str) or self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(map(repr, OPTIMIZERS))}; got {self.optimizer!r}")
        self.momentum = _number("momentum", self.momentum, 0.0, 1.0)
        for name in ("nesterov", "decoupled_weight_decay"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise TypeError(f"{name} must be True or False; got {getattr(self, name)!r}")
            setattr(self, name, bool(getattr(self, name)))
        self.beta1 = _number("beta1", self.beta1, 0.0, 1.0)
        self.beta2 = _number("beta2", self.beta2, 0.0, 1.0)
        self.eps = _number("eps", self.eps, 0.0, math.inf, low_open=True)
        self.weight_decay = _number("weight_decay", self.weight_decay, 0.0, math.inf)
        self.dropout = _number("dropout", self.dropout, 0.0, 1.0)
        self.input_dropout = _number("input_dropout", self.input_dropout, 0.0, 1.0)
        for name in ("dropout", "input_dropout"):
            rate = getattr(self, name)
            if 0 < rate and codes.drop_threshold(rate) == 0:
                # the masks draw rates in steps of 2**-KEEP_BITS: this one would drop no unit, yet the
                # reference would still scale the kept ones by 1 / (1 - rate), the kernels not at all
                raise ValueError(f"{name}={rate!r} is below the smallest rate the dropout masks draw "
                                 f"(2**-{codes.KEEP_BITS + 1} = {2.0 ** -(codes.KEEP_BITS + 1):.3g}); use 0 for none")
        if self.optimizer == "adam" and self.nesterov:
            raise ValueError("nesterov applies to optimizer='sgd' with momentum; Adam has no Nesterov form here")
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs a momentum in (0, 1); got momentum=0")
        if self.optimizer == "adam" and self.momentum != 0:
            raise ValueError("momentum applies to optimizer='sgd'; Adam's is beta1")

    @property
    def is_plain(self) -> bool:
        """Plain SGD: no momentum, no decay, no dropout (the kernels' fastest path)."""
        return (self.optimizer == "sgd" and self.momentum == 0 and self.weight_decay == 0
                and self.dropout == 0 and self.input_dropout == 0)

    @property
    def n_slots(self) -> int:
        """State arrays laid out like the parameters: Adam's m and s, SGD's velocity, or none."""
        if self.optimizer == "adam":
            return 2
        return 1 if self.momentum > 0 else 0

    def hyper(self, lr):
        """The float64 vector of hyperparameters the kernels read (slots above)."""
        h = np.zeros(N_HYPER, np.float64)
        h[LR] = lr
        h[MOMENTUM] = self.momentum
        h[NESTEROV] = float(self.nesterov)
        h[BETA1] = self.beta1
        h[BETA2] = self.beta2
        h[EPS] = self.eps
        h[WEIGHT_DECAY] = self.weight_decay
        h[DECOUPLED] = float(self.decoupled_weight_decay)
        h[DROPOUT] = self.dropout
        h[INPUT_DROPOUT] = self.input_dropout
        h[ADAM] = float(self.optimizer == "adam")
        return h

    def as_dict(self):
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass
class State:
    """What the optimizer carries from step to step: ``slots`` [S, P] (velocity, or Adam's m
    and s) and ``counters`` int64 [3] (steps taken, samples trained, dropout seed)."""

    slots: np.ndarray
    counters: np.ndarray = field(default_factory=lambda: np.zeros(3, np.int64))

    @classmethod
    def fresh(cls, optimizer: Optimizer, params, seed):
        counters = np.zeros(3, np.int64)
        counters[DROPOUT_SEED] = dropout_seed(seed)
        # (on a VECTOR_ALIGNMENT boundary, as the parameters: the kernels load both as vectors)
        slots = aligned_empty((optimizer.n_slots, params.size), params.dtype)
        slots[...] = 0
        return cls(slots, counters)

    def copy(self):
        return State(self.slots.copy(), self.counters.copy())

    def restore(self, other: "State"):
        self.slots[...] = other.slots
        self.counters[...] = other.counters


def dropout_seed(seed):
    """The dropout stream's 63-bit key, drawn from the model seed apart from the weights' and
    the shuffling's streams."""
    return int(np.random.SeedSequence(seed, spawn_key=(2,)).generate_state(1, np.uint64)[0] >> np.uint64(1))


def weight_mask(layout, dtype):
    """1 where params holds a weight, 0 where it holds a bias: decay applies to weights only."""
    mask = np.zeros(layout.n_params, dtype)
    for W, _ in layout.views(mask):
        W[...] = 1
    return mask


def step(params, grad, state: State, optimizer: Optimizer, lr, decay_mask):
    """One optimizer step in place on ``params`` (the formulas of the module docstring).

    ``grad`` is the batch-mean gradient (overwritten); arithmetic in params.dtype.
    """
    dtype = params.dtype.type
    lr = dtype(lr)
    state.counters[STEPS] += 1
    decay = dtype(optimizer.weight_decay)
    w_before = params.copy() if optimizer.decoupled_weight_decay and decay else None
    if decay and not optimizer.decoupled_weight_decay:
        grad += decay * decay_mask * params
    if optimizer.optimizer == "adam":
        t = int(state.counters[STEPS])
        b1, b2 = dtype(optimizer.beta1), dtype(optimizer.beta2)
        m, s = state.slots
        m *= b1
        m += (1 - b1) * grad
        s *= b2
        s += (1 - b2) * grad * grad
        rate = dtype(float(lr) * math.sqrt(1 - optimizer.beta2**t) / (1 - optimizer.beta1**t))
        params -= rate * m / (np.sqrt(s) + dtype(optimizer.eps))
    elif optimizer.momentum > 0:
        mu = dtype(optimizer.momentum)
        (v,) = state.slots
        v *= mu
        v -= lr * grad
        if optimizer.nesterov:
            params += mu * v - lr * grad
        else:
            params += v
    else:
        params -= lr * grad
    if w_before is not None:
        params -= lr * decay * decay_mask * w_before
