"""Optimizer steps and dropout masks inside the compiled trainers (the rules: ``fastmlp.optim``).

``step_scalars`` turns the hyperparameter vector (slots in ``codes``) and the step count into
the few numbers one step needs; ``apply_step`` then updates a contiguous run of parameters
from their gradient, with their optimizer slots (velocity, or Adam's m and s) at the same
offsets of ``slots`` [S, P]. Every rule is one loop with its options folded into factors that
are exactly 0 or 1 when unused (``x + 0 * y`` is ``x``), so an unused option changes nothing,
and the loop vectorises. Each product that meets a sum is one fused multiply-add (``mul_add``),
in the parameters' dtype: the same bits in every compiled copy of a kernel, within rounding of
the reference's separate multiply and add.
"""

import math

import numpy as np
from numba import njit
from numba.core import config
from numba.extending import overload, register_jitable

from . import codes
from ._config import KERNEL_OPTIONS
from .activation import _fma

PLAIN, MOMENTUM, ADAM = 0, 1, 2  # kinds of step

# slots of the vector step_scalars fills
LR, MU, NESTEROV, COUPLED_DECAY, DECOUPLED_DECAY, BETA1, BETA2, EPS, ADAM_RATE = range(9)
N_STEP_SCALARS = 9

register_jitable(codes.mix64)
register_jitable(codes.keep_unit_formula)
register_jitable(codes.drop_threshold)
drop_threshold_of = codes.drop_threshold  # callable from compiled code too


def step_kind(hyper):
    """PLAIN, MOMENTUM or ADAM for a hyperparameter vector."""
    if hyper[codes.ADAM] != 0:
        return ADAM
    return MOMENTUM if hyper[codes.MOMENTUM] > 0 else PLAIN


register_jitable(step_kind)


@njit(**KERNEL_OPTIONS)
def step_scalars(out, hyper, t):
    """out[N_STEP_SCALARS] (params dtype) for optimizer step number t (1-based)."""
    decay = hyper[codes.WEIGHT_DECAY]
    decoupled = hyper[codes.DECOUPLED] != 0
    out[LR] = hyper[codes.LR]
    out[MU] = hyper[codes.MOMENTUM]
    out[NESTEROV] = hyper[codes.NESTEROV]
    out[COUPLED_DECAY] = 0.0 if decoupled else decay
    out[DECOUPLED_DECAY] = hyper[codes.LR] * decay if decoupled else 0.0
    out[BETA1] = hyper[codes.BETA1]
    out[BETA2] = hyper[codes.BETA2]
    out[EPS] = hyper[codes.EPS]
    if hyper[codes.ADAM] != 0:
        b1 = hyper[codes.BETA1]
        b2 = hyper[codes.BETA2]
        out[ADAM_RATE] = hyper[codes.LR] * math.sqrt(1.0 - b2**t) / (1.0 - b1**t)
    else:
        out[ADAM_RATE] = 0.0


# Constants of the update rules, as float32: with a float32 operand they stay float32, with a
# float64 one they become float64, as NumPy's Python scalars do. A literal 1 or 0 is an int64 to
# Numba, and int64 with float32 gives float64: the float32 steps were computed in float64 (half
# the lanes, and conversions), and rounded otherwise than the reference's float32 arithmetic.
_ONE = np.float32(1)
_ZERO = np.float32(0)
_TINY = np.float32(1e-30)
_NEGLIGIBLE = np.float32(2.0**-27)


def _python_mul_add(a, b, c):
    return a * b + c


# Every product that meets a sum is an explicit fused multiply-add: left to LLVM's contraction
# ("contract"), whether a * b + c is fused differed between the code compiled in this process
# and the same kernel loaded from the cache, and so did a float32 run's weights.
mul_add = _python_mul_add if config.DISABLE_JIT else _fma


@njit(**KERNEL_OPTIONS)
def flushed(x):
    """x, or 0 where |x| < 1e-30 (NaN stays NaN): a velocity or moment state. A parameter whose
    gradient stays 0 (a pixel never lit, a dead ReLU unit) has its velocity decay by mu per step
    into subnormal numbers, where round-to-nearest holds it for ever (0.9 times a few of the
    smallest steps rounds back to itself), and every later step computes on it: Intel cores take
    a microcode assist for each (an epoch of the 784-300-10 recipe three times slower by its
    third; BENCHMARKS.md, session 62). A velocity of 1e-30 moves no weight above 1e-23."""
    return x if abs(x) >= _TINY else x - x


@njit(**KERNEL_OPTIONS)
def plain_update(wi, gi, lr, cd, dd):
    """w after a plain SGD step from gradient gi (coupled decay cd, decoupled dd = lr * decay)."""
    return mul_add(-dd, wi, mul_add(-lr, mul_add(cd, wi, gi), wi))


@njit(**KERNEL_OPTIONS)
def momentum_update(wi, gi, vi, lr, mu, nest, cd, dd):
    """(w, v) after a momentum step (Nesterov when nest is 1, else 0); a velocity below 1e-30 is
    flushed to 0 (``flushed``)."""
    gi = mul_add(cd, wi, gi)
    vi = flushed(mul_add(mu, vi, -(lr * gi)))
    step = mul_add(_ONE - nest, vi, nest * mul_add(mu, vi, -(lr * gi)))
    return mul_add(-dd, wi, wi + step), vi


