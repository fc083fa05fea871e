"""Where the test suite's CPU goes: every Python process records its CPU time and Numba's compile
time per function, and the test that was running (PYTEST_CURRENT_TEST) when each compile began.

Put this folder on PYTHONPATH and set CIPROF_DIR to an empty folder; with ``-p per_test`` the
pytest process also records each test's wall and CPU time (per_test.py, into CIPROF_DIR/tests.json).
summary.py prints the totals. Session 59 (BENCHMARKS.md, "Where CI's CPU goes"):

    cd CLONE && python3 -m venv ../venv && ../venv/bin/pip install ".[test]"   # a cold kernel cache
    CIPROF_DIR=/tmp/prof PYTHONPATH=$PWD/bench/experiments/ci_profile FASTMLP_DATA=../shared/data/mnist \
        ../venv/bin/pytest -p no:cacheprovider -p per_test
    python bench/experiments/ci_profile/summary.py /tmp/prof

Each process writes CIPROF_DIR/<pid>.json at exit: one killed by a signal or ended by os._exit
(forked pool workers) is missed. Compile times are exclusive (nested compiles subtracted). A
subprocess inherits PYTEST_CURRENT_TEST from the test running when it started, so the suite's
background jobs (tests/conftest.py) are filed under whichever test ran when their turn came.
"""
import atexit
import importlib.abc
import importlib.machinery
import json
import os
import resource
import sys
import time

_DIR = os.environ.get("CIPROF_DIR")
_compiles = {}
_stack = []
_t0 = time.time()


def _install_listener():
    from numba.core import event

    class _Listener(event.Listener):
        def on_start(self, ev):
            _stack.append([time.perf_counter(), 0.0])

        def on_end(self, ev):
            start, inner = _stack.pop()
            total = time.perf_counter() - start
            if _stack:
                _stack[-1][1] += total
            try:
                d = ev.data["dispatcher"]
                name = d.py_func.__module__ + "." + d.py_func.__qualname__
            except Exception:
                name = "?"
            test = os.environ.get("PYTEST_CURRENT_TEST", "").split(" (")[0]
            rec = _compiles.setdefault(test + " | " + name, [0, 0.0])
            rec[0] += 1
            rec[1] += total - inner

    event.register("numba:compile", _Listener())


class _Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "numba.core.event":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is None or spec.loader is None:
            return spec
        orig = spec.loader.exec_module

        def exec_module(module):
            orig(module)
            try:
                # registered once the module exists; the listener class needs module.Listener
                sys.modules[name] = module
                _install_listener()
            except Exception as e:  # pragma: no cover
                print("ciprof:", e, file=sys.stderr)

        spec.loader.exec_module = exec_module
        return spec


def _dump():
    r = resource.getrusage(resource.RUSAGE_SELF)
    rec = {
        "pid": os.getpid(), "ppid": os.getppid(), "argv": sys.argv[:6],
        "test": os.environ.get("PYTEST_CURRENT_TEST", ""),
        "cpu": r.ru_utime + r.ru_stime, "wall": time.time() - _t0,
        "cache_dir": os.environ.get("NUMBA_CACHE_DIR", ""),
        "nojit": os.environ.get("NUMBA_DISABLE_JIT", ""),
        "compiles": _compiles,
    }
    try:
        with open(os.path.join(_DIR, f"{os.getpid()}.json"), "w") as fh:
            json.dump(rec, fh)
    except OSError:
        pass


if _DIR:
    sys.meta_path.insert(0, _Hook())
    atexit.register(_dump)
