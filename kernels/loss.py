"""Output layers with their losses: per-sample helpers and mini-batch kernels.

Loss codes (output activation + loss, defined in ``codes.py``), for logits z[K] of one sample:

    0 SOFTMAX_CROSS_ENTROPY  p = softmax(z)  loss = logsumexp(z) - z[y]        dz = p - onehot(y)
    1 SOFTMAX_MSE            p = softmax(z)  loss = 0.5 |g|^2, g = p - onehot(y)  dz = p * (g - p.g)
    2 SIGMOID_BCE            p = sigmoid(z)  loss = sum_k max(z,0) - z t + log1p(exp(-|z|))  dz = p - t
                             (K == 1: binary; K > 1: multilabel, one independent label per unit)
    3 IDENTITY_MSE           p = z           loss = 0.5 |z - t|^2               dz = z - t

Targets: ``labels`` int64 [N] class indices for codes 0 and 1; ``targets`` [N, K] (same float
dtype as the parameters) for codes 2 (values 0 or 1) and 3. The array a code does not use may be
empty (``np.empty(0, np.int64)``, ``np.empty((0, K), dtype)``); it is never read.

A sample is correct when argmax(p) == y (codes 0, 1; first maximum on ties, like np.argmax) or
(p > 0.5) == t for every unit (code 2: the whole label set right; exactly 0.5 is 0, as scikit-learn's
threshold); code 3 counts nothing.

Sample weights: ``sample_weights`` [N] (the parameters' dtype; empty: every weight 1)
multiplies sample ``row``'s loss and its dz (``weigh_row``) before the batch mean.
"""

import numpy as np
from numba import njit

from ._config import KERNEL_OPTIONS
from .activation import fast_exp, sigmoid
from .vectors import ordered_add
from .codes import SIGMOID_BCE, SOFTMAX_CROSS_ENTROPY, SOFTMAX_MSE  # IDENTITY_MSE: the "else"


# No loop here both stores to an array and sums into a scalar. LLVM vectorises such a loop
# behind a run-time check that the arrays do not overlap, and its fallback sums in another
# order; the check is on the arrays' addresses, so the rounding (and the training run) would
# depend on where malloc put them: different per thread and per call. Sums over loops that
# only read are compiled one way whatever the addresses.


@njit(**KERNEL_OPTIONS)
def _softmax_row(p, z):
    """p[K] = softmax(z[K]), max-shifted; returns logsumexp(z)."""
    shift = z[0]
    for k in range(1, z.shape[0]):
        shift = max(shift, z[k])
    for k in range(z.shape[0]):
        p[k] = fast_exp(z[k] - shift)
    total = np.float32(0.0)
    for k in range(p.shape[0]):
        total = ordered_add(total, p[k])
    scale = np.float32(1.0) / total
    for k in range(z.shape[0]):
        p[k] *= scale
    return shift + np.log(total)


@njit(**KERNEL_OPTIONS)
def _argmax(p):
    best = 0
    for k in range(1, p.shape[0]):
        if p[k] > p[best]:
            best = k
    return best


@njit(**KERNEL_OPTIONS)
def loss_row_forward(p, z, labels, targets, row, loss):
    """p[K] = output activation of the logits z[K] of sample ``row`` (see module docstring).

    Returns (loss of the sample, 1 if its prediction is correct else 0).
    """
    half = np.float32(0.5)
    if loss == SOFTMAX_CROSS_ENTROPY or loss == SOFTMAX_MSE:
        label = labels[row]
        log_total = _softmax_row(p, z)
        correct = 1 if _argmax(p) == label else 0
        if loss == SOFTMAX_CROSS_ENTROPY:
            return log_total - z[label], correct
        total = np.float32(0.0)
        for k in range(p.shape[0]):
            g = p[k] - (np.float32(1.0) if k == label else np.float32(0.0))
            total = ordered_add(total, g * g)
        return half * total, correct
    t = targets[row]
    if loss == SIGMOID_BCE:
        for k in range(z.shape[0]):
            p[k] = sigmoid(z[k])
        total = np.float32(0.0)
        for k in range(z.shape[0]):
            x = z[k]
            total = ordered_add(total, max(x, np.float32(0.0)) - x * t[k] + np.log1p(fast_exp(-abs(x))))
        correct = 1
        for k in range(z.shape[0]):
            predicted = np.float32(1.0) if p[k] > half else np.float32(0.0)
            if predicted != t[k]:
                correct = 0
        return total, correct
    for k in range(z.shape[0]):
        p[k] = z[k]
    total = np.float32(0.0)
    for k in range(z.shape[0]):
        g = z[k] - t[k]
        total = ordered_add(total, g * g)
    return half * total, 0


@njit(**KERNEL_OPTIONS)
def loss_row_backward(dz, p, labels, targets, row, loss):
    """dz[K] = d loss / d z of sample ``row``, from the outputs p[K] of ``loss_row_forward``."""
    if loss == SOFTMAX_CROSS_ENTROPY:
        # the softmax Jacobian and the log's derivative cancel: no division by p
        for k in range(p.shape[0]):
            dz[k] = p[k]
        dz[labels[row]] -= np.float32(1.0)
    elif loss == SOFTMAX_MSE:
        label = labels[row]
        for k in range(p.shape[0]):
            dz[k] = p[k] - (np.float32(1.0) if k == label else np.float32(0.0))  # g
        p_dot_g = np.float32(0.0)
        for k in range(p.shape[0]):
            p_dot_g = ordered_add(p_dot_g, p[k] * dz[k])
        for k in range(p.shape[0]):
            dz[k] = p[k] * (dz[k] - p_dot_g)  # full softmax Jacobian applied to g
    else:
        # sigmoid + BCE fuses like softmax + cross-entropy; identity + MSE is plain p - t
        t = targets[row]
        for k in range(p.shape[0]):
            dz[k] = p[k] - t[k]


@njit(**KERNEL_OPTIONS)
def sample_weight(sample_weights, row):
    """The weight of sample ``row``: sample_weights[row], or 1 when there are none (empty)."""
    if sample_weights.shape[0] == 0:
        return sample_weights.dtype.type(1.0)
    return sample_weights[row]


@njit(**KERNEL_OPTIONS)
def weigh_row(dz, weight):
    """dz[K] *= weight (one sample's weighted gradient)."""
    for k in range(dz.shape[0]):
        dz[k] *= weight


# ---------------------------------------------------------------------------------------------
# Mini-batch kernels: row r of every array is sample r of the batch.


@njit(**KERNEL_OPTIONS)
def loss_forward(losses, correct, p, z, labels, targets, loss):
    """losses[B] = loss of each sample, p[B,K] = output activation of z[B,K], correct[B] = 1/0.

    ``labels`` [B] / ``targets`` [B,K] are the batch's own rows (empty when unused).
    """
    for row in range(z.shape[0]):
        value, right = loss_row_forward(p[row], z[row], labels, targets, row, loss)
        losses[row] = value
        correct[row] = right


@njit(**KERNEL_OPTIONS)
def loss_backward(dz, p, labels, targets, loss):
    """dz[B,K] = d loss_r / d z[r] for each sample r (not averaged), from p of loss_forward."""
    for row in range(p.shape[0]):
        loss_row_backward(dz[row], p[row], labels, targets, row, loss)
