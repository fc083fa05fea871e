"""Timing the runners of a configuration into ``Measurement`` rows, and every row of a plan.

Every row trains from the same initial weights in the same seeded sample order; a short pilot
run decides whether the row is timed on fewer samples (--max-seconds); preparation and
warm-up (JIT compilation) happen before the clock starts; the rows of a configuration take
their timed epochs in turn (``measure_all``).
"""

from __future__ import annotations

import itertools
import statistics
import time
from dataclasses import dataclass, field

import numpy as np

from ..network import Architecture, init_params
from .machine import ROW_GEMM_REPEATS, OthersBusy, gemm_capacity, measure_gemm, usable_cores

PILOT_SAMPLES = 512  # at least this many samples (and 4 batches) in the pilot run
# Seconds of rest before each timed epoch of a configuration's interleaved repeats, for the thread
# pools of the implementation timed before it (OpenBLAS, OpenMP, XLA's) to stop spinning.
SETTLE_SECONDS = 1.0
FLOPS_FORMULA = "2*W forward + 2*W weight grads + 2*(W - W1) backprop (no input grad) + 2*P/B update"
SPARSE_FLOPS_FORMULA = ("4*nnz*H1 (first layer forward and weight grads over the nonzero inputs, counted on the "
                        "data) + 6*(W - W1) (the dense rest: forward, weight grads, backprop)")


def flops_per_sample(layers, batch_size, bias=True):
    """Dense FLOPs of one SGD step per sample: FLOPS_FORMULA (the package docstring explains it)."""
    weights = [n_in * n_out for n_in, n_out in zip(layers[:-1], layers[1:])]
    params = sum(weights) + (sum(layers[1:]) if bias else 0)
    total = sum(weights)
    return 2 * total + 2 * total + 2 * (total - weights[0]) + 2 * params / batch_size


def sparse_flops_per_sample(layers, nonzero_inputs):
    """The FLOPs a sample needs when zero inputs are skipped: SPARSE_FLOPS_FORMULA, with
    ``nonzero_inputs`` the mean number of nonzero inputs per sample of the data."""
    weights = [n_in * n_out for n_in, n_out in zip(layers[:-1], layers[1:])]
    return 4 * nonzero_inputs * layers[1] + 6 * (sum(weights) - weights[0])


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
    gemm_gflops: float | None = None  # the machine's GEMM rate (``machine.gemm_capacity``) around these repeats
    gemm_all_threads: float | None = None  # its two parts: the median rate on all BLAS threads,
    gemm_one_thread: float | None = None  # and on one (None: threadpoolctl not installed)
    others_busy_cores: float | None = None  # other processes' CPU use while the configuration ran
    nonzero_inputs: float | None = None  # mean nonzero inputs per sample of the data trained on
    # numba's threads="auto" in mini-batch rows: per repeat, the share of its samples trained on
    # all threads (the rest on one: a busy machine, or all threads not faster); None elsewhere
    all_threads_share: list | None = None
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

    @property
    def sparse_flops_per_sample(self):
        if self.nonzero_inputs is None:
            return None
        return sparse_flops_per_sample(self.layers, self.nonzero_inputs)

    @property
    def roofline_fraction(self):
        """samples/s x sparse FLOPs per sample / the GEMM rate of the same run: how close the
        row comes to doing only the necessary arithmetic at the machine's dense matmul speed."""
        if self.sparse_flops_per_sample is None or not self.gemm_gflops:
            return None
        return self.samples_per_second * self.sparse_flops_per_sample / (self.gemm_gflops * 1e9)

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
            "seconds_each_repeat": list(self.seconds),  # (round by round: the rows of a configuration alternate)
            "repeats": len(self.seconds),
            "samples": self.samples,
            "samples_requested": self.samples_requested,
            "trimmed": self.trimmed,
            "speedup_vs_numpy": self.speedup_vs_numpy,
            "flops_per_sample": self.flops_per_sample,
            "gflops": gflops,
            "gflops_spread": None if gflops is None else [self.flops_per_sample * r / 1e9 for r in (self.rates[0], self.rates[-1])],
            "gemm_gflops": self.gemm_gflops,
            "gemm_gflops_all_threads": self.gemm_all_threads,
            "gemm_gflops_one_thread": self.gemm_one_thread,
            "others_busy_cores": self.others_busy_cores,
            "gemm_fraction": None if gflops is None or not self.gemm_gflops else gflops / self.gemm_gflops,
            "nonzero_inputs_per_sample": self.nonzero_inputs,
            "sparse_flops_per_sample": self.sparse_flops_per_sample,
            "roofline_fraction": self.roofline_fraction,
            "test_accuracy": self.test_accuracy,
            "compile_seconds": self.compile_seconds,
            "threads": self.threads,
            "all_threads_share_each_repeat": self.all_threads_share,
        }


