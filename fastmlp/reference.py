"""The NumPy reference: the readable definition of every computation the compiled core does.

Shapes use B for the batch, D for a layer's inputs, H for its outputs, K for the output units.
Weights are input-major (see ``fastmlp.network``)::

    z[B,H] = x[B,D] @ W[D,H] + b[H]          a[B,H] = act(z)
    loss   = mean over the batch of the per-sample losses below
    update = params -= lr * mean over the batch of the per-sample gradients

With sample weights w (mean 1 over the data), each sample's loss and gradient is multiplied by
its w before the batch mean.

Per-sample losses and the gradient each fuses with its output layer, dz = dloss/dz[B,K]:

    softmax + cross_entropy         -log p[y]              = logsumexp(z) - z[y]     dz = p - onehot(y)
    softmax + mse                   0.5 * sum_k (p_k - t_k)^2      g = p - t;  dz = p * (g - sum_k p_k g_k)
                                    (the full softmax Jacobian: diag(p) - p p^T, not its diagonal)
    sigmoid + binary_cross_entropy  sum_k -(t log p + (1-t) log(1-p)) = max(z,0) - z t + log1p(exp(-|z|))   dz = p - t
                                    (one unit: binary, t = the label; K units: multilabel, t[B,K] 0/1)
    identity + mse (regression)     0.5 * sum_k (z_k - t_k)^2                                         dz = z - t

Every exponential here sees a non-positive argument, so logits of +-1000 give neither an
overflow warning nor a NaN.
"""

from __future__ import annotations

import numpy as np

from . import optim
from .kernels import codes
from .network import IDENTITY_MSE, SIGMOID_BCE, SOFTMAX_CROSS_ENTROPY, SOFTMAX_MSE, Architecture

PIXEL_SCALE = 1.0 / 255.0


# --- activations -----------------------------------------------------------------------------


def sigmoid(z):
    """1 / (1 + exp(-z)), written so exp only ever sees -|z|."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def softmax(z):
    """softmax over the last axis, max-shifted."""
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax(z):
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def activation_forward(z, name):
    """a[B,H] = act(z[B,H])"""
    if name == "identity":
        return z
    if name == "sigmoid":
        return sigmoid(z)
    if name == "tanh":
        return np.tanh(z)
    if name == "relu":
        return np.maximum(z, 0)
    raise ValueError(f"unknown activation {name!r}")


def activation_backward(da, a, name):
    """dz[B,H] = da[B,H] * act'(z), written in terms of the stored output a = act(z)."""
    if name == "identity":
        return da
    if name == "sigmoid":
        return da * a * (1 - a)
    if name == "tanh":
        return da * (1 - a * a)
    if name == "relu":
        return da * (a > 0)
    raise ValueError(f"unknown activation {name!r}")


# --- output layer and loss -------------------------------------------------------------------


def output_forward(z, loss_code):
    """out[B,K] = softmax(z), sigmoid(z) or z, as the loss pair says."""
    if loss_code in (SOFTMAX_CROSS_ENTROPY, SOFTMAX_MSE):
        return softmax(z)
    if loss_code == SIGMOID_BCE:
        return sigmoid(z)
    return z


def one_hot(labels, n_classes, dtype):
    """t[B,K] with a single 1 per row, at column labels[row]."""
    t = np.zeros((len(labels), n_classes), dtype=dtype)
    t[np.arange(len(labels)), labels] = 1
    return t


def label_sets(targets, dtype):
    """Sigmoid targets as t[B,K]: binary labels [B] become [B,1]; multilabel [B,K] stay."""
    t = targets.astype(dtype)
    return t[:, None] if t.ndim == 1 else t


def regression_targets(targets, z):
    """Regression targets as t[B,K] in z's dtype: [B] (one output) becomes [B,1]; a shape that
    is not z's is an error (it would broadcast to [B,B] or [B,K] and give wrong losses)."""
    t = np.asarray(targets)
    if z.ndim == 2 and z.shape[1] == 1 and t.shape == z.shape[:1]:
        t = t[:, None]
    if t.shape != z.shape:  # np.reshape would take [K, B] (a transpose's shape) and scramble it
        raise ValueError(f"regression targets must have shape {list(z.shape)}"
                         + (f" or [{z.shape[0]}]" if z.shape[1] == 1 else "") + f"; got {list(t.shape)}")
    return t.astype(z.dtype, copy=False)


