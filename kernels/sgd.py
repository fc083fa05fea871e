"""SGD: the fused per-sample (batch size 1) training loop.

``sgd_persample_chunk`` trains on a whole chunk of samples (a few thousand, or an epoch) in one
compiled call: for each sample ``i = order[s]``, ``s = start .. stop-1``: forward pass, loss,
backward pass, then ``params -= lr * grad`` at once. Any depth and layer sizes, every
activation and loss code (``activation.py``, ``loss.py``), float32 or float64. The first layer
reads its input as sparse rows (``linear.sparse_rows``), so zero pixels cost nothing.

``sgd_persample_chunk_threaded`` computes the same thing with several threads when the network
has exactly one hidden layer: each thread owns a block of hidden units, and per sample the
threads exchange their shares of the output logits once (see its docstring).

Shared arguments of the per-sample trainers (N samples, L dense layers, K = layer_sizes[-1]):

    params       float32/float64 [P]  flat parameters (``codes.parameter_layout``), updated in
                                      place
    stats        float64 [3]          written: (sum of the samples' losses, number correct,
                                      number of samples trained). Each loss is taken in the
                                      forward pass, before that sample's update. If the
                                      count is short of stop - start, sample order[start + count]
                                      had a non-finite loss; training stopped before its update.
    layer_sizes  int64 [L+1]          n_0 (inputs) .. n_L (outputs)
    w_offsets    int64 [L]            from ``codes.parameter_layout``
    b_offsets    int64 [L]            -1 for layers without bias
    activation   int                  hidden activation code (activation.py)
    loss         int                  output/loss code (loss.py)
    learning_rate float
    indptr       int64 [N+1]          input rows in CSR form, from ``linear.sparse_rows``
    indices      int32 [nnz]
    values       uint8 or float [nnz]
    input_scale  float                an input is values[p] * input_scale: 1/255 for uint8
                                      pixels, 1.0 for float data
    labels       int64 [N]            class labels (loss codes 0, 1), else may be empty
    targets      params.dtype [N, K]  targets (loss codes 2, 3), else may be empty [0, K]
    order        int64 [M]            sample indices, e.g. a permutation of range(N)
    start, stop  int                  train on order[start:stop]
"""

import numba
import numpy as np
from numba import njit

from ._config import INLINE_OPTIONS, KERNEL_OPTIONS
from ._threads import (
    abort_flag,
    available_cores,
    cache_aligned,
    mailbox,
    post,
    posted,
    run_workers,
    wait_posted,
)
from .activation import activation_row_backward, activation_row_forward
from .linear import (
    fill_bias,
    dense_row_backward_update,
    dense_row_forward,
    layer_views,
    sparse_row_forward,
    sparse_row_update,
)
from .loss import loss_row_backward, loss_row_forward


# ---------------------------------------------------------------------------------------------
# One thread


@njit(**INLINE_OPTIONS)
def _transpose(out, a):
    """out[n, m] = a[m, n]^T."""
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            out[j, i] = a[i, j]


