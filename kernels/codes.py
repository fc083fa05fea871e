"""The integer codes the kernels branch on, and the flat parameter layout: defined here only.

``fastmlp.network`` (the public names) and the kernels (the branches) both import this module,
so the two cannot disagree. It imports no Numba: the NumPy backend uses it without paying for
Numba's import.
"""

import numpy as np

# Hidden activations
IDENTITY = 0
SIGMOID = 1
TANH = 2
RELU = 3

ACTIVATIONS = {"identity": IDENTITY, "sigmoid": SIGMOID, "tanh": TANH, "relu": RELU}

# Output activation + loss. Only these pairs exist: each has a gradient with respect to the
# output layer's pre-activation z that the kernels fuse (see kernels/loss.py).
SOFTMAX_CROSS_ENTROPY = 0
SOFTMAX_MSE = 1
SIGMOID_BCE = 2
IDENTITY_MSE = 3

LOSSES = {
    ("softmax", "cross_entropy"): SOFTMAX_CROSS_ENTROPY,
    ("softmax", "mse"): SOFTMAX_MSE,
    ("sigmoid", "binary_cross_entropy"): SIGMOID_BCE,
    ("identity", "mse"): IDENTITY_MSE,
}

# The mini-batch kernel's blocks of the first layer's inputs (kernels/minibatch.py), each owned
# by one thread in step 1, and the input rows' pointers split at them (``linear.sparse_rows``
# with parts=PARTS). Fixed, so that the partial sums and hence the results do not depend on the
# thread count. Contiguous blocks: splitting W_0 by columns, or into fine interleaved stripes,
# made the cores fight over cache lines (the hardware prefetchers fetch neighbouring lines) and
# was slower than one core.
PARTS = 4


# The optimizer as the kernels receive it (the rules: fastmlp.optim). ``hyper`` is a float64
# vector with these slots; ``counters`` an int64 vector the kernels advance.
LR, MOMENTUM, NESTEROV, BETA1, BETA2, EPS, WEIGHT_DECAY, DECOUPLED, DROPOUT, INPUT_DROPOUT, ADAM = range(11)
N_HYPER = 11
STEPS, SAMPLES, DROPOUT_SEED = range(3)  # optimizer steps taken, samples trained, dropout key


def parameter_layout(layer_sizes, use_bias=True):
    """Offsets of every layer's weights and biases in the flat parameter vector.

    Dense layer ``l`` (0-based) maps n_in = layer_sizes[l] inputs to n_out = layer_sizes[l+1]
    outputs; the vector holds W_0, b_0, W_1, b_1, ... with

        W_l = params[w_offsets[l] : w_offsets[l] + n_in * n_out].reshape(n_in, n_out)  # input-major
        b_l = params[b_offsets[l] : b_offsets[l] + n_out]       # b_offsets[l] == -1: no bias

    Returns ``(w_offsets, b_offsets, n_params)``: int64 arrays of length L (one entry per
    dense layer) and the total size as an int. ``b_offsets`` is all -1 when ``use_bias`` is False.
    """
    layer_sizes = np.asarray(layer_sizes, dtype=np.int64)
    n_layers = len(layer_sizes) - 1
    w_offsets = np.empty(n_layers, np.int64)
    b_offsets = np.full(n_layers, -1, np.int64)
    offset = 0
    for l in range(n_layers):
        w_offsets[l] = offset
        offset += int(layer_sizes[l] * layer_sizes[l + 1])
        if use_bias:
            b_offsets[l] = offset
            offset += int(layer_sizes[l + 1])
    return w_offsets, b_offsets, offset


# Dropout masks. Whether unit ``unit`` of the sample trained ``sample``-th in a run is kept is a
# counter-based hash of (seed, sample, unit): splitmix64's finaliser, twice. Units are numbered
# through the network: inputs 0 .. n_0-1, then the first hidden layer's, and so on. Both backends
# and every kernel call this one definition (compiled, the kernels use ``keep_unit_formula``),
# so all draw the same masks whatever the batching, the threads or a resume.

KEEP_BITS = 24  # a unit is kept when the hash's top 24 bits are >= drop_threshold(rate)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def mix64(x):
    """splitmix64's finaliser: a bijection of uint64 whose every output bit depends on every input bit."""
    x = (x ^ (x >> np.uint64(30))) * _MIX1
    x = (x ^ (x >> np.uint64(27))) * _MIX2
    return x ^ (x >> np.uint64(31))


def keep_unit_formula(seed, sample, unit, threshold):
    """The hash test itself, on uint64 scalars or arrays (wrapping arithmetic)."""
    key = mix64(seed + sample * _GOLDEN)
    return (mix64(key + unit * _GOLDEN) >> np.uint64(64 - KEEP_BITS)) >= threshold


def keep_unit(seed, sample, unit, threshold):
    """True where unit ``unit`` of sample ``sample`` is kept (uint64 scalars or arrays)."""
    with np.errstate(over="ignore"):  # uint64 products wrap on purpose
        return keep_unit_formula(np.uint64(seed), np.asarray(sample, np.uint64), np.asarray(unit, np.uint64),
                                 np.uint64(threshold))


def drop_threshold(rate):
    """The integer threshold for a drop probability ``rate`` in [0, 1): P(top bits < it) = rate."""
    return int(round(float(rate) * (1 << KEEP_BITS)))
