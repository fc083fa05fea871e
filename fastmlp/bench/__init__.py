"""``fastmlp bench``: training throughput of both backends (and, optionally, other libraries).

Every measurement trains one network for one epoch over a slice of MNIST (``--samples``, the
first N training images) from the same initial weights and in the same seeded sample order,
``--repeats`` times. A figure is the median over the repeats, with the min-max spread beside it.
The implementations of one configuration take their repeats in turn (all set up first, then one
epoch of each per round, each after a pause of ``measure.SETTLE_SECONDS`` for the thread pools of
the one before to go idle), so that a machine whose speed drifts slows them alike.
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
start (median of 15) and again just before each round of a configuration's repeats (median of 5),
on all BLAS threads and on one: the machine's rate is the larger of the all-threads rate and the
usable cores times the one-thread rate (``machine.gemm_capacity``), so that a core another
process takes does not lower it and flatter "% GEMM" and "% roof" (audit 43). Other processes'
CPU use over each configuration's rounds is measured too (``machine.OthersBusy``), and rows
measured while it exceeded a quarter of a core are marked "!" (``report.BUSY_CORES``).

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
  exactly ran), ``batch_size``, ``layers`` (the sizes, [784, H, 10] or deeper), ``activation``, ``dtype``, ``lr``,
  ``samples_per_second`` (median), ``samples_per_second_spread`` [min, max],
  ``seconds_per_repeat`` (median), ``seconds_each_repeat`` (in round order: round i of a
  configuration's rows ran one after another, so their ratios pair up), ``repeats``, ``samples`` (timed per repeat),
  ``samples_requested``, ``trimmed`` (samples < samples_requested, see --max-seconds),
  ``speedup_vs_numpy`` (samples_per_second / the numpy row's, same configuration; null
  without a numpy row), ``flops_per_sample``, ``gflops`` and ``gflops_spread`` (null for
  batch size 1), ``gemm_gflops`` (this machine's float32 GEMM rate around the configuration's
  repeats, as above; the same for its rows), ``gemm_gflops_all_threads`` and
  ``gemm_gflops_one_thread`` (its two parts, medians of the rounds; one thread: null without
  threadpoolctl), ``others_busy_cores`` (other processes' CPU use over the configuration's rounds,
  in cores; null where the machine's idle time cannot be read) and ``gemm_fraction`` (gflops / the
  GEMM rate), ``nonzero_inputs_per_sample`` (counted
  on the data trained on), ``sparse_flops_per_sample`` (the FLOPs with zero inputs skipped:
  4 nnz H1 + 6 (W - W1)) and ``roofline_fraction`` (samples_per_second x that / the GEMM rate:
  the "% roof" column, every batch size), ``test_accuracy``,
  ``compile_seconds`` (JIT/warm-up time, not in the timing), ``threads`` (numba: the most threads
  the timed epochs took, which threads="auto" chooses; the NumPy reference and scikit-learn: NumPy's
  BLAS threads; torch: its set_num_threads; JAX: null, XLA's own pool),
  ``all_threads_share_each_repeat`` (numba's rows on threads="auto", mini-batch and the
  per-sample rows whose network lets it choose: per repeat, the share of the samples it trained
  on all threads rather than one; null elsewhere).

The package, one job per module:

- ``plan``: the command-line options and the validated ``Plan`` they give;
- ``dataset``: the MNIST slices every row trains on (``Split``);
- ``machine``: the machine probe (cpu, cores, BLAS, the float32 GEMM rate);
- ``runners``: ``FastmlpRunner`` (a fastmlp backend) and which implementations run;
- ``peers``: PyTorch, JAX and scikit-learn behind the same runner interface;
- ``measure``: timing a runner (pilot, trimming, repeats) into a ``Measurement``;
- ``report``: the table, its preamble and footer, the JSON records, the progress line;
- ``plot``: the chart;
- ``command``: ``run``, which ties them together.
"""

from __future__ import annotations

import argparse

from .command import run
from .plan import add_options

__all__ = ["add_parser", "run"]


def add_parser(subparsers):
    """Register ``bench`` on the ``fastmlp`` command's subparsers; returns the parser."""
    parser = subparsers.add_parser(
        "bench",
        help="measure training throughput of the backends (and other libraries)",
        description=(
            "Train MLPs (784-H-10 or deeper, --layers) on MNIST for one epoch per repeat with each backend and report\n"
            "samples per second (median and min-max over repeats), the speed-up over NumPy,\n"
            "mini-batch GFLOP/s beside this machine's float32 GEMM rate, and test accuracy.\n"
            "The default matrix (bs 1,32,128,1024 x H 20,128,800 x sigmoid,relu x numpy,numba)\n"
            "takes about a quarter of an hour on a busy 2-core machine; --quick well under a minute."
        ),
        epilog=_json_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_options(parser)
    return parser


def _json_help():
    if not __doc__:  # python -OO strips docstrings: the help goes without this part
        return None
    start = __doc__.index("JSON output")
    # (the docstring's reST literals as plain text: a terminal shows ``record`` as typed)
    return __doc__[start : __doc__.index("The package, one job per module")].strip().replace("``", "")
