"""Shared fixtures and the per-dtype tolerances every comparison uses."""

import importlib
import os
import subprocess
import sys
import tempfile
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

# Reference-vs-kernel tolerances, defined once. float64: the two compute the same sums in a
# different order, so agreement is to a few ulps times the depth of the sums (~1e-13), and 1e-9
# leaves room for 20 steps of error growth. float32: one ulp is 6e-8; 20 SGD steps through
# sums of up to 784 terms amplify rounding differences to ~1e-5 relative at worst.
TOLERANCES = {
    np.float64: {"rtol": 1e-9, "atol": 1e-12},
    np.float32: {"rtol": 1e-4, "atol": 1e-6},
}


_importorskip = pytest.importorskip


def _importorskip_if_not_installed(modname, minversion=None, reason=None, **kwargs):
    """pytest.importorskip, skipping only when ``modname`` (or a package above it) is not
    installed at all. pytest 7-8.1 skip on any ImportError: scikit-learn 1.3.0, pandas 1.5.0 and
    matplotlib 3.6.0, installed beside NumPy 2 (built for NumPy 1, they do not import), skipped
    every estimator and plot test as "not installed", and the suite passed (audit 56). An extra
    that is installed but does not import fails the tests that need it."""
    __tracebackhide__ = True  # a skip is reported at the test's line, not here
    if "exc_type" in kwargs:  # (pytest >= 8.2: the caller says what skips)
        return _importorskip(modname, minversion, reason, **kwargs)
    try:
        with warnings.catch_warnings():  # as pytest imports it: its import's warnings are not the test's
            warnings.simplefilter("ignore")
            importlib.import_module(modname)
    except ModuleNotFoundError as error:
        if not error.name or not (modname == error.name or modname.startswith(error.name + ".")):
            raise
    return _importorskip(modname, minversion, reason, **kwargs)


pytest.importorskip = _importorskip_if_not_installed


def tolerance(dtype):
    return TOLERANCES[np.dtype(dtype).type]


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(autouse=True)
def no_download_beyond_this_machine(monkeypatch):
    """Nothing at test time may download: an HTTP request (what the downloader sends, through
    requests) to a host other than this machine fails the test. The tests' own mirrors listen on
    127.0.0.1."""
    try:
        import requests
    except ImportError:
        return
    from urllib.parse import urlsplit

    send = requests.Session.send

    def local_only(self, request, **kwargs):
        host = urlsplit(request.url).hostname
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise AssertionError(f"a test tried to download {request.url}: tests must not reach the network")
        return send(self, request, **kwargs)

    monkeypatch.setattr(requests.Session, "send", local_only)


def mnist_dir():
    """FASTMLP_DATA if it holds MNIST; None otherwise."""
    path = os.environ.get("FASTMLP_DATA")
    if not path:
        return None
    names = ("train-images-idx3-ubyte.gz", "train-images-idx3-ubyte")
    return path if any((Path(path) / name).exists() for name in names) else None


@pytest.fixture(scope="session")
def mnist():
    """(X_train, y_train, X_test, y_test) from FASTMLP_DATA, or a visible skip."""
    path = mnist_dir()
    if path is None:
        pytest.skip("full MNIST not found: set FASTMLP_DATA to a directory with the four MNIST files")
    import fastmlp

    return fastmlp.load_mnist(path)


def make_blobs(rng, n_samples, n_features, n_classes, dtype=np.float32):
    """Separable synthetic classes: Gaussian clouds around random centres."""
    centres = rng.normal(0, 3, size=(n_classes, n_features))
    labels = rng.integers(0, n_classes, size=n_samples)
    X = centres[labels] + rng.normal(0, 1, size=(n_samples, n_features))
    return X.astype(dtype), labels.astype(np.int64)


def make_digits(rng, n_samples, n_classes=10, side=28):
    """uint8 'images', ~80% zero pixels, whose class is a bright bar at a class-specific place."""
    labels = rng.integers(0, n_classes, size=n_samples)
    images = np.zeros((n_samples, side, side), dtype=np.uint8)
    noise = rng.random((n_samples, side, side)) < 0.1
    images[noise] = rng.integers(1, 120, size=int(noise.sum()), dtype=np.uint8)
    for i, label in enumerate(labels):
        row = 2 + 2 * int(label)
        images[i, row : row + 2, 4:24] = rng.integers(180, 256, size=(2, 20), dtype=np.uint8)
    return images.reshape(n_samples, -1), labels.astype(np.int64)


@pytest.fixture
def synth():
    """Synthetic data makers and the tolerance table, for tests (conftest is not importable)."""
    from types import SimpleNamespace

    return SimpleNamespace(blobs=make_blobs, digits=make_digits, tolerance=tolerance, write_idx=write_idx)


def write_idx(path, array, magic):
    """Write ``array`` (uint8) as an IDX file with ``magic`` (2051 images, 2049 labels); gzipped
    when ``path`` ends in .gz."""
    import gzip
    import struct

    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + np.asarray(array).astype(np.uint8).tobytes()
    if str(path).endswith(".gz"):
        data = gzip.compress(data)
    Path(path).write_bytes(data)


@pytest.fixture
def tiny_mnist_dir(tmp_path, rng):
    """A directory with a 300/100-sample synthetic dataset in the MNIST IDX layout (gzipped)."""
    X, y = make_digits(rng, 400)
    directory = tmp_path / "tiny-mnist"
    directory.mkdir()
    write_idx(directory / "train-images-idx3-ubyte.gz", X[:300].reshape(-1, 28, 28), 2051)
    write_idx(directory / "train-labels-idx1-ubyte.gz", y[:300], 2049)
    write_idx(directory / "t10k-images-idx3-ubyte.gz", X[300:].reshape(-1, 28, 28), 2051)
    write_idx(directory / "t10k-labels-idx1-ubyte.gz", y[300:], 2049)
    return directory


