"""``fastmlp bench``: training throughput of both backends (and, optionally, other libraries).

Every measurement trains one network for one epoch over a slice of MNIST (``--samples``, the
first N training images) from the same initial weights and in the same seeded sample order,
``--repeats`` times. A figure is the median over the repeats, with the min-max spread beside it.
Data loading, data preparation and JIT compilation happen before the clock starts (each
implementation's ``warmup`` runs first). Test accuracy is measured on the 10,000 test images
after the last repeat, so a fast row that learns nothing would show.

Rows whose repeat would take longer than ``--max-seconds`` (a short pilot run, not part of the
figures, estimates this; mostly NumPy per-sample SGD, ~5k samples/s) are timed on a smaller slice
and marked ``*``: samples/s is a per-sample rate and stays comparable, but their test accuracy
is after fewer samples.

GFLOP/s (mini-batch rows only: the per-sample kernel skips zero pixels, so dense FLOPs would
overstate what it does) counts the dense arithmetic that any implementation of the step must
do, per sample::

    2*W  forward matmuls           W  = all weights, W1 = the first layer's
    2*W  weight gradients          P  = all parameters (weights + biases)
    2*(W - W1)  back-propagated gradients (none is needed for the input pixels)
    2*P/B  SGD update, once per batch of B

i.e. ~4*W for 784-H-10; activations, softmax and biases' sums are not counted. It sits beside
the float32 GEMM rate (np.matmul 1024x784 @ 784x800) measured in the same run: once at the
start (median of 15) and again just before each row (median of 5), because on a shared machine
the rate moves with the load and "% GEMM" should compare like with like.

JSON output (``--json``): one object per line, each with a ``record`` key.

- first line, ``"record": "machine"``: ``fastmlp``, ``python``, ``numpy``, ``numba``, ``blas``,
  ``blas_threads`` (null when unknown), ``cpu``, ``cores`` (os.cpu_count), ``usable_cores`` (this process's affinity),
  ``load_average`` (1, 5, 15 min, at the start), ``gemm`` {``shape`` [M, K, N],
  ``gflops`` median, ``gflops_spread`` [min, max], ``repeats``}, ``gemm_gflops`` (= gemm.gflops),
  ``flops_per_sample_formula``, and ``settings`` (the options in force).
- then ``"record": "skipped"``, one per implementation that was asked for but cannot run:
  ``backend``, ``reason`` (a peer that is not installed; numba when it cannot load).
- ``"record": "measurement"``, one per (layers, activation, batch size, implementation):
  ``backend`` (numpy, numba, torch, jax, sklearn), ``peer`` (bool), ``implementation`` (what
  exactly ran), ``batch_size``, ``layers`` [784, H, 10], ``activation``, ``dtype``, ``lr``,
  ``samples_per_second`` (median), ``samples_per_second_spread`` [min, max],
  ``seconds_per_repeat`` (median), ``repeats``, ``samples`` (timed per repeat),
  ``samples_requested``, ``trimmed`` (samples < samples_requested, see --max-seconds),
  ``speedup_vs_numpy`` (samples_per_second / the numpy row's, same configuration; null
  without a numpy row), ``flops_per_sample``, ``gflops`` and ``gflops_spread`` (null for
  batch size 1), ``gemm_gflops`` (the float32 GEMM rate re-measured just before this row,
  median of 5) and ``gemm_fraction`` (gflops / that), ``test_accuracy``,
  ``compile_seconds`` (JIT/warm-up time, not in the timing), ``threads``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import dataclasses
import itertools
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from . import peers as peer_module
from .backends import BACKENDS, make_backend
from .network import ACTIVATIONS, Architecture, init_params
from .trainer import chunk_bounds

DEFAULT_BATCH_SIZES = (1, 32, 128, 1024)
DEFAULT_LAYERS = ((784, 20, 10), (784, 128, 10), (784, 800, 10))
DEFAULT_ACTIVATIONS = ("sigmoid", "relu")
DEFAULT_BACKENDS = ("numpy", "numba")
DEFAULT_REPEATS = 5
DEFAULT_MAX_SECONDS = 10.0
QUICK = {"batch_sizes": (1, 128), "layers": ((784, 128, 10),), "activations": ("sigmoid",), "samples": 10_000, "repeats": 3}

GEMM_SHAPE = (1024, 784, 800)  # M, K, N: one bs=1024 forward matmul of 784-800-10
GEMM_REPEATS = 15  # at the start of the run
ROW_GEMM_REPEATS = 5  # again just before each row, so "% GEMM" compares like with like on a busy machine
PILOT_SAMPLES = 512  # at least this many samples (and 4 batches) in the pilot run
FLOPS_FORMULA = "2*W forward + 2*W weight grads + 2*(W - W1) backprop (no input grad) + 2*P/B update"


# --- options -------------------------------------------------------------------------------


def add_parser(subparsers):
    """Register ``bench`` on the ``fastmlp`` command's subparsers; returns the parser."""
    parser = subparsers.add_parser(
        "bench",
        help="measure training throughput of the backends (and other libraries)",
        description=(
            "Train 784-H-10 networks on MNIST for one epoch per repeat with each backend and report\n"
            "samples per second (median and min-max over repeats), the speed-up over NumPy,\n"
            "mini-batch GFLOP/s beside this machine's float32 GEMM rate, and test accuracy.\n"
            "The default matrix (bs 1,32,128,1024 x H 20,128,800 x sigmoid,relu x numpy,numba)\n"
            "takes about a quarter of an hour on a busy 2-core machine; --quick well under a minute."
        ),
        epilog=_json_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--batch-sizes", action="append", metavar="LIST", help="comma list, repeatable (default 1,32,128,1024)")
    add("--layers", action="append", metavar="SIZES", help="one network per option, e.g. 784,128,10; repeatable (default 784,20,10 784,128,10 784,800,10)")
    add("--activations", action="append", metavar="LIST", help=f"hidden activations, comma list (default sigmoid,relu; any of {', '.join(ACTIVATIONS)})")
    add("--backends", action="append", metavar="LIST", help="numpy, numba (default both; numba is skipped with a note if it cannot load)")
    add("--peers", nargs="?", const="all", metavar="LIST", help=f"also time other libraries: all (the default of a bare --peers) or a comma list of {', '.join(peer_module.PEERS)}; needs fastmlp[peers]")
    add("--quick", action="store_true", help="a small subset that runs well under a minute: bs 1 and 128, 784-128-10 sigmoid, 10,000 samples, 3 repeats (explicit options win)")
    add("--samples", metavar="N", help="train on the first N training samples (default all 60,000)")
    add("--repeats", metavar="N", help=f"timed epochs per row; figures are their median (default {DEFAULT_REPEATS})")
    add("--max-seconds", metavar="S", help=f"time rows whose repeat would exceed S seconds on a smaller slice, marked * (default {DEFAULT_MAX_SECONDS:g}; 0 = never)")
    add("--threads", metavar="N", help="threads for numba's per-sample loop (default 1)")
    add("--peer-threads", metavar="N", help="torch.set_num_threads for the torch peer (default: the usable cores)")
    add("--lr", metavar="RATE", help="learning rate (default 0.1)")
    add("--seed", metavar="N", help="initial weights and sample order (default 0)")
    add("--data", metavar="DIR", help="directory with the MNIST files (default: $FASTMLP_DATA, else the user cache)")
    add("--json", action="store_true", help="one JSON object per line (format below) instead of the table")
    add("--plot", metavar="FILE.png", help="also draw a chart of samples/s (needs matplotlib: fastmlp[plot])")
    add("--progress", action="store_true", default=None, help="progress on stderr even when it is not a terminal")
    add("--no-progress", dest="progress", action="store_false", help="no progress on stderr")
    return parser


def _json_help():
    start = __doc__.index("JSON output")
    return __doc__[start:].strip()


def _items(values):
    """['1,32', '128'] -> ['1', '32', '128']."""
    return [item.strip() for value in values for item in str(value).split(",") if item.strip()]


def _int(option, text, minimum=1):
    try:
        value = int(str(text).strip())
    except ValueError:
        raise ValueError(f"{option} must be an integer >= {minimum}; got {text!r}") from None
    if value < minimum:
        raise ValueError(f"{option} must be an integer >= {minimum}; got {value}")
    return value


def _float(option, text, *, allow_zero):
    try:
        value = float(str(text).strip())
    except ValueError:
        value = float("nan")
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{option} must be a number {bound}; got {text!r}")
    return value


def _choices(option, values, allowed):
    items = _items(values)
    for item in items:
        if item not in allowed:
            raise ValueError(f"{option}: unknown value {item!r}; choose from {', '.join(allowed)}")
    if not items:
        raise ValueError(f"{option} needs at least one value")
    return tuple(dict.fromkeys(items))


def _network(text):
    parts = [part for part in str(text).replace("-", ",").replace(" ", "").split(",") if part]
    sizes = tuple(_int("--layers", part) for part in parts) if parts else ()
    if len(sizes) < 2:
        raise ValueError(f"--layers needs at least an input and an output size, like 784,128,10; got {text!r}")
    return sizes


@dataclass(frozen=True)
class Plan:
    """What to measure, validated from the command-line options."""

    batch_sizes: tuple = DEFAULT_BATCH_SIZES
    layers: tuple = DEFAULT_LAYERS
    activations: tuple = DEFAULT_ACTIVATIONS
    backends: tuple = DEFAULT_BACKENDS
    backends_explicit: bool = False
    peers: tuple = ()
    samples: int | None = None  # None: the whole training set
    repeats: int = DEFAULT_REPEATS
    max_seconds: float = DEFAULT_MAX_SECONDS
    threads: int = 1
    peer_threads: int | None = None  # None: the usable cores
    lr: float = 0.1
    seed: int = 0

    def settings(self):
        return {
            "batch_sizes": list(self.batch_sizes),
            "layers": [list(sizes) for sizes in self.layers],
            "activations": list(self.activations),
            "backends": list(self.backends),
            "peers": list(self.peers),
            "samples": self.samples,
            "repeats": self.repeats,
            "max_seconds": self.max_seconds,
            "threads": self.threads,
            "peer_threads": self.peer_threads,
            "lr": self.lr,
            "seed": self.seed,
            "dtype": "float32",
            "loss": "softmax+cross_entropy",
            "optimizer": "plain SGD (no momentum, no weight decay), mean loss over each batch",
        }


def plan_from_args(args) -> Plan:
    """The Plan the options ask for; a bad value raises ValueError naming its option."""
    quick = bool(getattr(args, "quick", False))
    base = Plan(**QUICK) if quick else Plan()
    changes = {}
    if args.batch_sizes:
        changes["batch_sizes"] = tuple(dict.fromkeys(_int("--batch-sizes", item) for item in _items(args.batch_sizes)))
        if not changes["batch_sizes"]:
            raise ValueError("--batch-sizes needs at least one value")
    if args.layers:
        changes["layers"] = tuple(dict.fromkeys(_network(text) for text in args.layers))
    if args.activations:
        changes["activations"] = _choices("--activations", args.activations, tuple(ACTIVATIONS))
    if args.backends:
        chosen = _choices("--backends", args.backends, BACKENDS)
        changes["backends"] = tuple(name for name in DEFAULT_BACKENDS if name in chosen)  # numpy first
        changes["backends_explicit"] = True
    if args.peers:
        names = _items([args.peers])
        changes["peers"] = peer_module.PEERS if names == ["all"] else _choices("--peers", names, peer_module.PEERS)
    if args.samples is not None:
        changes["samples"] = _int("--samples", args.samples)
    if args.repeats is not None:
        changes["repeats"] = _int("--repeats", args.repeats)
    if args.max_seconds is not None:
        changes["max_seconds"] = _float("--max-seconds", args.max_seconds, allow_zero=True)
    if args.threads is not None:
        changes["threads"] = _int("--threads", args.threads)
    if getattr(args, "peer_threads", None) is not None:
        changes["peer_threads"] = _int("--peer-threads", args.peer_threads)
    if args.lr is not None:
        changes["lr"] = _float("--lr", args.lr, allow_zero=False)
    if args.seed is not None:
        changes["seed"] = _int("--seed", args.seed, minimum=0)
    plan = Plan(**{**base.__dict__, **changes})
    for sizes in plan.layers:
        try:
            Architecture(sizes, plan.activations[0], "cross_entropy", dtype="float32")  # the network's own checks
        except ValueError as error:
            raise ValueError(f"--layers {','.join(map(str, sizes))}: {error}") from None
    if plan.samples is not None and max(plan.batch_sizes) > plan.samples:
        raise ValueError(f"--batch-sizes {max(plan.batch_sizes)} is larger than --samples {plan.samples}")
    return plan


def _check_plot_path(path):
    if not path:
        return
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise RuntimeError("--plot needs matplotlib, which is not installed: pip install 'fastmlp[plot]'") from None
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ValueError(f"--plot: directory {directory!r} does not exist")


# --- data and machine ----------------------------------------------------------------------


@dataclass
class Split:
    """Images (uint8 [N, 784]), labels (int64 [N]) and, made once on demand, images / 255."""

    pixels: np.ndarray
    labels: np.ndarray

    def __len__(self):
        return len(self.labels)

    @cached_property
    def scaled(self):
        """float32 [N, 784] in [0, 1], what the peers train on."""
        return self.pixels.astype(np.float32) / np.float32(255)

    def head(self, n):
        """The first n samples (views), keeping images / 255 if already made."""
        if n == len(self):
            return self
        part = Split(self.pixels[:n], self.labels[:n])
        if "scaled" in self.__dict__:
            part.scaled = self.scaled[:n]
        return part


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


def flops_per_sample(layers, batch_size, bias=True):
    """Dense FLOPs of one SGD step per sample (see the module docstring for the formula)."""
    weights = [n_in * n_out for n_in, n_out in zip(layers[:-1], layers[1:])]
    params = sum(weights) + (sum(layers[1:]) if bias else 0)
    total = sum(weights)
    return 2 * total + 2 * total + 2 * (total - weights[0]) + 2 * params / batch_size


def machine_info():
    info = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "usable_cores": _usable_cores(),
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
    info["blas_threads"] = _blas_threads()
    from . import __version__

    info["fastmlp"] = __version__
    return info


def _blas_threads():
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


def _usable_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# --- timing --------------------------------------------------------------------------------


class FastmlpRunner:
    """A fastmlp backend behind the interface the peers share (see ``fastmlp.peers``)."""

    peer = False

    def __init__(self, backend_name, arch, lr, batch_size, threads):
        self.backend = make_backend(backend_name, arch, threads)
        self.name = backend_name
        self.arch = arch
        self.lr = lr
        self.batch_size = batch_size
        self.threads = getattr(self.backend, "threads", threads)
        if backend_name == "numpy":
            self.threads = _blas_threads()  # its only threads are BLAS's
            self.implementation = f"fastmlp NumPy reference, {self.threads or 'default'} BLAS threads"
        else:
            self.implementation = f"fastmlp compiled core (numba), {self.threads} thread(s) for per-sample SGD"

    @property
    def compile_seconds(self):
        return self.backend.compile_seconds

    def prepare(self, train):
        self.train_split = train
        self.data = self.backend.prepare(train.pixels)

    def warmup(self, params, order):
        self.backend.warmup(params.copy(), self.data, self.train_split.labels, self.batch_size)

    def start(self, params, order):
        return params.copy()

    def train(self, params, order):
        for begin, end in chunk_bounds(len(order), self.batch_size):
            *_, nonfinite_at = self.backend.train_chunk(
                params, self.data, self.train_split.labels, order[begin:end], self.lr, self.batch_size
            )
            if nonfinite_at >= 0:
                raise ArithmeticError(f"{self.name} diverged at lr={self.lr:g}: the loss became non-finite; try a smaller --lr")
        return params

    def accuracy(self, params, test):
        z = self.backend.logits(params, self.backend.prepare(test.pixels))
        return float((z.argmax(axis=1) == test.labels).mean())


@dataclass
class Measurement:
    """One row: the per-repeat times of one implementation on one configuration."""

    backend: str
    peer: bool
    implementation: str
    layers: tuple
    activation: str
    batch_size: int
    lr: float
    seconds: list  # per repeat
    samples: int
    samples_requested: int
    test_accuracy: float
    compile_seconds: float
    threads: int | None
    speedup_vs_numpy: float | None = None
    gemm_gflops: float | None = None
    rates: list = field(init=False)

    def __post_init__(self):
        self.rates = sorted(self.samples / max(s, 1e-12) for s in self.seconds)

    @property
    def samples_per_second(self):
        return statistics.median(self.rates)

    @property
    def trimmed(self):
        return self.samples < self.samples_requested

    @property
    def flops_per_sample(self):
        return flops_per_sample(self.layers, self.batch_size)

    @property
    def gflops(self):
        if self.batch_size == 1:
            return None
        return self.flops_per_sample * self.samples_per_second / 1e9

    def as_json(self):
        gflops = self.gflops
        return {
            "record": "measurement",
            "backend": self.backend,
            "peer": self.peer,
            "implementation": self.implementation,
            "batch_size": self.batch_size,
            "layers": list(self.layers),
            "activation": self.activation,
            "dtype": "float32",
            "lr": self.lr,
            "samples_per_second": self.samples_per_second,
            "samples_per_second_spread": [self.rates[0], self.rates[-1]],
            "seconds_per_repeat": statistics.median(self.seconds),
            "repeats": len(self.seconds),
            "samples": self.samples,
            "samples_requested": self.samples_requested,
            "trimmed": self.trimmed,
            "speedup_vs_numpy": self.speedup_vs_numpy,
            "flops_per_sample": self.flops_per_sample,
            "gflops": gflops,
            "gflops_spread": None if gflops is None else [self.flops_per_sample * r / 1e9 for r in (self.rates[0], self.rates[-1])],
            "gemm_gflops": self.gemm_gflops,
            "gemm_fraction": None if gflops is None or not self.gemm_gflops else gflops / self.gemm_gflops,
            "test_accuracy": self.test_accuracy,
            "compile_seconds": self.compile_seconds,
            "threads": self.threads,
        }


def sample_order(n, seed):
    """The seeded visiting order of samples 0..n-1, shared by every implementation."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,))).permutation(n).astype(np.int64)


def measure(runner, init, train, test, plan, status=None):
    """Time ``runner`` for ``plan.repeats`` epochs over ``train`` (trimmed per --max-seconds)."""
    batch_size = runner.batch_size
    requested = len(train)
    runner.prepare(train)
    n = requested
    pilot = min(requested, max(PILOT_SAMPLES, 4 * batch_size))
    if plan.max_seconds > 0 and pilot < requested:
        if status:
            status.note("pilot")
        order = sample_order(pilot, plan.seed)
        runner.warmup(init, order)
        seconds = _time_one(runner, init, order)
        rate = pilot / max(seconds, 1e-9)
        if requested / rate > plan.max_seconds:
            n = max(pilot, int(rate * plan.max_seconds) // batch_size * batch_size)
    if n < requested:
        runner.prepare(train.head(n))
    order = sample_order(n, plan.seed)
    runner.warmup(init, order)
    seconds = []
    for repeat in range(plan.repeats):
        if status:
            status.note(f"repeat {repeat + 1}/{plan.repeats}" + (f" on {n:,} samples" if n < requested else ""))
        state = runner.start(init, order)
        tic = time.perf_counter()
        state = runner.train(state, order)
        seconds.append(time.perf_counter() - tic)
    if status:
        status.note("test accuracy")
    return Measurement(
        backend=runner.name,
        peer=runner.peer,
        implementation=runner.implementation,
        layers=tuple(runner.arch.layers),
        activation=runner.arch.activation,
        batch_size=batch_size,
        lr=runner.lr,
        seconds=seconds,
        samples=n,
        samples_requested=requested,
        test_accuracy=runner.accuracy(state, test),
        compile_seconds=float(runner.compile_seconds),
        threads=runner.threads,
    )


def _time_one(runner, init, order):
    state = runner.start(init, order)
    tic = time.perf_counter()
    runner.train(state, order)
    return time.perf_counter() - tic


# --- output --------------------------------------------------------------------------------


class Status:
    """One self-overwriting progress line on stderr (terminals only unless forced)."""

    def __init__(self, enabled=None, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            enabled = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.enabled = bool(enabled)
        self.prefix = ""
        self.shown = False

    def row(self, text):
        self.prefix = text
        self.note("")

    def note(self, text):
        if self.enabled:
            self.stream.write(f"\r{self.prefix}{': ' + text if text else ''}\x1b[K")
            self.stream.flush()
            self.shown = True

    def clear(self):
        if self.enabled and self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.shown = False


def _rate(value):
    return f"{value:,.0f}"


def _short_rate(value):
    for limit, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.3g}"


HEADER = f"{'layers':<12} {'act':<8} {'batch':>5}  {'backend':<8} {'samples/s':>11} {'(min - max)':<17} {'vs numpy':>8} {'GFLOP/s':>8} {'% GEMM':>7} {'test acc':>8} {'samples':>9}"


def format_row(m: Measurement):
    speedup = "-" if m.speedup_vs_numpy is None else f"{m.speedup_vs_numpy:.2f}x"
    gflops = m.gflops
    gemm = "-" if gflops is None or not m.gemm_gflops else f"{100 * gflops / m.gemm_gflops:.0f}%"
    spread = f"({_short_rate(m.rates[0])} - {_short_rate(m.rates[-1])})"
    samples = f"{m.samples:,}" + ("*" if m.trimmed else "")
    return (
        f"{'-'.join(map(str, m.layers)):<12} {m.activation:<8} {m.batch_size:>5}  {m.backend:<8} "
        f"{_rate(m.samples_per_second):>11} {spread:<17} {speedup:>8} {'-' if gflops is None else f'{gflops:.2f}':>8} "
        f"{gemm:>7} {m.test_accuracy:>8.4f} {samples:>9}"
    )


def _preamble(plan, info, gemm, n_train, n_test, runners_note):
    lines = [
        f"fastmlp bench: float32, softmax + cross-entropy, plain SGD lr {plan.lr:g}, one epoch over the first "
        f"{n_train:,} MNIST training images per repeat, median of {plan.repeats} repeats; test accuracy on {n_test:,} test images",
        f"machine: {info['cpu']}, {info['cores']} cores ({info['usable_cores']} usable), load average "
        f"{' '.join(f'{x:.2f}' for x in info['load_average'] or [])}; numpy {info['numpy']} ({info['blas']}, """
        f"{info['blas_threads'] or 'default'} BLAS threads), numba {info['numba']}",
        f"float32 GEMM {gemm['shape'][0]}x{gemm['shape'][1]} @ {gemm['shape'][1]}x{gemm['shape'][2]} (np.matmul): "
        f"{gemm['gflops']:.1f} GFLOP/s (median of {gemm['repeats']}, {gemm['gflops_spread'][0]:.1f}-{gemm['gflops_spread'][1]:.1f})",
    ]
    lines += runners_note
    return lines


