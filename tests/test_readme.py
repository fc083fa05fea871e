"""The README's examples run as written and show what the README says they show.

Every ```python block of the README is either run here, in order and in one namespace as a
reader pastes them, or listed in ``NOT_RUN`` with the reason; a new block fails
``test_every_python_block_is_run_or_said_why_not`` until it is one or the other. They run on the
first 6,000 training and 1,000 test images of MNIST (``FASTMLP_DATA`` pointed at a copy of
them), so that the scikit-learn drop-in's default fit takes about 1 s, not the 20 s it takes on
all 60,000 (2026-12-07, AMD EPYC Zen 4, BENCHMARKS.md session 67). The command-line walk-through
of "Using a saved model" runs on the whole of MNIST: the evaluation the README prints is compared line by line.
Every other fastmlp command in the README (its sh blocks, inline code, the accuracy table's rows)
is parsed by the CLI's own parser, so that a renamed option cannot leave one stale.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastmlp
from fastmlp.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
TRAIN_SUBSET, TEST_SUBSET = 6000, 1000
PROCESS_SECONDS = 300

# the blocks run here, each named by a line of its own
RUN_HERE = ["fastmlp.load_mnist()   # uint8", "from fastmlp import MLPClassifier", "fastmlp.plot_history(history)",
            "if __name__ == \"__main__\":  # in a script", "# train.py, started as: mpiexec"]
# the blocks not run here, and why
NOT_RUN = {
    "from dask_jobqueue import SLURMCluster": "needs dask_jobqueue and a SLURM cluster; the same "
    "fastmlp.sweep call on a local Dask client is tests/test_sweep.py's",
}


def python_blocks():
    """The README's python blocks, in order."""
    return re.findall(r"^```python\n(.*?)^```", README.read_text(), re.S | re.M)


def block(marker):
    """The README's python block that holds ``marker``."""
    (source,) = [source for source in python_blocks() if marker in source]
    return source


@pytest.fixture
def subset_dir(mnist, synth, tmp_path):
    """FASTMLP_DATA for the examples: the first TRAIN_SUBSET / TEST_SUBSET images of MNIST."""
    X_train, y_train, X_test, y_test = mnist
    directory = tmp_path / "mnist-subset"
    directory.mkdir()
    for name, array, magic in [("train-images-idx3-ubyte", X_train[:TRAIN_SUBSET].reshape(-1, 28, 28), 2051),
                               ("train-labels-idx1-ubyte", y_train[:TRAIN_SUBSET], 2049),
                               ("t10k-images-idx3-ubyte", X_test[:TEST_SUBSET].reshape(-1, 28, 28), 2051),
                               ("t10k-labels-idx1-ubyte", y_test[:TEST_SUBSET], 2049)]:
        synth.write_idx(directory / name, array, magic)
    return directory


def test_every_python_block_is_run_or_said_why_not():
    markers = [*RUN_HERE, *NOT_RUN]
    # each block holds exactly one marker, and each marker is in exactly one block
    assert [sum(m in source for m in markers) for source in python_blocks()] == [1] * len(python_blocks())
    assert all(sum(m in source for source in python_blocks()) == 1 for m in markers)


@pytest.mark.mnist
def test_the_python_api_blocks_run_in_order_and_say_what_they_show(subset_dir, tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.setenv("FASTMLP_DATA", str(subset_dir))
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "readme"}

    exec(compile(block(RUN_HERE[0]), "README: Python API", "exec"),
         namespace)
    X_train, y_train, X_test, y_test = (namespace[k] for k in ("X_train", "y_train", "X_test", "y_test"))
    # its comments: uint8 [N, 784], int64 [N]; evaluate's keys; score is the accuracy
    assert X_train.dtype == np.uint8 and X_train.shape == (TRAIN_SUBSET, 784) and y_train.dtype == np.int64
    assert X_test.shape == (TEST_SUBSET, 784) and y_train.shape == (TRAIN_SUBSET,)
    model, history = namespace["model"], namespace["history"]
    evaluation = model.evaluate(X_test, y_test)
    assert set(evaluation) == {"loss", "accuracy"}
    assert model.score(X_test, y_test) == evaluation["accuracy"] == pytest.approx(history.val_accuracy[-1])
    assert 0.8 < evaluation["accuracy"] <= 1 and history.samples_per_second[-1] > 0
    loaded = fastmlp.MLP.load("model.npz")
    np.testing.assert_array_equal(loaded.predict_proba(X_test), model.predict_proba(X_test))

    exec(compile(block(RUN_HERE[1]), "README: scikit-learn drop-in", "exec"), namespace)
    clf = namespace["clf"]
    assert clf.n_iter_ == len(clf.loss_curve_) >= 2 and clf.loss_curve_[-1] < clf.loss_curve_[0]
    assert [c.shape for c in clf.coefs_] == [(784, 100), (100, 10)]
    assert 0.85 < clf.score(namespace["X_t"], y_test) <= 1

    exec(compile(block(RUN_HERE[2]), "README: pictures", "exec"), namespace)
    assert Path("curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    matrix = namespace["matrix"]
    assert matrix.shape == (10, 10) and matrix.sum() == TEST_SUBSET
    assert np.trace(matrix) == round(evaluation["accuracy"] * TEST_SUBSET)


@pytest.mark.mnist
def test_the_sweep_block_runs_as_the_script_it_says_it_is(subset_dir, tmp_path):
    # its `if __name__ == "__main__":` is the point: the workers (processes) import the script again
    script = tmp_path / "sweep_example.py"
    script.write_text(block(RUN_HERE[3]))
    env = dict(os.environ, FASTMLP_DATA=str(subset_dir))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=PROCESS_SECONDS)
    assert done.returncode == 0, done.stderr
    *table, best = done.stdout.strip().splitlines()
    # four trials, the grid's two values of each; the best line: its parameters and accuracy
    assert sum(bool(re.search(r"\b0\.(05|1)\b.*\b(32|128)\b", line)) for line in table) == 4, done.stdout
    params, accuracy = re.fullmatch(r"(\{.*\}) (0\.\d+)", best).groups()
    assert "'lr'" in params and "'batch_size'" in params and 0.8 < float(accuracy) <= 1


