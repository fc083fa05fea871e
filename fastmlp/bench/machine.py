"""What the bench runs on: cpu, cores, load, library versions, BLAS, and the float32 GEMM rate
that mini-batch GFLOP/s is set beside."""

from __future__ import annotations

import os
import platform
import statistics
import time

import numpy as np

GEMM_SHAPE = (1024, 784, 800)  # M, K, N: one bs=1024 forward matmul of 784-800-10
GEMM_REPEATS = 15  # at the start of the run
ROW_GEMM_REPEATS = 5  # again just before each row, so "% GEMM" compares like with like on a busy machine


def measure_gemm(shape=None, repeats=GEMM_REPEATS, seed=0, threads=None):
    """float32 np.matmul rate: {"shape", "gflops" (median), "gflops_spread" [min, max], "repeats"};
    with ``threads``, on that many of NumPy's BLAS threads (threadpoolctl), or None where they
    cannot be limited (threadpoolctl not installed)."""
    if threads is not None:
        try:
            from threadpoolctl import threadpool_info, threadpool_limits
        except ImportError:
            return None
        with threadpool_limits(limits=threads, user_api="blas"):
            pools = [pool for pool in threadpool_info() if pool.get("user_api") == "blas"]
            if not pools or any(pool.get("num_threads") != threads for pool in pools):
                return None  # a BLAS threadpoolctl cannot limit (Apple's Accelerate): no such rate (audit 44)
            return measure_gemm(shape, repeats, seed)
    m, k, n = GEMM_SHAPE if shape is None else shape
    rng = np.random.default_rng(seed)
    a = rng.random((m, k), dtype=np.float32)
    b = rng.random((k, n), dtype=np.float32)
    out = np.empty((m, n), np.float32)
    for _ in range(2):  # page in the buffers, start the BLAS threads
        np.matmul(a, b, out=out)
    seconds = []
    for _ in range(repeats):
        tic = time.perf_counter()
        np.matmul(a, b, out=out)
        seconds.append(time.perf_counter() - tic)
    flops = 2.0 * m * k * n
    rates = sorted(flops / max(s, 1e-12) / 1e9 for s in seconds)
    return {"shape": [m, k, n], "gflops": statistics.median(rates), "gflops_spread": [rates[0], rates[-1]], "repeats": repeats}


def gemm_capacity(all_threads, one_thread, cores):
    """The machine's float32 GEMM rate that "% roof" divides by: the rate on all of NumPy's BLAS
    threads, or ``cores`` times the one-thread rate where that is more. With a core taken by
    another process the all-threads rate fell below the one-thread rate (80 against 105 GFLOP/s,
    205 quiet), while numba's threads="auto" went on at one thread's speed: "% roof" rose on a
    busy machine, 32-44% against 13-22% of the quiet rate (audit 43). Where many cores share the
    memory bandwidth, cores x one thread is more than the all-threads rate: the larger figure
    keeps the column from flattering fastmlp there too."""
    if one_thread is None:
        return all_threads
    return max(all_threads, cores * one_thread)


class OthersBusy:
    """Other processes' use of the CPUs this process may run on, from creation to ``cores()``, in
    cores (time-averaged; at least: the machine's busy CPU time (``/proc/stat``, or psutil's where
    it is installed) less this process's own (its every thread: numba's, BLAS's, torch's, XLA's),
    less all of the CPUs outside its affinity, ``taskset``'s). None where the machine's idle time
    cannot be read."""

    def __init__(self, usable=None):
        from .._adaptive import _CPUS

        self.cpus = _CPUS
        self.outside = max(0, _CPUS - (usable_cores() if usable is None else usable))
        self.start = self._look()

    @staticmethod
    def _look():
        from .._adaptive import idle_seconds

        return time.perf_counter(), idle_seconds(), time.process_time()

    def cores(self):
        from .._adaptive import others_cores

        (t0, idle0, own0), (t1, idle1, own1) = self.start, self._look()
        if idle0 is None or idle1 is None or t1 <= t0:
            return None
        return max(0.0, others_cores(self.cpus, t1 - t0, idle1 - idle0, own1 - own0) - self.outside)


def machine_info():
    """The machine record's fields (see the package docstring), measured now."""
    info = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    try:
        import numba

        info["numba"] = numba.__version__
    except ImportError:
        info["numba"] = None
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info["blas"] = f"{blas.get('name')} {blas.get('version')}".strip()
    except Exception:  # the layout of show_config is not a stable API
        info["blas"] = None
    info["blas_threads"] = blas_threads()
    from .. import __version__

    info["fastmlp"] = __version__
    return info


def blas_threads():
    """NumPy's BLAS thread count, from threadpoolctl when installed, else the environment or None."""
    try:
        from threadpoolctl import threadpool_info

        pools = [pool for pool in threadpool_info() if pool.get("user_api") == "blas"]
        ours = [pool for pool in pools if "numpy" in pool.get("filepath", "")] or pools  # not torch's or scipy's
        if ours:
            return max(pool["num_threads"] for pool in ours)
    except Exception:  # optional; its absence only makes the report less specific
        pass
    for variable in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
        if os.environ.get(variable, "").isdigit():
            return int(os.environ[variable])
    return None


def usable_cores():
    """The cores this process may run on (its affinity), else all of them."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
