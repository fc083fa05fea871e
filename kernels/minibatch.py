"""Mini-batch SGD: a chunk of batches per call, entirely in compiled code, on all cores.

``minibatch_sgd_chunk`` trains on order[start:stop] in batches of ``batch_size`` samples (the
last one may be shorter), exactly like ``fastmlp.reference.train_batches``: for each batch,
forward pass and per-sample losses with the weights before the batch's update, gradient =
mean over the batch of the per-sample gradients, then ``params -= lr * gradient``. Full-batch
gradient descent is ``batch_size >= stop - start``. Any depth and layer sizes, every
activation and loss code, float32 or float64, uint8 or float input.

Arguments (N samples, L dense layers, K = layer_sizes[-1], B = the largest batch,
U = sum(layer_sizes[1:]) + K). The shared ones mean what they mean for
``sgd.sgd_persample_chunk``, in the same order:

    params        float [P]      flat parameters (layout in ``linear.py``); updated in place
    stats         float64 [4]    written: (sum of the per-sample losses, number correct, number
                                 of samples trained, nonfinite_at). A batch with a non-finite
                                 loss is not applied and training stops: nonfinite_at is that
                                 sample's position in order[start:stop], else -1.
    grad          float [P]      scratch: gradients, offsets as params (see "Layout" below)
    weights_t     float [P]      scratch: W_l^T of layers l >= 1 at w_offsets[l]
    units         float [B, U]   scratch: per sample, every layer's outputs then p[K]
    deltas        float [B, U-K] scratch: per sample, d(batch loss)/dz of every layer
    losses        float [B]      scratch: per-sample losses of the current batch
    hits          int64 [B]      scratch: 1 where the sample is classified right
    layer_sizes   int64 [L+1]    n_0 (inputs) .. n_L (outputs)
    w_offsets     int64 [L]      from ``linear.parameter_layout``
    b_offsets     int64 [L]      -1 for layers without bias
    activation    int            hidden activation code (activation.py)
    loss          int            output/loss code (loss.py)
    learning_rate float          cast to params.dtype, as the reference does
    batch_size    int            >= 1
    indptr, indices, values, input_scale
                                 input rows in CSR form (``linear.sparse_rows``); an input is
                                 values[p] * input_scale (1/255 for uint8 pixels, 1 for floats)
    labels        int64 [N]      class labels (loss codes 0, 1), else may be empty
    targets       float [N, K]   targets (loss codes 2, 3), else may be empty [0, K]
    order         int64 [M]      sample indices, e.g. a permutation of range(N)
    start, stop   int            train on order[start:stop]

``minibatch_scratch`` allocates (grad, weights_t, units, deltas, losses, hits) once per fit:
``minibatch_sgd_chunk(params, stats, *minibatch_scratch(...), layer_sizes, ...)``. The kernel
allocates nothing.

How a batch runs (four kinds of parallel loop, no locks, no atomics):

1. per sample (prange over the batch): forward pass, loss, and dz of every layer, already
   divided by the batch size as in the reference;
2. first layer (prange over blocks of its output units): dW = x^T dz accumulated over the
   batch's nonzero inputs only, then W -= lr * dW and b -= lr * db for those units;
3. each later layer: dW^T row by row (prange over its output units), bias step included;
4. then the weight step W -= lr * dW, which also refreshes W^T (prange over its input units).

Determinism: every gradient entry is a sum over the batch's samples in batch order, written by
exactly one iteration, and the parallel loops only decide which thread computes which entries.
Results are therefore bit-identical from run to run and independent of NUMBA_NUM_THREADS.

Layout of the scratch arrays: the first layer reads sparse input rows with W_0 as stored
(input-major, one nonzero input touches one contiguous row); layers l >= 1 work with the
output-major copy W_l^T [n_{l+1}, n_l] in ``weights_t`` (dot products and axpys along n_l, so a
10-unit output layer still vectorises), and their weight gradient is kept transposed in
``grad`` too. The first layer's weight gradient and every bias gradient use the params layout.
``units[r]`` holds layer l's outputs (activated for hidden layers, logits for the last) at
columns sum(layer_sizes[1:l+1]) ..., then p = output activation of the logits; ``deltas[r]``
the same columns without p.
"""

