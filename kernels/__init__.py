"""Compiled (Numba) training steps of fastmlp, one module per step.

activation  hidden activations (codes IDENTITY, SIGMOID, TANH, RELU), vectorisable exp/tanh
loss        output activation + loss pairs (codes SOFTMAX_CROSS_ENTROPY, SOFTMAX_MSE,
            SIGMOID_BCE, IDENTITY_MSE)
linear      parameter layout, sparse input rows, dense layer forward/backward
sgd         SGD update and the fused per-sample trainer (one thread or several)
minibatch   the fused mini-batch / full-batch trainer (all Numba threads, deterministic)

Kernels do not validate their inputs: the Python side converts and checks once.
"""

from .activation import (
    ACTIVATIONS,
    IDENTITY,
    RELU,
    SIGMOID,
    TANH,
    activation_backward,
    activation_forward,
    fast_exp,
    fast_tanh,
)
from .linear import (
    linear_backward,
    linear_forward,
    parameter_layout,
    sparse_linear_backward,
    sparse_linear_forward,
    sparse_rows,
)
from .loss import (
    IDENTITY_MSE,
    LOSSES,
    SIGMOID_BCE,
    SOFTMAX_CROSS_ENTROPY,
    SOFTMAX_MSE,
    loss_backward,
    loss_forward,
)
from .minibatch import minibatch_scratch, minibatch_sgd_chunk
from .sgd import sgd_persample_chunk, sgd_persample_chunk_threaded, sgd_update, usable_threads

__all__ = [
    "ACTIVATIONS", "IDENTITY", "SIGMOID", "TANH", "RELU",
    "LOSSES", "SOFTMAX_CROSS_ENTROPY", "SOFTMAX_MSE", "SIGMOID_BCE", "IDENTITY_MSE",
    "activation_forward", "activation_backward", "fast_exp", "fast_tanh",
    "loss_forward", "loss_backward",
    "parameter_layout", "sparse_rows",
    "linear_forward", "linear_backward", "sparse_linear_forward", "sparse_linear_backward",
    "minibatch_scratch", "minibatch_sgd_chunk",
    "sgd_update", "sgd_persample_chunk", "sgd_persample_chunk_threaded", "usable_threads",
]
