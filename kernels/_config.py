"""Numba options shared by every kernel in ``fastmlp.kernels``.

Kernels take their options from here, so a change of policy (flags, caching) is one edit.
"""

import hashlib
import os
import stat
import tempfile
import warnings

from numba.core import caching

# Every fast-math flag except "nnan" and "ninf": with those two LLVM may assume that no value
# is NaN or infinite and fold away ``np.isfinite(loss)``, so a diverging run could not be
# detected. "reassoc" is what lets LLVM vectorise reductions (dot products, sums).
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}

KERNEL_OPTIONS = dict(
    nogil=True,  # the threaded per-sample trainer runs kernels from several Python threads
    cache=True,  # compiled code is stored next to the sources: a new process starts at once
    fastmath=FASTMATH,
    error_model="numpy",  # division by zero gives inf/nan like NumPy instead of raising
    boundscheck=False,
    # No C-callable wrapper (only first-class function calls use one): about 15-20 ms less
    # first compile per function, of about 120 ms for a small one (2026-12-02, Intel Xeon)
    no_cfunc_wrapper=True,
)

# Scalar helpers called inside loops (exp, sigmoid, views) are compiled once each like any kernel
# and inlined by LLVM, where loops of them still vectorise (measured: the activation loops run
# at the same ns per element). Inlining them at the Numba IR level instead (inline="always")
# re-typed their code at every call site: about a third of every kernel's first compile.

# Threading: the fused per-sample trainer uses Python threads running ``nogil`` kernels and
# synchronises them itself (see ``sgd.py``), so it needs no Numba threading layer. Kernels
# written with ``prange`` should use PARALLEL_OPTIONS and leave the layer to Numba's default
# choice (OpenMP or TBB when installed, else workqueue); do not nest them inside the threaded
# trainer, the workqueue layer cannot be entered from two threads at once. A prange costs
# seconds of first compile (about 9 s for the mini-batch kernel's two); the mini-batch kernel
# on the per-sample trainer's runtime compiled 9 s faster but trained 8-18% slower on two
# threads (2026-11-30, BENCHMARKS.md "Start-up"), so it keeps its prange, and a cold start
# trains on the same function run by the interpreter over its compiled helpers meanwhile
# (minibatch.py: the interpreted kernel).
PARALLEL_OPTIONS = dict(KERNEL_OPTIONS, parallel=True)


# ---------------------------------------------------------------------------------------------
# Cache invalidation. Numba stamps a cached kernel with the hash of the one file that defines
# it, but our kernels inline helpers from the sibling modules (sgd.py compiles code from
# linear.py, loss.py, activation.py): after an edit of linear.py alone, sgd.py's cached
# kernels would still be loaded, stale. Kernels of this folder are therefore stamped with the
# hash of all its sources, so that any edit here recompiles all of them.

_KERNELS_DIR = os.path.dirname(os.path.abspath(__file__))


def _sources_hash():
    digest = hashlib.sha256()
    for name in sorted(os.listdir(_KERNELS_DIR)):
        if name.endswith(".py"):
            with open(os.path.join(_KERNELS_DIR, name), "rb") as source:
                digest.update(name.encode() + b"\0" + source.read())
    # the kernels' register block width where a test chose it (vectors.py)
    digest.update(os.environ.get("FASTMLP_REGISTER_BLOCK", "").encode())
    return digest.digest()


_SOURCES_HASH = _sources_hash()


class _KernelsLocatorMixin:
    """Numba cache locator for the kernels of this folder: same places as Numba's own
    locators, stamped with the hash of every source file of the folder."""

    def get_source_stamp(self):
        return _SOURCES_HASH

    @classmethod
    def from_function(cls, py_func, py_file):
        if os.path.dirname(os.path.abspath(py_file)) != _KERNELS_DIR:
            return None
        return super().from_function(py_func, py_file)


_fallback_said = []


def _fallback_cache_class(base):
    """The last place to cache the kernels: ``fastmlp-numba-cache-UID`` in the temporary folder,
    where neither the kernels' ``__pycache__`` (a site-packages the user cannot write) nor the
    user's cache folder (no HOME, a read-only one) can be written: there every kernel failed
    to compile ("cannot cache function ...: no locator available"), even for NumPy training.
    The folder must be this user's own and writable by no one else (its files are loaded as
    code); else there is no fallback. ``NUMBA_CACHE_DIR`` chooses the place instead."""

    class KernelsTemporaryCacheLocator(_KernelsLocatorMixin, base):
        def __init__(self, py_func, py_file):
            super().__init__(py_func, py_file)
            self._cache_path = os.path.join(_fallback_cache_dir(), self.get_suitable_cache_subpath(py_file))

        @classmethod
        def from_function(cls, py_func, py_file):
            if os.path.dirname(os.path.abspath(py_file)) != _KERNELS_DIR:
                return None  # (every cached function of the process comes here: no folder made for them)
            folder = _fallback_cache_dir()
            try:
                os.makedirs(folder, mode=0o700, exist_ok=True)
                status = os.lstat(folder)
            except OSError:
                return None
            # (on Windows st_mode says nothing of who may write: every folder reads 0o777 there)
            if not stat.S_ISDIR(status.st_mode) or (os.name == "posix" and status.st_mode & 0o022) or (
                    hasattr(os, "getuid") and status.st_uid != os.getuid()):
                return None  # another user's, or writable by others: never loaded
            self = super().from_function(py_func, py_file)
            if self is not None and not _fallback_said:
                _fallback_said.append(True)
                chosen = os.environ.get("NUMBA_CACHE_DIR")
                where = (f"NUMBA_CACHE_DIR ({chosen}) cannot be written" if chosen else
                         "no writable cache for the compiled kernels next to them or in the user's cache folder")
                warnings.warn(f"fastmlp: {where}: caching them in {folder}"
                              + ("" if chosen else " (set NUMBA_CACHE_DIR to choose a place)"), RuntimeWarning,
                              stacklevel=2)
            return self

    KernelsTemporaryCacheLocator.__module__ = __name__
    return KernelsTemporaryCacheLocator


def _fallback_cache_dir():
    user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    return os.path.join(tempfile.gettempdir(), f"fastmlp-numba-cache-{user}")


def _numba_cache_class(name):
    # public names since Numba 0.61, underscored before
    return getattr(caching, name, None) or getattr(caching, "_" + name)


try:
    _registry = _numba_cache_class("CacheImpl")._locator_classes
    if not any(issubclass(locator, _KernelsLocatorMixin) for locator in _registry):
        _registry[:0] = [
            type("Kernels" + name, (_KernelsLocatorMixin, _numba_cache_class(name)),
                 {"__module__": __name__})
            for name in ("UserProvidedCacheLocator", "InTreeCacheLocator", "UserWideCacheLocator")
        ] + [_fallback_cache_class(_numba_cache_class("UserWideCacheLocator"))]
except AttributeError:  # a Numba without these classes: per-file stamps, as Numba does
    pass