@njit(**KERNEL_OPTIONS)
def sgd_persample_chunk(
    params, stats, layer_sizes, w_offsets, b_offsets, activation, loss, learning_rate,
    indptr, indices, values, input_scale, labels, targets, order, start, stop,
):
    """Per-sample SGD over order[start:stop], one thread (arguments: module docstring)."""
    n_layers = layer_sizes.shape[0] - 1
    lr = params.dtype.type(learning_rate)
    scale = params.dtype.type(input_scale)

    # Layers after the first are trained on output-major copies Wt = W^T (see linear.py),
    # made here once and copied back at the end: packed[wt_offsets[l]:wt_offsets[l+1]].
    wt_offsets = np.zeros(n_layers + 1, np.int64)
    for l in range(1, n_layers):
        wt_offsets[l + 1] = wt_offsets[l] + layer_sizes[l] * layer_sizes[l + 1]
    packed = np.empty(wt_offsets[n_layers], params.dtype)
    for l in range(1, n_layers):
        W, _ = layer_views(params, layer_sizes, w_offsets, b_offsets, l)
        _transpose(packed[wt_offsets[l] : wt_offsets[l + 1]].reshape(W.shape[1], W.shape[0]), W)

    # acts[a_offsets[l]:a_offsets[l+1]]: output of layer l (activated for hidden layers,
    # logits for the last); deltas: d loss / d (pre-activation) of the same units.
    a_offsets = np.zeros(n_layers + 1, np.int64)
    for l in range(n_layers):
        a_offsets[l + 1] = a_offsets[l] + layer_sizes[l + 1]
    acts = np.empty(a_offsets[n_layers], params.dtype)
    deltas = np.empty(a_offsets[n_layers], params.dtype)
    p = np.empty(layer_sizes[n_layers], params.dtype)

    loss_sum = 0.0
    n_correct = 0
    n_trained = 0
    for s in range(start, stop):
        i = order[s]
        nz_indices = indices[indptr[i] : indptr[i + 1]]
        nz_values = values[indptr[i] : indptr[i + 1]]

        W, b = layer_views(params, layer_sizes, w_offsets, b_offsets, 0)
        sparse_row_forward(acts[a_offsets[0] : a_offsets[1]], W, b, nz_indices, nz_values, scale)
        for l in range(1, n_layers):
            a = acts[a_offsets[l - 1] : a_offsets[l]]
            activation_row_forward(a, activation)
            _, b = layer_views(params, layer_sizes, w_offsets, b_offsets, l)
            Wt = packed[wt_offsets[l] : wt_offsets[l + 1]].reshape(layer_sizes[l + 1], layer_sizes[l])
            dense_row_forward(acts[a_offsets[l] : a_offsets[l + 1]], Wt, b, a)

        z = acts[a_offsets[n_layers - 1] :]
        value, correct = loss_row_forward(p, z, labels, targets, i, loss)
        if not np.isfinite(value):
            break
        loss_sum += value
        n_correct += correct
        n_trained += 1

        dz = deltas[a_offsets[n_layers - 1] :]
        loss_row_backward(dz, p, labels, targets, i, loss)
        for l in range(n_layers - 1, 0, -1):
            _, b = layer_views(params, layer_sizes, w_offsets, b_offsets, l)
            Wt = packed[wt_offsets[l] : wt_offsets[l + 1]].reshape(layer_sizes[l + 1], layer_sizes[l])
            a = acts[a_offsets[l - 1] : a_offsets[l]]
            da = deltas[a_offsets[l - 1] : a_offsets[l]]
            dense_row_backward_update(da, Wt, b, deltas[a_offsets[l] : a_offsets[l + 1]], a, lr)
            activation_row_backward(da, a, activation)
        W, b = layer_views(params, layer_sizes, w_offsets, b_offsets, 0)
        sparse_row_update(W, b, deltas[a_offsets[0] : a_offsets[1]], nz_indices, nz_values, scale, lr)

    for l in range(1, n_layers):
        W, _ = layer_views(params, layer_sizes, w_offsets, b_offsets, l)
        _transpose(W, packed[wt_offsets[l] : wt_offsets[l + 1]].reshape(W.shape[1], W.shape[0]))
    stats[0] = loss_sum
    stats[1] = n_correct
    stats[2] = n_trained


# ---------------------------------------------------------------------------------------------
# Several threads (the runtime: ``_threads.py``)

_MIN_UNITS_PER_THREAD = 16


@njit(**INLINE_OPTIONS)
def _gather_logits(z, b, counts, slots, abort, step):
    """z[K] = b + the shares of the logits every thread posted at ``step``, added in thread
    order so that every thread gets bit-identical logits. False if told to abort."""
    fill_bias(z, b)
    for thread in range(slots.shape[1]):
        if not wait_posted(counts, slots, abort, thread, step):
            return False
        share = posted(slots, thread, step)
        for k in range(z.shape[0]):
            z[k] += share[k]
    return True


@njit(**KERNEL_OPTIONS)
def _split_hidden_worker(
    stats, W1, b1, W2t, b2, counts, slots, abort, thread, activation, loss, learning_rate,
    indptr, indices, values, input_scale, labels, targets, order, start, stop,
):
    """One thread's share of per-sample SGD on a network with one hidden layer whose hidden
    units are split between T threads.

    Private to this thread: W1[n0,Ht], b1[Ht] (or empty) and W2t[K,Ht] (output-major) for its
    Ht hidden units; b2[K], its own copy of the output bias (every thread makes the same
    updates to it); stats[3]. Shared: the mailbox (``counts``, ``slots``: see ``_threads.py``),
    in which at step s - start every thread posts its share of sample s's logits (K values);
    abort[0] != 0 makes waiting threads return.
    """
    n_out = W2t.shape[0]
    lr = W1.dtype.type(learning_rate)
    scale = W1.dtype.type(input_scale)
    h = np.empty(W1.shape[1], W1.dtype)
    dh = np.empty(W1.shape[1], W1.dtype)
    z_share = np.empty(n_out, W1.dtype)
    z = np.empty(n_out, W1.dtype)
    p = np.empty(n_out, W1.dtype)
    dz = np.empty(n_out, W1.dtype)

    loss_sum = 0.0
    n_correct = 0
    n_trained = 0
    for s in range(start, stop):
        i = order[s]
        first, last = indptr[i], indptr[i + 1]
        sparse_row_forward(h, W1, b1, indices[first:last], values[first:last], scale)
        activation_row_forward(h, activation)
        dense_row_forward(z_share, W2t, b2[:0], h)
        post(counts, slots, thread, s - start, z_share)
        if not _gather_logits(z, b2, counts, slots, abort, s - start):
            return

        value, correct = loss_row_forward(p, z, labels, targets, i, loss)
        if not np.isfinite(value):
            break  # every thread has the same loss, so all stop here
        loss_sum += value
        n_correct += correct
        n_trained += 1

        loss_row_backward(dz, p, labels, targets, i, loss)
        dense_row_backward_update(dh, W2t, b2, dz, h, lr)
        activation_row_backward(dh, h, activation)
        sparse_row_update(W1, b1, dh, indices[first:last], values[first:last], scale, lr)

    stats[0] = loss_sum
    stats[1] = n_correct
    stats[2] = n_trained


