"""A batch's gradient without its step, and the step from a given gradient: data-parallel SGD.

``minibatch.py`` fuses each part's gradient with the optimizer step. Data-parallel training
(``fastmlp.distributed``) needs the two apart: every process computes the gradient of its
share of a global batch, the shares are summed across processes (MPI ``Allreduce``), and every
process then takes the same step. So:

    batch_gradient   grad[P] = (1 / batch_rows) * sum over r in rows of g_r, with g_r the
                     gradient of sample r's (weighted) loss at the current params, laid out as
                     params (``codes.parameter_layout``; W input-major); and the loss sum,
                     number correct and first non-finite loss of those rows.
    gradient_step    params, slots, counters after one optimizer step from a batch-mean
                     gradient (``optimizer.apply_step`` per layer; no decay on biases).

With ``batch_rows`` the global batch size, the sum of the processes' ``grad`` is the global
batch mean that ``minibatch_sgd_chunk`` steps with, so 1 process and N agree to rounding (the
sums run in another order). Dropout masks are keyed by the global sample number
(``first_sample`` + r: the row's position among the samples trained in the run), so N
processes draw the masks one process draws.

One thread, one sample at a time (this is the per-process work of a data-parallel run): the
forward and backward passes are ``minibatch``'s (``_part_forward`` over all parts, then
``_block_forward_backward``) on a scratch of one row, and each sample's gradient is added into
``grad`` at once. Arguments shared with ``minibatch_sgd_chunk`` mean the same there; the
scratch (``gradient_scratch``) is ``(weights_t, partials, spans, units, raw, deltas)`` for
batches of one row, allocated once per fit.
"""

import numpy as np
from numba import njit

from ._config import KERNEL_OPTIONS
from .codes import DROPOUT, DROPOUT_SEED, INPUT_DROPOUT, SAMPLES, STEPS
from .linear import FIRST_LAYER, layer_views
from .minibatch import (
    PARTS,
    _copy_transposed,
    _part_forward,
    _block_forward_backward,
    _transposed_view,
    _unit_offset,
    minibatch_scratch,
)
from .optimizer import DECAY, NO_DECAY, apply_step, drop_threshold_of, kept, step_kind, step_scalars

LOSS_SUM, N_CORRECT, NONFINITE_AT = range(3)  # slots of ``stats``


def gradient_scratch(params, layer_sizes, dropout=False):
    """The scratch of ``batch_gradient``: ``(weights_t, partials, spans, units, raw, deltas)``
    (``minibatch_scratch``'s for one row; ``raw`` is empty unless some dropout is on)."""
    _, weights_t, _, partials, spans, units, raw, deltas, _, _ = minibatch_scratch(params, layer_sizes, 1, 0, dropout)
    return weights_t, partials, spans, units, raw, deltas


