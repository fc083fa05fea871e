"""scikit-learn drop-ins: ``MLPClassifier`` and ``MLPRegressor`` trained by fastmlp's core.

The constructor parameters, their defaults and their meanings are those of
``sklearn.neural_network.MLPClassifier`` / ``MLPRegressor``, plus fastmlp's ``backend``,
``dtype`` and ``threads``. A ``fastmlp.MLP`` (``model_``) holds the network and trains it; the
estimator drives it with ``MLP.partial_fit`` and takes scikit-learn's per-epoch decisions
itself, as ``sklearn/neural_network/_multilayer_perceptron.py`` does. Epochs go one per call
when each needs a decision (a validation score, an 'invscaling' rate, ``partial_fit``); else
as many per call as cannot end in one (up to n_iter_no_change + 1), because a call costs a
pass over X besides the training.

- an epoch is one shuffled pass in batches of ``batch_size`` ('auto' = min(200, n_samples));
- its loss (``loss_curve_``) is scikit-learn's: the mean training loss of the epoch's batches
  (for regression half the squared error averaged over samples *and* outputs) plus the penalty
  0.5 * alpha * sum ||W||^2 / batch_size per batch, i.e. n_batches * 0.5 * alpha * ||W||^2 /
  n_samples per epoch;
- an epoch *improves* when the loss falls below ``best_loss_ - tol`` (with ``early_stopping``:
  when the held-out score, accuracy or R^2, rises above ``best_validation_score_ + tol``);
  after more than ``n_iter_no_change`` epochs in a row without improvement, 'adaptive' SGD
  divides the rate by 5 (stopping once it is <= 1e-6) and everything else stops;
- ``alpha`` is a coupled L2 decay of the weights (not the biases) by alpha / batch_size,
  which is ``fastmlp``'s ``weight_decay``; 'invscaling' trains epoch e at
  learning_rate_init / (t_ + 1)^power_t with t_ the samples seen before it.

Where the behaviour differs from scikit-learn's it is on purpose, said in the entries of the
classes' docstrings and listed in the README ("scikit-learn drop-in"): float32 data trained in
float32 end to end (float64 data in float64, as scikit-learn), ``partial_fit`` with early
stopping, and a ``warm_start`` that keeps the optimizer's state.
"""

from __future__ import annotations

import collections.abc
import math
import numbers
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, column_or_1d

from ._validation import _finite_floats, _numbers, boolean, non_negative_float, open_fraction, positive_float, positive_int, thread_count
from .backends import check_backend
from .model import MLP, unchanged_until_training, writable_arrays
from .network import DTYPES
from .trainer import DivergenceError

try:  # scikit-learn's error for a bad parameter: a ValueError and a TypeError (>= 1.2)
    from sklearn.utils._param_validation import InvalidParameterError
except ImportError:  # pragma: no cover

    class InvalidParameterError(ValueError, TypeError):
        pass

try:
    from sklearn.utils.validation import validate_data
except ImportError:  # scikit-learn < 1.6: the same check was a method of BaseEstimator

    def validate_data(estimator, *args, **kwargs):
        return estimator._validate_data(*args, **kwargs)


# scikit-learn's activation names -> fastmlp's
SKLEARN_ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
LEARNING_RATES = ("constant", "invscaling", "adaptive")
ADAPTIVE_DIVISOR = 5.0
ADAPTIVE_MIN_LR = 1e-6


def _choice(name, value, allowed):
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value