def _gemm_range(measurements):
    rates = [m.gemm_gflops for m in measurements if m.gemm_gflops]
    return f"{min(rates):.0f}-{max(rates):.0f}" if rates else "-"


def _footer(measurements, skipped, plan):
    lines = [
        "",
        "samples/s: median of the repeats (min - max across them); data loading, preparation and JIT compilation excluded.",
        f"GFLOP/s (mini-batch rows): FLOPs per sample = {FLOPS_FORMULA}; W = weights, W1 = first layer's, "
        f"P = parameters, B = batch size. % GEMM = GFLOP/s / the float32 GEMM rate re-measured just before that row "
        f"(median of {ROW_GEMM_REPEATS}; {_gemm_range(measurements)} GFLOP/s over this run).",
        "test acc: after one epoch (the last repeat) from the same initial weights; samples: timed per repeat.",
    ]
    if any(m.trimmed for m in measurements):
        lines.append(
            f"* timed on the first N samples only: a repeat over all of them was estimated (from a {PILOT_SAMPLES}+ "
            f"sample pilot run) to take over --max-seconds {plan.max_seconds:g}. samples/s is a per-sample rate and stays "
            "comparable; test accuracy is after those N samples."
        )
    if any(m.peer for m in measurements):
        lines.append(
            "peers: torch and jax start from fastmlp's initial weights and visit samples in the same order; "
            "sklearn MLPClassifier(solver='sgd', momentum=0, alpha=0, max_iter=1, shuffle=True) starts from the same "
            "weights (warm_start) but shuffles with its own generator. Each peer's data is the same images / 255 in float32."
        )
        for name in dict.fromkeys(m.backend for m in measurements if m.peer):
            implementation = next(m.implementation for m in measurements if m.backend == name)
            lines.append(f"  {name}: {implementation}")
    for name, reason in skipped.items():
        lines.append(f"skipped {name}: {reason}")
    return lines


