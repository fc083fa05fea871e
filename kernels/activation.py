"""Hidden-layer activations: vectorisable exp/tanh, forward and backward kernels.

llvmlite ships without a vector maths library, so ``np.exp`` in a loop is a scalar libm call
(about 4 ns per float32 element, tanh 13 ns). ``fast_exp`` and ``fast_tanh`` below are
branch-free polynomial versions that LLVM vectorises (about 1 ns per element, float32 or
float64), with exact +-inf and NaN behaviour. Maximum errors, float32 and float64, compiled with
the kernels' options (``_config.KERNEL_OPTIONS``; ``tests/test_kernels.py`` checks them):

    exp 1.02 ulp, tanh 1.36 ulp, sigmoid 2.52 ulp

Measured on x86-64 with FMA: float32 on every input, 1.011, 1.331 and 2.481 ulp; float64 on
2*10^9 samples, most where the error peaks (tanh near |x| = 0.625, sigmoid near exp(-x) = 2^53),
1.009, 1.348 and 2.499 ulp. A result below the smallest normal float (1.2e-38 in float32,
2.3e-308 in float64) is within that much of the exact value: exp flushes it to zero, sigmoid
may return it subnormal, and tanh of a subnormal x is x. The sign of zero is not kept ("nsz"):
tanh(-0.0) may be +0.0.

Activations are chosen with an integer code (``codes.py``); derivatives are written in terms
of the stored outputs ``a = act(z)``.
"""

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

from ._config import KERNEL_OPTIONS
from .codes import RELU, SIGMOID, TANH  # IDENTITY is every branch's "else": nothing to do


# ---------------------------------------------------------------------------------------------
# LLVM building blocks. Kernels compile with "reassoc", which would let LLVM regroup the
# Cody-Waite range reduction of exp (x - n*C1 - n*C2 -> x - n*(C1+C2)) and lose its extra
# precision; an explicit fma cannot be regrouped. The bit casts build 2^n without a float
# multiply that could overflow.


@intrinsic
def _fma(typingctx, a, b, c):
    """a * b + c with a single rounding (llvm.fma, one instruction on FMA hardware)."""
    if not (isinstance(a, types.Float) and a == b == c):
        return None

    def codegen(context, builder, signature, args):
        return builder.fma(*args)

    return a(a, b, c), codegen


def _where(condition, a, b):
    """``a if condition else b``, compiled to an LLVM select: no branch, so loops of it vectorise."""
    return a if condition else b  # the pure-Python meaning, used when NUMBA_DISABLE_JIT=1


@intrinsic
def _select(typingctx, condition, a, b):
    if not isinstance(condition, types.Boolean):
        return None
    if not (isinstance(a, types.Float) and isinstance(b, types.Float)):
        return None
    result = typingctx.unify_types(a, b)

    def codegen(context, builder, signature, args):
        condition_type, a_type, b_type = signature.args
        return builder.select(
            args[0],
            context.cast(builder, args[1], a_type, result),
            context.cast(builder, args[2], b_type, result),
        )

    return result(condition, a, b), codegen


@overload(_where, jit_options=KERNEL_OPTIONS)
def _where_overload(condition, a, b):
    return lambda condition, a, b: _select(condition, a, b)


@intrinsic
def _float_bits(typingctx, x):
    """The IEEE-754 bits of a float32 (as int32) or float64 (as int64)."""
    if x == types.float32:
        bits_type, llvm_type = types.int32, ir.IntType(32)
    elif x == types.float64:
        bits_type, llvm_type = types.int64, ir.IntType(64)
    else:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], llvm_type)

    return bits_type(x), codegen


@intrinsic
def _float_from_bits(typingctx, bits, like):
    """The float of the same type as ``like`` whose IEEE-754 bits are ``bits``."""
    if like == types.float32:
        bits_type, llvm_type = types.int32, ir.FloatType()
    elif like == types.float64:
        bits_type, llvm_type = types.int64, ir.DoubleType()
    else:
        return None
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        value = context.cast(builder, args[0], signature.args[0], bits_type)
        return builder.bitcast(value, llvm_type)

    return like(bits, like), codegen