@njit(**KERNEL_OPTIONS)
def adam_update(wi, gi, mi, si, b1, b2, eps, rate, cd, dd, m_floor, s_floor):
    """(w, m, s) after an Adam step (rate = lr * sqrt(1 - b2^t) / (1 - b1^t)); moments below
    ``moment_floors(eps)`` are flushed to 0."""
    gi = mul_add(cd, wi, gi)
    mi = mul_add(b1, mi, (_ONE - b1) * gi)
    si = mul_add(b2, si, (_ONE - b2) * (gi * gi))
    mi = mi if abs(mi) >= m_floor else mi - mi
    si = si if si >= s_floor else si - si
    return mul_add(-dd, wi, wi - rate * mi / (np.sqrt(si) + eps)), mi, si


@njit(**KERNEL_OPTIONS)
def moment_floors(eps):
    """(m_floor, s_floor): Adam's moments below them are flushed to 0. A parameter whose
    gradient stays 0 (a pixel that is never lit) has m and s decay by b1 and b2 per step into
    subnormals, which x86 computes ~100x slower. The floors: |m| below 1e-30 and below
    eps * 2^-27, s below 1e-30 and below (eps * 2^-27)^2, so that the step m / (sqrt(s) + eps)
    moves the weight by at most rate * 2^-27 less, and sqrt(s) + eps is eps to float32
    rounding. (A flush of s below 1e-30 alone took sqrt(s) out of the denominator where it was
    not small beside a tiny eps: eps=1e-20 and gradients of 1e-16 stepped ~400x as far as the
    reference.) With an eps below about 1e-11, float32 moments may go subnormal: slower, not wrong."""
    floor = eps * _NEGLIGIBLE
    return min(_TINY, floor), min(_TINY, floor * floor)


# ``decay`` arguments of apply_step: numpy booleans, so that Numba types them as one boolean
# (a literal True or False would compile apply_step twice).
DECAY = np.bool_(True)
NO_DECAY = np.bool_(False)


@njit(**KERNEL_OPTIONS)
def apply_step(w, g, slots, offset, kind, sc, decay):
    """One step of w[n] = params[offset : offset + n] from its batch-mean gradient g[n];
    slots[S, P] at the same offsets. ``decay`` False for biases (no decay)."""
    n = w.shape[0]
    lr = sc[LR]
    zero = sc[LR] * _ZERO
    cd = sc[COUPLED_DECAY] if decay else zero
    dd = sc[DECOUPLED_DECAY] if decay else zero
    if kind == PLAIN:
        for i in range(n):
            w[i] = plain_update(w[i], g[i], lr, cd, dd)
    elif kind == MOMENTUM:
        mu = sc[MU]
        nest = sc[NESTEROV]
        v = slots[0, offset : offset + n]
        for i in range(n):
            w[i], v[i] = momentum_update(w[i], g[i], v[i], lr, mu, nest, cd, dd)
    else:
        b1 = sc[BETA1]
        b2 = sc[BETA2]
        eps = sc[EPS]
        rate = sc[ADAM_RATE]
        m_floor, s_floor = moment_floors(eps)
        m = slots[0, offset : offset + n]
        s = slots[1, offset : offset + n]
        for i in range(n):
            w[i], m[i], s[i] = adam_update(w[i], g[i], m[i], s[i], b1, b2, eps, rate, cd, dd, m_floor, s_floor)


@njit(**KERNEL_OPTIONS)
def apply_step_rows(W, G, slots, offset, kind, sc, decay):
    """One step of the rows W [R, n] = params[offset : offset + R * n] from their batch-mean
    gradient G[:, :n] (G's rows may be longer: padded); slots[S, P] at the same offsets.
    ``decay`` False for biases (no decay). apply_step's loops over many rows in one call: a
    call per row (its views' reference counts and setup) cost more than plain SGD's arithmetic
    on rows of 100. (apply_step itself as one row of this measured 4% slower per-sample: the
    reshape is a call too.)"""
    n = W.shape[1]
    lr = sc[LR]
    zero = sc[LR] * _ZERO
    cd = sc[COUPLED_DECAY] if decay else zero
    dd = sc[DECOUPLED_DECAY] if decay else zero
    if kind == PLAIN:
        for j in range(W.shape[0]):
            for i in range(n):
                W[j, i] = plain_update(W[j, i], G[j, i], lr, cd, dd)
    elif kind == MOMENTUM:
        mu = sc[MU]
        nest = sc[NESTEROV]
        V = slots[0, offset : offset + W.size].reshape(W.shape)
        for j in range(W.shape[0]):
            for i in range(n):
                W[j, i], V[j, i] = momentum_update(W[j, i], G[j, i], V[j, i], lr, mu, nest, cd, dd)
    else:
        b1 = sc[BETA1]
        b2 = sc[BETA2]
        eps = sc[EPS]
        rate = sc[ADAM_RATE]
        m_floor, s_floor = moment_floors(eps)
        M = slots[0, offset : offset + W.size].reshape(W.shape)
        S = slots[1, offset : offset + W.size].reshape(W.shape)
        for j in range(W.shape[0]):
            for i in range(n):
                W[j, i], M[j, i], S[j, i] = adam_update(
                    W[j, i], G[j, i], M[j, i], S[j, i], b1, b2, eps, rate, cd, dd, m_floor, s_floor)


def kept(seed, sample, unit, threshold):
    """Whether unit ``unit`` of the ``sample``-th trained sample is kept (``codes.keep_unit``)."""
    return bool(codes.keep_unit(seed, sample, unit, threshold))


@overload(kept, jit_options=KERNEL_OPTIONS)
def _kept_overload(seed, sample, unit, threshold):
    def impl(seed, sample, unit, threshold):
        return codes.keep_unit_formula(np.uint64(seed), np.uint64(sample), np.uint64(unit), np.uint64(threshold))

    return impl
