"""Per-sample threads="auto" (session 68): what audit 76's mutants and probes found untested,
and its one bug (threads_used said the last chunk's count, not the fit's most)."""

import pickle

import numba
import numpy as np
import pytest

from fastmlp import MLP, _numba_backend, _prewarm, kernels
from fastmlp.backends import make_backend
from fastmlp.network import Architecture, init_params

from .test_parity import Alternating

pytestmark = pytest.mark.skipif(numba.config.DISABLE_JIT, reason="threads only exist compiled")


def digits(n, inputs=64, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, size=(n, inputs)).astype(np.uint8)
    X[rng.random(X.shape) < 0.6] = 0
    return X, rng.integers(0, classes, n)


def needs_two_threads():
    if kernels.usable_threads(2, (64, 128, 10)) < 2:
        pytest.skip("one core: per-sample training runs on one thread whatever is asked")


def test_threads_used_counts_a_chunk_s_two_thread_call_before_a_one_thread_one(monkeypatch):
    # audit 76 P13: threads_used = count (not the most so far) passed every test
    needs_two_threads()
    monkeypatch.setenv("FASTMLP_BACKGROUND_COMPILE", "0")
    X, y = digits(2000)
    model = MLP([64, 128, 10], seed=1)
    model.fit(X[:10], y[:10], batch_size=1, progress=False)
    model.backend_.persample_threads = chooser = Alternating()
    model.partial_fit(X, y)  # one chunk: calls 700 (1), 256 (2), 1044 (1)
    assert chooser.calls == [1, 2, 1]
    assert model.backend_.threads_used == 2


def test_threads_used_is_the_most_over_the_fit_s_chunks(monkeypatch):
    # audit 76 bug B1: per sample, "auto" reset threads_used at every chunk, so a fit whose last
    # chunk ran on one thread (here: 8193 samples, the last chunk of one sample, which never goes
    # to the chooser) said 1 (and `fastmlp train --json` "threads": 1) after 8192 samples on two.
    needs_two_threads()
    monkeypatch.setenv("FASTMLP_BACKGROUND_COMPILE", "0")
    monkeypatch.setattr(_numba_backend.NumbaBackend, "persample_chooser", staticmethod(lambda: Alternating((300,))))
    X, y = digits(8193)
    model = MLP([64, 128, 10], seed=1)
    model.fit(X, y, batch_size=1, progress=False)
    assert 2 in model.backend_.persample_threads.calls
    assert model.backend_.threads_used == 2


def test_auto_keeps_one_thread_per_sample_where_one_core_is_available(monkeypatch):
    # audit 76 P16: without the usable_threads guard "auto" built a chooser on one core, whose
    # "two-thread" calls ran on one thread and were reported as two
    from fastmlp.kernels import sgd

    monkeypatch.setattr(sgd, "available_cores", lambda: 1)
    backend = make_backend("numba", Architecture([64, 128, 10], "sigmoid", "cross_entropy"), threads="auto")
    assert backend.persample_threads is None


def test_auto_s_per_sample_chooser_has_its_options():
    # audit 76 P8: a plain ThreadChooser(2) here passed every test
    needs_two_threads()
    backend = make_backend("numba", Architecture([64, 128, 10], "sigmoid", "cross_entropy"), threads="auto")
    chooser = backend.persample_threads
    assert (chooser.most, chooser.probe_in_two_calls, chooser.retry_sooner) == (2, True, True)


def test_a_pickled_backend_holds_no_two_thread_worker():
    # audit 76 P14: the set of input dtypes whose worker this process holds must not travel
    # (another process, another cache: it would compile the worker in the middle of a fit)
    backend = make_backend("numba", Architecture([64, 128, 10], "sigmoid", "cross_entropy"), threads="auto")
    backend._two_threads.add("uint8")
    assert pickle.loads(pickle.dumps(backend))._two_threads == set()


def test_every_plan_names_its_kernel_s_arguments():
    # audit 76 P7: kernel_dtypes' "W1" for "two-threads" was tested nowhere (the tests replace
    # start_prewarm); "params" there makes start("two-threads", ...) raise TypeError mid-fit
    for plan in _prewarm.PLANS:
        for dtype, values in (("float32", "uint8"), ("float64", "float64")):
            dtypes = _prewarm.kernel_dtypes(plan, dtype, values)
            kernel = _prewarm._kernel_of(plan)
            _prewarm.compiled_here(kernel, argument_dtypes=dtypes)  # no TypeError
            _prewarm.cache_is_cold(kernel, argument_dtypes=dtypes)