import numpy as np
from numba import njit, prange

from ._config import KERNEL_OPTIONS, PARALLEL_OPTIONS
from .activation import activation_row_backward, activation_row_forward
from .linear import dense_row_forward, layer_views, sparse_row_forward
from .loss import loss_row_backward, loss_row_forward

LOSS_SUM, N_CORRECT, N_TRAINED, NONFINITE_AT = range(4)  # slots of ``stats``

# The first layer's gradient is computed in column blocks, in parallel (_first_layer_blocks).
_BLOCK_UNITS = 32
_MIN_BLOCK_UNITS = 8


def minibatch_scratch(params, layer_sizes, batch_size):
    """Every scratch array of ``minibatch_sgd_chunk`` for batches of up to ``batch_size`` rows:
    ``(grad, weights_t, units, deltas, losses, hits)``. Allocate once per fit; pass
    ``min(batch_size, n_samples)`` for full-batch training."""
    n_units = int(np.sum(layer_sizes[1:]))
    n_out = int(layer_sizes[-1])
    rows = max(1, int(batch_size))
    return (
        np.empty_like(params),
        np.empty_like(params),
        np.empty((rows, n_units + n_out), params.dtype),
        np.empty((rows, n_units), params.dtype),
        np.empty(rows, params.dtype),
        np.empty(rows, np.int64),
    )


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
    """W_l^T [n_out, n_in] of one layer in ``weights_t`` (or its gradient in ``grad``)."""
    n_in = layer_sizes[layer]
    n_out = layer_sizes[layer + 1]
    w = w_offsets[layer]
    return weights_t[w : w + n_in * n_out].reshape(n_out, n_in)


@njit(**KERNEL_OPTIONS)
def _dense_row_backward(da, Wt, dz):
    """da[D] = Wt^T[D,H] @ dz[H]  (backward of z = Wt @ a + b, weights unchanged)."""
    da[:] = 0
    for k in range(dz.shape[0]):
        d = dz[k]
        w = Wt[k]
        for j in range(da.shape[0]):
            da[j] += d * w[j]


# ---------------------------------------------------------------------------------------------
# 1. One sample: forward, loss, backward to every layer's dz


@njit(**KERNEL_OPTIONS)
def _sample_forward_backward(
    row_units, row_deltas, params, weights_t, layer_sizes, w_offsets, b_offsets, activation, loss,
    batch_rows, indices, values, input_scale, labels, targets, sample,
):
    """row_units[U] = every layer's outputs then p[K], row_deltas[U-K] = d(loss / batch_rows)/dz per
    layer, for one sample; returns (its loss, 1 if classified right else 0)."""
    n_layers = layer_sizes.shape[0] - 1
    W, b = layer_views(params, layer_sizes, w_offsets, b_offsets, 0)
    sparse_row_forward(row_units[: layer_sizes[1]], W, b, indices, values, input_scale)
    for l in range(1, n_layers):
        a = row_units[_unit_offset(layer_sizes, l - 1) : _unit_offset(layer_sizes, l)]
        activation_row_forward(a, activation)
        _, b = layer_views(params, layer_sizes, w_offsets, b_offsets, l)
        Wt = _transposed_view(weights_t, layer_sizes, w_offsets, l)
        dense_row_forward(row_units[_unit_offset(layer_sizes, l) : _unit_offset(layer_sizes, l + 1)], Wt, b, a)

    last = _unit_offset(layer_sizes, n_layers - 1)
    end = _unit_offset(layer_sizes, n_layers)
    z = row_units[last:end]
    p = row_units[end:]
    value, correct = loss_row_forward(p, z, labels, targets, sample, loss)

    dz = row_deltas[last:end]
    loss_row_backward(dz, p, labels, targets, sample, loss)
    for k in range(dz.shape[0]):
        dz[k] /= batch_rows  # the batch mean, divided in as the reference does
    for l in range(n_layers - 1, 0, -1):
        first = _unit_offset(layer_sizes, l - 1)
        da = row_deltas[first : first + layer_sizes[l]]
        Wt = _transposed_view(weights_t, layer_sizes, w_offsets, l)
        _dense_row_backward(da, Wt, row_deltas[first + layer_sizes[l] : first + layer_sizes[l] + layer_sizes[l + 1]])
        activation_row_backward(da, row_units[first : first + layer_sizes[l]], activation)
    return value, correct


