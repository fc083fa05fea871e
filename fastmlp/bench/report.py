"""What a bench run prints: the table (preamble, rows, footer), the JSON records, and the
progress line on stderr. The formats are documented in the package docstring."""

from __future__ import annotations

import statistics
import sys

from .machine import ROW_GEMM_REPEATS, usable_cores
from .measure import FLOPS_FORMULA, PILOT_SAMPLES, SPARSE_FLOPS_FORMULA, Measurement
from .plan import describe_optimizer


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


# Other processes' CPU use (cores, time-averaged over a configuration's rounds) above which its
# rows are marked "!" as measured on a busy machine: peers on fixed thread counts (torch, the
# NumPy reference, scikit-learn's BLAS) slow down far more than numba's threads="auto" then, so
# its ratios flattered numba there (torch 2.5-11x slower on two threads than on one; audit 43)
BUSY_CORES = 0.25


FIXED_THREADS = {"numpy": "the NumPy reference (BLAS)", "torch": "torch", "sklearn": "scikit-learn (BLAS)"}


def _listed(names):
    """"A, b and c", capitalised, for a sentence's start."""
    text = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return text[0].upper() + text[1:]


def _busy(m):
    return m.others_busy_cores is not None and m.others_busy_cores > BUSY_CORES


def _rate(value):
    return f"{value:,.0f}"


def _short_rate(value):
    for limit, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.3g}"


HEADER = f"{'layers':<12} {'act':<8} {'batch':>5}  {'backend':<8} {'samples/s':>11} {'(min - max)':<17} {'vs numpy':>8} {'GFLOP/s':>8} {'% GEMM':>7} {'% roof':>7} {'test acc':>8} {'samples':>9}"


def format_row(m: Measurement):
    speedup = "-" if m.speedup_vs_numpy is None else f"{m.speedup_vs_numpy:.2f}x"
    gflops = m.gflops
    gemm = "-" if gflops is None or not m.gemm_gflops else f"{100 * gflops / m.gemm_gflops:.0f}%"
    roof = "-" if m.roofline_fraction is None else f"{100 * m.roofline_fraction:.1f}%"
    spread = f"({_short_rate(m.rates[0])} - {_short_rate(m.rates[-1])})"
    samples = f"{m.samples:,}" + ("*" if m.trimmed else "") + ("!" if _busy(m) else "")
    return (
        f"{'-'.join(map(str, m.layers)):<12} {m.activation:<8} {m.batch_size:>5}  {m.backend:<8} "
        f"{_rate(m.samples_per_second):>11} {spread:<17} {speedup:>8} {'-' if gflops is None else f'{gflops:.2f}':>8} "
        f"{gemm:>7} {roof:>7} {m.test_accuracy:>8.4f} {samples:>9}"
    )


def preamble(plan, info, gemm, n_train, n_test, runners_note):
    lines = [
        f"fastmlp bench: float32, softmax + cross-entropy, {describe_optimizer(plan.optimizer)}, lr {plan.lr:g}, one epoch over the first "
        f"{n_train:,} MNIST training images per repeat, median of {plan.repeats} repeats; test accuracy on {n_test:,} test images",
        f"machine: {info['cpu']}, {info['cores']} cores ({info['usable_cores']} usable), load average "
        f"{' '.join(f'{x:.2f}' for x in info['load_average'] or [])}; numpy {info['numpy']} ({info['blas']}, "
        f"{info['blas_threads'] or 'default'} BLAS threads), numba {info['numba']}",
        f"float32 GEMM {gemm['shape'][0]}x{gemm['shape'][1]} @ {gemm['shape'][1]}x{gemm['shape'][2]} (np.matmul): "
        f"{gemm['gflops']:.1f} GFLOP/s (median of {gemm['repeats']}, {gemm['gflops_spread'][0]:.1f}-{gemm['gflops_spread'][1]:.1f})",
    ]
    lines += runners_note
    return lines


def _gemm_range(measurements, field="gemm_gflops"):
    rates = [getattr(m, field) for m in measurements if getattr(m, field)]
    return f"{min(rates):.0f}-{max(rates):.0f}" if rates else "-"


def lead_over_others(measurements):
    """{(layers, activation, batch size): (the fastest other implementation, [numba's rate / its
    rate, round by round])}: the implementations of a configuration take their repeats in turn,
    so round i of each ran on the same minute's machine; a ratio of medians hid how far the rounds
    spread (audit 43: a published 1.34x whose repeats' ranges met). "Other" is every row but
    numba's, fastmlp's own NumPy backend included, as issue 12's target counts it: NumPy's BLAS led
    784-500-150-10 at batch 1024 on an Intel Xeon while the peers-only ratio read 1.00x (session 57)."""
    leads = {}
    for m in measurements:
        if m.backend != "numba":
            continue
        key = (tuple(m.layers), m.activation, m.batch_size)
        others = [o for o in measurements
                  if o.backend != "numba" and (tuple(o.layers), o.activation, o.batch_size) == key]
        if not others:
            continue
        fastest = max(others, key=lambda o: o.samples_per_second)
        ratios = [(m.samples / a) / (fastest.samples / b) for a, b in zip(m.seconds, fastest.seconds)]
        leads[key] = (fastest.backend, ratios)
    return leads


