"""A one-line progress bar on stderr, shown only on a terminal."""

from __future__ import annotations

import sys
import time


class Progress:
    """``Progress(total, "epoch 1/3")``; ``update(n, loss=0.3)``; ``close()``.

    Silent unless ``enabled`` (default: stderr is a terminal), so piped or logged runs
    carry no carriage-return noise.
    """

    def __init__(self, total, description="", enabled=None, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            enabled = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.enabled = bool(enabled)
        self.total = max(int(total), 1)
        self.description = description
        self.done = 0
        self.started = time.perf_counter()
        self._last_draw = 0.0

    def update(self, n, **postfix):
        self.done += n
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self._last_draw < 0.1 and self.done < self.total:
            return
        self._last_draw = now
        fraction = min(self.done / self.total, 1.0)
        width = 24
        filled = int(width * fraction)
        rate = self.done / max(now - self.started, 1e-9)
        extra = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in postfix.items())
        line = (
            f"\r{self.description} [{'#' * filled}{'.' * (width - filled)}] "
            f"{fraction:4.0%} {self.done}/{self.total} {rate:,.0f}/s {extra}"
        )
        self.stream.write(line.rstrip() + "\x1b[K")
        self.stream.flush()

    def close(self):
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
