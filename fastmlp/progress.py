"""Progress bars through tqdm: a text bar on a terminal, a widget in Jupyter, nothing otherwise.

``tqdm.auto`` draws the notebook widget inside a Jupyter kernel (when ipywidgets is installed)
and the text bar everywhere else. Whether a bar is drawn at all is decided here, once, for the
trainer and the downloader alike: ``enabled=True`` always, ``False`` never, and ``None`` (the
default) only where someone is watching (stderr is a terminal, or the widget is available),
so piped or logged runs carry no carriage-return noise.
"""

from __future__ import annotations

import sys


def _tqdm():
    # Imported on first use: tqdm.auto brings asyncio along, a twentieth of a second that
    # ``import fastmlp`` need not pay.
    from tqdm.auto import tqdm

    return tqdm


def shown_by_default(stream=None):
    """True when a bar on ``stream`` (default stderr) would be seen: a terminal, or Jupyter."""
    # tqdm.auto's class derives from the notebook bar only when it chose the Jupyter widget.
    if any(cls.__module__ == "tqdm.notebook" for cls in _tqdm().__mro__):
        return True
    stream = sys.stderr if stream is None else stream
    return stream is not None and hasattr(stream, "isatty") and stream.isatty()


def progress_bar(total, description, *, enabled=None, stream=None, **options):
    """A ``tqdm.auto`` bar over ``total`` units labelled ``description``, drawn on ``stream``
    (default stderr) when ``enabled`` (None: ``shown_by_default``); ``options`` go to tqdm
    (``unit``, ``unit_scale``, ...). A disabled bar writes nothing and costs nothing.

    The caller drives it with ``update(n)`` and ``set_postfix(loss=...)`` and must ``close()``
    it (or use it as a context manager); a closed bar stays on its line.
    """
    stream = sys.stderr if stream is None else stream
    if enabled is None:
        enabled = shown_by_default(stream)
    return _tqdm()(total=total, desc=description, disable=not enabled, file=stream, **options)
