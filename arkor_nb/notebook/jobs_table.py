"""How a list of jobs looks: a text table, a static HTML table, a widget table.

The widget table has a button per row to open the live panel and, for
running or queued jobs, to cancel. Button handlers only start a thread; the
thread updates widgets by assigning traits (see DESIGN.md, notebook rules).
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from arkor_nb.core.wire import TrainingJob
from arkor_nb.notebook.palette import badge

CANCEL_CONFIRM_S = 30.0  # how long a Cancel click follows the job for the final status
COLUMNS = ("name", "id", "status", "step", "best loss", "created", "duration")


def _when(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _duration(job: TrainingJob, now: datetime | None = None) -> str:
    start = _when(job.started_at)
    if start is None:
        return ""
    end = _when(job.completed_at) or (now or datetime.now(timezone.utc))
    seconds = max(0, int((end - start).total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def row(job: TrainingJob) -> dict[str, str]:
    """One job as display strings, keyed by COLUMNS."""
    extra = job.model_extra or {}
    step = extra.get("step")
    max_steps = job.config.get("maxSteps")
    steps = "" if step is None else str(step)
    if max_steps is not None:
        steps = f"{steps or '-'}/{max_steps}"
    best = extra.get("bestLoss")
    created = _when(job.created_at)
    return {
        "name": job.name,
        "id": job.id,
        "status": job.status,
        "step": steps,
        "best loss": f"{best:.4g}" if isinstance(best, (int, float)) else "",
        "created": created.strftime("%Y-%m-%d %H:%M:%S") if created else "",
        "duration": _duration(job),
    }


def metric_cell(best: tuple[int, float] | None) -> str:
    """A job's best metric value as ``value@step`` (``0.92@40``), empty when it has none."""
    return "" if best is None else f"{best[1]:.4g}@{best[0]}"


def _columns(extra: dict[str, dict[str, str]] | None) -> tuple[str, ...]:
    return COLUMNS + tuple(extra or ())


