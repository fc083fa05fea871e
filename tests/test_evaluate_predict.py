"""Using a saved model: ``fastmlp evaluate`` and ``fastmlp predict``, fastmlp.metrics, and their errors."""

import importlib.util
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

import fastmlp
from fastmlp.cli import main
from fastmlp.metrics import confusion_matrix, precision_recall


def run(capsys, *argv):
    status = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return status, out, err


def one_line_error(err):
    return err.count("\n") == 1 and err.startswith("fastmlp: error: ") and "Traceback" not in err


@pytest.fixture
def saved(capsys, tiny_mnist_dir, tmp_path):
    """A 784-8-10 classifier written by ``fastmlp train --save`` (numpy backend: no compiling)."""
    path = tmp_path / "model.npz"
    status, _, err = run(capsys, "train", "--data", tiny_mnist_dir, "--layers", "784,8,10", "--backend", "numpy",
                         "--epochs", "2", "--save", path, "--json")
    assert status == 0, err
    return path


@pytest.fixture
def test_set(tiny_mnist_dir):
    return fastmlp.load_mnist(tiny_mnist_dir)[2:]


# --- metrics ---------------------------------------------------------------------------------


def test_confusion_matrix_counts_true_rows_against_predicted_columns():
    matrix = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 4)
    assert matrix.tolist() == [[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 2, 0], [0, 0, 0, 0]]
    precision, recall, support = precision_recall(matrix)
    np.testing.assert_allclose(precision[:3], [0.5, 0.5, 1.0])
    np.testing.assert_allclose(recall[:3], [0.5, 1.0, 2 / 3])
    assert support.tolist() == [2, 1, 3, 0]
    assert np.isnan(precision[3]) and np.isnan(recall[3])  # 0/0: class 3 neither occurs nor is predicted
    assert confusion_matrix([1, 0], [1, 1]).shape == (2, 2)
    # boolean labels, as MLP.score takes them for a binary model (they were refused)
    assert confusion_matrix(np.array([True, False, True]), np.array([1, 0, 0])).tolist() == [[1, 0], [1, 1]]


def test_the_evaluation_report_of_a_multilabel_model_says_what_to_use(rng):
    # it crashed in confusion_matrix with "y_true must be a 1-d array" though evaluate took the label sets
    from fastmlp import MLP
    from fastmlp.metrics import evaluation_report

    X, Y = rng.normal(size=(40, 5)), (rng.random((40, 3)) > 0.5).astype(int)
    model = MLP([5, 4, 3], loss="binary_cross_entropy", backend="numpy")
    model.fit(X, Y, epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"single-label classifiers and regression models; this one has 3 sigmoid "
                                         r"outputs \(multilabel\): use model.evaluate"):
        evaluation_report(model, X, Y)


@pytest.mark.parametrize("y_true, y_pred, n_classes, words", [
    ([0, 1], [0], None, "different lengths"),
    ([0, 5], [0, 1], 3, "[0, 2]"),
    ([0, -1], [0, 1], None, ">= 0"),
    ([0.5, 1], [0, 1], None, "integer"),
    ([[0, 1]], [[0, 1]], None, "1-d"),
    # a raw class id allocated 74.5 GiB of counts; 1e300 and 2**64 - 1 wrapped to negative
    # labels before their check; n_classes was not checked (audit 60)
    ([100_000], [1], None, "y_true holds the label 100000 at row 0: confusion_matrix counts at most 10,000"),
    # the bound itself: labels 0..9,999 are the 10,000 classes counted, 10,000 is one past them (audit 73)
    ([0], [10_000], 10_000, "y_pred holds the label 10000 at row 0: confusion_matrix counts at most 10,000"),
    ([1, 2], [1e300, 1.0], None, "y_pred holds the label 1e+300 at row 0"),
    (np.array([1, 2**64 - 1], np.uint64), [1, 1], None, "holds the label 18446744073709551615 at row 1"),
    ([1], [1], 10**6, "n_classes must be at most 10,000"),
    ([1], [1], 2.5, "n_classes must be a positive integer; got 2.5"),
    ([1], [1], "3", "n_classes must be a positive integer; got '3'"),
    ([1], [1], True, "n_classes must be a positive integer; got True"),
])
def test_confusion_matrix_mistakes_are_named(y_true, y_pred, n_classes, words):
    with pytest.raises((ValueError, TypeError), match=None) as error:
        confusion_matrix(y_true, y_pred, n_classes)
    assert words in str(error.value)


# --- evaluate --------------------------------------------------------------------------------


