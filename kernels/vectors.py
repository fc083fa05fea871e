"""64-byte vectors held in registers, for the register-blocked loops of the kernels.

Numba leaves LLVM's SLP vectoriser off (``NUMBA_SLP_VECTORIZE``, numba PR #8852), so a loop
that keeps, say, 128 hidden sums in scalar locals stays scalar or becomes gathers. These
helpers give a kernel LLVM vectors directly: ``Vec(dtype)`` is ``<64 bytes / itemsize x T>``
(16 float32 or 8 float64). LLVM lowers it to one zmm register with AVX-512 or two ymm with
AVX2, so nothing here depends on the CPU kind.

    lanes(a)                 the number of a.dtype items in a vector (16 or 8)
    vload(a, i)              a[i : i + lanes(a)] as a vector
    vstore(a, i, v)          v into a[i : i + lanes(a)]
    vload_part(a, i, m)      a[i : i + m] into the vector's first m lanes, zeros after
    vstore_part(a, i, v, m)  v's first m lanes into a[i : i + m]
    vsplat(a, x)             x (cast to a.dtype) in every lane
    vfma(x, w, acc)          acc + x * w, lane by lane (one fused multiply-add where allowed)
    hload(a, i)              a[i : i + lanes(a) // 2]: a vector of half the width (32 bytes)
    hload_part(a, i, m)      its masked form, as vload_part
    hzeros(a)                a half-width vector of zeros
    vsum(v)                  the sum of v's lanes (of either width), in one order on every target
    vfold(u, v, level)       one level of vsum's tree for many sums at once (below)
    ordered_add(x, y)        x + y for two floats, an addition LLVM may not regroup (below)

``vsum`` adds the upper half of the lanes to the lower half, lane by lane, until one lane is
left: for 8 lanes ``((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]))``, whatever
the registers. Its additions carry a fast-math flag of their own that allows no reassociation
(``contract``): Numba gives the kernels' flags, ``reassoc`` among them, only to floating-point
operations that have none, and with it LLVM may turn such a tree into its own reduction, in an
order that follows the target's register width. (Loops that LLVM vectorises itself sum in such an
order: the mini-batch kernel's dense forward gave other last bits on AVX2 than on AVX-512 until
it was written with these, BENCHMARKS.md session 62.)

``vfold`` takes two vectors of one type whose lanes are segments of ``lanes >> (level - 1)``
(level 1: each vector one segment) and returns one vector of segments half as long: each of u's
segments, then each of v's, its lower half added to its upper half lane by lane, vsum's step.
Folding the partial-sum vectors of U sums pairwise, level by level (one vector folded with
itself once the pairs run out), leaves the U sums in the first U lanes, each the same bits as
its vsum: eight float32 sums in eight folds (8 additions, 16 shuffles), where eight vsums take
32 additions and 64 shuffles. Segments shorter than 2 are not folded (u is returned).

``ordered_add`` is one scalar addition with vsum's flag of its own: a loop that accumulates
with it sums in index order on every target, where ``total += x`` (with the kernels' fast-math
flags) lets LLVM split the sum over vector lanes, as wide as the target's: the loss rows' sums
over the outputs (the softmax normaliser, softmax+MSE's p.g, the MSE and BCE losses) and a
batch's loss total gave other last bits on AVX-512 than on AVX2 (audit 68, session 63).

``a`` is a C-contiguous 1-d float array (anything else is a typing error). ``m`` is clamped to
[0, lanes]; the ``_part`` versions are masked moves (llvm.masked.load and .store) that touch
nothing outside a[i : i + m], so a row's tail needs no scalar loop. Indices do not wrap around.
With Numba's bounds checking on (NUMBA_BOUNDSCHECK=1) the first and last items a move touches
are checked. Under NUMBA_DISABLE_JIT the same names are plain-Python versions on NumPy arrays
(``python_vload`` and so on, also the tests' reference).

Kernels call the intrinsics themselves rather than overloads: typing an intrinsic call is
cheap, where an overload compiles a function for each signature (a kernel with 40 vector
operations compiled in 0.2 s instead of 0.5-0.9 s).
"""
import os

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils, config
from numba.core.errors import TypingError
from numba.extending import intrinsic, models, register_model

