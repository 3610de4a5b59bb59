"""Formatting shared by every view, and the terminal fallback progress display.

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
from arkor_nb.core.errors import (
    AbortedError,
    CloudApiError,
    JobNotFoundError,
    ReconnectExhaustedError,
)
from arkor_nb.core.events import (
    CheckpointEval,
    CheckpointSaved,
    TrainingCancelled,
    TrainingCompleted,
    TrainingFailed,
    TrainingLog,
    TrainingPhase,
    TrainingStarted,
)


def fnum(value: float | None, digits: int = 4) -> str:
    """A metric in a short, stable form: 0.1234, 1.2e-05, '–' when missing."""
    if value is None:
        return "–"
    if value != value:  # NaN
        return "nan"
    if value == 0:
        return "0"
    mag = abs(value)
    if mag >= 1e5 or mag < 1e-3:
        return f"{value:.{max(1, digits - 2)}e}"
    return f"{value:.{digits}g}"


def fsci(value: float, digits: int = 2) -> str:
    """A small number as compact scientific notation for axis ticks: 2.9e-3, 3e-4, 0.5."""
    if value == 0 or value != value:
        return fnum(value)
    if 1e-2 <= abs(value) < 1e4:
        return f"{value:.{max(digits, 1)}g}"
    mantissa, exp = f"{value:.{max(digits - 1, 0)}e}".split("e")
    if "." in mantissa:
        mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exp)}"


def fpct(value: float | None) -> str:
    """A score in [0, 1] as a percentage: 0.925 -> '92.5%', 1.0 -> '100%'."""
    if value is None or value != value:
        return "–"
    return f"{100 * value:.3g}%"


def fduration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def fix_for(error: BaseException) -> str:
    """What happened on the transport and what the user can do about it."""
    if isinstance(error, JobNotFoundError):
        return str(error)  # names the id and the backend; waiting will not help
    if isinstance(error, CloudApiError):
        if error.status in (401, 403):
            return (f"{error} — the backend refused the token: check ARKOR_TOKEN / "
                    "~/.arkor/credentials.json (or restart the local server), then "
                    "ak.live(job_id=...) to reattach")
        if error.status == 410:
            return f"{error} — the job's event stream is gone (job deleted or expired)"
        if error.status >= 500 or error.status in (404, 408, 429):
            return f"{error} — reattach with ak.live(job_id=...) when the backend is back"
        return str(error)  # 4xx: the server's message names the field and the fix
    if isinstance(error, ReconnectExhaustedError):
        return (f"{error} — the backend stopped answering; the job may still be running: "
                "reattach with ak.live(job_id=...) when it is reachable again, or raise "
                "ReconnectPolicy(max_attempts=...)")
    if isinstance(error, AbortedError):
        return "stopped watching (local stream aborted)"
    return f"{type(error).__name__}: {error}"


def _error_text(error: BaseException) -> str:
    """``Type: message`` (just the type when the message is empty), one line, not a page."""
    text = " ".join(str(error).split())
    if len(text) > 200:
        text = text[:199] + "…"
    name = type(error).__name__
    return f"{name}: {text}" if text else name


def describe_notice(n: StreamNotice) -> tuple[str, str]:
    """(text, level) for a client-side stream notice."""
    if n.kind == "reconnecting":
        # never silent (issue 11): which attempt, when the next try comes, what went wrong
        facts = [f"attempt {n.attempt}"] if n.attempt else []
        if n.delay is not None:
            facts.append(f"next in {n.delay:.1f} s")
        if n.error is not None:
            facts.append(f"last error: {_error_text(n.error)}")
            return f"stream interrupted; reconnecting ({', '.join(facts)})", "warn"
        # a clean close after data: not a failure, the stream just resumes
        return f"stream closed by the backend; reconnecting ({', '.join(facts)})", "warn"
    if n.kind == "aborted":
        return "stopped watching (local stream aborted)", "warn"
    if n.kind == "error":
        if n.error is not None:
            return fix_for(n.error), "error"
        return "stream error", "error"
    return "connected", "info"


def describe(item: Any) -> str:
    """One event-log line (plain text)."""
    if isinstance(item, TrainingLog):
        parts = [f"step {item.step}"]
        if item.loss is not None:
            parts.append(f"loss {fnum(item.loss)}")
        if item.eval_loss is not None:
            parts.append(f"eval {fnum(item.eval_loss)}")
        if item.learning_rate is not None:
            parts.append(f"lr {fsci(item.learning_rate, 3)}")  # as the chart's axis: 2.96e-3
        return " · ".join(parts)
    if isinstance(item, TrainingStarted):
        return "started"
    if isinstance(item, TrainingPhase):
        return item.phase + (f": {item.detail}" if item.detail else "")
    if isinstance(item, CheckpointSaved):
        return f"checkpoint saved at step {item.step}"
    if isinstance(item, CheckpointEval):
        shown = ", ".join(f"{k} {fpct(v)}" for k, v in list(item.metrics.items())[:6])
        return f"eval at step {item.step} (n={item.n}): {shown}"
    if isinstance(item, TrainingCompleted):
        return "completed"
    if isinstance(item, TrainingFailed):
        return f"FAILED: {item.error}"
    if isinstance(item, TrainingCancelled):
        return "cancelled" + (f" at step {item.step}" if item.step is not None else "")
    if isinstance(item, StreamNotice):
        return describe_notice(item)[0]
    return str(item)


def status_line(summary: dict[str, Any]) -> str:
    """``[running] step 40/100 (40%) loss 1.23 best 1.1@35 · 12.0 samples/s · ETA 0:31``."""
    step = summary["step"]
    max_steps = summary.get("max_steps")
    pos = f"step {step}/{max_steps} ({100 * step / max_steps:.0f}%)" if max_steps else f"step {step}"
    bits = [f"[{summary['status']}]", pos, f"loss {fnum(summary.get('loss'))}"]
    if summary.get("eval_loss") is not None:
        bits.append(f"eval {fnum(summary['eval_loss'])}")
    if summary.get("best_loss") is not None:
        bits.append(f"best {fnum(summary['best_loss'])}@{summary['best_step']}")
    if summary.get("samples_per_second") is not None:
        bits.append(f"{summary['samples_per_second']:.1f} samples/s")
    if summary.get("eta") is not None:
        bits.append(f"ETA {fduration(summary['eta'])}")
    bits.append(f"elapsed {fduration(summary.get('elapsed'))}")
    if summary.get("error"):
        bits.append(f"error: {summary['error']}")
    elif summary.get("transport"):
        bits.append(str(summary["transport"]))
    return " ".join(bits)


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
        self.lines = 0  # lines written, so tests can check the throttle

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
        self.lines += 1