def test_evaluate_needs_the_test_files_only(capsys, saved, tiny_mnist_dir, test_set, tmp_path):
    """A directory of the two t10k files (or mnist_test.csv) is enough: evaluate reads no
    training file (and so would download none into the cache)."""
    from fastmlp.data import load_test_set

    only_test = tmp_path / "only-test"
    only_test.mkdir()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (only_test / name).write_bytes((Path(tiny_mnist_dir) / name).read_bytes())
    expected = json.loads(run(capsys, "evaluate", saved, "--data", tiny_mnist_dir, "--json")[1])
    status, out, err = run(capsys, "evaluate", saved, "--data", only_test, "--json")
    assert status == 0, err
    report = json.loads(out)
    assert report["accuracy"] == expected["accuracy"] and report["n_samples"] == 100
    X_test, y_test = load_test_set("mnist", only_test)
    np.testing.assert_array_equal(X_test, test_set[0])
    np.testing.assert_array_equal(y_test, test_set[1])
    (only_test / "t10k-labels-idx1-ubyte.gz").unlink()
    status, _, err = run(capsys, "evaluate", saved, "--data", only_test)
    assert status == 1 and "missing: t10k-labels-idx1-ubyte" in err and "train-" not in err


def test_evaluate_reports_what_the_model_computes(capsys, saved, tiny_mnist_dir, test_set):
    X_test, y_test = test_set
    model = fastmlp.MLP.load(saved)
    status, out, err = run(capsys, "evaluate", saved, "--data", tiny_mnist_dir, "--json")
    assert status == 0, err
    report = json.loads(out)
    expected = model.evaluate(X_test, y_test)
    assert report["task"] == "classification" and report["n_samples"] == len(y_test) == 100
    assert report["accuracy"] == pytest.approx(expected["accuracy"]) and report["loss"] == pytest.approx(expected["loss"])
    matrix = np.array(report["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == 100
    assert np.trace(matrix) / 100 == pytest.approx(report["accuracy"])
    assert report["support"] == np.bincount(y_test, minlength=10).tolist()
    predicted = model.predict(X_test)
    for k in range(10):
        hits = int(((predicted == k) & (y_test == k)).sum())
        assert matrix[k, k] == hits
        expected_recall = hits / (y_test == k).sum() if (y_test == k).any() else None
        expected_precision = hits / (predicted == k).sum() if (predicted == k).any() else None
        assert report["recall"][k] == pytest.approx(expected_recall)
        assert report["precision"][k] == pytest.approx(expected_precision)


def test_evaluate_text_has_the_summary_the_table_and_the_matrix(capsys, saved, tiny_mnist_dir):
    status, out, err = run(capsys, "evaluate", saved, "--data", tiny_mnist_dir)
    assert status == 0, err
    report = json.loads(run(capsys, "evaluate", saved, "--data", tiny_mnist_dir, "--json")[1])
    lines = out.splitlines()
    assert lines[0].startswith(f"{saved}: 784-8-10 sigmoid, softmax + cross_entropy, 2 epochs trained")
    assert f"accuracy {report['accuracy']:.4f}, cross_entropy loss {report['loss']:.4f} on 100 samples" in out
    assert "class  precision  recall  support" in out
    start = lines.index("confusion matrix (rows: true class, columns: predicted class)")
    rows = [[int(cell) for cell in line.split()] for line in lines[start + 2 : start + 12]]
    assert [row[0] for row in rows] == list(range(10))
    assert [row[1:] for row in rows] == report["confusion_matrix"]


def test_evaluate_plot_draws_a_picture(capsys, saved, tiny_mnist_dir, tmp_path):
    pytest.importorskip("matplotlib")
    status, out, err = run(capsys, "evaluate", saved, "--data", tiny_mnist_dir, "--plot", tmp_path / "eval.png", "--json")
    assert status == 0, err
    assert json.loads(out)["plot"] == str(tmp_path / "eval.png")
    assert (tmp_path / "eval.png").read_bytes().startswith(b"\x89PNG")


def test_evaluate_a_regression_model_gives_loss_and_r2(capsys, tiny_mnist_dir, tmp_path):
    X_train, y_train, X_test, y_test = fastmlp.load_mnist(tiny_mnist_dir)
    model = fastmlp.MLP([784, 6, 1], activation="tanh", loss="mse", backend="numpy", seed=1)
    model.fit(X_train, y_train.astype(np.float32), epochs=3, batch_size=8, lr=0.01)  # the digit as a number
    model.save(tmp_path / "regression.npz")
    status, out, err = run(capsys, "evaluate", tmp_path / "regression.npz", "--data", tiny_mnist_dir, "--json")
    assert status == 0, err
    report = json.loads(out)
    assert report["task"] == "regression" and "accuracy" not in report and "confusion_matrix" not in report
    assert report["r2"] == pytest.approx(model.score(X_test, y_test.astype(np.float32)))
    assert report["loss"] == pytest.approx(model.evaluate(X_test, y_test.astype(np.float32))["loss"])
    status, out, err = run(capsys, "evaluate", tmp_path / "regression.npz", "--data", tiny_mnist_dir)
    assert status == 0 and f"R^2 {report['r2']:.4f}" in out and "mse loss" in out
    if importlib.util.find_spec("matplotlib"):
        status, out, err = run(capsys, "evaluate", tmp_path / "regression.npz", "--data", tiny_mnist_dir, "--plot", tmp_path / "r.svg")
        assert status == 0, err
        assert b"<svg" in (tmp_path / "r.svg").read_bytes()[:500]


def test_evaluate_a_model_whose_classes_do_not_fit_the_labels(capsys, tiny_mnist_dir, tmp_path, rng):
    model = fastmlp.MLP([784, 4, 3], backend="numpy")
    model.fit(rng.integers(0, 256, (30, 784), dtype=np.uint8), rng.integers(0, 3, 30), epochs=1)
    model.save(tmp_path / "three.npz")
    status, out, err = run(capsys, "evaluate", tmp_path / "three.npz", "--data", tiny_mnist_dir)
    assert status == 1 and out == "" and one_line_error(err)
    assert "do not fit the model" in err and "[0, 2]" in err


def test_evaluate_a_model_of_more_classes_than_a_report_counts_says_so(capsys, tiny_mnist_dir, tmp_path):
    # it said the test set's labels (0..9) "do not fit the model": n_classes must be at most
    # 10,000 (audit 61)
    from fastmlp.metrics import MAX_CLASSES, evaluation_report

    model = fastmlp.MLP([784, MAX_CLASSES + 1], backend="numpy").initialize()
    model.save(tmp_path / "many.npz")
    status, out, err = run(capsys, "evaluate", tmp_path / "many.npz", "--data", tiny_mnist_dir)
    assert status == 1 and out == "" and one_line_error(err)
    assert "the model has 10,001 classes, and the report's confusion matrix counts at most 10,000" in err, err
    assert "do not fit" not in err
    with pytest.raises(ValueError, match="^the model has 10,001 classes.*use model.evaluate"):
        evaluation_report(model, np.zeros((2, 784), np.uint8), np.arange(2))


def test_evaluate_a_model_with_another_input_size(capsys, tiny_mnist_dir, tmp_path, rng, synth):
    X, y = synth.blobs(rng, 40, 16, 10)
    model = fastmlp.MLP([16, 4, 10], backend="numpy")
    model.fit(X, y, epochs=1)
    model.save(tmp_path / "sixteen.npz")
    status, out, err = run(capsys, "evaluate", tmp_path / "sixteen.npz", "--data", tiny_mnist_dir)
    assert status == 1 and one_line_error(err)
    assert "784 features per sample" in err and "takes 16" in err


def not_a_model(tmp_path, kind):
    path = tmp_path / f"{kind}.npz"
    if kind == "random-npz":
        np.savez(path, weights=np.ones(3), other=np.zeros(2))
    elif kind == "text":
        path.write_text("these are not the weights you are looking for\n")
    elif kind == "npy":
        with open(path, "wb") as file:
            np.save(file, np.ones(5))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "png":
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    return path


@pytest.mark.parametrize("command", ["evaluate", "predict"])
@pytest.mark.parametrize("kind", ["random-npz", "text", "npy", "empty", "png"])
def test_a_file_that_is_not_a_fastmlp_model_is_one_clear_line(capsys, tiny_mnist_dir, tmp_path, command, kind):
    model = not_a_model(tmp_path, kind)
    samples = tmp_path / "x.npy"
    np.save(samples, np.zeros((2, 784), np.uint8))
    argv = ["evaluate", model, "--data", tiny_mnist_dir] if command == "evaluate" else ["predict", model, samples, "-o", tmp_path / "p.npy"]
    status, out, err = run(capsys, *argv)
    assert status == 1 and out == "" and one_line_error(err)
    assert "not a fastmlp checkpoint" in err and str(model) in err
    assert "pickle" not in err  # never the advice to load a stranger's file unsafely
    assert not (tmp_path / "p.npy").exists()


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_a_missing_model_file_is_a_usage_error(capsys, tmp_path, command):
    samples = tmp_path / "x.npy"
    np.save(samples, np.zeros((2, 784), np.uint8))
    extra = [samples, "-o", tmp_path / "p.npy"] if command == "predict" else []
    status, out, err = run(capsys, command, tmp_path / "missing.npz", *extra)
    assert status == 2 and one_line_error(err) and "no such file" in err


@pytest.mark.parametrize("command, argument", [("evaluate", "MODEL"), ("predict", "MODEL"), ("predict", "INPUT")])
def test_a_directory_given_as_a_file_is_called_a_directory(capsys, tmp_path, saved, command, argument):
    samples = tmp_path / "x.npy"
    np.save(samples, np.zeros((2, 784), np.uint8))
    folder = tmp_path / "folder"
    folder.mkdir()
    model = folder if argument == "MODEL" else saved
    extra = [folder if argument == "INPUT" else samples, "-o", tmp_path / "p.npy"] if command == "predict" else []
    status, out, err = run(capsys, command, model, *extra)
    assert status == 2 and one_line_error(err) and f"{str(folder)!r} is a directory; expected a file" in err
    assert not (tmp_path / "p.npy").exists()


# --- predict ---------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".npy", ".csv"])
def test_predict_labels_and_probabilities_from_npy(capsys, saved, test_set, tmp_path, suffix):
    X_test, _ = test_set
    model = fastmlp.MLP.load(saved)
    np.save(tmp_path / "samples.npy", X_test.reshape(-1, 28, 28))  # images [N, 28, 28] are fine
    labels, proba = tmp_path / f"labels{suffix}", tmp_path / f"proba{suffix}"
    status, out, err = run(capsys, "predict", saved, tmp_path / "samples.npy", "-o", labels)
    assert status == 0, err
    assert f"predicted labels of 100 samples to {labels}" in out
    status, _, err = run(capsys, "predict", saved, tmp_path / "samples.npy", "--output", proba, "--proba")
    assert status == 0, err
    if suffix == ".npy":
        got_labels, got_proba = np.load(labels), np.load(proba)
    else:
        assert labels.read_text().splitlines()[0] == "label"
        assert proba.read_text().splitlines()[0] == ",".join(f"p{k}" for k in range(10))
        got_labels = np.loadtxt(labels, skiprows=1, dtype=np.int64)
        got_proba = np.loadtxt(proba, skiprows=1, delimiter=",")
    np.testing.assert_array_equal(got_labels, model.predict(X_test))
    np.testing.assert_allclose(got_proba, model.predict_proba(X_test), rtol=1e-7)  # "%.9g" round-trips float32
    np.testing.assert_allclose(got_proba.sum(axis=1), 1, rtol=1e-5)


def test_predict_and_evaluate_say_outputs_that_overflow(saved, test_set, tmp_path, tiny_mnist_dir, python_process):
    """A model whose outputs overflow: `fastmlp predict` and `evaluate` say so on stderr, once, in
    one line (the model's RuntimeWarning; audit 62's silent NaN). In processes of their own, as a
    user runs them: in this one pytest records the warnings instead of the command's printing."""
    X_test, _ = test_set
    model = fastmlp.MLP.load(saved)
    model.weights_[-1][:, 3] = 3e38  # float32: the logit of output 3 overflows wherever a hidden unit is on
    model.weights_[-1][:, 4] = -3e38
    model.save(tmp_path / "overflowing.npz")
    np.save(tmp_path / "samples.npy", X_test)
    for argv in (["predict", tmp_path / "overflowing.npz", tmp_path / "samples.npy", "-o", tmp_path / "p.npy"],
                 ["evaluate", tmp_path / "overflowing.npz", "--data", tiny_mnist_dir]):
        status, _, err = python_process(["-m", "fastmlp", *map(str, argv)])
        assert status == 0, err
        said = [line for line in err.splitlines() if "outputs are NaN or infinite" in line]
        assert said == ["fastmlp: warning: the network's outputs are NaN or infinite for 100 of 100 rows (they "
                        "overflow: its largest weight is 3e+38); its training diverged (train with a lower learning "
                        "rate) or the inputs are far out of the training data's range. Its predictions for those "
                        "rows mean nothing"], (argv[0], err)


@pytest.mark.parametrize("name", ["t10k-images-idx3-ubyte", "t10k-images-idx3-ubyte.gz"])
def test_predict_from_idx_files(capsys, saved, test_set, tmp_path, synth, name):
    X_test, _ = test_set
    synth.write_idx(tmp_path / name, X_test.reshape(-1, 28, 28), 2051)
    status, _, err = run(capsys, "predict", saved, tmp_path / name, "-o", tmp_path / "p.npy")
    assert status == 0, err
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), fastmlp.MLP.load(saved).predict(X_test))


