"""fastmlp: multilayer perceptrons on MNIST-style data, with a compiled training core.

    >>> import fastmlp
    >>> X_train, y_train, X_test, y_test = fastmlp.load_mnist()
    >>> model = fastmlp.MLP([784, 128, 10], activation="sigmoid", seed=0)
    >>> history = model.fit(X_train, y_train, epochs=1, batch_size=1, lr=0.1)
    >>> round(model.score(X_test, y_test), 2)  # test accuracy after one epoch
    0.96

``fastmlp.MLPClassifier`` and ``fastmlp.MLPRegressor`` are scikit-learn drop-ins (the extra
``fastmlp[sklearn]``); scikit-learn is imported only when one of them is first used, so they are
not in ``__all__`` (``from fastmlp import *`` would import it, or fail without it).
"""

from .checkpoint import CheckpointError, CheckpointReplacedError, InterruptedRunWarning
from ._validation import InputScaleWarning
from .data import DataFormatError, DataNotFoundError, load_dataset, load_mnist, read_csv, read_idx
from .metrics import confusion_matrix
from .model import MLP
from .network import SymmetryWarning
from .plot import plot_confusion_matrix, plot_history  # matplotlib is imported when they are called
from .sweeps import SweepResult, sweep  # dask is imported when a sweep runs on it
from .trainer import DivergenceError, History, TrainingInterrupted

__version__ = "0.1.0"

__all__ = [
    "MLP",
    "load_mnist",
    "load_dataset",
    "read_idx",
    "read_csv",
    "History",
    "plot_history",
    "plot_confusion_matrix",
    "confusion_matrix",
    "sweep",
    "SweepResult",
    "CheckpointError",
    "CheckpointReplacedError",
    "InterruptedRunWarning",
    "DataFormatError",
    "DataNotFoundError",
    "DivergenceError",
    "TrainingInterrupted",
    "SymmetryWarning",
    "InputScaleWarning",
    "__version__",
]

_SKLEARN_ESTIMATORS = ("MLPClassifier", "MLPRegressor")


def __dir__():
    """The module's names and the estimators served on first use (tab completion offers them)."""
    return sorted(set(globals()) | set(_SKLEARN_ESTIMATORS))


def __getattr__(name):
    """The scikit-learn estimators, imported on first use so that ``import fastmlp`` never
    imports scikit-learn."""
    if name in _SKLEARN_ESTIMATORS:
        try:
            from . import estimators
        except ImportError as error:
            if error.name is None or error.name.split(".")[0] != "sklearn":
                raise  # (fastmlp's own, or another package's)
            from ._extras import which_is

            raise ImportError(f"fastmlp.{name} needs scikit-learn, {which_is(error, 'sklearn', 'sklearn')}") from error
        return getattr(estimators, name)
    raise AttributeError(f"module 'fastmlp' has no attribute {name!r}")
