"""Where a mini-batch step's time goes: the compiled kernel's pieces, one thread, on MNIST.

    FASTMLP_DATA=../shared/data/mnist python bench/profile_minibatch.py \
        [--layers 784,500,150,10] [--activation relu] [--batch-size 1024] [--repeats 7] \
        [--optimizer sgd|adam] [--weight-decay 0] [--float-input]

Float32, plain SGD or Adam, a batch drawn at random from the first 20,000 training images (as
an epoch draws them); uint8 pixels, or with ``--float-input`` float32 pixels / 255 (what
scikit-learn users pass). Each piece of ``minibatch_sgd_chunk`` is timed on its own, over the whole batch,
the kernel's helpers called from small compiled loops (one call from Python per piece):

- sparse forward: the first layer's partial sums over the nonzero pixels (``_part_forward``);
- dense forward / dense backward: the later layers' products, a block of four rows at a time
  (``_dense_block_forward``, ``_dense_block_backward``);
- rest of step 2: ``_block_forward_backward`` less the two above (activations, loss, dz);
- sparse gradient: the first layer's weight gradient over the nonzero pixels, by the path the
  kernel takes (input by input, ``_part_gradient_by_input``, for rows wider than CSC_ROW_BYTES;
  else row by row, as ``_part_gradient`` adds it);
- dense gradient: the later layers' weight gradients (``_dense_part_gradient``);
- rest of the step: ``_part_gradient`` and ``_part_update`` less the two above (the parameter updates, biases);

then the kernel itself on eight batches. Each piece's microseconds per sample (median of the
repeats) and its GFLOP/s (its own FLOPs: 2 x nonzero pixels x H1 for each sparse piece,
2 x the later layers' weights for each dense one) against the float32 GEMM rate measured
in the same run (NumPy's BLAS, all its threads). The pieces run one after another on one
thread; the kernel runs them on all Numba threads (``--threads`` for the last line).
"""

from __future__ import annotations

import argparse
import json
import time

import numba
import numpy as np
from numba import njit

from fastmlp import optim
from fastmlp.backends import make_backend
from fastmlp.bench.machine import cpu_name, measure_gemm
from fastmlp.data import load_mnist
from fastmlp.kernels import minibatch as mb
from fastmlp.kernels.linear import FIRST_LAYER, layer_views
from fastmlp.network import Architecture, init_params

POOL = 20_000  # images the batch is drawn from


@njit
def sparse_forward(partials, spans, params, layer_sizes, w_offsets, b_offsets, batch, part_ptr, indices, values, scale):
    zero, no_dropout, one = np.int64(0), np.uint64(0), params.dtype.type(1)
    for part in range(mb.PARTS):
        mb._part_forward(partials, spans, params, layer_sizes, w_offsets, b_offsets, np.int64(part), batch,
                         part_ptr, indices, values, scale, zero, zero, no_dropout, one)


@njit
def forward_backward(units, raw, deltas, losses, hits, partials, params, weights_t, layer_sizes, w_offsets, b_offsets,
                     activation, loss, labels, targets, weights, batch):
    zero, no_dropout, one = np.int64(0), np.uint64(0), params.dtype.type(1)
    n = batch.shape[0]
    for r0 in range(0, n, mb.BLOCK):
        mb._block_forward_backward(units, raw, deltas, losses, hits, (np.int64(r0), np.int64(min(r0 + mb.BLOCK, n))),
                                   partials, params, weights_t, layer_sizes, w_offsets, b_offsets, activation, loss,
                                   params.dtype.type(n), labels, targets, weights, batch, zero, zero, no_dropout, one)


