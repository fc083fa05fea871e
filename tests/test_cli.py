"""The command line: JSON contract, one-line errors, entry points."""

import gzip
import json
import os
import re
import signal
import struct
import subprocess
import sys
import shutil
import time
import warnings
from pathlib import Path

import numba
import numpy as np
import pytest

from fastmlp import MLP, cli, load_mnist
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


# One case per option and kind of bad value. Each must be refused while the options are parsed:
# --data points at a directory without MNIST, so a check that waited for the data would end in
# a "files not found" error (status 1) and fail the test.
# The optimizer options one parser adds to several commands (_cli_options.add_optimizer_options).
OPTIMIZER_BAD_VALUES = [
        ("--optimizer", "rmsprop"),
        ("--momentum", "1"),
        ("--beta1", "1"),
        ("--beta2", "-0.1"),
        ("--eps", "0"),
        ("--weight-decay", "-1"),
        ("--dropout", "1"),
        ("--input-dropout", "nan"),
]
BAD_OPTION_VALUES = {
    "train": [
        ("--layers", "784,,10"),
        ("--layers", "784,128,"),
        ("--layers", ",784,10"),
        ("--layers", "784,x,10"),
        ("--layers", "784"),
        ("--layers", "784,0,10"),
        ("--layers", "784,-5,10"),
        ("--layers", ""),
        ("--batch-size", "0"),
        ("--batch-size", "-3"),
        ("--batch-size", "some"),
        ("--batch-size", "1.5"),
        ("--epochs", "0"),
        ("--epochs", "-1"),
        ("--epochs", "two"),
        ("--lr", "0"),
        ("--lr", "-1"),
        ("--lr", "nan"),
        ("--lr", "inf"),
        ("--lr", "fast"),
        ("--lr-decay", "0"),
        ("--lr-decay", "-0.5"),
        ("--lr-decay", "nan"),
        ("--lr-step-epochs", "0"),
        ("--lr-step-epochs", "1.5"),
        ("--lr-schedule", "linear"),
        ("--threads", "0"),
        ("--threads", "-2"),
        ("--threads", "x"),
        ("--seed", "-1"),
        ("--seed", "1.5"),
        ("--limit", "0"),
        ("--limit", "-10"),
        ("--dtype", "float16"),
        ("--activation", "softplus"),
        ("--loss", "hinge"),
        ("--output", "tanh"),
        ("--init", "ones"),
        ("--backend", "cuda"),
        ("--save", ""),
        ("--data", " "),
        ("--dataset", "cifar10"),
        ("--dataset", "MNIST"),
        ("--optimizer", "rmsprop"),
        ("--momentum", "1"),
        ("--momentum", "-0.1"),
        ("--momentum", "nan"),
        ("--beta1", "1"),
        ("--beta2", "1.5"),
        ("--beta2", "x"),
        ("--eps", "0"),
        ("--weight-decay", "-1"),
        ("--weight-decay", "inf"),
        ("--dropout", "1"),
        ("--input-dropout", "-0.2"),
        ("--lr-schedule", "onecycle"),
        ("--power-t", "-1"),
        ("--warmup-epochs", "-1"),
        ("--warmup-epochs", "1.5"),
        ("--validation-fraction", "0"),
        ("--validation-fraction", "1"),
        ("--validation-fraction", "nan"),
        ("--early-stopping", "0"),
        ("--tol", "-1"),
        ("--n-iter-no-change", "0"),
        ("--checkpoint-every", "0"),
        ("--checkpoint-every", "x"),
        ("--resume", ""),
        ("--resume", "no-such-checkpoint.npz"),
        ("--plot", "missing-directory/curve.png"),
        ("--plot", "curve.txt"),
        ("--plot", ""),
    ],
    "evaluate": [
        ("--data", ""),
        ("--dataset", "cifar10"),
        ("--plot", "missing-directory/chart.png"),
        ("--plot", "chart.bmp"),
    ],
    "warmup": [
        ("--dtype", "float16"),
        ("--dtype", "float32,"),
        ("--batch-size", "0"),
        ("--batch-size", "1,x"),
        ("--inputs", "int8"),
    ],
    "predict": [
        ("--output", ""),
        ("--output", "missing-directory/predictions.npy"),
        ("--output", "predictions.txt"),
    ],
    "compare": [
        ("--weights-rtol", "0"),
        ("--weights-rtol", "-1"),
        ("--weights-rtol", "nan"),
        ("--weights-rtol", "inf"),
        ("--layers", "784,,10"),
        ("--batch-size", "0"),
        ("--epochs", "0"),
        ("--lr", "nan"),
        ("--seed", "-1"),
        ("--threads", "0"),
        ("--limit", "0"),
        ("--dtype", "float16"),
        ("--activation", "softplus"),
        ("--loss", "hinge"),
        ("--output", "tanh"),
        ("--init", "ones"),
        ("--data", ""),
        ("--dataset", "fashion_mnist"),
        ("--optimizer", "rmsprop"),
        ("--momentum", "1"),
        ("--beta1", "-0.5"),
        ("--beta2", "1"),
        ("--eps", "-1e-8"),
        ("--weight-decay", "nan"),
        ("--dropout", "1.5"),
        ("--input-dropout", "1"),
        ("--lr-schedule", "linear"),
        ("--lr-decay", "0"),
        ("--lr-step-epochs", "-2"),
        ("--power-t", "inf"),
        ("--warmup-epochs", "-2"),
        ("--tol", "nan"),
        ("--n-iter-no-change", "-1"),
    ],
    "sweep": [
        ("--data", ""),
        ("--dataset", "cifar10"),
        ("--layers", "784,,10"),
        ("--activation", "softplus"),
        ("--loss", "hinge"),
        ("--output", "tanh"),
        ("--init", "ones"),
        ("--batch-size", "0"),
        ("--epochs", "0"),
        ("--lr", "nan"),
        ("--seed", "-1"),
        ("--threads", "0"),
        ("--dtype", "float16"),
        ("--limit", "0"),
        ("--backend", "cuda"),
        *OPTIMIZER_BAD_VALUES,
        ("--lr-schedule", "linear"),
        ("--lr-decay", "0"),
        ("--lr-step-epochs", "0"),
        ("--power-t", "-1"),
        ("--warmup-epochs", "-1"),
        ("--tol", "nan"),
        ("--n-iter-no-change", "0"),
        ("--validation-fraction", "0"),
        ("--validation-fraction", "1"),
        ("--early-stopping", "0"),
        ("--grid", "lr=0.1,x"),
        ("--grid", "learning_rate=0.1"),
        ("--grid", "lr"),
        ("--grid", "lr=,0.1"),
        ("--grid", "batch_size=loguniform:1:8"),
        ("--grid", "lr=loguniform:0:1"),
        ("--trials", "0"),
        ("--trials", "x"),
        ("--executor", "threads"),
        ("--scheduler", ""),
        ("--scheduler", "localhost"),
        ("--scheduler", "http://localhost:8786"),
        ("--workers", "0"),
        ("--csv", "ranking.txt"),
        ("--csv", "missing-directory/ranking.csv"),
    ],
    "bench": [
        ("--batch-sizes", "0"),
        ("--batch-sizes", "-1"),
        ("--batch-sizes", "32,x"),
        ("--batch-sizes", "1,,32"),
        ("--batch-sizes", "1,32,"),
        ("--batch-sizes", ""),
        ("--batch-sizes", "1024", "--samples", "300"),  # larger than the slice it would train on
        ("--layers", "784,x,10"),
        ("--layers", "784"),
        ("--layers", "784,,10"),
        ("--layers", "784,128,"),
        ("--layers", "784,0,10"),
        ("--layers", "784,16,1"),  # a softmax needs two outputs
        ("--activations", "swish"),
        ("--activations", "sigmoid,"),
        ("--backends", "cuda"),
        ("--backends", ""),
        ("--peers", "pytorch"),
        ("--peers", "torch,,jax"),
        ("--samples", "0"),
        ("--samples", "-5"),
        ("--samples", "1e3"),
        ("--repeats", "0"),
        ("--repeats", "x"),
        ("--max-seconds", "-1"),
        ("--max-seconds", "nan"),
        ("--max-seconds", "inf"),
        ("--max-seconds", "soon"),
        ("--threads", "0"),
        ("--threads", "two"),
        ("--peer-threads", "0"),
        ("--lr", "0"),
        ("--lr", "-0.1"),
        ("--lr", "nan"),
        ("--seed", "-1"),
        ("--plot", "missing-directory/chart.png"),
        ("--plot", ""),
        ("--data", ""),
        *OPTIMIZER_BAD_VALUES,
        ("--momentum", "0.9", "--peers", "torch"),  # the peers train with plain SGD only
    ],
}


@pytest.mark.parametrize(
    "command, option, value, other_options",
    [(command, option, value, other) for command, cases in BAD_OPTION_VALUES.items() for option, value, *other in cases],
    ids=lambda part: repr(part) if part == "" else " ".join(part) if isinstance(part, list) else str(part),
)
def test_bad_option_value_is_a_one_line_usage_error_naming_the_option(capsys, tmp_path, command, option, value, other_options):
    if option in ("--plot", "--output") and value:
        value = str(tmp_path / value)
    # evaluate and predict take files first: files that exist (parse time checks no more), but
    # no model, so a check that waited until after loading it would fail with status 1.
    model, samples = tmp_path / "model.npz", tmp_path / "samples.npy"
    model.write_text("not a model")
    samples.write_text("no samples")
    leading = {"evaluate": [str(model)], "predict": [str(model), str(samples)]}.get(command, [])
    if command not in ("predict", "warmup"):
        leading.append(f"--data={tmp_path}")
    status, out, err = run(capsys, command, *leading, f"{option}={value}", *other_options)
    assert status == 2, err
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("fastmlp: error: ") and "Traceback" not in err
    assert option in err


def test_every_option_that_takes_a_value_has_a_bad_value_case():
    """A new option without a case above would go unchecked: this names it."""
    from fastmlp.cli import build_parser

    (commands,) = [action for action in build_parser()._actions if action.choices and action.dest == "command"]
    for command, parser in commands.choices.items():
        takes_a_value = {action.option_strings[-1] for action in parser._actions if action.option_strings and action.nargs != 0}
        takes_a_value.discard("--help")
        covered = {option for option, *_ in BAD_OPTION_VALUES.get(command, [])}
        assert takes_a_value - covered == set(), f"fastmlp {command}: no bad-value case for {sorted(takes_a_value - covered)}"


def test_every_option_says_in_help_what_it_takes():
    """--help showed "--activation ACTIVATION" for a choice of four names, and "--dtype LIST ...
    float64 or both" where "both" is refused and a comma list was meant (audit 46)."""
    from fastmlp.cli import build_parser

    (commands,) = [action for action in build_parser()._actions if action.choices and action.dest == "command"]
    for command, parser in commands.choices.items():
        for action in parser._actions:
            name = f"fastmlp {command} {action.option_strings[-1] if action.option_strings else action.dest}"
            allowed = getattr(action.type, "allowed", None)
            if allowed is not None:  # a choice: its names, or a word of its own (--dataset NAME)
                assert action.metavar is not None, name
                if "|" in action.metavar:
                    assert action.metavar.split("|") == list(allowed), name
            if action.metavar == "LIST":
                assert "comma" in action.help, name


def test_a_test_set_the_network_cannot_score_is_refused_before_training(capsys, tiny_mnist, monkeypatch):
    """A test label past the network's classes was found at the evaluation after training, and
    the error (naming no test set) skipped --save: the trained run was lost."""
    from fastmlp import trainer

    labels = np.zeros(100, np.uint8)
    labels[7] = 10
    write_idx(tiny_mnist / "t10k-labels-idx1-ubyte.gz", labels, 2049)
    monkeypatch.setattr(trainer, "train", lambda *a, **k: pytest.fail("trained before checking the test set"))
    status, out, err = run(capsys, "train", "--data", str(tiny_mnist), "--layers", "784,8,10", "--backend", "numpy",
                           "--save", str(tiny_mnist / "model.npz"))
    assert status == 1 and err.count("\n") == 1
    # (the labels once named "the test set's labels labels")
    assert f"fastmlp: error: the test labels of --data {tiny_mnist} must be in [0, 9] to match layers[-1] = 10" in err
    assert "got 10 at row 7" in err and not (tiny_mnist / "model.npz").exists()


