"""Dense layers: sparse input rows, forward and backward kernels.

Parameters live in one flat vector ``params`` (float32 or float64), laid out by
``codes.parameter_layout``: dense layer ``l`` (0-based, ``l = 0 .. L-1``) maps
``layer_sizes[l]`` inputs to ``layer_sizes[l+1]`` outputs with

    W_l = params[w_offsets[l] : w_offsets[l] + n_in * n_out].reshape(n_in, n_out)  # input-major
    b_l = params[b_offsets[l] : b_offsets[l] + n_out]       # b_offsets[l] == -1: no bias

so ``out = x @ W + b``.

Input rows can be given sparse (CSR: ``indptr`` int64 [N+1], ``indices`` int32 [nnz],
``values`` [nnz] uint8 or float): zero inputs are then skipped exactly, which on MNIST (81%
zeros) saves most of the first layer's work. An input value is ``values[p] * input_scale``:
pass ``input_scale = dtype(1/255)`` for uint8 pixels and 1 for float inputs already scaled.

The ``*_row_*`` helpers are the per-sample steps the fused trainer in ``sgd.py`` is made of;
the ``linear_*`` and ``sparse_linear_*`` kernels are the mini-batch versions.
"""

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.np.arrayobj import populate_array
from numba.extending import intrinsic, overload

from ._config import KERNEL_OPTIONS
from .activation import activation_row_forward
from .optimizer import mul_add
from .vectors import (REGISTER_BLOCK, VECTOR_BYTES, lanes, vfma, vfold, vload, vload_part, vsplat, vstore, vstore_part,
                      vsum)

# Inputs of fewer entries are converted on one thread whatever ``threads`` says.
PARALLEL_CSR_ENTRIES = 1 << 20


def kernel_rows(x):
    """``x`` as the kernels read rows (``sparse_rows``, ``dense_rows_forward``): C-contiguous, in
    native byte order (the compiled kernels take no other), and a read-only view whatever x is:
    Numba types read-only arrays (memory maps, joblib's, pandas') apart from writeable ones, and
    compiled the kernels again for them (0.66 s for the two of sparse_rows)."""
    x = np.asarray(x)
    x = np.ascontiguousarray(x, dtype=x.dtype.newbyteorder("="))
    if x.flags.writeable:
        x = x.view()
        x.flags.writeable = False
    return x


