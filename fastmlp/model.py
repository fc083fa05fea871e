"""The public estimator, ``MLP``: hyperparameters in, ``fit``/``predict``/``score`` out."""

from __future__ import annotations

import json

import numpy as np

from . import reference, trainer
from ._validation import check_X, check_y, positive_float, positive_int
from .backends import make_backend
from .network import Architecture, init_params, resolve_init


class MLP:
    """A multilayer perceptron trained by SGD.

    Parameters
    ----------
    layers : sequence of int
        Layer sizes from input to output, e.g. ``[784, 128, 10]``.
    activation : {"sigmoid", "tanh", "relu", "identity"}
        The hidden layers' activation.
    loss : {"cross_entropy", "mse", "binary_cross_entropy"}
        With ``output`` it fixes the output layer: cross_entropy -> softmax, binary_cross_entropy
        -> one sigmoid unit, mse -> identity (regression) unless ``output="softmax"``.
    output : {"softmax", "sigmoid", "identity"} or None
        Only needed for softmax + mse (mean squared error through the full softmax Jacobian).
    bias : bool
        Whether layers have biases.
    init : {"auto", "xavier", "he", "uniform", "normal", "zeros"}
        Weight initialisation (see ``fastmlp.network.init_params``); biases start at 0.
    dtype : {"float32", "float64"}
    seed : int
        Seeds the initial weights and the per-epoch shuffling: same seed, same run.
    backend : {"numba", "numpy"}
        The compiled core or the NumPy reference. Both share this trainer, so from the same
        seed they differ only in floating-point rounding.
    threads : int
        Threads for the compiled per-sample loop (batch_size=1; networks with one hidden
        layer). Mini-batch and full-batch training always use all Numba threads
        (``NUMBA_NUM_THREADS``); both are deterministic (see README). On a machine where other
        processes keep the cores busy, threads=1 is faster: the threads wait for each other
        once per sample.

    Learned state: ``params_`` (flat vector), ``weights_`` / ``biases_`` (views into it),
    ``history_``, ``compile_seconds_``.
    """

    def __init__(
        self,
        layers=(784, 128, 10),
        activation="sigmoid",
        loss="cross_entropy",
        output=None,
        bias=True,
        init="auto",
        dtype="float32",
        seed=0,
        backend="numba",
        threads=1,
    ):
        self.layers = layers
        self.activation = activation
        self.loss = loss
        self.output = output
        self.bias = bias
        self.init = init
        self.dtype = dtype
        self.seed = seed
        self.backend = backend
        self.threads = threads

    # --- set-up ------------------------------------------------------------------------------

    def _architecture(self):
        return Architecture(
            layers=self.layers,
            activation=self.activation,
            loss=self.loss,
            output=self.output,
            bias=self.bias,
            dtype=self.dtype,
        )

    def _check_seed(self):
        if isinstance(self.seed, (bool, np.bool_)) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise TypeError(f"seed must be a non-negative integer; got {self.seed!r}")

    def _build(self):
        """Check the hyperparameters and build the architecture and backend (no weights)."""
        self._check_seed()
        arch = self._architecture()
        resolve_init(self.init, arch.activation)
        threads = positive_int("threads", self.threads)
        self.arch_ = arch
        self.backend_ = make_backend(self.backend, arch, threads)
        self._shuffle_rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(1,)))
        self.epochs_trained_ = 0
        self.history_ = trainer.History()
        self.compile_seconds_ = 0.0

    def initialize(self):
        """(Re)build the network from the seed: fresh weights, fresh shuffle stream."""
        self._build()
        self.params_ = init_params(self.arch_, self.init, self.seed)
        return self

    def _check_params(self):
        """``params_`` as the kernels need it, or a ValueError before any kernel sees it."""
        params = self.params_
        layout = self.arch_.layout()
        expected = f"a C-contiguous 1-D {np.dtype(self.arch_.dtype).name} array of {layout.n_params} parameters"
        if not isinstance(params, np.ndarray):
            raise ValueError(f"params_ must be {expected}; got {type(params).__name__}")
        if params.dtype != self.arch_.dtype:
            raise ValueError(f"params_ must be {expected}; got dtype {params.dtype}")
        if params.ndim != 1 or params.size != layout.n_params:
            raise ValueError(f"params_ must be {expected} for layers {list(self.arch_.layers)}; got shape {params.shape}")
        if not params.flags.c_contiguous or not params.flags.writeable:
            raise ValueError(f"params_ must be {expected}, writeable; use np.ascontiguousarray(params_)")
        if not np.isfinite(params).all():
            raise ValueError(f"params_ contains NaN or infinity (first at index {int(np.flatnonzero(~np.isfinite(params))[0])})")

    @property
    def weights_(self):
        return [W for W, _ in self.arch_.layout().views(self.params_)]

    @property
    def biases_(self):
        return [b for _, b in self.arch_.layout().views(self.params_)]

    # --- training ----------------------------------------------------------------------------

    def fit(
        self,
        X,
        y,
        *,
        epochs=1,
        batch_size=1,
        lr=0.1,
        shuffle=True,
        validation_data=None,
        lr_schedule="constant",
        lr_decay=0.5,
        progress=None,
    ):
        """Train from a fresh initialisation. Returns the History (also ``history_``).

        ``batch_size`` 1 is per-sample SGD, ``None`` (or any size >= n_samples) is full-batch
        gradient descent. ``lr_schedule``: constant, exponential (lr * lr_decay**epoch),
        step (lr * lr_decay**(epoch // 10)) or cosine.
        """
        self._check_fit_args(epochs, batch_size, lr, shuffle, lr_schedule, lr_decay, progress)
        self.initialize()
        return self.partial_fit(
            X,
            y,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            shuffle=shuffle,
            validation_data=validation_data,
            lr_schedule=lr_schedule,
            lr_decay=lr_decay,
            progress=progress,
        )

    def partial_fit(
        self,
        X,
        y,
        *,
        epochs=1,
        batch_size=1,
        lr=0.1,
        shuffle=True,
        validation_data=None,
        lr_schedule="constant",
        lr_decay=0.5,
        progress=None,
    ):
        """Train further from the current weights (initialising first if there are none)."""
        self._check_fit_args(epochs, batch_size, lr, shuffle, lr_schedule, lr_decay, progress)
        if not hasattr(self, "params_"):
            self.initialize()
        self._check_params()
        arch = self.arch_
        X = check_X(X, arch)
        y = check_y(y, arch, len(X))
        evaluate = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise TypeError("validation_data must be a pair (X_val, y_val)")
            X_val = check_X(validation_data[0], arch, name="validation_data[0]")
            y_val = check_y(validation_data[1], arch, len(X_val), name="validation_data[1]")
            val_data = self.backend_.prepare(X_val)

            def evaluate():
                metrics = self._metrics(val_data, y_val)
                return metrics["loss"], metrics["accuracy"]

        batch = len(X) if batch_size is None else min(batch_size, len(X))
        data = self.backend_.prepare(X)
        compile_before = self.backend_.compile_seconds
        self.backend_.warmup(self.params_, data, y, batch)
        self.compile_seconds_ += self.backend_.compile_seconds - compile_before
        history = trainer.train(
            self.backend_,
            self.params_,
            data,
            y,
            epochs=epochs,
            batch_size=batch,
            lr=lr,
            schedule=lr_schedule,
            decay=lr_decay,
            shuffle_rng=self._shuffle_rng if shuffle else None,
            evaluate=evaluate,
            progress=progress,
            first_epoch=self.epochs_trained_,
            history=self.history_,
        )
        self.epochs_trained_ += epochs
        return history

    @staticmethod
    def _check_fit_args(epochs, batch_size, lr, shuffle, lr_schedule, lr_decay, progress=None):
        positive_int("epochs", epochs)
        if batch_size is not None:
            positive_int("batch_size", batch_size)
        positive_float("lr", lr)
        if positive_float("lr_decay", lr_decay) > 1:
            raise ValueError(f"lr_decay must be in (0, 1]: a factor above 1 would grow the learning rate; got {lr_decay!r}")
        if progress is not None and not isinstance(progress, (bool, np.bool_)):
            raise TypeError(f"progress must be None (a bar on terminals only), True or False; got {progress!r}")
        if not isinstance(shuffle, (bool, np.bool_)):
            raise TypeError(f"shuffle must be True or False; got {shuffle!r}")
        if not isinstance(lr_schedule, str) or lr_schedule not in trainer.SCHEDULES:
            raise ValueError(
                f"lr_schedule must be one of {', '.join(map(repr, trainer.SCHEDULES))}; got {lr_schedule!r}"
            )

    # --- inference ---------------------------------------------------------------------------

    def _require_fitted(self):
        if not hasattr(self, "params_"):
            raise RuntimeError("this MLP is not trained yet: call fit(X, y) first")

    def decision_function(self, X):
        """The output layer's pre-activation z[N, K] (logits)."""
        self._require_fitted()
        self._check_params()
        X = check_X(X, self.arch_)
        return self.backend_.logits(self.params_, self.backend_.prepare(X))

    def predict_proba(self, X):
        """Class probabilities [N, K] (softmax), P(class 1) [N, 1] (sigmoid) or outputs (regression)."""
        return reference.output_forward(self.decision_function(X), self.arch_.loss_code)

    def predict(self, X):
        """Class labels [N] for classifiers; outputs [N, K] for regression."""
        out = self.predict_proba(X)
        if not self.arch_.is_classifier:
            return out
        if self.arch_.n_classes == 2 and out.shape[1] == 1:
            return (out[:, 0] >= 0.5).astype(np.int64)
        return out.argmax(axis=1)

    def _metrics(self, data, y):
        z = self.backend_.logits(self.params_, data)
        out = reference.output_forward(z, self.arch_.loss_code)
        losses = reference.loss_forward(z, out, y, self.arch_.loss_code)
        accuracy = None
        if self.arch_.is_classifier:
            accuracy = reference.count_correct(out, y, self.arch_.loss_code) / len(y)
        return {"loss": float(losses.mean(dtype=np.float64)), "accuracy": accuracy}

    def evaluate(self, X, y):
        """{"loss": mean per-sample loss, "accuracy": fraction right (None for regression)}."""
        self._require_fitted()
        self._check_params()
        X = check_X(X, self.arch_)
        y = check_y(y, self.arch_, len(X))
        return self._metrics(self.backend_.prepare(X), y)

    def score(self, X, y):
        """Accuracy for classifiers; the coefficient of determination R^2 for regression."""
        self._require_fitted()
        if self.arch_.is_classifier:
            return self.evaluate(X, y)["accuracy"]
        X = check_X(X, self.arch_)
        y = check_y(y, self.arch_, len(X))
        residual = ((self.predict(X) - y) ** 2).sum(dtype=np.float64)
        total = ((y - y.mean(axis=0)) ** 2).sum(dtype=np.float64)
        return float(1 - residual / total) if total > 0 else float("nan")

    # --- persistence -------------------------------------------------------------------------

    def get_params(self):
        return {
            name: getattr(self, name)
            for name in ("layers", "activation", "loss", "output", "bias", "init", "dtype", "seed", "backend", "threads")
        }

    def save(self, path):
        """Write hyperparameters and weights to ``path`` (.npz), atomically."""
        from ._atomic import atomic_write

        self._require_fitted()
        config = self.get_params()
        config["layers"] = list(self.arch_.layers)
        config["dtype"] = np.dtype(self.arch_.dtype).name
        with atomic_write(path, "wb") as f:
            np.savez(f, params=self.params_, config=np.array(json.dumps(config)))

    @classmethod
    def load(cls, path):
        """The model ``save`` wrote, with its weights as saved: nothing is re-initialised."""
        with np.load(path, allow_pickle=False) as archive:
            config = json.loads(str(archive["config"]))
            params = archive["params"]
        model = cls(**config)
        model._build()
        n_params = model.arch_.layout().n_params
        if params.shape != (n_params,):
            raise ValueError(f"{path}: holds {params.size} parameters but its layers need {n_params}")
        model.params_ = np.ascontiguousarray(params, dtype=model.arch_.dtype)
        model._check_params()
        return model