VECTOR_BYTES = 64


def register_block_of(features):
    """How many 64-byte vectors a register-blocked loop keeps in registers for a target with
    LLVM features ``features`` ("+avx2,-avx512f,..."): eight with AVX-512's 32 zmm registers,
    four on anything else (AVX2 has 16 ymm: eight 64-byte accumulators would be all of them,
    and LLVM spills them around every load; on an AMD EPYC Zen 3 the per-sample kernel with
    blocks of eight ran at 0.72x the speed of the loops before them and half that of blocks of
    four, BENCHMARKS.md session 22)."""
    return 8 if "+avx512f" in features.split(",") else 4


def _target_features():
    """The features Numba compiles for: NUMBA_CPU_FEATURES, else the host's (as Numba's codegen
    takes them; NUMBA_CPU_NAME alone does not change them)."""
    if config.CPU_FEATURES is not None:
        return config.CPU_FEATURES
    from numba.core.codegen import get_host_cpu_features

    return get_host_cpu_features()


def _register_block():
    """register_block_of the target, or FASTMLP_REGISTER_BLOCK (4 or 8) where set: the tests
    compile the other kind's blocks with it (the kernels' cache stamp includes it, _config.py)."""
    chosen = os.environ.get("FASTMLP_REGISTER_BLOCK", "")
    if chosen == "":
        return register_block_of(_target_features())
    if chosen not in ("4", "8"):
        raise ValueError(f"FASTMLP_REGISTER_BLOCK must be 4 or 8 (vectors in a register block), not {chosen!r}")
    return int(chosen)


# A compile-time constant of the kernels that use it: Numba keys its cache by the target's CPU
# name and features, so code compiled for one block width is never loaded on the other kind.
REGISTER_BLOCK = _register_block()


HALF_BYTES = VECTOR_BYTES // 2  # hload's vectors


class Vec(types.Type):
    """A vector of ``nbytes // itemsize`` items of a float dtype (VECTOR_BYTES, or HALF_BYTES)."""

    def __init__(self, dtype, nbytes=VECTOR_BYTES):
        self.dtype = dtype
        self.lanes = nbytes // (dtype.bitwidth // 8)
        super().__init__(name=f"Vec({dtype} x {self.lanes})")


@register_model(Vec)
class _VecModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        item = dmm.lookup(fe_type.dtype).get_value_type()
        super().__init__(dmm, fe_type, ir.VectorType(item, fe_type.lanes))


# ---------------------------------------------------------------------------------------------
# Python versions (the public names under NUMBA_DISABLE_JIT; the tests' reference)


def python_lanes(a):
    return VECTOR_BYTES // a.itemsize


def python_vload(a, i):
    return python_vload_part(a, i, python_lanes(a))


def python_vload_part(a, i, m):
    out = np.zeros(python_lanes(a), a.dtype)
    m = max(0, min(int(m), out.shape[0]))
    if i < 0 or a[i : i + m].shape[0] != m:
        raise IndexError("vector load outside the array")
    out[:m] = a[i : i + m]
    return out


def python_vstore(a, i, v):
    python_vstore_part(a, i, v, python_lanes(a))


def python_vstore_part(a, i, v, m):
    m = max(0, min(int(m), v.shape[0]))
    if i < 0 or a[i : i + m].shape[0] != m:
        raise IndexError("vector store outside the array")
    a[i : i + m] = v[:m]


def python_vsplat(a, x):
    return np.full(python_lanes(a), x, a.dtype)


def python_vfma(x, w, acc):
    return acc + x * w


