"""Other libraries training the same network, for ``fastmlp bench --peers`` (extra ``fastmlp[peers]``).

Every peer gets fastmlp's exact setting: the layer sizes, the hidden activation, a softmax
output with cross-entropy averaged over each batch, float32, MNIST images / 255, and plain SGD
(no momentum, no weight decay) at the same learning rate and batch size, one epoch per repeat.

- ``torch``: PyTorch eager, ``nn.Linear`` layers and ``torch.optim.SGD``, torch's threads set
  to the cores this process may use.
- ``jax``: one ``jax.jit``-compiled function that runs ``lax.scan`` over a chunk of batches (as
  fastmlp hands its compiled core a chunk at a time); the last short batch is padded and masked,
  so only two shapes are ever compiled, both before the clock starts.
- ``sklearn``: ``MLPClassifier(solver="sgd", momentum=0, alpha=0, learning_rate_init=lr,
  batch_size=bs, max_iter=1, shuffle=True)``, one ``fit`` = one epoch.

torch and jax start from fastmlp's initial weights and visit the samples in fastmlp's order, so
after an epoch their weights differ from fastmlp's only by float32 rounding. scikit-learn also
starts from those weights (``warm_start`` after a throwaway fit on one sample per class sets up
its state, then ``coefs_``/``intercepts_`` are overwritten), but shuffles with its own generator.

A runner offers ``prepare(train)`` (untimed: data conversion), ``warmup(params, order)``
(untimed: compilation), ``start(params, order)`` (untimed: a fresh model holding ``params``),
``train(state, order)`` (the timed epoch; returns the state) and ``accuracy(state, test)``.
``train``/``test`` are ``fastmlp.bench.dataset.Split`` objects (``scaled`` float32 images, ``labels``).
"""

from __future__ import annotations

import warnings

import numpy as np

from .._extras import not_installed
from ..trainer import CHUNK_SAMPLES

PEERS = ("torch", "jax", "sklearn")
INSTALL_HINT = "pip install 'fastmlp[peers]'"


def _import(name):
    """Import a peer's library; returns None or the reason it cannot be used."""
    try:
        if name == "torch":
            import torch  # noqa: F401
        elif name == "jax":
            import jax  # noqa: F401
            import jax.numpy  # noqa: F401
        elif name == "sklearn":
            from sklearn.neural_network import MLPClassifier  # noqa: F401
        else:
            raise ValueError(f"unknown peer {name!r}; choose from {', '.join(PEERS)}")
    except ImportError as error:
        module = {"jax": "jax.numpy", "sklearn": "sklearn.neural_network"}.get(name, name)
        said = "not installed" if not_installed(error, module) else "installed but does not import"
        return f"{said} ({error}); {INSTALL_HINT}"
    except Exception as error:  # a broken install should be a skipped row, not a crash
        return f"failed to import: {type(error).__name__}: {error}"
    return None


def available(names):
    """([usable peer names], {name: reason it is skipped}) for the requested ``names``."""
    usable, skipped = [], {}
    for name in names:
        reason = _import(name)
        if reason is None:
            usable.append(name)
        else:
            skipped[name] = reason
    return usable, skipped


def data_problem(name, labels, n_classes):
    """Why peer ``name`` cannot train on these training ``labels`` (a reason to skip it), or None."""
    present = np.unique(labels)
    if name == "sklearn" and len(present) < n_classes:
        return (f"the first {len(labels):,} training images hold only classes {present.tolist()}, and scikit-learn's "
                f"warm-started MLPClassifier needs all {n_classes} (it refuses a fit whose classes differ); pass a "
                f"larger --samples")
    return None


def make_runner(name, arch, lr, batch_size, threads, seed=0):
    if name == "torch":
        return TorchRunner(arch, lr, batch_size, threads)
    if name == "jax":
        return JaxRunner(arch, lr, batch_size)
    if name == "sklearn":
        return SklearnRunner(arch, lr, batch_size, seed)
    raise ValueError(f"unknown peer {name!r}; choose from {', '.join(PEERS)}")


def _weights(arch, params):
    """[(W [n_in, n_out], b [n_out])] copies of fastmlp's flat float32 parameters."""
    return [(W.copy(), b.copy()) for W, b in arch.layout().views(params)]


def _check_supported(arch):
    if not arch.bias or arch.output != "softmax" or arch.loss != "cross_entropy":
        raise ValueError("peers are compared on softmax + cross-entropy networks with biases only")