def test_training_labels_the_network_cannot_learn_are_refused_naming_their_data(capsys, tiny_mnist):
    # "y labels must be in [0, 9] ...; got 200 at row 17": neither the file nor the directory (audit 29)
    labels = np.zeros(300, np.uint8)
    labels[17] = 200
    write_idx(tiny_mnist / "train-labels-idx1-ubyte.gz", labels, 2049)
    status, out, err = run(capsys, "train", "--data", str(tiny_mnist), "--layers", "784,8,10", "--backend", "numpy")
    assert status == 1 and err.count("\n") == 1 and out == ""
    assert err.startswith(f"fastmlp: error: the training labels of --data {tiny_mnist} must be in [0, 9]")
    assert "got 200 at row 17" in err


def test_save_comes_before_the_evaluation(capsys, tiny_mnist, monkeypatch):
    """Whatever fails after training, the trained run is already in --save's file."""
    from fastmlp import MLP as Model

    def failing(self, X, y):
        raise MemoryError("no memory left for the evaluation")

    monkeypatch.setattr(Model, "evaluate", failing)
    status, _, err = run(capsys, "train", "--data", str(tiny_mnist), "--layers", "784,8,10", "--backend", "numpy",
                         "--save", str(tiny_mnist / "model.npz"))
    assert status == 1 and err.startswith("fastmlp: error: not enough memory: no memory left for the evaluation")
    assert MLP.load(tiny_mnist / "model.npz").epochs_trained_ == 1


@pytest.mark.parametrize("where, words", [("missing/model.npz", "does not exist"), ("models", "is a directory"),
                                          ("models/", "is a directory"), ("file/model.npz", "is a file"),
                                          ("train-labels-idx1-ubyte.gz", "must end in .npz")])
def test_save_where_it_cannot_write_is_refused_before_training(capsys, tmp_path, where, words):
    (tmp_path / "models").mkdir()
    (tmp_path / "file").write_bytes(b"")
    target = os.path.join(tmp_path, where)
    status, out, err = run(capsys, "train", "--data", str(tmp_path), "--save", target)
    assert status == 2 and out == "" and err.count("\n") == 1
    assert f"--save {target}" in err and words in err and ".tmp" not in err


@pytest.mark.parametrize(
    "argv, words",
    [
        (["train", "--layers", "784,10", "--loss", "binary_cross_entropy"], "--loss cross_entropy"),
        (["train", "--output", "sigmoid"], "cannot be trained with loss"),
        # mse's default output is identity: regression on 10 targets, where the data has one label
        # (its advice once read "--output softmax (or sigmoid)", and sigmoid + mse is refused)
        (["train", "--loss", "mse"], "add --output softmax to train a classifier on the squared error"),
        (["train", "--loss", "mse", "--output", "identity"], "regression on 10 targets"),
        (["compare", "--loss", "mse", "--layers", "784,8,10"], "one class label per sample"),
        (["train", "--bogus"], "--bogus"),
        (["frobnicate"], "frobnicate"),
    ],
)
def test_user_mistakes_are_one_line_on_stderr(capsys, tiny_mnist, argv, words):
    status, out, err = run(capsys, *argv, *(["--data", str(tiny_mnist)] if argv[0] in ("train", "compare") else []))
    assert status == 2
    assert out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert words in err


def test_full_batch_is_asked_for_by_name(capsys, tmp_path):
    from fastmlp.cli import build_parser

    assert build_parser().parse_args(["train", "--batch-size", "full"]).batch_size is None
    assert build_parser().parse_args(["train", "--batch-size", "7"]).batch_size == 7


def test_layers_accept_spaces_and_dashes_but_not_gaps():
    from fastmlp.cli import build_parser

    parse = build_parser().parse_args
    assert parse(["train", "--layers", "784, 64 ,10"]).layers == (784, 64, 10)
    assert parse(["train", "--layers", "784-64-10"]).layers == (784, 64, 10)


def test_limit_beyond_the_data_is_an_error(capsys, tiny_mnist):
    status, out, err = run(capsys, "train", "--data", str(tiny_mnist), "--limit", "301", "--backend", "numpy")
    assert status == 1 and out == "" and err.count("\n") == 1
    assert "--limit 301 is more than the 300 training samples" in err


@pytest.mark.parametrize("command", ["train", "compare"])
def test_a_batch_beyond_the_data_is_an_error(capsys, tiny_mnist, command):
    # it trained full batch, and train --json reported "batch_size": 5000
    status, out, err = run(capsys, command, "--data", str(tiny_mnist), "--limit", "200", "--batch-size", "201",
                           "--backend", "numpy") if command == "train" else run(
        capsys, command, "--data", str(tiny_mnist), "--limit", "200", "--batch-size", "201")
    assert status == 1 and out == "" and err.count("\n") == 1
    assert "--batch-size 201 is more than the 200 training samples; --batch-size full trains on all" in err
    status, out, err = run(capsys, "train", "--data", str(tiny_mnist), "--limit", "200", "--batch-size", "200",
                           "--backend", "numpy", "--json")
    assert status == 0 and json.loads(out)["batch_size"] == 200, err


def test_layers_that_do_not_fit_the_data(capsys, tiny_mnist):
    status, _, err = run(capsys, "train", "--data", str(tiny_mnist), "--layers", "100,8,10", "--backend", "numpy")
    assert status == 1 and "layers[0] is 100" in err and err.count("\n") == 1
    # it named "the training images of ..." with "has": one subject, one verb
    assert f"the training set of --data {tiny_mnist} has 784 features per sample but layers[0] is 100" in err


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


@pytest.mark.parametrize("command", ["train", "compare", "evaluate"])
def test_data_and_dataset_together_are_a_usage_error(capsys, tmp_path, command):
    model = tmp_path / "model.npz"
    model.write_bytes(b"")  # evaluate's MODEL must exist before the options are compared
    leading = [str(model)] if command == "evaluate" else []
    status, out, err = run(capsys, command, *leading, "--data", str(tmp_path), "--dataset", "kmnist")
    assert status == 2 and out == "" and err.count("\n") == 1
    assert "--dataset" in err and "not allowed with" in err and "--data" in err


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """The user cache in tmp_path, FASTMLP_DATA unset, and no downloading."""
    import pooch

    def refuse(self, url, *args, **kwargs):
        raise OSError(f"the test refused to download {url}")

    monkeypatch.setattr(pooch.HTTPDownloader, "__call__", refuse)  # what fastmlp.data downloads with
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("FASTMLP_DATA", raising=False)
    return tmp_path / "cache" / "fastmlp"


@pytest.mark.parametrize("name", ["fashion-mnist", "kmnist"])
def test_dataset_reads_its_cache_subdirectory(capsys, tiny_mnist, cache, monkeypatch, name):
    (cache / name).mkdir(parents=True)
    for path in tiny_mnist.glob("*.gz"):
        (cache / name / path.name).write_bytes(path.read_bytes())
    monkeypatch.setenv("FASTMLP_DATA", str(tiny_mnist / "nothing-here"))  # means MNIST only
    status, out, err = run(capsys, "train", "--dataset", name, "--layers", "784,8,10", "--backend", "numpy", "--json")
    assert status == 0, err
    assert json.loads(out)["n_train"] == 300


def test_evaluate_reads_the_named_dataset(capsys, tiny_mnist, cache, tmp_path):
    (cache / "kmnist").mkdir(parents=True)
    for path in tiny_mnist.glob("*.gz"):
        (cache / "kmnist" / path.name).write_bytes(path.read_bytes())
    model_path = tmp_path / "model.npz"
    status, _, err = run(capsys, "train", "--data", str(tiny_mnist), "--layers", "784,8,10", "--backend", "numpy",
                         "--save", str(model_path), "--json")
    assert status == 0, err
    status, out, err = run(capsys, "evaluate", str(model_path), "--dataset", "kmnist", "--json")
    assert status == 0, err
    result = json.loads(out)
    assert result["dataset"] == "kmnist" and result["n_samples"] == 100 and 0 <= result["accuracy"] <= 1


def test_dataset_mnist_is_fastmlp_data(capsys, tiny_mnist, cache, monkeypatch):
    monkeypatch.setenv("FASTMLP_DATA", str(tiny_mnist))
    status, out, err = run(capsys, "train", "--dataset", "mnist", "--layers", "784,8,10", "--backend", "numpy", "--json")
    assert status == 0, err
    assert json.loads(out)["n_train"] == 300


@pytest.mark.parametrize("command", ["train", "compare"])
def test_dataset_that_cannot_be_downloaded_says_which_and_where(capsys, cache, command):
    status, out, err = run(capsys, command, "--dataset", "fashion-mnist", "--layers", "784,8,10")
    assert status == 1 and out == "" and err.count("\n") == 1
    assert "Fashion-MNIST data not found" in err and str(cache / "fashion-mnist") in err
    assert "the test refused to download http://fashion-mnist.s3-website" in err


def _cli_env():
    return dict(os.environ)


def test_child_processes_import_the_fastmlp_under_test(tmp_path, monkeypatch, python_process):
    """A test's subprocess imports the fastmlp the test imports, PYTHONPATH kept: they dropped it,
    and a checkout tested through PYTHONPATH (not installed) ran its subprocess tests against
    whichever fastmlp was installed."""
    import fastmlp.kernels

    copy = tmp_path / "checkout"
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(Path(fastmlp.__file__).parent, copy / "fastmlp", ignore=ignore)
    if not (copy / "fastmlp" / "kernels").exists():  # an editable install maps kernels/ there
        shutil.copytree(Path(fastmlp.kernels.__file__).parent, copy / "fastmlp" / "kernels", ignore=ignore)
    monkeypatch.setenv("PYTHONPATH", str(copy))
    code = "import fastmlp, fastmlp.kernels; print(fastmlp.__file__); print(fastmlp.kernels.__file__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=_cli_env(),
                          timeout=120)
    status, out, err = python_process(["-c", code])
    for printed in (done.stdout, out):
        paths = [Path(line) for line in printed.split()]
        assert len(paths) == 2 and all(path.is_relative_to(copy) for path in paths), (printed, done.stderr, err)


def test_an_output_encoding_without_a_paths_characters_escapes_them(tiny_mnist, tmp_path):
    # PYTHONIOENCODING=ascii and a non-ASCII --save path: the model was saved, then the line
    # naming it ended the command with "'ascii' codec can't encode" and status 1 (audit 22)
    env = dict(_cli_env(), PYTHONIOENCODING="ascii")
    path = tmp_path / "mod\u00e8le \u6a21\u578b.npz"
    done = subprocess.run([sys.executable, "-m", "fastmlp", "train", "--data", str(tiny_mnist), "--layers", "784,8,10",
                           "--backend", "numpy", "--no-progress", "--save", str(path)],
                          capture_output=True, text=True, encoding="ascii", cwd=tmp_path, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert path.exists() and "mod\\xe8le \\u6a21\\u578b.npz" in done.stdout
    done = subprocess.run([sys.executable, "-m", "fastmlp", "evaluate", str(path), "--data", str(tiny_mnist)],
                          capture_output=True, text=True, encoding="ascii", cwd=tmp_path, env=env, timeout=300)
    assert done.returncode == 0 and "accuracy" in done.stdout, done.stderr


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


def test_the_commands_run_under_python_OO(tmp_path):
    # -OO strips docstrings, and the bench parser's help was cut from its module's: every
    # command died with an AttributeError traceback
    for argv in (["--version"], ["bench", "--help"], ["train", "--help"]):
        result = subprocess.run([sys.executable, "-OO", "-m", "fastmlp", *argv], capture_output=True, text=True,
                                cwd=tmp_path, env=_cli_env(), timeout=120)
        assert result.returncode == 0 and result.stderr == "", (argv, result.stderr)
        assert result.stdout.strip(), argv


@pytest.mark.parametrize("command", ["version", "evaluate"])
def test_output_to_a_reader_that_has_gone_ends_quietly_with_141(tiny_mnist, tmp_path, command):
    # `fastmlp evaluate m.npz | head -1`: "fastmlp: error: [Errno 32] Broken pipe", exit 1
    argv = ["--version"]
    if command == "evaluate":
        X, y, _, _ = load_mnist(tiny_mnist)
        model = MLP([784, 8, 10], backend="numpy", seed=0)
        model.fit(X, y, epochs=1, progress=False)
        model.save(tmp_path / "m.npz")
        argv = ["evaluate", str(tmp_path / "m.npz"), "--data", str(tiny_mnist)]
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is written
    try:
        result = subprocess.run([sys.executable, "-m", "fastmlp", *argv], stdout=write_end, stderr=subprocess.PIPE,
                                text=True, cwd=tmp_path, env=_cli_env(), timeout=300)
    finally:
        os.close(write_end)
    assert result.returncode == 141 and result.stderr == "", (result.returncode, result.stderr)


@pytest.mark.parametrize("files", [["--save", "m.npz"], ["--save", "m.npz", "--json"], []])
def test_train_whose_reader_has_gone_still_writes_its_files(tiny_mnist, tmp_path, files):
    # `fastmlp train --save m.npz | head -1` stopped at the next line with 141 and never wrote
    # m.npz: the whole training lost (audit 22). A run with a file to write goes on, says so once
    # and ends with 0; one without stops as any command does
    read_end, write_end = os.pipe()
    os.close(read_end)
    argv = ["train", "--data", str(tiny_mnist), "--layers", "784,8,10", "--backend", "numpy", "--epochs", "2", *files]
    try:
        result = subprocess.run([sys.executable, "-m", "fastmlp", *argv], stdout=write_end, stderr=subprocess.PIPE,
                                text=True, cwd=tmp_path, env=_cli_env(), timeout=300)
    finally:
        os.close(write_end)
    if not files:
        assert result.returncode == 141 and result.stderr == "", (result.returncode, result.stderr)
        return
    assert result.returncode == 0, result.stderr
    assert result.stderr == ("fastmlp: note: the reader of stdout went away; training goes on to write m.npz, "
                             "printing nothing more\n")
    assert MLP.load(tmp_path / "m.npz").epochs_trained_ == 2


def test_a_broken_pipe_that_is_not_stdout_is_a_one_line_error(capsys, monkeypatch):
    from fastmlp import cli

    def other_pipe(argv):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli, "_main", other_pipe)
    assert main(["--version"]) == 1
    assert capsys.readouterr().err == "fastmlp: error: [Errno 32] Broken pipe\n"


