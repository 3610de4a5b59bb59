"""``ak.sweep`` in a notebook: one live compare panel for the whole study.

The engine is ``sdk.sweep.run_sweep``; this module only watches it. In a
Jupyter kernel :class:`SweepPanel` shows a table with a row per trial
(params, job, state, latest and best metric), the running trial's live panel
(the usual :class:`~arkor_nb.notebook.live.LiveRun` panel) and a "Cancel all"
button; when the study ends the panel is replaced by the static table, so a
saved notebook keeps only that. Elsewhere :class:`SweepText` prints one line
per event. A blocking sweep holds widget clicks like ``run.result()`` does:
interrupting the kernel (the stop button) is "Cancel all" too.

DOM hooks: ``arkor-sweep`` (the panel), ``arkor-sweep-table`` (rows
``tr.arkor-sweep-row`` with ``data-state``), ``arkor-sweep-cancel``,
``arkor-sweep-current`` (the running trial's panel).
"""

from __future__ import annotations

import html
import sys
import threading
from typing import Any, TextIO

from arkor_nb.core.contexts import TrainingResult
from arkor_nb.notebook.live import LiveRun, RunInterrupted, in_jupyter_kernel
from arkor_nb.sdk.sweep import PRUNED, Sweep, SweepControl, SweepJob, SweepWatch, run_sweep


def _params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def sweep_table_html(jobs: list[SweepJob], metric: str, mode: str) -> str:
    """The compare table: one row per trial."""
    rows = []
    for job in jobs:
        best = job.best(mode)
        last = job.points[-1] if job.points else None
        state = job.state if job.pruned_at is None or job.state != PRUNED else f"pruned @ {job.pruned_at}"
        cells = [str(job.number), _params(job.params), job.job_id or "", state,
                 f"{last[1]:.3f} @ {last[0]}" if last else "",
                 f"{best[1]:.3f} @ {best[0]}" if best else ""]
        rows.append(f'<tr class="arkor-sweep-row" data-state="{html.escape(job.state)}">'
                    + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in ("trial", "params", "job", "state",
                                             f"latest {html.escape(metric)}", f"best ({mode})"))
    return (f'<table class="arkor-sweep-table" style="border-collapse:collapse;font-size:12px">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")


class SweepText(SweepWatch):
    """Text lines for a sweep outside Jupyter."""

    def __init__(self, metric: str, mode: str, stream: TextIO | None = None) -> None:
        self.metric, self.mode = metric, mode
        self.stream = stream or sys.stdout

    def _say(self, line: str) -> None:
        print(f"arkor-nb sweep: {line}", file=self.stream, flush=True)

    def trial_started(self, job: SweepJob) -> None:
        self._say(f"trial {job.number} started: job {job.job_id} ({_params(job.params)})")

    def trial_reported(self, job: SweepJob) -> None:
        step, value = job.points[-1]
        self._say(f"trial {job.number} step {step}: {self.metric}={value:.4f}")

    def trial_finished(self, job: SweepJob) -> None:
        if job.state == PRUNED:
            self._say(f"trial {job.number} pruned at step {job.pruned_at}; job {job.job_id} cancelled")
            return
        best = job.best(self.mode)
        tail = f": best {self.metric}={best[1]:.4f} at step {best[0]}" if best else ""
        self._say(f"trial {job.number} {job.state}{tail}")

    def done(self, sweep: Sweep) -> None:
        self._say(f"done: {sweep!r}")


class SweepPanel(SweepWatch):
    """The live compare panel of a sweep (ipywidgets)."""

    def __init__(self, metric: str, mode: str) -> None:
        import ipywidgets as widgets

        self.metric, self.mode = metric, mode
        self.jobs: list[SweepJob] = []
        self._lock = threading.Lock()
        self.control: SweepControl | None = None
        self.header = widgets.HTML(f"<b>sweep</b>: {html.escape(metric)} ({mode})")
        self.table = widgets.HTML(sweep_table_html([], metric, mode))
        self.cancel = widgets.Button(description="Cancel all", button_style="warning")
        self.cancel.add_class("arkor-sweep-cancel")
        self.cancel.on_click(lambda _b: self.cancel_all())
        self.current = widgets.Box()
        self.current.add_class("arkor-sweep-current")
        self.box = widgets.VBox([widgets.HBox([self.header, self.cancel]), self.table, self.current])
        self.box.add_class("arkor-sweep")
        self._handle: Any = None
        self._runs: list[LiveRun] = []

    def bind(self, control: SweepControl) -> None:
        from IPython.display import display

        self.control = control
        self._handle = display(self.box, display_id=True)

    def cancel_all(self) -> None:
        if self.control is not None:
            self.cancel.description, self.cancel.disabled = "Cancelling…", True
            threading.Thread(target=self.control.cancel_all, daemon=True).start()

    def _redraw(self) -> None:
        with self._lock:
            self.table.value = sweep_table_html(list(self.jobs), self.metric, self.mode)

    def trial_started(self, job: SweepJob) -> None:
        with self._lock:
            self.jobs.append(job)
        self._redraw()

    def trial_reported(self, job: SweepJob) -> None:
        self._redraw()

    def trial_finished(self, job: SweepJob) -> None:
        self._redraw()

    def run(self, job: SweepJob) -> TrainingResult:
        live = LiveRun(job.trainer, display=False)
        self._runs.append(live)
        self.current.children = (live.panel,)
        live.start()
        try:
            return live.result()
        except RunInterrupted:
            if self.control is not None:
                self.control.cancel_all()
            raise

    def done(self, sweep: Sweep) -> None:
        final = (f"<div class='arkor-sweep'><b>sweep</b>: {html.escape(repr(sweep))}"
                 f"{sweep_table_html(sweep.jobs, self.metric, self.mode)}</div>")
        if self._handle is not None:
            self._handle.update({"text/html": final, "text/plain": repr(sweep)}, raw=True)
        for live in self._runs:
            live.panel.close_all()
        self.box.close()


def sweep(build: Any, n_trials: int, metric: str, mode: str = "max", pruner: Any = None,
          study: Any = None, *, parallel: int = 1, display: bool | None = None) -> Sweep:
    """Run an optuna study of training runs; see :func:`arkor_nb.sdk.sweep.run_sweep`.

    In a Jupyter kernel one live compare panel follows the study (a row per
    trial, the running trial's curves, Cancel all); elsewhere text lines.
    ``display=False`` shows nothing.
    """
    if display is None:
        display = True
    watch: SweepWatch
    if not display:
        watch = SweepWatch()
    elif in_jupyter_kernel():
        watch = SweepPanel(metric, mode)
    else:
        watch = SweepText(metric, mode)
    return run_sweep(build, n_trials, metric, mode, pruner, study, parallel=parallel, watch=watch)