def sample_order(n, seed):
    """The seeded visiting order of samples 0..n-1, shared by every implementation."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,))).permutation(n).astype(np.int64)


class _Timing:
    """One runner on one configuration: set up (data prepared, pilot, warm-up) on creation, then
    timed one epoch at a time (``time_one``), then turned into a ``Measurement``."""

    def __init__(self, runner, init, train, plan, status=None):
        self.runner = runner
        self.init = init
        self.train = train
        self.seconds = []
        self.all_threads_share = []
        batch_size = runner.batch_size
        self.requested = len(train)
        runner.prepare(train)
        n = self.requested
        pilot = min(self.requested, max(PILOT_SAMPLES, 4 * batch_size))
        if plan.max_seconds > 0 and pilot < self.requested:
            if status:
                status.note("pilot")
            order = sample_order(pilot, plan.seed)
            runner.warmup(init, order)
            seconds = _time_one(runner, init, order)
            rate = pilot / max(seconds, 1e-9)
            if self.requested / rate > plan.max_seconds:
                n = max(pilot, int(rate * plan.max_seconds) // batch_size * batch_size)
        if n < self.requested:
            runner.prepare(train.head(n))
        self.n = n
        self.order = sample_order(n, plan.seed)
        if status:
            status.note("warm-up")
        runner.warmup(init, self.order)
        self.state = None

    def time_one(self):
        """Train one timed epoch from the initial weights."""
        state = self.runner.start(self.init, self.order)
        chooser = self._chooser()
        before = dict(chooser.samples_on) if chooser is not None else None
        tic = time.perf_counter()
        self.state = self.runner.train(state, self.order)
        self.seconds.append(time.perf_counter() - tic)
        if chooser is not None:
            on = {count: n - before.get(count, 0) for count, n in chooser.samples_on.items()}
            total = sum(on.values())
            self.all_threads_share.append(on.get(chooser.most, 0) / total if total else None)

    def _chooser(self):
        """numba's thread chooser of a row on threads="auto" (mini-batch; per sample where the
        network lets it choose: ``NumbaBackend.persample_threads``), else None."""
        backend = getattr(self.runner, "backend", None)
        name = "persample_threads" if self.runner.batch_size == 1 else "minibatch_threads"
        chooser = getattr(backend, name, None)
        if chooser is None or not chooser.adaptive:
            return None
        return chooser

    def measurement(self, test):
        runner = self.runner
        return Measurement(
            backend=runner.name,
            peer=runner.peer,
            implementation=runner.implementation,
            layers=tuple(runner.arch.layers),
            activation=runner.arch.activation,
            batch_size=runner.batch_size,
            lr=runner.lr,
            seconds=self.seconds,
            samples=self.n,
            samples_requested=self.requested,
            test_accuracy=runner.accuracy(self.state, test),
            compile_seconds=float(runner.compile_seconds),
            threads=getattr(runner, "threads_used", runner.threads),
            nonzero_inputs=float(np.count_nonzero(self.train.pixels[: self.n])) / self.n,
            all_threads_share=self.all_threads_share or None,
        )


def _settle():
    time.sleep(SETTLE_SECONDS)


def _time_one(runner, init, order):
    state = runner.start(init, order)
    tic = time.perf_counter()
    runner.train(state, order)
    return time.perf_counter() - tic


def measure_all(plan, factories, train, test, status, report):
    """Every row of the plan, numpy first within each configuration (the others' speed-up needs
    its rate); ``report(measurement)`` for each row of a configuration once all are done.

    Within a configuration the implementations' repeats are interleaved: all of them are set up
    (prepared, trimmed, warmed up), then each repeat times one epoch of every implementation in
    turn, and the float32 GEMM rate is measured before each such round on all BLAS threads and on
    one (the configuration's rate: ``machine.gemm_capacity`` of their medians), and other
    processes' use of the CPUs is measured over the rounds (``machine.OthersBusy``); each timed epoch follows a pause of SETTLE_SECONDS. On a shared machine whose
    speed drifts over minutes, timing one
    implementation's repeats after another's compared each with the machine of its own minute:
    a row's ratios moved by 1.3x between runs of the same code (2026-12-03, AMD EPYC Zen 3)."""
    measurements = []
    total = len(plan.layers) * len(plan.activations) * len(plan.batch_sizes) * len(factories)
    for layers, activation in itertools.product(plan.layers, plan.activations):
        arch = Architecture(layers, activation, "cross_entropy", dtype="float32")
        init = init_params(arch, "auto", plan.seed)
        for batch_size in plan.batch_sizes:
            timings = []
            for name, factory in factories:
                number = len(measurements) + len(timings) + 1
                status.row(f"[{number}/{total}] {name} bs={batch_size} {'-'.join(map(str, layers))} {activation}")
                timings.append((name, number, _Timing(factory(arch, batch_size), init, train, plan, status)))
                status.clear()
            gemm_rates, one_thread_rates = [], []
            others = OthersBusy()
            for repeat in range(plan.repeats):
                gemm_rates.append(measure_gemm(repeats=ROW_GEMM_REPEATS)["gflops"])
                one = measure_gemm(repeats=ROW_GEMM_REPEATS, threads=1)
                if one is not None:
                    one_thread_rates.append(one["gflops"])
                for name, number, timing in timings:
                    status.row(f"[{number}/{total}] {name} bs={batch_size} {'-'.join(map(str, layers))} {activation}")
                    status.note(f"repeat {repeat + 1}/{plan.repeats}" + (f" on {timing.n:,} samples" if timing.n < timing.requested else ""))
                    _settle()
                    timing.time_one()
                    status.clear()
            others_cores = others.cores()
            all_threads = statistics.median(gemm_rates)
            one_thread = statistics.median(one_thread_rates) if one_thread_rates else None
            row_gemm = gemm_capacity(all_threads, one_thread, usable_cores())
            numpy_rate = None
            for name, number, timing in timings:
                measurement = timing.measurement(test)
                measurement.gemm_gflops = row_gemm
                measurement.gemm_all_threads, measurement.gemm_one_thread = all_threads, one_thread
                measurement.others_busy_cores = others_cores
                if name == "numpy":
                    numpy_rate = measurement.samples_per_second
                if numpy_rate:
                    measurement.speedup_vs_numpy = measurement.samples_per_second / numpy_rate
                measurements.append(measurement)
                report(measurement)
    return measurements