class TorchRunner:
    name = "torch"
    peer = True

    def __init__(self, arch, lr, batch_size, threads):
        import torch

        _check_supported(arch)
        torch.set_num_threads(threads)
        self.torch = torch
        self.arch = arch
        self.lr = lr
        self.batch_size = batch_size
        self.threads = threads
        self.compile_seconds = 0.0
        self.implementation = f"PyTorch {torch.__version__} eager, nn.Linear + torch.optim.SGD, torch.set_num_threads({threads})"

    def prepare(self, train):
        self.X = self.torch.from_numpy(train.scaled)
        self.y = self.torch.from_numpy(train.labels.astype(np.int64))

    def start(self, params, order):
        torch = self.torch
        layers = []
        for l, (W, b) in enumerate(_weights(self.arch, params)):
            linear = torch.nn.Linear(W.shape[0], W.shape[1])
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(W.T)))  # torch keeps [out, in]
                linear.bias.copy_(torch.from_numpy(b))
            layers.append(linear)
            if l < self.arch.n_layers - 1:
                layers.append(_torch_activation(torch, self.arch.activation))
        model = torch.nn.Sequential(*layers)
        return model, torch.optim.SGD(model.parameters(), lr=self.lr, momentum=0.0, weight_decay=0.0)

    def warmup(self, params, order):
        state = self.start(params, order)
        self.train(state, order[: 4 * self.batch_size])

    def train(self, state, order):
        model, optimizer = state
        cross_entropy = self.torch.nn.functional.cross_entropy
        rows = self.torch.from_numpy(order)
        X, y, bs = self.X, self.y, self.batch_size
        for start in range(0, len(order), bs):
            batch = rows[start : start + bs]
            optimizer.zero_grad(set_to_none=True)
            loss = cross_entropy(model(X[batch]), y[batch])  # mean over the batch, as fastmlp
            loss.backward()
            optimizer.step()
        return state

    def accuracy(self, state, test):
        model, _ = state
        with self.torch.inference_mode():
            z = model(self.torch.from_numpy(test.scaled))
        return float((z.argmax(dim=1).numpy() == test.labels).mean())


