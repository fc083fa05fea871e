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
                                      The plain kernels (``sgd_persample_chunk`` and threaded)
                                      add the losses on to stats[0] as they come: a chunk
                                      trained in several calls sums them as one call does (the
                                      caller zeroes it for a new sum); ``persample_chunk``
                                      writes it.
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
    sample_weights params.dtype [N]   (``persample_chunk`` only) each sample's weight; empty: all 1
    order        int64 [M]            sample indices, e.g. a permutation of range(N)
    start, stop  int                  train on order[start:stop]
"""

import threading
import types

import numba
import numpy as np
from numba import njit

from ._config import KERNEL_OPTIONS
from ._threads import (
    abort_flag,
    aligned_empty,
    available_cores,
    mailbox,
    post,
    posted,
    run_workers,
    wait_posted,
)
from .activation import activation_row_backward, activation_row_forward
from .linear import (
    FIRST_LAYER,
    _row,
    borrowed,
    keep_alive,
    fill_bias,
    dense_row_backward_update,
    dense_row_forward,
    layer_views,
    prefetch_sample,
    sparse_row_forward,
    sparse_row_update,
    vector_empty,
)
from .loss import loss_row_backward, loss_row_forward, sample_weight, weigh_row
from .codes import DROPOUT as DROPOUT_HYPER, DROPOUT_SEED, INPUT_DROPOUT as INPUT_DROPOUT_HYPER
from .codes import NESTEROV as NESTEROV_HYPER, SAMPLES, STEPS
from .optimizer import ADAM as ADAM_KIND, MOMENTUM as MOMENTUM_KIND
from .optimizer import COUPLED_DECAY as CD_SLOT, DECOUPLED_DECAY as DD_SLOT, LR as LR_SLOT, MU as MU_SLOT
from .optimizer import NESTEROV as NESTEROV_SLOT
from .optimizer import (
    DECAY,
    NO_DECAY,
    N_STEP_SCALARS,
    apply_step,
    drop_threshold_of,
    flushed,
    kept,
    momentum_update,
    plain_update,
    step_kind,
    step_scalars,
)


# ---------------------------------------------------------------------------------------------
# One thread


# The fewest hidden units a thread of ``sgd_persample_chunk_threaded`` gets; its blocks of units
# are multiples of this (``_split_units``), and so are the one-thread kernel's halves.
_MIN_UNITS_PER_THREAD = 16


@njit(**KERNEL_OPTIONS)
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
    """Per-sample SGD over order[start:stop], one thread (arguments: module docstring).

    On a network with one hidden layer of 32 units or more (``logits_in_halves``) the output
    logits are summed as the two-thread kernel sums them: the bias, then the share of the first
    half of the hidden units, then the second's (``_gather_logits``; the halves split where
    ``_split_units`` splits them between two threads), each share by ``dense_row_forward`` over
    its half. Every other step computes each unit as two threads' halves do (the first layer's
    paths take each unit's sum, and each weight's step, with the same operations in the same
    order, whatever the block: ``linear.sparse_row_forward``), so this kernel and ``threads=2``
    train to the same bits, and ``threads="auto"`` may move between one and two threads from
    chunk to chunk without changing a result. It costs one thread nothing measurable
    (``bench/ab_kernels.py``: BENCHMARKS.md, session 68 at 784-128-10; session 69 at 784-100-10,
    784-300-10 and 784-800-10, within the noise: perhaps 1-3% at 100 units)."""
    # views without reference counts (linear.borrowed), of the arrays made here too (kept alive
    # to the end): each view made per sample or per nonzero input row would count atomically
    params = borrowed(params)
    indptr, indices, values, order = borrowed(indptr), borrowed(indices), borrowed(values), borrowed(order)
    labels, targets = borrowed(labels), borrowed(targets)
    n_layers = layer_sizes.shape[0] - 1
    lr = params.dtype.type(learning_rate)
    scale = params.dtype.type(input_scale)
    n_out = layer_sizes[n_layers]

    # The last layer's inputs in parts: [edges[p], edges[p + 1]) (two halves, or one part).
    edges = np.zeros(3, np.int64)
    edges[1] = layer_sizes[n_layers - 1]
    edges[2] = edges[1]
    n_parts = 1
    if n_layers == 2 and layer_sizes[1] >= 2 * _MIN_UNITS_PER_THREAD:
        n_parts = 2
        # where _split_units(units, 2) splits them between two threads
        blocks = (layer_sizes[1] + _MIN_UNITS_PER_THREAD - 1) // _MIN_UNITS_PER_THREAD
        edges[1] = (blocks // 2) * _MIN_UNITS_PER_THREAD

    # Layers after the first are trained on output-major copies Wt = W^T (see linear.py),
    # made here once and copied back at the end: packed[wt_offsets[l]:wt_offsets[l+1]]; the
    # last layer's as one block per part of its inputs (the part's K x n rows, one after another).
    wt_offsets = np.zeros(n_layers + 1, np.int64)
    for l in range(1, n_layers):
        wt_offsets[l + 1] = wt_offsets[l] + layer_sizes[l] * layer_sizes[l + 1]
    packed = vector_empty(wt_offsets[n_layers], params)
    for l in range(1, n_layers):
        W, _ = layer_views(params, layer_sizes, w_offsets, b_offsets, l)
        parts = n_parts if l == n_layers - 1 else 1
        for q in range(parts):
            lo, hi = (edges[q], edges[q + 1]) if parts == 2 else (0, W.shape[0])
            first = wt_offsets[l] + lo * W.shape[1]
            _transpose(packed[first : first + (hi - lo) * W.shape[1]].reshape(W.shape[1], hi - lo), W[lo:hi])

    # acts[a_offsets[l]:a_offsets[l+1]]: output of layer l (activated for hidden layers,
    # logits for the last); deltas: d loss / d (pre-activation) of the same units. After the
    # logits in acts: one part's share of them (the halves).
    a_offsets = np.zeros(n_layers + 1, np.int64)
    for l in range(n_layers):
        a_offsets[l + 1] = a_offsets[l] + layer_sizes[l + 1]
    acts_owner = vector_empty(a_offsets[n_layers] + n_out, params)
    deltas_owner = vector_empty(a_offsets[n_layers], params)
    p = np.empty(n_out, params.dtype)
    acts, deltas, packed_view = borrowed(acts_owner), borrowed(deltas_owner), borrowed(packed)
    share = acts[a_offsets[n_layers] : a_offsets[n_layers] + n_out]

    loss_sum = stats[0]  # added on to (module docstring)
    n_correct = 0
    n_trained = 0
    for s in range(start, stop):
        i = order[s]
        prefetch_sample(indptr, indices, values, labels, targets, order, s, stop)
        nz_indices = indices[indptr[i] : indptr[i + 1]]
        nz_values = values[indptr[i] : indptr[i + 1]]

        W, b = layer_views(params, layer_sizes, w_offsets, b_offsets, FIRST_LAYER)
        sparse_row_forward(acts[a_offsets[0] : a_offsets[1]], W, b, nz_indices, nz_values, scale)
        for l in range(1, n_layers):
            a = acts[a_offsets[l - 1] : a_offsets[l]]
            activation_row_forward(a, activation)
            _, b = layer_views(params, layer_sizes, w_offsets, b_offsets, l)
            if l == n_layers - 1 and n_parts == 2:
                z = acts[a_offsets[l] : a_offsets[l + 1]]
                fill_bias(z, b)
                for q in range(2):
                    lo, hi = edges[q], edges[q + 1]
                    first = wt_offsets[l] + lo * n_out
                    Wt = packed_view[first : first + (hi - lo) * n_out].reshape(n_out, hi - lo)
                    dense_row_forward(share, Wt, b[:0], a[lo:hi])
                    for k in range(n_out):
                        z[k] += share[k]
            else:
                Wt = packed_view[wt_offsets[l] : wt_offsets[l + 1]].reshape(layer_sizes[l + 1], layer_sizes[l])
                dense_row_forward(acts[a_offsets[l] : a_offsets[l + 1]], Wt, b, a)

        z = acts[a_offsets[n_layers - 1] : a_offsets[n_layers]]
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
            a = acts[a_offsets[l - 1] : a_offsets[l]]
            da = deltas[a_offsets[l - 1] : a_offsets[l]]
            if l == n_layers - 1 and n_parts == 2:
                for q in range(2):
                    lo, hi = edges[q], edges[q + 1]
                    first = wt_offsets[l] + lo * n_out
                    Wt = packed_view[first : first + (hi - lo) * n_out].reshape(n_out, hi - lo)
                    # the bias's step once, with the first half's (each thread steps its own copy)
                    dense_row_backward_update(da[lo:hi], Wt, b if q == 0 else b[:0], dz, a[lo:hi], lr)
            else:
                Wt = packed_view[wt_offsets[l] : wt_offsets[l + 1]].reshape(layer_sizes[l + 1], layer_sizes[l])
                dense_row_backward_update(da, Wt, b, deltas[a_offsets[l] : a_offsets[l + 1]], a, lr)
            activation_row_backward(da, a, activation)
        W, b = layer_views(params, layer_sizes, w_offsets, b_offsets, FIRST_LAYER)
        sparse_row_update(W, b, deltas[a_offsets[0] : a_offsets[1]], nz_indices, nz_values, scale, lr)

    for l in range(1, n_layers):
        W, _ = layer_views(params, layer_sizes, w_offsets, b_offsets, l)
        parts = n_parts if l == n_layers - 1 else 1
        for q in range(parts):
            lo, hi = (edges[q], edges[q + 1]) if parts == 2 else (0, W.shape[0])
            first = wt_offsets[l] + lo * W.shape[1]
            _transpose(W[lo:hi], packed[first : first + (hi - lo) * W.shape[1]].reshape(W.shape[1], hi - lo))
    stats[0] = loss_sum
    stats[1] = n_correct
    stats[2] = n_trained
    keep_alive(acts_owner, deltas_owner)


def _no_prefetch(indptr, indices, values, labels, targets, order, s, stop):
    """``prefetch_sample`` in the interpreter: a hint to the caches, with no effect on results."""


def _no_keep_alive(*arrays):
    """``keep_alive`` in the interpreter, where ``borrowed`` returns the array itself."""


def _interpreted_persample():
    """``sgd_persample_chunk`` run by the Python interpreter: its loop in Python, its helpers the
    compiled ones, called with the types the compiled kernel passes them (tests/test_prewarm.py),
    no prefetching and no keep_alive (its borrowed views are the arrays themselves), its aligned
    arrays made by NumPy. It compiles nothing of its own and trains to the compiled kernel's bits
    (tests/test_adaptive.py). A cold
    first plain per-sample fit trains on it while a second process compiles the kernel
    (``fastmlp._prewarm``): about 12 helper calls per sample, 0.22x the compiled kernel's speed
    in a fit (``bench/interpreted.py speed``), for the seconds that compile takes."""
    function = getattr(sgd_persample_chunk, "py_func", sgd_persample_chunk)
    names = dict(function.__globals__, prefetch_sample=_no_prefetch, keep_alive=_no_keep_alive,
                 vector_empty=getattr(vector_empty, "py_func", vector_empty))
    return types.FunctionType(function.__code__, names, "sgd_persample_chunk_interpreted")


sgd_persample_chunk_interpreted = _interpreted_persample()


# ---------------------------------------------------------------------------------------------
# One thread, any optimizer (momentum, Adam, weight decay, dropout: ``optimizer.py``)


@njit(**KERNEL_OPTIONS)
def _flush(x):
    return 0.0 if abs(x) < 1e-30 else x


@njit(**KERNEL_OPTIONS)
def _catch_up_powers(powers, hyper, kind, sc):
    """powers[k] = (a, b, c, d) of A^k, k = 0 .. len-1, where A maps a first-layer row's
    (w, v) over one step in which its input was zero (so its data gradient was 0)::

        v' = mu v - lr cd w;   w' = a1 w + b1 v
        a1 = 1 - lr cd - dd, b1 = mu              (momentum)
        a1 = 1 - lr cd (1 + mu) - dd, b1 = mu^2   (Nesterov)

    with cd the coupled decay and dd = lr * the decoupled one (``optimizer.step_scalars``);
    mu = 0 and no v for plain SGD. Float64, by repeated multiplication."""
    lr = float(sc[LR_SLOT])
    mu = float(sc[MU_SLOT]) if kind == MOMENTUM_KIND else 0.0
    cd = float(sc[CD_SLOT])
    dd = float(sc[DD_SLOT])
    if hyper[NESTEROV_HYPER] != 0:
        a1, b1 = 1.0 - lr * cd * (1.0 + mu) - dd, mu * mu
    else:
        a1, b1 = 1.0 - lr * cd - dd, mu
    c1, d1 = -lr * cd, mu
    a, b, c, d = 1.0, 0.0, 0.0, 1.0
    for k in range(powers.shape[0]):
        powers[k, 0] = a
        powers[k, 1] = b
        powers[k, 2] = c
        powers[k, 3] = d
        a, b, c, d = a1 * a + b1 * c, a1 * b + b1 * d, c1 * a + d1 * c, c1 * b + d1 * d
        # A factor below 1e-30 (mu^k after hundreds of idle steps) is taken as 0: it would
        # only leave subnormal velocities (under 1e-38 in float32), which x86 computes with
        # ~100 times slower microcode, for a change of the weights far below any tolerance.
        a, b, c, d = _flush(a), _flush(b), _flush(c), _flush(d)


@njit(**KERNEL_OPTIONS)
def _catch_up_row(w, slots, offset, power):
    """(w, v) <- A^k (w, v) elementwise for one first-layer row (v absent without momentum)."""
    a = w.dtype.type(power[0])
    if slots.shape[0] == 0:
        for i in range(w.shape[0]):
            w[i] = a * w[i]
        return
    b = w.dtype.type(power[1])
    c = w.dtype.type(power[2])
    d = w.dtype.type(power[3])
    v = slots[0, offset : offset + w.shape[0]]
    for i in range(w.shape[0]):
        wi = w[i]
        vi = v[i]
        w[i] = a * wi + b * vi
        v[i] = flushed(c * wi + d * vi)


@njit(**KERNEL_OPTIONS)
def _lazy_sparse_forward(z, W, b, slots, w0, kept_indices, kept_values, m, last, powers, step):
    """z[H] = b + sum_q x_q W[j_q] over the sample's kept inputs, each row j first brought up
    to step - 1 (A^k, see _catch_up_powers) in the same pass over it."""
    fill_bias(z, b)
    n_hidden = z.shape[0]
    momentum = slots.shape[0] > 0
    for q in range(m):
        j = kept_indices[q]
        x = kept_values[q]
        w = _row(W, j)
        k = step - 1 - last[j]
        if k == 0:
            for i in range(n_hidden):
                z[i] += x * w[i]
            continue
        last[j] = step - 1
        a = w.dtype.type(powers[k, 0])
        if momentum:
            bb = w.dtype.type(powers[k, 1])
            c = w.dtype.type(powers[k, 2])
            d = w.dtype.type(powers[k, 3])
            v = slots[0, w0 + j * n_hidden : w0 + (j + 1) * n_hidden]
            for i in range(n_hidden):
                wi = w[i]
                vi = v[i]
                wi_now = a * wi + bb * vi
                v[i] = flushed(c * wi + d * vi)
                w[i] = wi_now
                z[i] += x * wi_now
        else:
            for i in range(n_hidden):
                wi_now = a * w[i]
                w[i] = wi_now
                z[i] += x * wi_now


@njit(**KERNEL_OPTIONS)
def _lazy_sparse_step(W, slots, w0, kept_indices, kept_values, m, dz, last, step, kind, sc):
    """The optimizer's step (plain SGD or momentum, with weight decay) of the kept inputs'
    rows, whose gradient is x_q dz[H]; they are then up to date at ``step``."""
    n_hidden = dz.shape[0]
    lr = sc[LR_SLOT]
    cd = sc[CD_SLOT]
    dd = sc[DD_SLOT]
    mu = sc[MU_SLOT]
    nest = sc[NESTEROV_SLOT]
    if kind == MOMENTUM_KIND:
        V = slots[0, w0 : w0 + W.shape[0] * n_hidden].reshape(W.shape[0], n_hidden)
        for q in range(m):
            j = kept_indices[q]
            x = kept_values[q]
            w = _row(W, j)
            v = _row(V, j)
            last[j] = step
            # momentum_update's arithmetic, written out: one loop per form vectorises twice
            # as well as the shared blend
            if nest != 0:
                for i in range(n_hidden):
                    wi = w[i]
                    gi = x * dz[i] + cd * wi
                    vi = flushed(mu * v[i] - lr * gi)
                    v[i] = vi
                    w[i] = wi + (mu * vi - lr * gi) - dd * wi
            else:
                for i in range(n_hidden):
                    wi = w[i]
                    gi = x * dz[i] + cd * wi
                    vi = flushed(mu * v[i] - lr * gi)
                    v[i] = vi
                    w[i] = wi + vi - dd * wi
    else:
        for q in range(m):
            j = kept_indices[q]
            x = kept_values[q]
            w = _row(W, j)
            last[j] = step
            for i in range(n_hidden):
                w[i] = plain_update(w[i], x * dz[i], lr, cd, dd)


# Momentum and weight decay with no catch-up at all: modal coordinates. The idle map A is
# diagonalised once per call, A = P diag(lam) P^-1, and a row is stored as c, its modal
# coordinates at the call's start: the state after tau more steps is s = (w, v) = B_tau c with
# B_tau = P diag(lam^tau) (real forms below), so an idle step changes nothing stored, the forward
# pass reads w = alpha c1 + beta c2 with alpha, beta the same for every row, and a step with data
# gradient g adds gamma g to c. The stored coordinates grow like |lam|^-tau, so every ``period``
# steps they are renormalised (all rows, c <- Q B_tau c with Q = B_0^-1).
# The change of coordinates must be this well conditioned, else: catch-up. Its rounding errors
# grow with the condition number, about 2 / (1 - mu) without decay: 64 takes momentum up to
# ~0.97 (0.99 measured 6x the catch-up's error after 2,000 steps in float64).
MODAL_MAX_COND = 64.0
MODAL_MAX_GROWTH = 1e12  # |lam|^-tau (or |lam|^tau) at most this much before renormalising
MODAL_MAX_PERIOD = 1024
MODAL_MIN_PERIOD = 16


@njit(**KERNEL_OPTIONS)
def _modal_form(lam, P, gain, Q, hyper, kind, sc):
    """Fill lam [2], P [2, 2], gain [2] = P^-1 e (complex) and Q [2, 2] = B_0^-1 (real) for the
    first layer's idle map A of _catch_up_powers and the step's data-gradient input e
    (s' = A s + e g: e = (-lr, -lr), or (-lr (1 + mu), -lr) with Nesterov). Returns
    (period, pair): period 0 when the modal form is not usable (A nearly defective, or an
    eigenvalue so small that the coordinates would need renormalising every few steps);
    pair when the eigenvalues are a complex conjugate pair, whose c holds (Re, Im) of the
    first modal coordinate. Plain SGD (no velocity): one real mode, lam[0] = a1."""
    lr = float(sc[LR_SLOT])
    cd = float(sc[CD_SLOT])
    dd = float(sc[DD_SLOT])
    for i in range(2):
        for j in range(2):
            P[i, j] = 1.0 if i == j else 0.0
            Q[i, j] = 1.0 if i == j else 0.0
    if kind != MOMENTUM_KIND:
        lam[0] = 1.0 - lr * cd - dd
        lam[1] = 1.0
        gain[0] = -lr
        gain[1] = 0.0
        pair = False
        smallest = largest = abs(lam[0])
    else:
        mu = float(sc[MU_SLOT])
        if hyper[NESTEROV_HYPER] != 0:
            a1, b1, e0 = 1.0 - lr * cd * (1.0 + mu) - dd, mu * mu, -lr * (1.0 + mu)
        else:
            a1, b1, e0 = 1.0 - lr * cd - dd, mu, -lr
        c1, d1 = -lr * cd, mu
        disc = (a1 - d1) ** 2 + 4.0 * b1 * c1
        pair = disc < 0
        root = np.sqrt(complex(disc))
        lam[0] = (a1 + d1 + root) / 2
        lam[1] = (a1 + d1 - root) / 2
        P[0, 0] = b1
        P[0, 1] = b1
        P[1, 0] = lam[0] - a1
        P[1, 1] = lam[1] - a1
        det = P[0, 0] * P[1, 1] - P[0, 1] * P[1, 0]
        if abs(det) == 0:
            return 0, pair
        i00, i01, i10, i11 = P[1, 1] / det, -P[0, 1] / det, -P[1, 0] / det, P[0, 0] / det
        gain[0] = i00 * e0 + i01 * (-lr)
        gain[1] = i10 * e0 + i11 * (-lr)
        if pair:
            Q[0, 0], Q[0, 1], Q[1, 0], Q[1, 1] = i00.real, i01.real, i00.imag, i01.imag
        else:
            Q[0, 0], Q[0, 1], Q[1, 0], Q[1, 1] = i00.real, i01.real, i10.real, i11.real
        B = np.empty((2, 2))
        ones = np.empty(2, np.complex128)
        ones[:] = 1
        _modal_b(B, P, ones, pair)
        # sums written out: np.sum of an array expression compiles NumPy machinery (seconds of
        # a cold start, as np.ones and np.max below did)
        norm_b = np.sqrt(B[0, 0] * B[0, 0] + B[0, 1] * B[0, 1] + B[1, 0] * B[1, 0] + B[1, 1] * B[1, 1])
        norm_q = np.sqrt(Q[0, 0] * Q[0, 0] + Q[0, 1] * Q[0, 1] + Q[1, 0] * Q[1, 0] + Q[1, 1] * Q[1, 1])
        if norm_b * norm_q > MODAL_MAX_COND:
            return 0, pair
        smallest = min(abs(lam[0]), abs(lam[1]))
        largest = max(abs(lam[0]), abs(lam[1]))
    if smallest <= 0:
        return 0, pair
    rate = max(-np.log(smallest), np.log(largest), 1e-300)
    period = int(min(MODAL_MAX_PERIOD, np.log(MODAL_MAX_GROWTH) / rate))
    return (period if period >= MODAL_MIN_PERIOD else 0), pair


@njit(**KERNEL_OPTIONS)
def _modal_b(B, P, powers, pair):
    """B [2, 2] = B_tau, s = B_tau c, given powers = lam^tau."""
    for row in range(2):
        if pair:
            t = P[row, 0] * powers[0]
            B[row, 0] = 2 * t.real
            B[row, 1] = -2 * t.imag
        else:
            B[row, 0] = (P[row, 0] * powers[0]).real
            B[row, 1] = (P[row, 1] * powers[1]).real


@njit(**KERNEL_OPTIONS)
def _modal_gain(out, gain, lam, powers, pair):
    """out [2]: c += out * g is the step taking tau steps to tau + 1 (powers = lam^tau)."""
    if pair:
        t = gain[0] / (powers[0] * lam[0])
        out[0] = t.real
        out[1] = t.imag
    else:
        out[0] = (gain[0] / (powers[0] * lam[0])).real
        out[1] = (gain[1] / (powers[1] * lam[1])).real


@njit(**KERNEL_OPTIONS)
def _modal_apply(out_1, out_2, in_1, in_2, M):
    """(out_1, out_2) = M (in_1, in_2) elementwise over rows of H (one mode, in_2 and out_2
    empty: out_1 = M[0,0] in_1). Used as (c1 | c2) = Q (w, v) when the call starts and
    (w, v) = B_tau (c1 | c2) at its end, with c1, c2 the two halves of the packed rows (column
    views: scalar code, once a call); renormalising in place is _modal_renormalise's. out_2 (c2,
    or the velocity) below 1e-30 is flushed to 0 (``optimizer.flushed``), as the stored
    coordinates are when renormalised: an idle row's decaying mode would go subnormal."""
    dtype = out_1.dtype.type
    m00 = dtype(M[0, 0])
    if in_2.size == 0:
        for j in range(in_1.shape[0]):
            a = in_1[j]
            o = out_1[j]
            for i in range(a.shape[0]):
                o[i] = m00 * a[i]
        return
    m01 = dtype(M[0, 1])
    m10 = dtype(M[1, 0])
    m11 = dtype(M[1, 1])
    for j in range(in_1.shape[0]):
        r1 = in_1[j]
        r2 = in_2[j]
        o1 = out_1[j]
        o2 = out_2[j]
        for i in range(r1.shape[0]):
            a = r1[i]
            b = r2[i]
            o1[i] = m00 * a + m01 * b
            o2[i] = flushed(m10 * a + m11 * b)  # c2 or the velocity