def test_predict_from_mnist_csv_ignores_its_labels(capsys, saved, test_set, tmp_path):
    X_test, y_test = test_set
    rows = np.column_stack([y_test, X_test])
    np.savetxt(tmp_path / "samples.csv", rows, fmt="%d", delimiter=",", header="label," + ",".join(f"p{i}" for i in range(784)), comments="")
    status, _, err = run(capsys, "predict", saved, tmp_path / "samples.csv", "-o", tmp_path / "p.npy")
    assert status == 0, err
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), fastmlp.MLP.load(saved).predict(X_test))


@pytest.mark.parametrize("label", ["-1", "", "?", "0.5"])
def test_predict_from_csv_with_placeholder_labels(capsys, saved, test_set, tmp_path, label):
    # the labels it ignores stopped it ("label -1 is negative"), and a first row with a label
    # that is not a number was taken for a header and dropped: predictions one row short
    X_test, _ = test_set
    lines = [",".join([label, *map(str, row)]) for row in X_test]
    (tmp_path / "samples.csv").write_text("\n".join(lines) + "\n")
    status, _, err = run(capsys, "predict", saved, tmp_path / "samples.csv", "-o", tmp_path / "p.npy")
    assert status == 0, err
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), fastmlp.MLP.load(saved).predict(X_test))


