"""Data-parallel SGD on MPI, measured here and projected to a cluster (README, "Scaling out").

    FASTMLP_DATA=../shared/data/mnist python bench/mpi_scaling.py [--epochs 3] [--json FILE]

MNIST epochs (--epochs, default 3) of 784-128-10 (sigmoid, softmax + cross-entropy, float32, lr 0.1) at batch
128 and 1024, trained three ways, each in fresh processes:

    1 process, 1 thread     MLP.fit                    NUMBA_NUM_THREADS=1
    1 process, 2 threads    MLP.fit(threads=2)         NUMBA_NUM_THREADS=2
    2 processes, 1 thread   MLP.fit(distributed=True)  mpiexec -n 2, NUMBA_NUM_THREADS=1 each

reporting samples/s (median epoch of --epochs) and, for 2 processes, the share of the time
spent in the gradient's Allreduce (timed around every call, so waiting for the slower rank
counts) and an Allreduce of the gradient alone (~400 KB; median and min of 300, each after a
barrier).

Then it times one rank's compute per step, t_compute(rows): the distributed trainer's own
loop (gradient kernel on the rank's rows, optimizer step over all parameters, the Python
around them) with the communication left out, in one process on one thread, for the shares
B / p of the projection. The step time of p ranks at a global batch B is then

    t_step(p) = t_compute(ceil(B / p)) + t_allreduce(p)
    t_allreduce(p) = 2 log2(p) alpha + 2 (p - 1) / p * n / beta

(n the gradient's bytes; the second line is the cost of MPICH's large-message Allreduce,
reduce-scatter then allgather, whose bandwidth term a ring allreduce shares; alpha the
latency and beta the bandwidth of the network: two assumed profiles, NETWORKS). Only rank 0
of each run prints; the machine is described first (lscpu, MPI, load average before and
after).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time

LAYERS = (784, 128, 10)
BATCHES = (128, 1024)
RANKS = (8, 64, 512)
COMPUTE_ROWS = (1, 2, 16, 64, 128, 512, 1024)  # every share B / p of the projection, and B / 2
# (name, latency alpha in s, bandwidth beta in bytes/s): assumptions, not measurements
NETWORKS = (("InfiniBand HDR100", 2e-6, 12.5e9), ("10 GbE, TCP", 25e-6, 1.25e9))


# ---------------------------------------------------------------------------------------------
# Workers: one training (or one Allreduce timing) per process, one JSON line from rank 0


class LocalComm:
    """A communicator of one rank whose Allreduce does nothing: the compute of a step alone."""

    def Get_rank(self):
        return 0

    def Get_size(self):
        return 1

    def Allreduce(self, send, receive=None):
        pass


class TimedComm:
    """An mpi4py communicator whose Allreduce calls are timed (``seconds``, ``calls``)."""

    def __init__(self, comm):
        self.comm = comm
        self.seconds = 0.0
        self.calls = 0

    def Allreduce(self, *args, **kwargs):
        tic = time.perf_counter()
        self.comm.Allreduce(*args, **kwargs)
        self.seconds += time.perf_counter() - tic
        self.calls += 1

    def __getattr__(self, name):  # Get_size, Get_rank, allgather, allreduce
        return getattr(self.comm, name)


def _allreduce_seconds(comm, n_params, repeats=300):
    """(median, min) seconds of one Allreduce of n_params float32 (the gradient) across comm."""
    import numpy as np
    from mpi4py import MPI

    buffer = np.ones(n_params, np.float32)
    times = []
    for repeat in range(repeats + 20):
        comm.Barrier()
        tic = time.perf_counter()
        comm.Allreduce(MPI.IN_PLACE, buffer)
        if repeat >= 20:
            times.append(time.perf_counter() - tic)
    return statistics.median(times), min(times)


def worker(args):
    import fastmlp

    X, y, X_test, y_test = fastmlp.load_mnist()
    comm = None
    if args.distributed:
        from mpi4py import MPI

        comm = TimedComm(MPI.COMM_WORLD)
    model = fastmlp.MLP(LAYERS, activation="sigmoid", dtype="float32", seed=0, threads=args.threads)
    history = model.fit(X, y, epochs=args.epochs, batch_size=args.batch_size, lr=0.1, progress=False,
                        distributed=comm if comm is not None else False)
    result = {"samples_per_second": history.samples_per_second, "seconds": history.seconds,
              "compile_seconds": model.compile_seconds_}
    if comm is not None:
        result.update(ranks=comm.Get_size(), allreduce_seconds=comm.seconds, allreduce_calls=comm.calls,
                      gradient_allreduce_seconds=_allreduce_seconds(comm.comm, model.params_.size),
                      gradient_bytes=int(model.params_.nbytes))
        if comm.Get_rank() != 0:
            return
    result["test_accuracy"] = float(model.score(X_test, y_test))
    print(json.dumps(result), flush=True)


def compute_worker(args):
    """Seconds per step of the distributed trainer's loop without communication, per row count."""
    import numpy as np

    import fastmlp
    from fastmlp import optim
    from fastmlp._numba_backend import NumbaBackend
    from fastmlp.distributed import DistributedBackend

    X, y, _, _ = fastmlp.load_mnist()
    model = fastmlp.MLP(LAYERS, activation="sigmoid", dtype="float32", seed=0).initialize()
    backend = DistributedBackend(NumbaBackend(model.arch_, threads=1), LocalComm())
    data = backend.prepare(X)
    optimizer = optim.Optimizer()
    state = optim.State.fresh(optimizer, model.params_, 0)
    order = np.random.default_rng(0).permutation(len(X)).astype(np.int64)
    backend.warmup(model.params_, data, y, 2, optimizer, state)
    result = {}
    for rows in COMPUTE_ROWS:
        steps = max(20, min(2000, 16384 // rows))
        times = []
        for repeat in range(5):
            tic = time.perf_counter()
            backend.train_chunk(model.params_, data, y, order[: rows * steps], 0.1, rows, optimizer, state)
            times.append((time.perf_counter() - tic) / steps)
        result[rows] = statistics.median(times)
    print(json.dumps(result), flush=True)


# ---------------------------------------------------------------------------------------------
# The driver


def _mpiexec():
    local = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return local if os.path.exists(local) else "mpiexec"


def _run(batch_size, epochs, threads=1, ranks=1, worker="fit"):
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads))
    command = [sys.executable, os.path.abspath(__file__), "--worker", worker, "--batch-size", str(batch_size),
               "--epochs", str(epochs), "--threads", str(threads)]
    if ranks > 1:
        command = [_mpiexec(), "-n", str(ranks), *command, "--distributed"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def machine():
    info = {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "python": platform.python_version(), "cpus": os.cpu_count()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        info["model"] = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        info["model"] = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = next(line for line in cpuinfo if line.startswith("flags")).split()
        info["flags"] = [flag for flag in ("avx2", "avx512f") if flag in flags]
    except (OSError, StopIteration):
        info["flags"] = []
    import mpi4py
    from mpi4py import MPI

    info["mpi"] = MPI.Get_library_version().splitlines()[0].strip()
    info["mpi4py"] = mpi4py.__version__
    return info


def projection(compute, n_bytes, single):
    """Step time of p ranks from the measured compute per share and the Allreduce model;
    ``single``: measured samples/s of one process, one thread, per batch size."""
    rows = []
    for batch_size in BATCHES:
        for name, alpha, beta in NETWORKS:
            for p in RANKS:
                allreduce = 2 * math.log2(p) * alpha + 2 * (p - 1) / p * n_bytes / beta
                step = compute[math.ceil(batch_size / p)] + allreduce
                rows.append({"batch_size": batch_size, "network": name, "ranks": p,
                             "compute_us": compute[math.ceil(batch_size / p)] * 1e6, "allreduce_us": allreduce * 1e6,
                             "step_us": step * 1e6, "samples_per_second": batch_size / step,
                             "vs_one_process": batch_size / step / single[batch_size]})
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run; the median epoch is reported (default 3)")
    parser.add_argument("--json", metavar="FILE", help="also write every figure to FILE")
    parser.add_argument("--worker", choices=("fit", "compute"), help=argparse.SUPPRESS)
    parser.add_argument("--distributed", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=128, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "fit":
        return worker(args)
    if args.worker == "compute":
        return compute_worker(args)

    report = {"machine": machine(), "load_before": os.getloadavg(), "runs": []}
    distributed = {}
    for batch_size in BATCHES:
        for threads, ranks in ((1, 1), (2, 1), (1, 2)):
            result = _run(batch_size, args.epochs, threads, ranks)
            result.update(batch_size=batch_size, threads=threads, ranks=ranks)
            report["runs"].append(result)
            if ranks > 1:
                distributed[batch_size] = result
    compute = {int(rows): seconds for rows, seconds in _run(1, 1, worker="compute").items()}
    report["load_after"] = os.getloadavg()
    report["compute_seconds_per_step"] = compute
    n_bytes = distributed[BATCHES[0]]["gradient_bytes"]
    single = {run["batch_size"]: statistics.median(run["samples_per_second"])
              for run in report["runs"] if run["ranks"] == 1 and run["threads"] == 1}
    report["projection"] = projection(compute, n_bytes, single)

    m = report["machine"]
    print(f"{m['date']}, {m['model']} ({m['cpus']} CPUs, {' '.join(m['flags'])}), {m['mpi']}, mpi4py {m['mpi4py']}")
    print(f"load average before {report['load_before'][0]:.2f}, after {report['load_after'][0]:.2f}")
    print()
    print("| batch | processes x threads | samples/s (median epoch; min - max) | Allreduce share | test acc |")
    print("|---|---|---|---|---|")
    for run in report["runs"]:
        rates = run["samples_per_second"]
        share = (f"{run['allreduce_seconds'] / sum(run['seconds']):.0%} ({run['allreduce_calls'] // 2:,} steps)"
                 if run["ranks"] > 1 else "")
        print(f"| {run['batch_size']} | {run['ranks']} x {run['threads']} | {statistics.median(rates):,.0f} "
              f"({min(rates):,.0f} - {max(rates):,.0f}) | {share} | {run['test_accuracy']:.4f} |")
    print()
    for batch_size, run in distributed.items():
        print(f"Allreduce of the gradient alone ({run['gradient_bytes']:,} bytes, 2 ranks, batch {batch_size} run): "
              f"{run['gradient_allreduce_seconds'][0] * 1e6:.0f} us median, {run['gradient_allreduce_seconds'][1] * 1e6:.0f} us "
              f"min of 300")
    print("one rank's compute per step, no communication (us): "
          + ", ".join(f"{rows} rows {seconds * 1e6:.0f}" for rows, seconds in compute.items()))
    print()
    print("| batch | network | ranks | compute (us) | Allreduce (us) | step (us) | samples/s | vs 1 process |")
    print("|---|---|---|---|---|---|---|---|")
    for row in report["projection"]:
        print(f"| {row['batch_size']} | {row['network']} | {row['ranks']} | {row['compute_us']:.0f} | "
              f"{row['allreduce_us']:.0f} | {row['step_us']:.0f} | {row['samples_per_second']:,.0f} | "
              f"{row['vs_one_process']:.1f}x |")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(report, out, indent=1)


if __name__ == "__main__":
    main()