@pytest.mark.mnist
def test_default_mnist_run_reaches_95_percent(mnist, capsys):
    status, out, err = run(capsys, "train", "--data", os.environ["FASTMLP_DATA"], "--json")
    assert status == 0, err
    result = json.loads(out)
    assert result["test_accuracy"] >= 0.95
    assert result["n_train"] == 60000 and result["batch_size"] == 1 and result["epochs"] == 1


# --- training recipes, checkpoints and resuming ----------------------------------------------


def test_json_reports_the_threads_actually_used(capsys, tiny_mnist):
    """16 hidden units are one block of the threaded per-sample loop: 4 threads asked, 1 used."""
    status, out, err = run(capsys, "train", "--data", str(tiny_mnist), "--layers", "784,16,10", "--threads", "4", "--json")
    assert status == 0, err
    assert json.loads(out)["threads"] == 1
    # 64 units take two threads with plain SGD; any other recipe runs the general kernel, on one
    # (it reported the two asked for)
    for recipe, used in (([], 2), (["--momentum", "0.9"], 1), (["--dropout", "0.1"], 1)):
        status, out, err = run(capsys, "train", "--data", str(tiny_mnist), "--layers", "784,64,10", "--threads", "2",
                               "--json", *recipe)
        assert status == 0, err
        assert json.loads(out)["threads"] == used, recipe


def test_fewer_threads_than_asked_are_said(capsys, tiny_mnist):
    """--threads 2 --momentum 0.9 trained on one thread, and only --json told (audit 46)."""
    from fastmlp.kernels import usable_threads

    status, out, err = run(capsys, "train", "--data", str(tiny_mnist), "--layers", "784,64,10", "--threads", "2",
                           "--momentum", "0.9", "--no-progress")
    assert status == 0, err
    assert "trained on 1 thread of --threads 2: per-sample SGD takes more than one thread only for plain SGD" in out
    status, out, err = run(capsys, "train", "--data", str(tiny_mnist), "--layers", "784,64,10", "--threads", "2",
                           "--no-progress")
    assert status == 0, err
    assert ("trained on" in out) == (usable_threads(2, (784, 64, 10)) < 2)
    status, out, err = run(capsys, "train", "--data", str(tiny_mnist), "--backend", "numpy", "--threads", "2",
                           "--no-progress")
    assert status == 0 and "trained on" not in out, err


def test_fewer_threads_are_said_only_when_asked_for_and_with_the_reason(capsys, tiny_mnist, tmp_path, monkeypatch):
    """A resumed run's --threads 2, from its checkpoint, was quoted as asked; under
    NUMBA_DISABLE_JIT the reason named conditions the run met (audit 47)."""
    from fastmlp import cli

    saved = tmp_path / "m.npz"
    base = ["train", "--data", str(tiny_mnist), "--layers", "784,64,10", "--momentum", "0.9", "--no-progress"]
    status, out, err = run(capsys, *base, "--threads", "2", "--save", str(saved))
    assert status == 0 and "of --threads 2" in out, err
    status, out, err = run(capsys, "train", "--data", str(tiny_mnist), "--resume", str(saved), "--epochs", "2",
                           "--no-progress")
    assert status == 0 and "trained on" not in out, err
    monkeypatch.setattr(cli, "_numba_disabled", lambda: True)
    status, out, err = run(capsys, *base, "--threads", "2")
    assert status == 0 and "of --threads 2: NUMBA_DISABLE_JIT=1 runs the kernels as Python" in out, err


def test_json_reports_the_minibatch_kernels_threads(capsys, tiny_mnist, monkeypatch):
    """Mini-batch training runs on --threads N (at most NUMBA_NUM_THREADS) for any width; --json
    said what the per-sample loop would use (one thread for 16 hidden units, and for "auto")."""
    import numba

    monkeypatch.setenv("FASTMLP_BACKGROUND_COMPILE", "0")  # no interpreted first chunk on one thread
    for threads in ("1", "2"):
        status, out, err = run(capsys, "train", "--data", str(tiny_mnist), "--layers", "784,16,10",
                               "--batch-size", "32", "--threads", threads, "--json")
        assert status == 0, err
        assert json.loads(out)["threads"] == min(int(threads), numba.config.NUMBA_NUM_THREADS)


def test_json_counts_the_rows_that_trained(capsys, tiny_mnist):
    """--validation-fraction holds rows out of training: n_train and a full batch's batch_size
    count what trained (they said 300, the rows loaded), n_validation what was held out."""
    status, out, err = run(capsys, "train", "--data", str(tiny_mnist), "--batch-size", "full",
                           "--validation-fraction", "0.2", "--backend", "numpy", "--json")
    assert status == 0, err
    result = json.loads(out)
    assert (result["n_train"], result["n_validation"], result["batch_size"]) == (240, 60, 240)
    assert result["history"]["samples"] == [240]
    status, out, err = run(capsys, "train", "--data", str(tiny_mnist), "--backend", "numpy", "--json")
    result = json.loads(out)
    assert (result["n_train"], result["n_validation"], result["batch_size"]) == (300, 0, 1)


def test_on_off_flags_reach_the_run(capsys, tiny_mnist):
    # --no-shuffle and --decoupled-weight-decay had no test: the CLI could drop either unnoticed.
    # The run equals the API's with the same options (the CLI's defaults: seed 0, lr 0.1).
    path = tiny_mnist / "run.npz"
    status, out, err = run(
        capsys, "train", "--data", str(tiny_mnist), "--layers", "784,8,10", "--backend", "numpy", "--batch-size", "8",
        "--epochs", "2", "--momentum", "0.5", "--nesterov", "--weight-decay", "0.01", "--decoupled-weight-decay",
        "--no-shuffle", "--no-bias", "--save", str(path), "--json",
    )
    assert status == 0, err
    options = json.loads(out)["fit_options"]
    assert options["shuffle"] is False and options["decoupled_weight_decay"] is True and options["nesterov"] is True
    saved = MLP.load(path)
    assert saved.bias is False
    X, y, _, _ = load_mnist(tiny_mnist, download=False)
    by_api = MLP([784, 8, 10], bias=False, backend="numpy", seed=0)
    by_api.fit(X, y, epochs=2, batch_size=8, momentum=0.5, nesterov=True, weight_decay=0.01,
               decoupled_weight_decay=True, shuffle=False, progress=False)
    np.testing.assert_array_equal(saved.params_, by_api.params_)
    shuffled = MLP([784, 8, 10], bias=False, backend="numpy", seed=0)
    shuffled.fit(X, y, epochs=2, batch_size=8, momentum=0.5, nesterov=True, weight_decay=0.01,
                 decoupled_weight_decay=True, progress=False)
    assert not np.array_equal(saved.params_, shuffled.params_)


# Every on/off flag of every command, and the test that shows it reaching what it switches:
# a flag added without one fails test_every_on_off_flag_has_a_test (the value options have
# BAD_OPTION_VALUES; three train flags once reached nothing, unnoticed).
ON_OFF_FLAG_TESTS = {
    **{("train", flag): "test_cli.py::test_on_off_flags_reach_the_run"
       for flag in ("--nesterov", "--decoupled-weight-decay", "--no-shuffle", "--no-bias")},
    **{(command, flag): "test_cli.py::test_recipe_flags_reach_compare_sweep_and_bench"
       for command, flags in (("compare", ("--nesterov", "--decoupled-weight-decay", "--no-shuffle", "--no-bias")),
                              ("sweep", ("--nesterov", "--decoupled-weight-decay", "--no-shuffle", "--no-bias")),
                              ("bench", ("--nesterov", "--decoupled-weight-decay")))
       for flag in flags},
    ("train", "--json"): "test_cli.py::test_on_off_flags_reach_the_run",
    ("train", "--no-progress"): "test_cli.py::test_no_progress_silences_the_progress_bar",
    ("train", "--distributed"): "test_distributed.py::test_cli_on_two_ranks_prints_and_writes_once_and_resumes",
    ("compare", "--json"): "test_compare.py::test_compare_json_reports_each_epoch_and_agrees",
    ("evaluate", "--json"): "test_evaluate_predict.py::test_evaluate_reports_what_the_model_computes",
    ("predict", "--proba"): "test_evaluate_predict.py::test_predict_labels_and_probabilities_from_npy",
    ("warmup", "--json"): "test_cli.py::test_warmup_compiles_what_training_needs",
    ("warmup", "--distributed"): "test_cli.py::test_warmup_compiles_the_distributed_kernels_too",
    ("sweep", "--json"): "test_sweep.py::test_cli_json_and_csv",
    ("bench", "--json"): "test_bench_cli.py::test_optimizer_options_time_both_backends_with_that_optimizer",
    ("bench", "--quick"): "test_bench_cli.py::test_quick_selects_a_small_subset_and_explicit_options_win",
    ("bench", "--progress"): "test_bench_cli.py::test_progress_goes_to_stderr_only_when_asked",
    ("bench", "--no-progress"): "test_bench_cli.py::test_progress_goes_to_stderr_only_when_asked",
}


def test_every_on_off_flag_has_a_test():
    from fastmlp.cli import build_parser

    (commands,) = [action for action in build_parser()._actions if action.choices and action.dest == "command"]
    flags = {(command, action.option_strings[-1]) for command, parser in commands.choices.items()
             for action in parser._actions if action.option_strings and action.nargs == 0}
    flags = {(command, flag) for command, flag in flags if flag != "--help"}
    assert flags - ON_OFF_FLAG_TESTS.keys() == set(), "on/off flags without a test in ON_OFF_FLAG_TESTS"
    assert ON_OFF_FLAG_TESTS.keys() - flags == set(), "ON_OFF_FLAG_TESTS names flags the CLI no longer has"
    for where in set(ON_OFF_FLAG_TESTS.values()):
        module, name = where.split("::")
        source = (Path(__file__).parent / module).read_text()
        assert re.search(rf"^def {name}\(", source, re.MULTILINE), f"{where} does not exist"


@pytest.mark.parametrize("command", ["compare", "sweep", "bench"])
def test_recipe_flags_reach_compare_sweep_and_bench(capsys, tiny_mnist, monkeypatch, command):
    """What each command hands on to its training has the flags' settings, and not without them."""
    from fastmlp import compare, sweeps
    from fastmlp.bench import plan as bench_plan

    flags = {"--nesterov": ("nesterov", True), "--decoupled-weight-decay": ("decoupled_weight_decay", True),
             "--no-shuffle": ("shuffle", False), "--no-bias": ("bias", False)}
    if command == "bench":
        flags = {flag: flags[flag] for flag in ("--nesterov", "--decoupled-weight-decay")}
    recipe = ["--momentum", "0.5", "--weight-decay", "0.01"]

    def handed_on(*argv):
        """The settings one run of ``fastmlp COMMAND RECIPE ARGV`` trains with."""
        if command == "bench":
            options = bench_plan.plan_from_args(_bench_args(*recipe, *argv)).optimizer.as_dict()
            return options
        seen = {}
        if command == "compare":
            def fake(make, *args, fit_kwargs, **kwargs):
                seen.update(fit_kwargs, bias=make("numpy").bias)
                return {"agree": True, "epochs": []}
            monkeypatch.setattr(compare, "compare_backends", fake)
            argv = ("--json", *argv)
        else:
            def fake(trials, source, **kwargs):
                seen.update(trials[0])
                return sweeps.SweepResult(trials=[], swept=kwargs["swept"], executor="test")
            monkeypatch.setattr(sweeps, "run_trials", fake)
            argv = ("--grid", "lr=0.1", *argv)
        main([command, "--data", str(tiny_mnist), *recipe, *argv])  # (a sweep of no records: status 1)
        assert seen, capsys.readouterr().err
        return seen

    plain = handed_on()
    for flag, (name, value) in flags.items():
        assert plain[name] is (not value), (command, name)
        assert handed_on(flag)[name] is value, (command, flag)