def test_predict_with_a_regression_and_a_binary_model(capsys, tmp_path, rng, synth):
    X, y = synth.blobs(rng, 60, 5, 2)
    binary = fastmlp.MLP([5, 3, 1], loss="binary_cross_entropy", backend="numpy")
    binary.fit(X, y, epochs=2, batch_size=4)
    binary.save(tmp_path / "binary.npz")
    regression = fastmlp.MLP([5, 3, 2], loss="mse", backend="numpy")
    targets = np.column_stack([X[:, 0], X[:, 1] - X[:, 2]]).astype(np.float32)
    regression.fit(X, targets, epochs=2, batch_size=4, lr=0.01)
    regression.save(tmp_path / "regression.npz")
    np.save(tmp_path / "x.npy", X)

    assert run(capsys, "predict", tmp_path / "binary.npz", tmp_path / "x.npy", "-o", tmp_path / "p.csv", "--proba")[0] == 0
    assert (tmp_path / "p.csv").read_text().splitlines()[0] == "p1"  # one sigmoid unit: P(class 1)
    np.testing.assert_allclose(np.loadtxt(tmp_path / "p.csv", skiprows=1), binary.predict_proba(X)[:, 0], rtol=1e-7)
    assert run(capsys, "predict", tmp_path / "binary.npz", tmp_path / "x.npy", "-o", tmp_path / "l.npy")[0] == 0
    np.testing.assert_array_equal(np.load(tmp_path / "l.npy"), binary.predict(X))

    assert run(capsys, "predict", tmp_path / "regression.npz", tmp_path / "x.npy", "-o", tmp_path / "r.csv")[0] == 0
    assert (tmp_path / "r.csv").read_text().splitlines()[0] == "y0,y1"
    np.testing.assert_allclose(np.loadtxt(tmp_path / "r.csv", skiprows=1, delimiter=","), regression.predict(X), rtol=1e-7)
    status, out, err = run(capsys, "predict", tmp_path / "regression.npz", tmp_path / "x.npy", "-o", tmp_path / "q.npy", "--proba")
    assert status == 2 and one_line_error(err) and "--proba" in err and "regression" in err
    assert not (tmp_path / "q.npy").exists()