def loss_forward(z, out, targets, loss_code):
    """Per-sample losses [B]. ``targets``: int labels [B] for classifiers, floats [B,K] for mse regression."""
    if loss_code == SOFTMAX_CROSS_ENTROPY:
        return -log_softmax(z)[np.arange(len(z)), targets]
    if loss_code == SOFTMAX_MSE:
        return 0.5 * ((out - one_hot(targets, z.shape[1], z.dtype)) ** 2).sum(axis=1)
    if loss_code == SIGMOID_BCE:
        t = label_sets(targets, z.dtype)
        return (np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))).sum(axis=1)
    return 0.5 * ((z - regression_targets(targets, z)) ** 2).sum(axis=1)


def loss_backward(out, targets, loss_code):
    """dz[B,K] = d(per-sample loss)/dz, one row per sample (not yet averaged)."""
    if loss_code == SOFTMAX_CROSS_ENTROPY:
        # softmax and cross-entropy differentiate together to p - onehot: the softmax Jacobian
        # contracted with -onehot/p collapses, so no division by a tiny p ever happens.
        return out - one_hot(targets, out.shape[1], out.dtype)
    if loss_code == SOFTMAX_MSE:
        g = out - one_hot(targets, out.shape[1], out.dtype)
        return out * (g - (out * g).sum(axis=1, keepdims=True))
    if loss_code == SIGMOID_BCE:
        return out - label_sets(targets, out.dtype)
    return out - regression_targets(targets, out)


def count_correct(out, targets, loss_code):
    """How many rows are classified right (0 for regression)."""
    if loss_code == IDENTITY_MSE:
        return 0
    if loss_code == SIGMOID_BCE:
        return int(((out > 0.5) == (label_sets(targets, out.dtype) == 1)).all(axis=1).sum())
    return int((out.argmax(axis=1) == targets).sum())


# --- the network -----------------------------------------------------------------------------


def as_input(x, dtype):
    """uint8 pixels become dtype(pixel) * dtype(1/255); floats pass through as dtype."""
    if x.dtype == np.uint8:
        return x.astype(dtype) * dtype(PIXEL_SCALE)
    return x.astype(dtype, copy=False)


def forward(arch: Architecture, params, x, scales=None):
    """Activations [x, a1, ..., a_{L-1}] and the output pre-activation z_L.

    a_l[B,n_l] = act(a_{l-1}[B,n_{l-1}] @ W_l[n_{l-1},n_l] + b_l[n_l]) for hidden layers;
    z_L is returned raw so the loss can use it directly (logsumexp, log1p).

    With dropout, ``scales[l]`` [B, n_l] (0 or 1/keep; None for a layer without dropout)
    multiplies layer l's output (l = 0: the input) before the next layer reads it; the
    activations returned are then those scaled outputs, and the unscaled ones come second.
    """
    views = arch.layout().views(params)
    activations, unscaled = [], []
    a = x
    for l, (W, b) in enumerate(views):
        unscaled.append(a)
        if scales is not None and scales[l] is not None:
            a = a * scales[l]
        activations.append(a)
        z = a @ W
        if b is not None:
            z += b
        if l == len(views) - 1:
            return (activations, z) if scales is None else (activations, z, unscaled)
        a = activation_forward(z, arch.activation)


def backward(arch: Architecture, params, activations, dz, scales=None, unscaled=None):
    """Gradient of the batch-mean loss, as a flat vector laid out like ``params``.

    From z_l = a_{l-1} @ W_l + b_l, with the output dz already divided by B (the mean):
    dW_l = a_{l-1}^T @ dz_l,  db_l = sum_B dz_l,  da_{l-1} = dz_l @ W_l^T,
    dz_{l-1} = da_{l-1} * act'(a_{l-1}); with dropout (``forward``'s scales and unscaled
    outputs) da_{l-1} is multiplied by the layer's scales and act' is taken of the unscaled a.
    """
    layout = arch.layout()
    grad = np.empty_like(params)
    dz = dz / dz.dtype.type(dz.shape[0])
    weights = layout.views(params)
    grads = layout.views(grad)
    for l in range(len(weights) - 1, -1, -1):
        W, _ = weights[l]
        dW, db = grads[l]
        np.matmul(activations[l].T, dz, out=dW)
        if db is not None:
            dz.sum(axis=0, out=db)
        if l > 0:
            da = dz @ W.T
            if scales is not None and scales[l] is not None:
                da *= scales[l]
            dz = activation_backward(da, (unscaled if scales is not None else activations)[l], arch.activation)
    return grad