def test_no_progress_silences_the_progress_bar(capsys, tiny_mnist, monkeypatch):
    argv = ["train", "--data", str(tiny_mnist), "--layers", "784,8,10", "--backend", "numpy", "--epochs", "2"]
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)  # as on a terminal
    status, out, err = run(capsys, *argv)
    assert status == 0 and "epoch 2/2" in err, err
    status, out, err = run(capsys, *argv, "--no-progress")
    assert status == 0 and err == "" and "test accuracy" in out


def _bench_args(*argv):
    from fastmlp._cli_options import Parser
    from fastmlp.bench import add_parser

    parser = Parser(prog="fastmlp")
    add_parser(parser.add_subparsers(dest="command", parser_class=Parser))
    return parser.parse_args(["bench", *argv])


def test_recipe_options_reach_the_run_and_the_report(capsys, tiny_mnist):
    status, out, err = run(
        capsys, "train", "--data", str(tiny_mnist), "--layers", "784,16,10", "--backend", "numpy", "--batch-size", "8",
        "--epochs", "6", "--lr", "0.5", "--optimizer", "sgd", "--momentum", "0.9", "--nesterov", "--weight-decay", "1e-4",
        "--dropout", "0.1", "--lr-schedule", "invscaling", "--power-t", "0.1", "--warmup-epochs", "1",
        "--validation-fraction", "0.2", "--early-stopping", "2", "--tol", "0.5", "--json",
    )
    assert status == 0, err
    result = json.loads(out)
    options = result["fit_options"]
    assert options["momentum"] == 0.9 and options["nesterov"] is True and options["dropout"] == 0.1
    assert options["lr_schedule"] == "invscaling" and options["power_t"] == 0.1 and options["warmup_epochs"] == 1
    history = result["history"]
    assert history["samples"][0] == 240 and len(history["val_loss"]) == len(history["epoch"])
    assert history["lr"][0] == pytest.approx(0.5 / 2) and history["lr"][1] == pytest.approx(0.5 / 241**0.1)
    # tol 0.5 is more than any epoch improves by after the first: patience 2 runs out at epoch 3
    assert result["stop_reason"] == "early stopping: no improvement of val_loss by more than tol=0.5 for 2 epochs"
    assert result["stopped_epoch"] == result["epochs_trained"] == 3 and result["best_epoch"] >= 1
    assert result["samples_per_second"] == pytest.approx(240 * 3 / result["seconds"])


def test_the_readme_names_every_field_of_train_json(capsys, tiny_mnist, tmp_path):
    # ten fields were printed that the README's list left out
    status, out, err = run(capsys, "train", "--data", str(tiny_mnist), "--layers", "784,8,10", "--backend", "numpy",
                           "--save", str(tmp_path / "m.npz"), "--json")
    assert status == 0, err
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    described = readme[readme.index("`fastmlp train --json` prints"):][:3000]
    assert [field for field in json.loads(out) if f"`{field}`" not in described] == []


def test_the_readme_names_every_option_of_every_command():
    # twelve of fastmlp bench's options, predict's --output and --version were in --help only (audit 27)
    import argparse

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    missing = [
        f"{name} {option}"
        for name, command in [("fastmlp", parser), *commands.items()]
        for action in command._actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help" and not re.search(re.escape(option) + r"(?![\w-])", readme)
    ]
    assert len(commands) >= 7 and missing == []


@pytest.mark.parametrize("resumed", [False, True], ids=["run", "resumed"])
def test_the_report_scores_the_epoch_whose_weights_early_stopping_kept(capsys, tiny_mnist, tmp_path, resumed):
    # train_loss and val_loss were the last epoch's while the model (and test_*) had the best one's
    base = ["train", "--data", str(tiny_mnist), "--layers", "784,16,10", "--backend", "numpy", "--batch-size", "8",
            "--lr", "50", "--validation-fraction", "0.2", "--early-stopping", "2", "--tol", "0"]  # (too high: it rises)
    if resumed:
        status, _, err = run(capsys, *base, "--epochs", "1", "--save", str(tmp_path / "one.npz"))
        assert status == 0, err
        base = ["train", "--data", str(tiny_mnist), "--resume", str(tmp_path / "one.npz")]
    status, out, err = run(capsys, *base, "--epochs", "6", "--json")
    assert status == 0, err
    result, history = json.loads(out), json.loads(out)["history"]
    assert result["best_epoch"] < result["stopped_epoch"] < 6
    best = history["epoch"].index(result["best_epoch"])
    assert result["val_loss"] == history["val_loss"][best] != history["val_loss"][-1]
    assert result["train_loss"] == history["loss"][best] and result["val_accuracy"] == history["val_accuracy"][best]
    status, out, err = run(capsys, *base, "--epochs", "6")
    assert f"keeping the weights of epoch {result['best_epoch']}, the best val_loss" in out


def _interrupt_numpy_training_in_epoch(monkeypatch, epoch):
    """Ctrl-C in the given epoch of a per-sample run on tiny_mnist (one chunk per epoch)."""
    from fastmlp.backends import NumpyBackend

    real = NumpyBackend.train_chunk
    calls = []

    def train_chunk(self, *args):
        calls.append(1)
        if len(calls) == epoch:
            raise KeyboardInterrupt
        return real(self, *args)

    monkeypatch.setattr(NumpyBackend, "train_chunk", train_chunk)
    return lambda: monkeypatch.setattr(NumpyBackend, "train_chunk", real)


@pytest.mark.parametrize("before", [None, b"another run's file"], ids=["new", "existing"])
def test_an_interrupted_run_without_checkpoints_says_save_was_not_written(capsys, tiny_mnist, tmp_path, monkeypatch,
                                                                          before):
    """Audit 78: a run without --checkpoint-every stopped before (or inside) its end's --save said
    only "stopped by Ctrl-C": not that the file was not written, nor that an old one there is
    not this run's."""
    save = tmp_path / "model.npz"
    if before is not None:
        save.write_bytes(before)
    _interrupt_numpy_training_in_epoch(monkeypatch, 2)
    status, out, err = run(capsys, "train", "--data", str(tiny_mnist), "--layers", "784,8,10", "--backend", "numpy",
                           "--epochs", "3", "--save", str(save))
    assert status == 130
    said = f"; {save} was not written" + (" (it holds what it held before this run)" if before else "")
    assert err.splitlines()[-1].endswith(said), err
    assert (save.read_bytes() == before) if before else not save.exists()


def test_sigterm_in_training_exits_143_and_keeps_the_checkpoints(capsys, tiny_mnist, tmp_path, monkeypatch):
    # a batch system's time-out sends SIGTERM: handled as Ctrl-C, with the status a shell reports
    from fastmlp.backends import NumpyBackend

    real, calls = NumpyBackend.train_chunk, []

    def train_chunk(self, *args):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler interrupts this
        return real(self, *args)

    monkeypatch.setattr(NumpyBackend, "train_chunk", train_chunk)
    before = signal.getsignal(signal.SIGTERM)
    status, out, err = run(capsys, "train", "--data", str(tiny_mnist), "--layers", "784,16,10", "--backend", "numpy",
                           "--epochs", "3", "--save", str(tmp_path / "run.npz"), "--checkpoint-every", "1")
    assert status == 143, err
    assert "interrupted" in err and "SIGTERM" in err and "Traceback" not in err
    assert MLP.load(tmp_path / "run.npz").epochs_trained_ == 1
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_after_the_work_is_done_is_one_line_and_its_status(capsys, tiny_mnist, tmp_path, monkeypatch,
                                                                    signum, status):
    # a Ctrl-C (an impatient second one) or SIGTERM as train ended, in main's last flush: a
    # traceback, and status 1 for the SIGTERM (audit 31)
    class Stdout:
        def __init__(self, real):
            self.real = real

        def flush(self):
            self.real.flush()
            os.kill(os.getpid(), signum)
            time.sleep(5)  # the handler interrupts this

        def __getattr__(self, name):
            return getattr(self.real, name)

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # (a suite started with & ignores it)
    try:
        real = cli._main

        def main_then_flushed(argv):
            result = real(argv)
            monkeypatch.setattr(sys, "stdout", Stdout(sys.stdout))
            return result

        monkeypatch.setattr(cli, "_main", main_then_flushed)
        done, out, err = run(capsys, "train", "--data", str(tiny_mnist), "--layers", "784,16,10", "--backend", "numpy",
                             "--epochs", "1", "--save", str(tmp_path / "run.npz"))
    except KeyboardInterrupt as escaped:  # (let through, it would end the test session)
        pytest.fail(f"the signal's exception escaped main: {escaped!r}")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert done == status and "Traceback" not in err
    assert err.splitlines()[-1] == f"fastmlp: interrupted: stopped by {'SIGTERM' if status == 143 else 'Ctrl-C'}"
    assert MLP.load(tmp_path / "run.npz").epochs_trained_ == 1


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt(), cli.Terminated()])
def test_a_sigterm_outside_training_is_said_once(capsys, monkeypatch, interrupt):
    # a SIGTERM during `fastmlp warmup` (a fit's interrupt, no Terminated) said "stopped by SIGTERM
    # (SIGTERM)" (audit 61)
    from fastmlp import _prewarm

    monkeypatch.setattr(_prewarm, "_stopping_at_exit", [])  # (what the handler's stop_at_exit adds)
    monkeypatch.setattr(cli, "_signalled", [])  # (left empty after the test, as main leaves it)

    def terminated(args):
        cli._signalled.append(signal.SIGTERM)
        raise interrupt

    monkeypatch.setattr(cli, "_warmup", terminated)
    status, out, err = run(capsys, "warmup")
    assert status == 143 and out == ""
    assert err == "fastmlp: interrupted: stopped by SIGTERM\n", err


def test_sigterm_while_saving_leaves_no_file_behind(capsys, tiny_mnist, tmp_path, monkeypatch):
    import fastmlp.checkpoint

    def savez(f, **arrays):
        f.write(b"PK" + b"\0" * 1000)  # part of the archive written
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)

    monkeypatch.setattr(fastmlp.checkpoint.np, "savez", savez)
    status, out, err = run(capsys, "train", "--data", str(tiny_mnist), "--layers", "784,16,10", "--backend", "numpy",
                           "--epochs", "1", "--save", str(tmp_path / "run.npz"))
    assert status == 143, err
    assert sorted(path.name for path in tmp_path.iterdir() if not path.name.endswith("-ubyte.gz")) == []


RECIPE = ["--layers", "784,16,10", "--backend", "numpy", "--momentum", "0.9", "--dropout", "0.2", "--weight-decay", "1e-3",
          "--lr", "0.05", "--lr-schedule", "cosine", "--validation-fraction", "0.2", "--early-stopping", "5"]


def test_a_run_killed_in_epoch_2_resumes_from_its_checkpoint_to_the_same_file(capsys, tiny_mnist, tmp_path, monkeypatch):
    status, _, err = run(capsys, "train", "--data", str(tiny_mnist), *RECIPE, "--epochs", "3", "--save", str(tmp_path / "whole.npz"))
    assert status == 0, err

    checkpoint = tmp_path / "run.npz"
    restore = _interrupt_numpy_training_in_epoch(monkeypatch, 2)
    status, out, err = run(capsys, "train", "--data", str(tiny_mnist), *RECIPE, "--epochs", "3", "--save", str(checkpoint),
                           "--checkpoint-every", "1")
    assert status == 130 and "interrupted at the start of epoch 2, before its first sample" in err
    # what the user has is the file, not a model in memory; and epoch 1's line was printed as it
    # ended (the lines came after fit returned: an interrupted run printed none)
    assert err.rstrip("\n").endswith(f"; {checkpoint} holds the run after epoch 1 (go on with --resume {checkpoint})")
    assert "model holds" not in err and "epoch 1: lr" in out and "epoch 2: lr" not in out
    restore()
    assert fastmlp_load(checkpoint).epochs_trained_ == 1

    resumed = tmp_path / "resumed.npz"
    status, out, err = run(capsys, "train", "--data", str(tiny_mnist), "--resume", str(checkpoint), "--save", str(resumed))
    assert status == 0, err
    assert "resuming" in out and "after epoch 1 of 3" in out
    assert "epoch 1:" not in out and "epoch 2:" in out and "epoch 3:" in out
    assert resumed.read_bytes() == (tmp_path / "whole.npz").read_bytes()