def _torch_activation(torch, name):
    return {"sigmoid": torch.nn.Sigmoid, "relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "identity": torch.nn.Identity}[name]()


class JaxRunner:
    name = "jax"
    peer = True

    def __init__(self, arch, lr, batch_size):
        import jax
        import jax.numpy as jnp

        _check_supported(arch)
        self.jax, self.jnp = jax, jnp
        self.arch = arch
        self.lr = lr
        self.batch_size = batch_size
        self.threads = None
        self.compile_seconds = 0.0
        self.batches_per_call = max(1, CHUNK_SAMPLES // batch_size)
        self.device = jax.devices("cpu")[0]
        self.implementation = (
            f"JAX {jax.__version__} jit, lax.scan over {self.batches_per_call} batches per call, "
            "XLA CPU thread pool (all cores)"
        )
        self._compiled = {}
        self._epoch_chunk = jax.jit(self._make_chunk_fn())

    def _make_chunk_fn(self):
        jax, jnp = self.jax, self.jnp
        activation = {"sigmoid": jax.nn.sigmoid, "relu": jax.nn.relu, "tanh": jnp.tanh, "identity": lambda z: z}[self.arch.activation]
        lr = jnp.float32(self.lr)

        def batch_loss(params, x, y, mask):
            a = x
            for W, b in params[:-1]:
                a = activation(a @ W + b)
            W, b = params[-1]
            log_p = jax.nn.log_softmax(a @ W + b)
            nll = -jnp.take_along_axis(log_p, y[:, None], axis=1)[:, 0]
            return jnp.sum(nll * mask) / jnp.maximum(jnp.sum(mask), 1)  # mean over the real rows

        def chunk(params, X, y, rows, masks):
            def step(params, batch):
                index, mask = batch
                grads = jax.grad(batch_loss)(params, X[index], y[index], mask)
                return jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads), None

            return jax.lax.scan(step, params, (rows, masks))[0]

        return chunk

    def prepare(self, train):
        self.X = self.jax.device_put(train.scaled, self.device)
        self.y = self.jax.device_put(train.labels.astype(np.int32), self.device)
        # compiled for the data's shape too: a run cut to fewer samples (--max-seconds) after its
        # pilot would otherwise call an executable compiled for the whole set, which JAX refuses
        self._compiled = {}

    def _calls(self, order):
        """[(rows int32 [k, bs], masks float32 [k, bs])]: chunks of full batches, then the rest."""
        bs, per_call = self.batch_size, self.batches_per_call
        n_batches = -(-len(order) // bs)
        padded = np.zeros(n_batches * bs, np.int32)
        padded[: len(order)] = order
        mask = np.zeros(n_batches * bs, np.float32)
        mask[: len(order)] = 1
        rows, masks = padded.reshape(n_batches, bs), mask.reshape(n_batches, bs)
        calls = [(rows[i : i + per_call], masks[i : i + per_call]) for i in range(0, n_batches - n_batches % per_call, per_call)]
        calls += [(rows[i : i + 1], masks[i : i + 1]) for i in range(n_batches - n_batches % per_call, n_batches)]
        return calls

    def start(self, params, order):
        return [tuple(self.jax.device_put(a, self.device) for a in layer) for layer in _weights(self.arch, params)]

    def warmup(self, params, order):
        import time

        tic = time.perf_counter()
        state = self.start(params, order)
        for rows, masks in self._calls(order):
            if len(rows) not in self._compiled:
                lowered = self._epoch_chunk.lower(state, self.X, self.y, rows, masks)
                self._compiled[len(rows)] = lowered.compile()
        self.compile_seconds += time.perf_counter() - tic

    def train(self, state, order):
        for rows, masks in self._calls(order):
            state = self._compiled[len(rows)](state, self.X, self.y, rows, masks)
        self.jax.block_until_ready(state)
        return state

    def accuracy(self, state, test):
        jnp = self.jnp
        a = jnp.asarray(test.scaled)
        activation = {"sigmoid": self.jax.nn.sigmoid, "relu": self.jax.nn.relu, "tanh": jnp.tanh, "identity": lambda z: z}[self.arch.activation]
        for W, b in state[:-1]:
            a = activation(a @ W + b)
        W, b = state[-1]
        return float((np.asarray(jnp.argmax(a @ W + b, axis=1)) == test.labels).mean())


class SklearnRunner:
    name = "sklearn"
    peer = True

    def __init__(self, arch, lr, batch_size, seed):
        import sklearn

        _check_supported(arch)
        self.arch = arch
        self.lr = lr
        self.batch_size = batch_size
        self.seed = seed
        from .machine import blas_threads

        self.threads = blas_threads()  # (its matmuls run on NumPy's BLAS threads: audit 43)
        self.compile_seconds = 0.0
        self.implementation = (
            f"scikit-learn {sklearn.__version__} MLPClassifier(solver='sgd', momentum=0, alpha=0, "
            f"batch_size=bs, max_iter=1, shuffle=True), one fit() per repeat (includes its input check), "
            f"{self.threads or 'default'} BLAS threads"
        )

    def prepare(self, train):
        self.train_split = train

    def warmup(self, params, order):
        """Nothing to compile."""

    def _classifier(self):
        from sklearn.neural_network import MLPClassifier

        activation = {"sigmoid": "logistic", "relu": "relu", "tanh": "tanh", "identity": "identity"}[self.arch.activation]
        return MLPClassifier(
            hidden_layer_sizes=self.arch.layers[1:-1],
            activation=activation,
            solver="sgd",
            alpha=0.0,
            batch_size=self.batch_size,
            learning_rate="constant",
            learning_rate_init=self.lr,
            momentum=0.0,
            nesterovs_momentum=False,
            max_iter=1,
            shuffle=True,
            random_state=self.seed,
            warm_start=True,
        )

    def start(self, params, order):
        """A classifier whose next fit() starts from ``params`` (set up on one sample per class)."""
        X, y = self.train_split.scaled[: len(order)], self.train_split.labels[: len(order)]
        _, first_of_each_class = np.unique(y, return_index=True)
        model = self._classifier()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning: one epoch is the point
            model.fit(X[first_of_each_class], y[first_of_each_class])
        weights = _weights(self.arch, params)
        model.coefs_ = [W for W, _ in weights]
        model.intercepts_ = [b for _, b in weights]
        return model

    def train(self, model, order):
        # sklearn shuffles with its own generator: it trains on the same samples as everyone
        # (order is a permutation of the first len(order)), in its own order.
        X, y = self.train_split.scaled[: len(order)], self.train_split.labels[: len(order)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(X, y)
        return model

    def accuracy(self, model, test):
        return float(model.score(test.scaled, test.labels))