@njit(**KERNEL_OPTIONS)
def _modal_renormalise(packed, M, n_hidden):
    """(c1 | c2) <- M (c1 | c2) in place, for every packed row (c1 its first n_hidden items, c2
    the next n_hidden; one mode: rows of n_hidden, c1 <- M[0, 0] c1). _modal_apply's in-place
    case on whole rows: there its in and out views may overlap, LLVM's runtime check fails, and
    the loop ran scalar (5% of a momentum epoch's kernel samples, ``bench/jit_perf.py``)."""
    dtype = packed.dtype.type
    m00 = dtype(M[0, 0])
    if packed.shape[1] == n_hidden:
        for j in range(packed.shape[0]):
            row = packed[j]
            for i in range(n_hidden):
                row[i] = m00 * row[i]
        return
    m01 = dtype(M[0, 1])
    m10 = dtype(M[1, 0])
    m11 = dtype(M[1, 1])
    for j in range(packed.shape[0]):
        row = packed[j]
        for i in range(n_hidden):
            a = row[i]
            b = row[n_hidden + i]
            row[i] = flushed(m00 * a + m01 * b)
            row[n_hidden + i] = flushed(m10 * a + m11 * b)


@njit(**KERNEL_OPTIONS)
def persample_chunk(
    params, stats, layer_sizes, w_offsets, b_offsets, activation, loss, hyper, slots, counters,
    indptr, indices, values, input_scale, labels, targets, sample_weights, order, start, stop,
):
    """Per-sample training over order[start:stop] with any optimizer, one thread (arguments:
    module docstring; ``hyper``, ``slots``, ``counters`` and ``sample_weights`` as in
    ``minibatch.py``).

    Each sample is one optimizer step. Momentum and weight decay keep the zero-pixel skipping
    exact: a first-layer row whose input was zero for k steps had a data gradient of 0 in
    each, so its k decay-and-velocity steps are the linear map A^k (``_catch_up_powers``).
    Where A is well conditioned (``_modal_form``: momentum up to ~0.97, any weight decay) the
    first layer is held in A's modal coordinates for the call, in which idle steps change
    nothing stored (see "modal coordinates" above); otherwise A^k is applied to a row when it
    is next read and, for every row, at the end of the call. Both equal the dense update to
    rounding (tests/test_modal.py). Adam has no such closed form (its step divides by
    sqrt(s)): it updates the whole first layer at every sample.
    """
    # views without reference counts (linear.borrowed) of the arguments and of the arrays made
    # here (kept alive to the end): an atomic count per view made, e.g. per nonzero input row
    params, slots, sample_weights = borrowed(params), borrowed(slots), borrowed(sample_weights)
    indptr, indices, values, order = borrowed(indptr), borrowed(indices), borrowed(values), borrowed(order)
    labels, targets = borrowed(labels), borrowed(targets)
    dtype = params.dtype.type
    n_layers = layer_sizes.shape[0] - 1
    n_inputs = layer_sizes[0]
    n_hidden = layer_sizes[1]
    scale = dtype(input_scale)
    kind = step_kind(hyper)
    sc = np.empty(N_STEP_SCALARS, params.dtype)
    first_step = counters[STEPS]
    first_sample = counters[SAMPLES]
    step_scalars(sc, hyper, first_step + 1)
    seed = counters[DROPOUT_SEED]
    input_threshold = np.uint64(drop_threshold_of(hyper[INPUT_DROPOUT_HYPER]))
    input_keep_scale = dtype(1.0) / dtype(1.0 - hyper[INPUT_DROPOUT_HYPER])
    threshold = np.uint64(drop_threshold_of(hyper[DROPOUT_HYPER]))
    keep_scale = dtype(1.0) / dtype(1.0 - hyper[DROPOUT_HYPER])
    lazy = kind != ADAM_KIND

    # Layers after the first on output-major copies (weights and their slots), as in
    # sgd_persample_chunk; the slots of layer 0 and of every bias stay in ``slots``.
    wt_offsets = np.zeros(n_layers + 1, np.int64)
    for l in range(1, n_layers):
        wt_offsets[l + 1] = wt_offsets[l] + layer_sizes[l] * layer_sizes[l + 1]
    packed_owner = vector_empty(wt_offsets[n_layers], params)
    packed_slots_owner = vector_empty(slots.shape[0] * wt_offsets[n_layers], params).reshape(
        slots.shape[0], wt_offsets[n_layers])
    packed, packed_slots = borrowed(packed_owner), borrowed(packed_slots_owner)
    for l in range(1, n_layers):
        W, _ = layer_views(params, layer_sizes, w_offsets, b_offsets, l)
        _transpose(packed[wt_offsets[l] : wt_offsets[l + 1]].reshape(W.shape[1], W.shape[0]), W)
        for slot in range(slots.shape[0]):
            S, _ = layer_views(slots[slot], layer_sizes, w_offsets, b_offsets, l)
            _transpose(packed_slots[slot, wt_offsets[l] : wt_offsets[l + 1]].reshape(W.shape[1], W.shape[0]), S)

    a_offsets = np.zeros(n_layers + 1, np.int64)
    for l in range(n_layers):
        a_offsets[l + 1] = a_offsets[l] + layer_sizes[l + 1]
    acts_owner = vector_empty(a_offsets[n_layers], params)  # outputs as the next layer reads them
    raw_owner = vector_empty(a_offsets[n_layers], params)  # hidden outputs before dropout
    deltas_owner = vector_empty(a_offsets[n_layers], params)
    acts, raw, deltas = borrowed(acts_owner), borrowed(raw_owner), borrowed(deltas_owner)
    p = np.empty(layer_sizes[n_layers], params.dtype)
    widest = 0
    for l in range(n_layers + 1):
        widest = max(widest, layer_sizes[l])
    row_grad_owner = vector_empty(widest, params)
    kept_indices_owner = np.empty(n_inputs, np.int32)
    kept_values_owner = np.empty(n_inputs, params.dtype)
    row_grad = borrowed(row_grad_owner)
    kept_indices, kept_values = borrowed(kept_indices_owner), borrowed(kept_values_owner)
    # lazy first layer: row j holds its value after step last[j]; Adam: a dense gradient
    lam = np.empty(2, np.complex128)
    P = np.empty((2, 2), np.complex128)
    gain = np.empty(2, np.complex128)
    Q = np.empty((2, 2), np.float64)
    period, pair = _modal_form(lam, P, gain, Q, hyper, kind, sc) if lazy else (0, False)
    modal = period > 0
    lazy = lazy and not modal
    last = np.full(n_inputs if lazy else 0, first_step, np.int64)
    powers = np.empty((stop - start + 1 if lazy else 0, 4), np.float64)
    if lazy:
        _catch_up_powers(powers, hyper, kind, sc)
    dense_grad_owner = vector_empty(0 if lazy or modal else n_inputs * n_hidden, params)
    dense_grad_owner[:] = 0
    dense_grad = borrowed(dense_grad_owner)

    W0, b0 = layer_views(params, layer_sizes, w_offsets, b_offsets, FIRST_LAYER)
    w0 = w_offsets[0]
    # the velocity's rows (none for plain SGD): modal reads them in and writes them back
    V0 = slots[0, w0 : w0 + n_inputs * n_hidden].reshape(n_inputs, n_hidden) if kind == MOMENTUM_KIND else W0[:0]
    # modal: the call's first layer as rows (c1 | c2) of 2H (H with one mode), so that the
    # forward sum and the step are the plain per-sample kernel's, over rows twice as long
    width = 2 * n_hidden if kind == MOMENTUM_KIND else n_hidden
    n_packed = n_inputs if modal else 0
    packed_first_owner = vector_empty(n_packed * width, params).reshape(n_packed, width)
    both_owner = vector_empty(width, params)
    packed_first, both = borrowed(packed_first_owner), borrowed(both_owner)
    tau_powers = np.empty(2, np.complex128)  # lam^tau
    tau_powers[:] = 1
    B = np.empty((2, 2))
    M = np.empty((2, 2))
    gamma = np.empty(2)
    tau = 0
    # the packed rows' halves: c1 then c2 (c2 empty with one mode, as V0 is)
    C1 = packed_first[:, :n_hidden]
    C2 = packed_first[:, n_hidden:]
    if modal:
        _modal_apply(C1, C2, W0, V0, Q)
    loss_sum = 0.0
    n_correct = 0
    n_trained = 0
    for s in range(start, stop):
        i = order[s]
        step = first_step + n_trained + 1
        sample_number = first_sample + n_trained
        if kind == ADAM_KIND:
            step_scalars(sc, hyper, step)
        prefetch_sample(indptr, indices, values, labels, targets, order, s, stop)

        # the sample's kept inputs, scaled (x = pixel / 255, / keep with input dropout); the
        # modal form reads the CSR rows directly when every input is kept (no copy)
        direct = modal and input_threshold == 0
        row_indices = indices[indptr[i] : indptr[i + 1]]
        row_values = values[indptr[i] : indptr[i + 1]]
        m = row_indices.shape[0] if direct else 0
        for q in range(indptr[i], indptr[i] if direct else indptr[i + 1]):
            x = values[q] * scale
            if input_threshold > 0:
                if not kept(seed, sample_number, indices[q], input_threshold):
                    continue
                x *= input_keep_scale
            kept_indices[m] = indices[q]
            kept_values[m] = x
            m += 1
        if modal:
            if tau == period:  # renormalise: c <- Q B_tau c, tau = 0
                _modal_b(B, P, tau_powers, pair)
                for r in range(2):  # M = Q B, written out: a matmul would make Numba need SciPy
                    for c in range(2):
                        M[r, c] = Q[r, 0] * B[0, c] + Q[r, 1] * B[1, c]
                _modal_renormalise(packed_first, M, n_hidden)
                tau = 0
                tau_powers[:] = 1
            _modal_b(B, P, tau_powers, pair)
            if direct:
                sparse_row_forward(both, packed_first, b0[:0], row_indices, row_values, scale)
            else:
                sparse_row_forward(both, packed_first, b0[:0], kept_indices[:m], kept_values[:m], dtype(1.0))
            z = acts[: a_offsets[1]]
            alpha = dtype(B[0, 0])
            if width > n_hidden:
                beta = dtype(B[0, 1])
                for k in range(n_hidden):
                    z[k] = alpha * both[k] + beta * both[n_hidden + k]
            else:
                for k in range(n_hidden):
                    z[k] = alpha * both[k]
            for k in range(b0.shape[0]):
                z[k] += b0[k]
        elif lazy:
            _lazy_sparse_forward(acts[: a_offsets[1]], W0, b0, slots, w0, kept_indices, kept_values, m, last,
                                 powers, step)
        else:
            sparse_row_forward(acts[: a_offsets[1]], W0, b0, kept_indices[:m], kept_values[:m], dtype(1.0))
        for l in range(1, n_layers):
            a = acts[a_offsets[l - 1] : a_offsets[l]]
            activation_row_forward(a, activation)
            if threshold > 0:
                first_unit = n_inputs + a_offsets[l - 1]
                for k in range(a.shape[0]):
                    # a loop, not raw[...] = a: an array-to-array assignment compiles Numba's
                    # shape-error message, 2.6 s of this kernel's cold start (2026-12-02)
                    raw[a_offsets[l - 1] + k] = a[k]
                for k in range(a.shape[0]):
                    a[k] = a[k] * keep_scale if kept(seed, sample_number, first_unit + k, threshold) else 0
            _, b = layer_views(params, layer_sizes, w_offsets, b_offsets, l)
            Wt = packed[wt_offsets[l] : wt_offsets[l + 1]].reshape(layer_sizes[l + 1], layer_sizes[l])
            dense_row_forward(acts[a_offsets[l] : a_offsets[l + 1]], Wt, b, a)

        z = acts[a_offsets[n_layers - 1] :]
        value, correct = loss_row_forward(p, z, labels, targets, i, loss)
        weight = sample_weight(sample_weights, i)
        if sample_weights.shape[0] > 0:
            value *= weight
        if not np.isfinite(value):
            break
        loss_sum += value
        n_correct += correct
        n_trained += 1

        dz = deltas[a_offsets[n_layers - 1] :]
        loss_row_backward(dz, p, labels, targets, i, loss)
        if sample_weights.shape[0] > 0:
            weigh_row(dz, weight)
        for l in range(n_layers - 1, 0, -1):
            _, b = layer_views(params, layer_sizes, w_offsets, b_offsets, l)
            n_in = layer_sizes[l]
            Wt = packed[wt_offsets[l] : wt_offsets[l + 1]].reshape(layer_sizes[l + 1], n_in)
            a = acts[a_offsets[l - 1] : a_offsets[l]]
            da = deltas[a_offsets[l - 1] : a_offsets[l]]
            dz_l = deltas[a_offsets[l] : a_offsets[l + 1]]
            da[:] = 0  # da = Wt^T dz with the weights before the step
            for k in range(dz_l.shape[0]):
                d = dz_l[k]
                w = Wt[k]
                for j in range(n_in):
                    da[j] += d * w[j]
            if kind == MOMENTUM_KIND:  # the gradient row is not stored (6% of a momentum epoch)
                lr, mu, nest = sc[LR_SLOT], sc[MU_SLOT], sc[NESTEROV_SLOT]
                cd, dd = sc[CD_SLOT], sc[DD_SLOT]
                for k in range(dz_l.shape[0]):
                    d = dz_l[k]
                    w = Wt[k]
                    offset = wt_offsets[l] + k * n_in
                    v = packed_slots[0, offset : offset + n_in]
                    for j in range(n_in):
                        w[j], v[j] = momentum_update(w[j], d * a[j], v[j], lr, mu, nest, cd, dd)
            else:
                g = row_grad[:n_in]
                for k in range(dz_l.shape[0]):
                    d = dz_l[k]
                    for j in range(n_in):
                        g[j] = d * a[j]
                    apply_step(Wt[k], g, packed_slots, wt_offsets[l] + k * n_in, kind, sc, DECAY)
            if b.shape[0] > 0:
                apply_step(b, dz_l, slots, b_offsets[l], kind, sc, NO_DECAY)
            if threshold > 0:
                first_unit = n_inputs + a_offsets[l - 1]
                for k in range(da.shape[0]):
                    da[k] = da[k] * keep_scale if kept(seed, sample_number, first_unit + k, threshold) else 0
                activation_row_backward(da, raw[a_offsets[l - 1] : a_offsets[l]], activation)
            else:
                activation_row_backward(da, a, activation)

        dz0 = deltas[: a_offsets[1]]
        if modal:
            _modal_gain(gamma, gain, lam, tau_powers, pair)
            g1 = dtype(-gamma[0])
            g2 = dtype(-gamma[1])
            for k in range(n_hidden):
                both[k] = g1 * dz0[k]
            if width > n_hidden:
                for k in range(n_hidden):
                    both[n_hidden + k] = g2 * dz0[k]
            # c += gamma x dz, as the plain kernel's step w -= 1 * x * (-gamma dz)
            if direct:
                sparse_row_update(packed_first, b0[:0], both, row_indices, row_values, scale, dtype(1.0))
            else:
                sparse_row_update(packed_first, b0[:0], both, kept_indices[:m], kept_values[:m], dtype(1.0), dtype(1.0))
            tau += 1
            for r in range(2):
                tau_powers[r] *= lam[r]
        elif lazy:
            _lazy_sparse_step(W0, slots, w0, kept_indices, kept_values, m, dz0, last, step, kind, sc)
        else:
            for q in range(m):
                j = kept_indices[q]
                x = kept_values[q]
                g = dense_grad[j * n_hidden : (j + 1) * n_hidden]
                for k in range(n_hidden):
                    g[k] = x * dz0[k]
            apply_step(params[w0 : w0 + n_inputs * n_hidden], dense_grad, slots, w0, kind, sc, DECAY)
            for q in range(m):
                j = kept_indices[q]
                dense_grad[j * n_hidden : (j + 1) * n_hidden] = 0
        if b0.shape[0] > 0:
            apply_step(b0, dz0, slots, b_offsets[0], kind, sc, NO_DECAY)

    end_step = first_step + n_trained
    if modal:  # back to (w, v)
        _modal_b(B, P, tau_powers, pair)
        _modal_apply(W0, V0, C1, C2, B)
    if lazy:  # every row up to the last step taken
        for j in range(n_inputs):
            if last[j] != end_step:
                _catch_up_row(W0[j], slots, w0 + j * n_hidden, powers[end_step - last[j]])
    for l in range(1, n_layers):
        W, _ = layer_views(params, layer_sizes, w_offsets, b_offsets, l)
        _transpose(W, packed[wt_offsets[l] : wt_offsets[l + 1]].reshape(W.shape[1], W.shape[0]))
        for slot in range(slots.shape[0]):
            S, _ = layer_views(slots[slot], layer_sizes, w_offsets, b_offsets, l)
            _transpose(S, packed_slots[slot, wt_offsets[l] : wt_offsets[l + 1]].reshape(W.shape[1], W.shape[0]))
    counters[STEPS] = end_step
    counters[SAMPLES] = first_sample + n_trained
    stats[0] = loss_sum
    stats[1] = n_correct
    stats[2] = n_trained
    keep_alive(packed_owner, packed_slots_owner, acts_owner, raw_owner, deltas_owner, row_grad_owner,
               kept_indices_owner, kept_values_owner, dense_grad_owner, packed_first_owner, both_owner)


