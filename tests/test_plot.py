"""Pictures: plot_history, the confusion matrix image, save_figure, and ``fastmlp train --plot``."""

import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest

pytest.importorskip("matplotlib")

import fastmlp  # noqa: E402
from fastmlp.cli import main  # noqa: E402
from fastmlp.plot import plot_confusion_matrix, plot_evaluation, plot_history, save_figure  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def labels_of(ax):
    return [line.get_label() for line in ax.get_lines()]


@pytest.fixture
def classifier_history(rng, synth):
    X, y = synth.blobs(rng, 120, 6, 3)
    model = fastmlp.MLP([6, 5, 3], backend="numpy", seed=0)
    return model.fit(X[:90], y[:90], epochs=4, batch_size=8, lr=0.1, validation_data=(X[90:], y[90:]))


def test_history_draws_loss_and_accuracy_per_epoch_with_validation(classifier_history):
    fig = plot_history(classifier_history)
    loss_ax, accuracy_ax = fig.axes
    assert labels_of(loss_ax) == ["training loss", "validation loss"]
    assert labels_of(accuracy_ax) == ["training accuracy", "validation accuracy"]
    train_loss, val_loss = loss_ax.get_lines()
    assert list(train_loss.get_xdata()) == [1, 2, 3, 4]
    np.testing.assert_allclose(train_loss.get_ydata(), classifier_history.loss)
    np.testing.assert_allclose(val_loss.get_ydata(), classifier_history.val_loss)
    np.testing.assert_allclose(accuracy_ax.get_lines()[1].get_ydata(), classifier_history.val_accuracy)


def test_history_without_validation_has_training_curves_only(rng, synth):
    X, y = synth.blobs(rng, 60, 4, 2)
    history = fastmlp.MLP([4, 3, 2], backend="numpy").fit(X, y, epochs=2, batch_size=4)
    loss_ax, accuracy_ax = plot_history(history).axes
    assert labels_of(loss_ax) == ["training loss"] and labels_of(accuracy_ax) == ["training accuracy"]


def test_epochs_trained_without_validation_are_gaps_in_the_validation_lines(rng, synth):
    X, y = synth.blobs(rng, 120, 6, 3)
    model = fastmlp.MLP([6, 5, 3], backend="numpy", seed=0)
    validation = {"validation_data": (X[90:], y[90:])}
    model.fit(X[:90], y[:90], epochs=1, batch_size=8, lr=0.1, **validation)
    model.partial_fit(X[:90], y[:90], epochs=1, batch_size=8, lr=0.1)
    model.partial_fit(X[:90], y[:90], epochs=1, batch_size=8, lr=0.1, **validation)
    loss_ax, accuracy_ax = plot_history(model.history_).axes
    for ax, values in ((loss_ax, model.history_.val_loss), (accuracy_ax, model.history_.val_accuracy)):
        line = ax.get_lines()[1]
        assert list(line.get_xdata()) == [1, 2, 3]
        y_data = np.asarray(line.get_ydata(), float)
        assert np.isnan(y_data[1]) and y_data[[0, 2]].tolist() == [values[0], values[2]]


def test_regression_history_has_no_accuracy(rng):
    X = rng.normal(size=(80, 2)).astype(np.float32)
    y = (X[:, 0] - X[:, 1]).astype(np.float32)
    model = fastmlp.MLP([2, 4, 1], activation="tanh", loss="mse", backend="numpy")
    history = model.fit(X[:60], y[:60], epochs=3, batch_size=4, lr=0.05, validation_data=(X[60:], y[60:]))
    assert history.accuracy == [None] * 3 and history.val_accuracy == [None] * 3
    (loss_ax,) = plot_history(history).axes
    assert labels_of(loss_ax) == ["training loss", "validation loss"]
    with pytest.raises(ValueError, match="no accuracy values"):
        plot_history(history, accuracy=True)  # (it drew a line of zeros)
    older = dict(history.as_dict(), accuracy=[0.0] * 3)  # a regression's history before 2026-12-05
    (loss_ax,) = plot_history(older).axes
    assert labels_of(loss_ax) == ["training loss", "validation loss"]


def test_history_as_a_dict_and_on_given_axes(classifier_history):
    from matplotlib.figure import Figure

    fig = Figure()
    ax = fig.subplots()
    assert plot_history(classifier_history.as_dict(), ax) is fig
    twin = [other for other in fig.axes if other is not ax]
    assert len(twin) == 1 and labels_of(twin[0]) == ["training accuracy", "validation accuracy"]
    assert [text.get_text() for text in ax.get_legend().get_texts()] == [
        "training loss", "validation loss", "training accuracy", "validation accuracy"]

    pair_fig = Figure()
    pair = pair_fig.subplots(1, 2)
    assert plot_history(classifier_history, pair) is pair_fig
    assert len(pair_fig.axes) == 2 and labels_of(pair[1]) == ["training accuracy", "validation accuracy"]


