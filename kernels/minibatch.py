"""Mini-batch SGD: a chunk of batches per call, entirely in compiled code, on all cores.

``minibatch_sgd_chunk`` trains on order[start:stop] in batches of ``batch_size`` samples (the
last one may be shorter), exactly like ``fastmlp.reference.train_batches``: for each batch,
forward pass and per-sample losses with the weights before the batch's update, gradient =
mean over the batch of the per-sample gradients, then ``params -= lr * gradient``. Full-batch
gradient descent is ``batch_size >= stop - start``. Any depth and layer sizes, every
activation and loss code, float32 or float64, uint8 or float input.

Layers are numbered from 0 as in ``linear.py``: layer l maps n_l = layer_sizes[l] inputs to
n_{l+1} outputs with W_l [n_l, n_{l+1}] and b_l. Arguments (N samples, L layers,
H = layer_sizes[1], K = layer_sizes[-1], B = the largest batch, U = sum(layer_sizes[1:]));
those shared with ``sgd.sgd_persample_chunk`` mean the same and come in the same order
(except the input rows' pointers):

    params        float [P]           flat parameters (``codes.parameter_layout``), updated in
                                      place
    stats         float64 [4]         written: (sum of the per-sample losses, number correct,
                                      number of samples trained, nonfinite_at). A batch with a
                                      non-finite loss is not applied and training stops there:
                                      nonfinite_at is that sample's position in
                                      order[start:stop], else -1. The loss sum goes on from
                                      the value stats[0] holds on entry (set it to 0 first), so
                                      a chunk split into several calls sums its losses in the
                                      same order, and to the same bits, as one call.
    grad          float [P (+ pad)]   scratch (see "Scratch" below)
    weights_t     float [P]           scratch
    partials      float [PARTS, S, >= H] scratch (S = min(B, ``sub_batch_rows(H, itemsize)``))
    spans         int64 [B, PARTS, 2] scratch
    units         float [B, >= U + K] scratch (rows padded to whole vectors: see "Scratch")
    deltas        float [B, >= U]     scratch
    losses        float [B]           scratch
    hits          int64 [B]           scratch
    layer_sizes   int64 [L+1]         n_0 (inputs) .. n_L (outputs)
    w_offsets     int64 [L]           from ``codes.parameter_layout``
    b_offsets     int64 [L]           -1 for layers without bias
    activation    int                 hidden activation code (activation.py)
    loss          int                 output/loss code (loss.py)
    learning_rate float               cast to params.dtype, as the reference does
    part_ptr, indices, values, input_scale
                                      input rows in CSR form (``linear.sparse_rows``: column
                                      indices ascending within a row; values uint8 or float),
                                      an input being values[p] * input_scale (1/255 for uint8
                                      pixels, 1 for float data); each row's pointers split
                                      where the parts' inputs begin: part_ptr int64
                                      [N * PARTS + 1] = ``sparse_rows(x, parts=PARTS)[0]``,
                                      row i's nonzeros in part k at part_ptr[i * PARTS + k] ..
                                      part_ptr[i * PARTS + k + 1], so that no batch searches
                                      its rows (the per-sample kernels take indptr [N + 1])
    labels        int64 [N]           class labels (loss codes 0, 1), else may be empty
    targets       float [N, K]        targets (loss codes 2, 3), else may be empty [0, K]
    sample_weights float [N]          each sample's weight on its loss and gradient; empty: all 1
    order         int64 [M]           sample indices, e.g. a permutation of range(N)
    start, stop   int                 train on order[start:stop]
    batch_size    int                 >= 1

"float" is params.dtype (float32 or float64) throughout. ``minibatch_scratch`` allocates the
eight scratch arrays once per fit, in this order, for a largest batch B that the caller
guarantees (B >= min(batch_size, stop - start); the kernel does not check):
``minibatch_sgd_chunk(params, stats, *scratch, layer_sizes, ...)``. What they hold between
calls does not matter, and the kernel itself allocates nothing but the small input-ordered index
of a wide first layer's weight gradient (``_csc_sparse_gradient``, per call) and an int64 per
input (``_sparse_plain_step``'s marks, per call).

How a batch runs, in two parallel loops (no locks, no atomics), S rows at a time (a sub-batch:
S = ``sub_batch_rows``: at least SUB_ROWS rows, more where the partial sums fit in SUB_BYTES,
256 at 128 float32 units, 64 from 500 on; a batch of up to S rows is one sub-batch), steps 1 and 2 in turn:

1. over PARTS blocks of the first layer's inputs (contiguous rows of W_0 [n_0, H]) and the
   parameters each part owns (its rows of W_0, its share of b_0 and of every later layer's
   output units): each part first adds the previous sub-batch's share to the gradient of its
   parameters (_part_gradient: dW_0 rows over the sub-batch's nonzero inputs, input by input
   for rows of CSC_ROW_BYTES or more: _part_gradient_by_input; the later layers'
   dW^T rows, the biases), then, in a batch's first sub-batch, takes the previous batch's step
   on them (_part_update), then computes the first layer's partial sums of this sub-batch over
   its inputs, partials[part] = x[:, rows] @ W_0[rows, :], skipping zero inputs. A block of W_0
   is thus read and written by one core only and stays in its cache.
2. over the sub-batch's samples, BLOCK at a time: z_0 = b_0 + the partial sums (added in part
   order), the rest of the forward pass, the loss, and every layer's dz divided by the batch
   size (as the reference divides), while the CSR rows step 1 reads next are prefetched.
   After the batch's last sub-batch the losses are checked: the step of a batch with a
   non-finite loss is never taken. The step of the chunk's last batch ends the call.

The gradient sums run over the rows in batch order however the batch is split (sub-batches
start on multiples of BLOCK rows), so the sub-batches change no bit of the results. At
784-128-10, batches of 1,024 rows trained 1.05-1.17x faster in four sub-batches than in one,
and 1.17x faster again with each sub-batch's gradient added in the next step 1 rather than
all at the batch's step (``bench/ab_kernels.py``, Intel Xeon): the batch's rows, partial sums
and dz (3 MB) had outgrown the cores' caches between their uses.

Zero inputs are skipped, which is exact (0 * w adds nothing) as long as the first layer's
weights are finite; once a step has made one infinite, the reference's 0 * inf = NaN for the
samples where that input is zero is not reproduced: the divergence is caught at the first
sample that has that input nonzero.

Determinism: every sum runs in a fixed order (gradients over the batch in batch order, partial
sums in part order), and each entry is written by exactly one loop iteration; the threads only
decide who computes what. Results are bit-identical from run to run and do not depend on
NUMBA_NUM_THREADS. As PARTS is fixed (4), at most 4 threads share step 1; S depends on H and
the dtype only. Each sub-batch ends with two thread barriers: when another process keeps a
core busy, a thread that waits for a descheduled one makes two threads far slower than one
(numba.set_num_threads(1) then).

Scratch. Layers l >= 1 are trained on output-major copies W_l^T [n_{l+1}, n_l] kept in
``weights_t`` at w_offsets[l] (dot products and axpys along n_l, so a 10-unit output layer
still vectorises); they are made at the start of a call and copied back into params at its
end. ``grad`` holds, at the params offsets, the first layer's dW_0 [n_0, H] (zero between
steps; for 4L < H < 8L, L a vector's lanes, after the parameters instead, in rows padded to 8L:
``_padded_gradient``) and, for layers l >= 1, dW_l^T [n_{l+1}, n_l]. ``units[r]`` holds sample r's outputs of
every layer (activated for hidden layers, logits for the last), layer l at columns
sum(layer_sizes[1:l+1]) onwards, then p = the output activation of the logits; ``deltas[r]``
the d(loss / batch size)/dz of the same columns, without p. ``partials[part, r]`` and
``spans[r, part]`` are the first layer's partial sums over the part's inputs and where those
inputs are in the CSR arrays. The rows of ``units``, ``raw``, ``deltas`` and ``partials`` are
padded to whole vectors, so that every row starts on a cache line as the first does (rows of
148 and 138 float32 at 784-128-10 left three in four and seven in eight off the boundary, where
a 64-byte load of an AVX-512 Intel splits across two lines: 1.01-1.24x with them padded, the
same bits, Intel Xeon, session 55); the kernels read every column by its range, never to a
row's end.
"""
import types

import numpy as np
from numba import njit, prange
from numba.extending import register_jitable

from ._config import KERNEL_OPTIONS, PARALLEL_OPTIONS
from .codes import DROPOUT, DROPOUT_SEED, INPUT_DROPOUT, PARTS, SAMPLES, STEPS
from .optimizer import (
    COUPLED_DECAY, DECAY, DECOUPLED_DECAY, LR, NO_DECAY, N_STEP_SCALARS, PLAIN, apply_step_rows, drop_threshold_of,
    kept, plain_update, step_kind, step_scalars,
)
from .activation import activation_row_backward, activation_row_forward
from .linear import (FIRST_LAYER, _row, _sparse_forward_block4, borrowed, fill_bias, layer_views, prefetch, prefetch_span,
                     sparse_forward_block)
from .loss import loss_row_backward, loss_row_forward, sample_weight, weigh_row
from ._threads import aligned_empty
from .vectors import (REGISTER_BLOCK, VECTOR_BYTES, hload, hload_part, hzeros, lanes, ordered_add, vfma, vload, vload_part,
                      vsplat, vstore, vstore_part, vsum)

LOSS_SUM, N_CORRECT, N_TRAINED, NONFINITE_AT = range(4)  # slots of ``stats``

# PARTS (codes.py): blocks of the first layer's inputs, each owned by one thread in step 1.