# ---------------------------------------------------------------------------------------------
# 2. First layer: gradient and step for a block of its output units


@njit(**KERNEL_OPTIONS)
def _first_layer_step(
    params, grad, deltas, layer_sizes, w_offsets, b_offsets, lr, first, last,
    batch, indptr, indices, values, input_scale,
):
    """Of z[B,H] = x[batch] @ W[D,H] + b[H], for the units first:last only:
    dW[D,H] = x^T @ dz[B,H] over the nonzero inputs, W -= lr * dW, b -= lr * sum_B dz."""
    W, b = layer_views(params, layer_sizes, w_offsets, b_offsets, 0)
    dW, db = layer_views(grad, layer_sizes, w_offsets, b_offsets, 0)
    width = last - first
    for j in range(dW.shape[0]):
        dW[j, first:last] = 0
    for r in range(batch.shape[0]):
        dz = deltas[r, first:last]
        for p in range(indptr[batch[r]], indptr[batch[r] + 1]):
            x = values[p] * input_scale
            g = dW[indices[p], first:last]
            for k in range(width):
                g[k] += x * dz[k]
    for j in range(W.shape[0]):
        w = W[j, first:last]
        g = dW[j, first:last]
        for k in range(width):
            w[k] -= lr * g[k]
    if db.shape[0] > 0:
        g = db[first:last]
        g[:] = 0
        for r in range(batch.shape[0]):
            dz = deltas[r, first:last]
            for k in range(width):
                g[k] += dz[k]
        w = b[first:last]
        for k in range(width):
            w[k] -= lr * g[k]


# ---------------------------------------------------------------------------------------------
# 3. and 4. Layers after the first


@njit(**KERNEL_OPTIONS)
def _dense_unit_gradient(dWt_row, params, units, deltas, a_column, dz_column, b_index, lr):
    """dWt_row[D] = sum_B dz[B, unit] * a[B, D] (one row of dW^T) and, when b_index >= 0,
    b[unit] -= lr * sum_B dz[B, unit]."""
    dWt_row[:] = 0
    db = dWt_row.dtype.type(0)
    for r in range(deltas.shape[0]):
        d = deltas[r, dz_column]
        a = units[r, a_column : a_column + dWt_row.shape[0]]
        for j in range(dWt_row.shape[0]):
            dWt_row[j] += d * a[j]
        db += d
    if b_index >= 0:
        params[b_index] -= lr * db


@njit(**KERNEL_OPTIONS)
def _dense_input_step(W_row, Wt, dWt, lr, unit):
    """W[unit, :] -= lr * dW^T[:, unit], and the same entries of W^T updated to match."""
    for k in range(W_row.shape[0]):
        w = W_row[k] - lr * dWt[k, unit]
        W_row[k] = w
        Wt[k, unit] = w


@njit(**PARALLEL_OPTIONS)
def _refresh_transposed(weights_t, params, layer_sizes, w_offsets, b_offsets):
    """weights_t = W_l^T for every layer l >= 1 (params may have changed between calls)."""
    for l in range(1, layer_sizes.shape[0] - 1):
        W, _ = layer_views(params, layer_sizes, w_offsets, b_offsets, l)
        Wt = _transposed_view(weights_t, layer_sizes, w_offsets, l)
        for j in prange(W.shape[0]):
            for k in range(W.shape[1]):
                Wt[k, j] = W[j, k]