@pytest.mark.parametrize("stopping", [["--validation-fraction", "0.2", "--early-stopping", "3", "--tol", "0"], []],
                         ids=["early stopping", "plain"])
def test_resume_whose_epochs_end_the_run_at_its_checkpoint_writes_the_shorter_runs_file(capsys, tiny_mnist, tmp_path,
                                                                                         monkeypatch, stopping):
    # a checkpoint after epoch 3 of a 6-epoch run, resumed with --epochs 3: nothing left to train,
    # and the file it writes must be the uninterrupted 3-epoch run's; it said it kept the best
    # epoch's weights and wrote the last's, with the longer run's horizon (audit 67)
    recipe = ["train", "--data", str(tiny_mnist), "--layers", "784,16,10", "--backend", "numpy", "--lr", "10", *stopping]
    status, out, err = run(capsys, *recipe, "--epochs", "3", "--save", str(tmp_path / "short.npz"), "--json")
    assert status == 0, err
    if stopping:
        assert json.loads(out)["best_epoch"] < 3  # (the case: the best epoch is not the last)
    restore = _interrupt_numpy_training_in_epoch(monkeypatch, 4)
    status, _, err = run(capsys, *recipe, "--epochs", "6", "--save", str(tmp_path / "long.npz"), "--checkpoint-every", "1")
    assert status == 130, err
    restore()
    status, out, err = run(capsys, "train", "--data", str(tiny_mnist), "--resume", str(tmp_path / "long.npz"), "--epochs",
                           "3", "--save", str(tmp_path / "resumed.npz"))
    assert status == 0, err
    assert "nothing is left to train" in err
    assert (tmp_path / "resumed.npz").read_bytes() == (tmp_path / "short.npz").read_bytes()


def test_resume_of_a_file_saved_part_way_into_an_epoch_says_so(capsys, tiny_mnist, tmp_path, monkeypatch):
    # MLP.save warns of such a file (format 3) when it writes it, maybe in another process; a
    # resume said nothing and wrote an unmarked file of a run not the uninterrupted one's (audit 67)
    import fastmlp
    from fastmlp import MLP, trainer

    X, y, _, _ = fastmlp.load_mnist(tiny_mnist)
    chunks = trainer.chunk_bounds
    monkeypatch.setattr(trainer, "chunk_bounds", lambda n, batch: chunks(n, batch, chunk_samples=100))
    model = MLP([784, 16, 10], backend="numpy", seed=0)
    model.fit(X, y, epochs=1, schedule_epochs=3, progress=False)
    real, calls = model.backend_.train_chunk, []

    def train_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    model.backend_.train_chunk = train_chunk
    with pytest.raises(fastmlp.TrainingInterrupted):
        model.partial_fit(X, y, epochs=1, progress=False)
    with pytest.warns(fastmlp.InterruptedRunWarning):
        model.save(tmp_path / "part.npz")
    monkeypatch.setattr(trainer, "chunk_bounds", chunks)
    status, out, err = run(capsys, "train", "--data", str(tiny_mnist), "--resume", str(tmp_path / "part.npz"))
    assert status == 0, err
    assert (f"fastmlp: warning: {tmp_path / 'part.npz'} holds weights 100 samples into epoch 2, where its run's training "
            f"was interrupted (the run counts 1 epoch): going on from it starts epoch 2 anew from those weights, not as "
            f"the uninterrupted run would have") in err
    assert "after epoch 1 of 3" in out


def fastmlp_load(path):
    from fastmlp import MLP

    return MLP.load(path)


def test_resuming_with_a_larger_total_equals_the_longer_run(capsys, tiny_mnist, tmp_path):
    recipe = ["--data", str(tiny_mnist), "--layers", "784,16,10", "--backend", "numpy", "--batch-size", "4", "--momentum",
              "0.9", "--lr-schedule", "exponential", "--lr-decay", "0.7", "--warmup-epochs", "1"]
    assert run(capsys, "train", *recipe, "--epochs", "3", "--save", str(tmp_path / "long.npz"))[0] == 0
    assert run(capsys, "train", *recipe, "--epochs", "1", "--save", str(tmp_path / "short.npz"))[0] == 0
    status, out, err = run(capsys, "train", "--data", str(tiny_mnist), "--resume", str(tmp_path / "short.npz"), "--epochs",
                           "3", "--lr", "0.1", "--momentum", "0.9", "--save", str(tmp_path / "resumed.npz"), "--json")
    assert status == 0, err
    result = json.loads(out)
    assert result["resumed_after_epoch"] == 1 and result["epochs_trained"] == 3 and result["history"]["epoch"] == [1, 2, 3]
    assert result["history"]["seconds"][0] is None and result["history"]["seconds"][1] > 0
    assert result["samples_per_second"] == pytest.approx(600 / result["seconds"])
    assert (tmp_path / "resumed.npz").read_bytes() == (tmp_path / "long.npz").read_bytes()


def test_the_step_schedule_decays_every_lr_step_epochs(capsys, tiny_mnist):
    status, out, err = run(capsys, "train", "--data", str(tiny_mnist), "--layers", "784,16,10", "--backend", "numpy",
                           "--epochs", "3", "--lr", "0.4", "--lr-schedule", "step", "--lr-decay", "0.5",
                           "--lr-step-epochs", "1", "--json")
    assert status == 0, err
    assert json.loads(out)["history"]["lr"] == pytest.approx([0.4, 0.2, 0.1])


@pytest.fixture
def checkpoints(capsys, tiny_mnist, tmp_path_factory):
    """Checkpoints of short runs (1 epoch done; cosine: 1 of 3, killed in epoch 2), of a run
    early stopping ended, and a weights-only file of fastmlp 0.1."""
    folder = tmp_path_factory.mktemp("checkpoints")
    base = ["train", "--data", str(tiny_mnist), "--layers", "784,16,10", "--backend", "numpy"]
    runs = {
        "plain": ["--epochs", "1"],
        "constant": ["--epochs", "1", "--momentum", "0.5"],
        "cosine": ["--epochs", "3", "--momentum", "0.5", "--lr-schedule", "cosine", "--checkpoint-every", "1"],
        "stopped": ["--epochs", "3", "--momentum", "0.5", "--early-stopping", "1", "--tol", "100"],
        "cosine-done": ["--epochs", "1", "--momentum", "0.5", "--lr-schedule", "cosine"],
    }
    for name, extra in runs.items():
        with pytest.MonkeyPatch.context() as patch:
            if name == "cosine":
                _interrupt_numpy_training_in_epoch(patch, 2)
            status, _, err = run(capsys, *base, *extra, "--save", str(folder / f"{name}.npz"))
        assert status == (130 if name == "cosine" else 0), err
    model = fastmlp_load(folder / "constant.npz")
    config = {**model.get_params(), "layers": [784, 16, 10]}
    np.savez(folder / "weights-only.npz", params=model.params_, config=np.array(json.dumps(config)))
    (folder / "garbage.npz").write_bytes(b"not a zip")
    rng = np.random.default_rng(0)
    X, y = rng.integers(0, 256, (40, 784), dtype=np.uint8), rng.integers(0, 10, 40)
    api = MLP([784, 16, 10], backend="numpy")
    api.fit(X, y, epochs=1, validation_data=(X[:10], y[:10]), early_stopping=3, progress=False)
    api.save(folder / "api-validation.npz")
    weighted = MLP([784, 16, 10], backend="numpy")
    weighted.fit(X, y, epochs=1, sample_weight=np.linspace(1, 2, len(X)), progress=False)
    weighted.save(folder / "api-weighted.npz")
    return folder


@pytest.mark.parametrize(
    "file, argv, status, words",
    [
        ("constant", ["--layers", "784,32,10"], 2, "--layers 784,32,10 differs from the checkpoint's 784,16,10"),
        ("constant", ["--lr", "0.5"], 2, "--lr 0.5 differs from the checkpoint's 0.1; a resumed run keeps its options (leave --lr out)"),
        ("constant", ["--momentum", "0.9"], 2, "--momentum 0.9 differs from the checkpoint's 0.5"),
        ("constant", ["--optimizer", "adam"], 2, "--optimizer adam differs from the checkpoint's sgd"),
        ("constant", ["--lr-schedule", "cosine"], 2, "--lr-schedule cosine differs from the checkpoint's constant"),
        ("constant", ["--batch-size", "full"], 2, "--batch-size full differs from the checkpoint's 1"),  # (was "none")
        ("constant", ["--seed", "3"], 2, "--seed 3 differs"),
        ("constant", ["--no-bias"], 2, "--no-bias differs from the checkpoint's run, which was trained without it"),
        ("constant", ["--validation-fraction", "0.1"], 2, "--validation-fraction 0.1 differs from the checkpoint's none"),
        ("constant", ["--epochs", "2", "--limit", "200"], 1, "trained on other data (300 samples"),
        ("cosine", ["--epochs", "5"], 2, "--epochs 5 differs from the 3 epochs the checkpoint's cosine schedule anneals over"),
        # a finished cosine run: one message, not "resume with --epochs 1" then "pass a larger --epochs"
        ("cosine-done", ["--epochs", "3"], 2, "cosine schedule has annealed over all 1 epoch of its run (the --epochs it was started with), so the run is complete and cannot be extended"),
        ("stopped", ["--epochs", "9"], 2, "already stopped after epoch 2 (early stopping: no improvement of loss"),
        ("stopped", ["--epochs", "1"], 2, "already stopped after epoch 2 (early stopping: no improvement of loss"),
        ("weights-only", ["--epochs", "2"], 2, "holds weights but no run to resume"),
        ("garbage", ["--epochs", "2"], 1, "not a fastmlp checkpoint"),
        ("api-validation", ["--epochs", "3"], 2, "watched the loss on validation_data given to fit() in Python"),
        # (it went on without them, silently)
        ("api-weighted", ["--epochs", "3"], 1, "the checkpoint's run trained with sample weights, which the command line cannot give"),
    ],
)
def test_resume_refuses_what_would_not_continue_the_run(capsys, tiny_mnist, checkpoints, file, argv, status, words):
    got, out, err = run(capsys, "train", "--data", str(tiny_mnist), "--resume", str(checkpoints / f"{file}.npz"), *argv)
    assert got == status and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert words in err


@pytest.mark.parametrize("file, argv", [("constant", ["--epochs", "1"]), ("constant", []), ("cosine-done", []),
                                        ("stopped", []), ("stopped", ["--epochs", "3"]), ("validated", [])])
def test_resuming_a_finished_run_trains_nothing_and_reports_it(capsys, tiny_mnist, checkpoints, tmp_path, file, argv):
    # a requeued batch job's line again, after a time-out that came once the run's last checkpoint
    # was written: the job is done (it was status 2, "nothing is left to train", a job failed for good)
    if file == "validated":  # (its validation data came from Python: a run to go on with is refused)
        X, y, X_test, y_test = load_mnist(tiny_mnist)
        model = MLP([784, 8, 10], backend="numpy")
        model.fit(X, y, epochs=1, validation_data=(X_test, y_test), early_stopping=3, progress=False)
        model.save(tmp_path / f"{file}.npz")
    source = (tmp_path if file == "validated" else checkpoints) / f"{file}.npz"
    finished = MLP.load(source)
    (tmp_path / "run.npz").write_bytes(source.read_bytes())
    status, out, err = run(capsys, "train", "--data", str(tiny_mnist), "--resume", str(tmp_path / "run.npz"), *argv,
                           "--save", str(tmp_path / "run.npz"), "--json")
    assert status == 0, err
    assert err == f"fastmlp: note: {tmp_path / 'run.npz'} holds the whole run ({finished.epochs_trained_} epoch" + (
        "s" if finished.epochs_trained_ != 1 else "") + (", stopped early" if file == "stopped" else "") + \
        "): nothing is left to train\n"
    result = json.loads(out)
    assert result["epochs_trained"] == result["resumed_after_epoch"] == result["epochs"] == finished.epochs_trained_
    assert result["seconds"] == 0 and result["samples_per_second"] is None
    assert result["stop_reason"] == finished.history_.stop_reason and result["test_accuracy"] > 0
    kept = MLP.load(tmp_path / "run.npz")
    assert all(np.array_equal(a, b) for a, b in zip(kept.params_, finished.params_))
    assert kept.history_.epoch == finished.history_.epoch