def text_table(jobs: Sequence[TrainingJob], extra: dict[str, dict[str, str]] | None = None) -> str:
    """A fixed-width table (what ``print(ak.jobs())`` and ``arkor-nb jobs`` show).

    ``extra``: more columns, header -> {job id: cell} (``arkor-nb jobs --metric``).
    """
    if not jobs:
        return "no jobs"
    columns = _columns(extra)
    rows = [{**row(j), **{h: cells.get(j.id, "") for h, cells in (extra or {}).items()}} for j in jobs]
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
    lines = ["  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip()]
    lines += ["  ".join(r[c].ljust(widths[c]) for c in columns).rstrip() for r in rows]
    return "\n".join(lines)


def html_table(jobs: Sequence[TrainingJob]) -> str:
    """A static table (no JavaScript), for saved notebooks and nbviewer."""
    if not jobs:
        return "<p>no jobs</p>"
    head = "".join(f"<th style='text-align:left'>{c}</th>" for c in COLUMNS)
    body = []
    for job in jobs:
        r = row(job)
        cells = [html.escape(r["name"]), f"<code>{html.escape(r['id'])}</code>", badge(r["status"]),
                 *(html.escape(r[c]) for c in COLUMNS[3:])]
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return (f"<table class='arkor-nb-jobs'><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def display_jobs(jobs: Any) -> None:
    """Jupyter: the widget table; elsewhere (or without ipywidgets) the HTML/text table."""
    from IPython.display import display

    bundle = {"text/plain": text_table(jobs), "text/html": html_table(jobs)}
    try:
        widget = JobsWidget(list(jobs), getattr(jobs, "backend", "local")).widget
    except ImportError:
        display(bundle, raw=True)
        return
    # The widget view where widgets render; the static table on GitHub/nbviewer and as text.
    display({**widget._repr_mimebundle_(), **bundle}, raw=True)


class JobsWidget:
    """The jobs table as ipywidgets: one grid row per job, Open and Cancel buttons.

    Open attaches a live panel (``ak.live(job_id=...)``) below the table;
    Cancel asks the backend to stop the job and updates the row's badge.
    """

    def __init__(self, jobs: list[TrainingJob], backend: Any = "local") -> None:
        import ipywidgets as w

        self.jobs = jobs
        self.backend = backend
        self.status = w.HTML(value="")
        self.panel_area = w.VBox([])
        self.badges: dict[str, Any] = {}
        self.cancel_buttons: dict[str, Any] = {}
        self.open_buttons: dict[str, Any] = {}
        self.runs: dict[str, Any] = {}
        self.threads: list[threading.Thread] = []
        cells: list[Any] = [w.HTML(f"<b>{c}</b>") for c in COLUMNS] + [w.HTML(""), w.HTML("")]
        for job in jobs:
            r = row(job)
            self.badges[job.id] = w.HTML(badge(r["status"]))
            open_button = w.Button(description="Open", tooltip=f"live panel of {job.id}",
                                   layout=w.Layout(width="70px"))
            open_button.add_class("arkor-jobs-open")
            open_button.on_click(lambda _b, jid=job.id: self._start(self._open, jid))
            self.open_buttons[job.id] = open_button
            cancel: Any = w.HTML("")  # a finished job has nothing to cancel
            if not job.is_terminal:
                cancel = w.Button(description="Cancel", button_style="danger",
                                  tooltip=f"cancel {job.id} on its backend",
                                  layout=w.Layout(width="95px"))
                cancel.add_class("arkor-jobs-cancel")
                cancel.on_click(lambda _b, jid=job.id: self._start(self._cancel, jid))
                self.cancel_buttons[job.id] = cancel
            cells += [w.HTML(html.escape(r["name"])), w.HTML(f"<code>{html.escape(job.id)}</code>"),
                      self.badges[job.id], *(w.HTML(html.escape(r[c])) for c in COLUMNS[3:]),
                      open_button, cancel]
        grid = w.GridBox(cells, layout=w.Layout(
            grid_template_columns=f"repeat({len(COLUMNS)}, max-content) 75px 100px",
            grid_gap="2px 14px", align_items="center"))
        self.widget = w.VBox([grid if jobs else w.HTML("no jobs"), self.status, self.panel_area])
        self.widget.add_class("arkor-jobs")
        self.status.add_class("arkor-jobs-status")

    def _start(self, target: Any, job_id: str) -> None:
        """Button handlers only start a thread: the kernel stays free for other clicks."""
        thread = threading.Thread(target=target, args=(job_id,), name="arkor-nb-jobs", daemon=True)
        self.threads.append(thread)
        thread.start()

    def _open(self, job_id: str) -> None:
        from arkor_nb.notebook import live

        try:
            run = live(job_id=job_id, backend=self.backend, display=False)
            panel = getattr(run, "panel", None)
            if panel is not None:
                self.panel_area.children = (*self.panel_area.children, panel)
            self.runs[job_id] = run
            self.status.value = f"following <code>{html.escape(job_id)}</code>"
        except Exception as err:  # shown in the widget: a thread has no cell to raise into
            self.status.value = f"could not open {html.escape(job_id)}: {html.escape(str(err))}"

    def _cancel(self, job_id: str) -> None:
        """Ask the backend, then follow the job until it confirms (badge and button say so)."""
        from arkor_nb.sdk.jobs import cancel_job, job

        button = self.cancel_buttons[job_id]
        button.disabled = True
        button.description = "Cancelling"
        try:
            current = cancel_job(job_id, backend=self.backend)
        except Exception as err:
            button.disabled = False
            button.description = "Cancel"
            self.status.value = f"could not cancel {html.escape(job_id)}: {html.escape(str(err))}"
            return
        self.status.value = f"asked the backend to cancel <code>{html.escape(job_id)}</code>"
        deadline = time.monotonic() + CANCEL_CONFIRM_S
        while not current.is_terminal and time.monotonic() < deadline:
            self.badges[job_id].value = badge(current.status)
            time.sleep(0.5)  # polling the backend's status, not synchronising a test
            try:
                current = job(job_id, backend=self.backend)
            except Exception:
                break
        self.badges[job_id].value = badge(current.status)
        button.description = current.status.capitalize() if current.is_terminal else "Cancel sent"