@njit
def dense_products(units, deltas, weights_t, layer_sizes, w_offsets, b_offsets, params, n_rows, backward):
    for l in range(1, layer_sizes.shape[0] - 1):
        first = mb._unit_offset(layer_sizes, l - 1)
        middle = first + layer_sizes[l]
        end = middle + layer_sizes[l + 1]
        Wt = mb._transposed_view(weights_t, layer_sizes, w_offsets, l)
        _, b = layer_views(params, layer_sizes, w_offsets, b_offsets, l)
        for r0 in range(0, n_rows, mb.BLOCK):
            rows = (np.int64(r0), np.int64(min(r0 + mb.BLOCK, n_rows)))
            if backward:
                mb._dense_block_backward(deltas, rows, first, middle, end, Wt)
            else:
                mb._dense_block_forward(units, rows, first, middle, end, Wt, b)


@njit
def sparse_gradient(grad, params, deltas, spans, layer_sizes, w_offsets, b_offsets, indices, values, scale):
    """The first layer's weight gradient as _part_gradient computes it without input dropout; dW
    zeroed after (as the step leaves it)."""
    dW, _ = layer_views(grad, layer_sizes, w_offsets, b_offsets, FIRST_LAYER)
    n_in, n_out = dW.shape
    padded = mb._padded_gradient(grad, params, n_in)
    if padded.shape[0] > 0:
        dW = padded
    zero, no_dropout, one = np.int64(0), np.uint64(0), params.dtype.type(1)
    for part in range(mb.PARTS):
        if _by_input(layer_sizes, params, deltas):
            mb._part_gradient_by_input(grad, deltas, spans, layer_sizes, w_offsets, b_offsets, np.int64(part), indices,
                                       values, scale, params, params[:0], False)
        else:
            mb._part_sparse_gradient(dW, n_out, deltas, spans, np.int64(part), indices, values, scale, zero, zero,
                                     no_dropout, one)
    dW[:] = 0


@njit
def _by_input(layer_sizes, params, deltas):
    """Whether the kernel adds this fit's first-layer weight gradient input by input (without
    input dropout; the chunk's ``wide`` test)."""
    return layer_sizes[1] * params.itemsize > mb.CSC_ROW_BYTES and deltas.shape[0] >= mb.CSC_ROWS


@njit
def dense_gradient(grad, units, deltas, layer_sizes, w_offsets):
    for l in range(1, layer_sizes.shape[0] - 1):
        dWt = mb._transposed_view(grad, layer_sizes, w_offsets, l)
        a_column = mb._unit_offset(layer_sizes, l - 1)
        dz_column = mb._unit_offset(layer_sizes, l)
        for part in range(mb.PARTS):
            first, last = mb._part_range(layer_sizes[l + 1], np.int64(part))
            mb._dense_part_gradient(dWt, units, deltas, a_column, dz_column, first, last, True)