# ---------------------------------------------------------------------------------------------
# exp(x) = 2^n * exp(r), n = round(x / ln 2), |r| <= ln(2) / 2. Inputs are clamped first so that
# n stays in the normal exponent range; the selects at the end restore inf, 0 and NaN.


def _exp_float32(x):
    hi = np.float32(88.72283)  # largest float32 whose exp is finite
    lo = np.float32(-87.33654)  # ln(FLT_MIN): below it the result would be subnormal
    xc = min(max(x, lo), hi)
    n = np.floor(xc * np.float32(1.442695) + np.float32(0.5))
    r = _fma(-n, np.float32(0.693359375), xc)
    r = _fma(-n, np.float32(-2.12194440e-4), r)
    # Cephes expf minimax polynomial for exp(r) - 1 - r
    p = np.float32(1.9875691500e-4)
    p = p * r + np.float32(1.3981999507e-3)
    p = p * r + np.float32(8.3334519073e-3)
    p = p * r + np.float32(4.1665795894e-2)
    p = p * r + np.float32(1.6666665459e-1)
    p = p * r + np.float32(5.0000001201e-1)
    y = _fma(r * r, p, r) + np.float32(1.0)
    y = _float_from_bits(_float_bits(y) + (np.int32(n) << np.int32(23)), y)  # y * 2^n
    y = _where(x > hi, np.float32(np.inf), y)
    y = _where(x < lo, np.float32(0.0), y)
    return _where(x != x, x, y)


def _exp_float64(x):
    hi = 709.782712893384  # ln(DBL_MAX)
    lo = -708.3964185322641  # ln(DBL_MIN)
    xc = min(max(x, lo), hi)
    n = np.floor(xc * 1.4426950408889634 + 0.5)
    r = _fma(-n, 6.93145751953125e-1, xc)
    r = _fma(-n, 1.42860682030941723212e-6, r)
    # Taylor series of exp(r) - 1 - r to degree 13: truncation error < 5e-18 for |r| <= ln(2)/2
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    y = _fma(r * r, p, r) + 1.0
    y = _float_from_bits(_float_bits(y) + (np.int64(n) << np.int64(52)), y)  # y * 2^n
    y = _where(x > hi, np.inf, y)
    y = _where(x < lo, 0.0, y)
    return _where(x != x, x, y)


# tanh(x) = x + x^3 P(x^2) for |x| < 0.625 (Cephes), else sign(x) (1 - 2 / (exp(2|x|) + 1)).
# Both branches are computed and one is selected, so a loop of them vectorises.


def _tanh_float32(x):
    s = x * x
    p = np.float32(-5.70498872745e-3)
    p = p * s + np.float32(2.06390887954e-2)
    p = p * s - np.float32(5.37397155531e-2)
    p = p * s + np.float32(1.33314422036e-1)
    p = p * s - np.float32(3.33332819422e-1)
    small = _fma(p * s, x, x)
    large = np.float32(1.0) - np.float32(2.0) / (fast_exp(np.float32(2.0) * abs(x)) + np.float32(1.0))
    large = _where(x < np.float32(0.0), -large, large)
    return _where(abs(x) < np.float32(0.625), small, large)  # NaN: large is NaN


def _tanh_float64(x):
    s = x * x
    num = (-9.64399179425052238628e-1 * s - 9.92877231001918586564e1) * s - 1.61468768441708447952e3
    den = ((s + 1.12811678491632931402e2) * s + 2.23548839060100448583e3) * s + 4.84406305325125486048e3
    small = _fma(s * num / den, x, x)
    large = 1.0 - 2.0 / (fast_exp(2.0 * abs(x)) + 1.0)
    large = _where(x < 0.0, -large, large)
    return _where(abs(x) < 0.625, small, large)  # NaN: large is NaN


