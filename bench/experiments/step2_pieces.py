"""Where step 2 of the mini-batch kernel spends its time: copies of ``_block_forward_backward``
with one piece cut at a time (session 65).

Step 2 (``minibatch._block_forward_backward``, per block of BLOCK rows) adds the first layer's
partial sums and its bias, applies the activation, the dense layers forward, the loss and its
dz, the dense layers backward and the activation's derivative. ``bench/profile_minibatch.py``
times it whole and its dense products apart; the rest of it ("rest of step 2") is what this
script splits. Each variant is the function's own source with one piece replaced by ``pass``
(compiled here, uncached), run over the whole batch as the kernel runs it, one thread,
alternating, on a batch drawn at random from MNIST's first 20,000 images after the real sparse
forward: its time per sample and what cutting the piece saved. A cut changes what LLVM can do
with the rest, so the savings are estimates; "ALL cut" leaves the loops and the views alone.
"..., borrowed" variants take the arrays without reference counts (``linear.borrowed``).

    FASTMLP_DATA=../shared/data/mnist python bench/experiments/step2_pieces.py [BATCH] [REPEATS]

784-128-10 sigmoid, float32, softmax + cross-entropy.
"""
import inspect
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
from numba import njit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import profile_minibatch as pm  # noqa: E402

from fastmlp.backends import make_backend  # noqa: E402
from fastmlp.bench.machine import cpu_name  # noqa: E402
from fastmlp.data import load_mnist  # noqa: E402
from fastmlp.kernels import minibatch as mb  # noqa: E402
from fastmlp.kernels._config import KERNEL_OPTIONS  # noqa: E402
from fastmlp.network import Architecture, init_params  # noqa: E402

CUTS = {
    "no partial sums": ("            for k in range(n_first):\n                z[k] += partial[k]\n", "            pass\n"),
    "no activation": ("            activation_row_forward(a, activation)\n", "            pass\n"),
    "no dense forward": ("        _dense_block_forward(units, rows, first, middle, end, "
                         "_transposed_view(weights_t, layer_sizes, w_offsets, l), b)\n", "        pass\n"),
    "no loss": ("        value, correct = loss_row_forward(p, z, labels, targets, sample, loss)\n",
                "        value, correct = units.dtype.type(0), 0\n"),
    "no loss backward": ("        loss_row_backward(dz, p, labels, targets, sample, loss)\n", "        pass\n"),
    "no dense backward": ("        _dense_block_backward(deltas, rows, first, middle, end, "
                          "_transposed_view(weights_t, layer_sizes, w_offsets, l))\n", "        pass\n"),
    "no act. backward": ("                activation_row_backward(da, units[r, first:middle], activation)\n",
                         "                pass\n"),
}
REST = {
    "dz divide": ("            dz[k] /= batch_rows  # the batch mean, divided in as the reference does\n", "            pass\n"),
    "fill bias": ("        fill_bias(z, b)\n", "        pass\n"),
    "losses store": ("        losses[r] = value\n        hits[r] = correct\n", "        pass\n"),
}
BORROW = ("    r0, r1 = rows\n",
          "    r0, r1 = rows\n"
          "    units, raw, deltas, partials = borrowed(units), borrowed(raw), borrowed(deltas), borrowed(partials)\n"
          "    params, weights_t, targets = borrowed(params), borrowed(weights_t), borrowed(targets)\n")
DRIVER = """
def drive(units, raw, deltas, losses, hits, partials, params, weights_t, layer_sizes, w_offsets, b_offsets,
          activation, loss, labels, targets, weights, batch):
    zero, no_dropout, one = np.int64(0), np.uint64(0), params.dtype.type(1)
    n = batch.shape[0]
    for r0 in range(0, n, BLOCK):
        _variant(units, raw, deltas, losses, hits, (np.int64(r0), np.int64(min(r0 + BLOCK, n))), partials, params,
                 weights_t, layer_sizes, w_offsets, b_offsets, activation, loss, params.dtype.type(n), labels,
                 targets, weights, batch, zero, zero, no_dropout, one)
"""


def variant(source, cuts, borrow):
    """A compiled driver over a copy of the function with ``cuts`` applied."""
    for old, new in cuts:
        assert old in source, old
        source = source.replace(old, new)
    source = source.replace("    units, raw, deltas, partials = borrowed", "    pass  # borrowed", 1)
    source = source.replace("    params, weights_t, targets = borrowed", "    pass  # borrowed", 1)
    if borrow:
        source = source.replace(*BORROW, 1)
    names = dict(mb.__dict__)
    exec(source.replace("def _block_forward_backward(", "def _variant("), names)
    names["_variant"] = njit(**{k: v for k, v in KERNEL_OPTIONS.items() if k != "cache"})(names["_variant"])
    exec(DRIVER, names)
    return njit(names["drive"])


def main():
    batch_size = int(sys.argv[1]) if len(sys.argv) > 1 else 128
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    X, y, _, _ = load_mnist()
    arch = Architecture((784, 128, 10), "sigmoid", "cross_entropy", dtype="float32")
    backend = make_backend("numba", arch, 1)
    params = init_params(arch, "xavier", seed=0)
    data = backend.prepare(X[:20_000])
    labels = y[:20_000].astype(np.int64)
    ls, wo, bo = backend.layer_sizes, backend.w_offsets, backend.b_offsets
    grad, weights_t, slots_t, partials, spans, units, raw, deltas, losses, hits = mb.minibatch_scratch(
        params, ls, batch_size, 0)
    partials = np.empty((mb.PARTS, batch_size, ls[1]), params.dtype)
    mb._begin_chunk(grad, weights_t, slots_t, params, np.zeros((0, params.size), params.dtype), ls, wo, bo)
    targets, weights = np.empty((0, 10), params.dtype), np.empty(0, params.dtype)
    batch = np.random.default_rng(0).permutation(20_000)[:batch_size].astype(np.int64)
    pm.sparse_forward(partials, spans, params, ls, wo, bo, batch, data.part_ptr, data.indices, data.values,
                      params.dtype.type(data.input_scale))

    source = textwrap.dedent(inspect.getsource(mb._block_forward_backward.py_func)).split("\n", 1)[1]
    cut_all = list(CUTS.values())
    variants = {"as is": variant(source, [], False)}
    variants.update({name: variant(source, [cut], False) for name, cut in CUTS.items()})
    variants["ALL cut"] = variant(source, cut_all, False)
    variants.update({f"ALL cut + {name}": variant(source, cut_all + [cut], False) for name, cut in REST.items()})
    variants["ALL cut + all rest"] = variant(source, cut_all + list(REST.values()), False)
    variants["as is, borrowed"] = variant(source, [], True)
    variants["ALL cut + all rest, borrowed"] = variant(source, cut_all + list(REST.values()), True)
    arguments = (units, raw, deltas, losses, hits, partials, params, weights_t, ls, wo, bo, np.int64(arch.activation_code),
                 np.int64(arch.loss_code), labels, targets, weights, batch)
    for run in variants.values():
        run(*arguments)
    times = {name: [] for name in variants}
    for _ in range(repeats):
        for name, run in variants.items():
            tic = time.perf_counter()
            run(*arguments)
            times[name].append(time.perf_counter() - tic)
    print(f"{cpu_name()}: 784-128-10 sigmoid, batch {batch_size}, float32, one thread; ns per sample, median of {repeats}")
    base = np.median(times["as is"]) * 1e9 / batch_size
    for name, t in times.items():
        ns = np.median(t) * 1e9 / batch_size
        print(f"{name:30s} {ns:7.1f}   saves {base - ns:6.1f}")


if __name__ == "__main__":
    main()