@njit
def step(params, grad, weights_t, slots, slots_t, units, deltas, spans, layer_sizes, w_offsets, b_offsets, kind, sc,
         indices, values, scale, marks, steps):
    zero, no_dropout, one = np.int64(0), np.uint64(0), params.dtype.type(1)
    steps[0] += 1  # a new stamp for the marks of the sparse plain step (small batches)
    by_input = _by_input(layer_sizes, params, deltas)
    # the kernel's FUSED_STEP: the whole batch one sub-batch and one group of the input-by-input gradient
    n = deltas.shape[0]
    stepped = (by_input and kind == mb.PLAIN and sc[mb.COUPLED_DECAY] == 0 and sc[mb.DECOUPLED_DECAY] == 0
               and n <= mb.sub_batch_rows(layer_sizes[1], params.itemsize)
               and n <= mb.csc_group_rows(layer_sizes[1], params.itemsize))
    for part in range(mb.PARTS):
        if by_input:
            mb._part_gradient_by_input(grad, deltas, spans, layer_sizes, w_offsets, b_offsets, np.int64(part), indices,
                                       values, scale, params, sc, stepped)
        mb._part_gradient(grad, params, units, deltas, spans, layer_sizes, w_offsets, b_offsets, np.int64(part),
                          indices, values, scale, zero, zero, no_dropout, one, True, not by_input)
        mb._part_update(params, grad, weights_t, slots, slots_t, layer_sizes, w_offsets, b_offsets, kind, sc,
                        np.int64(part), spans, indices, marks, steps[0], stepped)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", default="784,500,150,10")
    parser.add_argument("--activation", default="relu")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=numba.config.NUMBA_NUM_THREADS, help="for the whole kernel's line")
    parser.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    parser.add_argument("--weight-decay", type=float, default=0.0, help="added to the gradient (scikit-learn's alpha)")
    parser.add_argument("--float-input", action="store_true", help="float32 pixels / 255 instead of uint8")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    layers = tuple(int(v) for v in args.layers.split(","))
    B = args.batch_size
    X, y, _, _ = load_mnist()
    arch = Architecture(layers, args.activation, "cross_entropy", dtype="float32")
    backend = make_backend("numba", arch, 1)
    params = init_params(arch, "he" if args.activation == "relu" else "xavier", seed=0)
    pixels = (X[:POOL] / 255.0).astype(np.float32) if args.float_input else X[:POOL]
    data = backend.prepare(pixels)
    labels = y[:POOL].astype(np.int64)
    rng = np.random.default_rng(0)
    order = rng.permutation(POOL).astype(np.int64)
    batch = order[:B]
    ls, wo, bo = backend.layer_sizes, backend.w_offsets, backend.b_offsets
    optimizer = optim.Optimizer(optimizer=args.optimizer, weight_decay=args.weight_decay)
    grad, weights_t, slots_t, partials, spans, units, raw, deltas, losses, hits = mb.minibatch_scratch(
        params, ls, B, optimizer.n_slots)
    # the pieces run over the whole batch (the kernel, a sub-batch at a time: mb.sub_batch_rows)
    partials = np.empty((mb.PARTS, B, ls[1]), params.dtype)
    slots = np.zeros((optimizer.n_slots, params.size), params.dtype)
    targets, weights = np.empty((0, layers[-1]), params.dtype), np.empty(0, params.dtype)
    hyper = optimizer.hyper(0.001 if args.optimizer == "adam" else 0.01)
    kind = mb.step_kind(hyper)
    sc = np.empty(mb.N_STEP_SCALARS, params.dtype)
    mb.step_scalars(sc, hyper, 1)
    scale = params.dtype.type(data.input_scale)
    mb._begin_chunk(grad, weights_t, slots_t, params, slots, ls, wo, bo)
    act, loss = arch.activation_code, arch.loss_code
    marks, steps = np.zeros(layers[0], np.int64), np.zeros(1, np.int64)

    pieces = {
        "sparse forward": lambda: sparse_forward(partials, spans, params, ls, wo, bo, batch, data.part_ptr, data.indices,
                                                 data.values, scale),
        "step 2 (forward, loss, backward)": lambda: forward_backward(
            units, raw, deltas, losses, hits, partials, params, weights_t, ls, wo, bo, act, loss, labels, targets,
            weights, batch),
        "dense forward": lambda: dense_products(units, deltas, weights_t, ls, wo, bo, params, B, False),
        "dense backward": lambda: dense_products(units, deltas, weights_t, ls, wo, bo, params, B, True),
        "step (gradients, updates)": lambda: step(params, grad, weights_t, slots, slots_t, units, deltas, spans, ls, wo,
                                                  bo, kind, sc, data.indices, data.values, scale, marks, steps),
        "sparse gradient": lambda: sparse_gradient(grad, params, deltas, spans, ls, wo, bo, data.indices, data.values,
                                                   scale),
        "dense gradient": lambda: dense_gradient(grad, units, deltas, ls, wo),
    }
    kernel_batches = 8
    stats = np.zeros(4)

    def kernel():
        numba.set_num_threads(args.threads)
        stats[0] = 0
        mb.minibatch_sgd_chunk(params, stats, grad, weights_t, slots_t, partials, spans, units, raw, deltas, losses,
                               hits, ls, wo, bo, act, loss, hyper, slots, np.zeros(3, np.int64), data.part_ptr,
                               data.indices, data.values, data.input_scale, labels, targets, weights, order, 0,
                               kernel_batches * B, B)
        mb._begin_chunk(grad, weights_t, slots_t, params, slots, ls, wo, bo)  # the scratch as the pieces expect it
        numba.set_num_threads(1)

    numba.set_num_threads(1)
    for run in list(pieces.values()) + [kernel]:
        run()  # compile
    for run in pieces.values():
        run()  # the kernel's batches changed params and scratch: fill partials, units, deltas again
    times = {name: [] for name in list(pieces) + ["kernel"]}
    for _ in range(args.repeats):
        for name, run in list(pieces.items()) + [("kernel", kernel)]:
            tic = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - tic)
    us = {name: float(np.median(t)) * 1e6 / (kernel_batches * B if name == "kernel" else B) for name, t in times.items()}

    nnz = float(np.mean(np.diff(data.indptr)[batch]))
    dense_weights = sum(layers[l] * layers[l + 1] for l in range(1, len(layers) - 1))
    flops = {"sparse forward": 2 * nnz * layers[1], "sparse gradient": 2 * nnz * layers[1],
             "dense forward": 2 * dense_weights, "dense backward": 2 * dense_weights,
             "dense gradient": 2 * dense_weights}
    gemm = measure_gemm()["gflops"]
    rows = [
        ("sparse forward", us["sparse forward"]),
        ("dense forward", us["dense forward"]),
        ("dense backward", us["dense backward"]),
        ("rest of step 2", us["step 2 (forward, loss, backward)"] - us["dense forward"] - us["dense backward"]),
        ("sparse gradient", us["sparse gradient"]),
        ("dense gradient", us["dense gradient"]),
        ("rest of the step", us["step (gradients, updates)"] - us["sparse gradient"] - us["dense gradient"]),
    ]
    total = us["sparse forward"] + us["step 2 (forward, loss, backward)"] + us["step (gradients, updates)"]
    report = {"cpu": cpu_name(), "layers": layers, "activation": args.activation, "batch_size": B,
              "optimizer": args.optimizer, "weight_decay": args.weight_decay, "float_input": args.float_input,
              "nonzero_pixels_per_sample": nnz, "gemm_gflops": gemm, "pieces_us_per_sample": dict(rows),
              "pieces_total_us_per_sample": total, "kernel_us_per_sample": us["kernel"], "kernel_threads": args.threads}
    if args.json:
        print(json.dumps(report))
        return
    recipe = "plain SGD" if args.optimizer == "sgd" else "Adam"
    recipe += f", weight decay {args.weight_decay:g}" if args.weight_decay else ""
    print(f"{report['cpu']}: {'-'.join(map(str, layers))} {args.activation}, batch {B}, float32, {recipe}, "
          f"{'float32' if args.float_input else 'uint8'} pixels, {nnz:.0f} nonzero per sample; "
          f"float32 GEMM {gemm:.0f} GFLOP/s")
    print(f"{'piece (one thread)':<22}{'us/sample':>10}{'share':>8}{'GFLOP/s':>9}{'% GEMM':>8}")
    for name, value in rows:
        rate = flops.get(name, 0) / (value * 1e3) if name in flops and value > 0 else None
        print(f"{name:<22}{value:>10.2f}{value / total:>8.0%}" + (f"{rate:>9.1f}{rate / gemm:>8.0%}" if rate else ""))
    print(f"{'pieces, one thread':<22}{total:>10.2f}")
    print(f"{f'kernel, {args.threads} thread(s)':<22}{us['kernel']:>10.2f}   ({kernel_batches} batches)")


if __name__ == "__main__":
    main()
