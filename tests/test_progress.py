"""The progress bar: drawn on a terminal, silent otherwise."""

import io

from fastmlp.progress import Progress


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_bar_is_drawn_on_a_terminal():
    stream = FakeTerminal()
    bar = Progress(100, "epoch 1/1", stream=stream)
    bar.update(100, loss=0.25)
    bar.close()
    text = stream.getvalue()
    assert "\r" in text and "epoch 1/1" in text and "100%" in text and "loss=0.25" in text
    assert text.endswith("\n")


def test_nothing_is_written_when_not_a_terminal():
    stream = io.StringIO()
    bar = Progress(100, "epoch 1/1", stream=stream)
    bar.update(50)
    bar.close()
    assert stream.getvalue() == "" and bar.done == 50