def dropout_scales(arch: Architecture, optimizer, counters, n_rows):
    """[B, n_l] inverted-dropout factors (0 or 1/keep) of each layer's output for the next
    n_rows samples (the input is layer 0; None where a layer has no dropout): unit u of the
    sample trained n-th in the run is kept when ``codes.keep_unit(seed, n, u, threshold)``."""
    rates = [optimizer.input_dropout] + [optimizer.dropout] * (arch.n_layers - 1)
    if not any(rates):
        return None
    seed = np.uint64(counters[optim.DROPOUT_SEED])
    samples = np.uint64(counters[optim.SAMPLES]) + np.arange(n_rows, dtype=np.uint64)[:, None]
    scales = []
    first_unit = 0
    for l, rate in enumerate(rates):
        n_units = arch.layers[l]
        if rate > 0:
            units = np.arange(first_unit, first_unit + n_units, dtype=np.uint64)[None, :]
            kept = codes.keep_unit(seed, samples, units, np.uint64(codes.drop_threshold(rate)))
            scales.append(np.where(kept, arch.dtype(1.0) / arch.dtype(1.0 - rate), arch.dtype(0.0)).astype(arch.dtype))
        else:
            scales.append(None)
        first_unit += n_units
    return scales


def predict_logits(arch: Architecture, params, X, block=4096):
    """z[N,K], the output layer's pre-activation for a whole dataset, in row blocks to bound memory."""
    z = np.empty((len(X), arch.layers[-1]), dtype=arch.dtype)
    for start in range(0, len(X), block):
        _, z[start : start + block] = forward(arch, params, as_input(X[start : start + block], arch.dtype))
    return z


def train_batches(arch: Architecture, params, X, targets, order, lr, batch_size, optimizer=None, state=None,
                  sample_weight=None):
    """SGD over ``order`` in batches of ``batch_size`` (the last may be shorter), in place.

    Returns (loss_sum, n_correct, n_done, nonfinite_at): per-sample losses and hits are taken
    before the update of the batch they belong to; on the first non-finite loss the batch is
    not applied and ``nonfinite_at`` is that sample's position in ``order`` (else -1).

    Without ``optimizer`` the step is plain SGD, ``params -= lr * gradient``; with an
    ``optim.Optimizer`` and its ``optim.State`` it is ``optim.step`` (momentum, Adam, weight
    decay) and dropout applies, the state advancing by one step and ``len(batch)`` samples per
    batch.

    ``sample_weight`` (arch.dtype [N], or None) multiplies each sample's loss and gradient.
    """
    with np.errstate(over="ignore", invalid="ignore"):  # divergence is caught from the loss
        return _train_batches(arch, params, X, targets, order, arch.dtype(lr), batch_size, optimizer, state,
                              sample_weight)


def _train_batches(arch, params, X, targets, order, lr, batch_size, optimizer, state, sample_weight):
    loss_sum = 0.0
    n_correct = 0
    decay_mask = None if optimizer is None else optim.weight_mask(arch.layout(), arch.dtype)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        x = as_input(X[rows], arch.dtype)
        scales = None if optimizer is None else dropout_scales(arch, optimizer, state.counters, len(rows))
        if scales is None:
            activations, z = forward(arch, params, x)
            unscaled = None
        else:
            activations, z, unscaled = forward(arch, params, x, scales)
        out = output_forward(z, arch.loss_code)
        t = targets[rows]
        losses = loss_forward(z, out, t, arch.loss_code)
        if sample_weight is not None:
            w = sample_weight[rows]
            losses = losses * w
        bad = ~np.isfinite(losses)
        if bad.any():
            return loss_sum, n_correct, start, start + int(np.argmax(bad))
        loss_sum += float(losses.sum(dtype=np.float64))
        n_correct += count_correct(out, t, arch.loss_code)
        dz = loss_backward(out, t, arch.loss_code)
        if sample_weight is not None:
            dz *= w[:, None]
        grad = backward(arch, params, activations, dz, scales, unscaled)
        if optimizer is None:
            grad *= lr
            params -= grad
        else:
            optim.step(params, grad, state, optimizer, lr, decay_mask)
            state.counters[optim.SAMPLES] += len(rows)
    return loss_sum, n_correct, len(order), -1