def fast_exp(x):
    """exp(x) for a float32/float64 scalar; vectorisable inside compiled loops."""
    # The pure-Python meaning, used when NUMBA_DISABLE_JIT=1: overflow to inf is expected
    # (sigmoid, tanh) and silent, as in compiled code.
    with np.errstate(over="ignore", under="ignore"):
        return np.exp(x)


def fast_tanh(x):
    """tanh(x) for a float32/float64 scalar; vectorisable inside compiled loops."""
    return np.tanh(x)


@overload(fast_exp, jit_options=KERNEL_OPTIONS)
def _fast_exp_overload(x):
    if x == types.float32:
        return _exp_float32
    if x == types.float64:
        return _exp_float64
    return None


@overload(fast_tanh, jit_options=KERNEL_OPTIONS)
def _fast_tanh_overload(x):
    if x == types.float32:
        return _tanh_float32
    if x == types.float64:
        return _tanh_float64
    return None


@njit(**KERNEL_OPTIONS)
def sigmoid(z):
    """1 / (1 + exp(-z)): exp(-z) = inf for z << 0 gives exactly 0, never NaN."""
    one = np.float32(1.0)  # float32 literals keep float32 maths float32 (and widen exactly)
    return one / (one + fast_exp(-z))


# ---------------------------------------------------------------------------------------------
# Row helpers used by the fused trainer: the code is tested once, outside the loop, so each
# branch is a plain loop LLVM can vectorise.


@njit(**KERNEL_OPTIONS)
def activation_row_forward(a, activation):
    """a[H] = act(a[H]), in place."""
    zero = np.float32(0.0)
    if activation == SIGMOID:
        for k in range(a.shape[0]):
            a[k] = sigmoid(a[k])
    elif activation == TANH:
        for k in range(a.shape[0]):
            a[k] = fast_tanh(a[k])
    elif activation == RELU:
        # max(a, 0) as a product: a select that keeps the loaded value where it is kept becomes a
        # masked store of the zeros, which AMD's Zen 2 runs about 6x slower (0.50 against 0.08 ns
        # an element, 2026-12-04). NaN stays NaN; -inf is clamped first, so that it gives 0 too.
        one = a.dtype.type(1.0)
        lowest = a.dtype.type(-3.4028234663852886e38)  # float32's lowest: below it, v * 0 is 0 all the same
        for k in range(a.shape[0]):
            v = a[k]
            a[k] = _where(v < lowest, lowest, v) * _where(v > zero, one, zero)


@njit(**KERNEL_OPTIONS)
def activation_row_backward(d, a, activation):
    """d[H] *= act'(z[H]), written with the outputs a[H] = act(z[H]); in place."""
    one = np.float32(1.0)
    zero = np.float32(0.0)
    if activation == SIGMOID:
        for k in range(d.shape[0]):
            d[k] *= a[k] * (one - a[k])
    elif activation == TANH:
        for k in range(d.shape[0]):
            d[k] *= one - a[k] * a[k]
    elif activation == RELU:
        for k in range(d.shape[0]):  # d * (a > 0), the reference's: a product, not a masked store
            d[k] *= _where(a[k] > zero, one, zero)


# ---------------------------------------------------------------------------------------------
# Mini-batch kernels


@njit(**KERNEL_OPTIONS)
def activation_forward(out, z, activation):
    """out[B,H] = act(z[B,H]). ``out`` may be ``z`` (in place)."""
    for row in range(z.shape[0]):
        for k in range(z.shape[1]):
            out[row, k] = z[row, k]
        activation_row_forward(out[row], activation)


@njit(**KERNEL_OPTIONS)
def activation_backward(dz, da, a, activation):
    """dz[B,H] = da[B,H] * act'(z[B,H]) for a[B,H] = act(z[B,H]); overwrites dz (may be da)."""
    for row in range(da.shape[0]):
        for k in range(da.shape[1]):
            dz[row, k] = da[row, k]
        activation_row_backward(dz[row], a[row], activation)