# The general kernel's helpers that a cold fit compiles last: Numba compiles a kernel's helpers
# as its typing meets them, in the order of the source (``python bench/compile_events.py
# --momentum 0.9``). A second process compiles these meanwhile (``fastmlp._prewarm``, plan
# "general"), so that the fit finds them in the cache when it gets there. Not sample_weight:
# called from Python it returns a Python float, and weigh_row would then compile for float64.
LATE_HELPERS = (
    "sparse_row_forward", "_lazy_sparse_forward", "activation_row_forward", "dense_row_forward",
    "loss_row_forward", "loss_row_backward", "weigh_row", "apply_step",
    "activation_row_backward", "_modal_gain", "sparse_row_update", "_lazy_sparse_step",
    "_catch_up_row",
)


def persample_chunk_partly_compiled(compiled=LATE_HELPERS):
    """``persample_chunk`` run by the interpreter, calling the compiled helpers named in
    ``compiled`` and running every other helper, and what those call, as Python: it compiles
    the named helpers only, with the types the compiled kernel passes them
    (tests/test_prewarm.py). Far too slow to train on: the second process of a cold general
    per-sample fit runs it on two samples."""
    return _in_python(persample_chunk, frozenset(compiled), {})


def _in_python(function, compiled, done):
    """``function`` (a Numba dispatcher, or Python) as a Python function whose global helpers
    are themselves in Python, except those named in ``compiled``; the one intrinsic those
    helpers call, ``mul_add``'s fused multiply-add, becomes its Python form."""
    from .optimizer import _python_mul_add, mul_add

    python = getattr(function, "py_func", function)
    if python in done:
        return done[python]
    names = dict(python.__globals__)
    result = types.FunctionType(python.__code__, names, python.__name__, python.__defaults__,
                                python.__closure__)
    done[python] = result
    for name, value in python.__globals__.items():
        if name in compiled:
            continue
        if isinstance(value, numba.core.registry.CPUDispatcher):
            names[name] = _in_python(value, compiled, done)
        elif value is mul_add:
            names[name] = _python_mul_add
    return result


