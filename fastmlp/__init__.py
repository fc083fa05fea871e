"""fastmlp: multilayer perceptrons on MNIST-style data, with a compiled training core.

    >>> import fastmlp
    >>> X_train, y_train, X_test, y_test = fastmlp.load_mnist()
    >>> model = fastmlp.MLP([784, 128, 10], activation="sigmoid", seed=0)
    >>> history = model.fit(X_train, y_train, epochs=1, batch_size=1, lr=0.1)
    >>> model.score(X_test, y_test)
"""

from .checkpoint import CheckpointError
from .data import DataFormatError, DataNotFoundError, load_mnist, read_csv, read_idx
from .metrics import confusion_matrix
from .model import MLP
from .network import SymmetryWarning
from .plot import plot_confusion_matrix, plot_history  # matplotlib is imported when they are called
from .trainer import DivergenceError, History, TrainingInterrupted

__version__ = "0.1.0"

__all__ = [
    "MLP",
    "load_mnist",
    "read_idx",
    "read_csv",
    "History",
    "plot_history",
    "plot_confusion_matrix",
    "confusion_matrix",
    "CheckpointError",
    "DataFormatError",
    "DataNotFoundError",
    "DivergenceError",
    "TrainingInterrupted",
    "SymmetryWarning",
    "__version__",
]