def _unit_interval(name, value, *, closed_right=False):
    """A number in [0, 1) (or [0, 1])."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number in [0, 1{']' if closed_right else ')'}; got {value!r}")
    if not (0 <= value <= 1 if closed_right else 0 <= value < 1):
        raise ValueError(f"{name} must be in [0, 1{']' if closed_right else ')'}; got {value!r}")
    return float(value)


def _dtype_name(dtype):
    try:
        return np.dtype(dtype).name
    except TypeError:
        return None


# type_of_target's kinds that check_classification_targets accepts
CLASSIFICATION_TARGETS = ("binary", "multiclass", "multiclass-multioutput", "multilabel-indicator", "multilabel-sequences")


def _check_random_state_argument(random_state):
    """check_random_state's check of ``random_state`` (its ValueError for anything else), without
    making the RandomState an int seeds (~0.1 ms)."""
    if random_state is None or random_state is np.random or isinstance(random_state, np.random.RandomState):
        return
    if isinstance(random_state, numbers.Integral) and 0 <= random_state <= 2**32 - 1:
        return
    check_random_state(random_state)


def _squared_norm(matrices):
    # in float64: a diverging float32 fit's squares overflowed float32 (inf, with a RuntimeWarning);
    # beyond float64's range the penalty is inf, said by the loss, not by a warning. Squares summed
    # by NumPy, not a dot product: BLAS's threads, woken at every partial_fit call and then spinning
    # beside the kernel's, made a partial_fit of 32 samples 11.4-13.9 ms against 2.4-4.0 (session 60)
    with np.errstate(over="ignore"):
        return sum(float(np.square(W, dtype=np.float64).sum()) for W in matrices)


def _hidden_layer_sizes(value):
    sizes = [value] if isinstance(value, numbers.Integral) else value
    # (a sized collection: an iterator, read once by the check, built a network without hidden
    # layers later, audit 66; scikit-learn refuses one)
    if isinstance(sizes, str) or not hasattr(sizes, "__iter__") or not hasattr(sizes, "__len__"):
        raise TypeError(f"hidden_layer_sizes must be an integer or a sequence of integers like (100,); got {value!r}")
    sizes = list(sizes)
    for position, size in enumerate(sizes):
        if isinstance(size, (bool, np.bool_)) or not isinstance(size, numbers.Integral) or size < 1:
            raise ValueError(f"hidden_layer_sizes must hold integers >= 1; got {size!r} at position {position}")
    return [int(size) for size in sizes]


def _keep_out_activation(estimator, value):
    """``out_activation_ = value``: scikit-learn's forward pass reads it (set to 'identity', a
    classifier's predict_proba gives the raw outputs); fastmlp's network fixes its output layer,
    so another value is refused, with where the raw outputs are (audit 66: a bare AttributeError
    "property has no setter")."""
    if value == estimator.out_activation_:
        return
    raise AttributeError(
        f"out_activation_ is fixed by the targets in fastmlp ({estimator.out_activation_!r}); setting it to "
        f"{value!r} would change nothing. The output layer's raw outputs (before its activation) are "
        f"estimator.model_.decision_function(np.asarray(X, float)) (model_ takes uint8 X for pixels, scaled by 1/255)"
    )


def _dense_only(X):
    """A TypeError for a scipy.sparse X (scikit-learn's words, then where a Pipeline's sparse
    output comes from: a user of one cannot call toarray() between its steps)."""
    if hasattr(X, "toarray") and hasattr(X, "nnz"):
        raise TypeError("Sparse data was passed for X, but dense data is required: pass X.toarray(); in a Pipeline, "
                        "have the step before give dense output, e.g. OneHotEncoder(sparse_output=False) or "
                        "ColumnTransformer(..., sparse_threshold=0)")


class _LayerArrays(list):
    """``coefs_`` or ``intercepts_``: a list of views into the model's parameters, in which an
    assigned item is copied into the view (scikit-learn's lists hold their own arrays, which a
    user may replace, e.g. to start a ``warm_start`` fit from chosen weights)."""

    def __init__(self, name, views):
        super().__init__(views)
        self._name = name

    def _checked(self, i, value):
        view = list.__getitem__(self, i)
        array = np.asarray(value)
        if array.shape != view.shape:
            raise ValueError(f"{self._name}[{i}] has shape {view.shape}; got an array of shape {array.shape}")
        if array.dtype.kind not in "biuf" or not np.isfinite(array).all():
            raise ValueError(f"{self._name}[{i}] must hold finite numbers; got {array.dtype} with NaN, infinity or no numbers")
        return view, array

    def __setitem__(self, index, value):
        if isinstance(index, slice):
            indices, values = range(len(self))[index], list(value)
            if len(values) != len(indices):
                raise ValueError(f"{self._name}[{index.start}:{index.stop}] holds {len(indices)} layers; got {len(values)}")
        else:
            indices, values = [range(len(self))[index]], [value]
        checked = [self._checked(i, v) for i, v in zip(indices, values)]  # all, before any is written
        for view, array in checked:
            view[...] = array

    def assign(self, arrays):
        # one array per layer, in a list or tuple (None said "'NoneType' object is not iterable",
        # a string of 3 letters "got 3"; audit 60)
        if isinstance(arrays, (str, bytes)) or not isinstance(arrays, collections.abc.Iterable):
            raise TypeError(f"{self._name} must be a list of arrays, one per layer ({len(self)}); got "
                            f"{type(arrays).__name__} {arrays!r:.60}")
        arrays = list(arrays)
        if len(arrays) != len(self):
            raise ValueError(f"{self._name} holds one array per layer ({len(self)}); got {len(arrays)}")
        self[:] = arrays


class _BaseMLP(BaseEstimator):
    """What the classifier and the regressor share: parameters, the epoch loop, the attributes."""

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        backend="numba",
        dtype=None,
        threads="auto",
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.backend = backend
        self.dtype = dtype
        self.threads = threads

    # --- hyperparameters ---------------------------------------------------------------------

    def _check_hyperparameters(self):
        """The constructor parameters checked (errors name the parameter and the value)."""
        _hidden_layer_sizes(self.hidden_layer_sizes)
        _choice("activation", self.activation, tuple(SKLEARN_ACTIVATIONS))
        if self.solver == "lbfgs":
            raise ValueError(
                "solver='lbfgs' is not available in fastmlp (its compiled core trains by SGD and Adam); "
                "use solver='adam' or 'sgd', or sklearn.neural_network for L-BFGS"
            )
        _choice("solver", self.solver, ("sgd", "adam"))
        non_negative_float("alpha", self.alpha)
        if not (isinstance(self.batch_size, str) and self.batch_size == "auto"):
            positive_int("batch_size ('auto' or)", self.batch_size)
        _choice("learning_rate", self.learning_rate, LEARNING_RATES)
        positive_float("learning_rate_init", self.learning_rate_init)
        non_negative_float("power_t", self.power_t)
        positive_int("max_iter", self.max_iter)
        boolean("shuffle", self.shuffle)
        non_negative_float("tol", self.tol)
        boolean("warm_start", self.warm_start)
        if _unit_interval("momentum", self.momentum, closed_right=True) == 1:
            raise ValueError("momentum=1 never forgets a gradient, so the velocity never decays; fastmlp needs momentum < 1")
        boolean("nesterovs_momentum", self.nesterovs_momentum)
        boolean("early_stopping", self.early_stopping)
        _unit_interval("validation_fraction", self.validation_fraction)  # checked always, as scikit-learn
        if self.early_stopping:
            open_fraction("validation_fraction", self.validation_fraction)
        if not isinstance(self.verbose, (numbers.Integral, np.bool_)):
            raise TypeError(f"verbose must be a bool or an integer; got {self.verbose!r}")
        _unit_interval("beta_1", self.beta_1)
        _unit_interval("beta_2", self.beta_2)
        positive_float("epsilon", self.epsilon)
        if not (isinstance(self.n_iter_no_change, float) and self.n_iter_no_change == math.inf):
            positive_int("n_iter_no_change (an integer or np.inf)", self.n_iter_no_change)
        positive_int("max_fun", self.max_fun)
        if self.dtype is not None and _dtype_name(self.dtype) not in DTYPES:
            raise ValueError(f"dtype must be None (follow X, as scikit-learn), 'float32' or 'float64'; got {self.dtype!r}")
        try:
            _check_random_state_argument(self.random_state)
        except ValueError:
            raise ValueError(f"random_state must be an int in [0, 2**32 - 1], a numpy.random.RandomState or None; "
                             f"got {self.random_state!r}") from None
        check_backend(self.backend)
        thread_count(self.threads)

    def _input_dtype(self):
        """The dtypes validate_data may leave X in: the model's once it exists, else ``dtype``
        or, for None, scikit-learn's rule (float32 stays float32, everything else float64)."""
        if hasattr(self, "model_"):
            return np.dtype(self.model_.arch_.dtype)
        if self.dtype is not None:
            return np.dtype(self.dtype)
        return (np.float64, np.float32)

    def _training_options(self, batch_size, mean_weight):
        """``MLP.partial_fit`` keyword arguments for one epoch (the rate is set per epoch)."""
        if self.solver == "adam":
            options = {"optimizer": "adam", "momentum": 0.0, "nesterov": False,
                       "beta1": float(self.beta_1), "beta2": float(self.beta_2), "eps": float(self.epsilon)}
        else:
            momentum = float(self.momentum)
            options = {"optimizer": "sgd", "momentum": momentum, "nesterov": bool(self.nesterovs_momentum and momentum > 0)}
        # scikit-learn adds alpha * W to the batch's summed gradient and divides by the batch's
        # total sample weight: a coupled decay of alpha / (batch_size * mean weight) per step.
        options["weight_decay"] = float(self.alpha) / (batch_size * mean_weight)
        options.update(batch_size=batch_size, shuffle=bool(self.shuffle), lr_schedule="constant", progress=False)
        return options

    # --- fitting -----------------------------------------------------------------------------

    def fit(self, X, y, sample_weight=None):
        """Train up to ``max_iter`` epochs from fresh weights (or, with ``warm_start``, from the
        previous fit's weights and optimizer state).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The input data: dense (a sparse matrix is a TypeError); uint8 is taken as the
            numbers it holds, not scaled by 1/255. With dtype=None its dtype picks the model's.

        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            The targets: class labels or a 0/1 multilabel indicator matrix (classifier), real
            values (regressor).

        sample_weight : array-like of shape (n_samples,), default=None
            Per-sample weights >= 0 (a negative one is refused, unlike scikit-learn): each
            sample's loss and gradient are scaled by its weight over the mean weight. None: all 1.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        return self._fit(X, y, sample_weight, incremental=False)

    def _fit(self, X, y, sample_weight, incremental):
        # A call that fails its checks (hyperparameters, X, y, sample_weight, the validation
        # split) leaves the estimator as it was, its fitted model included; once _train has
        # begun changing the model, what it trained stays.
        with unchanged_until_training(self):
            return self._checked_fit(X, y, sample_weight, incremental)

    def _checked_fit(self, X, y, sample_weight, incremental):
        try:
            self._check_hyperparameters()
        except (TypeError, ValueError) as error:
            if isinstance(error, InvalidParameterError):
                raise
            # scikit-learn's type: code that catches ValueError (or TypeError) for a bad parameter
            raise InvalidParameterError(str(error)) from None
        first_pass = not hasattr(self, "model_") or (not self.warm_start and not incremental)
        if first_pass:
            for name in ("model_", "_validation", "_last_params", "_stopped"):
                self.__dict__.pop(name, None)
        X, targets = self._validate_input(X, y, incremental, reset=first_pass)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64)
            if (sample_weight < 0).any():  # (MLP.fit's words, _validation.check_sample_weight's: the value and its row)
                row = int(np.argmax(sample_weight < 0))
                raise ValueError(f"sample_weight must be finite and >= 0; got {float(sample_weight[row])!r} at row {row}")
            if not sample_weight.sum() > 0:
                raise ValueError("sample_weight is 0 for every sample: nothing would be trained")
        # (made only where drawn from: check_random_state(int) makes a RandomState, ~0.1 ms of a
        # partial_fit call of 32 rows)
        random_state = check_random_state(self.random_state) if first_pass or self.early_stopping else None
        if first_pass:
            self._initialize(X, targets, random_state)
        elif (self.validation_scores_ is not None) != bool(self.early_stopping):
            # early_stopping switched since the run began (set_params, then partial_fit or a
            # warm-start fit): its bookkeeping was the other kind (an AttributeError, after an epoch)
            self._start_bookkeeping()
        elif self.early_stopping and incremental and self._stopped:
            why = ("its training diverged" if self._stopped == "diverged" else
                   f"more than {self.n_iter_no_change} in a row without an improvement of the validation score by "
                   f"tol={self.tol}")
            warnings.warn(
                f"early stopping ended this run (its fit or first partial_fit call started it) after "
                f"{len(self.validation_scores_)} epochs, {why}; the model keeps its best weights and this call trains "
                f"nothing. Call fit() to start a new run",
                ConvergenceWarning,
            )
            return self
        self._train(X, targets, sample_weight, random_state, incremental)
        return self

    def _initialize(self, X, targets, random_state):
        """A new network for X's features and the targets' outputs, and a fresh run."""
        hidden = _hidden_layer_sizes(self.hidden_layer_sizes)
        self.n_outputs_ = self._n_outputs(targets)
        self.n_layers_ = len(hidden) + 2
        self.model_ = MLP(
            layers=[X.shape[1], *hidden, self.n_outputs_],
            activation=SKLEARN_ACTIVATIONS[self.activation],
            loss=self._loss(),
            dtype=X.dtype.name,
            # one draw from random_state seeds the weights and the shuffling (None: a fresh seed)
            seed=int(random_state.randint(np.iinfo(np.int32).max)),
            backend=self.backend,
            threads=self.threads,
        )
        self.model_._input_scale_warning = False  # X as scikit-learn takes it: the numbers it holds
        self._initialize_weights()
        self.n_iter_ = 0
        self.t_ = 0
        self.loss_curve_ = []
        self._learning_rate = float(self.learning_rate_init)
        self._start_bookkeeping()

    def _start_bookkeeping(self):
        """The run's record of improvement, of the kind ``early_stopping`` asks for: validation
        scores, or the training loss (a run whose setting changed since it began starts afresh
        on the other kind, with fresh patience)."""
        self._no_improvement_count = 0
        self._stopped = False
        self._best_params = None
        self.__dict__.pop("_validation", None)
        if self.early_stopping:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        else:
            self.validation_scores_ = None
            self.best_validation_score_ = None
            self.best_loss_ = np.inf

    def _initialize_weights(self):
        """scikit-learn's initialisation (Glorot et al.), drawn from the model's seed: every
        weight and bias uniform in +-sqrt(factor / (fan_in + fan_out)), factor 2 for the
        logistic activation and 6 otherwise."""
        model = self.model_.initialize()
        rng = np.random.default_rng(model.seed)
        factor = 2.0 if self.activation == "logistic" else 6.0
        for W, b in zip(model.weights_, model.biases_):
            bound = math.sqrt(factor / (W.shape[0] + W.shape[1]))
            W[...] = rng.uniform(-bound, bound, W.shape)
            b[...] = rng.uniform(-bound, bound, b.shape)

    def _split(self, X, targets, sample_weight, random_state, incremental):
        """(train, validation) parts, each (X, targets, sample_weight); validation None without
        early stopping. partial_fit holds out part of its first call's data (the first after a
        fit too) and scores every later call on that same validation set."""
        if not self.early_stopping:
            return (X, targets, sample_weight), None
        if incremental and getattr(self, "_validation", None) is not None:
            return (X, targets, sample_weight), self._validation
        # stratified for classification with one output (binary, or one label column), as scikit-learn
        # (n_outputs_ == 1; a multiclass split is not stratified: each class need not be in both parts)
        stratify = targets if self._is_classifier and self.n_outputs_ == 1 else None
        arrays = [X, targets] + ([] if sample_weight is None else [sample_weight])
        # (a NumPy float: train_test_split's own check refused np.float32(0.2) in its words, audit 40)
        parts = train_test_split(*arrays, random_state=random_state, test_size=float(self.validation_fraction),
                                 stratify=stratify)
        train, val = parts[0::2], parts[1::2]
        if len(val[0]) < 2:
            raise ValueError("The validation set is too small. Increase 'validation_fraction' or the size of your dataset.")
        if sample_weight is None:
            train, val = train + [None], val + [None]
        else:
            for part, weights in (("training", train[2]), ("validation", val[2])):
                if not weights.sum() > 0:  # (training: a division by zero; validation: no score, after an epoch)
                    raise ValueError(
                        f"sample_weight is zero on every sample of the {part} part of the early-stopping split "
                        f"(validation_fraction={self.validation_fraction}): give weight to more samples, or change "
                        f"random_state or validation_fraction"
                    )
        validation = tuple(val)
        if incremental:
            # the run's validation set from here on; a run that fit() began was scored on the
            # fit's (not kept): the best score and the patience start afresh on this one
            self._validation = validation
            self.best_validation_score_ = -np.inf
            self._no_improvement_count = 0
        return tuple(train), validation

    def _train(self, X, targets, sample_weight, random_state, incremental):
        """The epoch loop: scikit-learn's ``_fit_stochastic`` around ``MLP.partial_fit``."""
        (X_train, t_train, sw_train), validation = self._split(X, targets, sample_weight, random_state, incremental)
        n_samples = len(X_train)
        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped")
            batch_size = int(np.clip(self.batch_size, 1, n_samples))
        mean_weight = 1.0 if sw_train is None else float(sw_train.mean())
        options = self._training_options(batch_size, mean_weight)
        if sw_train is not None:
            options["sample_weight"] = sw_train
        self._training = True  # from here on the model changes
        model = self.model_
        if getattr(model, "optimizer_state_", None) is not None and (
            model.fit_options_["optimizer"] != options["optimizer"] or (model.fit_options_["momentum"] > 0) != (options["momentum"] > 0)
        ):
            model.optimizer_state_ = None  # warm start with another kind of optimizer: its state starts afresh
        if getattr(self, "_last_params", None) is not None:
            model.params_[...] = self._last_params  # partial_fit goes on from its last, not its best, weights
            self._last_params = None
        # the penalty scikit-learn adds to an epoch's loss is penalty_scale * sum ||W||^2 (the mean
        # over its batches of the norm at each batch's start)
        n_batches = math.ceil(n_samples / batch_size)
        penalty_scale = n_batches * 0.5 * float(self.alpha) / (n_samples * mean_weight)
        invscaling = self.solver == "sgd" and self.learning_rate == "invscaling"
        if not incremental:  # each fit starts at learning_rate_init with fresh patience
            self._no_improvement_count = 0
            self._learning_rate = float(self.learning_rate_init)
        self.n_iter_ = 0
        stopped = interrupted = False
        while self.n_iter_ < self.max_iter and not (stopped or interrupted):
            if invscaling:
                self._learning_rate = float(self.learning_rate_init) / (self.t_ + 1) ** float(self.power_t)
            # Epochs that cannot end in a decision train in one call (MLP.partial_fit costs a
            # pass over X per call): the first possible one is n_iter_no_change + 1 epochs
            # without improvement away. Per-epoch validation, rates and partial_fit: one epoch.
            epochs = 1
            if validation is None and not invscaling and not incremental:
                epochs = self.max_iter - self.n_iter_
                if self.n_iter_no_change != math.inf:
                    epochs = min(epochs, int(self.n_iter_no_change) + 1 - self._no_improvement_count)
            done_before = len(model.history_.loss)
            norms = [_squared_norm(model.weights_)]  # the call's start, then each epoch's end
            if self.alpha:
                options["on_epoch"] = lambda history: norms.append(_squared_norm(model.weights_))
            try:
                model.partial_fit(X_train, t_train, epochs=epochs, lr=self._learning_rate, **options)
            except KeyboardInterrupt:  # the model keeps the weights of its last completed chunk
                warnings.warn("Training interrupted by user.")
                interrupted = True
            except BaseException as error:
                # e.g. a DivergenceError in a later epoch of a many-epoch call: the epochs the
                # model completed before it are booked (n_iter_, t_, loss_curve_ match its weights)
                self._book_epochs(model.history_.loss[done_before:], norms, penalty_scale, n_batches, n_samples,
                                  validation)
                if not (isinstance(error, DivergenceError) and validation is not None and self._best_params is not None):
                    raise
                # with early stopping, scikit-learn's run goes on to max_iter on NaN scores and
                # ends on the best-scoring weights without an error (its test_mlp_diverging_loss,
                # audit 66): here the run ends at the divergence, on those weights, and says so
                warnings.warn(
                    f"{error}; early stopping ends the run with the weights of its best validation score "
                    f"({self.best_validation_score_:.6g}, epoch {int(np.argmax(self.validation_scores_)) + 1})",
                    ConvergenceWarning,
                )
                self._stopped = "diverged"  # (true: later partial_fit calls train nothing, and say why)
                break
            stopped = self._book_epochs(model.history_.loss[done_before:], norms, penalty_scale, n_batches, n_samples,
                                        validation)
            if incremental:
                break
            if self.n_iter_ == self.max_iter and not stopped:
                warnings.warn(
                    "Stochastic Optimizer: Maximum iterations (%d) reached and the optimization hasn't converged yet."
                    % self.max_iter,
                    ConvergenceWarning,
                )
        if validation is not None and self._best_params is not None:
            # the model holds the best-scoring weights; partial_fit goes on from the last ones
            if incremental:
                self._last_params = model.params_.copy()
            model.params_[...] = self._best_params

    def _book_epochs(self, done, norms, penalty_scale, n_batches, n_samples, validation):
        """_book_epoch for each data loss in ``done`` (the epochs of one MLP.partial_fit call);
        True when the run must stop. ``norms``: the squared norm of the weights at the call's
        start and after each epoch (with ``alpha``; else the start alone)."""
        stopped = False
        for epoch, data_loss in enumerate(done, 1):
            start = norms[epoch - 1] if epoch - 1 < len(norms) else _squared_norm(self.model_.weights_)
            end = norms[epoch] if epoch < len(norms) else _squared_norm(self.model_.weights_)
            # scikit-learn's penalty: the norm at each batch's start, averaged over the epoch's
            # batches; the norm taken as linear within the epoch (its end alone moved the loss
            # curve by about 1e-4 at alpha=0.01, and n_iter_no_change's stopping epoch with it)
            penalty = start + (end - start) * (n_batches - 1) / (2 * n_batches)
            stopped = self._book_epoch(data_loss, penalty_scale * penalty, n_samples, validation)
        return stopped

    def _book_epoch(self, data_loss, penalty, n_samples, validation):
        """scikit-learn's bookkeeping after an epoch (loss, score, patience, adaptive rate);
        True when the run must stop."""
        self.n_iter_ += 1
        self.t_ += n_samples
        self.loss_ = np.float64(self._data_loss(data_loss) + penalty)  # (scikit-learn's is a NumPy float)
        self.loss_curve_.append(self.loss_)
        if self.verbose:
            print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))
        if validation is not None:
            score = self._validation_score(*validation)
            self.validation_scores_.append(score)
            if self.verbose:
                print("Validation score: %f" % score)
            improved = not score < self.best_validation_score_ + self.tol
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_params = self.model_.params_.copy()
        else:
            improved = not self.loss_ > self.best_loss_ - self.tol
            self.best_loss_ = min(self.best_loss_, self.loss_)
        self._no_improvement_count = 0 if improved else self._no_improvement_count + 1
        if self._no_improvement_count <= self.n_iter_no_change:
            return False
        if self.solver == "sgd" and self.learning_rate == "adaptive" and self._learning_rate > ADAPTIVE_MIN_LR:
            self._learning_rate /= ADAPTIVE_DIVISOR
            self._no_improvement_count = 0
            if self.verbose:
                print("No improvement for more than %s epochs: learning rate set to %f" % (self.n_iter_no_change, self._learning_rate))
            return False
        self._stopped = validation is not None
        if self.verbose:
            print("No improvement by more than tol=%f for %s epochs: stopping." % (self.tol, self.n_iter_no_change))
        return True

    def _data_loss(self, fastmlp_loss):
        """scikit-learn's loss of the epoch from fastmlp's mean per-sample loss."""
        return fastmlp_loss

    def _validation_score(self, X, targets, sample_weight):
        # (quiet: scikit-learn's account of an overflow, a regressor's NaN score or a classifier's
        # accuracy, at every epoch, rather than a warning at every epoch)
        predicted = self._predict_targets(X, quiet=True)
        if np.issubdtype(predicted.dtype, np.floating) and not np.isfinite(predicted).all():
            return np.nan
        return float(self._score_function(targets, predicted, sample_weight=sample_weight))

    # --- learned attributes ------------------------------------------------------------------

    @property
    def coefs_(self):
        """Weight matrices [n_in, n_out] per layer: views into ``model_.params_``. Writing into
        them, assigning one (``coefs_[0] = W``) or the list (``coefs_ = [...]``) sets the
        model's weights; the shapes must stay."""
        return _LayerArrays("coefs_", self._fitted_model("coefs_").weights_)

    @coefs_.setter
    def coefs_(self, arrays):
        check_is_fitted(self, "model_")
        _LayerArrays("coefs_", self.model_.weights_).assign(arrays)

    @property
    def intercepts_(self):
        """Bias vectors [n_out] per layer: views into ``model_.params_`` (set as ``coefs_``)."""
        return _LayerArrays("intercepts_", self._fitted_model("intercepts_").biases_)

    def _fitted_model(self, attribute):
        """``model_``; before fit, the AttributeError scikit-learn's estimators give (naming ``attribute``)."""
        model = self.__dict__.get("model_")
        if model is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {attribute!r}")
        return model

    @intercepts_.setter
    def intercepts_(self, arrays):
        check_is_fitted(self, "model_")
        _LayerArrays("intercepts_", self.model_.biases_).assign(arrays)

    def _outputs(self, X, quiet=False):
        """The output layer's activations [N, n_outputs] for validated X (``quiet``: NaN or
        infinite outputs not warned of)."""
        return self.model_._outputs(X, quiet=quiet)

    def _validated(self, X):
        check_is_fitted(self, "model_")
        _dense_only(X)
        return validate_data(self, X, reset=False, dtype=self._input_dtype())

    def __setstate__(self, state):
        super().__setstate__(state)
        self.__dict__.pop("_training", None)  # a copy made during a training call is not training
        writable_arrays(self.__dict__)  # joblib's read-only memory maps: the model trains in place

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        return tags


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier, scikit-learn's ``MLPClassifier`` on fastmlp's core.

    The same parameters, defaults and fitted attributes as
    ``sklearn.neural_network.MLPClassifier``, plus fastmlp's ``backend``, ``dtype`` and
    ``threads``; a ``fastmlp.MLP`` (``model_``) trains by scikit-learn's per-epoch rules.
    Multiclass targets train a softmax output with cross-entropy, binary targets one logistic
    unit, multilabel indicator targets [n_samples, K] K logistic units with binary
    cross-entropy. Labels may be any values (``classes_``).

    Differences from scikit-learn are stated in the entries below; besides them: X must be
    dense (sparse X is a TypeError) and uint8 X is taken as the numbers it holds (not
    scaled by 1/255 as ``fastmlp.MLP`` reads pixels); a negative sample_weight is refused;
    training that diverges raises ``fastmlp.DivergenceError`` (a ValueError too) when it
    happens; the ConvergenceWarning is issued from ``fastmlp.estimators`` (a filter with
    ``module="sklearn"`` does not reach it). A bad parameter value is refused at fit with
    scikit-learn's InvalidParameterError (a ValueError and a TypeError).

    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default=(100,)
        The ith element is the number of neurons of the ith hidden layer; () for none. The
        network is built by the first fit: a later warm-start fit or ``partial_fit`` keeps it.

    activation : {'identity', 'logistic', 'tanh', 'relu'}, default='relu'
        Activation of the hidden layers ('logistic' is fastmlp's 'sigmoid'). The output
        layer's follows from the targets (``out_activation_``).

    solver : {'sgd', 'adam'}, default='adam'
        Stochastic gradient descent or Adam, with scikit-learn's update rules. 'lbfgs' is
        not available: refused at fit with a ValueError (unlike scikit-learn).

    alpha : float, default=0.0001
        Strength of the L2 penalty on the weights (not the biases): a coupled decay of
        alpha / batch_size per step (scikit-learn divides by each batch's size, so its short
        last batch decays more); ``loss_`` adds n_batches * 0.5 * alpha * ||W||^2 / n_samples.

    batch_size : int or 'auto', default='auto'
        Size of the minibatches; 'auto' is min(200, n_samples). A larger value is clipped
        to the number of training samples, with a warning.

    learning_rate : {'constant', 'invscaling', 'adaptive'}, default='constant'
        Rate schedule, for solver='sgd' only. 'invscaling': each epoch trains at
        learning_rate_init / (t_ + 1) ** power_t. 'adaptive': the rate is divided by 5 after
        more than n_iter_no_change epochs without improvement; the run stops once it is <= 1e-6.

    learning_rate_init : float, default=0.001
        The initial learning rate; the rate throughout with 'constant' and with 'adam'. A
        warm-start fit starts at it again ('adaptive' reductions are not carried over).

    power_t : float, default=0.5
        The exponent of the 'invscaling' schedule. Only used with solver='sgd'.

    max_iter : int, default=200
        The maximum number of epochs (passes over the data) of a fit; reaching it without
        stopping warns with a ConvergenceWarning. ``partial_fit`` trains one epoch per call.

    shuffle : bool, default=True
        Whether to shuffle the samples in each epoch.

    random_state : int, RandomState instance or None, default=None
        One seed drawn from it seeds the initial weights (Glorot uniform, as scikit-learn) and
        the shuffling; the early-stopping split is drawn from it too. None: a new seed per fit.

    tol : float, default=1e-4
        An epoch improves when the loss falls below ``best_loss_ - tol`` (with
        early_stopping: the validation score rises above ``best_validation_score_ + tol``).

    verbose : bool or int, default=False
        Whether to print scikit-learn's progress lines (loss, validation score) per epoch.

    warm_start : bool, default=False
        Whether fit continues from the previous fit's weights. Unlike scikit-learn it also keeps
        the optimizer's state (Adam's moments, the SGD velocity; another solver, or momentum
        switched on or off, starts a fresh one) and starts with fresh patience.

    momentum : float, default=0.9
        Momentum of the SGD updates, in [0, 1): momentum=1 is refused (scikit-learn accepts
        it). Only used with solver='sgd'.

    nesterovs_momentum : bool, default=True
        Whether to use Nesterov's momentum. Only used with solver='sgd' and momentum > 0.

    early_stopping : bool, default=False
        Whether to hold out ``validation_fraction`` of the data (stratified for binary targets
        only, as scikit-learn's code does), stop when its accuracy stops improving and end with
        the best-scoring weights. Unlike scikit-learn's, ``partial_fit`` supports it (its first
        call holds out the validation set).

    validation_fraction : float, default=0.1
        The fraction of the training data held out with early_stopping, in (0, 1); checked
        to be in [0, 1) even without early_stopping.

    beta_1 : float, default=0.9
        Exponential decay rate of Adam's first moment estimates, in [0, 1). Only used with
        solver='adam'.

    beta_2 : float, default=0.999
        Exponential decay rate of Adam's second moment estimates, in [0, 1). Only used with
        solver='adam'.

    epsilon : float, default=1e-8
        Adam's value for numerical stability. Only used with solver='adam'.

    n_iter_no_change : int or np.inf, default=10
        The run stops (or an 'adaptive' rate falls) after more than this many epochs in a row
        without improvement by ``tol``; np.inf never stops early.

    max_fun : int, default=15000
        Accepted for compatibility and unused: it bounds L-BFGS, which fastmlp does not have.

    backend : {'numba', 'numpy'}, default='numba'
        fastmlp only: the ``fastmlp.MLP`` backend, compiled numba kernels or plain NumPy.

    dtype : {None, 'float32', 'float64'}, default=None
        fastmlp only: the precision of the network, end to end. None: float32 X trains in
        float32, any other X in float64 (as scikit-learn). Later X is cast to the model's dtype,
        and predictions are in it (scikit-learn returns the dtype of the X it predicts).

    threads : 'auto' or int, default='auto'
        fastmlp only: the training threads, as ``fastmlp.MLP``'s ('auto': mini-batch training on
        one or all numba threads, whichever measured faster; plain per-sample SGD likewise on one
        or two where they give the same bits).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels (sorted); np.arange(K) for multilabel indicator targets.

    loss_ : float
        The loss of the last epoch: the mean log-loss of its batches plus the L2 penalty (see
        ``alpha``). Unlike scikit-learn's, the log-loss is not clipped to [eps, 1 - eps]
        first, so the two differ where predictions saturate.

    best_loss_ : float or None
        The lowest ``loss_`` of the run; None with early_stopping (see
        ``best_validation_score_``).

    loss_curve_ : list of float
        ``loss_`` of every epoch of the run (a warm-start fit or ``partial_fit`` appends).

    validation_scores_ : list of float or None
        The accuracy on the held-out set after each epoch (weighted by sample_weight); None
        without early_stopping.

    best_validation_score_ : float or None
        The best of ``validation_scores_``, whose weights the model holds; None without
        early_stopping.

    t_ : int
        The number of training samples seen in the run (held-out ones excluded); the
        'invscaling' schedule's time step.

    coefs_ : list of ndarray, of length n_layers_ - 1
        The weight matrices [n_in, n_out] of the layers, in the model's dtype: views into
        ``model_.params_`` (writing into them, or assigning an item or the list, sets the model's).

    intercepts_ : list of ndarray, of length n_layers_ - 1
        The bias vectors [n_out] of the layers: views into ``model_.params_``, as ``coefs_``.

    n_features_in_ : int
        Number of features seen during fit.

    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of the features seen during fit; set only when X has string feature names.

    n_iter_ : int
        The number of epochs the last call to fit trained (1 after ``partial_fit``).

    n_layers_ : int
        Number of layers, the input and output layers included.

    n_outputs_ : int
        Number of output units: 1 for binary targets, n_classes for multiclass, K for multilabel.

    out_activation_ : str
        The output layer's activation: 'softmax' (multiclass) or 'logistic' (binary, multilabel).

    model_ : fastmlp.MLP
        fastmlp only: the network that trains and predicts (also ``history_``,
        ``optimizer_state_``, ``save()``).

    See Also
    --------
    MLPRegressor : The regressor on the same core.
    fastmlp.MLP : The network underneath, with fastmlp's own options.
    """

    _is_classifier = True

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        backend="numba",
        dtype=None,
        threads="auto",
    ):
        # written out, as scikit-learn's estimators do: an unknown keyword's TypeError names
        # MLPClassifier.__init__ (not _BaseMLP's), and help() shows the parameters
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver, alpha=alpha,
            batch_size=batch_size, learning_rate=learning_rate, learning_rate_init=learning_rate_init,
            power_t=power_t, max_iter=max_iter, shuffle=shuffle, random_state=random_state, tol=tol,
            verbose=verbose, warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction, beta_1=beta_1,
            beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun,
            backend=backend, dtype=dtype, threads=threads,
        )

    def _loss(self):
        return "cross_entropy" if self._softmax else "binary_cross_entropy"

    def _n_outputs(self, targets):
        if self._target_kind == "multilabel":
            return targets.shape[1]
        return len(self.classes_) if self._softmax else 1

    @property
    def _softmax(self):
        return self._target_kind == "multiclass"

    def _validate_input(self, X, y, incremental, reset):
        """(X, targets): targets are label indices into classes_ (multiclass and binary) or
        the 0/1 indicator matrix (multilabel)."""
        if hasattr(y, "toarray") and hasattr(y, "nnz"):  # scipy.sparse
            raise ValueError("y as a sparse matrix is not supported: pass y.toarray() (a dense multilabel indicator "
                             "matrix; predict then returns a dense one)")
        _dense_only(X)
        X, y = validate_data(self, X, y, multi_output=True, dtype=self._input_dtype(), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        kind = type_of_target(y, input_name="y")  # (once: each call is ~0.15 ms of a partial_fit call of 32 rows)
        if kind not in CLASSIFICATION_TARGETS:
            check_classification_targets(y)  # (raises, in scikit-learn's words)
        if kind == "multilabel-indicator":
            labels = np.arange(y.shape[1])
        elif kind in ("binary", "multiclass"):
            # a later call's labels are only checked against classes_: NumPy's unique of numbers
            # (unique_labels types y once more, and gives classes_ its dtype on a first call)
            labels = np.unique(y) if not reset and y.dtype.kind in "biuf" else unique_labels(y)
        else:
            raise ValueError(f"y must hold class labels [n_samples] or a multilabel indicator matrix; got {kind} targets")
        if reset and not (incremental and hasattr(self, "classes_")):
            self.classes_ = labels
            self._target_kind = "multilabel" if kind == "multilabel-indicator" else ("multiclass" if len(labels) > 2 else "binary")
        elif self._target_kind == "multilabel" or kind == "multilabel-indicator":
            if self._target_kind != "multilabel":
                raise ValueError(f"The object was not fitted with multilabel input: its classes_ are {self.classes_} "
                                 f"and y is a multilabel indicator matrix of shape {y.shape}; fit() anew (without "
                                 f"warm_start) to train a multilabel model")
            if kind != "multilabel-indicator" or y.shape[1] != len(self.classes_):
                raise ValueError(f"y must be a multilabel indicator matrix with {len(self.classes_)} columns, as before; got {kind} targets of shape {y.shape}")
        else:
            if self.warm_start and not incremental and set(labels) != set(self.classes_):
                raise ValueError(
                    f"warm_start can only be used where `y` has the same classes as in the previous call to fit. "
                    f"Previously got {self.classes_}, `y` has {labels}"
                )
            unknown = np.setdiff1d(labels, self.classes_)
            if len(unknown):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has {self.classes_}. 'y' has {labels}.")
        if self._target_kind == "multilabel":
            return X, np.ascontiguousarray(y, dtype=np.int64)
        return X, np.searchsorted(self.classes_, y).astype(np.int64)

    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """Train one epoch over (X, y), from the current weights.

        With ``early_stopping`` (refused by scikit-learn's) the first call holds out
        ``validation_fraction`` of its data as the validation set of the run, later calls train
        on all theirs; once the run has stopped, calls train nothing and warn.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The input data, as in ``fit`` (dense; uint8 not scaled by 1/255).

        y : array-like of shape (n_samples,) or (n_samples, n_classes)
            Class labels, all in ``classes``, or a 0/1 multilabel indicator matrix.

        sample_weight : array-like of shape (n_samples,), default=None
            Per-sample weights >= 0, as in ``fit``.

        classes : array-like of shape (n_classes,), default=None
            All the labels of the run: needed on the first call (unless y is a multilabel
            indicator matrix); later calls may omit it or pass the same labels.

        Returns
        -------
        self : object
            The updated estimator.
        """
        # as _fit, with classes_ set inside: a refused first call leaves the estimator unfitted
        with unchanged_until_training(self):
            if not hasattr(self, "model_"):
                if type_of_target(y) == "multilabel-indicator":
                    classes = None
                elif classes is None:
                    raise ValueError("classes must be passed on the first call to partial_fit.")
                else:
                    classes = unique_labels(classes)
                    self.classes_ = classes
                    self._target_kind = "multiclass" if len(classes) > 2 else "binary"
            elif classes is not None and not np.array_equal(self.classes_, unique_labels(classes)):
                raise ValueError(f"`classes={classes}` is not the same as on last call to partial_fit, was: {self.classes_}")
            return self._checked_fit(X, y, sample_weight, incremental=True)

    def _predict_targets(self, X, quiet=False):
        """Predictions in the encoded form of the targets (label indices or indicators)."""
        out = self._outputs(X, quiet)
        if self._target_kind == "multilabel":
            return (out > 0.5).astype(np.int64)
        if self._target_kind == "binary":
            # (one class alone: its index 0, as predict gives it; the validation score counted
            # the second index as a miss, audit 66)
            return np.minimum((out[:, 0] > 0.5).astype(np.int64), len(self.classes_) - 1)
        return out.argmax(axis=1)

    def _score_function(self, targets, predicted, sample_weight=None):
        return accuracy_score(targets, predicted, sample_weight=sample_weight)

    def predict(self, X):
        """Predict the class labels of X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The input data: dense (a sparse matrix is a TypeError), cast to the model's dtype;
            uint8 is taken as the numbers it holds, not scaled by 1/255.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_classes)
            Labels from ``classes_``; for multilabel targets the 0/1 int64 indicator matrix
            (1 where a label's probability is above 0.5).
        """
        predicted = self._predict_targets(self._validated(X))
        if self._target_kind == "multilabel":
            return predicted
        return self.classes_[np.minimum(predicted, len(self.classes_) - 1)]

    def predict_proba(self, X):
        """Probability estimates for X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The input data: dense (a sparse matrix is a TypeError), cast to the model's dtype;
            uint8 is taken as the numbers it holds, not scaled by 1/255.

        Returns
        -------
        y_prob : ndarray of shape (n_samples, n_classes)
            Probability of each class, in the order of ``classes_`` (for multilabel targets,
            each label's own probability), in the model's dtype.
        """
        out = self._outputs(self._validated(X))
        if self._target_kind == "binary":
            return np.hstack([1 - out, out])
        return out

    def predict_log_proba(self, X):
        """Logarithm of the probability estimates: log(predict_proba(X)).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The input data: dense (a sparse matrix is a TypeError), cast to the model's dtype;
            uint8 is taken as the numbers it holds, not scaled by 1/255.

        Returns
        -------
        log_y_prob : ndarray of shape (n_samples, n_classes)
            The natural logarithm of ``predict_proba(X)`` (-inf where a probability is 0).
        """
        probabilities = self.predict_proba(X)
        return np.log(probabilities, out=probabilities)

    @property
    def out_activation_(self):
        """The output layer's activation: 'softmax' (multiclass) or 'logistic'."""
        check_is_fitted(self, "model_")
        return "softmax" if self._softmax else "logistic"

    @out_activation_.setter
    def out_activation_(self, value):
        _keep_out_activation(self, value)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor, scikit-learn's ``MLPRegressor`` on fastmlp's core.

    The same parameters, defaults and fitted attributes as
    ``sklearn.neural_network.MLPRegressor``, plus fastmlp's ``backend``, ``dtype`` and
    ``threads``; a ``fastmlp.MLP`` (``model_``) trains by scikit-learn's per-epoch rules.
    Identity outputs and the squared error, one output or several.

    Differences from scikit-learn are stated in the entries below; besides them: X must be
    dense (sparse X is a TypeError) and uint8 X is taken as the numbers it holds (not
    scaled by 1/255 as ``fastmlp.MLP`` reads pixels); a negative sample_weight is refused;
    training that diverges raises ``fastmlp.DivergenceError`` (a ValueError too) when it
    happens; the ConvergenceWarning is issued from ``fastmlp.estimators`` (a filter with
    ``module="sklearn"`` does not reach it). A bad parameter value is refused at fit with
    scikit-learn's InvalidParameterError (a ValueError and a TypeError).

    Parameters
    ----------
    loss : {'squared_error'}, default='squared_error'
        The loss to minimise. 'poisson' is not available: refused at fit with a ValueError
        (unlike scikit-learn).

    hidden_layer_sizes : int or sequence of int, default=(100,)
        The ith element is the number of neurons of the ith hidden layer; () for none. The
        network is built by the first fit: a later warm-start fit or ``partial_fit`` keeps it.

    activation : {'identity', 'logistic', 'tanh', 'relu'}, default='relu'
        Activation of the hidden layers ('logistic' is fastmlp's 'sigmoid'); the output
        layer is the identity (``out_activation_``).

    solver : {'sgd', 'adam'}, default='adam'
        Stochastic gradient descent or Adam, with scikit-learn's update rules. 'lbfgs' is
        not available: refused at fit with a ValueError (unlike scikit-learn).

    alpha : float, default=0.0001
        Strength of the L2 penalty on the weights (not the biases): a coupled decay of
        alpha / batch_size per step (scikit-learn divides by each batch's size, so its short
        last batch decays more); ``loss_`` adds n_batches * 0.5 * alpha * ||W||^2 / n_samples.

    batch_size : int or 'auto', default='auto'
        Size of the minibatches; 'auto' is min(200, n_samples). A larger value is clipped
        to the number of training samples, with a warning.

    learning_rate : {'constant', 'invscaling', 'adaptive'}, default='constant'
        Rate schedule, for solver='sgd' only. 'invscaling': each epoch trains at
        learning_rate_init / (t_ + 1) ** power_t. 'adaptive': the rate is divided by 5 after
        more than n_iter_no_change epochs without improvement; the run stops once it is <= 1e-6.

    learning_rate_init : float, default=0.001
        The initial learning rate; the rate throughout with 'constant' and with 'adam'. A
        warm-start fit starts at it again ('adaptive' reductions are not carried over).

    power_t : float, default=0.5
        The exponent of the 'invscaling' schedule. Only used with solver='sgd'.

    max_iter : int, default=200
        The maximum number of epochs (passes over the data) of a fit; reaching it without
        stopping warns with a ConvergenceWarning. ``partial_fit`` trains one epoch per call.

    shuffle : bool, default=True
        Whether to shuffle the samples in each epoch.

    random_state : int, RandomState instance or None, default=None
        One seed drawn from it seeds the initial weights (Glorot uniform, as scikit-learn) and
        the shuffling; the early-stopping split is drawn from it too. None: a new seed per fit.

    tol : float, default=1e-4
        An epoch improves when the loss falls below ``best_loss_ - tol`` (with
        early_stopping: the validation score rises above ``best_validation_score_ + tol``).

    verbose : bool or int, default=False
        Whether to print scikit-learn's progress lines (loss, validation score) per epoch.

    warm_start : bool, default=False
        Whether fit continues from the previous fit's weights. Unlike scikit-learn it also keeps
        the optimizer's state (Adam's moments, the SGD velocity; another solver, or momentum
        switched on or off, starts a fresh one) and starts with fresh patience.

    momentum : float, default=0.9
        Momentum of the SGD updates, in [0, 1): momentum=1 is refused (scikit-learn accepts
        it). Only used with solver='sgd'.

    nesterovs_momentum : bool, default=True
        Whether to use Nesterov's momentum. Only used with solver='sgd' and momentum > 0.

    early_stopping : bool, default=False
        Whether to hold out ``validation_fraction`` of the data, stop when its R^2 stops
        improving and end with the best-scoring weights. Unlike scikit-learn's, ``partial_fit``
        supports it (its first call holds out the validation set).

    validation_fraction : float, default=0.1
        The fraction of the training data held out with early_stopping, in (0, 1); checked
        to be in [0, 1) even without early_stopping.

    beta_1 : float, default=0.9
        Exponential decay rate of Adam's first moment estimates, in [0, 1). Only used with
        solver='adam'.

    beta_2 : float, default=0.999
        Exponential decay rate of Adam's second moment estimates, in [0, 1). Only used with
        solver='adam'.

    epsilon : float, default=1e-8
        Adam's value for numerical stability. Only used with solver='adam'.

    n_iter_no_change : int or np.inf, default=10
        The run stops (or an 'adaptive' rate falls) after more than this many epochs in a row
        without improvement by ``tol``; np.inf never stops early.

    max_fun : int, default=15000
        Accepted for compatibility and unused: it bounds L-BFGS, which fastmlp does not have.

    backend : {'numba', 'numpy'}, default='numba'
        fastmlp only: the ``fastmlp.MLP`` backend, compiled numba kernels or plain NumPy.

    dtype : {None, 'float32', 'float64'}, default=None
        fastmlp only: the precision of the network, end to end. None: float32 X trains in
        float32, any other X in float64 (as scikit-learn). Later X is cast to the model's dtype,
        and predictions are in it (scikit-learn returns the dtype of the X it predicts).

    threads : 'auto' or int, default='auto'
        fastmlp only: the training threads, as ``fastmlp.MLP``'s ('auto': mini-batch training on
        one or all numba threads, whichever measured faster; plain per-sample SGD likewise on one
        or two where they give the same bits).

    Attributes
    ----------
    loss_ : float
        The loss of the last epoch: the mean over its batches of half the squared error,
        averaged over samples and outputs, plus the L2 penalty (see ``alpha``).

    best_loss_ : float or None
        The lowest ``loss_`` of the run; None with early_stopping (see
        ``best_validation_score_``).

    loss_curve_ : list of float
        ``loss_`` of every epoch of the run (a warm-start fit or ``partial_fit`` appends).

    validation_scores_ : list of float or None
        The R^2 on the held-out set after each epoch (weighted by sample_weight); None
        without early_stopping.

    best_validation_score_ : float or None
        The best of ``validation_scores_``, whose weights the model holds; None without
        early_stopping.

    t_ : int
        The number of training samples seen in the run (held-out ones excluded); the
        'invscaling' schedule's time step.

    coefs_ : list of ndarray, of length n_layers_ - 1
        The weight matrices [n_in, n_out] of the layers, in the model's dtype: views into
        ``model_.params_`` (writing into them, or assigning an item or the list, sets the model's).

    intercepts_ : list of ndarray, of length n_layers_ - 1
        The bias vectors [n_out] of the layers: views into ``model_.params_``, as ``coefs_``.

    n_features_in_ : int
        Number of features seen during fit.

    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of the features seen during fit; set only when X has string feature names.

    n_iter_ : int
        The number of epochs the last call to fit trained (1 after ``partial_fit``).

    n_layers_ : int
        Number of layers, the input and output layers included.

    n_outputs_ : int
        Number of output units: the number of targets.

    out_activation_ : str
        The output layer's activation: 'identity'.

    model_ : fastmlp.MLP
        fastmlp only: the network that trains and predicts (also ``history_``,
        ``optimizer_state_``, ``save()``).

    See Also
    --------
    MLPClassifier : The classifier on the same core.
    fastmlp.MLP : The network underneath, with fastmlp's own options.
    """

    _is_classifier = False
    _softmax = False

    def __init__(
        self,
        loss="squared_error",
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        backend="numba",
        dtype=None,
        threads="auto",
    ):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver, alpha=alpha,
            batch_size=batch_size, learning_rate=learning_rate, learning_rate_init=learning_rate_init,
            power_t=power_t, max_iter=max_iter, shuffle=shuffle, random_state=random_state, tol=tol,
            verbose=verbose, warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction, beta_1=beta_1,
            beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun,
            backend=backend, dtype=dtype, threads=threads,
        )
        self.loss = loss

    def _check_hyperparameters(self):
        if self.loss == "poisson":
            raise ValueError("loss='poisson' is not available in fastmlp (no exponential output layer); use loss='squared_error'")
        _choice("loss", self.loss, ("squared_error",))
        super()._check_hyperparameters()

    def _loss(self):
        return "mse"

    def _n_outputs(self, targets):
        return targets.shape[1]

    def _validate_input(self, X, y, incremental, reset):
        _dense_only(X)
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True, dtype=self._input_dtype(), reset=reset)
        y = _numbers(y, "y", f"an array of {len(X)} targets")  # (strings: "1.5" became 1.5 silently)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        # (a cast first made a target beyond float32's range "NaN or infinity", after NumPy's warning)
        targets = _finite_floats(y.reshape(len(y), -1), X.dtype, "y", "targets")
        if not reset and targets.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {targets.shape[1]} outputs per sample but the model was trained with {self.n_outputs_}")
        return X, targets

    def _data_loss(self, fastmlp_loss):
        # fastmlp: 0.5 * sum over outputs; scikit-learn reports 0.5 * mean over outputs
        return fastmlp_loss / self.n_outputs_

    def _predict_targets(self, X, quiet=False):
        return self._outputs(X, quiet)

    def _score_function(self, targets, predicted, sample_weight=None):
        return r2_score(targets, predicted, sample_weight=sample_weight)

    def partial_fit(self, X, y, sample_weight=None):
        """Train one epoch over (X, y), from the current weights.

        With ``early_stopping`` (refused by scikit-learn's) the first call holds out
        ``validation_fraction`` of its data as the validation set of the run, later calls train
        on all theirs; once the run has stopped, calls train nothing and warn.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The input data, as in ``fit`` (dense; uint8 not scaled by 1/255).

        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            The target values, as many outputs as in the first call.

        sample_weight : array-like of shape (n_samples,), default=None
            Per-sample weights >= 0, as in ``fit``.

        Returns
        -------
        self : object
            The updated estimator.
        """
        return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X):
        """Predict the targets of X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The input data: dense (a sparse matrix is a TypeError), cast to the model's dtype;
            uint8 is taken as the numbers it holds, not scaled by 1/255.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            The predicted values, [n_samples] for a single output, in the model's dtype.
        """
        out = self._outputs(self._validated(X))
        return out.ravel() if out.shape[1] == 1 else out

    @property
    def out_activation_(self):
        """The output layer's activation: 'identity'."""
        check_is_fitted(self, "model_")
        return "identity"

    @out_activation_.setter
    def out_activation_(self, value):
        _keep_out_activation(self, value)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
