"""The kernels' register blocks (``kernels/vectors.py``, REGISTER_BLOCK): eight 64-byte vectors
kept in registers with AVX-512, four on anything else (AVX2 has sixteen ymm registers: eight
64-byte accumulators spill, and on an AMD EPYC Zen 3 made per-sample training 0.72x as fast).

A machine compiles one width. Here a fresh process compiles the other (on a Numba cache of its
own) and trains the same models as this process: the weights must be the same bits wherever the
two widths only split the same per-unit sums into blocks (first layers of a multiple of four
vectors; the mini-batch kernel's gradient and dense forward), and within the dtype's tolerance
where the four-vector build runs a loop instead of a masked block of eight (65-127 float32
units, 33-63 float64: other sums, other rounding). On an AVX-512 machine the other process
compiles for AVX2 (NUMBA_CPU_NAME=haswell and the machine's features without AVX-512's, whose
width is four), so the same bits are also those of an AVX2 machine: the mini-batch kernel's
dense forward summed in an order of the target's registers before session 62, the per-sample
kernels' before session 63 (on an AMD EPYC Zen 4, whose LLVM target takes 64-byte vectors where an
Intel Xeon's takes 32-byte ones, "per-sample 64 float32" differed). On an AVX2 machine it
compiles the eight-vector blocks for AVX2 (FASTMLP_REGISTER_BLOCK=8)."""

import atexit
import json
import os
import shutil
import tempfile

import numba
import numpy as np
import pytest

pytestmark = pytest.mark.skipif(numba.config.DISABLE_JIT, reason="the block width is a compiled kernel's")