def test_evaluate_json_has_no_infinity_for_a_diverged_model(capsys, tiny_mnist_dir, tmp_path):
    # Weights that overflow the squared error: loss inf and R^2 -inf, which json.dumps wrote as
    # Infinity (not JSON); null instead, and the text report says inf
    X_train, y_train, _, _ = fastmlp.load_mnist(tiny_mnist_dir)
    model = fastmlp.MLP([784, 6, 1], activation="identity", loss="mse", backend="numpy", seed=1)
    model.fit(X_train[:8], y_train[:8].astype(np.float32), epochs=1, batch_size=8, lr=0.01)
    model.params_[:] = 1e30
    model.save(tmp_path / "diverged.npz")
    with np.errstate(over="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        status, out, err = run(capsys, "evaluate", tmp_path / "diverged.npz", "--data", tiny_mnist_dir, "--json")
        assert status == 0, err

        def refuse(token):
            raise AssertionError(f"{token} in the JSON")

        report = json.loads(out, parse_constant=refuse)
        assert report["loss"] is None and report["r2"] is None and report["n_samples"] > 0
        status, out, err = run(capsys, "evaluate", tmp_path / "diverged.npz", "--data", tiny_mnist_dir)
    assert status == 0 and "inf" in out, err


def test_evaluate_json_has_no_nan_when_the_targets_do_not_vary(capsys, tiny_mnist_dir, tmp_path, synth):
    # R^2 is 0/0 there: "r2": NaN is not JSON (jq, JSON.parse refuse it)
    X_train, y_train, X_test, _ = fastmlp.load_mnist(tiny_mnist_dir)
    model = fastmlp.MLP([784, 6, 1], activation="tanh", loss="mse", backend="numpy", seed=1)
    model.fit(X_train, y_train.astype(np.float32), epochs=1, batch_size=8, lr=0.01)
    model.save(tmp_path / "regression.npz")
    constant = tmp_path / "constant"
    constant.mkdir()
    synth.write_idx(constant / "t10k-images-idx3-ubyte", X_test.reshape(-1, 28, 28), 2051)
    synth.write_idx(constant / "t10k-labels-idx1-ubyte", np.full(len(X_test), 3, np.uint8), 2049)
    status, out, err = run(capsys, "evaluate", tmp_path / "regression.npz", "--data", constant, "--json")
    assert status == 0, err

    def refuse(token):
        raise AssertionError(f"{token} in the JSON")

    report = json.loads(out, parse_constant=refuse)
    assert report["r2"] is None and np.isfinite(report["loss"])
    status, out, err = run(capsys, "evaluate", tmp_path / "regression.npz", "--data", constant)
    assert status == 0 and "R^2 - (undefined: the targets do not vary)" in out, err
    if importlib.util.find_spec("matplotlib"):  # the chart's title (it formatted None with .4f)
        status, out, err = run(capsys, "evaluate", tmp_path / "regression.npz", "--data", constant, "--plot",
                               tmp_path / "r.svg")
        assert status == 0, err
        assert "R² -" in (tmp_path / "r.svg").read_text()


@pytest.mark.parametrize("make_input, words", [
    (lambda d: np.save(d / "x.npy", np.zeros((3, 100), np.uint8)), "100 features per sample"),
    (lambda d: np.save(d / "x.npy", np.zeros((3, 20, 20), np.uint8)), "400 features per sample"),
    (lambda d: np.save(d / "x.npy", np.zeros(784, np.uint8)), "shape (784,)"),
    (lambda d: np.save(d / "x.npy", np.zeros((0, 784), np.uint8)), "holds no samples (an array of shape (0, 784))"),
    (lambda d: np.save(d / "x.npy", np.zeros((3, 784), np.int64)), "must be uint8 pixels"),
    (lambda d: np.save(d / "x.npy", np.full((3, 784), np.nan)), "NaN"),
    (lambda d: np.save(d / "x.npy", np.array([{"a": 1}]), allow_pickle=True), "holds Python objects (dtype object)"),
    (lambda d: (d / "x.npy").write_text("1,2,3\n"), "not a NumPy .npy array"),
    (lambda d: np.savez(open(d / "x.npy", "wb"), a=np.zeros(3)), "an .npz archive"),
    (lambda d: np.savez(d / "x.npz", a=np.zeros(3)), "an .npz archive"),
    # a cut-short .npz under an .npy name (np.load: zipfile.BadZipFile, a traceback)
    (lambda d: (d / "x.npy").write_bytes(b"PK\x03\x04" + b"\x00" * 40), "not a NumPy .npy array"),
    (lambda d: (d / "x.csv").write_text("5," + ",".join(["0"] * 100) + "\n"), "101 columns, expected 785"),
    (lambda d: (d / "x.idx").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x03abc"), "shape (3,)"),
    (lambda d: (d / "x.idx").write_bytes(b"not an idx file at all"), "x.idx"),
])
def test_predict_input_that_does_not_fit_is_one_line_and_writes_nothing(capsys, saved, tmp_path, make_input, words):
    make_input(tmp_path)
    (name,) = [p.name for p in tmp_path.iterdir() if p.name.startswith("x.")]
    (tmp_path / "p.npy").write_bytes(b"previous predictions")
    status, out, err = run(capsys, "predict", saved, tmp_path / name, "-o", tmp_path / "p.npy")
    assert status == 1 and out == "" and one_line_error(err), err
    assert words in err and name in err
    assert (tmp_path / "p.npy").read_bytes() == b"previous predictions"  # untouched


@pytest.mark.parametrize("output, words", [
    ("p.txt", "must end in .npy or .csv"),
    ("p", "must end in .npy or .csv"),
    ("missing/p.npy", "does not exist"),
    ("folder.npy", "is a directory"),
])
def test_predict_output_path_is_refused_before_anything_is_read(capsys, saved, tmp_path, output, words):
    (tmp_path / "folder.npy").mkdir()
    (tmp_path / "x.npy").write_text("would fail later as not an array")
    status, out, err = run(capsys, "predict", saved, tmp_path / "x.npy", "-o", tmp_path / output)
    assert status == 2 and out == "" and one_line_error(err)
    assert "--output" in err and words in err


@pytest.mark.parametrize("suffix", [".npy", ".csv"])
def test_predict_onto_its_own_input_is_refused(capsys, saved, tmp_path, suffix):
    """-o naming INPUT (or MODEL) would replace the samples with their predictions."""
    X = np.zeros((2, 784), np.uint8)
    path = tmp_path / f"x{suffix}"
    if suffix == ".npy":
        np.save(path, X)
    else:
        path.write_text("\n".join("0," + ",".join(["0"] * 784) for _ in X) + "\n")
    before = path.read_bytes()
    link = tmp_path / f"same{suffix}"
    link.symlink_to(path)
    for output in (path, link):
        status, out, err = run(capsys, "predict", saved, path, "-o", output)
        assert status == 2 and out == "" and one_line_error(err)
        assert "is the INPUT file itself" in err
    assert path.read_bytes() == before


def test_predict_into_an_unwritable_directory_is_refused(capsys, saved, tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.geteuid() == 0:  # root may write anywhere (CI runs as root): the directory says it is not writable
        real = os.access
        monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if os.fspath(path) == str(locked) else real(path, mode, **kw))
    np.save(tmp_path / "x.npy", np.zeros((2, 784), np.uint8))
    status, _, err = run(capsys, "predict", saved, tmp_path / "x.npy", "-o", locked / "p.npy")
    assert status == 2 and "not writable" in err


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_csv_outputs_round_trip_each_float_type_exactly(tmp_path, dtype):
    """A CSV of probabilities reads back to the very values written (float32 needs 9 digits:
    8 left some one ulp off, within the rtol=1e-7 the predict test allows; audit 73)."""
    from fastmlp.prediction import write_output

    values = np.random.default_rng(0).random((200, 3)).astype(dtype)
    write_output(tmp_path / "p.csv", values, ["p0", "p1", "p2"])
    back = np.loadtxt(tmp_path / "p.csv", skiprows=1, delimiter=",").astype(dtype)
    np.testing.assert_array_equal(back, values)


def test_a_write_that_fails_halfway_leaves_no_file(tmp_path, monkeypatch):
    from fastmlp.prediction import write_output

    def fail_halfway(file, *args, **kwargs):
        file.write("label\n1\n")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savetxt", fail_halfway)
    with pytest.raises(OSError, match="disk full"):
        write_output(tmp_path / "p.csv", np.arange(5), ["label"])
    assert os.listdir(tmp_path) == []  # neither the file nor its temporary


# --- the whole path on the compiled backend and on full MNIST ----------------------------------


def test_evaluate_and_predict_a_model_saved_by_train_with_the_default_backend(capsys, tiny_mnist_dir, tmp_path, test_set):
    X_test, _ = test_set
    status, _, err = run(capsys, "train", "--data", tiny_mnist_dir, "--layers", "784,8,10", "--save", tmp_path / "m.npz", "--json")
    assert status == 0, err
    status, out, err = run(capsys, "evaluate", tmp_path / "m.npz", "--data", tiny_mnist_dir, "--json")
    assert status == 0, err
    model = fastmlp.MLP.load(tmp_path / "m.npz")
    assert model.backend == "numba" and json.loads(out)["accuracy"] == pytest.approx(model.score(*test_set))
    np.save(tmp_path / "x.npy", X_test)
    assert run(capsys, "predict", tmp_path / "m.npz", tmp_path / "x.npy", "-o", tmp_path / "p.npy")[0] == 0
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), model.predict(X_test))