@njit(**KERNEL_OPTIONS)
def batch_gradient(
    grad, stats, weights_t, partials, spans, units, raw, deltas,
    params, layer_sizes, w_offsets, b_offsets, activation, loss, hyper, counters,
    part_ptr, indices, values, input_scale, labels, targets, sample_weights,
    rows, first_sample, batch_rows,
):
    """grad[P] = (1 / batch_rows) * sum_{r in rows} g_r (overwritten), the per-sample gradients
    of the loss at params; stats float64 [3] written: (sum of the rows' losses, number correct,
    nonfinite_at). The sample rows[r] is the (first_sample + r)-th trained (its dropout masks).

    First layer z[B,H] = x[B,D] @ W[D,H] + b[H]: dW[j,:] += x[r,j] dz[r,:] over the nonzero
    (and kept) x, db += dz[r]; later layers dW_l[n_l, n_{l+1}] += a[r]^T dz_l[r], db_l += dz_l[r],
    with a the outputs the next layer read (after dropout). dz already holds the 1 / batch_rows.

    At the first non-finite loss the loop stops: nonfinite_at is its position in rows (-1 when
    there is none) and grad is incomplete, to be thrown away."""
    dtype = params.dtype.type
    scale = dtype(input_scale)
    rows_total = dtype(batch_rows)
    seed = counters[DROPOUT_SEED]
    input_threshold = np.uint64(drop_threshold_of(hyper[INPUT_DROPOUT]))
    input_keep_scale = dtype(1.0) / dtype(1.0 - hyper[INPUT_DROPOUT])
    threshold = np.uint64(drop_threshold_of(hyper[DROPOUT]))
    keep_scale = dtype(1.0) / dtype(1.0 - hyper[DROPOUT])
    n_layers = layer_sizes.shape[0] - 1
    for i in range(grad.shape[0]):
        grad[i] = 0
    for l in range(1, n_layers):
        W, _ = layer_views(params, layer_sizes, w_offsets, b_offsets, l)
        _copy_transposed(_transposed_view(weights_t, layer_sizes, w_offsets, l), W)
    dW, db = layer_views(grad, layer_sizes, w_offsets, b_offsets, FIRST_LAYER)
    n_first = dW.shape[1]

    loss_sum = 0.0
    n_correct = 0
    nonfinite_at = -1
    value_row = np.empty(1, params.dtype)
    correct_row = np.empty(1, np.int64)
    # rows (0, 1) as int64s, the type the mini-batch kernel passes: a literal (0, 1) would be a
    # type of its own, and _block_forward_backward (seconds of compile) would be compiled twice
    one_row = (np.int64(0), np.int64(1))
    for r in range(rows.shape[0]):
        sample = rows[r]
        sample_number = first_sample + r
        batch = rows[r : r + 1]
        for part in range(PARTS):
            _part_forward(
                partials, spans, params, layer_sizes, w_offsets, b_offsets, part, batch, part_ptr, indices, values,
                scale, seed, sample_number, input_threshold, input_keep_scale,
            )
        _block_forward_backward(
            units, raw, deltas, value_row, correct_row, one_row, partials, params, weights_t, layer_sizes, w_offsets,
            b_offsets, activation, loss, rows_total, labels, targets, sample_weights, batch, seed, sample_number,
            threshold, keep_scale,
        )
        value = value_row[0]
        correct = correct_row[0]
        if not np.isfinite(value):
            nonfinite_at = r
            break
        loss_sum += value
        n_correct += correct

        dz = deltas[0, :n_first]
        for p in range(part_ptr[sample * PARTS], part_ptr[(sample + 1) * PARTS]):
            x = values[p] * scale
            if input_threshold > 0:
                if not kept(seed, sample_number, indices[p], input_threshold):
                    continue
                x *= input_keep_scale
            g = dW[indices[p]]
            for k in range(n_first):
                g[k] += x * dz[k]
        if db.shape[0] > 0:
            for k in range(n_first):
                db[k] += dz[k]
        for l in range(1, n_layers):
            dWl, dbl = layer_views(grad, layer_sizes, w_offsets, b_offsets, l)
            a_column = _unit_offset(layer_sizes, l - 1)
            dz_column = _unit_offset(layer_sizes, l)
            n_out = dWl.shape[1]
            dz = deltas[0, dz_column : dz_column + n_out]
            for j in range(dWl.shape[0]):
                a = units[0, a_column + j]
                g = dWl[j]
                for k in range(n_out):
                    g[k] += a * dz[k]
            if dbl.shape[0] > 0:
                for k in range(n_out):
                    dbl[k] += dz[k]
    stats[LOSS_SUM] = loss_sum
    stats[N_CORRECT] = n_correct
    stats[NONFINITE_AT] = nonfinite_at


@njit(**KERNEL_OPTIONS)
def gradient_step(params, slots, counters, scalars, grad, layer_sizes, w_offsets, b_offsets, hyper, n_samples):
    """One optimizer step of params (and slots [S, P]) from the batch-mean gradient grad[P], as
    the step ``minibatch_sgd_chunk`` takes after each batch: step number counters[STEPS] + 1,
    weight decay on weights only. counters[STEPS] += 1 and counters[SAMPLES] += n_samples (the
    batch's rows); scalars float [N_STEP_SCALARS] is scratch."""
    kind = step_kind(hyper)
    counters[STEPS] += 1
    step_scalars(scalars, hyper, counters[STEPS])
    for l in range(layer_sizes.shape[0] - 1):
        W, b = layer_views(params, layer_sizes, w_offsets, b_offsets, l)
        _, db = layer_views(grad, layer_sizes, w_offsets, b_offsets, l)
        w0 = w_offsets[l]
        n = W.shape[0] * W.shape[1]
        apply_step(params[w0 : w0 + n], grad[w0 : w0 + n], slots, w0, kind, scalars, DECAY)
        if b.shape[0] > 0:
            apply_step(b, db, slots, b_offsets[l], kind, scalars, NO_DECAY)
    counters[SAMPLES] += n_samples