# name: (hidden units, dtype, batch size, momentum[, outputs, loss, output]); momentum > 0 runs the
# general per-sample kernel (with weight decay 1e-4), batch 1 the per-sample kernels, more the
# mini-batch kernel; 10 classes, softmax and cross-entropy unless said; "two threads" in a name:
# threads=2 (the two-thread worker, which threads="auto" may run, on each build). The last four: the loss
# rows' sums over the outputs and a batch's loss total, which LLVM vectorised in an order of the
# target's vectors before audit 68 (session 63; their output widths differed, 10 did not always).
CASES = {
    "per-sample 64 float32 (one block of four)": (64, "float32", 1, 0.0),
    "per-sample 128 float32": (128, "float32", 1, 0.0),
    "per-sample 128 float32, two threads (split in 64-unit halves)": (128, "float32", 1, 0.0),
    "per-sample 192 float32 (eight and four, or three of four)": (192, "float32", 1, 0.0),
    "per-sample 64 float64": (64, "float64", 1, 0.0),
    "per-sample 128 float32, momentum and decay": (128, "float32", 1, 0.9),
    "per-sample 100 float32 (masked block or loop)": (100, "float32", 1, 0.0),
    "mini-batch 128 float32": (128, "float32", 16, 0.0),
    "mini-batch 100 float32 (padded gradient rows; masked block or loop)": (100, "float32", 16, 0.0),
    "mini-batch 256 float32 (the dense forward two or four units a pass)": (256, "float32", 16, 0.0),
    "per-sample 64 float32, 17 classes, softmax and MSE": (64, "float32", 1, 0.0, 17, "mse", "softmax"),
    "per-sample 128 float32, 100 classes": (128, "float32", 1, 0.0, 100, "cross_entropy", "softmax"),
    "mini-batch 128 float64, 33 classes": (128, "float64", 16, 0.0, 33, "cross_entropy", "softmax"),
    "mini-batch 128 float32, 7 outputs, regression": (128, "float32", 16, 0.0, 7, "mse", "identity"),
}
SAME_BITS = [name for name, (hidden, dtype, *_) in CASES.items() if hidden % (64 // np.dtype(dtype).itemsize * 4) == 0]

TRAIN = r"""
import json, sys
if __name__ == "__main__":
    sys.modules["scipy"] = None  # as on an install of fastmlp alone: importing scipy fails
import numpy as np
import fastmlp
from fastmlp.kernels import vectors

def train(cases, folder):
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(96, 50), dtype=np.uint8)
    X[rng.random(X.shape) < 0.6] = 0
    for index, (name, (hidden, dtype, batch, momentum, *rest)) in enumerate(cases.items()):
        outputs, loss, output = rest or (10, "cross_entropy", "softmax")
        y = rng.integers(0, outputs, 96) if output == "softmax" else rng.standard_normal((96, outputs))
        threads = 2 if "two threads" in name else 1
        model = fastmlp.MLP([50, hidden, outputs], dtype=dtype, threads=threads, seed=3, loss=loss, output=output)
        model.fit(X, y, epochs=2, batch_size=batch, momentum=momentum, weight_decay=1e-4 if momentum else 0.0,
                  progress=False)
        # the weights, then each epoch's mean training loss (which the adaptive rate and early
        # stopping without validation data watch)
        np.save(f"{folder}/{index}.npy", np.concatenate([model.params_.astype(np.float64), model.history_.loss]))
    return vectors.REGISTER_BLOCK

if __name__ == "__main__":
    print(json.dumps([train(json.loads(sys.argv[1]), sys.argv[2]), sys.modules["scipy"] is None,
                      "+avx512f" in vectors._target_features().split(",")]))
"""


def _train(cases, folder):
    namespace = {"__name__": "register_blocks"}
    exec(TRAIN, namespace)
    return namespace["train"](cases, folder)


def _avx2_features():
    """This machine's LLVM features with every AVX-512 (and AMX) one turned off."""
    from numba.core.codegen import get_host_cpu_features

    return ",".join("-" + feature[1:] if feature[1:].startswith(("avx512", "amx")) else feature
                    for feature in get_host_cpu_features().split(","))


def other_width_trains(run, width):
    """The models of CASES trained in a fresh process compiling blocks of ``width`` vectors (for
    AVX2 where this machine has AVX-512), with SciPy unimportable and every kernel compiled in
    that process (no second process, and a Numba cache of its own): (register block width,
    whether scipy stayed blocked, folder of weights, whether its target had AVX-512)."""
    folder = tempfile.mkdtemp()
    atexit.register(shutil.rmtree, folder, True)  # two tests read it: removed when the test process ends
    if width == 4:  # this machine has AVX-512: the other process builds for AVX2
        target = dict(NUMBA_CPU_NAME="haswell", NUMBA_CPU_FEATURES=_avx2_features())
    else:
        target = dict(FASTMLP_REGISTER_BLOCK=str(width))
    with tempfile.TemporaryDirectory() as cache_dir:
        status, out, err = run(["-c", TRAIN, json.dumps(CASES), folder],
                               dict(NUMBA_CACHE_DIR=cache_dir, FASTMLP_BACKGROUND_COMPILE="0", **target), timeout=900)
    assert status == 0, err[-2000:]
    width, scipy_blocked, avx512 = json.loads(out)
    return width, scipy_blocked, folder, avx512


def _other_width():
    from fastmlp.kernels import vectors

    return 8 if vectors.REGISTER_BLOCK == 4 else 4


@pytest.mark.background.with_args(other_width_trains, _other_width())
def test_both_register_block_widths_train_to_the_same_weights(background, tmp_path, synth):
    width, _, folder, avx512 = background(other_width_trains, _other_width())
    assert width == _other_width()
    assert not avx512  # (the AVX2 build where this machine has AVX-512; AVX2's own features elsewhere)
    assert _train(CASES, tmp_path) == 12 - width  # this process: the host's own width
    assert len(SAME_BITS) == 12
    for index, (name, (_, dtype, *_)) in enumerate(CASES.items()):
        here = np.load(tmp_path / f"{index}.npy")
        there = np.load(os.path.join(folder, f"{index}.npy"))
        if name in SAME_BITS:
            np.testing.assert_array_equal(here, there, err_msg=name)
        else:
            np.testing.assert_allclose(here, there, err_msg=name, **synth.tolerance(np.dtype(dtype).type))


@pytest.mark.background.with_args(other_width_trains, _other_width())
def test_the_compiled_core_needs_no_scipy(background):
    """SciPy is not a dependency, but Numba needs it to compile any matrix product (``@``,
    np.dot): kernels write small products out. The other width's process above compiles every
    kernel of CASES (per-sample plain and general, mini-batch; float32 and float64) with
    ``import scipy`` failing, cold, in a cache of its own (so nothing loads from a cache another
    process compiled with SciPy present), and trains all its models."""
    width, scipy_blocked, folder, _ = background(other_width_trains, _other_width())
    assert scipy_blocked
    assert sorted(os.listdir(folder)) == sorted(f"{index}.npy" for index in range(len(CASES)))


def test_the_block_width_follows_the_targets_features(monkeypatch):
    from fastmlp.kernels import vectors

    assert vectors.register_block_of("+sse2,+avx,+avx2,+fma,-avx512f,-avx512bw") == 4
    assert vectors.register_block_of("+avx2,+avx512f,+avx512bw,+avx512vl") == 8
    assert vectors.register_block_of("") == 4
    monkeypatch.setenv("FASTMLP_REGISTER_BLOCK", "16")
    with pytest.raises(ValueError, match="FASTMLP_REGISTER_BLOCK must be 4 or 8"):
        vectors._register_block()