@pytest.mark.mnist
def test_evaluate_on_the_mnist_test_set(capsys, mnist, tmp_path):
    X_train, y_train, X_test, y_test = mnist
    model = fastmlp.MLP([784, 32, 10], seed=0)
    model.fit(X_train[:5000], y_train[:5000], epochs=1)
    model.save(tmp_path / "m.npz")
    status, out, err = run(capsys, "evaluate", tmp_path / "m.npz", "--data", os.environ["FASTMLP_DATA"], "--json")
    assert status == 0, err
    report = json.loads(out)
    assert report["n_samples"] == 10_000 and sum(report["support"]) == 10_000
    assert report["accuracy"] == pytest.approx(model.score(X_test, y_test)) and report["accuracy"] > 0.8


def test_predict_with_a_multilabel_model_writes_label_sets(capsys, tmp_path, rng):
    X, Y = rng.integers(0, 256, (40, 784), dtype=np.uint8), rng.integers(0, 2, (40, 3))
    model = fastmlp.MLP([784, 4, 3], loss="binary_cross_entropy", backend="numpy")
    model.fit(X, Y, epochs=1)
    model.save(tmp_path / "multilabel.npz")
    np.save(tmp_path / "x.npy", X)
    assert run(capsys, "predict", tmp_path / "multilabel.npz", tmp_path / "x.npy", "-o", tmp_path / "l.csv")[0] == 0
    assert (tmp_path / "l.csv").read_text().splitlines()[0] == "label0,label1,label2"
    np.testing.assert_array_equal(np.loadtxt(tmp_path / "l.csv", skiprows=1, delimiter=",", dtype=np.int64), model.predict(X))