# --- subprocess work on the idle core ------------------------------------------------------------
# The suite compiles and runs on one core most of the time (about 1.1 of 2 used on average,
# measured 2026-12-01 on an Intel Xeon, Emerald Rapids). Some tests are a fresh Python process compiling on an empty Numba cache
# of its own: minutes of compiling in all on the slower machines, with nothing shared with the
# rest of the suite. Such a test marks that work ``@pytest.mark.background.with_args(job, *args)``
# (``with_args``: a mark given one function would decorate it; a parametrized test puts the mark
# in its ``pytest.param(..., marks=...)``), where ``job(run, *args)`` starts its processes only
# through ``run`` (``BackgroundJobs.run``) and returns what the test asserts on. Every selected
# test's job starts when collection ends, one at a time in a thread, and the test takes its
# result with the ``background`` fixture when it gets there (waiting if it has not finished; an
# exception in the job is raised in the test). Under pytest-xdist, or for a test whose skipif is
# true, nothing starts early: the job runs when the test asks for it.


class BackgroundJobs:
    def __init__(self):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="background-test-job")
        self._futures = {}
        self._processes = set()
        self._lock = threading.Lock()
        self._closed = False

    def start(self, job, *args):
        with self._lock:
            if (job, args) not in self._futures:
                self._futures[job, args] = self._pool.submit(job, self.run, *args)

    def result(self, job, *args):
        self.start(job, *args)
        return self._futures[job, args].result()

    def run(self, args, env=None, timeout=600):
        """``python args`` in a fresh process (this environment with ``env`` added, cwd the system
        temporary directory): (returncode, stdout, stderr)."""
        environment = {**os.environ, **(env or {})}
        with self._lock:
            if self._closed:
                raise RuntimeError("the test session has ended")
            process = subprocess.Popen([sys.executable, *args], env=environment, cwd=tempfile.gettempdir(),
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            self._processes.add(process)
        try:
            out, err = process.communicate(timeout=timeout)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
            with self._lock:
                self._processes.discard(process)
        return process.returncode, out, err

    def close(self):
        """Drop the jobs not started and stop the processes still running (Ctrl-C, -x)."""
        with self._lock:
            self._closed = True
            for process in self._processes:
                process.kill()
        self._pool.shutdown(wait=False, cancel_futures=True)


_BACKGROUND = BackgroundJobs()


def _skipped_for_sure(item):
    return item.get_closest_marker("skip") is not None or any(
        marker.args and marker.args[0] is True for marker in item.iter_markers("skipif"))


def pytest_collection_finish(session):
    if hasattr(session.config, "workerinput"):  # a pytest-xdist worker: no idle core to use
        return
    for item in session.items:
        marker = item.get_closest_marker("background")
        if marker is not None and not _skipped_for_sure(item):
            _BACKGROUND.start(*marker.args)


# A test that hangs (a deadlock, a subprocess that never answers) would hold CI until its 90-minute
# limit, saying nothing of where. With pytest-timeout (in the test extra) every test here has
# TEST_SECONDS, setup and the wait for its background job included, after which the plugin prints
# every thread's stack and ends the run. The slowest test took 92 s in CI on the Zen 3 (session 25,
# `--durations=10`: a float64 kernel compiled in the nice-19 bounds pass beside the suite), so only
# a hang comes near it.
TEST_SECONDS = 1200


def pytest_collection_modifyitems(config, items):
    if not config.pluginmanager.hasplugin("timeout"):
        return
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(TEST_SECONDS, method="thread"))


def pytest_sessionfinish(session):
    _BACKGROUND.close()
    # A cold-cache fit tells its second process to finish after its process exits (_prewarm); a
    # test run leaves nothing running behind it (CI removes the cache it would write to), so here
    # they are stopped at exit, as every process did before. Finishing is tested in processes of
    # its own (test_prewarm).
    from fastmlp import _prewarm

    _prewarm.FINISH_AFTER_EXIT = ()


@pytest.fixture(scope="session")
def background():
    """``background(job, *args)``: the result of the test's ``background`` mark's job."""
    return _BACKGROUND.result


@pytest.fixture(scope="session")
def python_process():
    """``python_process(args, env=None)``: ``BackgroundJobs.run`` here and now, for a test whose
    process must run when the test does."""
    return _BACKGROUND.run


@pytest.fixture(autouse=True, scope="session")
def _serial_twin_in_the_bounds_checked_pass():
    """In the bounds-checked pass of .ci/run (NUMBA_BOUNDSCHECK=1) the mini-batch kernel is its
    serial twin (``kernels.minibatch_sgd_chunk_serial``): the same Python function compiled
    without ``parallel``, its ``prange`` loops plain loops over the same code, so every index
    it takes is checked all the same. Three specialisations of it compiled in 75 s there against
    114 s for the parallel ones, helpers included (the pass: 149 s of CPU instead of 177;
    2026-12-02, AMD EPYC Zen 3). The pass starts no compiling second process either: every
    kernel it runs is compiled in its own process, bounds-checked. Elsewhere nothing changes."""
    import numba

    if not numba.config.BOUNDSCHECK or numba.config.DISABLE_JIT:
        yield
        return
    from fastmlp import kernels

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kernels, "minibatch_sgd_chunk", kernels.minibatch_sgd_chunk_serial)
        patch.setenv("FASTMLP_BACKGROUND_COMPILE", "0")
        yield