def test_a_two_threads_process_finishes_after_exit(monkeypatch):
    # audit 76 P17: without "two-threads" in FINISH_AFTER_EXIT a short script's second process
    # was stopped at its exit and the worker never stored (every later run on one thread)
    class Process:
        fastmlp_plan = ("two-threads", "float32", "uint8")

    monkeypatch.setattr(_prewarm, "cache_is_cold", lambda kernel, *a, **k: True)
    assert _prewarm._still_needed(Process())


class EndedWorker:
    def __init__(self, code):
        self.returncode = code

    def poll(self):
        return self.returncode


def test_a_failed_two_threads_process_is_not_started_again_and_the_worker_loads_once(monkeypatch):
    # audit 76 P5 and P6: a second process that ended without storing the worker is not started
    # again chunk after chunk (the worker is compiled here, once), and the worker's two-sample
    # load runs once per input dtype, not before every chunk
    needs_two_threads()
    started, calls = [], []
    monkeypatch.setattr(_numba_backend, "compiled_here", lambda kernel, *a, **k: False)
    monkeypatch.setattr(_numba_backend, "cache_is_cold", lambda kernel, *a, **k: True)

    def start(plan, dtype, values_dtype):
        if plan != "two-threads":
            return None
        started.append(plan)
        return EndedWorker(1)  # it failed: nothing stored

    monkeypatch.setattr(_numba_backend, "start_prewarm", start)
    threaded = kernels.sgd_persample_chunk_threaded

    def counted(*args, threads):
        calls.append(args[-1] - args[-2])  # samples in the call
        return threaded(*args, threads=threads)

    monkeypatch.setattr(kernels, "sgd_persample_chunk_threaded", counted)
    X, y = digits(20_000)  # three chunks an epoch
    model = MLP([64, 128, 10], seed=1)
    model.fit(X, y, epochs=2, batch_size=1, progress=False)
    assert started == ["two-threads"]
    assert calls.count(2) == 1, calls  # the load; the chooser's calls are of hundreds of samples


@pytest.mark.parametrize("layers", [[30, 128, 32, 4], [30, 256, 64, 48, 4]])
def test_deeper_networks_per_sample_match_the_reference(layers):
    # audit 76 M7: the halves in sgd_persample_chunk are for one hidden layer only; without the
    # n_layers == 2 guard a first hidden layer of 128 units split the LAST layer at 64 inputs
    # (past its 32) and every test still passed
    rng = np.random.default_rng(0)
    arch = Architecture(layers, "tanh", "cross_entropy", dtype=np.float64)
    X = rng.integers(0, 256, size=(300, layers[0])).astype(np.uint8)
    y = rng.integers(0, layers[-1], 300)
    params = init_params(arch, "xavier", seed=0)
    order = np.arange(300, dtype=np.int64)
    out = {}
    for name in ("numba", "numpy"):
        backend = make_backend(name, arch, **({"threads": 1} if name == "numba" else {}))
        out[name] = params.copy()
        backend.train_chunk(out[name], backend.prepare(X), y, order, 0.1, 1)
    np.testing.assert_allclose(out["numba"], out["numpy"], rtol=1e-9, atol=1e-11)
    assert not np.array_equal(out["numba"], params)


class Compiling:
    def poll(self):
        return None


def test_the_worker_held_for_one_input_dtype_does_not_make_another_ready(monkeypatch):
    # audit 76 P21: _two_threads keyed by nothing but "held" let a float-input fit after a uint8
    # one call the two-thread worker uncompiled for its inputs: its compile (seconds) inside the
    # chooser's timed probe, in the middle of the fit; it must wait for the second process instead
    needs_two_threads()
    monkeypatch.setattr(_numba_backend, "compiled_here", lambda kernel, *a, **k: False)
    monkeypatch.setattr(_numba_backend, "cache_is_cold", lambda kernel, *a, **k: True)
    monkeypatch.setattr(_numba_backend, "start_prewarm", lambda plan, dtype, values_dtype: Compiling())
    arch = Architecture([16, 128, 10], "sigmoid", "cross_entropy")
    backend = make_backend("numba", arch, threads="auto")
    backend._two_threads.add("uint8")  # held for uint8 inputs
    data = backend.prepare(np.random.default_rng(0).random((8, 16)))  # float64 inputs
    labels, targets = backend._labels_and_targets(np.zeros(8, np.int64))
    assert not backend._two_threads_ready(init_params(arch, "xavier", seed=0), data, labels, targets)