def write_plot(path, measurements, gemm, plan):
    """A chart of samples/s per configuration, written atomically to ``path`` (PNG)."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    from ._atomic import atomic_write

    networks = list(dict.fromkeys(m.layers for m in measurements))
    activations = list(dict.fromkeys(m.activation for m in measurements))
    names = list(dict.fromkeys(m.backend for m in measurements))
    fig = Figure(figsize=(max(6.0, 4.2 * len(activations)), 1.0 + 3.4 * len(networks)), layout="constrained")
    grid = fig.subplots(len(networks), len(activations), squeeze=False)
    width = 0.8 / max(len(names), 1)
    colors = {}
    for (row, layers), (column, activation) in itertools.product(enumerate(networks), enumerate(activations)):
        ax = grid[row][column]
        rows = [m for m in measurements if (m.layers, m.activation) == (layers, activation)]
        if not rows:
            ax.set_visible(False)
            continue
        sizes = sorted({m.batch_size for m in rows})
        for i, name in enumerate(names):
            xs, ys, low, high, shown = [], [], [], [], []
            for j, size in enumerate(sizes):
                m = next((m for m in rows if m.backend == name and m.batch_size == size), None)
                if m is None:
                    continue
                shown.append(m)
                xs.append(j + (i - (len(names) - 1) / 2) * width)
                ys.append(m.samples_per_second)
                low.append(m.samples_per_second - m.rates[0])
                high.append(m.rates[-1] - m.samples_per_second)
            if xs:
                bars = ax.bar(xs, ys, width, yerr=[low, high], capsize=2, color=colors.setdefault(name, f"C{len(colors)}"))
                for bar, m in zip(bars, shown):
                    if m.trimmed:
                        bar.set_hatch("//")
        ax.set_xticks(range(len(sizes)), [str(s) for s in sizes])
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_title(f"{'-'.join(map(str, layers))} {activation}")
        ax.grid(axis="y", which="both", alpha=0.3)
    for row in grid:
        row[0].set_ylabel("samples / s\n(median, min-max bars)")
    handles = [Patch(facecolor=color, label=name) for name, color in colors.items()]
    try:  # below the panels, clear of the bars ("outside" needs matplotlib >= 3.7)
        fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize="small")
    except (ValueError, TypeError):
        grid[0][0].legend(handles=handles, fontsize="small")
    title = f"fastmlp bench: one epoch, float32, lr {plan.lr:g}; float32 GEMM {gemm['gflops']:.0f} GFLOP/s at the start"
    if any(m.trimmed for m in measurements):
        title += "\nhatched: timed on fewer samples (--max-seconds)"
    fig.suptitle(title, fontsize="medium")
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)


# --- the command ---------------------------------------------------------------------------


def _runner_factories(plan, skipped, threads_for_peers):
    """[(name, factory(arch, batch_size))] in run order: numpy, numba, then the peers."""
    factories = []
    for name in plan.backends:
        try:
            make_backend(name, Architecture((2, 2)), plan.threads)
        except ImportError as error:
            if plan.backends_explicit:
                raise RuntimeError(f"--backends {name}: the backend cannot load: {error}") from None
            skipped[name] = f"backend not available: {error}"
            continue
        factories.append((name, lambda arch, bs, name=name: FastmlpRunner(name, arch, plan.lr, bs, plan.threads)))
    available, unavailable = peer_module.available(plan.peers)
    skipped.update(unavailable)
    for name in available:
        factories.append((name, lambda arch, bs, name=name: peer_module.make_runner(name, arch, plan.lr, bs, threads_for_peers, plan.seed)))
    return factories


def _load_data(plan, args):
    """(plan, train Split, test Split): MNIST sliced to --samples, checked against --layers."""
    from .data import load_mnist

    X_train, y_train, X_test, y_test = load_mnist(getattr(args, "data", None))
    if plan.samples is not None and plan.samples > len(y_train):
        if getattr(args, "samples", None) is not None:
            raise ValueError(f"--samples {plan.samples} is more than the {len(y_train):,} training samples")
        plan = dataclasses.replace(plan, samples=len(y_train))  # --quick's slice on a smaller dataset
    n_features, n_classes = X_train.shape[1], int(max(y_train.max(), y_test.max())) + 1
    for sizes in plan.layers:
        if sizes[0] != n_features or sizes[-1] != n_classes:
            raise ValueError(
                f"--layers {','.join(map(str, sizes))}: the data has {n_features} inputs and {n_classes} classes, "
                f"so the first size must be {n_features} and the last {n_classes}"
            )
    if max(plan.batch_sizes) > len(y_train):
        raise ValueError(f"--batch-sizes {max(plan.batch_sizes)} is larger than the {len(y_train):,} training samples")
    return plan, Split(X_train, y_train).head(plan.samples or len(y_train)), Split(X_test, y_test)


def _measure_all(plan, factories, train, test, status, report):
    """Every row, numpy first within each configuration; ``report(measurement)`` as each finishes."""
    measurements = []
    total = len(plan.layers) * len(plan.activations) * len(plan.batch_sizes) * len(factories)
    for layers, activation in itertools.product(plan.layers, plan.activations):
        arch = Architecture(layers, activation, "cross_entropy", dtype="float32")
        init = init_params(arch, "auto", plan.seed)
        for batch_size in plan.batch_sizes:
            numpy_rate = None
            for name, factory in factories:
                status.row(f"[{len(measurements) + 1}/{total}] {name} bs={batch_size} {'-'.join(map(str, layers))} {activation}")
                row_gemm = measure_gemm(repeats=ROW_GEMM_REPEATS)
                measurement = measure(factory(arch, batch_size), init, train, test, plan, status)
                measurement.gemm_gflops = row_gemm["gflops"]
                if name == "numpy":
                    numpy_rate = measurement.samples_per_second
                if numpy_rate:
                    measurement.speedup_vs_numpy = measurement.samples_per_second / numpy_rate
                measurements.append(measurement)
                status.clear()
                report(measurement)
    return measurements


def run(args) -> int:
    """``fastmlp bench``: measure, print the table (or JSON lines), optionally plot. Returns 0."""
    plan = plan_from_args(args)
    plot = getattr(args, "plot", None)
    _check_plot_path(plot)
    emit_json = bool(getattr(args, "json", False))
    status = Status(getattr(args, "progress", None))
    plan, train, test = _load_data(plan, args)

    info = machine_info()  # before the peers load their own BLAS and thread pools
    peer_threads = plan.peer_threads or _usable_cores()
    skipped = {}
    factories = _runner_factories(plan, skipped, peer_threads)
    if not factories:
        raise RuntimeError("nothing to measure: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    status.row("measuring the float32 GEMM rate")
    gemm = measure_gemm()
    status.clear()

    def emit(line):
        print(line, flush=True)

    if emit_json:
        emit(json.dumps({
            "record": "machine", **info, "gemm": gemm, "gemm_gflops": gemm["gflops"],
            "flops_per_sample_formula": FLOPS_FORMULA, "settings": {**plan.settings(), "samples": len(train)},
        }))
        for name, reason in skipped.items():
            emit(json.dumps({"record": "skipped", "backend": name, "reason": reason}))
    else:
        notes = []
        if any(name in peer_module.PEERS for name, _ in factories):
            source = "--peer-threads" if plan.peer_threads else "this machine's usable cores"
            notes.append(f"peers: torch runs with torch.set_num_threads({peer_threads}) ({source}); jax uses XLA's own CPU thread pool")
        for line in _preamble(plan, info, gemm, len(train), len(test), notes) + ["", HEADER]:
            emit(line)

    last_group = []

    def report(measurement):
        if emit_json:
            emit(json.dumps(measurement.as_json()))
            return
        group = (measurement.layers, measurement.activation)
        if last_group and last_group[-1] != group:
            emit("")
        last_group.append(group)
        emit(format_row(measurement))

    try:
        measurements = _measure_all(plan, factories, train, test, status, report)
    finally:
        status.clear()
    if not emit_json:
        for line in _footer(measurements, skipped, plan):
            emit(line)
    if plot:
        write_plot(plot, measurements, gemm, plan)
        if not emit_json:
            emit(f"chart written to {plot}")
    return 0


if __name__ == "__main__":  # python -m fastmlp.bench ...: the same options, before cli.py registers them
    from ._cli_options import EXIT_ERROR, EXIT_USAGE, Parser, UsageError

    _parser = Parser(prog="fastmlp")
    add_parser(_parser.add_subparsers(dest="command", parser_class=Parser))
    try:
        sys.exit(run(_parser.parse_args(["bench", *sys.argv[1:]])))
    except UsageError as _error:
        print(f"fastmlp: error: {_error}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except (ValueError, TypeError, OSError, ArithmeticError, RuntimeError) as _error:
        print(f"fastmlp: error: {_error}", file=sys.stderr)
        sys.exit(EXIT_ERROR)
