"""``fastmlp bench`` from parsed options to printed rows: plan, data, machine, rows, report."""

from __future__ import annotations

from .. import _cli_options as options
from . import peers as peer_module
from .dataset import load_splits
from .machine import machine_info, measure_gemm, usable_cores
from .measure import measure_all
from .plan import check_plot_path, plan_from_args
from .report import HEADER, Status, footer, format_row, machine_record, preamble, skipped_record
from .runners import runner_factories


def run(args) -> int:
    """``fastmlp bench``: measure, print the table (or JSON lines), optionally plot. Returns 0."""
    plan = plan_from_args(args)
    plot = getattr(args, "plot", None)
    check_plot_path(plot)
    emit_json = bool(getattr(args, "json", False))
    status = Status(getattr(args, "progress", None))
    plan, train, test = load_splits(plan, getattr(args, "data", None), samples_explicit=getattr(args, "samples", None) is not None)

    info = machine_info()  # before the peers load their own BLAS and thread pools
    peer_threads = plan.peer_threads or usable_cores()
    skipped = {}
    factories = runner_factories(plan, skipped, peer_threads, train.labels)
    if not factories:
        raise RuntimeError("nothing to measure: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    status.row("measuring the float32 GEMM rate")
    gemm = measure_gemm()
    status.clear()

    def emit(line):
        print(line, flush=True)

    if emit_json:
        emit(options.strict_json(machine_record(info, gemm, plan, len(train))))
        for name, reason in skipped.items():
            emit(options.strict_json(skipped_record(name, reason)))
    else:
        notes = []
        running = {name for name, _ in factories if name in peer_module.PEERS}
        threading = []
        if "torch" in running:
            source = "--peer-threads" if plan.peer_threads else "this machine's usable cores"
            threading.append(f"torch runs with torch.set_num_threads({peer_threads}) ({source})")
        if "jax" in running:
            threading.append("jax uses XLA's own CPU thread pool")
        if threading:
            notes.append("peers: " + "; ".join(threading))
        for line in preamble(plan, info, gemm, len(train), len(test), notes) + ["", HEADER]:
            emit(line)

    last_group = []

    def report(measurement):
        if emit_json:
            emit(options.strict_json(measurement.as_json()))
            return
        group = (measurement.layers, measurement.activation)
        if last_group and last_group[-1] != group:
            emit("")  # a blank line between networks
        last_group.append(group)
        emit(format_row(measurement))

    try:
        measurements = measure_all(plan, factories, train, test, status, report)
    finally:
        status.clear()
    if not emit_json:
        for line in footer(measurements, skipped, plan):
            emit(line)
    if plot:
        from .plot import write_plot

        write_plot(plot, measurements, gemm, plan)
        if not emit_json:
            emit(f"chart written to {plot}")
    return 0
