"""fastmlp's warnings said at the line of the code that called fastmlp.

``warnings.warn(..., stacklevel=N)`` with a fixed N names the right line for one path only:
``init="zeros"``'s SymmetryWarning named the user's line from ``MLP.initialize()`` but
``fastmlp/model.py`` from ``fit`` (audit 51), so a filter on the application's module missed it,
and Python's "default" action said it once per fastmlp line instead of once per call. ``warn``
walks out of the package instead (``skip_file_prefixes`` does it from Python 3.12 on).
"""

import os
import sys
import warnings

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn(message, category):
    """``warnings.warn(message, category)`` attributed to the first frame outside fastmlp."""
    frame = sys._getframe(1)
    level = 1  # the frame that called this one
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame = frame.f_back
        level += 1
    said = category(message)
    said.fastmlp = True  # fastmlp's own, whatever its category (``is_fastmlps``)
    warnings.warn(said, stacklevel=level + 1)  # (+1: this function's own frame)


def is_fastmlps(message, category):
    """Whether a warning is fastmlp's own: of a category of fastmlp's (SymmetryWarning, ...) or
    raised by ``warn`` (a plain UserWarning or RuntimeWarning among them: an option without
    effect, a validation loss that overflowed), which the command line says by its message alone."""
    return category.__module__.split(".")[0] == "fastmlp" or getattr(message, "fastmlp", False) is True
