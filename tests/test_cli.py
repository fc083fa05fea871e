"""The command line: JSON contract, one-line errors, entry points."""

import gzip
import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

from fastmlp.cli import main

REQUIRED_KEYS = {
    "test_accuracy",
    "test_loss",
    "train_loss",
    "epochs",
    "batch_size",
    "backend",
    "seconds",
    "compile_seconds",
    "samples_per_second",
}


def write_idx(path, array, magic):
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        data = gzip.compress(data)
    path.write_bytes(data)


@pytest.fixture
def tiny_mnist(tmp_path, rng, synth):
    """A 300/100-sample dataset in the MNIST file layout (gzipped)."""
    X, y = synth.digits(rng, 400)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", X[:300].reshape(-1, 28, 28), 2051)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", y[:300], 2049)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", X[300:].reshape(-1, 28, 28), 2051)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", y[300:], 2049)
    return tmp_path


def run(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_json_is_one_object_with_the_promised_keys(capsys, tiny_mnist, backend):
    status, out, err = run(
        capsys, "train", "--data", str(tiny_mnist), "--layers", "784,16,10", "--epochs", "2", "--backend", backend, "--json"
    )
    assert status == 0, err
    result = json.loads(out)  # exactly one JSON document: anything else on stdout breaks this
    assert out.count("\n") == 1
    assert REQUIRED_KEYS <= result.keys()
    assert result["backend"] == backend
    assert result["epochs"] == 2 and result["batch_size"] == 1
    assert 0.5 < result["test_accuracy"] <= 1
    assert result["seconds"] > 0 and result["samples_per_second"] == pytest.approx(600 / result["seconds"])
    assert result["compile_seconds"] >= 0
    assert "\r" not in err  # no progress bar when stderr is not a terminal


def test_human_output_and_full_batch(capsys, tiny_mnist):
    status, out, err = run(
        capsys, "train", "--data", str(tiny_mnist), "--layers", "784,8,10", "--batch-size", "full", "--epochs", "3",
        "--backend", "numpy", "--activation", "relu", "--lr", "0.5",
    )
    assert status == 0, err
    assert "epoch 3:" in out and "test accuracy" in out


def test_save_writes_a_loadable_model(capsys, tiny_mnist, tmp_path):
    import fastmlp

    path = tmp_path / "out" / "model.npz"
    path.parent.mkdir()
    status, out, err = run(capsys, "train", "--data", str(tiny_mnist), "--layers", "784,8,10", "--backend", "numpy", "--save", str(path))
    assert status == 0, err
    assert fastmlp.MLP.load(path).params_.size == 784 * 8 + 8 + 8 * 10 + 10


@pytest.mark.parametrize(
    "argv, words",
    [
        (["train", "--layers", "784,x,10"], "--layers"),
        (["train", "--lr", "fast"], "--lr"),
        (["train", "--batch-size", "some"], "--batch-size"),
        (["train", "--activation", "softplus"], "activation"),
        (["train", "--loss", "hinge"], "loss"),
        (["train", "--init", "ones"], "init"),
        (["train", "--backend", "cuda"], "backend"),
        (["train", "--dtype", "float16"], "dtype"),
        (["train", "--lr", "-1"], "lr"),
        (["train", "--epochs", "0"], "epochs"),
        (["train", "--batch-size", "-3"], "batch_size"),
        (["train", "--layers", "784,10", "--loss", "binary_cross_entropy"], "one output unit"),
        (["train", "--bogus"], "--bogus"),
        (["frobnicate"], "frobnicate"),
    ],
)
def test_user_mistakes_are_one_line_on_stderr(capsys, tiny_mnist, argv, words):
    status, out, err = run(capsys, *argv, *(["--data", str(tiny_mnist)] if argv[0] == "train" else []))
    assert status != 0
    assert out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert words in err


def test_layers_that_do_not_fit_the_data(capsys, tiny_mnist):
    status, _, err = run(capsys, "train", "--data", str(tiny_mnist), "--layers", "100,8,10", "--backend", "numpy")
    assert status == 1 and "layers[0] is 100" in err and err.count("\n") == 1


def test_truncated_idx_file_names_the_file(capsys, tiny_mnist):
    images = tiny_mnist / "train-images-idx3-ubyte.gz"
    data = gzip.decompress(images.read_bytes())
    images.write_bytes(gzip.compress(data[: len(data) // 2]))
    status, out, err = run(capsys, "train", "--data", str(tiny_mnist), "--backend", "numpy")
    assert status != 0 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "train-images-idx3-ubyte.gz" in err


def test_missing_data_says_what_and_where(capsys, tmp_path):
    status, out, err = run(capsys, "train", "--data", str(tmp_path), "--backend", "numpy")
    assert status != 0 and err.count("\n") == 1
    assert "train-images-idx3-ubyte" in err and str(tmp_path) in err


def _cli_env():
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env


def test_console_script_and_python_m_run(tiny_mnist, tmp_path):
    module = subprocess.run(
        [sys.executable, "-m", "fastmlp", "train", "--data", str(tiny_mnist), "--layers", "784,8,10", "--backend", "numpy", "--json"],
        capture_output=True, text=True, cwd=tmp_path, env=_cli_env(), timeout=300,
    )
    assert module.returncode == 0, module.stderr
    assert json.loads(module.stdout)["backend"] == "numpy"
    script = os.path.join(os.path.dirname(sys.executable), "fastmlp")
    if not os.path.exists(script):
        pytest.skip(f"console script not installed next to {sys.executable}")
    version = subprocess.run([script, "--version"], capture_output=True, text=True, env=_cli_env(), timeout=120)
    assert version.returncode == 0 and version.stdout.startswith("fastmlp ")


@pytest.mark.mnist
def test_default_mnist_run_reaches_95_percent(mnist, capsys):
    status, out, err = run(capsys, "train", "--data", os.environ["FASTMLP_DATA"], "--json")
    assert status == 0, err
    result = json.loads(out)
    assert result["test_accuracy"] >= 0.95
    assert result["n_train"] == 60000 and result["batch_size"] == 1 and result["epochs"] == 1