def sparse_rows(x, threads=1, parts=1, compiled=True):
    """CSR form of the rows of x[N, D] (uint8 or float): ``(indptr, indices, values)``.

    ``indptr`` int64 [N+1], ``indices`` int32 [nnz] (column of each nonzero, ascending within a
    row), ``values`` [nnz] of x's dtype. Build it once per dataset (60,000 MNIST images: ~0.1 s
    on one thread). With ``threads`` > 1 a large x is converted in that many blocks of rows at
    once (the kernels release the GIL); the result is the same.

    With ``parts`` > 1 each row's pointers are split where the columns of each of ``parts``
    ranges begin (columns D * k // parts onwards: the mini-batch kernel's parts, whose rows it
    would otherwise search): indptr is then int64 [N * parts + 1], row i's nonzeros in part k
    are indptr[i * parts + k] .. indptr[i * parts + k + 1], and indptr[::parts] is the plain one.

    ``compiled=False``: the same arrays from NumPy alone (``_sparse_rows_numpy``), with nothing
    to compile: what a cold start converts with while a second process compiles the two kernels
    (``fastmlp._prewarm``); 1.3-2.1x the compiled conversion's time (60,000 MNIST images,
    ``bench/experiments/csr_by_numpy.py``: 99-116 against 64-78 ms for uint8, 139-148 against
    71-72 ms for float32; AMD EPYC Zen 4, AVX-512).
    """
    x = kernel_rows(x)
    n = x.shape[0]
    parts = int(parts)
    if parts < 1 or x.ndim != 2:  # (a plain wrapper, unlike the kernels: parts=0 wrote past indptr)
        raise ValueError(f"sparse_rows needs a 2-D x and parts >= 1; got x of shape {x.shape}, parts={parts}")
    if not compiled:
        return _sparse_rows_numpy(x, parts)
    blocks = max(1, min(int(threads), n, x.size // PARALLEL_CSR_ENTRIES))
    bounds = [n * k // blocks for k in range(blocks + 1)]
    indptr = np.zeros(n * parts + 1, np.int64)
    in_blocks(blocks, lambda r0, r1: _count_row_nonzeros(indptr[r0 * parts + 1 : r1 * parts + 1], x[r0:r1], parts),
               bounds)
    np.cumsum(indptr, out=indptr)
    indices = np.empty(indptr[-1], np.int32)
    values = np.empty(indptr[-1], x.dtype)
    in_blocks(blocks, lambda r0, r1: _gather_row_nonzeros(indices, values, x[r0:r1], indptr[r0 * parts : r1 * parts + 1],
                                                           parts), bounds)
    return indptr, indices, values


# Rows per block of _sparse_rows_numpy: its temporaries (a boolean mask and the nonzeros' int64
# positions) stay a few MB whatever N is.
NUMPY_CSR_ROWS = 4096


def _sparse_rows_numpy(x, parts):
    """``sparse_rows(x, parts=parts)`` by NumPy, a block of rows at a time: the nonzeros are
    found in row-major order, so each row's columns come out ascending, as the kernels give them.
    Two passes, as the compiled conversion makes (count, then gather), each block's mask made in
    both: keeping the first pass's positions would hold 8 bytes per nonzero (75 MB for MNIST)."""
    n, d = x.shape
    indptr = np.zeros(n * parts + 1, np.int64)
    counts = indptr[1:].reshape(n, parts)
    mask = np.empty((min(n, NUMPY_CSR_ROWS), d), np.bool_)
    for r0 in range(0, n, NUMPY_CSR_ROWS):
        r1 = min(r0 + NUMPY_CSR_ROWS, n)
        nonzero = np.not_equal(x[r0:r1], 0, out=mask[: r1 - r0])
        for k in range(parts):
            np.sum(nonzero[:, d * k // parts : d * (k + 1) // parts], axis=1, out=counts[r0:r1, k])
    np.cumsum(indptr, out=indptr)
    indices = np.empty(indptr[-1], np.int32)
    values = np.empty(indptr[-1], x.dtype)
    for r0 in range(0, n, NUMPY_CSR_ROWS):
        r1 = min(r0 + NUMPY_CSR_ROWS, n)
        at = np.flatnonzero(np.not_equal(x[r0:r1], 0, out=mask[: r1 - r0]))
        lo, hi = indptr[r0 * parts], indptr[r1 * parts]
        np.remainder(at, d, out=indices[lo:hi], casting="unsafe")
        values[lo:hi] = x[r0:r1].reshape(-1)[at]
    return indptr, indices, values


def in_blocks(blocks, work, bounds):
    """work(bounds[k], bounds[k + 1]) for every block k: the last on this thread, the others on
    threads of their own; returns when all are done (re-raising the first error)."""
    if blocks == 1:
        work(bounds[0], bounds[1])
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(blocks - 1) as pool:
        others = [pool.submit(work, bounds[k], bounds[k + 1]) for k in range(blocks - 1)]
        work(bounds[blocks - 1], bounds[blocks])
        for future in others:
            future.result()


@njit(**KERNEL_OPTIONS)
def _count_row_nonzeros(counts, x, parts):
    """counts[N * parts] = number of nonzeros in each part of each row of x[N, D] (``sparse_rows``)."""
    n_in = x.shape[1]
    for row in range(x.shape[0]):
        for part in range(parts):
            count = 0
            for j in range(n_in * part // parts, n_in * (part + 1) // parts):
                count += x[row, j] != 0
            counts[row * parts + part] = count


@njit(**KERNEL_OPTIONS)
def _gather_row_nonzeros(indices, values, x, indptr, parts):
    """indices[nnz], values[nnz] = columns and values of the nonzeros of x[N, D], row by row,
    row r's from indices[indptr[r * parts]] on (indptr [N * parts + 1]: x may be a block of a
    larger input)."""
    for row in range(x.shape[0]):
        p = indptr[row * parts]
        for j in range(x.shape[1]):
            if x[row, j] != 0:
                indices[p] = j
                values[p] = x[row, j]
                p += 1


# The first layer's index for ``layer_views``: a numpy integer, so that Numba types it int64
# like every other layer index (a literal 0 compiles layer_views a second time).
FIRST_LAYER = np.int64(0)


@njit(**KERNEL_OPTIONS)
def layer_views(params, layer_sizes, w_offsets, b_offsets, layer):
    """(W[n_in, n_out], b[n_out]) views of one layer in ``params``; b is empty without bias."""
    n_in = layer_sizes[layer]
    n_out = layer_sizes[layer + 1]
    w = w_offsets[layer]
    W = params[w : w + n_in * n_out].reshape(n_in, n_out)
    b = b_offsets[layer]
    bias = params[b : b + n_out] if b >= 0 else params[:0]
    return W, bias


@njit(**KERNEL_OPTIONS)
def fill_bias(z, b):
    """z[H] = b[H], or 0 when b is empty (no bias). A loop: array-to-array slice assignment
    costs seconds of compile time in Numba."""
    if b.shape[0] > 0:
        for k in range(z.shape[0]):
            z[k] = b[k]
    else:
        z[:] = 0


# ---------------------------------------------------------------------------------------------
# Per-sample steps. Sparse input rows use the input-major W[D,H]: one nonzero input touches one
# contiguous row. Dense layers use an output-major copy Wt[H,D] = W^T, so the forward pass is
# H contiguous dot products and the backward pass and update are H contiguous axpys: with a
# small output layer (H = 10) the input-major loops would be too short to vectorise.


@njit(**KERNEL_OPTIONS)
def _row(W, j):
    """W[j] for an index known to be >= 0: as unsigned it skips Numba's negative-index fix-up,
    which costs a few percent in the per-nonzero loops below."""
    return W[np.uint32(j)]


def prefetch(a, i):
    """Ask the CPU to start loading a[i] into cache (a hint: no effect on results; a no-op
    when Numba's JIT is disabled)."""


@intrinsic
def _prefetch(typingctx, a, i):
    def codegen(context, builder, sig, args):
        array_type = sig.args[0]
        array = context.make_array(array_type)(context, builder, args[0])
        item = cgutils.get_item_pointer(context, builder, array_type, array, [args[1]], wraparound=False)
        byte_pointer = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        name = "llvm.prefetch.p0" if str(byte_pointer) == "ptr" else "llvm.prefetch.p0i8"  # opaque pointers or not
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32]), name
        )
        # a read, kept in all cache levels, of data
        builder.call(function, [builder.bitcast(item, byte_pointer), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.none(a, types.intp), codegen


@overload(prefetch, jit_options=KERNEL_OPTIONS)
def _prefetch_overload(a, i):
    def impl(a, i):
        _prefetch(a, i)

    return impl


def borrowed(a):
    """``a`` as a view that holds no reference to its memory: views made from it (slices, rows,
    reshapes) then skip Numba's reference counting, an atomic increment and decrement of the
    array's counter for each view made. Where threads make views of the same arrays, each of
    those pulls the counter's cache line from the other core: the two-thread per-sample worker
    ran 1.10-1.12x faster with its arrays borrowed (``bench/ab_kernels.py --batch-size 1
    --threads 2``, 2026-12-02, Intel Xeon). The one-thread per-sample kernels borrow theirs
    too: on an AMD EPYC (Zen 5) plain per-sample SGD ran 1.06-1.15x faster (one process 1.45x)
    and momentum with weight decay 1.05-1.12x, four processes each (BENCHMARKS.md, session 21;
    on the Xeon 1.01x). The mini-batch kernel's helpers that make views per row (a part's
    forward and weight gradient, step 2's block) borrow theirs: 784-128-10 at batch 128 on two
    threads 1.01-1.08x in six same-process runs (median 1.05x), where the kernel against itself
    read 0.98-1.02x; batch 32 1.07x; batch 1024 and 800 units within the noise (AMD EPYC Zen 4,
    session 65; the whole kernel's arrays, borrowed in 2026-12-02, had measured 0.98x, 1.03x and
    1.12x in a run whose rounds ranged 0.84-1.60). The caller keeps ``a`` alive while the view
    is used: a kernel's arguments are (its caller holds them); arrays a kernel makes itself are
    passed to ``keep_alive`` after the views' last use. The interpreter (and the interpreted
    kernels) gets ``a`` itself."""
    return a


@njit(**KERNEL_OPTIONS)
def vector_empty(n, like):
    """An uninitialised [n] array of ``like``'s dtype that starts on a VECTOR_BYTES (64-byte)
    boundary. Numba's own arrays start on 32-byte ones (its preferred alignment), where half of a
    row's 64-byte vectors load across two cache lines; rows a kernel keeps for many samples (its
    copies of the layers) are made here (``.reshape(rows, width)`` for rows of whole vectors)."""
    pad = VECTOR_BYTES // like.itemsize
    buffer = np.empty(n + pad, like.dtype)
    first = (-buffer.ctypes.data % VECTOR_BYTES) // like.itemsize
    return buffer[first : first + n]


@intrinsic
def _borrowed(typingctx, a):
    if not isinstance(a, types.Array):
        return None

    def codegen(context, builder, sig, args):
        view = context.make_array(sig.args[0])(context, builder, value=args[0])
        view.meminfo = cgutils.get_null_value(view.meminfo.type)
        view.parent = cgutils.get_null_value(view.parent.type)
        return view._getvalue()

    return a(a), codegen


@overload(borrowed, jit_options=KERNEL_OPTIONS)
def _borrowed_overload(a):
    def impl(a):
        return _borrowed(a)

    return impl


def flat_borrowed(a):
    """A C-contiguous array's items as one 1-d view that holds no reference (``borrowed``), made
    without reshape's call into Numba's runtime (``numba_attempt_nocopy_reshape``): in a
    function called for every sample, the reshape and its view's reference count were most of
    what a 10x64 layer's dense forward cost beyond the old loop's."""
    return a.reshape(-1)


@intrinsic
def _flat_borrowed(typingctx, a):
    if not (isinstance(a, types.Array) and a.layout == "C"):
        return None

    def codegen(context, builder, sig, args):
        whole = context.make_array(sig.args[0])(context, builder, value=args[0])
        view = context.make_array(sig.return_type)(context, builder)
        populate_array(view, data=whole.data, shape=[whole.nitems], strides=[whole.itemsize], itemsize=whole.itemsize,
                       meminfo=None, parent=None)
        return view._getvalue()

    return a.copy(ndim=1, layout="C")(a), codegen


@overload(flat_borrowed, jit_options=KERNEL_OPTIONS)
def _flat_borrowed_overload(a):
    def impl(a):
        return _flat_borrowed(a)

    return impl


@njit(**KERNEL_OPTIONS)
def keep_alive(*arrays):
    """A use of ``arrays``, whose memory borrowed views read: Numba releases a local array after
    its last use, not at the end of its scope, so a kernel that works on borrowed views of
    arrays it made calls this after the views' last use."""


@njit(**KERNEL_OPTIONS)
def prefetch_row(indptr, indices, values, i):
    """Start loading the CSR entries of sample i (its indices and values, line by line)."""
    prefetch_span(indices, values, indptr[i], indptr[i + 1])


@njit(**KERNEL_OPTIONS)
def prefetch_span(indices, values, lo, hi):
    """Start loading the CSR entries lo .. hi - 1 (indices and values, line by line)."""
    if hi > lo:
        for q in range(lo, hi, 64 // indices.itemsize):
            prefetch(indices, q)
        prefetch(indices, hi - 1)
        for q in range(lo, hi, 64 // values.itemsize):
            prefetch(values, q)
        prefetch(values, hi - 1)


@njit(**KERNEL_OPTIONS)
def prefetch_sample(indptr, indices, values, labels, targets, order, s, stop):
    """Start loading the CSR entries of sample order[s + 1], its label or target row, and the
    indptr entry of order[s + 2].

    Per-sample trainers visit samples in a random order, so each sample's nonzeros (about 750
    bytes on MNIST, in a 45 MB array) are a cache miss; asked for one sample ahead they arrive
    while the current sample trains (measured 4-5% on per-sample epochs).
    """
    if s + 2 < stop:
        prefetch(indptr, order[s + 2])
    if s + 1 < stop:
        prefetch_row(indptr, indices, values, order[s + 1])
        if labels.shape[0] > 0:
            prefetch(labels, order[s + 1])
        if targets.shape[0] > 0:
            prefetch(targets[order[s + 1]], 0)


@njit(**KERNEL_OPTIONS)
def sparse_forward_block(z, W, b, indices, values, input_scale, c, m):
    """z[c : c + m] = b[c : c + m] (0 where b is empty) + x[D] @ W[D, c : c + m] over the nonzero
    x, for m of four to eight 64-byte vectors (``vectors.py``): the m sums stay in registers over
    all the inputs, one multiply-add per vector loaded (no load or store of z per input), each
    input's term added in order. Loads past m are masked off (with AVX-512 a masked load costs
    what a plain one does). The mini-batch kernel's first layer (b empty, 4L < H <= 8L) and
    sparse_row_forward's (blocks of eight vectors) use it. Per sample, against the loop it
    replaced (four rows per pass over z in memory; the same sums in the same order, so the
    same bits): 1.12-1.15x faster plain epochs at 128 units, and 1.04x with blocks of four
    vectors only; at 100 units 1.15x (AMD EPYC Zen 5, BENCHMARKS.md session 21). With AVX-512
    only (REGISTER_BLOCK 8): on AVX2 eight 64-byte accumulators are all sixteen ymm registers,
    and on an AMD EPYC Zen 3 the per-sample kernel ran 0.72x as fast as the loop before it and
    0.49x as fast as blocks of four (session 22; session 21's "AVX2" figures were AVX-512 code:
    NUMBA_CPU_NAME alone keeps the host's features).

    m >= 4 vectors (the callers' m > 4): the first four vectors are loaded whole, only the last
    four masked. Eight masks do not fit AVX-512's seven usable mask registers, and LLVM rebuilt and
    spilled them at every input; four stay in registers (the same loads, the same bits)."""
    L = lanes(z)
    if b.shape[0] > 0:
        a0 = vload(b, c)
        a1 = vload(b, c + L)
        a2 = vload(b, c + 2 * L)
        a3 = vload(b, c + 3 * L)
        a4 = vload_part(b, c + 4 * L, m - 4 * L)
        a5 = vload_part(b, c + 5 * L, m - 5 * L)
        a6 = vload_part(b, c + 6 * L, m - 6 * L)
        a7 = vload_part(b, c + 7 * L, m - 7 * L)
    else:
        a0 = vsplat(z, 0)
        a1 = a0
        a2 = a0
        a3 = a0
        a4 = a0
        a5 = a0
        a6 = a0
        a7 = a0
    for p in range(indices.shape[0]):
        x = vsplat(z, values[p] * input_scale)
        w = _row(W, indices[p])
        a0 = vfma(x, vload(w, c), a0)
        a1 = vfma(x, vload(w, c + L), a1)
        a2 = vfma(x, vload(w, c + 2 * L), a2)
        a3 = vfma(x, vload(w, c + 3 * L), a3)
        a4 = vfma(x, vload_part(w, c + 4 * L, m - 4 * L), a4)
        a5 = vfma(x, vload_part(w, c + 5 * L, m - 5 * L), a5)
        a6 = vfma(x, vload_part(w, c + 6 * L, m - 6 * L), a6)
        a7 = vfma(x, vload_part(w, c + 7 * L, m - 7 * L), a7)
    vstore(z, c, a0)
    vstore(z, c + L, a1)
    vstore(z, c + 2 * L, a2)
    vstore(z, c + 3 * L, a3)
    vstore_part(z, c + 4 * L, a4, m - 4 * L)
    vstore_part(z, c + 5 * L, a5, m - 5 * L)
    vstore_part(z, c + 6 * L, a6, m - 6 * L)
    vstore_part(z, c + 7 * L, a7, m - 7 * L)


@njit(**KERNEL_OPTIONS)
def _sparse_forward_block4(z, W, b, indices, values, input_scale, c):
    """sparse_forward_block for exactly four vectors, unmasked: the last block of a layer of a
    multiple of four vectors, and the two-thread worker's 64 units each (float32). Its eight
    vector block with the upper four masked off measured 0.91x there (two processes)."""
    L = lanes(z)
    if b.shape[0] > 0:
        a0 = vload(b, c)
        a1 = vload(b, c + L)
        a2 = vload(b, c + 2 * L)
        a3 = vload(b, c + 3 * L)
    else:
        a0 = vsplat(z, 0)
        a1 = a0
        a2 = a0
        a3 = a0
    for p in range(indices.shape[0]):
        x = vsplat(z, values[p] * input_scale)
        w = _row(W, indices[p])
        a0 = vfma(x, vload(w, c), a0)
        a1 = vfma(x, vload(w, c + L), a1)
        a2 = vfma(x, vload(w, c + 2 * L), a2)
        a3 = vfma(x, vload(w, c + 3 * L), a3)
    vstore(z, c, a0)
    vstore(z, c + L, a1)
    vstore(z, c + 2 * L, a2)
    vstore(z, c + 3 * L, a3)


@njit(**KERNEL_OPTIONS)
def sparse_row_forward(z, W, b, indices, values, input_scale):
    """z[H] = x[D] @ W[D,H] + b[H], x given by its nonzeros x[indices] = values * input_scale.
    H a multiple of four vectors: in registers, a block of REGISTER_BLOCK vectors at a time
    (eight with AVX-512, sparse_forward_block, and a last of four; four elsewhere); with AVX-512
    also 65-127 float32 units (33-63 float64) in one masked block. Other widths: the loop
    below, the same sums in the same order (on AVX2 its form before session 69, which summed
    four inputs' terms before adding them, measured 1.65x the masked block of eight at 100 units,
    AMD EPYC Zen 3). Every path computes each unit alike, the bias and then one
    fused multiply-add per input in order, so a unit's sum has the same bits whatever the
    width of the layer or the block it is computed in (the two-thread kernel's blocks of units:
    ``sgd.logits_in_halves``)."""
    n_out = z.shape[0]
    L = lanes(z)
    if n_out % (4 * L) == 0 or (REGISTER_BLOCK == 8 and 4 * L < n_out < 8 * L):
        for c in range(0, n_out, REGISTER_BLOCK * L):
            if REGISTER_BLOCK == 4 or n_out - c == 4 * L:
                _sparse_forward_block4(z, W, b, indices, values, input_scale, c)
            else:
                sparse_forward_block(z, W, b, indices, values, input_scale, c, min(8 * L, n_out - c))
        return
    fill_bias(z, b)
    # Four input rows per pass over z: z is loaded and stored a quarter as often (the loop is
    # bound by memory operations, not arithmetic). Each row's term is its own fused multiply-add
    # in order, as in the register blocks (not summed among the four first: other bits).
    n = indices.shape[0]
    p = 0
    while p + 4 <= n:
        x0 = z.dtype.type(values[p] * input_scale)
        x1 = z.dtype.type(values[p + 1] * input_scale)
        x2 = z.dtype.type(values[p + 2] * input_scale)
        x3 = z.dtype.type(values[p + 3] * input_scale)
        w0 = _row(W, indices[p])
        w1 = _row(W, indices[p + 1])
        w2 = _row(W, indices[p + 2])
        w3 = _row(W, indices[p + 3])
        for k in range(z.shape[0]):
            z[k] = mul_add(x3, w3[k], mul_add(x2, w2[k], mul_add(x1, w1[k], mul_add(x0, w0[k], z[k]))))
        p += 4
    for q in range(p, n):
        x = z.dtype.type(values[q] * input_scale)
        w = _row(W, indices[q])
        for k in range(z.shape[0]):
            z[k] = mul_add(x, w[k], z[k])


@njit(**KERNEL_OPTIONS)
def _sparse_row_update_registers(W, dz, indices, values, input_scale, learning_rate):
    """W[D,H] -= lr * x[D]^T dz[H] for H a multiple of four vectors: per block of eight vectors
    of columns with AVX-512 (and a last one of four), of four elsewhere (REGISTER_BLOCK), dz
    stays in registers while each nonzero input's row is read and written once (no overlap
    checks, no loads of dz per row). Rows last to first, as sparse_row_update; each weight gets
    the same single-rounding w - step * dz. With the forward's blocks, AVX-512 (Zen 5): plain
    per-sample epochs 1.22x, momentum + decay (rows of 2H) 1.18x, two threads (64 units each)
    1.51x; with blocks of four only, 1.17x and 1.05x. On AVX2 (Zen 3) blocks of four: plain
    2.06x, momentum + decay 1.70x against blocks of eight."""
    L = lanes(dz)
    n_wide = dz.shape[0] // (8 * L) * (8 * L) if REGISTER_BLOCK == 8 else 0
    for c in range(0, n_wide, 8 * L):
        d0 = vload(dz, c)
        d1 = vload(dz, c + L)
        d2 = vload(dz, c + 2 * L)
        d3 = vload(dz, c + 3 * L)
        d4 = vload(dz, c + 4 * L)
        d5 = vload(dz, c + 5 * L)
        d6 = vload(dz, c + 6 * L)
        d7 = vload(dz, c + 7 * L)
        for q in range(indices.shape[0] - 1, -1, -1):
            step = vsplat(dz, -(learning_rate * (values[q] * input_scale)))
            w = _row(W, indices[q])
            vstore(w, c, vfma(step, d0, vload(w, c)))
            vstore(w, c + L, vfma(step, d1, vload(w, c + L)))
            vstore(w, c + 2 * L, vfma(step, d2, vload(w, c + 2 * L)))
            vstore(w, c + 3 * L, vfma(step, d3, vload(w, c + 3 * L)))
            vstore(w, c + 4 * L, vfma(step, d4, vload(w, c + 4 * L)))
            vstore(w, c + 5 * L, vfma(step, d5, vload(w, c + 5 * L)))
            vstore(w, c + 6 * L, vfma(step, d6, vload(w, c + 6 * L)))
            vstore(w, c + 7 * L, vfma(step, d7, vload(w, c + 7 * L)))
    for c in range(n_wide, dz.shape[0], 4 * L):  # four vectors left
        d0 = vload(dz, c)
        d1 = vload(dz, c + L)
        d2 = vload(dz, c + 2 * L)
        d3 = vload(dz, c + 3 * L)
        for q in range(indices.shape[0] - 1, -1, -1):
            step = vsplat(dz, -(learning_rate * (values[q] * input_scale)))
            w = _row(W, indices[q])
            vstore(w, c, vfma(step, d0, vload(w, c)))
            vstore(w, c + L, vfma(step, d1, vload(w, c + L)))
            vstore(w, c + 2 * L, vfma(step, d2, vload(w, c + 2 * L)))
            vstore(w, c + 3 * L, vfma(step, d3, vload(w, c + 3 * L)))


@njit(**KERNEL_OPTIONS)
def sparse_row_update(W, b, dz, indices, values, input_scale, learning_rate):
    """W[D,H] -= lr * x[D]^T dz[H]; b[H] -= lr * dz[H]  (the SGD step of sparse_row_forward).
    H a multiple of four vectors: dz in registers (_sparse_row_update_registers); other widths:
    the loop below (masked stores, which the other widths would need, measured slow), with the
    same single-rounding w - step * dz, so each weight's step has the same bits on every path."""
    if dz.shape[0] % (4 * lanes(dz)) == 0:
        _sparse_row_update_registers(W, dz, indices, values, input_scale, learning_rate)
        for k in range(b.shape[0]):
            b[k] -= learning_rate * dz[k]
        return
    # Rows are visited last to first: sparse_row_forward has just read them first to last, so
    # the last ones are still in L1 cache. Two rows per pass over dz (four would need 10
    # runtime overlap checks, over LLVM's limit of 8, and would not be vectorised).
    p = indices.shape[0]
    while p >= 2:
        step0 = dz.dtype.type(-(learning_rate * (values[p - 1] * input_scale)))  # (the register path's)
        step1 = dz.dtype.type(-(learning_rate * (values[p - 2] * input_scale)))
        w0 = _row(W, indices[p - 1])
        w1 = _row(W, indices[p - 2])
        for k in range(dz.shape[0]):
            w0[k] = mul_add(step0, dz[k], w0[k])
            w1[k] = mul_add(step1, dz[k], w1[k])
        p -= 2
    if p == 1:
        step = dz.dtype.type(-(learning_rate * (values[0] * input_scale)))
        w = _row(W, indices[0])
        for k in range(dz.shape[0]):
            w[k] = mul_add(step, dz[k], w[k])
    for k in range(b.shape[0]):
        b[k] -= learning_rate * dz[k]


@njit(**KERNEL_OPTIONS)
def _store_sums(z, b, k, sums, count):
    """z[k : k + count] = b[k : k + count] (0 without a bias) + the first ``count`` lanes of
    ``sums``, lane by lane: the same bits as each sum's vsum plus its bias (dense_row_forward)."""
    if b.shape[0] > 0:
        bias = vload_part(b, k, count)
    else:
        bias = vsplat(z, 0)
    vstore_part(z, k, vfma(sums, vsplat(z, 1), bias), count)


@njit(**KERNEL_OPTIONS)
def dense_row_forward(z, Wt, b, a):
    """z[H] = Wt[H,D] @ a[D] + b[H]  (Wt = W^T, output-major; b may be empty). Each sum is one
    64-byte vector of partial sums, lane l taking the inputs j = l mod L in order (L = its lanes;
    the last ones by a masked load), then its lanes added in vsum's order, then the bias: one
    order on every target (a zmm register with AVX-512, two ymm with AVX2). The loop before, which
    LLVM vectorised itself, summed in an order of the target's vectors: on an AMD EPYC Zen 4
    (AVX-512) per-sample training gave other last bits than an AVX2 build (BENCHMARKS.md, session
    63). The units only group the sums: with AVX-512 eight a pass (eight sums in flight, each
    load of the inputs serving eight), then four, two, one; a pass's sums are added up together
    by ``vfold`` (vsum's tree for all of them at once) and stored with their biases in one move.
    Rows are read at offsets of one flat view (``flat_borrowed``): a view per row left
    reference-count calls around each pass, and a reshape called into Numba's runtime. This
    function's time against the old loop's (``bench/experiments/dense_row_forward.py``, Zen 4):
    0.66-1.03x for layers of 10x100 to 150x500, 1.14-1.23x for 10x64 (three runs); built for AVX2
    0.68-0.91x, 10x64 1.19x and 10x100 1.11x (one run)."""
    n_units = z.shape[0]
    n_in = a.shape[0]
    L = lanes(a)
    whole = n_in // L * L
    tail = n_in - whole  # the inputs after the last whole vector
    zero = z.dtype.type(0)
    W = flat_borrowed(Wt)  # rows by offset: a view per row cost reference-count calls
    k = np.int64(0)  # (typed int64 from here: a literal 0 compiled _store_sums a second time)
    while REGISTER_BLOCK == 8 and k + 8 <= n_units:
        o0 = k * n_in
        o1 = o0 + n_in
        o2 = o1 + n_in
        o3 = o2 + n_in
        o4 = o3 + n_in
        o5 = o4 + n_in
        o6 = o5 + n_in
        o7 = o6 + n_in
        t0 = vsplat(a, zero)
        t1, t2, t3, t4, t5, t6, t7 = t0, t0, t0, t0, t0, t0, t0
        for j in range(0, whole, L):
            x = vload(a, j)
            t0 = vfma(x, vload(W, o0 + j), t0)
            t1 = vfma(x, vload(W, o1 + j), t1)
            t2 = vfma(x, vload(W, o2 + j), t2)
            t3 = vfma(x, vload(W, o3 + j), t3)
            t4 = vfma(x, vload(W, o4 + j), t4)
            t5 = vfma(x, vload(W, o5 + j), t5)
            t6 = vfma(x, vload(W, o6 + j), t6)
            t7 = vfma(x, vload(W, o7 + j), t7)
        if tail > 0:
            x = vload_part(a, whole, tail)
            t0 = vfma(x, vload_part(W, o0 + whole, tail), t0)
            t1 = vfma(x, vload_part(W, o1 + whole, tail), t1)
            t2 = vfma(x, vload_part(W, o2 + whole, tail), t2)
            t3 = vfma(x, vload_part(W, o3 + whole, tail), t3)
            t4 = vfma(x, vload_part(W, o4 + whole, tail), t4)
            t5 = vfma(x, vload_part(W, o5 + whole, tail), t5)
            t6 = vfma(x, vload_part(W, o6 + whole, tail), t6)
            t7 = vfma(x, vload_part(W, o7 + whole, tail), t7)
        c = vfold(vfold(vfold(t0, t1, 1), vfold(t2, t3, 1), 2), vfold(vfold(t4, t5, 1), vfold(t6, t7, 1), 2), 3)
        _store_sums(z, b, k, vfold(c, c, 4), np.int64(8))
        k += 8
    while k + 4 <= n_units:
        o0 = k * n_in
        o1 = o0 + n_in
        o2 = o1 + n_in
        o3 = o2 + n_in
        t0 = vsplat(a, zero)
        t1, t2, t3 = t0, t0, t0
        for j in range(0, whole, L):
            x = vload(a, j)
            t0 = vfma(x, vload(W, o0 + j), t0)
            t1 = vfma(x, vload(W, o1 + j), t1)
            t2 = vfma(x, vload(W, o2 + j), t2)
            t3 = vfma(x, vload(W, o3 + j), t3)
        if tail > 0:
            x = vload_part(a, whole, tail)
            t0 = vfma(x, vload_part(W, o0 + whole, tail), t0)
            t1 = vfma(x, vload_part(W, o1 + whole, tail), t1)
            t2 = vfma(x, vload_part(W, o2 + whole, tail), t2)
            t3 = vfma(x, vload_part(W, o3 + whole, tail), t3)
        c = vfold(vfold(t0, t1, 1), vfold(t2, t3, 1), 2)
        c = vfold(c, c, 3)
        _store_sums(z, b, k, vfold(c, c, 4), np.int64(4))
        k += 4
    if k + 2 <= n_units:
        o0 = k * n_in
        o1 = o0 + n_in
        t0 = vsplat(a, zero)
        t1 = t0
        for j in range(0, whole, L):
            x = vload(a, j)
            t0 = vfma(x, vload(W, o0 + j), t0)
            t1 = vfma(x, vload(W, o1 + j), t1)
        if tail > 0:
            x = vload_part(a, whole, tail)
            t0 = vfma(x, vload_part(W, o0 + whole, tail), t0)
            t1 = vfma(x, vload_part(W, o1 + whole, tail), t1)
        c = vfold(t0, t1, 1)
        c = vfold(c, c, 2)
        c = vfold(c, c, 3)
        _store_sums(z, b, k, vfold(c, c, 4), np.int64(2))
        k += 2
    if k < n_units:
        o0 = k * n_in
        t0 = vsplat(a, zero)
        for j in range(0, whole, L):
            t0 = vfma(vload(a, j), vload(W, o0 + j), t0)
        if tail > 0:
            t0 = vfma(vload_part(a, whole, tail), vload_part(W, o0 + whole, tail), t0)
        z[k] = (b[k] if b.shape[0] > 0 else zero) + vsum(t0)


@njit(**KERNEL_OPTIONS)
def dense_row_backward_update(da, Wt, b, dz, a, learning_rate):
    """Backward and SGD step of z[H] = Wt[H,D] @ a[D] + b[H] in one pass over Wt:

    da[D] = Wt^T dz (with the weights before the step), Wt -= lr * dz a^T, b -= lr * dz.
    """
    da[:] = 0
    for k in range(dz.shape[0]):
        d = dz[k]
        step = learning_rate * d
        w = Wt[k]
        for j in range(a.shape[0]):
            da[j] += d * w[j]
            w[j] -= step * a[j]
    for k in range(b.shape[0]):
        b[k] -= learning_rate * dz[k]


# ---------------------------------------------------------------------------------------------
# Mini-batch kernels (input-major W[D,H], one sample per row)


def linear_forward(out, x, W, b, activation):
    """out[B,H] = act(x[B,D] @ W[D,H] + b[H]). ``b`` may be empty (no bias). A vector's worth of
    rows at a time (16 float32, 8 float64): their inputs transposed into a scratch block, so that
    a unit's sums for all of them are one vector in a register, eight units at once, each step a
    multiply-add of a row of the block by one weight; the rows after the last whole block one by
    one. Each sum is the bias and then the inputs' products in input order, one multiply-add
    each, in a block or alone: a row's outputs are the same bits wherever it stands (in a
    prediction of any length, a chunk of one, or a thread's share), and as before.
    Row by row, each input's step read and wrote the row's sums: a 128-10 layer took 0.44-0.68 us
    a row and a 500-150 one 7.5 (Intel Xeon, Emerald Rapids); a transposed copy of W for dot
    products cost every call a copy of W (a one-row prediction of 784-1024-1024-10 took 5.3 ms
    instead of 0.63: audit 64)."""
    lanes_of = VECTOR_BYTES // out.itemsize
    bias = b if b.shape[0] > 0 else np.zeros(W.shape[1], out.dtype)  # (no bias: sums from 0, as before)
    # (the scratch and the bias made here, not in the kernel: made inside it, a cold first
    # prediction compiled 1.5-2.0 s instead of 1.0-1.1; session 61)
    _linear_forward(out, x, W, bias, activation, np.zeros(x.shape[1] * lanes_of, out.dtype),
                    np.empty(8 * lanes_of, out.dtype))


@njit(**KERNEL_OPTIONS)
def _linear_forward(out, x, W, bias, activation, block, sums8):
    """``linear_forward`` with its scratch: ``bias`` (b, or zeros without one), ``block`` (the
    inputs of a vector's worth of rows, transposed: block[j * L + r] = x[r0 + r, j]) and
    ``sums8`` (eight units' sums for them)."""
    n_rows, n_in = x.shape
    n_out = W.shape[1]
    L = lanes(block)
    for r0 in range(0, n_rows, L):
        if n_rows - r0 < L:
            # fewer rows than a vector's lanes (a prediction of one row): row by row, each row's
            # sums a vector of units, the same sums in the same order (a block's vectors would
            # do a whole block's work for them: a one-row prediction of 784-1024-1024-10 took
            # 1.3-1.6 ms instead of 0.7)
            for row in range(r0, n_rows):
                z = out[row]
                fill_bias(z, bias)
                for j in range(n_in):
                    xj = x[row, j]
                    w = W[j]
                    for k in range(n_out):
                        z[k] += xj * w[k]
                activation_row_forward(z, activation)
            break
        for j in range(n_in):
            for r in range(L):
                block[j * L + r] = x[r0 + r, j]
        k = 0
        while k + 8 <= n_out:
            a0 = vsplat(block, bias[k])
            a1 = vsplat(block, bias[k + 1])
            a2 = vsplat(block, bias[k + 2])
            a3 = vsplat(block, bias[k + 3])
            a4 = vsplat(block, bias[k + 4])
            a5 = vsplat(block, bias[k + 5])
            a6 = vsplat(block, bias[k + 6])
            a7 = vsplat(block, bias[k + 7])
            for j in range(n_in):
                v = vload(block, j * L)
                w = W[j]
                a0 = vfma(v, vsplat(block, w[k]), a0)
                a1 = vfma(v, vsplat(block, w[k + 1]), a1)
                a2 = vfma(v, vsplat(block, w[k + 2]), a2)
                a3 = vfma(v, vsplat(block, w[k + 3]), a3)
                a4 = vfma(v, vsplat(block, w[k + 4]), a4)
                a5 = vfma(v, vsplat(block, w[k + 5]), a5)
                a6 = vfma(v, vsplat(block, w[k + 6]), a6)
                a7 = vfma(v, vsplat(block, w[k + 7]), a7)
            vstore(sums8, 0, a0)
            vstore(sums8, L, a1)
            vstore(sums8, 2 * L, a2)
            vstore(sums8, 3 * L, a3)
            vstore(sums8, 4 * L, a4)
            vstore(sums8, 5 * L, a5)
            vstore(sums8, 6 * L, a6)
            vstore(sums8, 7 * L, a7)
            for r in range(L):
                for u in range(8):
                    out[r0 + r, k + u] = sums8[u * L + r]
            k += 8
        while k < n_out:
            a0 = vsplat(block, bias[k])
            for j in range(n_in):
                a0 = vfma(vload(block, j * L), vsplat(block, W[j, k]), a0)
            vstore(sums8, 0, a0)
            for r in range(L):
                out[r0 + r, k] = sums8[r]
            k += 1
        for r in range(r0, r0 + L):
            activation_row_forward(out[r], activation)


@njit(**KERNEL_OPTIONS)
def linear_backward(dx, dW, db, dz, x, W):
    """Backward of z[B,H] = x[B,D] @ W[D,H] + b[H], given dz[B,H] = dL/dz:

    dx[B,D] = dz @ W^T, dW[D,H] = x^T @ dz, db[H] = sum over rows of dz.
    Overwrites dx, dW, db with batch SUMS (no 1/B). Pass dx (or db) with zero rows (shape
    [0, D] / [0]) to skip it, e.g. for the first layer or a layer without bias.
    """
    for row in range(dx.shape[0]):
        for j in range(W.shape[0]):
            w = W[j]
            total = np.float32(0.0)  # widens to float64 with float64 data
            for k in range(dz.shape[1]):
                total += dz[row, k] * w[k]
            dx[row, j] = total
    dW[:] = 0
    for row in range(x.shape[0]):
        for j in range(x.shape[1]):
            xj = x[row, j]
            w = dW[j]
            for k in range(dz.shape[1]):
                w[k] += xj * dz[row, k]
    if db.shape[0] > 0:
        db[:] = 0
        for row in range(dz.shape[0]):
            for k in range(dz.shape[1]):
                db[k] += dz[row, k]


@njit(**KERNEL_OPTIONS)
def sparse_linear_forward(out, rows, indptr, indices, values, input_scale, W, b, activation):
    """out[B,H] = act(x[rows] @ W[D,H] + b[H]), input rows in CSR form (see module docstring);
    rows[B] int64 selects the samples of the batch."""
    input_scale = W.dtype.type(input_scale)  # as in training: one compiled sparse_row_forward
    for r in range(rows.shape[0]):
        first = indptr[rows[r]]
        last = indptr[rows[r] + 1]
        sparse_row_forward(out[r], W, b, indices[first:last], values[first:last], input_scale)
        activation_row_forward(out[r], activation)


@njit(**KERNEL_OPTIONS)
def dense_rows_forward(out, x, W, b, input_scale, activation):
    """out[B,H] = act(x[B,D] @ W[D,H] + b[H]) for rows x as they are (uint8 or float, not CSR):
    each row's nonzeros gathered in order into a scratch row, then ``sparse_row_forward`` as
    ``sparse_linear_forward`` calls it on CSR rows: the same bits, without converting the rows
    first (a prediction's conversion took as long as its forward pass)."""
    input_scale = W.dtype.type(input_scale)
    indices = np.empty(x.shape[1], np.int32)
    values = np.empty(x.shape[1], x.dtype)
    for r in range(x.shape[0]):
        n = 0
        for j in range(x.shape[1]):
            # every input written, the count moved on past the nonzero ones: no branch to
            # mispredict (MNIST's rows, 81% zeros in runs: 0.56 against 0.75 us a row)
            v = x[r, j]
            indices[n] = j
            values[n] = v
            n += v != 0
        sparse_row_forward(out[r], W, b, indices[:n], values[:n], input_scale)
        activation_row_forward(out[r], activation)


@njit(**KERNEL_OPTIONS)
def sparse_linear_backward(dW, db, dz, rows, indptr, indices, values, input_scale):
    """Backward of z[B,H] = x[rows] @ W[D,H] + b[H] (CSR inputs, no dx): dW[D,H] = x^T @ dz,
    db[H] = sum over rows of dz. Overwrites dW and db (may be empty) with batch SUMS."""
    dW[:] = 0
    for r in range(rows.shape[0]):
        for p in range(indptr[rows[r]], indptr[rows[r] + 1]):
            x = values[p] * input_scale
            w = _row(dW, indices[p])
            for k in range(dz.shape[1]):
                w[k] += x * dz[r, k]
    if db.shape[0] > 0:
        db[:] = 0
        for r in range(dz.shape[0]):
            for k in range(dz.shape[1]):
                db[k] += dz[r, k]