def test_resuming_a_run_killed_after_its_last_checkpoint_records_its_end(capsys, tiny_mnist, checkpoints, tmp_path):
    # the last epoch's checkpoint is written before the run's end is recorded (stopped_epoch,
    # stop_reason): a run killed between the two is finished by the requeued line, and says so
    model = MLP.load(checkpoints / "constant.npz")
    model.history_.stopped_epoch = model.history_.stop_reason = model.history_.best_epoch = None
    model.save(tmp_path / "run.npz")
    status, out, err = run(capsys, "train", "--data", str(tiny_mnist), "--resume", str(tmp_path / "run.npz"),
                           "--save", str(tmp_path / "run.npz"))
    assert status == 0 and "nothing is left to train" in err
    assert out.startswith("test accuracy ") and "nothing trained in this run\nsaved model to " in out
    finished = MLP.load(tmp_path / "run.npz").history_
    assert (finished.stopped_epoch, finished.stop_reason, finished.best_epoch) == (1, "max epochs", 1)


def test_resuming_a_run_validated_in_python_trains_saves_and_reports(capsys, tiny_mnist, tmp_path):
    # fit(validation_data=...) in Python, resumed on the command line (which has no validation
    # data): the new epochs have no validation values; it crashed after training (IndexError),
    # before --save
    X, y, X_test, y_test = load_mnist(tiny_mnist)
    model = MLP([784, 8, 10], backend="numpy")
    model.fit(X, y, epochs=1, schedule_epochs=3, batch_size=16, validation_data=(X_test, y_test), progress=False)
    model.save(tmp_path / "validated.npz")
    status, out, err = run(capsys, "train", "--data", str(tiny_mnist), "--resume", str(tmp_path / "validated.npz"),
                           "--save", str(tmp_path / "resumed.npz"))
    assert status == 0, err
    assert "epoch 3:" in out and "val loss" not in out.split("epoch 2:")[1]
    resumed = MLP.load(tmp_path / "resumed.npz")
    assert resumed.history_.epoch == [1, 2, 3]
    assert resumed.history_.val_loss[0] is not None and resumed.history_.val_loss[1:] == [None, None]


def test_resume_accepts_options_equal_to_the_checkpoints(capsys, tiny_mnist, checkpoints):
    status, out, err = run(capsys, "train", "--data", str(tiny_mnist), "--resume", str(checkpoints / "cosine.npz"),
                           "--lr", "0.1", "--momentum", "0.5", "--layers", "784,16,10", "--lr-schedule", "cosine", "--json")
    assert status == 0, err
    result = json.loads(out)
    assert result["epochs"] == 3 and result["history"]["epoch"] == [1, 2, 3] and result["backend"] == "numpy"
    assert result["fit_options"]["momentum"] == 0.5


def test_resume_may_change_the_backend_and_threads(capsys, tiny_mnist, checkpoints):
    status, out, err = run(capsys, "train", "--data", str(tiny_mnist), "--resume", str(checkpoints / "plain.npz"),
                           "--epochs", "2", "--backend", "numba", "--threads", "2", "--json")
    assert status == 0, err
    result = json.loads(out)
    assert result["backend"] == "numba" and result["threads"] == 1 and result["history"]["epoch"] == [1, 2]


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--epochs", "3", "--checkpoint-every", "3"], "--checkpoint-every 3 writes no checkpoint in a run of 3 epochs"),
        (["--checkpoint-every", "2"], "--checkpoint-every 2 writes no checkpoint in a run of 1 epoch "),
        # a resumed run is the same line again after a time-out, whose last checkpoint may be the
        # last before the end: it was refused, and a requeued job failed for good (audit 24)
        (["--resume", "plain.npz", "--epochs", "2", "--checkpoint-every", "1"], None),
        (["--resume", "plain.npz", "--epochs", "3", "--checkpoint-every", "3"], None),
        (["--resume", "plain.npz", "--epochs", "4", "--checkpoint-every", "3"], None),  # after epoch 3
        (["--resume", "plain.npz", "--epochs", "3", "--checkpoint-every", "2"], None),  # written after epoch 2
        (["--epochs", "3", "--checkpoint-every", "2"], None),
    ],
)
def test_checkpoint_every_that_writes_nothing_is_refused(capsys, tiny_mnist, checkpoints, tmp_path, argv, words):
    # (was silent: the only file written was --save's at the end)
    argv = [str(checkpoints / arg) if arg.endswith(".npz") else arg for arg in argv]
    status, out, err = run(capsys, "train", "--data", str(tiny_mnist), *argv, "--save", str(tmp_path / "run.npz"))
    if words is None:
        assert status == 0, err
    else:
        assert status == 2 and out == "" and err.count("\n") == 1 and words in err


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--checkpoint-every", "2"], "--checkpoint-every needs --save FILE"),
        (["--nesterov"], "--nesterov needs a momentum"),
        (["--optimizer", "adam", "--momentum", "0.9"], "momentum applies to --optimizer sgd"),
        (["--optimizer", "adam", "--nesterov", "--momentum", "0.5"], "Nesterov"),
        (["--lr-decay", "2"], "--lr-decay must be in (0, 1]"),
    ],
)
def test_recipe_combinations_are_refused_before_the_data_is_read(capsys, tmp_path, argv, words):
    status, out, err = run(capsys, "train", "--data", str(tmp_path), *argv)  # no MNIST there: a late check would say so
    assert status == 2 and out == "" and err.count("\n") == 1
    assert words in err


def test_warmup_compiles_what_training_needs(capsys):
    from fastmlp import kernels

    status, out, err = run(capsys, "warmup", "--dtype", "float64", "--batch-size", "1,8,full", "--inputs", "float", "--json")
    assert status == 0, err
    warmed = json.loads(out)["warmed"]
    # `train --threads 2` runs per-sample SGD on the two-thread kernel where there are two cores
    two_threads = kernels.usable_threads(2, (16, 32, 4)) == 2
    assert [w["kernels"] for w in warmed] == [  # full, which train takes, as train runs it
        "float64 float inputs, per-sample SGD",
        *["float64 float inputs, per-sample SGD on two threads"] * two_threads,
        "float64 float inputs, per-sample SGD with an optimizer",
        "float64 float inputs, mini-batch", "float64 float inputs, full-batch (the mini-batch kernels)",
    ]
    if not numba.config.DISABLE_JIT:  # the dispatchers hold the float64 versions now
        from fastmlp.kernels import sgd

        warmed_kernels = [kernels.sgd_persample_chunk, kernels.persample_chunk, kernels.minibatch_sgd_chunk]
        for kernel in warmed_kernels:
            assert any(signature[0].dtype == numba.float64 for signature in kernel.signatures), kernel
        if two_threads:  # its arguments: a thread's stats (always float64), then its block of W1
            assert any(signature[1].dtype == numba.float64 for signature in sgd._split_hidden_worker.signatures)


def test_warmup_starts_the_mini_batch_compile_ahead_of_the_per_sample_fits(capsys, monkeypatch):
    # The parallel mini-batch kernel compiles longest: on a cold cache its second process starts
    # before this process's per-sample fits (which it compiles beside them), a combination ahead
    import fastmlp._prewarm

    events = []
    # (that the second combination's process starts though this process holds the kernel for the
    # first's types: the warm-up job in tests/test_prewarm.py, which counts what it loads)
    monkeypatch.setattr(fastmlp._prewarm, "start", lambda plan, dtype, values: events.append((plan, dtype, values)))
    monkeypatch.setattr(MLP, "fit", lambda self, X, y, batch_size, **_: events.append(("fit", self.dtype, batch_size)))
    monkeypatch.setattr(MLP, "predict", lambda self, X: None)
    status, out, err = run(capsys, "warmup", "--dtype", "float32,float64", "--batch-size", "1,32", "--inputs", "float",
                           "--json")
    assert status == 0, err
    fits = [event for event in events if event[0] == "fit"]
    per_sample = len(fits) // 2 - 1  # each dtype's per-sample fits, then its mini-batch one
    assert per_sample >= 2 and [fit[2] for fit in fits] == ([1] * per_sample + [32]) * 2, fits
    started = [index for index, event in enumerate(events) if event[0] == "mini-batch"]
    assert [events[index] for index in started] == [("mini-batch", "float32", "float32"), ("mini-batch", "float64", "float64")]
    # float32's before any fit; float64's once float32's mini-batch fit is done, before float64's fits
    assert started[0] == 0 and events[started[1] - 1] == ("fit", "float32", 32), events
    assert all(event[1] == "float64" for event in events[started[1] + 1:]), events
    # per-sample alone: nothing started ahead
    events.clear()
    assert run(capsys, "warmup", "--batch-size", "1")[0] == 0
    assert events and all(event[0] == "fit" for event in events), events


def test_warmup_compiles_the_distributed_kernels_too(capsys):
    pytest.importorskip("mpi4py", reason="fastmlp[mpi] is not installed")
    from fastmlp import kernels

    status, out, err = run(capsys, "warmup", "--batch-size", "8", "--distributed", "--json")
    assert status == 0, err
    warmed = [w["kernels"] for w in json.loads(out)["warmed"]]
    assert warmed == ["float32 uint8 inputs, mini-batch", "float32 uint8 inputs, distributed mini-batch"]
    if not numba.config.DISABLE_JIT:
        for kernel in (kernels.batch_gradient, kernels.gradient_step):
            assert any(signature[0].dtype == numba.float32 for signature in kernel.signatures), kernel


@pytest.mark.parametrize("command, option, value", [
    ("warmup", "--batch-size", "-1,32"), ("bench", "--batch-sizes", "-1,32"), ("bench", "--layers", "-784,10"),
    ("train", "--layers", "-784,128,10"), ("train", "--lr", "-1e-3"),
])
def test_a_negative_value_as_its_own_argument_is_turned_down_by_its_option(capsys, tmp_path, command, option, value):
    # argparse took "-1,32" for an option flag: "expected one argument", not what is wrong with it
    data = [] if command == "warmup" else [f"--data={tmp_path}"]
    status, out, err = run(capsys, command, *data, option, value)
    assert status == 2 and out == "" and err.count("\n") == 1, err
    assert option in err and "expected one argument" not in err and ("must be" in err or "every size" in err), err


def test_a_combination_of_options_is_turned_down_in_the_options_names(capsys, tmp_path):
    # the model's check says nesterov=True and momentum=0: on the command line, --nesterov and --momentum 0
    status, out, err = run(capsys, "train", f"--data={tmp_path}", "--nesterov")
    assert status == 2 and out == "" and err.count("\n") == 1, err
    assert "--nesterov needs a momentum" in err and "--momentum 0" in err and "=" not in err.split("error: ")[1], err
    status, out, err = run(capsys, "train", f"--data={tmp_path}", "--optimizer", "adam", "--nesterov")
    assert status == 2 and "--optimizer sgd" in err and "optimizer=" not in err, err
    status, out, err = run(capsys, "compare", f"--data={tmp_path}", "--lr-schedule", "step", "--lr-decay", "2")
    assert status == 2 and "--lr-decay must be" in err, err


def test_bench_says_which_option_a_mistake_comes_from(capsys, tmp_path):
    # --quick's batch size 128 is not one the user gave; an optimizer mistake in the options' names
    status, out, err = run(capsys, "bench", f"--data={tmp_path}", "--quick", "--samples", "50")
    assert status == 2 and "--quick's batch size 128 is larger than --samples 50" in err, err
    status, out, err = run(capsys, "bench", f"--data={tmp_path}", "--nesterov")
    assert status == 2 and "--nesterov needs a momentum" in err and "nesterov=" not in err, err


def test_compile_notice_shows_only_while_compiling():
    import io
    import time

    from numba.core import event

    from fastmlp.progress import compile_notice

    def until_shown(stream, seconds=30):  # a compile: still running when the notice comes (however late its timer fires)
        deadline = time.monotonic() + seconds
        while not stream.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)

    def until_due(notice, seconds=30):  # past `after`: the notice's timer has fired
        deadline = time.monotonic() + seconds
        while not notice._due and time.monotonic() < deadline:
            time.sleep(0.01)

    def compiling():  # what Numba sends around a compile (a cache miss), never around a cache load
        return event.trigger_event("numba:compile", data={})

    stream = io.StringIO()
    with compile_notice("784-128-10 float32 per-sample training", enabled=True, stream=stream, after=0.01):
        with compiling():
            until_shown(stream)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("compiling the numba kernels for 784-128-10 float32 per-sample training")
    assert "cached on disk afterwards" in lines[0] and lines[1].startswith("compiled in ")
    quick = io.StringIO()
    with compile_notice("anything", enabled=True, stream=quick, after=30):
        with compiling():
            pass  # a compile done long before `after`
    # a slow cache load: past `after` with nothing compiled (it took 0.45-0.9 s on a Zen 2, and
    # the notice, on a timer alone, said it was compiling)
    loading = io.StringIO()
    with compile_notice("anything", enabled=True, stream=loading, after=0.01) as notice:
        until_due(notice)
    assert notice._due  # (its timer has fired: the silence below is not a timer that fired late)
    silent = io.StringIO()
    with compile_notice("anything", enabled=False, stream=silent, after=0.0):
        with compiling():
            time.sleep(0.05)
    assert quick.getvalue() == "" and loading.getvalue() == "" and silent.getvalue() == ""
    # a compile that starts late in a long block shows it then
    late = io.StringIO()
    with compile_notice("anything", enabled=True, stream=late, after=0.01) as notice:
        until_due(notice)
        assert late.getvalue() == ""
        with compiling():
            until_shown(late)
    assert late.getvalue().startswith("compiling the numba kernels")
    with compiling():  # after the block: its listener is gone
        pass
    assert len(late.getvalue().splitlines()) == 2
    # an interrupted compile did not compile: it said "compiled in N s" all the same
    stopped = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        with compile_notice("anything", enabled=True, stream=stopped, after=0.01):
            with compiling():
                until_shown(stopped)
                raise KeyboardInterrupt
    assert stopped.getvalue().splitlines()[1].startswith("compiling stopped after ")
    assert "compiled in" not in stopped.getvalue()


