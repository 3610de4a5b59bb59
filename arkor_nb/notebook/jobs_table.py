"""``ak.jobs()`` in a notebook: the job list as a static HTML table and as a widget table.

:class:`JobTable` is the SDK's :class:`~arkor_nb.sdk.jobs.JobList` (a plain list
that prints as the text table of :func:`arkor_nb.core.format.jobs_text`) plus
the notebook's views: a static HTML table (no JavaScript, for saved notebooks
and nbviewer) and, in Jupyter, a widget table with a button per row to open the
live panel and, for running or queued jobs, to cancel. Button handlers only
start a thread; the thread updates widgets by assigning traits (a click never
blocks the kernel).
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Sequence
from typing import Any

from arkor_nb.core.format import JOB_COLUMNS, job_row, jobs_text
from arkor_nb.core.wire import TrainingJob
from arkor_nb.notebook.live import live
from arkor_nb.notebook.palette import badge
from arkor_nb.sdk import jobs as jobs_api
from arkor_nb.sdk.backends import BackendSpec
from arkor_nb.sdk.jobs import JobList
from arkor_nb.sdk.sync import run_sync

CANCEL_CONFIRM_S = 30.0  # how long a Cancel click follows the job for the final status
COLUMNS = JOB_COLUMNS


class JobTable(JobList):
    """What ``ak.jobs()`` returns: a :class:`JobList` that renders as a table in Jupyter
    (a widget table with Open and Cancel buttons; the static HTML table where widgets
    do not render)."""

    def _repr_html_(self) -> str:
        return html_table(self)

    def _ipython_display_(self) -> None:
        display_jobs(self)


async def jobs_async(status: str | None = None, limit: int | None = 100, *,
                     backend: BackendSpec = "local") -> JobTable:
    """Jobs on the backend, newest first (see :func:`arkor_nb.sdk.jobs.jobs_async`),
    as a :class:`JobTable`."""
    listed = await jobs_api.jobs_async(status, limit, backend=backend)
    table = JobTable(listed)
    table.backend = listed.backend
    return table


def jobs(status: str | None = None, limit: int | None = 100, *,
         backend: BackendSpec = "local") -> JobTable:
    """Sync twin of :func:`jobs_async`."""
    return run_sync(jobs_async(status, limit, backend=backend))


def html_table(jobs: Sequence[TrainingJob]) -> str:
    """A static table (no JavaScript), for saved notebooks and nbviewer."""
    if not jobs:
        return "<p>no jobs</p>"
    head = "".join(f"<th style='text-align:left'>{c}</th>" for c in COLUMNS)
    body = []
    for job in jobs:
        r = job_row(job)
        cells = [html.escape(r["name"]), f"<code>{html.escape(r['id'])}</code>", badge(r["status"]),
                 *(html.escape(r[c]) for c in COLUMNS[3:])]
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return (f"<table class='arkor-nb-jobs'><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def display_jobs(jobs: Sequence[TrainingJob]) -> None:
    """Jupyter: the widget table; elsewhere (or without ipywidgets) the HTML/text table."""
    from IPython.display import display

    bundle = {"text/plain": jobs_text(jobs), "text/html": html_table(jobs)}
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
            r = job_row(job)
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
        button = self.cancel_buttons[job_id]
        button.disabled = True
        button.description = "Cancelling"
        try:
            current = jobs_api.cancel_job(job_id, backend=self.backend)
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
                current = jobs_api.job(job_id, backend=self.backend)
            except Exception:
                break
        self.badges[job_id].value = badge(current.status)
        button.description = current.status.capitalize() if current.is_terminal else "Cancel sent"