def _flipped(path, offset):
    np.save(path, np.zeros((3, 784), np.uint8))
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0xFF
    path.write_bytes(bytes(raw))
    return path


def _npy_declaring(path, shape, data):
    import io

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": shape})
    path.write_bytes(header.getvalue() + data)
    return path


@pytest.mark.parametrize(
    "make, words",
    [
        # read whole: a 39 kB file declaring 10**12 rows ended in a MemoryError traceback (audit 29)
        (lambda p: _npy_declaring(p / "x.npy", (10**12, 784), bytes(784 * 50)),
         "x.npy: its header declares uint8 values of shape (1000000000000, 784) (784,000,000,000,000 bytes), "
         "more than the file holds"),
        (lambda p: np.save(p / "x.npy", np.array([1, "a"], dtype=object), allow_pickle=True) or p / "x.npy",
         "x.npy: holds Python objects (dtype object), which fastmlp never unpickles"),
        # NumPy took it for a pickle, and its message advised loading it unsafely
        (lambda p: (p / "x.npy").write_bytes(b"hello") and p / "x.npy", "x.npy: not a NumPy .npy array file (it does not"),
        # an index column before the label: every sample shifted by one pixel, predicted with status 0
        (lambda p: (p / "x.csv").write_text("".join(f"{i},3," + ",".join(["7"] * 784) + "\n" for i in range(4))) and p / "x.csv",
         "x.csv, line 1: wrong column count: 786 columns, expected 785"),
        # a flipped byte in the header's length field: NumPy's tokenizer raised TokenError, a traceback
        (lambda p: _flipped(p / "x.npy", 10), "x.npy: not a NumPy .npy array file"),
    ],
    ids=["npy-declares-more", "npy-objects", "npy-not-npy", "csv-index-column", "npy-header-untokenizable"],
)
def test_predict_refuses_damaged_or_hostile_inputs_in_one_line(capsys, saved, tmp_path, make, words):
    status, out, err = run(capsys, "predict", saved, make(tmp_path), "-o", tmp_path / "p.npy")
    assert status == 1 and out == "" and one_line_error(err), err
    assert words in err and not (tmp_path / "p.npy").exists()


