"""How evenly step 1 of the mini-batch kernel splits between two threads (session 65).

Step 1 runs ``prange(PARTS)``: the first layer's inputs in PARTS = 4 blocks of equal rows
(pixels 0-195, 196-391, 392-587, 588-783), so that with two threads one takes parts 0 and 1 and
the other parts 2 and 3. MNIST's nonzero pixels are not spread evenly over them (about 15, 56,
56 and 23 a sample). This times each part's share of step 1 on one thread (its forward,
``_part_forward``; its gradient and step, ``_part_gradient`` + ``_part_update``) over batches
drawn from MNIST's first 20,000 images, and prints each part's ns per sample and the two threads'
shares of the whole: the slower thread's share above 0.5 is what the split costs step 1.

    FASTMLP_DATA=../shared/data/mnist python bench/experiments/part_balance.py [BATCH] [ROUNDS]

784-128-10 sigmoid, float32, plain SGD (a batch of at most ``sub_batch_rows`` rows: 256 here).
"""
import sys
import time
from pathlib import Path

import numpy as np
from numba import njit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import profile_minibatch as pm  # noqa: E402

from fastmlp import optim  # noqa: E402
from fastmlp.backends import make_backend  # noqa: E402
from fastmlp.bench.machine import cpu_name  # noqa: E402
from fastmlp.data import load_mnist  # noqa: E402
from fastmlp.kernels import minibatch as mb  # noqa: E402
from fastmlp.network import Architecture, init_params  # noqa: E402


@njit
def forward(part, partials, spans, params, ls, wo, bo, batch, part_ptr, indices, values, scale):
    zero, no_dropout, one = np.int64(0), np.uint64(0), params.dtype.type(1)
    mb._part_forward(partials, spans, params, ls, wo, bo, part, batch, part_ptr, indices, values, scale, zero, zero,
                     no_dropout, one)


@njit
def step(part, params, grad, weights_t, slots, slots_t, units, deltas, spans, ls, wo, bo, kind, sc, indices, values,
         scale, marks, steps):
    zero, no_dropout, one = np.int64(0), np.uint64(0), params.dtype.type(1)
    steps[0] += 1
    mb._part_gradient(grad, params, units, deltas, spans, ls, wo, bo, part, indices, values, scale, zero, zero,
                      no_dropout, one, True, True)
    mb._part_update(params, grad, weights_t, slots, slots_t, ls, wo, bo, kind, sc, part, spans, indices, marks,
                    steps[0], False)


def main():
    batch_size = int(sys.argv[1]) if len(sys.argv) > 1 else 128
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    X, y, _, _ = load_mnist()
    arch = Architecture((784, 128, 10), "sigmoid", "cross_entropy", dtype="float32")
    backend = make_backend("numba", arch, 1)
    params = init_params(arch, "xavier", seed=0)
    data = backend.prepare(X[:20_000])
    labels = y[:20_000].astype(np.int64)
    ls, wo, bo = backend.layer_sizes, backend.w_offsets, backend.b_offsets
    if batch_size > mb.sub_batch_rows(ls[1], params.itemsize):
        raise SystemExit(f"batch {batch_size}: at most {mb.sub_batch_rows(ls[1], params.itemsize)} rows (one sub-batch)")
    grad, weights_t, slots_t, partials, spans, units, raw, deltas, losses, hits = mb.minibatch_scratch(
        params, ls, batch_size, 0)
    slots = np.zeros((0, params.size), params.dtype)
    hyper = optim.Optimizer().hyper(0.01)
    kind = mb.step_kind(hyper)
    sc = np.empty(mb.N_STEP_SCALARS, params.dtype)
    mb.step_scalars(sc, hyper, 1)
    scale = params.dtype.type(data.input_scale)
    mb._begin_chunk(grad, weights_t, slots_t, params, slots, ls, wo, bo)
    marks, steps = np.zeros(ls[0], np.int64), np.zeros(1, np.int64)
    targets, weights = np.empty((0, 10), params.dtype), np.empty(0, params.dtype)
    order = np.random.default_rng(0).permutation(20_000).astype(np.int64)
    seconds = np.zeros((rounds, mb.PARTS, 2))
    nonzero = np.zeros(mb.PARTS)
    for round_ in range(rounds + 3):
        batch = order[(round_ * batch_size) % (20_000 - batch_size):][:batch_size]
        for part in range(mb.PARTS):  # step 2 needs every part's sums
            forward(np.int64(part), partials, spans, params, ls, wo, bo, batch, data.part_ptr, data.indices,
                    data.values, scale)
        pm.forward_backward(units, raw, deltas, losses, hits, partials, params, weights_t, ls, wo, bo,
                            np.int64(arch.activation_code), np.int64(arch.loss_code), labels, targets, weights, batch)
        for part in range(mb.PARTS):
            p = np.int64(part)
            tic = time.perf_counter()
            forward(p, partials, spans, params, ls, wo, bo, batch, data.part_ptr, data.indices, data.values, scale)
            middle = time.perf_counter()
            step(p, params, grad, weights_t, slots, slots_t, units, deltas, spans, ls, wo, bo, kind, sc, data.indices,
                 data.values, scale, marks, steps)
            end = time.perf_counter()
            if round_ >= 3:  # (the first rounds compile and warm up)
                seconds[round_ - 3, part] = middle - tic, end - middle
                nonzero[part] += float(np.mean(data.part_ptr[batch * mb.PARTS + part + 1]
                                               - data.part_ptr[batch * mb.PARTS + part]))
    median = np.median(seconds, axis=0) * 1e9 / batch_size
    print(f"{cpu_name()}: 784-128-10 sigmoid, batch {batch_size}, float32, one thread, median of {rounds} batches")
    for part in range(mb.PARTS):
        print(f"part {part}: {nonzero[part] / rounds:5.1f} nonzero pixels a sample; forward {median[part, 0]:5.0f} ns, "
              f"gradient + step {median[part, 1]:5.0f} ns a sample")
    first, second = median[:2].sum(), median[2:].sum()
    print(f"threads' shares (parts 0-1 / 2-3): {first / (first + second):.3f} / {second / (first + second):.3f}")


if __name__ == "__main__":
    main()