def footer(measurements, skipped, plan):
    lines = [
        "",
        "samples/s: median of the repeats (min - max across them); data loading, preparation and JIT compilation excluded; "
        "the implementations of a configuration take their repeats in turn, one epoch each per round.",
        f"GFLOP/s (mini-batch rows): FLOPs per sample = {FLOPS_FORMULA}; W = weights, W1 = first layer's, "
        f"P = parameters, B = batch size. % GEMM = GFLOP/s / this machine's float32 GEMM rate: measured before each round "
        f"of the configuration's repeats on all BLAS threads and on one (median of {ROW_GEMM_REPEATS} each; the rounds' "
        f"medians), the larger of the all-threads rate and {usable_cores()} (usable cores) x the one-thread rate, so "
        f"that a core taken by another process does not lower it ({_gemm_range(measurements)} GFLOP/s over this run; "
        f"all threads {_gemm_range(measurements, 'gemm_all_threads')}, one thread "
        f"{_gemm_range(measurements, 'gemm_one_thread')}).",
        f"% roof (every row): the sparse roofline, samples/s x the FLOPs a sample needs with zero inputs skipped "
        f"({SPARSE_FLOPS_FORMULA}; H1 = first hidden size, nnz counted on the data) / the same GEMM rate.",
        "test acc: after one epoch (the last repeat) from the same initial weights; samples: timed per repeat.",
    ]
    busy = [m.others_busy_cores for m in measurements if _busy(m)]
    if busy:
        ran = dict.fromkeys(m.backend for m in measurements)
        fixed = [FIXED_THREADS[name] for name in ran if name in FIXED_THREADS]
        said = f"! measured while other processes kept {min(busy):.2f}-{max(busy):.2f} of this process's cores busy: " \
               "not a quiet machine"
        if fixed:
            auto = plan.threads == "auto"
            numba = ("than numba's threads='auto', which falls back to one thread" if auto else
                     f"(numba's too, on threads={plan.threads})")
            rows = "its rows" if len(fixed) == 1 else "their rows"
            lead = ", and numba's lead," if auto else ""
            said += (f". {_listed(fixed)} on a fixed number of threads slow{'s' if len(fixed) == 1 else ''} down far "
                     f"more then {numba}: {rows}{lead} are not what a quiet machine gives")
        lines.append(said + ".")
    leads = lead_over_others(measurements)
    if leads:
        lines.append("numba / the fastest other implementation (fastmlp's numpy backend included), round by round "
                     "(min - max; the median of the rounds): " + "; ".join(
            f"{'-'.join(map(str, layers))} {activation} bs {batch}: {name} {min(r):.2f}-{max(r):.2f}x "
            f"({statistics.median(r):.2f}x)" for (layers, activation, batch), (name, r) in leads.items()))
    shares = [m for m in measurements if m.all_threads_share]
    if shares:
        lines.append("numba threads='auto', the share of each repeat's samples it trained on all threads (the rest on "
                     "one: busy, or all threads not faster): " + "; ".join(
                         f"{'-'.join(map(str, m.layers))} {m.activation} bs {m.batch_size}: "
                         + ", ".join("-" if share is None else f"{share:.0%}" for share in m.all_threads_share)
                         for m in shares))
    seen = [m.others_busy_cores for m in measurements if m.others_busy_cores is not None]
    if seen:
        lines.append(f"other processes' CPU use during the rows: {min(seen):.2f}-{max(seen):.2f} of this process's "
                     f"{usable_cores()} cores (at least: the machine's busy time less this process's own and less "
                     "every CPU outside its affinity).")
    if any(m.trimmed for m in measurements):
        lines.append(
            f"* timed on the first N samples only: a repeat over all of them was estimated (from a {PILOT_SAMPLES}+ "
            f"sample pilot run) to take over --max-seconds {plan.max_seconds:g}. samples/s is a per-sample rate and stays "
            "comparable; test accuracy is after those N samples."
        )
    ran = list(dict.fromkeys(m.backend for m in measurements if m.peer))
    if ran:
        notes = []
        in_order = [name for name in ran if name != "sklearn"]
        if in_order:
            notes.append(f"{' and '.join(in_order)} start{'s' if len(in_order) == 1 else ''} from fastmlp's initial "
                         f"weights and visit{'s' if len(in_order) == 1 else ''} samples in the same order")
        if "sklearn" in ran:
            notes.append("sklearn MLPClassifier(solver='sgd', momentum=0, alpha=0, max_iter=1, shuffle=True) starts from "
                         "the same weights (warm_start) but shuffles with its own generator")
        lines.append(f"peers: {'; '.join(notes)}. Each peer's data is the same images / 255 in float32.")
        for name in ran:
            # (per batch size where it differs: JAX's batches per call do)
            by_batch = {}
            for m in measurements:
                if m.backend == name:
                    by_batch.setdefault(m.implementation, []).append(m.batch_size)
            for implementation, sizes in by_batch.items():
                at = "" if len(by_batch) == 1 else f" (batch {', '.join(map(str, dict.fromkeys(sizes)))})"
                lines.append(f"  {name}{at}: {implementation}")
    for name, reason in skipped.items():
        lines.append(f"skipped {name}: {reason}")
    return lines


def machine_record(info, gemm, plan, n_train):
    """The first JSON line: the machine, the start-of-run GEMM rate and the settings."""
    return {
        "record": "machine", **info, "gemm": gemm, "gemm_gflops": gemm["gflops"],
        "flops_per_sample_formula": FLOPS_FORMULA, "settings": {**plan.settings(), "samples": n_train},
    }


def skipped_record(name, reason):
    return {"record": "skipped", "backend": name, "reason": reason}