@pytest.mark.mnist
def test_the_mpi_script_block_prints_one_score_from_rank_0(subset_dir, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(block(RUN_HERE[4]))
    env = dict(os.environ, FASTMLP_DATA=str(subset_dir), NUMBA_NUM_THREADS="1")
    done = subprocess.run([mpiexec(), "-n", "2", sys.executable, str(script)], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=PROCESS_SECONDS)
    assert done.returncode == 0, done.stderr
    printed = done.stdout.split()
    assert len(printed) == 1 and 0.8 < float(printed[0]) <= 1, done.stdout


def mpiexec():
    """mpiexec next to this Python (the mpich wheel's), or on PATH, with mpi4py importable; else a skip."""
    pytest.importorskip("mpi4py", reason='mpi4py is not installed: pip install "fastmlp[mpi]"')
    local = Path(sys.executable).with_name("mpiexec")
    command = str(local) if local.exists() else shutil.which("mpiexec")
    if command is None:
        pytest.skip('no mpiexec found: pip install "fastmlp[mpi]" (the mpich wheel brings one)')
    return command


def readme_output(after):
    """The lines of the README's first plain (output) block after the line ``after``, '...' left out."""
    text = README.read_text()
    text = text[text.index(after):]
    shown = next(m.group(2) for m in re.finditer(r"^```(\w*)\n(.*?)^```$", text, re.S | re.M) if not m.group(1))
    return [line for line in shown.splitlines() if line.strip() != "..."]


def same_figures(shown, printed):
    """Whether two lines have the same words and figures: decimals within 0.002 and counts within 3
    of each other, a line's first word (a class) exactly."""
    # (a figure's punctuation apart: "0.9615," is the figure 0.9615, then a comma)
    shown, printed = (re.findall(r"\d+\.\d+|\d+|[^\s\d]+", line) for line in (shown, printed))
    if len(shown) != len(printed) or shown[:1] != printed[:1]:
        return False
    for a, b in zip(shown, printed):
        if re.fullmatch(r"\d+\.\d+", a) and re.fullmatch(r"\d+\.\d+", b):
            if abs(float(a) - float(b)) > 0.002:
                return False
        elif re.fullmatch(r"\d+", a) and re.fullmatch(r"\d+", b):
            if abs(int(a) - int(b)) > 3:
                return False
        elif a != b:
            return False
    return True


@pytest.mark.mnist
def test_the_saved_model_walk_through_runs_and_evaluate_prints_what_the_readme_shows(mnist, capsys, tmp_path,
                                                                                    monkeypatch):
    # the README's commands, each as written (fastmlp train's defaults on the whole of MNIST); the
    # evaluation it prints is the README's, to the README's own caveat on the last digits
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    X_test = mnist[2]
    np.save("digits.npy", X_test[:5])
    text = README.read_text()
    walk = re.search(r"^```sh\n(fastmlp train --save model\.npz.*?)^```", text, re.S | re.M).group(1)
    commands = [line.split()[1:] for line in walk.splitlines()]
    assert [c[0] for c in commands] == ["train", "evaluate", "predict", "predict"]
    test_images = [path for name in ("t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte")
                   if (path := Path(os.environ["FASTMLP_DATA"]) / name).exists()][0]
    outputs = []
    for argv in commands:
        argv = [str(test_images) if a == "t10k-images-idx3-ubyte.gz" else a for a in argv]
        status = main([*argv, "--no-progress"] if argv[0] == "train" else argv)
        out, err = capsys.readouterr()
        assert status == 0, err
        outputs.append(out)
    shown = readme_output("## Using a saved model")
    printed = outputs[1].splitlines()
    at = 0  # each line shown is printed, in order, with its figures as shown (to the README's caveat:
    # "the last digits can follow the CPU kind")
    for line in shown:
        matches = [k for k in range(at, len(printed)) if same_figures(line, printed[k])]
        assert matches, f"the README shows {line!r}; evaluate printed:\n{outputs[1]}"
        at = matches[0] + 1
    labels = np.loadtxt("labels.csv", dtype=np.int64, skiprows=1, ndmin=1)  # under a header
    proba = np.load("proba.npy")
    assert proba.shape == (10000, 10) and np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    np.testing.assert_array_equal(labels, proba[:5].argmax(axis=1))
    assert all(Path(name).stat().st_size > 0 for name in ("model.npz", "curve.png", "evaluation.png"))


def readme_commands():
    """[(where, argv after 'fastmlp')] of every fastmlp command in the README's sh blocks (each
    line, after a shell's `&&`, continuation lines joined) and in its inline code spans."""
    text = README.read_text()
    commands = []
    for body in re.findall(r"^```sh\n(.*?)^```$", text, re.S | re.M):
        for line in body.replace("\\\n", " ").splitlines():
            for part in line.split(" #")[0].split("&&"):
                found = re.search(r"(?:^|\s)(?:python -m )?fastmlp (\w.*)$", part.strip())
                if found:
                    commands.append(("sh", found.group(1)))
    for span in re.findall(r"`(?:python -m )?fastmlp ([^`]+)`", text):
        # a mention of a command or option ("`fastmlp train --save`", "`--threads N|auto`") is
        # not a command: placeholders in capitals, alternatives, a pipe
        if not re.search(r"\b[A-Z]{1,5}\b|\|", span):
            commands.append(("inline", span.replace("\n", " ")))
    # the accuracy table's rows: "`fastmlp train --json --no-progress` plus" the row's options
    commands += [("table", "train --json --no-progress " + options) for options in accuracy_table_options()]
    return commands


def accuracy_table_options():
    """The option strings of the README's "Accuracy against the literature" table, row by row."""
    text = README.read_text()
    table = text[text.index("### Accuracy against the literature"):]
    table = table[table.index("\n| network"):].split("\n\n")[0]
    return re.findall(r"^\|.*\| `(--layers [^`]+)` \|\s*$", table, re.M)


def test_the_accuracy_tables_commands_are_bench_accuracy_table_sh_s():
    # the script that re-measures the table runs the table's commands, all of them
    script = (README.parent / "bench" / "accuracy_table.sh").read_text()
    listed = script.split("<<'LIST'\n")[1].split("\nLIST\n")[0].splitlines()
    assert len(accuracy_table_options()) == 5 and accuracy_table_options() == listed


def test_every_fastmlp_command_in_the_readme_parses(tmp_path, monkeypatch):
    # a renamed or removed option leaves the README's commands stale; files they name need not exist
    import argparse
    import contextlib
    import io
    import shlex

    from fastmlp import cli

    monkeypatch.chdir(tmp_path)
    parser = cli.build_parser()
    commands = readme_commands()
    stale = []
    for where, command in commands:
        said = io.StringIO()
        try:
            with contextlib.redirect_stderr(said), contextlib.redirect_stdout(io.StringIO()):
                parser.parse_args(shlex.split(command))
        except (SystemExit, argparse.ArgumentError, cli.UsageError) as error:
            message = str(error) + said.getvalue()
            mention = where == "inline" and re.search(r"expected one argument|arguments are required", message)
            if "no such file" not in message and not mention and getattr(error, "code", 1):
                stale.append((command, message.strip()))
    assert sum(where == "sh" for where, _ in commands) >= 10 and len(commands) >= 60
    assert stale == []


def test_the_contents_list_every_section_and_each_link_finds_its_heading():
    text = README.read_text()
    outside_code = re.sub(r"^```.*?^```$", "", text, flags=re.S | re.M)
    headings = re.findall(r"^#{2,3} (.+)$", outside_code, re.M)
    links = re.findall(r"^ *- \[(.+?)\]\(#([\w-]+)\)$", text.split("## Two commands")[0], re.M)

    def anchor(title):  # GitHub's: lower case, punctuation dropped, spaces to hyphens
        return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")

    assert [title for title, _ in links] == headings
    assert all(target == anchor(title) for title, target in links)


def test_every_file_the_readme_names_is_in_the_repository():
    # a renamed test file or script leaves the README pointing at nothing
    root = README.parent
    named = set(re.findall(r"\b((?:tests|bench|examples|fastmlp|kernels)/[\w./-]+\.(?:py|sh|ipynb|patch|md|toml))\b",
                           README.read_text()))
    assert len(named) >= 30 and sorted(path for path in named if not (root / path).exists()) == []


def test_the_mpi_script_is_started_so_that_an_error_before_fit_ends_every_rank():
    """The README's script (``mpiexec -n 2 python train.py``) loads the data before fit: a rank
    whose node lacks it raised DataNotFoundError there, outside fastmlp's distributed call, and the
    other rank spun at 100% CPU in fit's first collective for ever (the failed rank waited in
    MPI_Finalize). ``python -m mpi4py train.py`` ends every rank at an uncaught exception (MPI_Abort,
    1 s here): the README starts its script so (audit 78; tests/test_distributed.py runs both ways)."""
    source = block(RUN_HERE[4])
    assert "python -m mpi4py train.py" in source, source.splitlines()[0]
