"""The public estimator, ``MLP``: hyperparameters in, ``fit``/``predict``/``score`` out."""

from __future__ import annotations

import contextlib
import inspect
import os
import zlib
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from . import optim, reference, trainer
from ._atomic import check_target, file_identity, path_argument
from ._cli_options import options_without_effect
from ._validation import (
    boolean,
    check_sample_weight,
    check_X,
    check_y,
    InputScaleWarning,
    non_negative_float,
    non_negative_int,
    open_fraction,
    positive_float,
    plain_bool,
    positive_int,
    progress_flag,
    thread_count,
    unscaled_pixels,
    validation_split,
)
from ._warn import warn
from .backends import INFERENCE_BLOCK, make_backend
from .network import Architecture, init_params, resolve_init, vector_aligned
from .progress import compile_notice, signals_not_lost

# The training options of fit and partial_fit, with fit's defaults (the README lists them). A run
# records the values it trains with in ``fit_options_``; partial_fit keeps them unless told
# otherwise, and a checkpoint saves them.
FIT_DEFAULTS = {
    "batch_size": 1,
    "lr": 0.1,
    "shuffle": True,
    "lr_schedule": "constant",
    "lr_decay": 0.5,
    "lr_step_epochs": 10,
    "power_t": 0.5,
    "warmup_epochs": 0,
    "schedule_epochs": None,
    "validation_fraction": None,
    "early_stopping": None,
    "tol": 1e-4,
    "n_iter_no_change": 10,
    "optimizer": "sgd",
    "momentum": 0.0,
    "nesterov": False,
    "beta1": 0.9,
    "beta2": 0.999,
    "eps": 1e-8,
    "weight_decay": 0.0,
    "decoupled_weight_decay": False,
    "dropout": 0.0,
    "input_dropout": 0.0,
}
OPTIMIZER_OPTIONS = tuple(optim.Optimizer.__dataclass_fields__)
# MLP's constructor arguments, in its order: what repr shows, get_params returns, a sweep sets
# (checkpoint.MODEL_KEYS, which cannot import this module, is the same: tests/test_model.py)
MODEL_PARAMS = ("layers", "activation", "loss", "output", "bias", "init", "dtype", "seed", "backend", "threads")
# predict, predict_proba, decision_function, evaluate and score hand X to the backend this many
# rows at a time, the backends' inference block (4,096 rows): converted to the kernels' sparse rows
# at once, a dense X took 3-6x its own memory more (a float32 memory map of 96 MB: 290 MB; audit
# 33); the rows are read as they are since session 61, but a copy is still made of a chunk that
# is not contiguous or not in native byte order (for_inference). A row's logits are the same bits
# in any chunk.
PREDICT_ROWS = INFERENCE_BLOCK


def _say_unscaled_pixels(X, name, consequence):
    """An InputScaleWarning when float ``X`` looks like 8-bit pixels, unscaled (``unscaled_pixels``);
    whether it did."""
    top = unscaled_pixels(X)
    if top is not None:
        warn(f"{name} holds whole numbers from 0 to {top:g} as {X.dtype} (in its first rows), as 8-bit pixels do: "
             f"fastmlp scales uint8 pixels by 1/255 but takes floats as they are{consequence}. Pass {name} / 255, "
             f"or the pixels as {name}.astype(np.uint8); for features that are meant this way, silence it with "
             f"warnings.filterwarnings('ignore', category=fastmlp.InputScaleWarning)", InputScaleWarning)
    return top is not None


def _predictions(arch, out):
    """``predict``'s answer from the output layer's activations ``out`` of network ``arch``."""
    if not arch.is_classifier:
        return out
    if arch.is_multilabel:
        return (out > 0.5).astype(np.int64)
    if arch.n_classes == 2 and out.shape[1] == 1:
        return (out[:, 0] > 0.5).astype(np.int64)
    return out.argmax(axis=1)


def data_fingerprint(X, y, sample_weight=None):
    """What a checkpoint records of the data a run trained on (``data`` in checkpoint.py): the
    number of samples and the crc32 of X's bytes, then y's; with sample weights also the crc32
    of theirs (as checked: ``sample_weight_crc32``), so that a resume without them is refused."""
    fingerprint = {"n_samples": int(len(X)), "crc32": zlib.crc32(y, zlib.crc32(X))}
    if sample_weight is not None:
        fingerprint["sample_weight_crc32"] = zlib.crc32(np.ascontiguousarray(sample_weight))
    return fingerprint


BACKGROUND_BYTES = 1 << 20  # less data than this is fingerprinted in place


def _in_background(function, *args, nbytes=None):
    """A future of function(*args), run on a thread of its own (for work that releases the
    GIL, such as zlib's: MNIST's crc32 takes 0.02-0.08 s); in place when ``nbytes`` is below
    BACKGROUND_BYTES: the thread (its start 0.09 ms, and the switches to and from it) cost a
    scikit-learn estimator with early stopping on 500 samples, which calls once an epoch, 0.8 ms
    of each (2.2 against 1.4 ms an epoch, 8 interleaved rounds, AMD EPYC Zen 4: audit 48, 49)."""
    if nbytes is not None and nbytes < BACKGROUND_BYTES:
        done = Future()
        done.set_result(function(*args))
        return done
    pool = ThreadPoolExecutor(1)
    try:
        return pool.submit(function, *args)
    finally:
        pool.shutdown(wait=False)  # the thread ends after the task


class _RunValue:
    """partial_fit's default: the value the run was trained with (fit's default for a new run)."""

    def __repr__(self):
        return "<the run's value>"


RUN = _RunValue()


def check_fit_options(options):
    """The training options checked and normalised (ints, floats, bools), or a ValueError /
    TypeError naming the option. The optimizer's own checks are ``optim.Optimizer``'s."""
    o = dict(options)
    if o["batch_size"] is not None:
        o["batch_size"] = positive_int("batch_size", o["batch_size"])
    o["lr"] = positive_float("lr", o["lr"])
    o["shuffle"] = boolean("shuffle", o["shuffle"])
    if not isinstance(o["lr_schedule"], str) or o["lr_schedule"] not in trainer.SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {', '.join(map(repr, trainer.SCHEDULES))}; got {o['lr_schedule']!r}")
    if positive_float("lr_decay", o["lr_decay"]) > 1:
        raise ValueError(f"lr_decay must be in (0, 1]: a factor above 1 would grow the learning rate; got {o['lr_decay']!r}")
    o["lr_decay"] = float(o["lr_decay"])
    o["lr_step_epochs"] = positive_int("lr_step_epochs", o["lr_step_epochs"])
    o["power_t"] = non_negative_float("power_t", o["power_t"])
    o["warmup_epochs"] = non_negative_int("warmup_epochs", o["warmup_epochs"])
    if o["schedule_epochs"] is not None:
        o["schedule_epochs"] = positive_int("schedule_epochs", o["schedule_epochs"])
    if o["validation_fraction"] is not None:
        o["validation_fraction"] = open_fraction("validation_fraction", o["validation_fraction"])
    if o["early_stopping"] is not None:
        o["early_stopping"] = positive_int("early_stopping", o["early_stopping"])
    o["tol"] = non_negative_float("tol", o["tol"])
    o["n_iter_no_change"] = positive_int("n_iter_no_change", o["n_iter_no_change"])
    o.update(optim.Optimizer(**{name: o[name] for name in OPTIMIZER_OPTIONS}).as_dict())
    return o


