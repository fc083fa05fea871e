"""Progress bars through tqdm: a text bar on a terminal, a widget in Jupyter, nothing otherwise.

Inside a Jupyter kernel the bar is tqdm's notebook widget when ipywidgets is installed, and
tqdm's text bar otherwise (which Jupyter draws in place: ``tqdm.auto`` would warn "IProgress not
found" there and draw nothing); elsewhere the text bar. Whether a bar is drawn at all is decided
here, once, for the trainer, the compile notice and the downloader alike: ``enabled=True``
always, ``False`` never, and ``None`` (the default) only where someone is watching (stderr is a
terminal, or a Jupyter kernel's), so piped or logged runs carry no carriage-return noise.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import threading


def ipython_shell():
    """The running IPython shell (terminal IPython or a Jupyter kernel), or None."""
    ipython = sys.modules.get("IPython")
    try:
        return None if ipython is None else ipython.get_ipython()
    except Exception:  # noqa: BLE001 - another IPython's internals, or one being torn down at exit
        return None


def _in_jupyter():
    """Whether this process is a Jupyter kernel (IPython's kernel app, as tqdm.autonotebook tells)."""
    shell = ipython_shell()
    try:
        return shell is not None and "IPKernelApp" in shell.config
    except Exception:  # noqa: BLE001 - another IPython's internals: no kernel, as far as anyone can tell
        return False


def _tqdm():
    # Imported on first use: tqdm's import costs a warm start time that ``import fastmlp`` need
    # not pay.
    if _in_jupyter() and importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.notebook import tqdm
    else:
        from tqdm.std import tqdm
    return tqdm


def shown_by_default(stream=None):
    """True when a bar on ``stream`` (default stderr) would be seen: a terminal, or Jupyter."""
    if _in_jupyter():
        return True
    stream = sys.stderr if stream is None else stream
    return stream is not None and hasattr(stream, "isatty") and stream.isatty()


def progress_bar(total, description, *, enabled=None, stream=None, **options):
    """A tqdm bar (``_tqdm``) over ``total`` units labelled ``description``, drawn on ``stream``
    (default stderr) when ``enabled`` (None: ``shown_by_default``); ``options`` go to tqdm
    (``unit``, ``unit_scale``, ...). A disabled bar writes nothing and costs nothing.

    The caller drives it with ``update(n)`` and ``set_postfix(loss=...)`` and must ``close()``
    it (or use it as a context manager); a closed bar stays on its line.
    """
    stream = sys.stderr if stream is None else stream
    if enabled is None:
        enabled = shown_by_default(stream)
    if not enabled:
        # without importing tqdm (a twentieth of a warm start's second), and without a disabled
        # tqdm bar: its constructor starts tqdm's monitor thread, which then ran for the life of
        # the process (a service's default fit with stderr not a terminal; audit 51)
        return _NoBar(total)
    return _tqdm()(total=total, desc=description, file=stream, **options)


class _NoBar:
    """A bar that is never drawn: the part of tqdm's interface that fastmlp's callers use."""

    def __init__(self, total):
        self.total = total
        self.n = 0

    def update(self, n=1):
        self.n += n

    def set_postfix(self, *args, **kwargs):
        pass

    def reset(self, total=None):
        self.n = 0
        if total is not None:
            self.total = total

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


class compile_notice:
    """``with compile_notice("784-128-10 float32 mini-batch", enabled=progress):`` around the
    kernels' warm-up: once Numba has started a compile in it (a cache miss: Numba's
    "numba:compile" event, which loading a cached kernel never sends) and the block has run for
    ``after`` seconds, one line on ``stream`` says what is being compiled and that it is cached
    afterwards, and a second one at the end how long it took (``done``: "compiled in N s"; a block
    that does more than compile says what). A time alone does not tell: a warm
    cache took 0.45-0.9 s to load on an AMD EPYC Zen 2 (2026-12-04). ``enabled`` as
    ``progress_bar``'s."""

    def __init__(self, what, *, enabled=None, stream=None, after=0.5, done="compiled"):
        import time

        self._time = time.perf_counter
        self.stream = sys.stderr if stream is None else stream
        self.what = what
        self.done = done
        if enabled is None:  # (a Jupyter kernel too: a cold first cell sat silent for its compile)
            enabled = shown_by_default(self.stream)
        self.enabled = bool(enabled)
        self.shown = False
        self._due = False  # ``after`` seconds have passed
        self._compiling = False  # Numba has started a compile
        self._lock = threading.Lock()
        self._timer = threading.Timer(after, self._time_is_up) if self.enabled else None
        self._listening = None

    def _time_is_up(self):
        with self._lock:
            self._due = True
            self._show_if_both()

    def _compile_started(self):
        with self._lock:
            self._compiling = True
            self._show_if_both()

    def _show_if_both(self):  # under the lock
        if self._timer is None or self.shown or not (self._due and self._compiling):
            return
        self.shown = True
        self.stream.write(f"compiling the numba kernels for {self.what} (first run only: cached on disk afterwards)...\n")
        self.stream.flush()

    def __enter__(self):
        self._started = self._time()
        if self._timer is not None:
            self._listening = _listen_for_compiles(self._compile_started)
            self._timer.daemon = True
            self._timer.start()
        return self

    def __exit__(self, *exc):
        with self._lock:
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        if self._listening is not None:
            self._listening.__exit__(None, None, None)
            self._listening = None
        if self.shown:
            seconds = self._time() - self._started
            self.stream.write(f"{self.done} in {seconds:.1f} s\n" if exc[0] is None else
                              f"compiling stopped after {seconds:.1f} s ({exc[0].__name__})\n")
            self.stream.flush()
        return False


def _listen_for_compiles(started):
    """An entered context that calls ``started()`` at the start of every compile Numba begins
    until it is exited (Numba's "numba:compile" events, which cache loads do not send), or a
    no-op context where Numba has no such events."""
    try:
        from numba.core import event
    except ImportError:
        return contextlib.nullcontext()

    class Listener(event.Listener):
        def on_start(self, ev):
            started()

        def on_end(self, ev):
            pass

    listening = event.install_listener("numba:compile", Listener())
    listening.__enter__()
    return listening


def _callback_codes():
    """The code of llvmlite's ctypes callbacks (its object cache's) that Numba's compiles run:
    an exception raised inside one is printed ("Exception ignored on calling ctypes callback
    function", a traceback) and dropped."""
    try:
        from llvmlite.binding.executionengine import ExecutionEngine
    except ImportError:
        return set()
    names = ("_raw_object_cache_notify", "_raw_object_cache_getbuffer")
    return {getattr(ExecutionEngine, name).__code__ for name in names if hasattr(ExecutionEngine, name)}


CALLBACK_CODES = None  # (filled at the first signal: _in_a_callback)


def _in_a_callback(frame):
    """Whether ``frame``, or a frame it was called from, runs one of CALLBACK_CODES."""
    global CALLBACK_CODES
    if CALLBACK_CODES is None:
        CALLBACK_CODES = _callback_codes()
    while frame is not None:
        if frame.f_code in CALLBACK_CODES:
            return True
        frame = frame.f_back
    return False


@contextlib.contextmanager
def signals_held():
    """Within it, SIGINT and SIGTERM wait, and are delivered as it ends (KeyboardInterrupt, or
    what their handlers do): for a few lines that must run whole (an epoch's record in the
    history and the run, which an interrupt between them left one epoch apart)."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    for number, handler in previous.items():
        if handler is not None:
            signal.signal(number, lambda number, frame: received.append(number))
    try:
        yield
    finally:
        for number, handler in previous.items():
            if handler is not None:
                signal.signal(number, handler)
    if received:
        _deliver(previous[received[0]], received[0])


def _deliver(handler, number, frame=None):
    """Do what ``handler`` (a signal's handler before fastmlp's) does with signal ``number``."""
    import signal

    if callable(handler):
        handler(number, frame)  # Python's KeyboardInterrupt, the CLI's Terminated, ...
    elif handler == signal.SIG_DFL:
        signal.signal(number, signal.SIG_DFL)
        signal.raise_signal(number)  # the default action: the process ends


@contextlib.contextmanager
def signals_not_lost():
    """Around a compile: SIGINT and SIGTERM act as usual (KeyboardInterrupt, or what their
    handlers do), but one that arrives while LLVM generates code is handled inside its ctypes
    callback, which prints and drops the exception: the compile then went on (the signal lost:
    a batch system's time-out ignored) or failed with Numba's "no compiled object yet". A
    signal received here is delivered again when the compile ends, or in place of its error."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}

    def deliver(number, frame):
        _deliver(previous[number], number, frame)

    def record(number, frame):
        received.append(number)
        if not _in_a_callback(frame):  # there the exception would be printed and dropped: deliver it after
            deliver(number, frame)

    for number in previous:
        if previous[number] is not None:
            signal.signal(number, record)
    try:
        try:
            yield
        except Exception as error:
            if not received:
                raise
            failure = error
        else:
            failure = None
    finally:
        for number, handler in previous.items():
            if handler is not None:
                signal.signal(number, handler)
    if received:  # the handler's exception did not come through: deliver it again
        try:
            deliver(received[0], None)
        except BaseException as interrupt:
            raise interrupt from failure
        if failure is not None:
            raise failure