def usable_threads(threads, layer_sizes):
    """How many threads ``sgd_persample_chunk_threaded`` really uses for this network."""
    if threads <= 1 or len(layer_sizes) != 3 or numba.config.DISABLE_JIT:
        return 1
    return max(1, min(int(threads), available_cores(), int(layer_sizes[1]) // _MIN_UNITS_PER_THREAD))


def _split_units(n_units, threads):
    """Contiguous [first, last) unit ranges, as equal as possible in multiples of 16 units."""
    blocks = -(-n_units // _MIN_UNITS_PER_THREAD)
    edges = [min(n_units, (blocks * t // threads) * _MIN_UNITS_PER_THREAD) for t in range(threads + 1)]
    return list(zip(edges[:-1], edges[1:]))


def sgd_persample_chunk_threaded(
    params, stats, layer_sizes, w_offsets, b_offsets, activation, loss, learning_rate,
    indptr, indices, values, input_scale, labels, targets, order, start, stop, threads=2,
):
    """Per-sample SGD over order[start:stop] on ``threads`` threads (arguments: module docstring).

    Same result as ``sgd_persample_chunk`` up to float rounding (the output logits are summed
    in a different order), and deterministic: two runs give bit-identical parameters. Not
    Hogwild: each thread owns a block of hidden units (its columns of W1, rows of W2 and
    entries of b1), repacked into contiguous private arrays for the chunk and copied back at
    its end; per sample, the threads add up their partial logits after one spin barrier.

    Runs on one thread (``sgd_persample_chunk``) when the network does not have exactly one
    hidden layer, when fewer cores than threads are available to this process (then it uses
    as many as there are), when fewer than 16 hidden units per thread would remain, and under
    NUMBA_DISABLE_JIT. ``usable_threads`` tells the count in advance. The threads wait for each
    other by spinning and yield the CPU after a few microseconds, so an oversubscribed machine
    slows training down but cannot deadlock it. A failure in a helper thread is raised as
    ``_threads.WorkerFailed`` (a RuntimeError) after its traceback has been printed.
    """
    args = (labels, targets, order, start, stop)
    threads = usable_threads(threads, layer_sizes)
    if threads == 1:
        sgd_persample_chunk(params, stats, layer_sizes, w_offsets, b_offsets, activation, loss,
                            learning_rate, indptr, indices, values, input_scale, *args)
        return

    n_in, n_hidden, n_out = (int(n) for n in layer_sizes)
    W1 = params[w_offsets[0] : w_offsets[0] + n_in * n_hidden].reshape(n_in, n_hidden)
    W2 = params[w_offsets[1] : w_offsets[1] + n_hidden * n_out].reshape(n_hidden, n_out)
    b1 = params[b_offsets[0] : b_offsets[0] + n_hidden] if b_offsets[0] >= 0 else params[:0]
    b2 = params[b_offsets[1] : b_offsets[1] + n_out] if b_offsets[1] >= 0 else params[:0]

    units = _split_units(n_hidden, threads)
    # per thread: (stats, W1 block, b1 block, W2t block, copy of b2), the worker's first arguments
    blocks = [
        tuple(
            cache_aligned(a)
            for a in (np.zeros(3), W1[:, first:last], b1[first:last], W2[first:last].T, b2)
        )
        for first, last in units
    ]
    counts, slots = mailbox(threads, n_out, params.dtype)
    abort = abort_flag()

    def work(thread):
        _split_hidden_worker(*blocks[thread], counts, slots, abort, thread, activation, loss,
                             learning_rate, indptr, indices, values, input_scale, *args)

    if not run_workers(work, threads, abort):  # the system refused a thread: train on this one
        sgd_persample_chunk(params, stats, layer_sizes, w_offsets, b_offsets, activation, loss,
                            learning_rate, indptr, indices, values, input_scale, *args)
        return

    for (first, last), (_, W1_block, b1_block, W2t_block, _) in zip(units, blocks):
        W1[:, first:last] = W1_block
        b1[first:last] = b1_block
        W2[first:last] = W2t_block.T
    thread0_stats, _, _, _, thread0_b2 = blocks[0]
    b2[:] = thread0_b2  # all threads hold the same b2
    stats[:] = thread0_stats