def python_hload(a, i):
    return python_vload_part(a, i, python_lanes(a) // 2)[: python_lanes(a) // 2]


def python_hload_part(a, i, m):
    return python_vload_part(a, i, min(int(m), python_lanes(a) // 2))[: python_lanes(a) // 2]


def python_hzeros(a):
    return np.zeros(python_lanes(a) // 2, a.dtype)


def python_vsum(v):
    v = np.asarray(v)
    while v.shape[0] > 1:
        half = v.shape[0] // 2
        v = v[:half] + v[half:]
    return v[0]


def python_vfold(u, v, level):
    u, v = np.asarray(u), np.asarray(v)
    n = u.shape[0]
    size = n >> (int(level) - 1)
    if size < 2:
        return u.copy()
    half = size // 2
    segments = np.concatenate([u, v]).reshape(-1, size)
    return (segments[:, :half] + segments[:, half:]).reshape(n)


def python_ordered_add(x, y):
    return x + y


# ---------------------------------------------------------------------------------------------
# Compiled versions


def _lane_mask(builder, n_lanes, m):
    """<n_lanes x i1>: lane k is on when k < m."""
    index_type = m.type
    lane_numbers = ir.Constant(ir.VectorType(index_type, n_lanes), list(range(n_lanes)))
    undefined = ir.Constant(ir.VectorType(index_type, n_lanes), ir.Undefined)
    splat = builder.insert_element(undefined, m, ir.Constant(ir.IntType(32), 0))
    zeros = ir.Constant(ir.VectorType(ir.IntType(32), n_lanes), [0] * n_lanes)
    splat = builder.shuffle_vector(splat, splat, zeros)
    return builder.icmp_signed("<", lane_numbers, splat)


def _vector_pointer(context, builder, array_type, array_value, index, count, vector_type):
    """Pointer to a[index] as a vector pointer; with bounds checking on, a[index] and
    a[index + count - 1] are checked (when count > 0)."""
    array = context.make_array(array_type)(context, builder, array_value)
    if context.enable_boundscheck:
        with builder.if_then(builder.icmp_signed(">", count, ir.Constant(count.type, 0))):
            last = builder.sub(builder.add(index, count), ir.Constant(index.type, 1))
            for checked in (index, last):
                cgutils.get_item_pointer(
                    context, builder, array_type, array, [checked], wraparound=False, boundscheck=True
                )
    item = cgutils.get_item_pointer(context, builder, array_type, array, [index], wraparound=False)
    return builder.bitcast(item, context.get_value_type(vector_type).as_pointer())


def _clamped(builder, m, n_lanes):
    """min(max(m, 0), n_lanes), as an intp."""
    zero = ir.Constant(m.type, 0)
    top = ir.Constant(m.type, n_lanes)
    m = builder.select(builder.icmp_signed("<", m, zero), zero, m)
    return builder.select(builder.icmp_signed(">", m, top), top, m)


def _masked_function(builder, kind, llvm_vector):
    """llvm.masked.load / llvm.masked.store of a vector of this type."""
    n_lanes = llvm_vector.count
    mask_type = ir.VectorType(ir.IntType(1), n_lanes)
    pointer_type = llvm_vector.as_pointer()
    vector_name = f"v{n_lanes}{llvm_vector.element.intrinsic_name}"
    opaque = str(pointer_type) == "ptr"  # LLVM's opaque pointers (newer llvmlite) or typed ones
    suffix = f"{vector_name}.p0" if opaque else f"{vector_name}.p0{vector_name}"
    if kind == "load":
        signature = ir.FunctionType(llvm_vector, [pointer_type, ir.IntType(32), mask_type, llvm_vector])
    else:
        signature = ir.FunctionType(ir.VoidType(), [llvm_vector, pointer_type, ir.IntType(32), mask_type])
    return cgutils.get_or_insert_function(builder.module, signature, f"llvm.masked.{kind}.{suffix}")


def _pointer_and_count(context, builder, sig, args, vector, count_at):
    """The vector pointer to a[i] and the clamped lane count (all lanes when ``count_at`` is
    None, else the count is args[count_at]) of a load or store a[i ...]."""
    index = context.cast(builder, args[1], sig.args[1], types.intp)
    if count_at is None:
        count = ir.Constant(index.type, vector.lanes)
    else:
        count = _clamped(builder, context.cast(builder, args[count_at], sig.args[count_at], types.intp), vector.lanes)
    pointer = _vector_pointer(context, builder, sig.args[0], args[0], index, count, vector)
    return pointer, count


def _load_codegen(masked):
    def codegen(context, builder, sig, args):
        vector = sig.return_type
        pointer, count = _pointer_and_count(context, builder, sig, args, vector, 2 if masked else None)
        align = vector.dtype.bitwidth // 8
        if not masked:
            return builder.load(pointer, align=align)
        llvm_vector = context.get_value_type(vector)
        mask = _lane_mask(builder, vector.lanes, count)
        alignment = ir.Constant(ir.IntType(32), align)
        zeros = ir.Constant(llvm_vector, None)
        return builder.call(_masked_function(builder, "load", llvm_vector), [pointer, alignment, mask, zeros])

    return codegen


def _store_codegen(masked):
    def codegen(context, builder, sig, args):
        vector = sig.args[2]
        pointer, count = _pointer_and_count(context, builder, sig, args, vector, 3 if masked else None)
        align = vector.dtype.bitwidth // 8
        if not masked:
            builder.store(args[2], pointer, align=align)
            return context.get_dummy_value()
        llvm_vector = context.get_value_type(vector)
        mask = _lane_mask(builder, vector.lanes, count)
        alignment = ir.Constant(ir.IntType(32), align)
        builder.call(_masked_function(builder, "store", llvm_vector), [args[2], pointer, alignment, mask])
        return context.get_dummy_value()

    return codegen


def _contiguous(a):
    """The loads and stores read memory as a vector: only C-contiguous 1-d float arrays."""
    if not (isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C" and isinstance(a.dtype, types.Float)):
        raise TypingError(f"vector loads and stores need a C-contiguous 1-d float array, not {a}")


@intrinsic
def _vload(typingctx, a, i):
    _contiguous(a)
    return Vec(a.dtype)(a, i), _load_codegen(False)


@intrinsic
def _vload_part(typingctx, a, i, m):
    _contiguous(a)
    return Vec(a.dtype)(a, i, m), _load_codegen(True)


@intrinsic
def _hload(typingctx, a, i):
    _contiguous(a)
    return Vec(a.dtype, HALF_BYTES)(a, i), _load_codegen(False)


@intrinsic
def _hload_part(typingctx, a, i, m):
    _contiguous(a)
    return Vec(a.dtype, HALF_BYTES)(a, i, m), _load_codegen(True)


@intrinsic
def _hzeros(typingctx, a):
    vector = Vec(a.dtype, HALF_BYTES)

    def codegen(context, builder, sig, args):
        return ir.Constant(context.get_value_type(vector), None)

    return vector(a), codegen


@intrinsic
def _vstore(typingctx, a, i, v):
    _contiguous(a)
    return types.none(a, i, v), _store_codegen(False)


@intrinsic
def _vstore_part(typingctx, a, i, v, m):
    _contiguous(a)
    return types.none(a, i, v, m), _store_codegen(True)


@intrinsic
def _vsplat(typingctx, a, x):
    vector = Vec(a.dtype)

    def codegen(context, builder, sig, args):
        llvm_vector = context.get_value_type(vector)
        value = context.cast(builder, args[1], sig.args[1], a.dtype)
        undefined = ir.Constant(llvm_vector, ir.Undefined)
        one = builder.insert_element(undefined, value, ir.Constant(ir.IntType(32), 0))
        zeros = ir.Constant(ir.VectorType(ir.IntType(32), vector.lanes), [0] * vector.lanes)
        return builder.shuffle_vector(one, undefined, zeros)

    return vector(a, x), codegen


@intrinsic
def _vfma(typingctx, x, w, acc):
    if not (isinstance(acc, Vec) and x == acc and w == acc):
        raise TypingError(f"vfma needs three vectors of one type, not {x}, {w}, {acc}")

    def codegen(context, builder, sig, args):
        llvm_vector = context.get_value_type(sig.return_type)
        name = f"llvm.fmuladd.v{sig.return_type.lanes}{llvm_vector.element.intrinsic_name}"
        function = cgutils.get_or_insert_function(builder.module, ir.FunctionType(llvm_vector, [llvm_vector] * 3), name)
        return builder.call(function, list(args))

    return acc(x, w, acc), codegen


@intrinsic
def _vsum(typingctx, v):
    if not isinstance(v, Vec):
        raise TypingError(f"vsum needs a vector, not {v}")

    def codegen(context, builder, sig, args):
        x = args[0]
        n = v.lanes
        while n > 1:
            half = n // 2
            take = [ir.Constant(ir.VectorType(ir.IntType(32), half), list(range(start, start + half))) for start in (0, half)]
            x = builder.fadd(builder.shuffle_vector(x, x, take[0]), builder.shuffle_vector(x, x, take[1]))
            x.flags.append("contract")  # (flags of its own: Numba's fast-math pass leaves it as it is)
            n = half
        return builder.extract_element(x, ir.Constant(ir.IntType(32), 0))

    return v.dtype(v), codegen


@intrinsic
def _vfold(typingctx, u, v, level):
    if not (isinstance(u, Vec) and u == v):
        raise TypingError(f"vfold needs two vectors of one type, not {u}, {v}")
    if not isinstance(level, types.IntegerLiteral):
        raise TypingError(f"vfold's level must be a literal integer, not {level}")
    n = u.lanes
    size = n >> (level.literal_value - 1)

    def codegen(context, builder, sig, args):
        if size < 2:
            return args[0]
        half = size // 2
        starts = range(0, 2 * n, size)  # the segments of u, then of v, in the pair's 2n lanes
        take = [ir.Constant(ir.VectorType(ir.IntType(32), n), [i + h for start in starts for i in range(start, start + half)])
                for h in (0, half)]
        x = builder.fadd(builder.shuffle_vector(args[0], args[1], take[0]), builder.shuffle_vector(args[0], args[1], take[1]))
        x.flags.append("contract")  # as vsum's
        return x

    return u(u, v, level), codegen


@intrinsic
def _ordered_add(typingctx, x, y):
    if not (isinstance(x, types.Float) and isinstance(y, types.Float)):
        raise TypingError(f"ordered_add needs two floats, not {x}, {y}")
    result = typingctx.unify_types(x, y)

    def codegen(context, builder, sig, args):
        total = builder.fadd(context.cast(builder, args[0], sig.args[0], result),
                             context.cast(builder, args[1], sig.args[1], result))
        total.flags.append("contract")  # as vsum's: Numba's fast-math pass leaves it without reassoc
        return total

    return result(x, y), codegen


@intrinsic
def _lanes(typingctx, a):
    n = VECTOR_BYTES // (a.dtype.bitwidth // 8)

    def codegen(context, builder, sig, args):
        return context.get_constant(types.intp, n)

    return types.intp(a), codegen


# The public names (module docstring).
if config.DISABLE_JIT:
    lanes, vload, vload_part, vstore, vstore_part, vsplat, vfma = (
        python_lanes, python_vload, python_vload_part, python_vstore, python_vstore_part, python_vsplat, python_vfma)
    hload, hload_part, hzeros, vsum = python_hload, python_hload_part, python_hzeros, python_vsum
    vfold, ordered_add = python_vfold, python_ordered_add
else:
    lanes, vload, vload_part, vstore, vstore_part, vsplat, vfma = (
        _lanes, _vload, _vload_part, _vstore, _vstore_part, _vsplat, _vfma)
    hload, hload_part, hzeros, vsum = _hload, _hload_part, _hzeros, _vsum
    vfold, ordered_add = _vfold, _ordered_add
