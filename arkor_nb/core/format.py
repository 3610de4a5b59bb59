"""The one formatter: events, numbers, learning rates, times, durations and statuses as text.

Pure functions, no I/O: the CLI (``cli.event_line``), the notebook's text
progress and panel, the jobs table, the snapshot and the demo all print
through here, so one event reads the same everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

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
from arkor_nb.core.status import DETACHED
from arkor_nb.core.wire import TrainingJob

JOB_COLUMNS = ("name", "id", "status", "step", "best loss", "created", "duration")


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
    """A score in [0, 1] as a percentage: 0.925 -> '92.5%', 1.0 -> '100%', '–' when missing."""
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
        # never silent: which attempt, when the next try comes, what went wrong
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


def event_line(item: Any, sep: str = " · ") -> str:
    """One event (or stream notice, or a panel's own note) as one line of text.

    The CLI joins the parts with two spaces, the panel's event log with " · "::

        started model=arkor-nb/tiny device=cpu
        step 12 · loss 1.234 · eval 1.301 · lr 2.96e-3 · epoch 0.50
        checkpoint saved at step 20
        eval at step 20 (n=60): fields/all 92%, exact 85%
        completed train_loss=1.1
        failed at step 3: CUDA out of memory
        cancelled at step 7
    """
    if isinstance(item, TrainingLog):
        parts = [f"step {item.step}"]
        if item.loss is not None:
            parts.append(f"loss {fnum(item.loss)}")
        if item.eval_loss is not None:
            parts.append(f"eval {fnum(item.eval_loss)}")
        if item.learning_rate is not None:
            parts.append(f"lr {fsci(item.learning_rate, 3)}")  # as the chart's axis: 2.96e-3
        if item.epoch is not None:
            parts.append(f"epoch {item.epoch:.2f}")
        return sep.join(parts)
    if isinstance(item, TrainingStarted):
        meta = item.metadata or {}
        return "started" + "".join(f" {k}={meta[k]}" for k in ("model", "device", "trainRows")
                                   if k in meta)
    if isinstance(item, TrainingPhase):
        return item.phase + (f": {item.detail}" if item.detail else "")
    if isinstance(item, CheckpointSaved):
        return f"checkpoint saved at step {item.step}"
    if isinstance(item, CheckpointEval):
        shown = ", ".join(f"{k} {fpct(v)}" for k, v in list(item.metrics.items())[:6])
        return f"eval at step {item.step} (n={item.n}): {shown}"
    if isinstance(item, TrainingCompleted):
        metrics = item.metrics or {}
        shown = " ".join(f"{k}={fnum(v)}" for k, v in metrics.items()
                         if isinstance(v, (int, float)) and not isinstance(v, bool))
        return f"{item.job_status} {shown}".rstrip()
    if isinstance(item, (TrainingFailed, TrainingCancelled)):
        at = f" at step {item.step}" if item.step is not None else ""
        error = f": {item.error}" if isinstance(item, TrainingFailed) else ""
        return f"{item.job_status}{at}{error}"
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


def status_label(status: str) -> str:
    """A job status or view state as a view names it ("detached" reads "stopped watching")."""
    return "stopped watching" if status == DETACHED else str(status)


# ------------------------------------------------------------------ times


def parse_time(text: str | None) -> datetime | None:
    """A backend timestamp (ISO 8601, ``Z`` allowed) as an aware datetime; None if absent or bad.

    A timestamp without a zone is taken as UTC (as the backends write them)."""
    if not text or not isinstance(text, str):
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def fspan(seconds: float) -> str:
    """A job's duration in a table cell: ``5s``, ``2m05s``, ``1h02m``."""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


# ------------------------------------------------------------------- jobs


def job_duration(job: TrainingJob, now: datetime | None = None) -> str:
    """From the job's start to its end (or ``now`` while it runs); "" before it started."""
    start = parse_time(job.started_at)
    if start is None:
        return ""
    end = parse_time(job.completed_at) or (now or datetime.now(timezone.utc))
    return fspan((end - start).total_seconds())


def job_row(job: TrainingJob) -> dict[str, str]:
    """One job as display strings, keyed by ``JOB_COLUMNS``."""
    extra = job.model_extra or {}
    step = extra.get("step")
    max_steps = job.config.get("maxSteps")
    steps = "" if step is None else str(step)
    if max_steps is not None:
        steps = f"{steps or '-'}/{max_steps}"
    best = extra.get("bestLoss")
    created = parse_time(job.created_at)
    return {
        "name": job.name,
        "id": job.id,
        "status": str(job.status),
        "step": steps,
        "best loss": fnum(best) if isinstance(best, (int, float)) else "",
        "created": created.strftime("%Y-%m-%d %H:%M:%S") if created else "",
        "duration": job_duration(job),
    }


def best_cell(best: tuple[int, float] | None) -> str:
    """A job's best metric as ``value@step`` (``0.92@40``); "" when it has none."""
    return "" if best is None else f"{best[1]:.4g}@{best[0]}"


def jobs_text(jobs: Sequence[TrainingJob], extra: dict[str, dict[str, str]] | None = None) -> str:
    """A fixed-width table (what ``print(ak.jobs())`` and ``arkor-nb jobs`` show).

    ``extra``: more columns, header -> {job id: cell} (``arkor-nb jobs --metric``).
    """
    if not jobs:
        return "no jobs"
    columns = JOB_COLUMNS + tuple(extra or ())
    rows = [{**job_row(j), **{h: cells.get(j.id, "") for h, cells in (extra or {}).items()}}
            for j in jobs]
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
    lines = ["  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip()]
    lines += ["  ".join(r[c].ljust(widths[c]) for c in columns).rstrip() for r in rows]
    return "\n".join(lines)


def cancel_command(job_id: str, backend_kind: str = "local") -> str:
    """The exact shell command that cancels the job: ``arkor-nb cancel ID [--backend cloud]``."""
    flag = " --backend cloud" if backend_kind == "cloud" else ""
    return f"arkor-nb cancel {job_id}{flag}"


def cancel_hint(job_id: str | None, backend_kind: str = "local") -> str:
    """``cancel it with: <the command>`` (or that no job was created)."""
    if job_id is None:
        return "no job was created"
    return f"cancel it with: {cancel_command(job_id, backend_kind)}"