def _at_default(name, value):
    """Whether ``value`` is ``name``'s default in ``fit``, or its float32 rounding (a beta1 read
    from a float32 array: 0.8999999761581421)."""
    default = FIT_DEFAULTS[name]
    if value == default:
        return True
    if not (isinstance(default, float) and isinstance(value, float)):
        return False
    with np.errstate(over="ignore"):  # lr=1e100 is the user's to try: no warning of our float32 cast
        return bool(np.float32(value) == np.float32(default))


def _warn_without_effect(options, passed):
    """A UserWarning for each option in ``passed`` set away from its default that the others
    leave without effect: ``fit(beta1=0.5)`` with SGD trained as if it were not there, and only
    the command line said so (audit 45)."""
    changed = [name for name in passed if not _at_default(name, options[name])]
    for name, why in options_without_effect(options, changed).items():
        warn(f"{name}={options[name]!r} has no effect: {why}", UserWarning)


def _describe_optimizer(options):
    if options["optimizer"] == "adam":
        return "optimizer='adam'"
    return f"optimizer='sgd' with momentum={options['momentum']:g}"


def _agreeing(comm):
    """``distributed.agreeing(comm)``, importing it (and MPI) only for distributed calls."""
    if comm is None:
        return contextlib.nullcontext()
    from .distributed import agreeing

    return agreeing(comm)


def _ending_the_job(comm, meeting):
    """``distributed.ending_the_job(comm, meeting)`` for distributed calls."""
    if comm is None:
        return contextlib.nullcontext()
    from .distributed import ending_the_job

    return ending_the_job(comm, meeting)


def writable_arrays(value, _seen=None):
    """``value`` with every read-only NumPy array in it replaced by a writable copy, through the
    attributes of fastmlp's objects and the items of lists, tuples and dicts (in place where
    they are mutable). ``joblib.load(mmap_mode="r")`` gives read-only memory maps, and a model
    trains in place: its weights, optimizer state, its backend's counters, the run's snapshots."""
    if isinstance(value, np.ndarray):
        return value if value.flags.writeable else np.array(value)
    seen = set() if _seen is None else _seen
    if id(value) in seen:
        return value
    seen.add(id(value))
    if isinstance(value, list):
        value[:] = [writable_arrays(item, seen) for item in value]
    elif isinstance(value, dict):
        for key in value:
            value[key] = writable_arrays(value[key], seen)
    elif isinstance(value, tuple):
        items = [writable_arrays(item, seen) for item in value]
        if any(new is not old for new, old in zip(items, value)):
            return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    elif type(value).__module__.startswith("fastmlp") and hasattr(value, "__dict__"):
        for name, item in vars(value).items():
            new = writable_arrays(item, seen)
            if new is not item:
                object.__setattr__(value, name, new)  # frozen dataclasses too
    return value


@contextlib.contextmanager
def unchanged_until_training(owner, undo_untrained=False):
    """Run a fit-like call on ``owner`` (an MLP or an estimator): if it raises before it sets
    ``owner._training = True`` (where its checks end and the model starts to change), every
    attribute goes back to what it was; after that, what the call did stays, unless the call
    continued a run (``undo_untrained``: partial_fit) and trained nothing of it (a divergence or
    Ctrl-C in its first chunk: the error's ``trained_nothing``, the trainer having put the run,
    weights and optimizer state back), whose options then stay the run's. A new run (fit) that
    trained nothing stands at its start. Attributes are replaced, never changed in place,
    before that point, so a shallow copy restores them.

    A call made while another is running on the same owner (from its ``on_epoch``, or another
    thread) is refused: it replaced the run under the running call, which went on training arrays
    the model no longer held and returned a history that was not the model's (audit 38)."""
    if "_training" in owner.__dict__:
        raise RuntimeError(f"a fit or partial_fit of this {type(owner).__name__} is already running (this call came "
                           "from its on_epoch, or from another thread); train it again once that call has returned")
    saved = dict(owner.__dict__)
    owner._training = False
    try:
        yield
    except BaseException as error:
        if not owner.__dict__.get("_training", False) or (undo_untrained and getattr(error, "trained_nothing", False)):
            owner.__dict__.clear()
            owner.__dict__.update(saved)
        if hasattr(error, "trained_nothing"):
            error.trained_nothing = False  # this call's: an estimator's fit around it may have trained before it
        raise
    finally:
        owner.__dict__.pop("_training", None)


_UNLABELLED = object()  # MLP._decide without labels (None is a label argument to refuse)


def _said_by_decide(z):
    """For the arithmetic on logits ``z`` after ``MLP._decide``: where they are not all finite,
    which it has said already, once, in fastmlp's words (or was told not to), NumPy's overflow and invalid-value
    warnings off; finite ones keep NumPy's (a float32 regression's finite outputs near 2e19
    whose squared error overflows: audit 64)."""
    if np.isfinite(z).all():
        return contextlib.nullcontext()
    return np.errstate(over="ignore", invalid="ignore")


def _say_non_finite(z, params):
    """The RuntimeWarning of a prediction whose logits ``z`` are not all finite: with finite
    weights (``params``) that is an overflow, of a training run that diverged without a NaN or
    infinite loss or weight (its loss 1e162, its weights 1e147: audit 62), or of inputs far out of
    the training data's range. The outputs were NaN without a word, labels the first class."""
    rows = int((~np.isfinite(z)).any(axis=1).sum())
    largest = float(np.abs(params).max()) if params.size else 0.0
    warn(f"the network's outputs are NaN or infinite for {rows} of {len(z)} rows (they overflow: its largest "
         f"weight is {largest:.3g}); its training diverged (train with a lower learning rate) or the inputs are "
         f"far out of the training data's range. Its predictions for those rows mean nothing", RuntimeWarning)


