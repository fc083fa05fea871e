"""What to say when an optional extra (matplotlib, dask.distributed, a peer) does not import.

An extra can be missing, or installed and broken: scikit-learn 1.3.0, pandas 1.5.0 and
matplotlib 3.6.0, all built for NumPy 1, fail to import beside NumPy 2, and a missing dependency
of the extra's own fails it the same way. "Not installed" is then the wrong advice (audit 56).
"""

import sys


def not_installed(error, module):
    """Whether ImportError ``error``, raised importing ``module`` (dotted names allowed) or a
    module of its package, says that the module, or a package above it, is not installed at all
    (or blocked, as ``sys.modules[package] = None`` does: a module of the package then fails with
    its own name)."""
    name = getattr(error, "name", None)
    if not isinstance(error, ModuleNotFoundError) or not name:
        return False
    package = name.split(".")[0]
    return module == name or module.startswith(name + ".") or (
        module.split(".")[0] == package and package in sys.modules and sys.modules[package] is None)


def which_is(error, module, extra):
    """The end of "X needs <module>, ...": not installed, or installed but failing to import (with
    the error), and what to install (``fastmlp[extra]``)."""
    if not_installed(error, module):
        return f'which is not installed: pip install "fastmlp[{extra}]"'
    return (f"which is installed but does not import ({type(error).__name__}: {error}): reinstall it, or "
            f'pip install --upgrade "fastmlp[{extra}]"')
