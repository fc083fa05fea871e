"""Per-sample SGD on one thread in the two-thread kernel's halves (issue 11's "auto", a lead): what
would it cost one thread to train to the very bits of ``threads=2``?

    FASTMLP_DATA=../shared/data/mnist python bench/experiments/persample_halves.py [ROUNDS]

(Session 68 built the second variant into ``sgd_persample_chunk``: ``threads="auto"`` now moves
between one and two threads per sample where the layer allows. Before it,) ``threads="auto"``
trained per sample on one thread, because two threads give other last bits (each
thread's share of the logits is summed apart, and a 64-unit half runs other register paths than
128 units), so switching between counts as the machine's load changes would make the result
depend on timing. ``halves`` here is one thread doing what the two threads do, half after half
(each half's first-layer columns, hidden units and output rows in arrays of its own, the logits
the bias plus half 0's share plus half 1's, as ``_gather_logits`` adds them): if it gives the
two-thread kernel's bits at close to the one-thread kernel's speed, a one-thread kernel built that
way would let "auto" move between one and two threads with the same results. ``whole first layer``:
the one-thread kernel's first layer (all 128 units in one pass) with only the output layer in
halves (the logits summed as the bias, then half 0's share, then half 1's). 784-128-10 sigmoid,
float32, lr 0.1, one epoch of the 60,000 MNIST images a round (a fixed shuffled order), the plain
one-thread kernel, the two-thread kernel, ``halves`` and ``whole first layer`` in turn; prints each
round's us a sample and which trained to the two-thread kernel's bits.
"""

import sys
import time

import numpy as np
from numba import njit

from fastmlp import load_mnist
from fastmlp.backends import make_backend
from fastmlp.kernels import sgd
from fastmlp.kernels._config import KERNEL_OPTIONS
from fastmlp.kernels.activation import activation_row_backward, activation_row_forward
from fastmlp.kernels.linear import (dense_row_backward_update, dense_row_forward, fill_bias, sparse_row_forward,
                                    sparse_row_update)
from fastmlp.kernels.loss import loss_row_backward, loss_row_forward
from fastmlp.network import Architecture, init_params


@njit(**KERNEL_OPTIONS)
def halves(W1a, W1b, b1a, b1b, W2ta, W2tb, b2, activation, loss, lr, indptr, indices, values, scale, labels, targets,
           order):
    ha = np.empty(W1a.shape[1], W1a.dtype)
    hb = np.empty(W1b.shape[1], W1a.dtype)
    da = np.empty(W1a.shape[1], W1a.dtype)
    db = np.empty(W1b.shape[1], W1a.dtype)
    n_out = b2.shape[0]
    za = np.empty(n_out, W1a.dtype)
    zb = np.empty(n_out, W1a.dtype)
    z = np.empty(n_out, W1a.dtype)
    p = np.empty(n_out, W1a.dtype)
    dz = np.empty(n_out, W1a.dtype)
    lr = W1a.dtype.type(lr)
    scale = W1a.dtype.type(scale)  # as the kernels cast it: x = pixel * scale in the parameters' dtype
    for s in range(order.shape[0]):
        i = order[s]
        first, last = indptr[i], indptr[i + 1]
        sparse_row_forward(ha, W1a, b1a, indices[first:last], values[first:last], scale)
        activation_row_forward(ha, activation)
        dense_row_forward(za, W2ta, b2[:0], ha)
        sparse_row_forward(hb, W1b, b1b, indices[first:last], values[first:last], scale)
        activation_row_forward(hb, activation)
        dense_row_forward(zb, W2tb, b2[:0], hb)
        fill_bias(z, b2)
        for k in range(n_out):
            z[k] += za[k]
        for k in range(n_out):
            z[k] += zb[k]
        loss_row_forward(p, z, labels, targets, i, loss)
        loss_row_backward(dz, p, labels, targets, i, loss)
        dense_row_backward_update(da, W2ta, b2, dz, ha, lr)
        dense_row_backward_update(db, W2tb, b2[:0], dz, hb, lr)
        activation_row_backward(da, ha, activation)
        activation_row_backward(db, hb, activation)
        sparse_row_update(W1a, b1a, da, indices[first:last], values[first:last], scale, lr)
        sparse_row_update(W1b, b1b, db, indices[first:last], values[first:last], scale, lr)


