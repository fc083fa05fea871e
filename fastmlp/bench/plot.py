"""The chart of a bench run (``--plot``): samples/s per configuration, one panel per network
and activation, min-max bars, trimmed rows hatched. Needs matplotlib (``fastmlp[plot]``)."""

from __future__ import annotations

import itertools


def write_plot(path, measurements, gemm, plan):
    """A chart of samples/s per configuration, written atomically to ``path`` in the format of
    its suffix (.png, .pdf, .svg)."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    from ..plot import save_figure

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
    save_figure(fig, path)  # in the format of the suffix, atomically