@njit(**KERNEL_OPTIONS)
def _first_layer_blocks(n_units):
    """How many column blocks the first layer's gradient is split into: blocks of about
    _BLOCK_UNITS units, their number a multiple of 4 so that 1, 2 or 4 threads get equal
    shares, and none narrower than _MIN_BLOCK_UNITS. Any split gives the same result."""
    blocks = -(-n_units // _BLOCK_UNITS)
    blocks = -(-blocks // 4) * 4
    return max(1, min(blocks, n_units // _MIN_BLOCK_UNITS))


# ---------------------------------------------------------------------------------------------
# The chunk


@njit(**PARALLEL_OPTIONS)
def minibatch_sgd_chunk(
    params, stats, grad, weights_t, units, deltas, losses, hits,
    layer_sizes, w_offsets, b_offsets, activation, loss, learning_rate, batch_size,
    indptr, indices, values, input_scale, labels, targets, order, start, stop,
):
    """Mini-batch SGD over order[start:stop] (arguments and method: module docstring)."""
    n_layers = layer_sizes.shape[0] - 1
    lr = params.dtype.type(learning_rate)
    scale = params.dtype.type(input_scale)
    n_first = layer_sizes[1]
    blocks = _first_layer_blocks(n_first)
    _refresh_transposed(weights_t, params, layer_sizes, w_offsets, b_offsets)

    loss_sum = 0.0
    n_correct = 0
    n_trained = 0
    nonfinite_at = -1
    for batch_start in range(start, stop, batch_size):
        batch = order[batch_start : min(batch_start + batch_size, stop)]
        n_rows = batch.shape[0]
        rows = params.dtype.type(n_rows)

        for r in prange(n_rows):
            sample = batch[r]
            first, last = indptr[sample], indptr[sample + 1]
            losses[r], hits[r] = _sample_forward_backward(
                units[r], deltas[r], params, weights_t, layer_sizes, w_offsets, b_offsets,
                activation, loss, rows, indices[first:last], values[first:last], scale,
                labels, targets, sample,
            )

        for r in range(n_rows):
            if not np.isfinite(losses[r]):
                nonfinite_at = batch_start - start + r
                break
        if nonfinite_at >= 0:
            break
        for r in range(n_rows):
            loss_sum += losses[r]
            n_correct += hits[r]
        n_trained += n_rows

        for block in prange(blocks):
            _first_layer_step(
                params, grad, deltas[:n_rows], layer_sizes, w_offsets, b_offsets, lr,
                n_first * block // blocks, n_first * (block + 1) // blocks,
                batch, indptr, indices, values, scale,
            )
        for l in range(1, n_layers):
            W, _ = layer_views(params, layer_sizes, w_offsets, b_offsets, l)
            Wt = _transposed_view(weights_t, layer_sizes, w_offsets, l)
            dWt = _transposed_view(grad, layer_sizes, w_offsets, l)
            a_column = _unit_offset(layer_sizes, l - 1)
            dz_column = _unit_offset(layer_sizes, l)
            for k in prange(layer_sizes[l + 1]):
                b_index = b_offsets[l] + k if b_offsets[l] >= 0 else -1
                _dense_unit_gradient(
                    dWt[k], params, units[:n_rows], deltas[:n_rows], a_column, dz_column + k, b_index, lr
                )
            for j in prange(layer_sizes[l]):
                _dense_input_step(W[j], Wt, dWt, lr, j)

    stats[LOSS_SUM] = loss_sum
    stats[N_CORRECT] = n_correct
    stats[N_TRAINED] = n_trained
    stats[NONFINITE_AT] = nonfinite_at