def test_running_out_of_memory_is_one_line_not_a_traceback(capsys, saved, tmp_path, monkeypatch):
    # (MemoryError was not among the errors the command line words: a traceback)
    from fastmlp import prediction

    def too_large(path, n_features):
        raise MemoryError("Unable to allocate 713. TiB for an array with shape (1000000000000, 784)")

    monkeypatch.setattr(prediction, "read_input", too_large)
    np.save(tmp_path / "x.npy", np.zeros((2, 784), np.uint8))
    status, _, err = run(capsys, "predict", saved, tmp_path / "x.npy", "-o", tmp_path / "p.npy")
    assert status == 1 and one_line_error(err), err
    assert err == "fastmlp: error: not enough memory: Unable to allocate 713. TiB for an array with shape (1000000000000, 784)\n"


def test_predict_reads_an_npy_file_memory_mapped(capsys, saved, test_set, tmp_path):
    # (a file larger than memory is predicted in batches; the map is copy-on-write, so writable)
    from fastmlp.prediction import read_input

    X_test, _ = test_set
    np.save(tmp_path / "x.npy", X_test)
    mapped = read_input(tmp_path / "x.npy", 784)
    assert isinstance(mapped, np.memmap) and mapped.flags.writeable
    np.testing.assert_array_equal(mapped, X_test)
