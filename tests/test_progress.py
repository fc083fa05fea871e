"""Progress bars (tqdm): drawn on a terminal or when asked, silent otherwise; one per epoch."""

import io
import subprocess
import sys

import pytest
from tqdm.std import tqdm

import fastmlp
from fastmlp.progress import progress_bar


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def draw(stream, **options):
    bar = progress_bar(100, "epoch 1/1", stream=stream, **options)
    bar.set_postfix(loss=0.25, refresh=False)
    bar.update(100)
    bar.close()
    return stream.getvalue()


def test_bar_is_drawn_on_a_terminal():
    text = draw(FakeTerminal())
    assert "\r" in text and "epoch 1/1" in text and "100%" in text and "loss=0.25" in text
    assert text.endswith("\n")


def test_nothing_is_written_when_not_a_terminal():
    assert draw(io.StringIO()) == ""


def test_enabled_overrides_the_terminal_check():
    assert "100%" in draw(io.StringIO(), enabled=True)
    assert draw(FakeTerminal(), enabled=False) == ""


def test_a_bar_turned_off_does_not_import_tqdm(tmp_path):
    """progress=False (benchmarks, scripts) spares a warm start tqdm.auto's import (asyncio along)."""
    code = ("import sys, io; from fastmlp.progress import progress_bar\n"
            "with progress_bar(10, 'epoch 1/1', enabled=False, stream=io.StringIO()) as bar:\n"
            "    bar.set_postfix(loss=0.5, refresh=False); bar.update(10)\n"
            "assert bar.n == 10 and bar.total == 10\n"
            "assert not any(name.startswith('tqdm') for name in sys.modules), 'tqdm imported'\n")
    # (run outside the source tree: there ``import fastmlp`` would find the uninstalled sources)
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)


def test_a_default_fit_with_stderr_not_a_terminal_leaves_no_tqdm_thread(tmp_path):
    # a service's fit(progress=None) with stderr a pipe or file: a disabled tqdm bar started
    # tqdm's monitor thread, which ran for the life of the process (audit 51)
    code = ("import threading, numpy as np, fastmlp\n"
            "X = np.random.default_rng(1).integers(0, 256, (60, 20), dtype=np.uint8); y = X[:, 0] % 3\n"
            "fastmlp.MLP([20, 8, 3], backend='numpy').fit(X, y, epochs=2)\n"
            "names = [t.name for t in threading.enumerate()]\n"
            "assert not any('tqdm' in name for name in names), names\n"
            "import sys; assert 'tqdm' not in sys.modules, 'tqdm imported'\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    assert done.returncode == 0 and done.stderr == "", done.stderr


@pytest.mark.parametrize("widgets", [True, False])
def test_in_a_jupyter_kernel_the_bar_and_the_compile_notice_are_shown(monkeypatch, widgets):
    # In a Jupyter kernel stderr is no terminal, but the bar is seen: the widget where ipywidgets
    # is installed; without it tqdm.auto warned "IProgress not found" and drew nothing, so the
    # text bar (which Jupyter draws in place). The compile notice looked for a terminal only: a
    # cold first cell sat silent through its compile (audit 25)
    import types

    from fastmlp import progress

    assert not progress.shown_by_default(io.StringIO()) and progress._tqdm().__module__ == "tqdm.std"
    kernel = types.SimpleNamespace(config={"IPKernelApp": {}})
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: kernel))
    real_find_spec = progress.importlib.util.find_spec
    monkeypatch.setattr(progress.importlib.util, "find_spec",
                        lambda name, *a: (real_find_spec("json") if widgets else None) if name == "ipywidgets"
                        else real_find_spec(name, *a))
    assert progress.shown_by_default(io.StringIO())
    assert progress.compile_notice("784-8-10", stream=io.StringIO()).enabled
    if not widgets or real_find_spec("ipywidgets") is not None:  # (tqdm.notebook imports it)
        assert progress._tqdm().__module__ == ("tqdm.notebook" if widgets else "tqdm.std")


@pytest.fixture
def tiny_digits(rng, synth):
    return synth.digits(rng, 60)


def test_training_draws_one_bar_per_epoch_with_the_loss(tiny_digits, capsys):
    X, y = tiny_digits
    model = fastmlp.MLP([784, 8, 10], backend="numpy", seed=0)
    history = model.fit(X, y, epochs=3, batch_size=10, progress=True)
    err = capsys.readouterr().err
    assert err.count("\n") == 3  # each finished bar stays on its own line
    for epoch, loss in zip(history.epoch, history.loss):
        line = err.split("\n")[epoch - 1].split("\r")[-1]
        assert line.startswith(f"epoch {epoch}/3: 100%") and "60.0/60.0" in line  # unit_scale: 60000 shows as 60.0k
        assert f"loss={tqdm.format_num(loss)}" in line


@pytest.mark.parametrize("progress", [False, None], ids=["off", "default-not-a-terminal"])
def test_training_is_silent_unless_enabled(tiny_digits, capsys, progress):
    X, y = tiny_digits
    fastmlp.MLP([784, 8, 10], backend="numpy", seed=0).fit(X, y, epochs=2, batch_size=10, progress=progress)
    assert capsys.readouterr().err == ""


def test_a_one_sample_epoch_shows_that_samples_loss(tiny_digits, capsys):
    """The postfix is the epoch's mean loss so far: with a single sample, that sample's loss
    (a mean over max(done, k) samples, k > 1, halved it; audit 73)."""
    X, y = tiny_digits
    history = fastmlp.MLP([784, 8, 10], backend="numpy", seed=0).fit(X[:1], y[:1], epochs=1, progress=True)
    line = capsys.readouterr().err.split("\n")[0].split("\r")[-1]
    assert f"loss={tqdm.format_num(history.loss[0])}" in line
