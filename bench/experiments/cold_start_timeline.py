"""When a cold mini-batch fit's two processes compile what: one cold fit, timed.

    python bench/experiments/cold_start_timeline.py

On an empty Numba cache (a temporary ``NUMBA_CACHE_DIR``), fits 784-128-10 sigmoid, float32, on 64
random uint8 samples at batch 32, as ``bench/startup.py`` does, and prints: when the import ended,
when ``NumbaBackend.prepare`` (the conversion to CSR rows) started and ended, when the fit took its
first step; the second process's claims directory (``fastmlp._prewarm``: a file when a process
claims a helper, ``.done`` when it has stored it), in seconds from the start; and the functions this
process compiled for longer than 0.15 s (Numba's compile events). Needs two usable cores (else no
second process starts).
"""

import os
import tempfile
import time

os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp()
T0_WALL, T0 = time.time(), time.perf_counter()

import numpy as np  # noqa: E402
from numba.core import event  # noqa: E402

import fastmlp  # noqa: E402
from fastmlp import _numba_backend, _prewarm  # noqa: E402

compiled = []
marks = []


class Listener(event.Listener):
    def __init__(self):
        self.started = {}

    def on_start(self, ev):
        self.started[id(ev.data["dispatcher"]), str(ev.data["args"])] = time.perf_counter()

    def on_end(self, ev):
        start = self.started.pop((id(ev.data["dispatcher"]), str(ev.data["args"])))
        compiled.append((start - T0, time.perf_counter() - T0, ev.data["dispatcher"].py_func.__qualname__))


def marked(owner, name):
    function = getattr(owner, name)

    def wrapper(*args, **kwargs):
        marks.append((f"{name} starts", time.perf_counter() - T0))
        try:
            return function(*args, **kwargs)
        finally:
            marks.append((f"{name} ends", time.perf_counter() - T0))

    setattr(owner, name, wrapper)


def main():
    event.register("numba:compile", Listener())
    marks.append(("imported", time.perf_counter() - T0))
    marked(_numba_backend.NumbaBackend, "prepare")
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(64, 784), dtype=np.uint8)
    fastmlp.MLP([784, 128, 10], backend="numba").fit(X, rng.integers(0, 10, size=64), epochs=1, batch_size=32,
                                                     progress=False)
    marks.append(("first step done", time.perf_counter() - T0))
    print(" ".join(f"{name} {t:.2f} s;" for name, t in marks))
    running = [p for p in _prewarm._STARTED if getattr(p, "fastmlp_claims", None)]
    if running:
        claims = running[0].fastmlp_claims
        entries = sorted((os.stat(os.path.join(claims, n)).st_mtime - T0_WALL, n) for n in os.listdir(claims))
        print("claims: " + ", ".join(f"{n} {t:.2f}" for t, n in entries))
    else:
        print("no second process started (one usable core, or switched off)")
    print("this process compiled (> 0.15 s): " + ", ".join(
        f"{name} {a:.2f}-{b:.2f}" for a, b, name in compiled if b - a > 0.15))
    # the second process goes on compiling after a fit's exit (fastmlp._prewarm), into this run's
    # temporary cache: stopped, so that the next run does not share the cores with it (probe 58
    # saw back-to-back runs take 18-28 s)
    for process in _prewarm._STARTED:
        if process.poll() is None:
            process.terminate()
            process.wait()


if __name__ == "__main__":
    main()
