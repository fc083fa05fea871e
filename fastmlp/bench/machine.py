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


def measure_gemm(shape=None, repeats=GEMM_REPEATS, seed=0):
    """float32 np.matmul rate: {"shape", "gflops" (median), "gflops_spread" [min, max], "repeats"}."""
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