@pytest.mark.parametrize("threads, n_samples, batch_size, weighted, held", [
    ("auto", 600, 1, False, True),
    (1, 600, 1, False, False),  # a thread count the user chose: no chooser
    ("auto", 511, 1, False, False),  # fewer than PERSAMPLE_FEWEST: the chooser is never asked
    ("auto", 600, 32, False, False),  # mini-batch
    ("auto", 600, 1, True, False),  # sample weights: the general kernel, one thread
])
def test_warmup_holds_the_two_thread_worker_where_auto_may_call_it(monkeypatch, threads, n_samples, batch_size,
                                                                   weighted, held):
    # session 69: left to the first chunk, the worker's load (30-40 ms) fell inside the fit's
    # training time, and in bench/test_busy.py's quiet case inside auto's first round (0.32-0.44x
    # threads=2's); warmup, which loads what training will call, holds it now
    needs_two_threads()
    monkeypatch.setenv("FASTMLP_BACKGROUND_COMPILE", "0")
    arch = Architecture([64, 128, 10], "sigmoid", "cross_entropy")
    params = init_params(arch, "xavier", seed=0)
    X, y = digits(n_samples)
    backend = make_backend("numba", arch, threads=threads)
    # warm-up's own two samples left out: with sample weights they would compile the general
    # kernel (15 s on CI's cold cache) for nothing this test looks at
    monkeypatch.setattr(backend, "train_chunk", lambda *args, **kwargs: None)
    weights = np.ones(n_samples, params.dtype) if weighted else None
    backend.warmup(params, backend.prepare(X), y, batch_size, sample_weight=weights, inference=False)
    assert ("uint8" in backend._two_threads) == held


def test_warmup_leaves_the_worker_alone_while_the_one_thread_kernel_compiles(monkeypatch):
    # audit 77 M14: dropping the guard on the cold start's second process passed every test; without
    # it warmup went on to _two_threads_ready during a cold start (on a cold cache: the worker's
    # second process beside the one-thread kernel's, two compiles at once on a two-core machine)
    needs_two_threads()
    monkeypatch.setenv("FASTMLP_BACKGROUND_COMPILE", "0")
    asked = []
    monkeypatch.setattr(_numba_backend.NumbaBackend, "_two_threads_ready", lambda self, *args: asked.append(1) or False)
    arch = Architecture([64, 128, 10], "sigmoid", "cross_entropy")
    params = init_params(arch, "xavier", seed=0)
    X, y = digits(600)
    for compiling in (Compiling(), None):  # still compiling (a cold start), then none
        backend = make_backend("numba", arch, threads="auto")
        backend._persample_compiling = compiling
        backend.warmup(params, backend.prepare(X), y, 1)
        assert len(asked) == (compiling is None)


def test_warmup_leaves_the_worker_alone_where_numba_runs_one_thread(monkeypatch):
    # audit 77 M15: the chooser is only asked with two Numba threads or more (train_chunk); dropping
    # warmup's numba.get_num_threads() guard passed every test, and under numba.set_num_threads(1)
    # warmup loaded (on a cold cache: had a second process compile) a worker no chunk would call
    needs_two_threads()
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("NUMBA_NUM_THREADS=1: no chooser per sample")
    monkeypatch.setenv("FASTMLP_BACKGROUND_COMPILE", "0")
    arch = Architecture([64, 128, 10], "sigmoid", "cross_entropy")
    backend = make_backend("numba", arch, threads="auto")
    assert backend.persample_threads is not None
    X, y = digits(600)
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        backend.warmup(init_params(arch, "xavier", seed=0), backend.prepare(X), y, 1)
    finally:
        numba.set_num_threads(previous)
    assert "uint8" not in backend._two_threads


def test_a_partial_fit_whose_first_call_was_small_loads_the_worker_in_a_later_warm_up(monkeypatch):
    # audit 77: warmup returned early for a key it had warmed before, ahead of the worker's load, so a
    # partial_fit whose first call had fewer than 512 samples loaded the worker inside a later call's
    # training time (30-40 ms), the cost warm-up's load was to take out of it
    import inspect

    needs_two_threads()
    monkeypatch.setenv("FASTMLP_BACKGROUND_COMPILE", "0")
    loaded_by = []
    ready = _numba_backend.NumbaBackend._two_threads_ready

    def watched(self, *args):
        held = "uint8" in self._two_threads
        result = ready(self, *args)
        if result and not held:
            loaded_by.append(inspect.stack()[1].function)
        return result

    monkeypatch.setattr(_numba_backend.NumbaBackend, "_two_threads_ready", watched)
    X, y = digits(1000)
    model = MLP([64, 128, 10], seed=1)
    model.fit(X[:100], y[:100], batch_size=1, progress=False)  # too few samples for the chooser
    assert loaded_by == []
    model.partial_fit(X[100:], y[100:])
    assert loaded_by == ["_warm_two_threads"]