def minibatch_scratch(params, layer_sizes, batch_size, n_slots=0, dropout=False):
    """The scratch arrays of ``minibatch_sgd_chunk`` for batches of up to ``batch_size`` rows:
    ``(grad, weights_t, slots_t, partials, spans, units, raw, deltas, losses, hits)``. Allocate
    once per fit, with batch_size = min(batch size, number of samples), the optimizer's number
    of slots, and whether any dropout is on (``raw`` is empty otherwise)."""
    n_first = int(layer_sizes[1])
    n_units = int(np.sum(layer_sizes[1:]))
    n_out = int(layer_sizes[-1])
    rows = max(1, int(batch_size))
    # grad on whole cache lines, and for first layers of 4L < H < 8L units (L = lanes) room after
    # the parameters for their padded dW (_padded_gradient)
    n_lanes = VECTOR_BYTES // params.dtype.itemsize
    padded = 4 * n_lanes < n_first < 8 * n_lanes
    extra = n_lanes + int(layer_sizes[0]) * 8 * n_lanes if padded else 0

    def whole(n):  # rows of partials, units, raw and deltas: whole vectors ("Scratch" above)
        return -(-n // n_lanes) * n_lanes

    # zeros, though the kernel overwrites what it reads: a chunk run with some helpers left out
    # (``fastmlp._prewarm``'s compile share) then finds no garbage offsets in ``spans``; every
    # array on whole cache lines, where the vectors of its rows load fastest
    return (
        _aligned_zeros(params.shape[0] + extra, params.dtype),
        _aligned_zeros(params.shape, params.dtype),
        _aligned_zeros((n_slots, params.shape[0]), params.dtype),
        _aligned_zeros((PARTS, min(rows, _python_sub_batch_rows(n_first, params.dtype.itemsize)), whole(n_first)),
                       params.dtype),
        _aligned_zeros((rows, PARTS, 2), np.int64),
        _aligned_zeros((rows, whole(n_units + n_out)), params.dtype),
        _aligned_zeros((rows if dropout else 0, whole(n_units)), params.dtype),
        _aligned_zeros((rows, whole(n_units)), params.dtype),
        _aligned_zeros(rows, params.dtype),
        _aligned_zeros(rows, np.int64),
    )


def _aligned_zeros(shape, dtype):
    zeros = aligned_empty(shape, dtype)
    zeros[...] = 0
    return zeros


# ---------------------------------------------------------------------------------------------
# Helpers


@njit(**KERNEL_OPTIONS)
def _unit_offset(layer_sizes, layer):
    """First column of layer ``layer``'s units in a row of ``units``/``deltas``."""
    offset = 0
    for l in range(layer):
        offset += layer_sizes[l + 1]
    return offset


@njit(**KERNEL_OPTIONS)
def _transposed_view(weights_t, layer_sizes, w_offsets, layer):
    """W_l^T [n_out, n_in] of one layer in ``weights_t`` (or dW_l^T in ``grad``)."""
    n_in = layer_sizes[layer]
    n_out = layer_sizes[layer + 1]
    w = w_offsets[layer]
    return weights_t[w : w + n_in * n_out].reshape(n_out, n_in)


@njit(**KERNEL_OPTIONS)
def _part_range(n, part):
    """The part's share [first, last) of n rows or units."""
    return n * part // PARTS, n * (part + 1) // PARTS


@njit(**KERNEL_OPTIONS)
def _padded_gradient(grad, params, n_in):
    """The first layer's dW [n_in, 8L] (L lanes of a vector) in ``grad`` after the parameters,
    on a vector boundary, where minibatch_scratch made room for it (4L < H < 8L units): each
    row padded to eight whole vectors, so that _sparse_gradient adds a sample's share with
    plain vector loads and stores (masked stores measured slow); columns H .. 8L stay 0.
    Else an empty [0, 8L]: dW is in ``grad`` at the parameters' offsets."""
    L = lanes(params)
    first = -(-params.shape[0] // L) * L
    rows = n_in if grad.shape[0] > params.shape[0] else 0
    return grad[first : first + rows * 8 * L].reshape((rows, 8 * L))


# Vectors of a row of dW^T that _dense_part_gradient's tile keeps in registers for each of its two
# units: four with AVX-512 (eight accumulators of its 32 registers), two elsewhere (AVX2's 16 ymm
# registers hold eight 64-byte vectors in all).
GRADIENT_TILE = REGISTER_BLOCK // 2


@njit(**KERNEL_OPTIONS)
def _dense_part_gradient(dWt, units, deltas, a_column, dz_column, first, last, fresh):
    """dWt[k,:] += sum_B dz[B,k] a[B,:] for output units k = first .. last - 1 of z[B,H] =
    a[B,D] @ W[D,H] + b[H] (dWt = dW^T [H,D]), from 0 if ``fresh`` (the batch's first rows).
    In tiles of two units by GRADIENT_TILE vectors of columns (_dense_gradient_tile), whose sums
    stay in registers over all the rows: each row of dWt is read and written once per call (a
    sub-batch), each vector of a loaded once per two units, and the rows' a block (its columns
    of the sub-batch's rows) stays in L1 across the part's units (the loops before re-read each
    dWt row from L2 every eight rows). Every entry sums its rows in batch order, one multiply-add
    per row: the same bits as those loops, whose sums LLVM had contracted to the same chain.
    784-500-150-10 1.06-1.15x at batch 128 and 1024, 784-300-100-10 batch 32 1.09x, 784-128-10
    and 784-800-10 within noise (``bench/ab_kernels.py``, Intel Xeon, session 56). Rows by
    index, not _row: a second signature of it (int64 rows) to compile on every cold start."""
    n_in = dWt.shape[1]
    width = GRADIENT_TILE * lanes(dWt)
    for c in range(0, n_in, width):
        m = min(width, n_in - c)
        for k in range(first, last, 2):
            _dense_gradient_tile(dWt, k, min(k + 1, last - 1), c, m, units, deltas, a_column, dz_column, fresh)


@njit(**KERNEL_OPTIONS)
def _dense_gradient_tile(dWt, k0, k1, c, m, units, deltas, a_column, dz_column, fresh):
    """dWt[k, c : c + m] (+)= sum over the rows r in order of dz[r, k] * a[r, c : c + m] for the
    units k0 and k1 (k1 may be k0: the same sums, stored twice), m <= GRADIENT_TILE vectors:
    plain loads for a whole tile, masked ones for a layer's last, shorter one (masked loads in
    every pass ran half as fast on an AMD EPYC Zen 3: _dense_block_backward)."""
    L = lanes(dWt)
    g0 = dWt[np.uint32(k0)]
    g1 = dWt[np.uint32(k1)]
    zero = vsplat(g0, 0)
    s00 = zero
    s01 = zero
    s02 = zero
    s03 = zero
    s10 = zero
    s11 = zero
    s12 = zero
    s13 = zero
    if not fresh:
        s00 = vload_part(g0, c, m)
        s01 = vload_part(g0, c + L, m - L)
        s10 = vload_part(g1, c, m)
        s11 = vload_part(g1, c + L, m - L)
        if GRADIENT_TILE == 4:
            s02 = vload_part(g0, c + 2 * L, m - 2 * L)
            s03 = vload_part(g0, c + 3 * L, m - 3 * L)
            s12 = vload_part(g1, c + 2 * L, m - 2 * L)
            s13 = vload_part(g1, c + 3 * L, m - 3 * L)
    col0 = dz_column + k0
    col1 = dz_column + k1
    if m == GRADIENT_TILE * L:
        for r in range(deltas.shape[0]):
            a = units[np.uint32(r)]
            d = deltas[np.uint32(r)]
            d0 = vsplat(g0, d[col0])
            d1 = vsplat(g0, d[col1])
            x = vload(a, a_column + c)
            s00 = vfma(d0, x, s00)
            s10 = vfma(d1, x, s10)
            x = vload(a, a_column + c + L)
            s01 = vfma(d0, x, s01)
            s11 = vfma(d1, x, s11)
            if GRADIENT_TILE == 4:
                x = vload(a, a_column + c + 2 * L)
                s02 = vfma(d0, x, s02)
                s12 = vfma(d1, x, s12)
                x = vload(a, a_column + c + 3 * L)
                s03 = vfma(d0, x, s03)
                s13 = vfma(d1, x, s13)
    else:
        for r in range(deltas.shape[0]):
            a = units[np.uint32(r)]
            d = deltas[np.uint32(r)]
            d0 = vsplat(g0, d[col0])
            d1 = vsplat(g0, d[col1])
            x = vload_part(a, a_column + c, m)
            s00 = vfma(d0, x, s00)
            s10 = vfma(d1, x, s10)
            x = vload_part(a, a_column + c + L, m - L)
            s01 = vfma(d0, x, s01)
            s11 = vfma(d1, x, s11)
            if GRADIENT_TILE == 4:
                x = vload_part(a, a_column + c + 2 * L, m - 2 * L)
                s02 = vfma(d0, x, s02)
                s12 = vfma(d1, x, s12)
                x = vload_part(a, a_column + c + 3 * L, m - 3 * L)
                s03 = vfma(d0, x, s03)
                s13 = vfma(d1, x, s13)
    vstore_part(g0, c, s00, m)
    vstore_part(g0, c + L, s01, m - L)
    vstore_part(g1, c, s10, m)
    vstore_part(g1, c + L, s11, m - L)
    if GRADIENT_TILE == 4:
        vstore_part(g0, c + 2 * L, s02, m - 2 * L)
        vstore_part(g0, c + 3 * L, s03, m - 3 * L)
        vstore_part(g1, c + 2 * L, s12, m - 2 * L)
        vstore_part(g1, c + 3 * L, s13, m - 3 * L)


@njit(**KERNEL_OPTIONS)
def _part_sparse_gradient(
    dW, n_out, deltas, spans, part, indices, values, input_scale, seed, first_sample, input_threshold,
    input_keep_scale,
):
    """dW[j, :n_out] += sum_B x[B,j] dz[B,:] for the part's nonzero (and, with input dropout,
    kept) inputs j of the batch's rows (spans[r, part]); dW is the first layer's gradient, or
    its padded rows (_padded_gradient). Row r is the (first_sample + r)-th sample trained."""
    dW, deltas, spans, indices, values = borrowed(dW), borrowed(deltas), borrowed(spans), borrowed(indices), borrowed(values)
    for r in range(deltas.shape[0]):
        dz = deltas[r, :n_out]
        p = spans[r, part, 0]
        end = spans[r, part, 1]
        if input_threshold == 0:
            if dW.shape[1] == 8 * lanes(dz):
                _sparse_gradient(dW, dz, indices[p:end], values[p:end], input_scale)
                continue
            # two rows per pass over dz: half the loops, each with its setup and overlap checks
            # (four rows would need more checks than LLVM vectorises with)
            while p + 2 <= end:
                x0 = values[p] * input_scale
                x1 = values[p + 1] * input_scale
                g0 = dW[indices[p]]
                g1 = dW[indices[p + 1]]
                for k in range(n_out):
                    g0[k] += x0 * dz[k]
                    g1[k] += x1 * dz[k]
                p += 2
        for q in range(p, end):
            x = values[q] * input_scale
            if input_threshold > 0:
                if not kept(seed, first_sample + r, indices[q], input_threshold):
                    continue
                x *= input_keep_scale
            g = dW[indices[q]]
            for k in range(n_out):
                g[k] += x * dz[k]


# The first layer's weight gradient goes input by input (_part_gradient_by_input) for rows of dW
# of CSC_ROW_BYTES or more and without input dropout, in sub-batches of CSC_ROWS rows or more, in
# groups of rows whose dz fit CSC_BYTES (half a 512 KB L2: at 256 rows of 800 units, 0.93x).
# Until 2026-12-06 only rows of more than 1 KB did (input by input ran 0.945x at 784-128-10
# float64, 1 KB rows, batch 1024 on an AMD EPYC Zen 3, 2026-12-03, before the pairs of inputs).
# On an Intel Xeon (Emerald Rapids; bench/ab_kernels.py, BENCHMARKS.md session 58), input by
# input against row by row, the same bits: 1 KB rows (float32 256 units, float64 128) 1.07-1.15x
# at batch 32-1024 on one and two threads; 255 units 1.25x, 240 1.10-1.18x, 200 (800 bytes)
# 1.00-1.08x, float64 100 units 1.02-1.03x; 160 units (640 bytes) 0.92x on one thread. From 896
# bytes on (float32 224 units, float64 112): rows of 800 bytes gained too little to make the
# scikit-learn drop-in's default (100 units, float64 for float64 data) compile this helper on a
# cold start.
CSC_ROWS = 16
CSC_ROW_BYTES = 896
CSC_BYTES = 1 << 18


def csc_group_rows(n_out, itemsize):
    """Rows per group of the input-by-input gradient for rows of n_out items of ``itemsize`` bytes
    (their dz fill CSC_BYTES); the chunk's FUSED_STEP needs the whole batch in one. Compiled
    into its callers (register_jitable: no cached function of its own to load)."""
    return max(CSC_ROWS, CSC_BYTES // (n_out * itemsize))


register_jitable(csc_group_rows)


@njit(**KERNEL_OPTIONS)
def _part_gradient_by_input(grad, deltas, spans, layer_sizes, w_offsets, b_offsets, part, indices, values,
                            input_scale, params, sc, stepped):
    """The part's rows of the first layer's weight gradient, dW[j,:] += sum_B x[B,j] dz[B,:],
    for a first layer of rows of CSC_ROW_BYTES or more without input dropout: as _part_sparse_gradient adds
    them, to the same bits, but input by input (_csc_sparse_gradient) over groups of rows whose
    dz fill CSC_BYTES. The chunk calls it only for such layers, so that the compile of a first
    step on the interpreted kernel of a narrower one never meets it.

    ``stepped`` (``deltas`` the whole batch, in one group; plain SGD without decay, step scalars
    ``sc``): each row of W that an input lights takes its step from its gradient row as soon as
    that is summed, and the gradient row is set back to 0 (_step_rows_now), in place of
    _part_update's pass over every row of W and dW (the chunk's FUSED_STEP)."""
    dW, _ = layer_views(grad, layer_sizes, w_offsets, b_offsets, FIRST_LAYER)
    W, _ = layer_views(params, layer_sizes, w_offsets, b_offsets, FIRST_LAYER)
    n_out = dW.shape[1]
    group = csc_group_rows(n_out, deltas.itemsize)
    for g0 in range(0, deltas.shape[0], group):
        g1 = min(g0 + group, deltas.shape[0])
        _csc_sparse_gradient(dW, n_out, deltas[g0:g1], spans[g0:g1], part, indices, values, input_scale,
                             W if stepped else W[:0], sc)


@njit(**KERNEL_OPTIONS)
def _csc_sparse_gradient(dW, n_out, deltas, spans, part, indices, values, input_scale, W, sc):
    """_part_sparse_gradient without input dropout, ordered by input: the rows' nonzero inputs
    of the part sorted by input (a counting sort, rows in order within an input), then each
    input's dW row accumulated in registers over the rows that light it and stored once. Two
    neighbouring inputs that are both lit go together over the merged list of their rows
    (_merge_inputs, _csc_pair): each load of a dz vector then serves both (about 85% of the
    merged rows light each input of a pair on MNIST; the others add 0 * dz, which changes no
    finite sum). Every entry sums over its rows in the same order as row by row. With W not
    empty (the first layer's weights: _part_gradient_by_input's ``stepped``), each dW row, once
    summed, steps its row of W at once and is set back to 0 (_step_rows_now)."""
    n_in = dW.shape[0]
    j0, j1 = _part_range(n_in, part)
    width = j1 - j0
    n_rows = deltas.shape[0]
    starts = np.zeros(width + 1, np.int64)
    total = 0
    for r in range(n_rows):
        for p in range(spans[r, part, 0], spans[r, part, 1]):
            starts[indices[p] - j0 + 1] += 1
        total += spans[r, part, 1] - spans[r, part, 0]
    for j in range(width):
        starts[j + 1] += starts[j]
    fill = np.empty(width, np.int64)
    for j in range(width):
        fill[j] = starts[j]
    rows = np.empty(total, np.int64)
    xs = np.empty(total, dW.dtype)
    for r in range(n_rows):
        for p in range(spans[r, part, 0], spans[r, part, 1]):
            j = indices[p] - j0
            q = fill[j]
            rows[q] = r
            xs[q] = values[p] * input_scale
            fill[j] = q + 1
    merged = np.empty(n_rows, np.int64)
    x0 = np.empty(n_rows, dW.dtype)
    x1 = np.empty(n_rows, dW.dtype)
    j = 0
    while j < width:
        a = starts[j]
        b = starts[j + 1]
        # dW rows as _row takes them (a call of it with these types: a second signature)
        if j + 1 < width and a < b < starts[j + 2]:
            m = _merge_inputs(merged, x0, x1, rows, xs, a, b, starts[j + 2], n_rows)
            _csc_pair(dW[np.uint32(j0 + j)], dW[np.uint32(j0 + j + 1)], n_out, deltas, merged, x0, x1, m)
            if W.shape[0] > 0:
                _step_rows_now(W, dW, j0 + j, j0 + j + 2, n_out, sc)
            j += 2
            continue
        if a < b:
            _csc_one(dW[np.uint32(j0 + j)], n_out, deltas, rows, xs, a, b)
            if W.shape[0] > 0:
                _step_rows_now(W, dW, j0 + j, j0 + j + 1, n_out, sc)
        j += 1


@njit(**KERNEL_OPTIONS)
def _step_rows_now(W, G, first, last, n_out, sc):
    """Plain SGD's step of the rows first .. last - 1 of W from their gradient rows in G, which
    are set back to 0: apply_step_rows' arithmetic for PLAIN (the same plain_update, the same
    scalars), so the same bits as _part_update's step over every row, while the rows are still
    in L1. A row no input lit is not visited: its gradient is 0, and the step over every row
    left a finite weight as it was too, but for -0.0 (which it made 0.0) and an infinite one (a
    diverged run's, which it made NaN), as _sparse_plain_step."""
    lr = sc[LR]
    cd = sc[COUPLED_DECAY]
    dd = sc[DECOUPLED_DECAY]
    for j in range(first, last):
        w = W[j]
        g = G[j]
        for i in range(n_out):
            w[i] = plain_update(w[i], g[i], lr, cd, dd)
            g[i] = 0


@njit(**KERNEL_OPTIONS)
def _merge_inputs(merged, x0, x1, rows, xs, a, b, c, n_rows):
    """The rows of two inputs, rows[a:b] and rows[b:c] (each ascending), merged into
    merged[:m] with each input's value in x0 and x1 (0 where the row does not light it); m."""
    zero = x0.dtype.type(0)
    p = a
    q = b
    m = 0
    while p < b or q < c:
        r0 = rows[p] if p < b else n_rows
        r1 = rows[q] if q < c else n_rows
        r = min(r0, r1)
        merged[m] = r
        if r0 == r:
            x0[m] = xs[p]
            p += 1
        else:
            x0[m] = zero
        if r1 == r:
            x1[m] = xs[q]
            q += 1
        else:
            x1[m] = zero
        m += 1
    return m


@njit(**KERNEL_OPTIONS)
def _csc_one(g, n_out, deltas, rows, xs, a, b):
    """g[:n_out] += sum_q xs[q] dz[rows[q]] over q = a .. b - 1: four vectors at a time in
    registers, the last columns a vector at a time, the very last masked."""
    L = lanes(g)
    full = n_out - n_out % (4 * L)
    for c in range(0, full, 4 * L):
        g0 = vload(g, c)
        g1 = vload(g, c + L)
        g2 = vload(g, c + 2 * L)
        g3 = vload(g, c + 3 * L)
        for q in range(a, b):
            dz = deltas[np.uint32(rows[q])]
            x = vsplat(dz, xs[q])
            g0 = vfma(x, vload(dz, c), g0)
            g1 = vfma(x, vload(dz, c + L), g1)
            g2 = vfma(x, vload(dz, c + 2 * L), g2)
            g3 = vfma(x, vload(dz, c + 3 * L), g3)
        vstore(g, c, g0)
        vstore(g, c + L, g1)
        vstore(g, c + 2 * L, g2)
        vstore(g, c + 3 * L, g3)
    for c in range(full, n_out, L):
        m = n_out - c
        if m >= L:
            g0 = vload(g, c)
            for q in range(a, b):
                dz = deltas[np.uint32(rows[q])]
                g0 = vfma(vsplat(dz, xs[q]), vload(dz, c), g0)
            vstore(g, c, g0)
        else:
            g0 = vload_part(g, c, m)
            for q in range(a, b):
                dz = deltas[np.uint32(rows[q])]
                g0 = vfma(vsplat(dz, xs[q]), vload_part(dz, c, m), g0)
            vstore_part(g, c, g0, m)


@njit(**KERNEL_OPTIONS)
def _csc_pair(g, h, n_out, deltas, merged, x0, x1, m):
    """g[:n_out] += sum_q x0[q] dz[merged[q]] and h[:n_out] += sum_q x1[q] dz[merged[q]] over
    q < m: two vectors of each at a time in registers (eight 32-byte accumulators with AVX2;
    four vectors of each spilled and ran 0.7x), each dz vector loaded once for both. The input
    by input loop alone (256 rows of MNIST, 500 units, AMD EPYC Zen 3): 1.12-1.17x."""
    L = lanes(g)
    full = n_out - n_out % (2 * L)
    for c in range(0, full, 2 * L):
        g0 = vload(g, c)
        g1 = vload(g, c + L)
        h0 = vload(h, c)
        h1 = vload(h, c + L)
        for q in range(m):
            dz = deltas[np.uint32(merged[q])]
            d0 = vload(dz, c)
            d1 = vload(dz, c + L)
            x = vsplat(dz, x0[q])
            y = vsplat(dz, x1[q])
            g0 = vfma(x, d0, g0)
            g1 = vfma(x, d1, g1)
            h0 = vfma(y, d0, h0)
            h1 = vfma(y, d1, h1)
        vstore(g, c, g0)
        vstore(g, c + L, g1)
        vstore(h, c, h0)
        vstore(h, c + L, h1)
    for c in range(full, n_out, L):
        k = n_out - c
        if k >= L:
            g0 = vload(g, c)
            h0 = vload(h, c)
            for q in range(m):
                dz = deltas[np.uint32(merged[q])]
                d0 = vload(dz, c)
                g0 = vfma(vsplat(dz, x0[q]), d0, g0)
                h0 = vfma(vsplat(dz, x1[q]), d0, h0)
            vstore(g, c, g0)
            vstore(h, c, h0)
        else:
            g0 = vload_part(g, c, k)
            h0 = vload_part(h, c, k)
            for q in range(m):
                dz = deltas[np.uint32(merged[q])]
                d0 = vload_part(dz, c, k)
                g0 = vfma(vsplat(dz, x0[q]), d0, g0)
                h0 = vfma(vsplat(dz, x1[q]), d0, h0)
            vstore_part(g, c, g0, k)
            vstore_part(h, c, h0, k)


@njit(**KERNEL_OPTIONS)
def _bias_part_gradient(db, deltas, dz_column, first, last, fresh):
    """db[k] += sum_B dz[B, dz_column + k] for the units k = first .. last - 1 of a layer's bias,
    from 0 if ``fresh`` (the batch's first rows), over the rows in order. Row by row, every unit
    of a row at a time: each unit's sum takes the same steps in the same order as a loop down its
    column, but reads the rows once, in order (a column at a time read each row's cache line once
    per unit: at 500 units and batch 1024 the rows, 2.7 MB, left L2 between columns)."""
    if fresh:
        db[first:last] = 0
    for r in range(deltas.shape[0]):
        dz = deltas[r, dz_column + first:dz_column + last]
        total = db[first:last]
        for k in range(dz.shape[0]):
            total[k] += dz[k]


@njit(**KERNEL_OPTIONS)
def _part_gradient(
    grad, params, units, deltas, spans, layer_sizes, w_offsets, b_offsets, part, indices, values, input_scale, seed,
    first_sample, input_threshold, input_keep_scale, fresh, sparse,
):
    """Add the given rows' share to the gradient of one part's parameters (from 0 if ``fresh``:
    the rows are their batch's first): first layer z[B,H] = x[B,D] @ W[D,H] + b[H], for its
    rows j (unless not ``sparse``: the chunk has added them by input, _part_gradient_by_input):
    dW[j,:] += sum_B x[B,j] dz[B,:] over the nonzero (and, with input dropout, kept) x
    (dW is zero between steps: _part_update leaves it so); its share of db = sum_B dz; its
    share of every later layer's output units' dW^T rows and biases (_dense_part_gradient). The
    rows are the samples trained first_sample, first_sample + 1, ... (their dropout masks).
    Sums over the rows in batch order, however the batch is split."""
    dW, db = layer_views(grad, layer_sizes, w_offsets, b_offsets, FIRST_LAYER)
    n_in, n_out = dW.shape
    padded = _padded_gradient(grad, params, n_in)
    if padded.shape[0] > 0:
        dW = padded  # rows of 8L, the first n_out of them the gradient
    if sparse:
        _part_sparse_gradient(dW, n_out, deltas, spans, part, indices, values, input_scale, seed, first_sample,
                              input_threshold, input_keep_scale)
    if db.shape[0] > 0:
        first, last = _part_range(n_out, part)
        _bias_part_gradient(db, deltas, _unit_offset(layer_sizes, FIRST_LAYER), first, last, fresh)
    for l in range(1, layer_sizes.shape[0] - 1):
        _, db = layer_views(grad, layer_sizes, w_offsets, b_offsets, l)
        dWt = _transposed_view(grad, layer_sizes, w_offsets, l)
        a_column = _unit_offset(layer_sizes, l - 1)
        dz_column = _unit_offset(layer_sizes, l)
        first, last = _part_range(layer_sizes[l + 1], part)
        _dense_part_gradient(dWt, units, deltas, a_column, dz_column, first, last, fresh)
        if db.shape[0] > 0:
            _bias_part_gradient(db, deltas, dz_column, first, last, fresh)


@njit(**KERNEL_OPTIONS)
def _part_update(params, grad, weights_t, slots, slots_t, layer_sizes, w_offsets, b_offsets, kind, sc, part,
                 spans, indices, marks, stamp, stepped):
    """The optimizer's step of one part's parameters (its rows of the first layer's W, its share
    of b and of every later layer's output units, on the copies W^T in weights_t and slots_t)
    from the gradient _part_gradient summed; the first layer's dW is left zero. ``spans`` are
    the batch's rows (where their nonzero inputs of each part are), ``marks`` [n_in] int64 and
    ``stamp`` (> 0, a new one for each step) scratch for _sparse_plain_step. ``stepped``: the
    first layer's W has taken this step already (_part_gradient_by_input), its dW is 0."""
    W, b = layer_views(params, layer_sizes, w_offsets, b_offsets, FIRST_LAYER)
    dW, db = layer_views(grad, layer_sizes, w_offsets, b_offsets, FIRST_LAYER)
    n_in, n_out = W.shape
    padded = _padded_gradient(grad, params, n_in)
    first, last = _part_range(n_in, part)
    w0 = w_offsets[0]
    # one call for the part's rows of each layer (a call per row: 2% of an Adam epoch at 100
    # units; per row, each call's setup and scalar tail cost Adam 4x the time per weight), and
    # apply_step_rows alone: a second rule for 1-D runs was one more function to compile
    if stepped:
        pass
    elif _sparse_plain_step(W, padded if padded.shape[0] > 0 else dW, kind, sc, spans, part, last - first, indices,
                            marks, stamp):
        pass
    elif padded.shape[0] > 0:
        apply_step_rows(W[first:last], padded[first:last], slots, w0 + first * n_out, kind, sc, DECAY)
        padded[first:last] = 0
    else:
        apply_step_rows(W[first:last], dW[first:last], slots, w0 + first * n_out, kind, sc, DECAY)
        grad[w0 + first * n_out : w0 + last * n_out] = 0
    if b.shape[0] > 0:
        first, last = _part_range(n_out, part)
        apply_step_rows(b[first:last].reshape((1, last - first)), db[first:last].reshape((1, last - first)), slots,
                        b_offsets[0] + first, kind, sc, NO_DECAY)
    for l in range(1, layer_sizes.shape[0] - 1):
        Wt = _transposed_view(weights_t, layer_sizes, w_offsets, l)
        dWt = _transposed_view(grad, layer_sizes, w_offsets, l)
        first, last = _part_range(layer_sizes[l + 1], part)
        apply_step_rows(Wt[first:last], dWt[first:last], slots_t, w_offsets[l] + first * layer_sizes[l], kind, sc,
                        DECAY)
        _, b = layer_views(params, layer_sizes, w_offsets, b_offsets, l)
        if b.shape[0] > 0:
            _, db = layer_views(grad, layer_sizes, w_offsets, b_offsets, l)
            apply_step_rows(b[first:last].reshape((1, last - first)), db[first:last].reshape((1, last - first)),
                            slots, b_offsets[l] + first, kind, sc, NO_DECAY)


# _sparse_plain_step when a part's nonzero inputs in the batch are fewer than this many times its
# rows: 784-128-10, one thread (bench/ab_kernels.py, AMD EPYC Zen 4): 2 against the dense step,
# batch 2 1.56x, 4 1.21x, 8 1.11x; 4 lost at batch 16 (0.965x), where 2 leaves it dense.
SPARSE_STEP_VISITS = 2


@njit(**KERNEL_OPTIONS)
def _sparse_plain_step(W, G, kind, sc, spans, part, n_rows, indices, marks, stamp):
    """A plain SGD step without weight decay of the first layer's rows that the batch's nonzero
    inputs of the part touched, each once (``marks[j] == stamp`` once row j is done), gradient
    rows G[j] (padded or not) set back to 0, if the batch's rows hold fewer of the part's nonzero
    inputs than SPARSE_STEP_VISITS times its n_rows rows of W (batches of a few sparse rows);
    returns whether it did. Every other row's
    gradient is 0, and such a step leaves a finite weight as it is (the exceptions: infinite
    weights, a diverged run's, which the dense step makes NaN; -0.0, which it makes 0.0), so the
    results are bitwise those of a step over all rows, which updated every weight, and zeroed
    every gradient row, at each step: 784-128-10 at batch 2 trained 5.5x slower than per sample."""
    if kind != PLAIN or sc[COUPLED_DECAY] != 0 or sc[DECOUPLED_DECAY] != 0:
        return False
    visits = 0
    for r in range(spans.shape[0]):
        visits += spans[r, part, 1] - spans[r, part, 0]
    if visits >= SPARSE_STEP_VISITS * n_rows:
        return False
    lr = sc[LR]
    cd = sc[COUPLED_DECAY]
    dd = sc[DECOUPLED_DECAY]
    n_out = W.shape[1]
    for r in range(spans.shape[0]):
        for q in range(spans[r, part, 0], spans[r, part, 1]):
            j = indices[q]
            if marks[j] == stamp:
                continue
            marks[j] = stamp
            w = W[j]
            g = G[j]
            for i in range(n_out):
                w[i] = plain_update(w[i], g[i], lr, cd, dd)
                g[i] = 0
            for i in range(n_out, g.shape[0]):  # a padded row's tail (_padded_gradient)
                g[i] = 0
    return True


@njit(**KERNEL_OPTIONS)
def _sparse_gradient(dW, dz, indices, values, input_scale):
    """dW[j,:] += x[j] * dz[H] for the nonzero x[j] (one sample's share of the first layer's
    weight gradient), for rows of dW of exactly eight vectors (128 float32 or 64 float64
    columns; the caller checks) and 4L < H <= 8L: dz is kept in registers (loaded masked past
    H, so columns H .. 8L of dW add 0) while each row is read and written once. Rows of H
    columns other than 8L would need masked stores, which measured slower than _part_gradient's
    plain loop (so do a plain loop for the columns after the block, and two blocks on wider
    rows): _padded_gradient gives such layers rows of 8L instead. Without AVX-512
    (REGISTER_BLOCK 4) in two blocks of four vectors, each over all the inputs: the same sums
    (AMD EPYC Zen 3, 784-128-10 batch 128: 1.05-1.07x on one thread, 1.01x on two)."""
    L = lanes(dz)
    m = dz.shape[0]
    if REGISTER_BLOCK == 4:  # two blocks of four vectors
        for c in range(0, 8 * L, 4 * L):
            d0 = vload_part(dz, c, m - c)
            d1 = vload_part(dz, c + L, m - c - L)
            d2 = vload_part(dz, c + 2 * L, m - c - 2 * L)
            d3 = vload_part(dz, c + 3 * L, m - c - 3 * L)
            for p in range(indices.shape[0]):
                x = vsplat(dz, values[p] * input_scale)
                g = _row(dW, indices[p])
                vstore(g, c, vfma(x, d0, vload(g, c)))
                vstore(g, c + L, vfma(x, d1, vload(g, c + L)))
                vstore(g, c + 2 * L, vfma(x, d2, vload(g, c + 2 * L)))
                vstore(g, c + 3 * L, vfma(x, d3, vload(g, c + 3 * L)))
        return
    d0 = vload_part(dz, 0, m)
    d1 = vload_part(dz, L, m - L)
    d2 = vload_part(dz, 2 * L, m - 2 * L)
    d3 = vload_part(dz, 3 * L, m - 3 * L)
    d4 = vload_part(dz, 4 * L, m - 4 * L)
    d5 = vload_part(dz, 5 * L, m - 5 * L)
    d6 = vload_part(dz, 6 * L, m - 6 * L)
    d7 = vload_part(dz, 7 * L, m - 7 * L)
    for p in range(indices.shape[0]):
        x = vsplat(dz, values[p] * input_scale)
        g = _row(dW, indices[p])
        vstore(g, 0, vfma(x, d0, vload(g, 0)))
        vstore(g, L, vfma(x, d1, vload(g, L)))
        vstore(g, 2 * L, vfma(x, d2, vload(g, 2 * L)))
        vstore(g, 3 * L, vfma(x, d3, vload(g, 3 * L)))
        vstore(g, 4 * L, vfma(x, d4, vload(g, 4 * L)))
        vstore(g, 5 * L, vfma(x, d5, vload(g, 5 * L)))
        vstore(g, 6 * L, vfma(x, d6, vload(g, 6 * L)))
        vstore(g, 7 * L, vfma(x, d7, vload(g, 7 * L)))


@njit(**KERNEL_OPTIONS)
def _sparse_forward8(z, W, indices, values, input_scale):
    """z[H] = x[D] @ W[D,H] over the nonzero x (sparse_row_forward without the bias), eight rows
    per pass over z: for layers of up to four vectors or more than eight, where the register
    blocks of ``linear.sparse_forward_block`` measured slower (mostly empty at the row's end; on
    wide rows each pass over the inputs fetches every row again)."""
    z[:] = 0
    n = indices.shape[0]
    p = 0
    while p + 8 <= n:
        x0 = values[p] * input_scale
        x1 = values[p + 1] * input_scale
        x2 = values[p + 2] * input_scale
        x3 = values[p + 3] * input_scale
        x4 = values[p + 4] * input_scale
        x5 = values[p + 5] * input_scale
        x6 = values[p + 6] * input_scale
        x7 = values[p + 7] * input_scale
        w0 = W[indices[p]]
        w1 = W[indices[p + 1]]
        w2 = W[indices[p + 2]]
        w3 = W[indices[p + 3]]
        w4 = W[indices[p + 4]]
        w5 = W[indices[p + 5]]
        w6 = W[indices[p + 6]]
        w7 = W[indices[p + 7]]
        for k in range(z.shape[0]):
            z[k] += ((x0 * w0[k] + x1 * w1[k]) + (x2 * w2[k] + x3 * w3[k])) + (
                (x4 * w4[k] + x5 * w5[k]) + (x6 * w6[k] + x7 * w7[k]))
        p += 8
    while p + 4 <= n:
        x0 = values[p] * input_scale
        x1 = values[p + 1] * input_scale
        x2 = values[p + 2] * input_scale
        x3 = values[p + 3] * input_scale
        w0 = W[indices[p]]
        w1 = W[indices[p + 1]]
        w2 = W[indices[p + 2]]
        w3 = W[indices[p + 3]]
        for k in range(z.shape[0]):
            z[k] += (x0 * w0[k] + x1 * w1[k]) + (x2 * w2[k] + x3 * w3[k])
        p += 4
    for q in range(p, n):
        x = values[q] * input_scale
        w = W[indices[q]]
        for k in range(z.shape[0]):
            z[k] += x * w[k]


@njit(**KERNEL_OPTIONS)
def _prefetch_pointers(part_ptr, i):
    """Start loading sample i's pointers (part_ptr[i * PARTS .. (i + 1) * PARTS], which may
    straddle two cache lines)."""
    prefetch(part_ptr, i * PARTS)
    prefetch(part_ptr, i * PARTS + PARTS)


@njit(**KERNEL_OPTIONS)
def _prefetch_sample(part_ptr, indices, values, labels, targets, i):
    """Start loading the CSR entries of sample i (``prefetch_row`` with part pointers) and its
    label or target row."""
    prefetch_span(indices, values, part_ptr[i * PARTS], part_ptr[(i + 1) * PARTS])
    if labels.shape[0] > 0:
        prefetch(labels, i)
    if targets.shape[0] > 0:
        prefetch(targets[i], 0)


@njit(**KERNEL_OPTIONS)
def _part_forward(
    partials, spans, params, layer_sizes, w_offsets, b_offsets, part,
    batch, part_ptr, indices, values, input_scale, seed, first_sample, input_threshold, input_keep_scale,
):
    """partials[part, B, H] = x[batch, rows] @ W[rows, H] over the part's rows of the first
    layer's W[D,H] and the nonzero x only (with input dropout, the kept ones, scaled);
    spans[B, part] = [first, last) of those x in the CSR arrays (read again by _part_gradient),
    from ``part_ptr`` (the rows' pointers split at the parts: module docstring). A row of
    4L < H <= 8L units (L lanes) keeps its sums in registers: with AVX-512 in one masked block
    of eight vectors; elsewhere (REGISTER_BLOCK 4: eight 64-byte accumulators would spill) in
    two blocks of four at exactly 8L (the same sums: 1.26-1.32x on an AMD EPYC Zen 3 at 128
    units, batch 128), else in _sparse_forward8's loop (1.13x at 100 units, Adam batch 200)."""
    partials, spans, params, batch = borrowed(partials), borrowed(spans), borrowed(params), borrowed(batch)
    part_ptr, indices, values = borrowed(part_ptr), borrowed(indices), borrowed(values)
    W, b = layer_views(params, layer_sizes, w_offsets, b_offsets, FIRST_LAYER)
    no_bias = b[:0]  # partial sums: the bias is added in step 2
    for r in range(batch.shape[0]):
        lo = part_ptr[batch[r] * PARTS + part]
        hi = part_ptr[batch[r] * PARTS + part + 1]
        spans[r, part, 0] = lo
        spans[r, part, 1] = hi
        z = partials[part, r, : layer_sizes[1]]
        if input_threshold == 0:
            if REGISTER_BLOCK == 8 and 4 * lanes(z) < z.shape[0] <= 8 * lanes(z):
                sparse_forward_block(z, W, no_bias, indices[lo:hi], values[lo:hi], input_scale, 0, z.shape[0])
            elif REGISTER_BLOCK == 4 and z.shape[0] == 8 * lanes(z):
                for c in range(0, 8 * lanes(z), 4 * lanes(z)):
                    _sparse_forward_block4(z, W, no_bias, indices[lo:hi], values[lo:hi], input_scale, c)
            else:
                _sparse_forward8(z, W, indices[lo:hi], values[lo:hi], input_scale)
            continue
        z[:] = 0
        for p in range(lo, hi):
            if kept(seed, first_sample + r, indices[p], input_threshold):
                x = values[p] * input_scale * input_keep_scale
                w = W[indices[p]]
                for k in range(z.shape[0]):
                    z[k] += x * w[k]


# ---------------------------------------------------------------------------------------------
# Step 2, per block of samples: forward from the partial sums, loss, backward to every layer's dz.


# Rows per block of step 2: the dense layers' weights are read once per block rather than once
# per sample (a wide hidden layer's W^T no longer fits in L1 cache). Fixed, so that results do
# not depend on the thread count.
BLOCK = 4

# A batch's forward pass runs a sub-batch at a time: at least SUB_ROWS rows, more where PARTS x
# rows x H partial sums fit in SUB_BYTES (256 rows at 128 float32 units, 64 at 500 and 800); a
# multiple of BLOCK rows, so that the blocks are the same. Batch 1024, Intel Xeon (2026-12-01):
# 256 rows against 128 and 512 at 128 units, against 40 at 800 units. AMD EPYC Zen 4
# (2026-12-03, bench/ab_kernels.py, batch 1024): 64 rows against 256 at 784-500-150-10 1.08x,
# 1.08x, 1.21x in three runs (128 rows: 1.12x); 784-800-10 1.02x and 1.02x, batch 128
# 0.99x-1.05x; 40 rows lost at 800 units, batch 128 (0.92x, 0.96x). Float64 784-128-10 (128 rows
# now) 1.00x, 784-300-10 (108) 1.00x.
SUB_ROWS = 64
SUB_BYTES = 1 << 19


@njit(**KERNEL_OPTIONS)
def sub_batch_rows(n_first, itemsize):
    """Rows per sub-batch for a first layer of n_first units of itemsize bytes."""
    return max(SUB_ROWS // BLOCK, SUB_BYTES // (PARTS * n_first * itemsize * BLOCK)) * BLOCK


# the same in Python (integers only), for minibatch_scratch and the interpreted kernel: nothing to
# compile before a cold start's first step
_python_sub_batch_rows = getattr(sub_batch_rows, "py_func", sub_batch_rows)


# _dense_block_forward takes two units per pass over a full block's rows from this many inputs
# on (see there).
PAIRED_INPUTS = 256


@njit(**KERNEL_OPTIONS)
def _store_sums4(units, r0, middle, k, b, c0, c1, c2, c3):
    """Unit k's outputs of a block's four rows: its bias (none without one) plus the vsum of each
    row's vector of partial sums (_dense_block_forward)."""
    bias = b[k] if b.shape[0] > 0 else units.dtype.type(0)
    units[r0, middle + k] = bias + vsum(c0)
    units[r0 + 1, middle + k] = bias + vsum(c1)
    units[r0 + 2, middle + k] = bias + vsum(c2)
    units[r0 + 3, middle + k] = bias + vsum(c3)


@njit(**KERNEL_OPTIONS)
def _dense_block_forward(units, rows, first, middle, end, Wt, b):
    """units[r, middle:end] = Wt[H,D] @ units[r, first:middle] + b[H] for the block's rows
    (``rows`` = [r0, r1), up to BLOCK of them). Each sum is one 32-byte vector of partial sums,
    lane l taking the inputs j = l mod L in order (L = its lanes; the last ones by a masked load),
    then its lanes added in vsum's order, then the bias: one order on every target. (The loops
    before, which LLVM vectorised itself, summed in an order of the target's register width:
    mini-batch training gave other last bits on AVX2 than on AVX-512; BENCHMARKS.md, session 62.)
    The rows and units only group the sums, which changes none of them: a full block reads each
    row of Wt once for its four rows, and from PAIRED_INPUTS inputs on two units per pass (eight
    sums: each load of the inputs serves two units; 784-500-150-10 1.05x and 1.08x at batch 128
    and 1024 on an AMD EPYC Zen 3), with AVX-512 four (sixteen sums, half of its registers).
    Rows and Wt are read without reference counts (``borrowed``; the caller holds both arrays):
    with them this function ran at 0.84x the loops before for a 500x150 layer on AVX2."""
    units = borrowed(units)
    Wt = borrowed(Wt)
    r0, r1 = rows
    n_units = Wt.shape[0]
    if n_units == 0:
        return
    n_in = middle - first
    L = lanes(Wt[0]) // 2
    whole = n_in // L * L
    tail = n_in - whole  # the inputs after the last whole vector
    if r1 - r0 < 4:
        for r in range(r0, r1):
            a = units[r]
            for k in range(n_units):
                w = Wt[k]
                t = hzeros(w)
                for j in range(0, whole, L):
                    t = vfma(hload(a, first + j), hload(w, j), t)
                if tail > 0:
                    t = vfma(hload_part(a, first + whole, tail), hload_part(w, whole, tail), t)
                units[r, middle + k] = (b[k] if b.shape[0] > 0 else Wt.dtype.type(0)) + vsum(t)
        return
    a0 = units[r0]
    a1 = units[r0 + 1]
    a2 = units[r0 + 2]
    a3 = units[r0 + 3]
    k0 = np.int64(0)  # (typed int64 from here: a literal 0 compiled _store_sums4 a second time)
    if n_in >= PAIRED_INPUTS and REGISTER_BLOCK == 8:
        while k0 + 4 <= n_units:
            w = Wt[k0]
            v = Wt[k0 + 1]
            q = Wt[k0 + 2]
            p = Wt[k0 + 3]
            t0 = hzeros(w)
            t1, t2, t3, u0, u1, u2, u3 = t0, t0, t0, t0, t0, t0, t0
            s0, s1, s2, s3, o0, o1, o2, o3 = t0, t0, t0, t0, t0, t0, t0, t0
            for j in range(0, n_in, L):
                m = min(L, n_in - j)
                if m == L:
                    wj, vj, qj, pj = hload(w, j), hload(v, j), hload(q, j), hload(p, j)
                    x0, x1, x2, x3 = hload(a0, first + j), hload(a1, first + j), hload(a2, first + j), hload(a3, first + j)
                else:
                    wj, vj, qj, pj = hload_part(w, j, m), hload_part(v, j, m), hload_part(q, j, m), hload_part(p, j, m)
                    x0, x1, x2, x3 = (hload_part(a0, first + j, m), hload_part(a1, first + j, m),
                                      hload_part(a2, first + j, m), hload_part(a3, first + j, m))
                t0, t1, t2, t3 = vfma(x0, wj, t0), vfma(x1, wj, t1), vfma(x2, wj, t2), vfma(x3, wj, t3)
                u0, u1, u2, u3 = vfma(x0, vj, u0), vfma(x1, vj, u1), vfma(x2, vj, u2), vfma(x3, vj, u3)
                s0, s1, s2, s3 = vfma(x0, qj, s0), vfma(x1, qj, s1), vfma(x2, qj, s2), vfma(x3, qj, s3)
                o0, o1, o2, o3 = vfma(x0, pj, o0), vfma(x1, pj, o1), vfma(x2, pj, o2), vfma(x3, pj, o3)
            _store_sums4(units, r0, middle, k0, b, t0, t1, t2, t3)
            _store_sums4(units, r0, middle, k0 + 1, b, u0, u1, u2, u3)
            _store_sums4(units, r0, middle, k0 + 2, b, s0, s1, s2, s3)
            _store_sums4(units, r0, middle, k0 + 3, b, o0, o1, o2, o3)
            k0 += 4
    if n_in >= PAIRED_INPUTS:
        while k0 + 2 <= n_units:
            w = Wt[k0]
            v = Wt[k0 + 1]
            t0 = hzeros(w)
            t1, t2, t3, u0, u1, u2, u3 = t0, t0, t0, t0, t0, t0, t0
            for j in range(0, whole, L):
                wj, vj = hload(w, j), hload(v, j)
                x0, x1, x2, x3 = hload(a0, first + j), hload(a1, first + j), hload(a2, first + j), hload(a3, first + j)
                t0, t1, t2, t3 = vfma(x0, wj, t0), vfma(x1, wj, t1), vfma(x2, wj, t2), vfma(x3, wj, t3)
                u0, u1, u2, u3 = vfma(x0, vj, u0), vfma(x1, vj, u1), vfma(x2, vj, u2), vfma(x3, vj, u3)
            if tail > 0:
                wj, vj = hload_part(w, whole, tail), hload_part(v, whole, tail)
                x0, x1 = hload_part(a0, first + whole, tail), hload_part(a1, first + whole, tail)
                x2, x3 = hload_part(a2, first + whole, tail), hload_part(a3, first + whole, tail)
                t0, t1, t2, t3 = vfma(x0, wj, t0), vfma(x1, wj, t1), vfma(x2, wj, t2), vfma(x3, wj, t3)
                u0, u1, u2, u3 = vfma(x0, vj, u0), vfma(x1, vj, u1), vfma(x2, vj, u2), vfma(x3, vj, u3)
            _store_sums4(units, r0, middle, k0, b, t0, t1, t2, t3)
            _store_sums4(units, r0, middle, k0 + 1, b, u0, u1, u2, u3)
            k0 += 2
    for k in range(k0, n_units):
        w = Wt[k]
        t0 = hzeros(w)
        t1, t2, t3 = t0, t0, t0
        for j in range(0, whole, L):
            wj = hload(w, j)
            t0 = vfma(hload(a0, first + j), wj, t0)
            t1 = vfma(hload(a1, first + j), wj, t1)
            t2 = vfma(hload(a2, first + j), wj, t2)
            t3 = vfma(hload(a3, first + j), wj, t3)
        if tail > 0:
            wj = hload_part(w, whole, tail)
            t0 = vfma(hload_part(a0, first + whole, tail), wj, t0)
            t1 = vfma(hload_part(a1, first + whole, tail), wj, t1)
            t2 = vfma(hload_part(a2, first + whole, tail), wj, t2)
            t3 = vfma(hload_part(a3, first + whole, tail), wj, t3)
        _store_sums4(units, r0, middle, k, b, t0, t1, t2, t3)


@njit(**KERNEL_OPTIONS)
def _dense_block_backward(deltas, rows, first, middle, end, Wt):
    """deltas[r, first:middle] = Wt^T[D,H] @ deltas[r, middle:end] for the block's rows (the
    backward of _dense_block_forward; the weights are not touched). A full block of four rows
    keeps, per vector of D columns, the four rows' sums in registers over all H units: one load
    of Wt and four multiply-adds per unit (2.9x the two-rows-per-pass loop below on a 500x150
    layer, with AVX-512 and with AVX2 code alike), the same sums in the same order; plain loads
    for whole vectors (masked ones in every pass ran half as fast on an AMD EPYC Zen 3: this
    layer alone 1.9x, 784-500-150-10 1.06-1.07x at batch 128 and 1024, same bits). With AVX-512
    two vectors per pass, eight sums (_dense_backward_pair: the same sums; the 500x150 layer alone
    1.13x, Intel Xeon). A shorter block: two rows per pass over Wt (more would need more overlap
    checks than LLVM vectorises with)."""
    r0, r1 = rows
    if r1 - r0 == 4:
        L = lanes(Wt)
        n_in = middle - first
        d0 = deltas[r0]
        d1 = deltas[r0 + 1]
        d2 = deltas[r0 + 2]
        d3 = deltas[r0 + 3]
        if REGISTER_BLOCK == 8:
            for pair in range(-(-n_in // (2 * L))):
                _dense_backward_pair(d0, d1, d2, d3, Wt, first, middle, pair * 2 * L, n_in)
            return
        c = 0
        while c < n_in:
            # whole vectors with plain loads, the last columns masked: masked loads in every
            # pass ran this loop at half the speed (AMD EPYC Zen 3, AVX2)
            m = n_in - c
            a0 = vsplat(d0, 0)
            a1 = a0
            a2 = a0
            a3 = a0
            if m >= L:
                for k in range(Wt.shape[0]):
                    w = vload(Wt[k], c)
                    a0 = vfma(vsplat(d0, d0[middle + k]), w, a0)
                    a1 = vfma(vsplat(d0, d1[middle + k]), w, a1)
                    a2 = vfma(vsplat(d0, d2[middle + k]), w, a2)
                    a3 = vfma(vsplat(d0, d3[middle + k]), w, a3)
            else:
                for k in range(Wt.shape[0]):
                    w = vload_part(Wt[k], c, m)
                    a0 = vfma(vsplat(d0, d0[middle + k]), w, a0)
                    a1 = vfma(vsplat(d0, d1[middle + k]), w, a1)
                    a2 = vfma(vsplat(d0, d2[middle + k]), w, a2)
                    a3 = vfma(vsplat(d0, d3[middle + k]), w, a3)
            if m >= L:  # plain stores too (masked ones are microcoded on AMD Zen 2)
                vstore(d0, first + c, a0)
                vstore(d1, first + c, a1)
                vstore(d2, first + c, a2)
                vstore(d3, first + c, a3)
            else:
                vstore_part(d0, first + c, a0, m)
                vstore_part(d1, first + c, a1, m)
                vstore_part(d2, first + c, a2, m)
                vstore_part(d3, first + c, a3, m)
            c += L
        return
    for r in range(r0, r1):
        da = deltas[r, first:middle]
        for j in range(da.shape[0]):
            da[j] = 0
    r = r0
    while r + 2 <= r1:
        da0 = deltas[r, first:middle]
        da1 = deltas[r + 1, first:middle]
        for k in range(Wt.shape[0]):
            d0 = deltas[r, middle + k]
            d1 = deltas[r + 1, middle + k]
            w = Wt[k]
            for j in range(da0.shape[0]):
                da0[j] += d0 * w[j]
                da1[j] += d1 * w[j]
        r += 2
    if r < r1:
        da = deltas[r, first:middle]
        for k in range(Wt.shape[0]):
            d = deltas[r, middle + k]
            w = Wt[k]
            for j in range(da.shape[0]):
                da[j] += d * w[j]


@njit(**KERNEL_OPTIONS)
def _dense_backward_pair(d0, d1, d2, d3, Wt, first, middle, c, n_in):
    """_dense_block_backward's sums of two vectors of columns, c and c + L (the columns before
    n_in: masked loads and stores, which cost what plain ones do with AVX-512), for its four
    rows: eight sums in registers (with AVX-512 only: with AVX2 they would be all sixteen
    registers), each row's delta loaded once for both vectors. The same sums in the same order
    as one vector at a time."""
    L = lanes(Wt)
    m = n_in - c
    k = m - L  # clamped to [0, L] by the moves: 0 moves nothing
    a0 = vsplat(d0, 0)
    a1 = a0
    a2 = a0
    a3 = a0
    b0 = a0
    b1 = a0
    b2 = a0
    b3 = a0
    for unit in range(Wt.shape[0]):
        w = Wt[np.uint32(unit)]
        v = vload_part(w, c, m)
        u = vload_part(w, c + L, k)
        x = vsplat(d0, d0[middle + unit])
        a0 = vfma(x, v, a0)
        b0 = vfma(x, u, b0)
        x = vsplat(d0, d1[middle + unit])
        a1 = vfma(x, v, a1)
        b1 = vfma(x, u, b1)
        x = vsplat(d0, d2[middle + unit])
        a2 = vfma(x, v, a2)
        b2 = vfma(x, u, b2)
        x = vsplat(d0, d3[middle + unit])
        a3 = vfma(x, v, a3)
        b3 = vfma(x, u, b3)
    vstore_part(d0, first + c, a0, m)
    vstore_part(d1, first + c, a1, m)
    vstore_part(d2, first + c, a2, m)
    vstore_part(d3, first + c, a3, m)
    vstore_part(d0, first + c + L, b0, k)
    vstore_part(d1, first + c + L, b1, k)
    vstore_part(d2, first + c + L, b2, k)
    vstore_part(d3, first + c + L, b3, k)


@njit(**KERNEL_OPTIONS)
def _block_forward_backward(
    units, raw, deltas, losses, hits, rows, partials, params, weights_t, layer_sizes, w_offsets, b_offsets,
    activation, loss, batch_rows, labels, targets, sample_weights, batch, seed, first_number, threshold,
    keep_scale,
):
    """For the batch rows r in ``rows`` = [r0, r1) (sample batch[r], whose first-layer partial
    sums are partials[:, r, :]): units[r] = every layer's outputs then p[K], deltas[r] =
    d(loss / batch_rows)/dz of every layer, losses[r] and hits[r] (1 if classified right).
    Layer by layer over the block's rows, the dense layers a block at a time.

    With hidden dropout (threshold > 0) a hidden layer's units hold the kept outputs times
    keep_scale, or 0 (what the next layer reads), and raw[r] the outputs before that (what the
    activation's derivative is taken of); row r is the (first_number + r)-th sample trained."""
    units, raw, deltas, partials = borrowed(units), borrowed(raw), borrowed(deltas), borrowed(partials)
    params, weights_t, targets = borrowed(params), borrowed(weights_t), borrowed(targets)
    r0, r1 = rows
    n_layers = layer_sizes.shape[0] - 1
    _, b = layer_views(params, layer_sizes, w_offsets, b_offsets, FIRST_LAYER)
    n_first = layer_sizes[1]
    for r in range(r0, r1):
        z = units[r, :n_first]
        fill_bias(z, b)
        for part in range(PARTS):
            partial = partials[part, r]
            for k in range(n_first):
                z[k] += partial[k]
    for l in range(1, n_layers):
        first = _unit_offset(layer_sizes, l - 1)
        middle = first + layer_sizes[l]
        end = middle + layer_sizes[l + 1]
        for r in range(r0, r1):
            a = units[r, first:middle]
            activation_row_forward(a, activation)
            if threshold > 0:
                first_unit = layer_sizes[0] + first  # units are numbered through the network
                for k in range(a.shape[0]):
                    raw[r, first + k] = a[k]
                for k in range(a.shape[0]):
                    a[k] = a[k] * keep_scale if kept(seed, first_number + r, first_unit + k, threshold) else 0
        _, b = layer_views(params, layer_sizes, w_offsets, b_offsets, l)
        _dense_block_forward(units, rows, first, middle, end, _transposed_view(weights_t, layer_sizes, w_offsets, l), b)

    last = _unit_offset(layer_sizes, n_layers - 1)
    end = _unit_offset(layer_sizes, n_layers)
    for r in range(r0, r1):
        sample = batch[r]
        z = units[r, last:end]
        p = units[r, end : end + (end - last)]
        value, correct = loss_row_forward(p, z, labels, targets, sample, loss)
        weight = sample_weight(sample_weights, sample)
        if sample_weights.shape[0] > 0:
            value *= weight
        losses[r] = value
        hits[r] = correct
        dz = deltas[r, last:end]
        loss_row_backward(dz, p, labels, targets, sample, loss)
        if sample_weights.shape[0] > 0:
            weigh_row(dz, weight)
        for k in range(dz.shape[0]):
            dz[k] /= batch_rows  # the batch mean, divided in as the reference does
    for l in range(n_layers - 1, 0, -1):
        first = _unit_offset(layer_sizes, l - 1)
        middle = first + layer_sizes[l]
        end = middle + layer_sizes[l + 1]
        _dense_block_backward(deltas, rows, first, middle, end, _transposed_view(weights_t, layer_sizes, w_offsets, l))
        for r in range(r0, r1):
            da = deltas[r, first:middle]
            if threshold > 0:
                first_unit = layer_sizes[0] + first
                for k in range(da.shape[0]):
                    da[k] = da[k] * keep_scale if kept(seed, first_number + r, first_unit + k, threshold) else 0
                activation_row_backward(da, raw[r, first:middle], activation)
            else:
                activation_row_backward(da, units[r, first:middle], activation)


# ---------------------------------------------------------------------------------------------
# The chunk


@njit(**KERNEL_OPTIONS)
def _first_nonfinite(losses):
    """Index of the first NaN or infinite loss, or -1."""
    for r in range(losses.shape[0]):
        if not np.isfinite(losses[r]):
            return r
    return -1


@njit(**KERNEL_OPTIONS)
def _batch_totals(loss_sum, losses, hits):
    """loss_sum plus a batch's losses in row order, and its number of correct predictions. A
    helper so that the interpreted kernel adds in the compiled kernels' order; ``ordered_add``, as
    LLVM reordered this sum to vectorise it, in an order of the target's vectors (other last bits
    in the interpreter, and on AVX2 than on AVX-512: audit 68)."""
    correct = 0
    for r in range(losses.shape[0]):
        loss_sum = ordered_add(loss_sum, losses[r])
        correct += hits[r]
    return loss_sum, correct


@njit(**KERNEL_OPTIONS)
def _copy_transposed(out, a):
    """out[n, m] = a[m, n]^T. Loops: an array-to-array assignment (out[:] = a.T) costs Numba
    seconds of compile time in every kernel that has one."""
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = a[j, i]


@njit(**KERNEL_OPTIONS)
def _begin_chunk(grad, weights_t, slots_t, params, slots, layer_sizes, w_offsets, b_offsets):
    """The first layer's dW = 0 (_part_update keeps it so); weights_t = W_l^T for l >= 1 and
    slots_t the same transposes of the optimizer's slots."""
    dW, _ = layer_views(grad, layer_sizes, w_offsets, b_offsets, FIRST_LAYER)
    dW[:] = 0
    _padded_gradient(grad, params, dW.shape[0])[:] = 0
    for l in range(1, layer_sizes.shape[0] - 1):
        W, _ = layer_views(params, layer_sizes, w_offsets, b_offsets, l)
        _copy_transposed(_transposed_view(weights_t, layer_sizes, w_offsets, l), W)
        for slot in range(slots.shape[0]):
            S, _ = layer_views(slots[slot], layer_sizes, w_offsets, b_offsets, l)
            _copy_transposed(_transposed_view(slots_t[slot], layer_sizes, w_offsets, l), S)


@njit(**KERNEL_OPTIONS)
def _end_chunk(params, weights_t, slots, slots_t, layer_sizes, w_offsets, b_offsets):
    """W_l = weights_t^T for l >= 1 (and the slots): the trained copies back into params."""
    for l in range(1, layer_sizes.shape[0] - 1):
        W, _ = layer_views(params, layer_sizes, w_offsets, b_offsets, l)
        _copy_transposed(W, _transposed_view(weights_t, layer_sizes, w_offsets, l))
        for slot in range(slots.shape[0]):
            S, _ = layer_views(slots[slot], layer_sizes, w_offsets, b_offsets, l)
            _copy_transposed(S, _transposed_view(slots_t[slot], layer_sizes, w_offsets, l))


def _minibatch_sgd_chunk(
    params, stats, grad, weights_t, slots_t, partials, spans, units, raw, deltas, losses, hits,
    layer_sizes, w_offsets, b_offsets, activation, loss, hyper, slots, counters,
    part_ptr, indices, values, input_scale, labels, targets, sample_weights, order, start, stop,
    batch_size,
):
    """Mini-batch training over order[start:stop] (arguments and method: module docstring).
    ``minibatch_sgd_chunk`` runs on Numba's threads, ``minibatch_sgd_chunk_serial`` on one."""
    dtype = params.dtype.type
    scale = dtype(input_scale)
    kind = step_kind(hyper)
    sc = np.empty(N_STEP_SCALARS, params.dtype)
    seed = counters[DROPOUT_SEED]
    input_threshold = np.uint64(drop_threshold_of(hyper[INPUT_DROPOUT]))
    input_keep_scale = dtype(1.0) / dtype(1.0 - hyper[INPUT_DROPOUT])
    threshold = np.uint64(drop_threshold_of(hyper[DROPOUT]))
    keep_scale = dtype(1.0) / dtype(1.0 - hyper[DROPOUT])
    first_sample = counters[SAMPLES]
    first_step = counters[STEPS]
    _begin_chunk(grad, weights_t, slots_t, params, slots, layer_sizes, w_offsets, b_offsets)
    marks = np.zeros(layer_sizes[0], np.int64)  # _sparse_plain_step's, stamped with the step's n_steps

    loss_sum = stats[LOSS_SUM]
    n_correct = 0
    n_trained = 0
    n_steps = 0
    nonfinite_at = -1
    pending = 0  # rows of the last finite batch, whose step is still to be taken
    # the rows [grad_lo, grad_hi) of the scratch whose share of the gradient is still to be
    # added, the sample number of the first, and whether they are their batch's first rows
    grad_lo = 0
    grad_hi = 0
    grad_first = first_sample
    grad_fresh = start <= stop  # True, typed bool: a literal True would compile _part_gradient twice
    n_batches = -(-(stop - start) // batch_size)
    sub_rows = sub_batch_rows(layer_sizes[1], params.itemsize)
    # the first layer's weight gradient input by input (CSC_ROWS; inline: a helper would be one more
    # cached function for a warm start on the interpreted kernel to load)
    wide = layer_sizes[1] * params.itemsize >= CSC_ROW_BYTES and input_threshold == 0
    for batch_index in range(n_batches + 1):  # + 1: a last pass that only takes the last step
        batch_start = start + batch_index * batch_size
        batch = order[min(batch_start, stop) : min(batch_start + batch_size, stop)]
        n_rows = batch.shape[0]
        if pending > 0:
            n_steps += 1
            step_scalars(sc, hyper, first_step + n_steps)
        batch_first = first_sample + n_trained

        # A large batch runs sub_rows rows at a time, steps 1 and 2 in turn; step 1 adds the
        # previous sub-batch's share of the gradient (its rows, partial sums and dz still in
        # cache), then, in a batch's first sub-batch, takes the previous batch's step.
        n_subs = max(1, -(-n_rows // sub_rows))
        for sub in range(n_subs):
            s0 = sub * sub_rows
            s1 = min(s0 + sub_rows, n_rows)
            step_now = pending > 0 and sub == 0
            g0 = grad_lo
            g1 = grad_hi
            # The loop indices go on as int64: inside the parallel region Numba makes them
            # uint64, and every helper they reach would be compiled a second time for that type.
            by_rows = g1 - g0 < CSC_ROWS or not wide
            # FUSED_STEP: the first layer's W steps as each of its gradient rows is summed, where
            # the input-by-input gradient sums the whole batch at once (a batch of one sub-batch
            # and one group) and the step is plain SGD without decay: W and dW are read and
            # written once, and only the rows the batch's inputs light
            stepped = (step_now and not by_rows and g0 == 0 and g1 == pending and kind == PLAIN
                       and sc[COUPLED_DECAY] == 0 and sc[DECOUPLED_DECAY] == 0
                       and g1 <= csc_group_rows(layer_sizes[1], params.itemsize))
            for part_index in prange(PARTS):
                part = np.int64(part_index)
                if g1 > g0:
                    if not by_rows:
                        _part_gradient_by_input(grad, deltas[g0:g1], spans[g0:g1], layer_sizes, w_offsets, b_offsets,
                                                part, indices, values, scale, params, sc, stepped)
                    _part_gradient(
                        grad, params, units[g0:g1], deltas[g0:g1], spans[g0:g1], layer_sizes, w_offsets, b_offsets,
                        part, indices, values, scale, seed, grad_first, input_threshold, input_keep_scale, grad_fresh,
                        by_rows,
                    )
                if step_now:
                    _part_update(params, grad, weights_t, slots, slots_t, layer_sizes, w_offsets, b_offsets, kind, sc,
                                 part, spans[:pending], indices, marks, n_steps, stepped)
                if s1 > s0:
                    _part_forward(
                        partials, spans[s0:s1], params, layer_sizes, w_offsets, b_offsets, part,
                        batch[s0:s1], part_ptr, indices, values, scale, seed, batch_first + s0, input_threshold,
                        input_keep_scale,
                    )
            grad_lo = s0
            grad_hi = s1
            grad_first = batch_first + s0
            grad_fresh = sub == 0
            if n_rows == 0:
                break

            rows = dtype(n_rows)
            # the rows step 1 reads next: this batch's next sub_rows, or the next batch's first
            if s1 < n_rows:
                upcoming_at = batch_start + s1
                upcoming = batch[s1 : min(s1 + sub_rows, n_rows)]
            else:
                upcoming_at = min(batch_start + batch_size, stop)
                upcoming = order[upcoming_at : min(upcoming_at + sub_rows, stop)]
            # and those after them, whose pointers the prefetches of the next step 2 read
            further_at = upcoming_at + upcoming.shape[0]
            further = order[further_at : min(further_at + sub_rows, stop)]
            n_sub = s1 - s0
            for block_index in prange(-(-n_sub // BLOCK)):
                r0 = np.int64(block_index) * BLOCK
                _block_forward_backward(
                    units[s0:s1], raw[s0:s1], deltas[s0:s1], losses[s0:s1], hits[s0:s1], (r0, min(r0 + BLOCK, n_sub)),
                    partials, params, weights_t, layer_sizes, w_offsets, b_offsets, activation, loss, rows, labels,
                    targets, sample_weights, batch[s0:s1], seed, batch_first + s0, threshold, keep_scale,
                )
                # The next rows come in random order from an array far larger than the caches:
                # they are asked for now, to arrive while this step computes. Each row twice, from
                # blocks half a sub-batch apart: with two threads, each runs half the blocks, and
                # step 1 reads every row on both (one half of its pixels each); asked for on one
                # thread only, 1.06x instead of 1.12x (784-100-10 Adam, batch 200).
                for r in range(r0, min(r0 + BLOCK, upcoming.shape[0])):
                    _prefetch_sample(part_ptr, indices, values, labels, targets, upcoming[r])
                    other = (r + (n_sub + 1) // 2) % n_sub
                    if other < upcoming.shape[0]:
                        _prefetch_sample(part_ptr, indices, values, labels, targets, upcoming[other])
                # A row's pointers are a miss of their own, which the prefetch above waits for (it
                # needs them to know what to ask for): those of the rows after, asked for a step
                # ahead.
                for r in range(r0, min(r0 + BLOCK, further.shape[0])):
                    _prefetch_pointers(part_ptr, further[r])
                    other = (r + (n_sub + 1) // 2) % n_sub
                    if other < further.shape[0]:
                        _prefetch_pointers(part_ptr, further[other])
        if n_rows == 0:
            break

        bad = _first_nonfinite(losses[:n_rows])
        if bad >= 0:
            nonfinite_at = batch_start - start + bad
            break  # this batch's step is never taken
        loss_sum, batch_correct = _batch_totals(loss_sum, losses[:n_rows], hits[:n_rows])
        n_correct += batch_correct
        n_trained += n_rows
        pending = n_rows

    _end_chunk(params, weights_t, slots, slots_t, layer_sizes, w_offsets, b_offsets)
    counters[STEPS] = first_step + n_steps
    counters[SAMPLES] = first_sample + n_trained
    stats[LOSS_SUM] = loss_sum
    stats[N_CORRECT] = n_correct
    stats[N_TRAINED] = n_trained
    stats[NONFINITE_AT] = nonfinite_at


def _named(function, name):
    """A copy of ``function`` called ``name``: Numba caches a function under its name, and the
    two compilations of the mini-batch kernel must not share cache entries."""
    names = {"co_name": name}
    if hasattr(function.__code__, "co_qualname"):  # Python 3.11 on
        names["co_qualname"] = name
    code = function.__code__.replace(**names)
    copy = types.FunctionType(code, function.__globals__, name, function.__defaults__, function.__closure__)
    copy.__qualname__ = name
    copy.__doc__ = function.__doc__
    return copy


# The same kernel three times. With ``prange`` lowered to threads it is the one training runs;
# without (``prange`` is ``range``) it takes the same steps in the same order, so its results are
# bitwise the same, and it compiles in half the time (the two parallel loops' lowering is about
# 9 s of a cold first compile): one thread with no parallel kernel in the cache trains on it.
minibatch_sgd_chunk = njit(**PARALLEL_OPTIONS)(_named(_minibatch_sgd_chunk, "minibatch_sgd_chunk"))
minibatch_sgd_chunk_serial = njit(**KERNEL_OPTIONS)(_named(_minibatch_sgd_chunk, "minibatch_sgd_chunk_serial"))

# The chunk's compiled helpers, in the order a chunk first calls them: what a compile of the kernel
# spends most of its time on (``fastmlp._prewarm`` shares them out between two processes).
CHUNK_HELPERS = ("_part_forward", "_block_forward_backward", "_part_gradient", "_part_update")


# The chunk's helpers that only zero, copy and compare, in NumPy for the interpreted kernel: the
# same bits with nothing to compile first (on a cold start they were 1.6 s of the fit's share of
# the compile, AMD EPYC Zen 2). The compiled kernels keep their compiled versions.


def _python_begin_chunk(grad, weights_t, slots_t, params, slots, layer_sizes, w_offsets, b_offsets):
    """``_begin_chunk``: the first layer's dW (and its padded rows after the parameters) = 0,
    weights_t and slots_t = the later layers' W^T and slots^T."""
    w0, n_in, n_out = int(w_offsets[0]), int(layer_sizes[0]), int(layer_sizes[1])
    grad[w0 : w0 + n_in * n_out] = 0
    grad[params.shape[0] :] = 0  # _padded_gradient's rows, where minibatch_scratch made room for them
    for l in range(1, layer_sizes.shape[0] - 1):
        block, shape = _python_block(layer_sizes, w_offsets, l)
        weights_t[block].reshape(shape[::-1])[:] = params[block].reshape(shape).T
        for slot in range(slots.shape[0]):
            slots_t[slot, block].reshape(shape[::-1])[:] = slots[slot, block].reshape(shape).T


def _python_end_chunk(params, weights_t, slots, slots_t, layer_sizes, w_offsets, b_offsets):
    """``_end_chunk``: the later layers' W and slots = the transposed copies trained."""
    for l in range(1, layer_sizes.shape[0] - 1):
        block, shape = _python_block(layer_sizes, w_offsets, l)
        params[block].reshape(shape)[:] = weights_t[block].reshape(shape[::-1]).T
        for slot in range(slots.shape[0]):
            slots[slot, block].reshape(shape)[:] = slots_t[slot, block].reshape(shape[::-1]).T


def _python_block(layer_sizes, w_offsets, layer):
    """(the slice of params that holds W_l, W_l's shape (n_in, n_out))."""
    n_in, n_out, w = int(layer_sizes[layer]), int(layer_sizes[layer + 1]), int(w_offsets[layer])
    return slice(w, w + n_in * n_out), (n_in, n_out)


def _python_first_nonfinite(losses):
    """``_first_nonfinite``: the index of the first NaN or infinite loss, or -1."""
    bad = np.flatnonzero(~np.isfinite(losses))
    return int(bad[0]) if bad.shape[0] > 0 else -1


def _no_prefetch(part_ptr, indices, values, labels, targets, row):
    """``_prefetch_sample`` in the interpreter: a hint to the caches, with no effect on results, that
    would cost a call per row there."""


def _no_prefetch_pointers(part_ptr, row):
    """``_prefetch_pointers`` in the interpreter (as ``_no_prefetch``)."""


def interpreted(**replaced):
    """The kernel run by the Python interpreter: ``_minibatch_sgd_chunk`` itself, its loops in
    Python (``prange`` is ``range``, no prefetching) and its helpers the compiled ones, which the
    interpreter calls with the types the compiled kernels pass them (tests/test_prewarm.py), but
    for those that only zero, copy or compare (``_python_begin_chunk`` and the rest, in NumPy). It
    compiles nothing of its own, and its steps and results are the compiled kernels' (bitwise:
    tests/test_adaptive.py). ``replaced`` replaces helpers by name (``fastmlp._prewarm``)."""
    names = dict(_minibatch_sgd_chunk.__globals__, prange=range, _prefetch_sample=_no_prefetch,
                 _prefetch_pointers=_no_prefetch_pointers, _begin_chunk=_python_begin_chunk,
                 _end_chunk=_python_end_chunk, _first_nonfinite=_python_first_nonfinite,
                 sub_batch_rows=_python_sub_batch_rows)
    unknown = set(replaced) - set(names)
    if unknown:
        raise ValueError(f"the mini-batch kernel calls no {', '.join(sorted(unknown))}")
    names.update(replaced)
    return types.FunctionType(_minibatch_sgd_chunk.__code__, names, "minibatch_sgd_chunk_interpreted")


# A cold first mini-batch fit trains on it from the moment the helpers are compiled, while a
# second process compiles the parallel kernel (``fastmlp._prewarm``): at 0.61-0.68x the serial
# kernel's speed on one thread (784-128-10, batch 32 to 1,024, ``bench/interpreted.py speed``;
# the interpreter calls a helper per 4 rows and four per part of each sub-batch).
minibatch_sgd_chunk_interpreted = interpreted()