def test_ctrl_c_outside_training_is_one_line_that_says_so(capsys, monkeypatch):
    # a KeyboardInterrupt without a message (outside a training chunk) printed "interrupted: "
    from fastmlp import cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_train", interrupted)
    assert cli.main(["train"]) == cli.EXIT_INTERRUPTED
    assert capsys.readouterr().err == "fastmlp: interrupted: stopped by Ctrl-C\n"


@pytest.mark.parametrize("command", ["compare", "bench", "warmup"])
def test_ctrl_c_in_a_command_that_keeps_no_model_says_nothing_of_one(capsys, monkeypatch, command):
    # Ctrl-C inside a training chunk of compare, bench or warmup printed the trainer's account for
    # fit's caller, "... the model holds the weights of the last completed chunk": there is none
    import fastmlp.bench as bench
    from fastmlp import cli
    from fastmlp.trainer import TrainingInterrupted

    def interrupted(*args):
        raise TrainingInterrupted("training interrupted in epoch 1: the model holds the weights of the last chunk")

    monkeypatch.setattr(cli, "_compare", interrupted)
    monkeypatch.setattr(cli, "_warmup", interrupted)
    monkeypatch.setattr(bench, "run", interrupted)
    assert cli.main([command]) == cli.EXIT_INTERRUPTED
    assert capsys.readouterr().err == "fastmlp: interrupted: stopped by Ctrl-C\n"


def test_strict_json_writes_every_non_finite_number_as_null():
    # what every --json prints (train, compare, evaluate, warmup, bench's records): strict JSON
    from fastmlp._cli_options import strict_json

    value = {"loss": float("inf"), "r2": np.float64(-np.inf), "rows": [1.5, float("nan"), (2, np.float64(3.0))],
             "nested": {"x": np.float64(np.nan), "ok": 0.25, "name": "nan"}, "n": 3}

    def refuse(token):
        raise AssertionError(f"{token} in the JSON")

    assert json.loads(strict_json(value), parse_constant=refuse) == {
        "loss": None, "r2": None, "rows": [1.5, None, [2, 3.0]], "nested": {"x": None, "ok": 0.25, "name": "nan"}, "n": 3}


def test_train_says_the_symmetry_warning_once(capsys, tiny_mnist):
    # the options' check before loading the data initialised the model too: the warning twice
    import warnings

    from fastmlp import SymmetryWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        status, _, err = run(capsys, "train", "--data", str(tiny_mnist), "--layers", "784,8,10", "--init", "zeros",
                             "--backend", "numpy", "--no-progress")
    assert status == 0, err
    assert [w.category for w in caught] == [SymmetryWarning]


def test_warnings_are_one_line_as_errors_are(tiny_mnist):
    # they were Python's two lines: "/path/fastmlp/model.py:418: SymmetryWarning: ...\n  self.initialize()"
    from fastmlp.cli import _format_warning

    done = subprocess.run([sys.executable, "-m", "fastmlp", "train", "--data", str(tiny_mnist), "--layers", "784,8,10",
                           "--init", "zeros", "--backend", "numpy", "--no-progress"],
                          capture_output=True, text=True, timeout=120, cwd=tiny_mnist, env=_cli_env())
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith("fastmlp: warning: init='zeros': every hidden unit receives the same gradient")
    assert done.stderr.count("\n") == 1
    # another library's keeps its category and where it came from
    line = _format_warning(RuntimeWarning("overflow"), RuntimeWarning, "/x/numpy/core.py", 7)
    assert line == "fastmlp: warning: RuntimeWarning: overflow (/x/numpy/core.py:7)\n"
    # fastmlp's own of a plain category (a validation loss that overflowed, an option without
    # effect in a sweep's trials) by its message, as its own categories' (audit 59)
    import warnings

    from fastmlp._warn import warn

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn("the validation loss is inf in epoch 2", RuntimeWarning)
        warnings.warn("overflow", RuntimeWarning)
    ours, theirs = caught
    assert ours.category is theirs.category is RuntimeWarning
    assert _format_warning(ours.message, ours.category, ours.filename, ours.lineno) == (
        "fastmlp: warning: the validation loss is inf in epoch 2\n")
    assert _format_warning(theirs.message, theirs.category, theirs.filename, theirs.lineno).startswith(
        "fastmlp: warning: RuntimeWarning: overflow (")


def test_closed_stdout_or_stderr_is_said_at_once_and_errors_never_go_to_stdout(tmp_path):
    # stdout closed: the whole run trained into nothing, then a traceback from its flush; stderr
    # closed: "fastmlp: error: ..." went into stdout (and into a --json reader)
    command = f"{sys.executable} -m fastmlp train --data {tmp_path / 'missing'}"
    # (cwd: not the source tree, whose fastmlp/ has no kernels/ beside it: the installed package is the one to import)
    closed_stdout = subprocess.run(["bash", "-c", f"exec >&-; {command}"], capture_output=True, text=True, timeout=120,
                                   cwd=tmp_path, env=_cli_env())
    assert closed_stdout.returncode == 1
    assert closed_stdout.stderr == ("fastmlp: error: stdout is closed (>&-): fastmlp prints its results there; "
                                    "send them to a file or to /dev/null instead\n")
    closed_stderr = subprocess.run(["bash", "-c", f"exec 2>&-; {command}"], capture_output=True, text=True, timeout=120,
                                   cwd=tmp_path, env=_cli_env())
    assert closed_stderr.returncode == 1 and closed_stderr.stdout == ""


@pytest.mark.parametrize("flag, progress", [([], None), (["--no-progress"], False), (["--json"], False)])
def test_no_progress_and_json_silence_the_downloader_too(capsys, monkeypatch, tmp_path, flag, progress):
    # its bars (and then pooch's "Downloading data from ..." lines) were drawn on a terminal even so
    from fastmlp import data

    asked = []

    def loader(*args, **kwargs):
        asked.append(kwargs.get("progress", "not passed"))
        raise ValueError("stop here")

    monkeypatch.setattr(data, "load_dataset", loader)
    monkeypatch.setattr(data, "load_test_set", loader)
    assert main(["train", *flag]) == 1
    if "--no-progress" not in flag:  # evaluate has no --no-progress
        model = MLP([784, 4, 10], backend="numpy")
        model.fit(np.zeros((4, 784), np.uint8), np.arange(4), progress=False)
        model.save(tmp_path / "m.npz")
        assert main(["evaluate", str(tmp_path / "m.npz"), *flag]) == 1
    assert asked and all(value is progress for value in asked)
    capsys.readouterr()


class _Compiling:
    """A second process still compiling, as ``NumbaBackend.compiling_for_later`` returns it."""

    def __init__(self, raises=None):
        self.raises, self.waited = raises, []

    def wait(self, timeout=None):
        self.waited.append(timeout)
        if self.raises is not None:
            raise self.raises


@pytest.mark.parametrize("argv, raises", [([], None), (["--json"], None), ([], KeyboardInterrupt)],
                         ids=["text", "json", "ctrl-c"])
def test_a_cold_train_waits_at_its_end_for_the_kernel_of_the_next_runs(capsys, tiny_mnist, monkeypatch, argv, raises):
    # stopped when the run ended, the second process left the cache without the kernel: every
    # later run started cold again (the end-to-end check: test_prewarm.py)
    from fastmlp import _numba_backend

    from fastmlp import _prewarm

    compiling = _Compiling(raises)
    monkeypatch.setattr(_numba_backend.NumbaBackend, "compiling_for_later", lambda self: compiling)
    monkeypatch.setattr(_prewarm, "_stopping_at_exit", [])
    status, out, err = run(capsys, "train", "--data", str(tiny_mnist), "--layers", "784,8,10", "--no-progress", *argv)
    assert status == 0, err  # Ctrl-C skips the wait: the run's results are out already
    # and stops the process at exit (in a session of its own, the terminal's Ctrl-C misses it)
    assert _prewarm._stopping_at_exit == ([True] if raises else [])
    assert compiling.waited == [cli.STORE_WAIT_SECONDS]
    said = "storing the compiled kernel in the cache for the next runs (once; Ctrl-C skips this)"
    assert (said in out) == ("--json" not in argv)
    if "--json" in argv:
        json.loads(out)
    assert ("stored in" in out) == (not argv and raises is None)
    monkeypatch.setattr(_numba_backend.NumbaBackend, "compiling_for_later", lambda self: None)
    status, out, err = run(capsys, "train", "--data", str(tiny_mnist), "--layers", "784,8,10", "--no-progress")
    assert status == 0 and "storing" not in out  # a warm run does not wait


def test_a_data_dependent_mistake_names_the_option(capsys, tiny_mnist):
    # found once the data is in, by fit: it said the API's "validation_fraction=0.9"
    status, out, err = run(capsys, "train", "--data", str(tiny_mnist), "--limit", "5", "--validation-fraction", "0.9",
                           "--backend", "numpy", "--no-progress")
    assert status == 1 and err.count("\n") == 1
    assert "fastmlp: error: --validation-fraction 0.9 of 5 samples holds out 5" in err


@pytest.mark.parametrize("command", ["train", "compare"])
@pytest.mark.parametrize(
    "argv, words",
    [
        (["--beta1", "0.5"], "--beta1 applies to --optimizer adam (SGD's is --momentum); got --optimizer sgd"),
        (["--eps", "0.1"], "--eps applies to --optimizer adam"),
        (["--power-t", "0.9"], "--power-t applies to --lr-schedule invscaling; got --lr-schedule constant"),
        (["--lr-decay", "0.1", "--lr-schedule", "cosine"], "--lr-decay applies to --lr-schedule exponential and step; got"),
        (["--lr-step-epochs", "1", "--lr-schedule", "exponential"], "--lr-step-epochs applies to --lr-schedule step; got"),
        (["--n-iter-no-change", "1"], "--n-iter-no-change is the adaptive schedule's patience"),
        (["--tol", "5"], "--tol applies to --lr-schedule adaptive"),
        (["--decoupled-weight-decay"], "--decoupled-weight-decay needs a --weight-decay above 0"),
    ],
)
def test_an_option_the_others_leave_without_effect_is_refused_before_the_data(capsys, tmp_path, command, argv, words):
    # each trained exactly as without it (bitwise), exit 0, as if the user had not asked
    status, out, err = run(capsys, command, "--data", str(tmp_path), *argv)  # no data there: refused first
    assert status == 2 and out == "" and err.count("\n") == 1
    assert words in err
    # compare has no --early-stopping to point to
    assert ("--early-stopping" in err) == (command == "train" and argv[0] in ("--tol", "--n-iter-no-change"))