# ---------------------------------------------------------------------------------------------
# Several threads (the runtime: ``_threads.py``)


@njit(**KERNEL_OPTIONS)
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
    # views without reference counts (linear.borrowed): the threads share the input arrays, and
    # the views of them made per sample would otherwise update one counter from every thread
    W1, b1, W2t, b2 = borrowed(W1), borrowed(b1), borrowed(W2t), borrowed(b2)
    indptr, indices, values, order = borrowed(indptr), borrowed(indices), borrowed(values), borrowed(order)
    labels, targets = borrowed(labels), borrowed(targets)
    n_out = W2t.shape[0]
    lr = W1.dtype.type(learning_rate)
    scale = W1.dtype.type(input_scale)
    h = np.empty(W1.shape[1], W1.dtype)
    dh = np.empty(W1.shape[1], W1.dtype)
    z_share = np.empty(n_out, W1.dtype)
    z = np.empty(n_out, W1.dtype)
    p = np.empty(n_out, W1.dtype)
    dz = np.empty(n_out, W1.dtype)

    loss_sum = stats[0]  # added on to (module docstring)
    n_correct = 0
    n_trained = 0
    for s in range(start, stop):
        i = order[s]
        prefetch_sample(indptr, indices, values, labels, targets, order, s, stop)
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


