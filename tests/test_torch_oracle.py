"""fastmlp's steps against PyTorch's (README, "Porting a PyTorch recipe"): from the same weights,
in the same batches, in float64, the two agree to rounding once PyTorch is given fastmlp's
conventions, which the README lists: the momentum velocity holds the rate across a schedule's
changes, Adam's eps goes in before the bias corrections, weight decay never reaches biases, the
multilabel loss and mean squared error are summed over the outputs (MSE halved), a warm-up and
the cosine multiply epoch by epoch (ChainedScheduler). PyTorch is a
benchmark peer, not a test dependency: .ci/run's peers pass runs this file in an environment
with fastmlp[peers]; elsewhere it skips."""

import math

import numpy as np
import pytest

from fastmlp import MLP

torch = pytest.importorskip("torch")

N, B, EPOCHS, SIZES = 40, 4, 4, (20, 16, 7)


def problem(kind):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, SIZES[0]))
    X[rng.random(X.shape) < 0.3] = 0  # (zeros: the compiled core's sparse first layer)
    y = {"multiclass": lambda: rng.integers(0, SIZES[-1], N),
         "multilabel": lambda: (rng.random((N, SIZES[-1])) < 0.4).astype(np.int64),
         "regression": lambda: rng.normal(size=(N, SIZES[-1]))}[kind]()
    return X, y


LOSS = {"multiclass": {}, "multilabel": {"loss": "binary_cross_entropy"}, "regression": {"loss": "mse"}}


def fastmlp_run(kind, backend, options):
    """(the starting weights, the weights after EPOCHS epochs) of fastmlp, [(W [in, out], b)]."""
    X, y = problem(kind)
    model = MLP(list(SIZES), activation="tanh", dtype="float64", seed=3, backend=backend, threads=1, **LOSS[kind])
    model.initialize()
    for bias in model.biases_:  # (nonzero: a decay that reached them would show)
        bias[...] = np.random.default_rng(7).uniform(-0.3, 0.3, bias.shape)
    start = [(W.copy(), b.copy()) for W, b in zip(model.weights_, model.biases_)]
    model.partial_fit(X, y, epochs=EPOCHS, batch_size=B, shuffle=False, progress=False, **options)
    return start, [(W.copy(), b.copy()) for W, b in zip(model.weights_, model.biases_)]


def torch_run(kind, start, options, conventions=True):
    """PyTorch's run of the same steps; ``conventions``: given fastmlp's (else PyTorch's defaults)."""
    X, y = problem(kind)
    X = torch.from_numpy(X)
    y = torch.from_numpy(y) if kind == "multiclass" else torch.from_numpy(y.astype(np.float64))
    layers = [torch.nn.Linear(a, b).double() for a, b in zip(SIZES[:-1], SIZES[1:])]
    with torch.no_grad():
        for layer, (W, b) in zip(layers, start):
            layer.weight.copy_(torch.from_numpy(W.T))  # (torch keeps [out, in])
            layer.bias.copy_(torch.from_numpy(b))
    lr, decay = options.get("lr", 0.1), options.get("weight_decay", 0.0)
    weights, biases = [layer.weight for layer in layers], [layer.bias for layer in layers]
    groups = ([{"params": weights, "weight_decay": decay}, {"params": biases, "weight_decay": 0.0}] if conventions
              else [{"params": weights + biases, "weight_decay": decay}])
    if options.get("optimizer") == "adam":
        kind_of_adam = torch.optim.AdamW if options.get("decoupled_weight_decay") else torch.optim.Adam
        betas = (options.get("beta1", 0.9), options.get("beta2", 0.999))
        optimizer = kind_of_adam(groups, lr=lr, betas=betas, eps=options.get("eps", 1e-8))
    else:
        optimizer = torch.optim.SGD(groups, lr=lr, momentum=options.get("momentum", 0.0),
                                    nesterov=options.get("nesterov", False))
    cosine, warmup = options.get("lr_schedule") == "cosine", options.get("warmup_epochs", 0)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=EPOCHS) if cosine else None
    if warmup:
        lr_scheduler = torch.optim.lr_scheduler
        ramp = lr_scheduler.LinearLR(optimizer, start_factor=1 / (warmup + 1), total_iters=warmup)
        if conventions:  # the two factors multiplied epoch by epoch
            schedule = lr_scheduler.ChainedScheduler([ramp, schedule], optimizer=optimizer)
        else:  # the common recipe: a warm-up to lr, then the cosine over the epochs left
            rest = lr_scheduler.CosineAnnealingLR(optimizer, T_max=EPOCHS - warmup)
            schedule = lr_scheduler.SequentialLR(optimizer, [ramp, rest], milestones=[warmup])
    step = 0
    for _ in range(EPOCHS):
        for first in range(0, N, B):
            rows = slice(first, first + B)
            a = X[rows]
            for layer in layers[:-1]:
                a = torch.tanh(layer(a))
            z = layers[-1](a)
            if kind == "multiclass":
                loss = torch.nn.functional.cross_entropy(z, y[rows])
            elif kind == "multilabel":
                reduction = "sum" if conventions else "mean"
                loss = torch.nn.functional.binary_cross_entropy_with_logits(z, y[rows], reduction=reduction)
                loss = loss / B if conventions else loss
            else:
                loss = 0.5 * ((z - y[rows]) ** 2).sum() / B if conventions else torch.nn.functional.mse_loss(z, y[rows])
            optimizer.zero_grad()
            loss.backward()
            step += 1
            if conventions and options.get("optimizer") == "adam":  # eps before the bias corrections
                for group in optimizer.param_groups:
                    group["eps"] = options.get("eps", 1e-8) / math.sqrt(1 - betas[1] ** step)
            optimizer.step()
        if schedule is not None:
            before = optimizer.param_groups[0]["lr"]
            schedule.step()
            after = optimizer.param_groups[0]["lr"]
            if conventions and after > 0:  # the velocity holds the old rate: the buffer times old / new
                for parameter in weights + biases:
                    buffer = optimizer.state[parameter].get("momentum_buffer")
                    if buffer is not None:
                        buffer.mul_(before / after)
    return [(layer.weight.detach().numpy().T.copy(), layer.bias.detach().numpy().copy()) for layer in layers]


CASES = {
    "momentum, cosine": ("multiclass", {"lr": 0.05, "momentum": 0.9, "lr_schedule": "cosine"}),
    "nesterov, coupled decay": ("multiclass", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    "adam": ("multiclass", {"optimizer": "adam", "lr": 0.01, "beta1": 0.8, "beta2": 0.99, "eps": 1e-3}),
    "adamw": ("multiclass", {"optimizer": "adam", "lr": 0.01, "weight_decay": 0.05, "decoupled_weight_decay": True}),
    "warm-up, cosine": ("multiclass", {"lr": 0.1, "lr_schedule": "cosine", "warmup_epochs": 2}),
    "multilabel": ("multilabel", {"lr": 0.1}),
    "regression": ("regression", {"lr": 0.02}),
}


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_fastmlp_steps_are_pytorchs_given_its_conventions(case, backend):
    kind, options = case
    start, ours = fastmlp_run(kind, backend, options)
    theirs = torch_run(kind, start, options)
    for (W, b), (W_torch, b_torch) in zip(ours, theirs):
        np.testing.assert_allclose(W, W_torch, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(b, b_torch, rtol=1e-9, atol=1e-12)
    # and PyTorch's defaults part from it: each convention is one (as the README says)
    natural = torch_run(kind, start, options, conventions=False)
    assert max(np.abs(W - W_torch).max() for (W, _), (W_torch, _) in zip(ours, natural)) > 1e-6
