"""HTML escaping for the views, and the terminal fallback progress display.

Outside Jupyter (plain Python, CI logs) ``ak.live()`` prints a compact line
(status, step, loss, ETA). On a terminal it rewrites one line at most twice a
second; in a log file it prints at most one line every ``log_interval``
seconds plus one per checkpoint and one at the end, so a million-step run
adds a few hundred lines, not a million.
"""

from __future__ import annotations

import html
import sys
from collections import deque
from typing import Any, TextIO

from arkor_nb.core.contexts import StreamNotice
from arkor_nb.core.format import describe_notice, status_line


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


class TextProgress:
    """Throttled text progress for terminals and log files (see module docstring)."""

    def __init__(self, stream: TextIO | None = None, *, log_interval: float = 10.0,
                 tty_interval: float = 0.5) -> None:
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty and isatty())
        self.interval = tty_interval if self.tty else log_interval
        self._last_print: float | None = None
        self._last_ckpts = 0
        self._last_line = ""
        self._notices: deque[str] = deque()  # reconnect lines, printed on the next update

    def update(self, state: Any, now: float, *, final: bool = False) -> None:
        summary = state.summary()
        for step in summary["checkpoints"][self._last_ckpts:]:
            self._emit(f"checkpoint saved at step {step}", newline=True)
        self._last_ckpts = len(summary["checkpoints"])
        while self._notices:  # never silent: every reconnect gets its own line
            self._emit(self._notices.popleft(), newline=True)
        due = self._last_print is None or now - self._last_print >= self.interval
        if not (due or final):
            return
        line = status_line(summary)
        if line == self._last_line and not final:
            return
        self._last_print = now
        self._last_line = line
        self._emit(line, newline=final or not self.tty)

    def notice(self, item: StreamNotice) -> None:
        """Queue a reconnect notice (attempt, next delay, last error) for printing.
        Called from the streaming loop: only an append."""
        if item.kind == "reconnecting" and item.error is not None:
            self._notices.append(describe_notice(item)[0])

    def _emit(self, line: str, *, newline: bool) -> None:
        if self.tty:
            self.stream.write("\r\x1b[2K" + line + ("\n" if newline else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