def logits_in_halves(layer_sizes):
    """Whether ``sgd_persample_chunk`` sums the logits in the two-thread kernel's halves (its
    docstring): one hidden layer, of at least two blocks of _MIN_UNITS_PER_THREAD units (the
    fewest a second thread gets: ``usable_threads``). There one and two threads train to the same
    bits (until session 69, only at multiples of eight 64-byte vectors of units: the first
    layer's other paths summed four inputs' terms before adding them)."""
    return len(layer_sizes) == 3 and int(layer_sizes[1]) >= 2 * _MIN_UNITS_PER_THREAD


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


_kept = threading.local()  # per calling thread: its last call's blocks (``_thread_blocks``)


def _thread_blocks(units, W1, b1, W2, b2):
    """Per thread of the split (``units``): (stats, its W1 block, b1 block, W2t block, a copy of
    b2), the worker's first arguments, each on cache lines of its own, filled from the
    parameters (stats zeroed). The arrays of the calling thread's previous call are reused where
    the shapes and dtype are the same: new ones cost 0.16 ms a call at 784-128-10 (the first
    touch of two fresh 200 KB blocks; AMD EPYC Zen 4), half of a call's cost of its own, and a
    per-sample chunk on two threads is one call. A thread-local: fits in several Python threads
    at once each keep their own."""
    parts = [(np.zeros(3), W1[:, first:last], b1[first:last], W2[first:last].T, b2) for first, last in units]
    key = tuple((a.shape, a.dtype.str) for part in parts for a in part)
    kept = getattr(_kept, "blocks", None)
    if kept is None or kept[0] != key:
        kept = _kept.blocks = (key, [tuple(aligned_empty(a.shape, a.dtype) for a in part) for part in parts])
    for part, block in zip(parts, kept[1]):
        for source, target in zip(part, block):
            target[...] = source
    return kept[1]


def sgd_persample_chunk_threaded(
    params, stats, layer_sizes, w_offsets, b_offsets, activation, loss, learning_rate,
    indptr, indices, values, input_scale, labels, targets, order, start, stop, threads=2,
):
    """Per-sample SGD over order[start:stop] on ``threads`` threads (arguments: module docstring).

    Deterministic (two runs give bit-identical parameters), and on two threads the very bits of
    ``sgd_persample_chunk``, which sums its logits in the two threads' halves
    (``logits_in_halves``: every network this runs on more than one thread); on three or more
    the same result up to float rounding (the output logits are summed in other parts). Not
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
    blocks = _thread_blocks(units, W1, b1, W2, b2)
    for block in blocks:
        block[0][0] = stats[0]  # the loss sum so far, added on to by each thread (every one alike)
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
