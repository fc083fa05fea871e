"""Compiled (Numba) training steps of fastmlp, one module per step.

codes       the activation and loss codes and the flat parameter layout (pure Python: the one
            definition, shared with fastmlp.network)
activation  hidden activations, vectorisable exp/tanh (fast_exp, fast_tanh)
loss        output activation + loss pairs
linear      sparse input rows, dense layer forward/backward
sgd         the fused per-sample trainer (one thread or several)
minibatch   the fused mini-batch / full-batch trainer (all Numba threads, deterministic)
gradient    a batch's gradient without its step, and the step from a gradient (data-parallel)
optimizer   the update rules (SGD, momentum, Nesterov, Adam, weight decay) and dropout masks
vectors     64-byte vectors in registers (loads, masked loads and stores, multiply-add) for
            register-blocked loops, since Numba leaves LLVM's SLP vectoriser off
_threads    the small runtime of the threaded per-sample trainer (atomics, spin barrier)
_config     the Numba options every kernel compiles with

Kernels do not validate their inputs: the Python side converts and checks once.

The codes are imported at once; everything else on first use (PEP 562), so that importing the
codes, as ``fastmlp.network`` does, does not import Numba. ``fast_exp`` and ``fast_tanh`` are
not exported here: compiled code imports them from ``.activation``, whose import registers
their Numba overloads (a lazy attribute would be loaded too late for Numba's typing).
"""

import importlib

from .codes import (
    ACTIVATIONS,
    IDENTITY,
    IDENTITY_MSE,
    LOSSES,
    PARTS,
    RELU,
    SIGMOID,
    SIGMOID_BCE,
    SOFTMAX_CROSS_ENTROPY,
    SOFTMAX_MSE,
    TANH,
    parameter_layout,
)

_EXPORTS = {  # submodule: the names it exports, imported on first use
    "activation": ("activation_forward", "activation_backward"),
    "loss": ("loss_forward", "loss_backward"),
    "linear": ("sparse_rows", "linear_forward", "linear_backward", "sparse_linear_forward",
               "sparse_linear_backward", "dense_rows_forward", "in_blocks", "kernel_rows"),
    "minibatch": ("minibatch_scratch", "minibatch_sgd_chunk", "minibatch_sgd_chunk_serial",
                  "minibatch_sgd_chunk_interpreted"),
    "gradient": ("gradient_scratch", "batch_gradient", "gradient_step"),
    "sgd": ("sgd_persample_chunk", "sgd_persample_chunk_threaded", "sgd_persample_chunk_interpreted", "persample_chunk",
            "usable_threads", "logits_in_halves"),
}
_SUBMODULE_OF = {name: submodule for submodule, names in _EXPORTS.items() for name in names}


def __getattr__(name):
    submodule = _SUBMODULE_OF.get(name)
    if submodule is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module("." + submodule, __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_SUBMODULE_OF))


__all__ = [
    "ACTIVATIONS", "IDENTITY", "SIGMOID", "TANH", "RELU",
    "LOSSES", "SOFTMAX_CROSS_ENTROPY", "SOFTMAX_MSE", "SIGMOID_BCE", "IDENTITY_MSE", "PARTS",
    "parameter_layout",
    *_SUBMODULE_OF,
]
