"""klog-formatted log lines (``I1127 09:40:00.123456    4242 file.go:12] msg``).

The kubelet, kube-proxy and hybrid-overlay-node are Go programs logging through klog; their
lines carry the severity letter, the date and time, a thread id and the source location. Where a
line goes (the service log, a ``--logfile``) is the caller's choice: :class:`Klog` writes to a sink.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable

__all__ = ["Klog"]


class Klog:
    """Writes klog lines to a sink; ``verbosity`` filters ``info(..., v=n)``."""

    def __init__(self, sink: Callable[[str], None], verbosity: int = 2) -> None:
        self._sink = sink
        self.verbosity = verbosity
        self._pid = 4000 + random.randrange(4000)

    def _write(self, severity: str, source: str, message: str) -> None:
        now = dt.datetime.now(dt.UTC)
        self._sink(f"{severity}{now:%m%d} {now:%H:%M:%S.%f} {self._pid:>7} {source}] {message}")

    def info(self, source: str, message: str, *, v: int = 0) -> None:
        """Log at info level, if the verbosity is at least ``v``."""
        if v <= self.verbosity:
            self._write("I", source, message)

    def warning(self, source: str, message: str) -> None:
        """Log a warning."""
        self._write("W", source, message)

    def error(self, source: str, message: str) -> None:
        """Log an error."""
        self._write("E", source, message)

    def fatal(self, source: str, message: str) -> None:
        """Log a fatal error (the program exits after it)."""
        self._write("F", source, message)