def test_history_mistakes_are_named():
    with pytest.raises(ValueError, match="no epochs"):
        plot_history(fastmlp.History())
    with pytest.raises(TypeError, match="fastmlp.History"):
        plot_history([0.5, 0.4])


def test_ax_that_is_neither_one_axes_nor_a_pair_is_named(classifier_history):
    # fig.subplots(2, 2) passed the old len(ax) == 2 check, then failed with
    # "'numpy.ndarray' object has no attribute 'plot'"
    from matplotlib.figure import Figure

    with pytest.raises(ValueError, match=r"one matplotlib Axes or a pair \(loss, accuracy\).*4 Axes of shape \(2, 2\)"):
        plot_history(classifier_history, Figure().subplots(2, 2))
    with pytest.raises(TypeError, match=r"one matplotlib Axes or a pair.*got str 'x'"):
        plot_history(classifier_history, "x")
    with pytest.raises(TypeError, match=r"a pair.*got a list of int"):
        plot_history(classifier_history, [1, 2])
    fig = Figure()
    column = fig.subplots(1, 2, squeeze=False)  # two Axes in a [1, 2] array are a pair too
    assert plot_history(classifier_history, column) is fig
    assert labels_of(column[0, 1]) == ["training accuracy", "validation accuracy"]


@pytest.mark.parametrize("key, values, words", [
    ("loss", [1.0], "history['loss'] has 1 values for 2 epochs"),
    ("accuracy", [0.5, 0.6, 0.7], "history['accuracy'] has 3 values for 2 epochs"),
    ("val_loss", [1.0, 0.9, 0.8], "history['val_loss'] has 3 values for 2 epochs"),
])
def test_history_dict_lists_that_do_not_fit_its_epochs_are_named(key, values, words):
    history = {"epoch": [1, 2], "loss": [1.0, 0.5], key: values}
    with pytest.raises(ValueError) as raised:
        plot_history(history)
    assert str(raised.value) == words


def test_accuracy_asked_of_a_history_without_it_says_there_is_nothing_to_draw():
    with pytest.raises(ValueError, match="no accuracy values: there is nothing to draw"):
        plot_history({"epoch": [1, 2], "loss": [1.0, 0.5]}, accuracy=True)
    # validation accuracy alone is drawn, without a training accuracy line
    history = {"epoch": [1, 2], "loss": [1.0, 0.5], "val_accuracy": [0.4, 0.6]}
    assert labels_of(plot_history(history, accuracy=True).axes[1]) == ["validation accuracy"]