@njit(**KERNEL_OPTIONS)
def whole_first_layer(W1, b1, W2ta, W2tb, b2, activation, loss, lr, indptr, indices, values, scale, labels, targets,
                      order):
    """``halves`` with the first layer in one pass of its 128 units (the one-thread kernel's), the
    output layer in the halves: whether the first layer's paths at 64 and 128 units agree."""
    n_half = W2ta.shape[1]
    h = np.empty(W1.shape[1], W1.dtype)
    d = np.empty(W1.shape[1], W1.dtype)
    n_out = b2.shape[0]
    za = np.empty(n_out, W1.dtype)
    zb = np.empty(n_out, W1.dtype)
    z = np.empty(n_out, W1.dtype)
    p = np.empty(n_out, W1.dtype)
    dz = np.empty(n_out, W1.dtype)
    lr = W1.dtype.type(lr)
    scale = W1.dtype.type(scale)
    for s in range(order.shape[0]):
        i = order[s]
        first, last = indptr[i], indptr[i + 1]
        sparse_row_forward(h, W1, b1, indices[first:last], values[first:last], scale)
        activation_row_forward(h, activation)
        dense_row_forward(za, W2ta, b2[:0], h[:n_half])
        dense_row_forward(zb, W2tb, b2[:0], h[n_half:])
        fill_bias(z, b2)
        for k in range(n_out):
            z[k] += za[k]
        for k in range(n_out):
            z[k] += zb[k]
        loss_row_forward(p, z, labels, targets, i, loss)
        loss_row_backward(dz, p, labels, targets, i, loss)
        dense_row_backward_update(d[:n_half], W2ta, b2, dz, h[:n_half], lr)
        dense_row_backward_update(d[n_half:], W2tb, b2[:0], dz, h[n_half:], lr)
        activation_row_backward(d, h, activation)
        sparse_row_update(W1, b1, d, indices[first:last], values[first:last], scale, lr)


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    X, y, _, _ = load_mnist()
    arch = Architecture([784, 128, 10], "sigmoid", "cross_entropy", dtype="float32")
    start = init_params(arch, "xavier", seed=0)
    backend = make_backend("numba", arch, 2)
    data = backend.prepare(X)
    labels = y.astype(np.int64)
    targets = np.empty((0, 10), np.float32)
    order = np.random.default_rng(0).permutation(len(y)).astype(np.int64)
    sizes, w_off, b_off = backend.layer_sizes, backend.w_offsets, backend.b_offsets
    stats = np.zeros(3)
    args = (arch.activation_code, arch.loss_code, 0.1, data.indptr, data.indices, data.values, data.input_scale,
            labels, targets, order, 0, len(order))

    def one_thread():
        params = start.copy()
        tic = time.perf_counter()
        sgd.sgd_persample_chunk(params, stats, sizes, w_off, b_off, *args)
        return time.perf_counter() - tic, params

    def two_threads():
        params = start.copy()
        tic = time.perf_counter()
        sgd.sgd_persample_chunk_threaded(params, stats, sizes, w_off, b_off, *args, threads=2)
        return time.perf_counter() - tic, params

    def in_halves():
        params = start.copy()
        W1 = params[w_off[0]: w_off[0] + 784 * 128].reshape(784, 128)
        W2 = params[w_off[1]: w_off[1] + 128 * 10].reshape(128, 10)
        b1 = params[b_off[0]: b_off[0] + 128]
        b2 = params[b_off[1]: b_off[1] + 10]
        blocks = [np.ascontiguousarray(a) for a in (W1[:, :64], W1[:, 64:], b1[:64], b1[64:], W2[:64].T, W2[64:].T)]
        tic = time.perf_counter()
        halves(*blocks, b2, arch.activation_code, arch.loss_code, 0.1, data.indptr, data.indices, data.values,
               data.input_scale, labels, targets, order)
        seconds = time.perf_counter() - tic
        W1[:, :64], W1[:, 64:], b1[:64], b1[64:] = blocks[0], blocks[1], blocks[2], blocks[3]
        W2[:64], W2[64:] = blocks[4].T, blocks[5].T
        return seconds, params

    def whole():
        params = start.copy()
        W1 = params[w_off[0]: w_off[0] + 784 * 128].reshape(784, 128)
        W2 = params[w_off[1]: w_off[1] + 128 * 10].reshape(128, 10)
        b1 = params[b_off[0]: b_off[0] + 128]
        b2 = params[b_off[1]: b_off[1] + 10]
        W2ta, W2tb = np.ascontiguousarray(W2[:64].T), np.ascontiguousarray(W2[64:].T)
        tic = time.perf_counter()
        whole_first_layer(W1, b1, W2ta, W2tb, b2, arch.activation_code, arch.loss_code, 0.1, data.indptr,
                          data.indices, data.values, data.input_scale, labels, targets, order)
        seconds = time.perf_counter() - tic
        W2[:64], W2[64:] = W2ta.T, W2tb.T
        return seconds, params

    for case in (one_thread, two_threads, in_halves, whole):
        case()  # compile
    n = len(order)
    for r in range(rounds):
        (t1, p1), (t2, p2), (th, ph), (tw, pw) = one_thread(), two_threads(), in_halves(), whole()
        print(f"us a sample: one thread {t1 / n * 1e6:.3f}  halves {th / n * 1e6:.3f} ({t1 / th:.3f}x)  "
              f"whole first layer {tw / n * 1e6:.3f} ({t1 / tw:.3f}x)  two threads {t2 / n * 1e6:.3f}; "
              f"= two threads bit for bit: halves {np.array_equal(ph, p2)}, whole first layer "
              f"{np.array_equal(pw, p2)}, one thread {np.array_equal(p1, p2)}", flush=True)


if __name__ == "__main__":
    main()