class MLP:
    """A multilayer perceptron trained by SGD (with momentum, Nesterov, weight decay, dropout) or Adam.

    Parameters
    ----------
    layers : sequence of int, default (784, 128, 10)
        Layer sizes from input to output, e.g. ``[784, 128, 10]``.
    activation : {"sigmoid", "tanh", "relu", "identity"}, default "sigmoid"
        The hidden layers' activation.
    loss : {"cross_entropy", "mse", "binary_cross_entropy"}, default "cross_entropy"
        With ``output`` it fixes the output layer: cross_entropy -> softmax, binary_cross_entropy
        -> sigmoid units (one: binary labels 0/1; K > 1: multilabel, y a 0/1 indicator matrix
        [N, K]), mse -> identity (regression) unless ``output="softmax"``.
    output : {"softmax", "sigmoid", "identity"} or None, default None
        None: the one the loss implies. Only needed for softmax + mse (mean squared error
        through the full softmax Jacobian).
    bias : bool, default True
        Whether layers have biases.
    init : {"auto", "xavier", "he", "uniform", "normal", "zeros"}, default "auto"
        Weight initialisation (see ``fastmlp.network.init_params``); biases start at 0.
    dtype : {"float32", "float64"}, default "float32"
        The weights' and the arithmetic's floating-point type (float32 is about twice as fast).
    seed : int, default 0
        Seeds the initial weights, the per-epoch shuffling, dropout and the validation split:
        same seed, same run.
    backend : {"numba", "numpy"}, default "numba"
        The compiled core or the NumPy reference. Both share this trainer, so from the same
        seed they differ only in floating-point rounding.
    threads : "auto" or int, default "auto"
        "auto": mini-batch and full-batch training on one or all Numba threads
        (``NUMBA_NUM_THREADS``), whichever measures faster, checked again as training goes
        (``fastmlp._adaptive``), so a machine where another process keeps a core busy does not
        make two threads wait for each other; plain per-sample SGD the same way on one or two
        threads where the network has one hidden layer of 112 units or more, else on one. A
        number n: the compiled per-sample loop on n threads (networks with one hidden layer;
        plain SGD) and mini-batch training on min(n, NUMBA_NUM_THREADS).
        The mini-batch results do not depend on the thread count (bitwise); per-sample, "auto"
        gives threads=1's bits, and so does threads=2 (three threads or more, on a machine
        with the cores for them, sum the logits in other parts: one thread's result to
        rounding). ``backend_.threads`` is the most threads the network allows;
        ``backend_.threads_used`` the most a training call really ran on (per-sample, one for
        any recipe but plain SGD), which ``fastmlp train --json`` reports.

    Attributes
    ----------
    params_ : ndarray
        Every weight and bias in one flat vector (``dtype``), the layout ``arch_`` describes.
    weights_, biases_ : list of ndarray
        Each layer's weights [n_in, n_out] and biases [n_out]: views into ``params_``.
    arch_ : fastmlp.network.Architecture
        The network as trained: sizes, activation, loss and output codes, dtype.
    backend_ : object
        The backend that trains it (``backend_.threads``, ``backend_.threads_used`` above).
    optimizer_state_ : fastmlp.optim.State
        Momentum or Adam slots and the step and sample counts.
    history_ : fastmlp.History
        The run's per-epoch records, over all its fit and partial_fit calls.
    epochs_trained_ : int
        Epochs trained so far in the run.
    run_ : fastmlp.trainer.RunState
        The schedule's and early stopping's position (what an exact resume needs).
    fit_options_ : dict
        The run's training options (what ``partial_fit`` continues with).
    compile_seconds_ : float
        Seconds the run spent compiling kernels or loading them from the cache (its training
        times leave them out).

    Float ``X`` whose first rows hold whole numbers from 0 to 255 reaching 128 (8-bit pixels,
    unscaled) makes ``fit`` and ``partial_fit`` warn (``fastmlp.InputScaleWarning``), and so do
    such validation data and such X to predict or score on, unless the model's last training call
    took such X itself.
    """

    _input_scale_warning = True  # False on the scikit-learn drop-ins' models: scikit-learn takes X as it is, silently
    _unscaled_inputs = False  # its last training call's X looked like unscaled pixels (then predicting from such X is not said)

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
        threads="auto",
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

    def __repr__(self):
        """``MLP(layers=[784, 128, 10], activation='relu')`` (the arguments that differ from the
        defaults, as scikit-learn shows an estimator), and how many epochs it has trained."""
        defaults = inspect.signature(type(self).__init__).parameters
        given = []
        for name in MODEL_PARAMS:
            value = getattr(self, name, None)
            if name == "layers":
                with contextlib.suppress(TypeError, ValueError):  # NumPy's integers as plain ones, 8.5 as 8.5 (fit refuses it)
                    value = [int(size) if isinstance(size, (int, np.integer)) and not isinstance(size, bool) else size
                             for size in value]
                shown = value != list(defaults["layers"].default)
            else:
                shown = not (isinstance(value, type(defaults[name].default)) and value == defaults[name].default)
            if shown:
                given.append(f"{name}={value!r}")
        trained = getattr(self, "epochs_trained_", None)
        state = "" if trained is None else f" ({trained} epoch{'s' if trained != 1 else ''} trained)"
        return f"{type(self).__name__}({', '.join(given)}){state}"

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
        non_negative_int("seed", self.seed)

    def _build(self):
        """Check the hyperparameters and build the architecture and backend, and a new run
        (no weights)."""
        self._check_seed()
        arch = self._architecture()
        resolve_init(self.init, arch.activation)
        self.arch_ = arch
        # the run's own seed and init, as arch_ is its architecture: set after fit, they are the next fit's
        self._run_seed, self._run_init = int(self.seed), self.init
        self._build_backend()
        self._shuffle_rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(1,)))
        self.run_ = trainer.RunState()
        self.history_ = trainer.History()
        self.optimizer_state_ = None
        self.fit_options_ = None
        self.data_fingerprint_ = None
        self.compile_seconds_ = 0.0

    @property
    def run_seed(self):
        """The seed this run was built with (its weights, shuffles, dropout masks and validation
        split): ``seed`` as it was at the last ``fit``; a ``seed`` set since is the next fit's."""
        return getattr(self, "_run_seed", self.seed)

    def _build_backend(self):
        threads = thread_count(self.threads)
        self.backend_ = make_backend(self.backend, self.arch_, threads)
        self._backend_for = (self.backend, threads)

    def initialize(self):
        """(Re)build the network from the seed: fresh weights, fresh shuffle stream, new run."""
        return self._initialize()

    def _initialize(self, symmetry_warning=True):
        """``initialize``; without init="zeros"'s SymmetryWarning if not ``symmetry_warning``
        (``compare_backends`` says it once for its runs)."""
        self._build()
        self.params_ = init_params(self.arch_, self.init, self.seed, symmetry_warning=symmetry_warning)
        self.__dict__.pop("_checkpoint_written", None)  # (the last run's: a new run's file starts as it finds it)
        return self

    def _check_params(self, in_place=True, params=None, arch=None):
        """``params_`` (or ``params``, for ``arch``) as the kernels need it, or a ValueError
        before any kernel sees it (``in_place=False``: as a file holds it, contiguous and
        writeable or not)."""
        params = self.params_ if params is None else params
        arch = self.arch_ if arch is None else arch
        layout = arch.layout()
        expected = f"a C-contiguous 1-D {np.dtype(arch.dtype).name} array of {layout.n_params} parameters"
        if not isinstance(params, np.ndarray):
            raise ValueError(f"params_ must be {expected}; got {type(params).__name__}")
        if params.dtype != arch.dtype:
            raise ValueError(f"params_ must be {expected}; got dtype {params.dtype}")
        if params.ndim != 1 or params.size != layout.n_params:
            raise ValueError(f"params_ must be {expected} for layers {list(arch.layers)}; got shape {params.shape}")
        if in_place and (not params.flags.c_contiguous or not params.flags.writeable):
            raise ValueError(f"params_ must be {expected}, writeable; use np.ascontiguousarray(params_)")
        if not np.isfinite(params).all():
            raise ValueError(f"params_ contains NaN or infinity (first at index {int(np.flatnonzero(~np.isfinite(params))[0])})")

    @property
    def weights_(self):
        """Each layer's weights [n_in, n_out]: views into ``params_`` (writing into them trains it)."""
        return [W for W, _ in self._layer_views("weights_")]

    @property
    def biases_(self):
        """Each layer's biases [n_out]: views into ``params_`` (None for each layer when ``bias=False``)."""
        return [b for _, b in self._layer_views("biases_")]

    def _layer_views(self, name):
        if not hasattr(self, "params_"):
            # an AttributeError (hasattr(model, "weights_") stays False), with the reason
            raise AttributeError(f"{name}: this MLP is not trained yet: call fit(X, y) first")
        return self.arch_.layout().views(self.params_)

    @property
    def epochs_trained_(self):
        """Epochs the current run has trained (all fit/partial_fit calls since the last fit)."""
        return self.run_.epochs_done

    # --- training ----------------------------------------------------------------------------

    def fit(
        self,
        X,
        y,
        sample_weight=None,
        *,
        epochs=1,
        batch_size=1,
        lr=0.1,
        shuffle=True,
        validation_data=None,
        validation_fraction=None,
        lr_schedule="constant",
        lr_decay=0.5,
        lr_step_epochs=10,
        power_t=0.5,
        warmup_epochs=0,
        schedule_epochs=None,
        early_stopping=None,
        tol=1e-4,
        n_iter_no_change=10,
        optimizer="sgd",
        momentum=0.0,
        nesterov=False,
        beta1=0.9,
        beta2=0.999,
        eps=1e-8,
        weight_decay=0.0,
        decoupled_weight_decay=False,
        dropout=0.0,
        input_dropout=0.0,
        progress=None,
        checkpoint_path=None,
        checkpoint_every=None,
        on_epoch=None,
        distributed=False,
    ):
        """Start a new run from a fresh initialisation. Returns the History (also ``history_``).

        ``X``: [N, n_inputs] (images also [N, h, w]): uint8 pixels, read as pixel / 255, or
        floats, used as they are (float32 trains fastest; other numbers are refused with what to
        pass). ``y``: integer labels in [0, n_classes) for softmax outputs; 0/1 labels [N] for
        one sigmoid unit or a 0/1 indicator matrix [N, K] for K (multilabel); floats [N] or
        [N, K] for regression (identity output).

        ``epochs`` passes over the data (default 1), each in a fresh order drawn with the seed
        unless ``shuffle=False``, at learning rate ``lr`` (default 0.1, as the schedule shapes
        it). ``progress``: a tqdm bar per epoch; None (default) draws it on terminals only.

        ``sample_weight`` (one non-negative number per sample, or None) multiplies each
        sample's loss and gradient; the weights are first scaled to mean 1 over the samples
        that train, so only their ratios matter and ``lr`` keeps its meaning. The training
        loss is then the weighted mean; validation metrics stay unweighted.

        ``batch_size`` 1 is per-sample SGD, ``None`` (or any size >= n_samples) is full-batch
        gradient descent.

        Schedule (formulas in ``fastmlp.trainer`` and the README): ``lr_schedule`` constant,
        exponential (``lr_decay``), step (``lr_decay`` every ``lr_step_epochs``), cosine (over
        ``schedule_epochs``, default ``epochs``: the run's horizon), invscaling (``power_t``) or adaptive
        (``n_iter_no_change``, ``tol``); ``warmup_epochs`` ramps the first epochs up linearly.

        Optimizer (``fastmlp.optim``): ``optimizer`` "sgd" (``momentum``, ``nesterov``) or
        "adam" (``beta1``, ``beta2``, ``eps``); ``weight_decay`` (coupled L2, or
        ``decoupled_weight_decay``); ``dropout`` of hidden units, ``input_dropout`` of inputs.

        Validation and early stopping: ``validation_data=(X_val, y_val)`` or
        ``validation_fraction`` (held out of X with the seed, stratified for classifiers);
        ``early_stopping=N`` stops after N epochs without an improvement of the monitored loss
        (the validation loss, else the training loss) by more than ``tol`` and restores the
        best weights and optimizer state at the end.

        ``checkpoint_path``: write the model there (``save``) after every ``checkpoint_every``
        epochs of the run (default 1) and when the call ends, atomically.

        ``on_epoch``: called as ``on_epoch(history)`` after each epoch, once its entry is in the
        history and early stopping has judged it (and after its checkpoint): to print or log a
        run as it goes. An exception it raises ends the call there, the epochs before it trained
        (distributed: on every rank, the others with ``RanksFailed`` naming the rank it raised on).

        ``distributed``: True (``MPI.COMM_WORLD``) or an mpi4py communicator trains data-parallel
        over the processes of ``mpiexec`` (``fastmlp.distributed``; the numba backend, batches of
        2 or more): each computes the gradient of its share of every global batch of
        ``batch_size``, and the result equals one process to rounding. Every process must make
        the same call; only rank 0 draws progress and writes checkpoints. Without mpi4py, or on
        a single rank, a ``DistributedWarning`` says so and training runs here as usual. False
        or None (default): this process alone.

        Raises ``ValueError`` or ``TypeError`` naming a bad option or input before anything
        trains (the model is left as it was); ``fastmlp.DivergenceError`` when the loss or a
        weight becomes non-finite; ``fastmlp.TrainingInterrupted`` on Ctrl-C (the epochs done
        are kept); ``fastmlp.CheckpointReplacedError`` when another process wrote
        ``checkpoint_path`` meanwhile; ``RuntimeError`` for a fit of this model while another of
        its fits runs.
        """
        options = {name: value for name, value in locals().items() if name in FIT_DEFAULTS}
        comm, note = self._communicator(distributed)
        with _agreeing(comm) as meeting:  # a rank that fails before training tells the others, which would wait
            options = check_fit_options(options)
            self._check_call(epochs, progress, checkpoint_path, checkpoint_every, on_epoch, validation_data, options)
            self._check_distributable(distributed, options, note)
            _warn_without_effect(options, FIT_DEFAULTS)
            with self._unchanged_until_training(), _ending_the_job(comm, meeting):  # (one rank's error after it)
                self.initialize()
                return self._train(X, y, sample_weight, epochs, options, validation_data, progress, checkpoint_path,
                                   checkpoint_every, on_epoch, comm)

    def partial_fit(
        self,
        X,
        y,
        sample_weight=None,
        *,
        epochs=1,
        batch_size=RUN,
        lr=RUN,
        shuffle=RUN,
        validation_data=None,
        validation_fraction=RUN,
        lr_schedule=RUN,
        lr_decay=RUN,
        lr_step_epochs=RUN,
        power_t=RUN,
        warmup_epochs=RUN,
        schedule_epochs=RUN,
        early_stopping=RUN,
        tol=RUN,
        n_iter_no_change=RUN,
        optimizer=RUN,
        momentum=RUN,
        nesterov=RUN,
        beta1=RUN,
        beta2=RUN,
        eps=RUN,
        weight_decay=RUN,
        decoupled_weight_decay=RUN,
        dropout=RUN,
        input_dropout=RUN,
        progress=None,
        checkpoint_path=None,
        checkpoint_every=None,
        on_epoch=None,
        distributed=False,
    ):
        """Continue the run for ``epochs`` more epochs (initialising first if there are no
        weights); ``X``, ``y`` and ``sample_weight`` as in ``fit``. The training options left out
        keep the run's values (``fit_options_``; fit's defaults for a new run), while
        ``validation_data``, ``progress``, ``checkpoint_path``, ``checkpoint_every``, ``on_epoch``
        and ``distributed`` are this call's alone (a call without ``checkpoint_path`` writes no
        checkpoint, one without ``validation_data`` validates on nothing but a held-out
        ``validation_fraction``). The schedule goes on where it was (epoch count, samples trained, adaptive
        rate) and so do the optimizer state and early stopping: ``fit(epochs=a, schedule_epochs=a + b)``
        then ``partial_fit(epochs=b)`` trains exactly as ``fit(epochs=a + b)`` (``schedule_epochs``,
        the run's length, only matters to the cosine schedule and to ``fastmlp train --resume``
        without ``--epochs``, which trains a checkpoint to it).

        A run that early stopping or the adaptive schedule stopped goes on from the weights the
        model holds (the best ones), with fresh patience. Switching the optimizer's kind or
        momentum on or off needs a new run (``fit``); the cosine schedule cannot go past its
        horizon (pass a larger ``schedule_epochs``). ``distributed`` as in ``fit``: a run may go
        on distributed or in one process, whichever it trained in so far.
        """
        given = {name: value for name, value in locals().items() if name in FIT_DEFAULTS and value is not RUN}
        comm, note = self._communicator(distributed)
        with _agreeing(comm) as meeting:  # as in fit
            previous = getattr(self, "fit_options_", None)
            # (a run whose optimizer state was let go, as a scikit-learn estimator's warm start with
            # another solver does, starts a fresh one: _train)
            if previous is not None and getattr(self, "optimizer_state_", None) is not None and \
                    given.get("optimizer", previous["optimizer"]) != previous["optimizer"]:
                # (before the options' own checks: the run's momentum=0.9 beside optimizer='adam' read
                # "momentum applies to optimizer='sgd'", of an option the caller did not pass)
                check_fit_options({**FIT_DEFAULTS, **given})  # what the caller passed, checked on its own first
                raise ValueError(f"partial_fit continues a run trained with {_describe_optimizer(previous)}, whose "
                                 f"optimizer state does not fit optimizer={given['optimizer']!r}; start a new run with fit()")
            options = check_fit_options({**(previous or FIT_DEFAULTS), **given})
            if validation_data is not None and "validation_fraction" not in given and options["validation_fraction"] is not None:
                raise ValueError(
                    f"this run holds out validation_fraction={options['validation_fraction']!r} of its data; pass "
                    f"validation_fraction=None with validation_data to validate on that instead"
                )
            self._check_call(epochs, progress, checkpoint_path, checkpoint_every, on_epoch, validation_data, options)
            self._check_distributable(distributed, options, note)
            _warn_without_effect(options, given)
            # (a run that has trained before: a first call, or one after initialize(), starts the run)
            with self._unchanged_until_training(undo_untrained=getattr(self, "fit_options_", None) is not None), \
                    _ending_the_job(comm, meeting):
                if not hasattr(self, "params_"):
                    self.initialize()
                return self._train(X, y, sample_weight, epochs, options, validation_data, progress, checkpoint_path,
                                   checkpoint_every, on_epoch, comm)

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.__dict__.pop("_training", None)  # a copy made during a training call is not training
        writable_arrays(self)  # joblib.load(mmap_mode="r") gives read-only arrays: the model trains in place
        if isinstance(self.__dict__.get("params_"), np.ndarray):
            # a pickle or a deep copy puts the weights wherever NumPy does: on a 64-byte boundary
            # again, else every training call of the copy would copy them there and back
            self.params_ = vector_aligned(self.params_)

    def _unchanged_until_training(self, undo_untrained=False):
        """A call that fails before its run changes (bad data, validation data or options found
        by ``_train``'s checks, after ``fit`` has re-initialised) leaves the model as it was:
        its weights, run and history. Once training has begun, what it trained stays (an
        interrupted epoch keeps the epochs before it, as ``_train`` leaves them)."""
        return unchanged_until_training(self, undo_untrained)

    @staticmethod
    def _check_call(epochs, progress, checkpoint_path, checkpoint_every, on_epoch, validation_data, options):
        """What can be checked before the model changes (fit re-initialises next)."""
        epochs = positive_int("epochs", epochs)
        if validation_data is not None and options["validation_fraction"] is not None:
            raise ValueError("pass validation_data or validation_fraction, not both")
        horizon = options["schedule_epochs"]
        if options["lr_schedule"] == "cosine" and horizon is not None and epochs > horizon:
            raise ValueError(f"lr_schedule='cosine' anneals over the run's {horizon} epochs (schedule_epochs); "
                             f"{epochs} would go past the end: pass schedule_epochs >= {epochs}")
        progress_flag(progress)
        if on_epoch is not None and not callable(on_epoch):
            raise TypeError(f"on_epoch must be a function of the History, or None; got {on_epoch!r:.80}")
        if checkpoint_every is not None:
            positive_int("checkpoint_every", checkpoint_every)
            if checkpoint_path is None:
                raise ValueError("checkpoint_every needs checkpoint_path, the file to write")
        if checkpoint_path is not None:
            check_target(checkpoint_path, "checkpoint_path")

    def _communicator(self, distributed):
        """``(comm, note)``: the MPI communicator of a distributed call, or None, and why not
        when one was asked for (no MPI, a single rank), for ``_check_distributable`` to warn."""
        distributed = plain_bool(distributed)
        if distributed is None or distributed is False:
            return None, None
        if self.backend != "numba":  # (before MPI starts: every rank raises it alike; audit 61)
            raise ValueError(f"distributed training runs on backend='numba' only; got backend={self.backend!r}")
        from . import distributed as data_parallel

        return data_parallel.communicator(distributed)

    def _check_distributable(self, distributed, options, note):
        """A ValueError for a distributed call that cannot be distributed (its backend is checked
        before MPI starts: ``_communicator``); else the ``note`` of one that trains in this process
        after all, as a DistributedWarning."""
        distributed = plain_bool(distributed)
        if distributed is None or distributed is False:
            return
        from . import distributed as data_parallel

        if options["batch_size"] == 1:
            raise ValueError(f"distributed training needs batch_size >= 2 (or None): {data_parallel.PER_SAMPLE_IS_SEQUENTIAL}")
        if note is not None:
            warn(note, data_parallel.DistributedWarning)

    def _train(self, X, y, sample_weight, epochs, options, validation_data, progress, checkpoint_path,
               checkpoint_every, on_epoch=None, comm=None):
        """Everything is checked before anything changes; then train ``epochs`` epochs of the run
        (over the ranks of ``comm``, an MPI communicator, when given)."""
        self._check_params()
        if self._backend_for != (self.backend, self.threads):
            self._build_backend()  # backend or threads changed since: same weights, other engine
        arch, run = self.arch_, self.run_
        opt = optim.Optimizer(**{name: options[name] for name in OPTIMIZER_OPTIONS})
        previous = self.fit_options_
        state = self.optimizer_state_
        if state is not None and previous is not None and (
            state.slots.shape[0] != opt.n_slots or previous["optimizer"] != opt.optimizer
        ):
            raise ValueError(
                f"partial_fit continues a run trained with {_describe_optimizer(previous)}, whose optimizer state "
                f"does not fit {_describe_optimizer(options)}; start a new run with fit()"
            )
        # The horizon only shapes the cosine schedule; for the others it follows the run's length.
        horizon = options["schedule_epochs"] or run.epochs_done + epochs
        if options["lr_schedule"] != "cosine":
            horizon = max(horizon, run.epochs_done + epochs)
        elif run.epochs_done + epochs > horizon:
            raise ValueError(
                f"lr_schedule='cosine' anneals over the run's {horizon} epochs (schedule_epochs); {run.epochs_done} "
                f"are done, so {epochs} more would go past the end: pass schedule_epochs >= {run.epochs_done + epochs} "
                f"or start a new run with fit()"
            )
        monitor = "val_loss" if validation_data is not None or options["validation_fraction"] is not None else "loss"
        watching = options["early_stopping"] is not None or options["lr_schedule"] == "adaptive"
        if watching and run.epochs_done > 0 and self.history_.monitor not in (None, monitor):
            raise ValueError(
                f"this run has watched {self.history_.monitor} so far (its best loss, which early stopping and the "
                f"adaptive schedule compare with); "
                f"{'pass validation_data or validation_fraction' if monitor == 'loss' else 'leave out the validation data'} "
                f"to go on watching it, or start a new run with fit()"
            )

        X = check_X(X, arch)
        y = check_y(y, arch, len(X))
        sample_weight = check_sample_weight(sample_weight, len(X), arch.dtype)
        unscaled = self._input_scale_warning and _say_unscaled_pixels(
            X, "X", ", and unscaled pixels train badly (10-20% test accuracy after an epoch on MNIST with the defaults)")
        if comm is None:  # a cold first run compiles part of its kernels in a second process meanwhile
            batch = len(X) if options["batch_size"] is None else min(options["batch_size"], len(X))
            self.backend_.start_compiling(X.dtype, batch, opt, sample_weight)
        # the checkpoint's record of the data, computed while the data is converted below
        fingerprint = _in_background(data_fingerprint, X, y, sample_weight, nbytes=X.nbytes + np.asarray(y).nbytes)
        evaluate = None
        if options["validation_fraction"] is not None:
            stratify = arch.is_classifier and not arch.is_multilabel
            train_rows, val_rows = validation_split(y, options["validation_fraction"], self.run_seed, stratify)
            X_val, y_val = X[val_rows], y[val_rows]
            X, y = X[train_rows], y[train_rows]
            if sample_weight is not None:  # mean 1 again over the rows that train
                if not sample_weight[train_rows].any():  # (said as "0 for every sample", of weights that were not)
                    raise ValueError(
                        f"sample_weight is 0 on every sample that trains: its nonzero weights are all on the "
                        f"samples validation_fraction={options['validation_fraction']!r} holds out; give weight to "
                        f"more samples, or pass validation_data instead"
                    )
                sample_weight = check_sample_weight(sample_weight[train_rows], len(X), arch.dtype)
        elif validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise TypeError("validation_data must be a pair (X_val, y_val)")
            X_val = check_X(validation_data[0], arch, name="validation_data[0]")
            if self._input_scale_warning and not unscaled:  # (unscaled like X: as the model trains)
                _say_unscaled_pixels(X_val, "validation_data[0]", ", so the model, trained on X as given, is "
                                                                   "scored on inputs 255 times as large")
            y_val = check_y(validation_data[1], arch, len(X_val), name="validation_data[1]", x_name="validation_data[0]")
            # the validation set as the fit starts, as the training rows are (converted): read as
            # they are each epoch, a caller's arrays changed during the fit changed later epochs'
            # scores (audit 65)
            X_val, y_val = np.array(X_val, copy=True), np.array(y_val, copy=True)
        if monitor == "val_loss":
            val_data = self.backend_.for_inference(X_val)

            def evaluate():
                # (an overflow is said once a call, by the trainer's own warning: NumPy's "overflow
                # encountered in square" came every epoch beside it)
                with np.errstate(over="ignore", invalid="ignore"):
                    metrics = self._metrics(val_data, y_val)
                return metrics["loss"], metrics["accuracy"]

        if comm is not None:
            from .distributed import DistributedBackend, _crc, check_same_run, each_rank_step, is_lead, lead_step

            check_same_run(comm, data=fingerprint.result(), options=options, epochs=epochs, run=run.scalars(),
                           network=[list(arch.layers), self.activation, self.loss, self.output, self.bias, arch.dtype],
                           shuffle=self._shuffle_rng.bit_generator.state, params=self.params_,
                           slots=None if state is None else state.slots,
                           counters=None if state is None else state.counters, sample_weight=sample_weight,
                           validation_data=None if validation_data is None else [_crc(X_val), _crc(y_val)])

        if comm is not None and evaluate is not None:
            # Rank 0's validation scores on every rank: each rank's own could differ in the last
            # bits on nodes of another CPU kind (compiled for each host), and then early stopping
            # or the adaptive rate could decide differently on two ranks, one waiting for the
            # other for ever.
            own_scores = evaluate

            def evaluate():
                return comm.bcast(own_scores() if is_lead(comm) else None, root=0)

        batch = len(X) if options["batch_size"] is None else min(options["batch_size"], len(X))
        # (per-sample training reads the rows' plain pointers alone; distributed training always
        # runs the mini-batch kernel)
        data = self.backend_.prepare(X, batches=batch > 1 or comm is not None)
        fingerprint = fingerprint.result()

        # From here on the run changes.
        self._training = True
        options["schedule_epochs"] = horizon
        self.fit_options_ = options
        self.data_fingerprint_ = fingerprint
        self._unscaled_inputs = unscaled
        if state is None:
            state = self.optimizer_state_ = optim.State.fresh(opt, self.params_, self.run_seed)
        backend = self.backend_
        checkpoints = checkpoint_path is not None
        if comm is not None:
            backend = DistributedBackend(self.backend_, comm)
            # rank 0 alone draws progress and writes files, when and as often as its call asks
            checkpoints, checkpoint_every = comm.bcast((checkpoints, checkpoint_every), root=0)
            if not is_lead(comm):
                progress = False
        compile_before = backend.compile_seconds
        mode = "per-sample" if batch == 1 else "mini-batch"
        what = (f"{'-'.join(map(str, arch.layers))} {np.dtype(arch.dtype).name} {mode} training "
                f"on {'uint8' if X.dtype == np.uint8 else 'float'} inputs")
        try:
            with compile_notice(what, enabled=progress if self.backend == "numba" else False), signals_not_lost():
                backend.warmup(self.params_, data, y, batch, opt, state, sample_weight, inference=evaluate is not None)
        except KeyboardInterrupt as interrupt:
            # a KeyboardInterrupt from deep in Numba and LLVM: what the trainer says of an
            # interrupt before a call's first chunk, with the frames that say nothing cut
            if isinstance(interrupt, trainer.TrainingInterrupted):
                raise
            where = f"training interrupted before epoch {run.epochs_done + 1} began, while the kernels loaded or compiled"
            error = trainer.TrainingInterrupted(f"{where}; nothing of this call trained")
            error.samples_done, error.where = 0, where
            raise error from None
        self.compile_seconds_ += backend.compile_seconds - compile_before
        schedule = trainer.Schedule(
            lr=options["lr"], name=options["lr_schedule"], decay=options["lr_decay"],
            step_epochs=options["lr_step_epochs"], power_t=options["power_t"],
            warmup_epochs=options["warmup_epochs"], horizon=horizon,
        )
        stopping = trainer.Stopping(options["early_stopping"], options["tol"], options["n_iter_no_change"])

        # what this run's last write there left (in an earlier call of the run: a partial_fit), else
        # what the file was when this call began: a file another process wrote since (two runs
        # given one path) stops the run, rather than be replaced by it (the file went back and
        # forth between the two runs, silently; between two calls of a run too, until audit 79)
        found = file_identity(checkpoint_path) if checkpoints else None
        last = self.__dict__.get("_checkpoint_written")
        if found is not None and last is not None and os.path.realpath(last[0]) == os.path.realpath(checkpoint_path):
            written = {"identity": last[1], "epoch": last[2]}
        else:
            written = {"identity": found, "epoch": None}

        def write_checkpoint():
            found = file_identity(checkpoint_path)
            # (or this model's own save there: on_epoch may save it)
            if found != written["identity"] and found != self.__dict__.get("_saved_identity"):
                from .checkpoint import CheckpointReplacedError, replaced_message

                raise CheckpointReplacedError(replaced_message(checkpoint_path, written["epoch"]))
            self._save_recorded(checkpoint_path, written)

        def checkpoint():
            if comm is None:
                write_checkpoint()
            else:  # every rank hears whether rank 0's write failed: no rank waits for it
                lead_step(comm, write_checkpoint)

        every = checkpoint_every or 1
        listener = on_epoch

        def on_epoch():
            if checkpoints and run.epochs_done % every == 0:
                checkpoint()
            if comm is None:
                if listener is not None:
                    listener(self.history_)
            else:  # on every rank, given or not: raised on one rank alone, it left the others waiting for it
                each_rank_step(comm, lambda: listener is None or listener(self.history_))

        try:
            history = trainer.train(
                backend,
                self.params_,
                data,
                y,
                epochs=epochs,
                batch_size=batch,
                schedule=schedule,
                optimizer=opt,
                state=state,
                run=run,
                stopping=stopping,
                shuffle_rng=self._shuffle_rng if options["shuffle"] else None,
                evaluate=evaluate,
                progress=progress,
                history=self.history_,
                on_epoch=on_epoch,
                sample_weight=sample_weight,
                classifies=self.arch_.is_classifier,
            )
        finally:
            getattr(self.backend_, "call_ended", lambda: None)()
        if checkpoints:
            checkpoint()
        return history

    # --- inference ---------------------------------------------------------------------------

    def _require_fitted(self):
        if not hasattr(self, "params_"):
            raise RuntimeError("this MLP is not trained yet: call fit(X, y) first")

    def _network(self):
        """(arch, backend, params) of the trained network for inference, each read once and
        checked against the others: a fit in another thread that builds another network
        replaces them one at a time, and the kernels, given a mix (inputs checked against the
        old network, the new one's weights), read past the arrays' ends: the process crashed
        (audit 38). The weights themselves may still be changing under such a fit."""
        self._require_fitted()
        backend, params = self.backend_, self.params_
        arch = backend.arch
        try:
            self._check_params(params=params, arch=arch)
        except ValueError:
            replaced = not (isinstance(params, np.ndarray) and params.dtype == arch.dtype
                            and params.size == arch.layout().n_params)
            if replaced and (backend is not self.backend_ or params is not self.params_ or "_training" in self.__dict__):
                raise RuntimeError("this model's network was replaced while it was being used (a fit of it in "
                                   "another thread); predict with a model no fit is changing") from None
            raise
        return arch, backend, params

    def decision_function(self, X):
        """The output layer's pre-activation z[N, K] (logits) for ``X`` (as ``fit`` takes it)."""
        return self._decide(X)[1]

    def _decide(self, X, y=_UNLABELLED, quiet=False):
        """(arch, the logits of X, checked y or None) from one reading of the network (_network).
        ``y`` left out: no labels (predictions); given, it is checked, None included (``score(X,
        None)`` said "object of type 'NoneType' has no len()" after the forward pass; audit 60).
        Logits that are NaN or infinite are said in a RuntimeWarning (not when ``quiet``)."""
        network = self._network()
        arch = network[0]
        X = check_X(X, arch)
        y = None if y is _UNLABELLED else check_y(y, arch, len(X))
        if self._input_scale_warning and not self._unscaled_inputs:
            _say_unscaled_pixels(X, "X", ", so a model trained on pixels (uint8, or floats / 255) reads these as "
                                         "255 times as bright")
        z = self._logits_in_chunks(X, network)
        if not quiet and not np.isfinite(z).all():
            _say_non_finite(z, network[2])
        return arch, z, y

    def _logits_in_chunks(self, X, network):
        """The logits of checked ``X``, ``PREDICT_ROWS`` rows at a time."""
        arch, backend, params = network
        if len(X) <= PREDICT_ROWS:
            return self._logits(backend.for_inference(X), backend, params)
        z = np.empty((len(X), arch.layers[-1]), arch.dtype)
        for start in range(0, len(X), PREDICT_ROWS):
            rows = X[start : start + PREDICT_ROWS]
            z[start : start + PREDICT_ROWS] = self._logits(backend.for_inference(rows), backend, params)
        return z

    def _logits(self, data, backend=None, params=None):
        """The backend's logits, with a first compile of its forward pass added to ``compile_seconds_``."""
        backend = self.backend_ if backend is None else backend
        before = backend.compile_seconds
        z = backend.logits(self.params_ if params is None else params, data)
        self.compile_seconds_ += backend.compile_seconds - before
        return z

    def predict_proba(self, X):
        """For ``X`` (as ``fit`` takes it): class probabilities [N, K] (softmax), each sigmoid unit's
        P(1) [N, K] (one unit: P(class 1) [N, 1]; K: multilabel), or the outputs (regression)."""
        return self._outputs(X)

    def _outputs(self, X, quiet=False):
        """``predict_proba``; ``quiet``: NaN or infinite outputs are not warned of (a caller that
        says them its own way, as the estimators' validation score of each epoch)."""
        arch, z, _ = self._decide(X, quiet=quiet)
        with _said_by_decide(z):
            return reference.output_forward(z, arch.loss_code)

    def predict(self, X):
        """For ``X`` (as ``fit`` takes it): class labels [N] for classifiers, 0/1 label sets [N, K] for multilabel (sigmoid
        units: 1 where a unit's probability is above 0.5); outputs [N, K] for regression. A tie
        goes to the lower class, as scikit-learn's: exactly 0.5 is 0 (a bias-free network on a
        blank image), and argmax takes the first of equal probabilities."""
        arch, z, _ = self._decide(X)
        with _said_by_decide(z):
            return _predictions(arch, reference.output_forward(z, arch.loss_code))

    def _metrics(self, data, y, z=None, arch=None):
        """Loss and accuracy on prepared ``data`` (or on its logits ``z``, given)."""
        arch = self.arch_ if arch is None else arch
        if z is None:
            z = self._logits(data)
        out = reference.output_forward(z, arch.loss_code)
        losses = reference.loss_forward(z, out, y, arch.loss_code)
        accuracy = None
        if arch.is_classifier:
            accuracy = reference.count_correct(out, y, arch.loss_code) / len(y)
        return {"loss": float(losses.mean(dtype=np.float64)), "accuracy": accuracy}

    def evaluate(self, X, y):
        """{"loss": mean per-sample loss, "accuracy": fraction right (None for regression)} on ``X``
        and ``y`` (as ``fit`` takes them)."""
        arch, z, y = self._decide(X, y)
        with _said_by_decide(z):
            return self._metrics(None, y, z=z, arch=arch)

    def score(self, X, y):
        """Accuracy for classifiers; the coefficient of determination R^2 for regression: with
        several outputs, of all of them pooled (1 - their summed squared residuals / their summed
        variances), which weights each output by its variance; ``MLPRegressor.score``, as
        scikit-learn's, averages the outputs' R^2 instead."""
        arch, z, y = self._decide(X, y)
        if arch.is_classifier:
            with _said_by_decide(z):
                return self._metrics(None, y, z=z, arch=arch)["accuracy"]
        with _said_by_decide(z):
            residual = ((reference.output_forward(z, arch.loss_code) - y) ** 2).sum(dtype=np.float64)
        total = ((y - y.mean(axis=0)) ** 2).sum(dtype=np.float64)
        return float(1 - residual / total) if total > 0 else float("nan")

    # --- persistence -------------------------------------------------------------------------

    def get_params(self):
        """The constructor's arguments as set (``MODEL_PARAMS``), as scikit-learn's estimators give them."""
        return {name: getattr(self, name) for name in MODEL_PARAMS}

    def _save_recorded(self, path, written=None):
        """``save(path)``, recording what the file is after it in ``written`` (identity, epoch) and
        in ``_checkpoint_written`` (the command line's account of what a stopped run left): also
        when the write is interrupted after its rename (the directory's sync), as the file is
        this run's then."""
        before = file_identity(path)
        try:
            self.save(path)
        finally:
            after = file_identity(path)
            if after != before:
                epoch = self.run_.epochs_done
                if written is not None:
                    written.update(identity=after, epoch=epoch)
                self._checkpoint_written = (os.fspath(path), after, epoch)

    def save(self, path):
        """Write the model and its run to ``path`` (.npz, atomically): everything ``load`` and
        ``partial_fit`` need to go on exactly where it stands (``fastmlp.checkpoint``). A model
        whose training was interrupted part-way into an epoch is saved with a mark of it and an
        ``InterruptedRunWarning``: training on from it starts that epoch anew from its weights.
        Raises ``RuntimeError`` for a model not trained yet, ``OSError`` for a path it cannot write
        (nothing is left half-written)."""
        from . import checkpoint

        self._require_fitted()
        path_argument(path)
        try:
            checkpoint.write(self, path)
        finally:  # what this model wrote last, which its checkpoints there may replace (_train)
            self._saved_identity = file_identity(path)

    @classmethod
    def load(cls, path):
        """The model ``save`` wrote, with its weights, optimizer state, shuffle generator,
        schedule position and history as saved: nothing is re-initialised. Raises ``OSError``
        for a file it cannot read and ``fastmlp.CheckpointError`` naming what is wrong with one
        it can (not a fastmlp checkpoint, damaged, or of a newer format)."""
        from . import checkpoint

        return checkpoint.read(cls, path_argument(path))