def test_regression_history_on_a_pair_leaves_the_second_axes_alone(rng):
    import warnings

    from matplotlib.figure import Figure

    X = rng.normal(size=(40, 2)).astype(np.float32)
    history = fastmlp.MLP([2, 3, 1], loss="mse", backend="numpy").fit(X, X[:, 0], epochs=2, batch_size=4)
    pair = Figure().subplots(1, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib's "No artists with labels found to put in legend"
        plot_history(history, pair)
    assert labels_of(pair[0]) == ["training loss"]
    assert pair[1].get_lines() == [] and pair[1].get_legend() is None and pair[1].get_xlabel() == ""


def test_a_loaded_model_history_plots(classifier_history, tmp_path, rng, synth):
    X, y = synth.blobs(rng, 40, 4, 2)
    model = fastmlp.MLP([4, 3, 2], backend="numpy")
    model.fit(X, y, epochs=2, batch_size=4)
    model.save(tmp_path / "m.npz")
    loaded = fastmlp.MLP.load(tmp_path / "m.npz").history_  # wall-clock fields are None
    assert list(plot_history(loaded).axes[0].get_lines()[0].get_xdata()) == [1, 2]


def test_confusion_matrix_image_shows_the_counts():
    matrix = np.array([[5, 1, 0], [0, 3, 2], [1, 0, 7]])
    fig = plot_confusion_matrix(matrix, classes=["a", "b", "c"])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == [str(v) for v in matrix.ravel()]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    np.testing.assert_allclose(ax.images[0].get_array(), matrix / matrix.sum(axis=1, keepdims=True))
    with pytest.raises(ValueError, match="square"):
        plot_confusion_matrix(np.ones((2, 3)))
    with pytest.raises(ValueError, match="3 labels"):
        plot_confusion_matrix(matrix, classes=["a"])


@pytest.mark.parametrize("matrix, words", [
    ([[-1, 2], [0, 2]], "got -1 at row 0, column 0"),
    ([[1.0, 2.0], [np.nan, 2.0]], "got nan at row 1, column 0"),
    ([[1.0, np.inf], [0.0, 2.0]], "got inf at row 0, column 1"),
    ([[0.75, 0.25], [0.0, 1.0]], "got 0.75 at row 0, column 0"),  # shares, not counts
    ([[1, None], [0, 2]], "got None at row 0, column 1"),
    ([["a", "b"], ["c", "d"]], "got dtype <U1"),
])
def test_confusion_matrix_refuses_what_is_not_counts(matrix, words):
    # these were drawn as if they were counts (-1, nan) or failed inside numpy (strings)
    with pytest.raises(ValueError) as raised:
        plot_confusion_matrix(matrix)
    assert str(raised.value).startswith("matrix must hold counts (whole numbers >= 0)") and words in str(raised.value)


def test_confusion_matrix_counts_stored_as_floats_are_written_as_counts():
    ax = plot_confusion_matrix(np.array([[5.0, 1.0], [0.0, 3.0]])).axes[0]  # as np.loadtxt reads them back
    assert [t.get_text() for t in ax.texts] == ["5", "1", "0", "3"]


def test_evaluation_picture_has_matrix_and_per_class_bars():
    report = {"task": "classification", "n_samples": 10, "loss": 0.5, "accuracy": 0.7, "classes": [0, 1],
              "precision": [0.8, None], "recall": [1.0, 0.0], "support": [7, 3], "confusion_matrix": [[7, 0], [3, 0]]}
    fig = plot_evaluation(report)
    matrix_ax, bars_ax = fig.axes[:2]
    assert [t.get_text() for t in matrix_ax.texts] == ["7", "0", "3", "0"]
    bars = [patch.get_height() for patch in bars_ax.patches]
    assert bars[0] == 0.8 and np.isnan(bars[1]) and bars[2:] == [1.0, 0.0]


def test_save_figure_writes_atomically_in_the_format_of_the_suffix(tmp_path, classifier_history, monkeypatch):
    fig = plot_history(classifier_history)
    save_figure(fig, tmp_path / "curve.png")
    save_figure(fig, tmp_path / "curve.svg")
    assert (tmp_path / "curve.png").read_bytes().startswith(PNG_MAGIC)
    assert b"<svg" in (tmp_path / "curve.svg").read_bytes()[:500]
    with pytest.raises(ValueError, match=r"\.png"):
        save_figure(fig, tmp_path / "curve.bmp")

    def fail_halfway(file, **kwargs):
        file.write(b"half a picture")
        raise OSError("disk full")

    monkeypatch.setattr(fig, "savefig", fail_halfway)
    with pytest.raises(OSError):
        save_figure(fig, tmp_path / "curve.png")
    assert (tmp_path / "curve.png").read_bytes().startswith(PNG_MAGIC)  # the old picture stays
    assert sorted(os.listdir(tmp_path)) == ["curve.png", "curve.svg"]  # no temporary file left


def test_without_matplotlib_the_error_says_how_to_install_it(monkeypatch, classifier_history):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes "import matplotlib" fail
    with pytest.raises(ImportError, match=r'pip install "fastmlp\[plot\]"'):
        plot_history(classifier_history)


def test_import_fastmlp_does_not_import_matplotlib():
    code = "import sys, fastmlp, fastmlp.cli, fastmlp.plot; print('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tempfile.gettempdir()).stdout.strip() == "False"


def run(capsys, *argv):
    status = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_train_plot_writes_the_learning_curves(capsys, tiny_mnist_dir, tmp_path):
    import json

    target = tmp_path / "curve.png"
    status, out, err = run(capsys, "train", "--data", tiny_mnist_dir, "--layers", "784,8,10", "--backend", "numpy",
                           "--epochs", "2", "--validation-fraction", "0.2", "--plot", target, "--json")
    assert status == 0, err
    assert json.loads(out)["plot"] == str(target)
    assert target.read_bytes().startswith(PNG_MAGIC)


@pytest.mark.parametrize("name, words", [
    ("missing/curve.png", "does not exist"),
    ("curve.jpeg", "must end in .png"),
    ("a-file/curve.png", "not a directory"),
])
def test_train_plot_path_is_refused_before_training(capsys, tmp_path, name, words):
    (tmp_path / "a-file").write_text("")
    # --data without MNIST: a check that waited for the data would fail with status 1
    status, out, err = run(capsys, "train", "--data", tmp_path, "--plot", tmp_path / name)
    assert status == 2 and out == "" and err.count("\n") == 1
    assert "--plot" in err and words in err


def test_train_plot_into_an_unwritable_directory_is_refused(capsys, tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.geteuid() == 0:  # root may write anywhere (CI runs as root): the directory says it is not writable
        real = os.access
        monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if os.fspath(path) == str(locked) else real(path, mode, **kw))
    status, out, err = run(capsys, "train", "--data", tmp_path, "--plot", locked / "curve.png")
    assert status == 2 and "not writable" in err


def test_train_plot_without_matplotlib_fails_before_training(capsys, tiny_mnist_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    status, out, err = run(capsys, "train", "--data", tiny_mnist_dir, "--backend", "numpy", "--plot", tmp_path / "c.png")
    assert status == 1 and out == "" and err.count("\n") == 1
    assert "fastmlp[plot]" in err
    assert not (tmp_path / "c.png").exists()


# --- what the pictures show (a plot-audit's mutants of plot.py passed every test above) ---------


def test_validation_values_of_an_older_history_are_drawn_at_its_last_epochs():
    # a history whose validation list is shorter (validation came later): at the epochs it ends on
    history = {"epoch": [1, 2, 3], "loss": [3, 2, 1], "accuracy": [0.1, 0.2, 0.3], "val_loss": [2.5], "val_accuracy": [0.25]}
    loss_ax, accuracy_ax = plot_history(history).axes
    assert list(loss_ax.get_lines()[1].get_xdata()) == [3]
    assert list(accuracy_ax.get_lines()[1].get_xdata()) == [3]
    assert list(loss_ax.get_xticks()) == [1, 2, 3]  # whole epochs


def test_confusion_matrix_rows_are_the_classes_and_counts_are_legible():
    ax = plot_confusion_matrix(np.array([[9, 1], [1, 9]]), classes=["a", "b"]).axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]
    assert [t.get_color() for t in ax.texts] == ["white", "black", "black", "white"]  # on dark cells, white
    assert len(plot_confusion_matrix(np.eye(20, dtype=int)).axes[0].texts) == 400  # counts written up to 20 classes


def test_regression_evaluation_draws_the_target_against_the_first_output():
    report = {"task": "regression", "n_samples": 3, "loss": 0.1, "r2": 0.9}
    outputs = np.array([[10.0, -1.0], [20.0, -2.0], [30.0, -3.0]])
    ax = plot_evaluation(report, targets=np.array([1.0, 2.0, 3.0]), outputs=outputs).axes[0]
    np.testing.assert_array_equal(ax.collections[0].get_offsets(), [[1, 10], [2, 20], [3, 30]])


def test_evaluation_bars_are_labelled_with_the_classes():
    report = {"task": "classification", "n_samples": 10, "loss": 0.5, "accuracy": 0.7, "classes": [0, 1],
              "precision": [0.8, 0.5], "recall": [1.0, 0.0], "support": [7, 3], "confusion_matrix": [[7, 0], [3, 0]]}
    assert [t.get_text() for t in plot_evaluation(report).axes[1].get_xticklabels()] == ["0", "1"]


def test_save_figure_takes_an_upper_case_suffix(tmp_path):
    from matplotlib.figure import Figure

    figure = Figure()
    figure.subplots().plot([1, 2])
    save_figure(figure, tmp_path / "a.PNG")
    assert (tmp_path / "a.PNG").read_bytes()[:8] == PNG_MAGIC


def test_save_figure_takes_a_bytes_path(tmp_path):
    from matplotlib.figure import Figure

    figure = Figure()
    figure.subplots().plot([1, 2])
    save_figure(figure, os.fsencode(tmp_path / "b.png"))  # its suffix was b".png", not a picture's type
    assert (tmp_path / "b.png").read_bytes()[:8] == PNG_MAGIC


def test_plot_history_of_arrays_draws_or_names_the_problem():
    # audit 80: a dict of arrays (a history saved with np.savez and read back, a DataFrame's
    # columns) ended in NumPy's "The truth value of an array ... is ambiguous", which names nothing
    # now drawn as lists are
    history = {"epoch": np.array([1, 2]), "loss": np.array([1.0, 0.5]), "accuracy": np.array([0.5, 0.6])}
    fig = plot_history(history)
    np.testing.assert_allclose(fig.axes[0].get_lines()[0].get_ydata(), [1.0, 0.5])