def test_the_command_line_refuses_exactly_the_options_fit_warns_have_no_effect(capsys, tmp_path):
    # one rule (options_without_effect) for both; they were written twice, and could drift apart
    rng = np.random.default_rng(0)
    X, y = rng.random((40, 4)), rng.integers(0, 3, 40)
    candidates = {"beta1": 0.5, "beta2": 0.9, "eps": 1e-6, "decoupled_weight_decay": True, "power_t": 0.3,
                  "lr_decay": 0.3, "lr_step_epochs": 2, "n_iter_no_change": 2, "tol": 0.1}
    checked = {True: 0, False: 0}
    for optimizer in ("sgd", "adam"):
        for schedule in ("constant", "invscaling", "step", "exponential", "adaptive", "cosine"):
            for stopping in (None, 2):
                for decay in (0.0, 1e-4):
                    setting = {"optimizer": optimizer, "lr_schedule": schedule, "weight_decay": decay}
                    if stopping is not None:
                        setting["early_stopping"] = stopping
                    for name, value in candidates.items():
                        with warnings.catch_warnings(record=True) as caught:
                            warnings.simplefilter("always")
                            MLP([4, 3, 3], backend="numpy", seed=0).fit(X, y, epochs=1, batch_size=8,
                                                                       **setting, **{name: value})
                        warned = any(f"{name}=" in str(w.message) and "has no effect" in str(w.message)
                                     for w in caught)
                        argv = []
                        for key, v in {**setting, name: value}.items():
                            argv += [f"--{key.replace('_', '-')}"] + ([] if v is True else [str(v)])
                        status, out, err = run(capsys, "train", "--data", str(tmp_path), *argv)  # no data there
                        refused = status == 2 and f"--{name.replace('_', '-')} " in err
                        assert refused == warned, (setting, name, err)
                        checked[warned] += 1
    assert checked[True] > 100 and checked[False] > 100, checked


@pytest.mark.parametrize("argv", [["--optimizer", "adam", "--beta1", "0.5", "--eps", "1e-6"],
                                  ["--lr-schedule", "invscaling", "--power-t", "0.3"],
                                  ["--lr-schedule", "step", "--lr-decay", "0.3", "--lr-step-epochs", "2"],
                                  ["--lr-schedule", "adaptive", "--n-iter-no-change", "2", "--tol", "0.1"],
                                  ["--early-stopping", "2", "--tol", "0.1"],
                                  ["--weight-decay", "1e-4", "--decoupled-weight-decay"]])
def test_options_that_take_effect_together_pass(capsys, tiny_mnist, argv):
    status, out, err = run(capsys, "train", "--data", str(tiny_mnist), "--layers", "784,8,10", "--backend", "numpy",
                           "--epochs", "2", "--limit", "100", "--no-progress", *argv)
    assert status == 0, err


@pytest.mark.parametrize("fails", ["interrupt after the rename", "write error"])
def test_a_checkpoint_that_fails_or_is_interrupted_says_what_the_file_holds(capsys, tiny_mnist, tmp_path, monkeypatch,
                                                                          fails):
    # Ctrl-C or SIGTERM in the checkpoint's last step (the directory's sync, after the rename)
    # said the file held the epoch before the one it held; a checkpoint that could not be
    # written stopped the run saying nothing of what the file held (audit 24)
    from fastmlp import _atomic

    path = tmp_path / "run.npz"
    calls = []
    real_sync = _atomic._sync_directory
    real_replace = _atomic.os.replace

    def sync(directory):  # the second checkpoint's
        calls.append(1)
        if len(calls) == 2 and fails.startswith("interrupt"):
            raise KeyboardInterrupt
        real_sync(directory)

    def replace(source, target):
        if len(calls) == 2 and fails == "write error":
            raise OSError(28, "No space left on device")
        real_replace(source, target)

    monkeypatch.setattr(_atomic, "_sync_directory", sync)
    monkeypatch.setattr(_atomic.os, "replace", replace)
    status, out, err = run(capsys, "train", "--data", str(tiny_mnist), "--layers", "784,8,10", "--backend", "numpy",
                           "--epochs", "4", "--checkpoint-every", "1", "--save", str(path), "--no-progress")
    monkeypatch.undo()
    # the interrupted second write is in place; the third, failed, is not
    held = 2
    assert MLP.load(path).epochs_trained_ == held
    assert f"; {path} holds the run after epoch {held} (go on with --resume {path})" in err, err
    if fails.startswith("interrupt"):
        assert status == 130 and "training interrupted at the start of epoch 3, before its first sample; " in err
    else:
        assert status == 1 and "No space left on device; training stopped;" in err


def another_run_writes(monkeypatch, path, after_epoch=2, then=None):
    """Make train's fit find ``path`` written by another run after its epoch ``after_epoch``
    (before or, with ``then``, after the command's own epoch listener, and then ``then()``);
    returns that other run's model."""
    from fastmlp import model as model_module

    other = MLP([784, 8, 10], seed=5)
    other.initialize()
    fit = model_module.MLP.fit

    def fit_beside_another(self, *args, on_epoch=None, **kwargs):
        def listener(history):
            if then is not None and on_epoch is not None:
                on_epoch(history)
            if len(history.epoch) == after_epoch:
                other.save(path)  # another process's run, between this one's epochs
                if then is not None:
                    then()
            if then is None and on_epoch is not None:
                on_epoch(history)
        return fit(self, *args, on_epoch=listener, **kwargs)

    monkeypatch.setattr(model_module.MLP, "fit", fit_beside_another)
    return other


@pytest.mark.parametrize("checkpoints", [True, False])
def test_a_save_file_another_run_replaced_is_not_replaced_again(capsys, tiny_mnist, tmp_path, monkeypatch, checkpoints):
    """Two trains given one --save: neither noticed the other, the file went back and forth
    between their runs, both said "saved model to", and an interrupted one advised --resume of
    the other's file (audit 34). The run that finds the file replaced stops, and says so."""
    path = tmp_path / "same.npz"
    other = another_run_writes(monkeypatch, path)
    every = ["--checkpoint-every", "1"] if checkpoints else []
    status, out, err = run(capsys, "train", "--data", str(tiny_mnist), "--layers", "784,8,10", "--backend", "numpy",
                           "--epochs", "4", "--save", str(path), "--no-progress", *every)
    assert status == 1 and "saved model to" not in out
    since = "wrote it after epoch 2" if checkpoints else "began"  # (a checkpoint comes before on_epoch)
    assert (f"fastmlp: error: {path} was replaced by another writer (another process, or another model in this one) "
            f"since this run {since}: two runs write the "
            f"same file; give each its own. This run's weights were not written there\n") in err, err
    assert "--resume" not in err
    np.testing.assert_array_equal(MLP.load(path).params_, other.params_)  # the other run's file, as it left it


def test_an_interrupted_run_does_not_advise_resuming_a_file_another_run_wrote(capsys, tiny_mnist, tmp_path, monkeypatch):
    path = tmp_path / "same.npz"

    def interrupted():
        raise KeyboardInterrupt

    another_run_writes(monkeypatch, path, then=interrupted)
    status, out, err = run(capsys, "train", "--data", str(tiny_mnist), "--layers", "784,8,10", "--backend", "numpy",
                           "--epochs", "4", "--save", str(path), "--checkpoint-every", "1", "--no-progress")
    assert status == 130
    assert f"; {path} was replaced by another process since this run wrote it after epoch 2" in err, err
    assert "--resume" not in err


def test_the_other_ranks_take_the_file_rank_0_wrote_for_the_runs(tmp_path):
    # rank 0 alone writes --save: the other ranks' account of an interrupted distributed run said
    # "replaced by another process" of the file their own run's rank 0 had written
    import argparse

    path = tmp_path / "run.npz"
    model = MLP([4, 3, 2], seed=0)
    model.fit(np.random.default_rng(0).random((20, 4)), np.arange(20) % 2, epochs=2, progress=False)
    model.save(path)
    other_rank = argparse.Namespace(save=str(path), save_found=None, model=MLP([4, 3, 2]), writes_save=False)
    assert cli._what_train_kept(other_rank) == f"; {path} holds the run after epoch 2 (go on with --resume {path})"
    writer = argparse.Namespace(save=str(path), save_found=None, model=MLP([4, 3, 2]), writes_save=True)
    assert cli._what_train_kept(writer) == f"; {path} was replaced by another process since this run began"


def test_a_checkpointed_train_writes_the_last_state_once(capsys, tiny_mnist, tmp_path, monkeypatch):
    # the fit's call-end checkpoint and then train's own --save wrote the same bytes twice
    path = tmp_path / "run.npz"
    writes = []
    save = MLP.save
    monkeypatch.setattr(MLP, "save", lambda self, target: writes.append(self.run_.epochs_done) or save(self, target))
    status, out, err = run(capsys, "train", "--data", str(tiny_mnist), "--layers", "784,8,10", "--backend", "numpy",
                           "--epochs", "2", "--checkpoint-every", "1", "--save", str(path), "--no-progress")
    assert status == 0, err
    assert writes == [1, 2, 2]  # each epoch's checkpoint, then the call's end (which records it), and no more
    assert f"saved model to {path}" in out
    monkeypatch.undo()
    assert MLP.load(path).epochs_trained_ == 2 and MLP.load(path).history_.stop_reason == "max epochs"
    status, out, err = run(capsys, "train", "--data", str(tiny_mnist), "--layers", "784,8,10", "--backend", "numpy",
                           "--epochs", "2", "--save", str(tmp_path / "plain.npz"), "--no-progress")
    assert status == 0 and MLP.load(tmp_path / "plain.npz").epochs_trained_ == 2  # without checkpoints: saved once


def test_a_batch_over_the_samples_the_validation_split_leaves_is_refused(capsys, tiny_mnist):
    """Audit 80: the check compared --batch-size with the samples before the split; 299 of 300
    with --validation-fraction 0.1 trained one full batch of 270, quietly, reported as 299."""
    status, out, err = run(capsys, "train", "--data", str(tiny_mnist), "--layers", "784,8,10", "--backend", "numpy",
                           "--batch-size", "299", "--validation-fraction", "0.1")
    assert status == 1 and ("--batch-size 299 is more than the 270 training samples left after --validation-fraction "
                            "0.1 holds out 30") in err, err
    status, out, err = run(capsys, "train", "--data", str(tiny_mnist), "--layers", "784,8,10", "--backend", "numpy",
                           "--batch-size", "270", "--validation-fraction", "0.1", "--no-progress")
    assert status == 0, err


def test_an_empty_training_set_is_called_empty_not_a_batch_size_problem(capsys, tmp_path, rng, synth):
    """An IDX training set of 0 samples (a header with N = 0) said "--batch-size 1 is more than the 0
    training samples; --batch-size full trains on all of them as one batch" with the default batch
    size, and following that advice only then said the set is empty (audit 78)."""
    X, y = synth.digits(rng, 20)
    write_idx(tmp_path / "train-images-idx3-ubyte", X[:0].reshape(0, 28, 28), 2051)
    write_idx(tmp_path / "train-labels-idx1-ubyte", y[:0], 2049)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", X.reshape(-1, 28, 28), 2051)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", y, 2049)
    status, out, err = run(capsys, "train", "--data", str(tmp_path), "--layers", "784,8,10", "--backend", "numpy")
    assert status == 1
    assert "empty" in err and "--batch-size" not in err, err


def test_a_training_set_of_one_class_is_named(capsys, tmp_path, rng, synth):
    """Labels that hold one class only (a CSV read with its label column elsewhere: every "label" is
    a corner pixel, 0) trained a model that predicts that class and reported its test accuracy
    with no word of it (audit 78: 1.0000 on OpenML's label-last CSV). Now a warning names the
    class (not an error: the run may be meant, a smoke test of a few samples)."""
    X, y = synth.digits(rng, 60)
    y[:] = 0
    write_idx(tmp_path / "train-images-idx3-ubyte", X[:40].reshape(-1, 28, 28), 2051)
    write_idx(tmp_path / "train-labels-idx1-ubyte", y[:40], 2049)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", X[40:].reshape(-1, 28, 28), 2051)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", y[40:], 2049)
    status, out, err = run(capsys, "train", "--data", str(tmp_path), "--layers", "784,8,10", "--backend", "numpy")
    assert status == 0 and "fastmlp: warning: the training labels of --data" in err and "one class only (0, all 40" in err
    y[:40:2] = 3  # two classes: no word
    write_idx(tmp_path / "train-labels-idx1-ubyte", y[:40], 2049)
    status, out, err = run(capsys, "train", "--data", str(tmp_path), "--layers", "784,8,10", "--backend", "numpy")
    assert status == 0 and "one class" not in err, err


def test_a_resume_refused_for_other_data_does_not_say_training_stopped(capsys, tiny_mnist, tmp_path):
    """``--resume run.npz --save run.npz`` with the wrong --limit is refused before anything trains;
    its error went on "; training stopped; run.npz holds the run after epoch 1 (go on with --resume
    run.npz)": nothing had started, and the advice is the command that just failed (audit 78)."""
    path = tmp_path / "run.npz"
    status, out, err = run(capsys, "train", "--data", str(tiny_mnist), "--layers", "784,8,10", "--backend", "numpy",
                           "--save", str(path))
    assert status == 0, err
    before = path.read_bytes()
    status, out, err = run(capsys, "train", "--data", str(tiny_mnist), "--limit", "100", "--resume", str(path),
                           "--save", str(path), "--epochs", "2")
    assert status != 0 and "other data" in err, err
    assert "training stopped" not in err, err
    assert path.read_bytes() == before
