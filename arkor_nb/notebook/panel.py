"""The live panel: ipywidgets layout around the run model, redrawn in batches.

Rules that keep it responsive and cheap, however long the run:
- events only fold into :class:`RunState`; nothing here runs per event;
- ``render`` is called by one timer thread a few times per second and only
  assigns traits whose text actually changed (one comm message each), the
  chart in one message;
- button and control handlers only set flags / call ``on_cancel``;
- no ``Output`` widget capture from threads, no ``clear_output``.

The chart is the snapshot's own SVG in a small anywidget (``livechart``):
the live panel and the saved snapshot look the same, a new panel costs a few
kB instead of plotly's ~5 MB bundle, and its JavaScript shows hover values
and marks the panel disconnected when the kernel stops beating.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from arkor_nb.core.format import event_line, fduration, fnum, fsci
from arkor_nb.core.status import CANCELLED, COMPLETED, DETACHED, FAILED, PREPARING, SAVING
from arkor_nb.notebook import evalview
from arkor_nb.notebook.livechart import new_live_chart
from arkor_nb.notebook.palette import badge
from arkor_nb.notebook.progress import TERMINAL, RunState
from arkor_nb.notebook.snapshot import run_lines, samples_html
from arkor_nb.notebook.svgchart import svg_chart
from arkor_nb.notebook.text import esc

LOG_LINES = 120  # event-log lines sent to the browser (the ring keeps LOG_RING = 300)
LOG_EVERY = 1.0  # seconds between event-log redraws while streaming
EMPTY_CHART = "waiting for the first step"

CSS_CLASSES = {
    "panel": "arkor-panel",
    "status": "arkor-status",
    "cancel": "arkor-cancel",
    "remote_toggle": "arkor-remote-toggle",
    "log_scale": "arkor-logscale",
    "smoothing": "arkor-smoothing",
    "chart": "arkor-chart",
    "metric_chart": "arkor-metric-chart",
    "checkpoints": "arkor-checkpoints",
    "log": "arkor-log",
}

FINAL_LABELS: dict[str, str] = {
    COMPLETED: "Completed",
    FAILED: "Failed",
    CANCELLED: "Cancelled",
    DETACHED: "Stopped",
}
PHASES_SHOWN = (PREPARING, SAVING)  # a running job's phase the header names instead of "running"


_LEVEL_STYLE = {"error": ' style="color:#c62828"', "warn": ' style="color:#ef6c00"'}


class LivePanel(widgets.VBox):
    """The run's panel. Build with a :class:`RunState`; ``render()`` from one thread."""

    def __init__(self, state: RunState, *, on_cancel: Callable[[bool], None] | None = None,
                 **kwargs: Any) -> None:
        self.run_state = state
        self._on_cancel = on_cancel
        self.status_html = widgets.HTML(value="")
        self.cancel_button = widgets.Button(description="Cancel", button_style="danger",
                                            icon="stop", tooltip="Stop watching; see the toggle")
        self.remote_toggle = widgets.Checkbox(value=True, description="also cancel the job on the backend",
                                              indent=False, layout=widgets.Layout(width="auto"))
        self.cancel_ahead_button = widgets.Button(description="Cancel the job ahead", icon="stop",
                                                  layout=widgets.Layout(display="none", width="auto"))
        self.on_cancel_ahead: Callable[[str], None] = lambda job_id: None  # set by the owner
        self._ahead_id: str | None = None
        self.log_toggle = widgets.Checkbox(value=False, description="log scale", indent=False,
                                           layout=widgets.Layout(width="auto"))
        self.smoothing = widgets.FloatSlider(value=0.6, min=0.0, max=0.99, step=0.01,
                                             description="smoothing", readout_format=".2f",
                                             continuous_update=False)
        self.svg_chart = new_live_chart(svg_chart([], empty=EMPTY_CHART))
        # task metrics beside the loss chart from the first checkpoint.eval on (no watchdog: one is enough)
        self.metric_chart = new_live_chart(evalview.metric_chart(state.evals))
        self.metric_chart.live = False
        self.metric_chart.layout = widgets.Layout(display="none", flex="1 1 300px", max_width="440px")
        self.svg_chart.layout = widgets.Layout(flex="1 1 480px", max_width="720px")
        self.chart_box = widgets.Box(children=[self.svg_chart, self.metric_chart],
                                     layout=widgets.Layout(flex_flow="row wrap", align_items="flex-start"))
        self.checkpoints_html = widgets.HTML(value="")
        self.log_html = widgets.HTML(value="")
        for w, key in ((self, "panel"), (self.status_html, "status"), (self.cancel_button, "cancel"),
                       (self.remote_toggle, "remote_toggle"), (self.log_toggle, "log_scale"),
                       (self.smoothing, "smoothing"), (self.chart_box, "chart"),
                       (self.metric_chart, "metric_chart"),
                       (self.checkpoints_html, "checkpoints"), (self.log_html, "log")):
            w.add_class(CSS_CLASSES[key])
        controls = widgets.HBox([self.cancel_button, self.remote_toggle, self.log_toggle, self.smoothing],
                                layout=widgets.Layout(align_items="center", flex_flow="row wrap"))
        self.cancel_ahead_button.add_class("arkor-cancel-ahead")
        super().__init__(children=[self.status_html, self.cancel_ahead_button, controls, self.chart_box, self.checkpoints_html,
                                   self.log_html], **kwargs)
        self._render_lock = threading.Lock()
        self._seen: dict[str, int] = {}
        self._view = (self.smoothing.value, self.log_toggle.value)
        self._drawn_view: tuple[float, bool] | None = None
        self._log_drawn = -1
        self._log_at = 0.0
        self._ckpt_drawn = -1
        self._metrics_drawn = -1
        self.finished = False
        self.blocking = False  # True while run.result() holds the kernel
        self.wake: Callable[[], None] = lambda: None  # set by the owner's ticker
        self.cancel_button.on_click(self._clicked_cancel)
        self.cancel_ahead_button.on_click(self._clicked_cancel_ahead)
        self.log_toggle.observe(self._view_changed, names="value")
        self.smoothing.observe(self._view_changed, names="value")

    def __repr__(self) -> str:
        st = self.run_state
        return f"<arkor_nb live panel: {st.name or 'run'} {st.job_id or ''} {st.status} step {st.step}>"

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        # No text/plain: a notebook saved mid-run must not keep a stale "step 0" line
        # (the output is replaced by the snapshot when the run ends).
        bundle = super()._repr_mimebundle_(**kwargs)
        if isinstance(bundle, dict):
            bundle["text/plain"] = ""
        return bundle

    def beat(self) -> None:
        """Tell the front end the kernel is alive (its watchdog shows "disconnected" otherwise)."""
        if not self.finished and hasattr(self.svg_chart, "beat"):
            self.svg_chart.beat = (self.svg_chart.beat + 1) % 1_000_000

    def set_reattach(self, job_id: str | None, backend: str = "") -> None:
        """The exact line that reattaches to this job, shown when the kernel is gone."""
        if job_id and hasattr(self.svg_chart, "reattach"):
            extra = ', backend="cloud"' if backend == "cloud" else ""
            line = f'import arkor_nb as ak; run = ak.live(job_id="{job_id}"{extra})'
            if self.svg_chart.reattach != line:
                self.svg_chart.reattach = line

    # ------------------------------------------------------------ handlers

    def _clicked_cancel(self, _button: Any) -> None:
        remote = bool(self.remote_toggle.value)
        self.show_cancelling()
        if self._on_cancel is not None:
            self._on_cancel(remote)

    def _clicked_cancel_ahead(self, _button: Any) -> None:
        if self._ahead_id is not None:
            self.cancel_ahead_button.disabled = True
            self.cancel_ahead_button.description = "Cancelling…"
            self.on_cancel_ahead(self._ahead_id)

    def _show_ahead(self, ahead: list[dict[str, Any]]) -> None:
        """The button that cancels the job holding the slot: shown only while we wait for it."""
        first = ahead[0] if ahead and not self.finished else None
        job_id = first["id"] if first else None
        if job_id != self._ahead_id:
            self._ahead_id = job_id
            self.cancel_ahead_button.disabled = False
            self.cancel_ahead_button.description = (
                f"Cancel {first['name'] or first['id']} (it holds the training slot)" if first else "")
        display = "" if first else "none"
        if self.cancel_ahead_button.layout.display != display:
            self.cancel_ahead_button.layout.display = display

    def show_cancelling(self) -> None:
        if not self.finished:
            self.cancel_button.description = "Cancelling…"
            self.cancel_button.disabled = True
            self.remote_toggle.disabled = True

    def _view_changed(self, _change: Any) -> None:
        self._view = (float(self.smoothing.value), bool(self.log_toggle.value))
        if self.finished:
            self._draw_svg()  # the kernel is idle here: redraw the static chart now
        else:
            self.wake()

    # --------------------------------------------------------------- render

    def render(self, now: float | None = None) -> None:
        """One batched redraw of whatever changed since the last one."""
        with self._render_lock:
            if self.finished:
                return
            now = time.monotonic() if now is None else now
            st = self.run_state
            with st.lock:
                versions = {"loss": st.loss_series.version, "eval_loss": st.eval_series.version,
                            "learning_rate": st.lr_series.version}
                metrics_version = st.evals.version
                log_version, ckpt_version = st.log_version, st.ckpt_version
            self._set(self.status_html, self.status_text())
            self._show_ahead(st.summary()["ahead"])
            changed = {k for k, v in versions.items() if self._seen.get(k) != v}
            view_changed = self._drawn_view != self._view
            if changed or view_changed:
                self._draw_svg(hover=True)
                self._seen = versions
                self._drawn_view = self._view
            if metrics_version != self._metrics_drawn:
                self._draw_metrics()
                self._metrics_drawn = metrics_version
            if ckpt_version != self._ckpt_drawn:
                self._set(self.checkpoints_html, self.checkpoints_text())
                self._ckpt_drawn = ckpt_version
            if log_version != self._log_drawn and now - self._log_at >= LOG_EVERY:
                self._set(self.log_html, self.log_text())
                self._log_drawn = log_version
                self._log_at = now

    @staticmethod
    def _set(widget: Any, value: str) -> None:
        if widget.value != value:
            widget.value = value

    def _draw_svg(self, hover: bool = False) -> None:
        smoothing, log_y = self._view
        st = self.run_state
        empty = EMPTY_CHART if not st.terminal and st.status != DETACHED else "no steps were logged"
        self._set(self.svg_chart, svg_chart(run_lines(st, smoothing=smoothing), log_y=log_y,
                                            hover=hover, empty=empty))

    def _draw_metrics(self) -> None:
        st = self.run_state
        with st.lock:
            svg = evalview.metric_chart(st.evals, hover=True, empty=evalview.EMPTY_METRICS)
            shown = bool(st.evals.series)
        self._set(self.metric_chart, svg)
        display = "" if shown else "none"
        if self.metric_chart.layout.display != display:
            self.metric_chart.layout.display = display

    # --------------------------------------------------------------- finish

    def finish(self) -> None:
        """Final state: final chart, button label and full log; the watchdog stands down."""
        with self._render_lock:
            st = self.run_state
            self.finished = True
            self._draw_svg(hover=True)
            self._draw_metrics()
            if hasattr(self.svg_chart, "live"):
                self.svg_chart.live = False
            self._set(self.status_html, self.status_text())
            self._set(self.checkpoints_html, self.checkpoints_text())
            self._set(self.log_html, self.log_text())
            with st.lock:
                self._log_drawn, self._ckpt_drawn = st.log_version, st.ckpt_version
            self.cancel_button.description = FINAL_LABELS.get(st.status, st.status.capitalize())
            self.cancel_button.button_style = ""
            self.cancel_button.disabled = True
            self._show_ahead([])
            self.remote_toggle.disabled = True

    def refresh_final(self) -> None:
        """Re-render texts after the run ended (a late cancel confirmation, a sample reply)."""
        with self._render_lock:
            st = self.run_state
            self._draw_svg(hover=True)
            self._draw_metrics()
            self._set(self.status_html, self.status_text())
            self._set(self.checkpoints_html, self.checkpoints_text())
            self._set(self.log_html, self.log_text())
            self.cancel_button.description = FINAL_LABELS.get(st.status, st.status.capitalize())

    def close_all(self) -> None:
        """Close the panel and every widget in it (its output was replaced by the snapshot).

        Texts are emptied first: a client that records widget state (nbclient
        does, for closed widgets too) would otherwise keep a second copy of
        the chart and the log in the saved notebook.
        """
        with self._render_lock:
            self.finished = True
            stack: list[Any] = [self]
            while stack:
                w = stack.pop()
                stack.extend(getattr(w, "children", ()) or ())
                with w.hold_sync():
                    if hasattr(w, "svg"):
                        w.svg, w.reattach, w._esm = "", "", "export default {};"
                    elif isinstance(getattr(w, "value", None), str):
                        w.value = ""
                w.close()

    # ---------------------------------------------------------------- texts

    def status_text(self) -> str:
        st = self.run_state
        s = st.summary()
        max_steps = s["max_steps"]
        step_txt = f"{s['step']} / {max_steps}" if max_steps else f"{s['step']}"
        progress = st.progress()
        bar = ""
        if progress is not None:
            color = "#c62828" if s["status"] == FAILED else "#1565c0"
            bar = (f'<div class="arkor-progress" style="background:#e0e0e0;height:6px;border-radius:3px;'
                   f'margin:4px 0;width:100%"><div style="background:{color};height:6px;border-radius:3px;'
                   f'width:{100 * progress:.1f}%"></div></div>')
        best = (f"{fnum(s['best_loss'])} @ {s['best_step']}" if s["best_loss"] is not None else "–")
        sps = s["samples_per_second"]
        rate = f"{sps:.1f} samples/s" if sps is not None else "–"
        metrics = [
            ("step", f'<span class="arkor-step">{esc(step_txt)}</span>'),
            ("loss", f'<span class="arkor-loss">{fnum(s["loss"])}</span>'),
            ("eval loss", f'<span class="arkor-eval-loss">{fnum(s["eval_loss"])}</span>'),
            ("learning rate", fsci(s["learning_rate"], 3) if s["learning_rate"] is not None else "–"),
            ("epoch", fnum(s["epoch"], 3)),
            ("best", best),
            ("throughput", rate),
        ]
        if s["eta"] is not None:  # only from training steps, and never frozen on a stopped run
            metrics.append(("ETA", f'<span class="arkor-eta">{fduration(s["eta"])}</span>'))
        metrics.append(("elapsed", f'<span class="arkor-elapsed">{fduration(s["elapsed"])}</span>'))
        # one unbreakable cell per metric: a narrow notebook wraps between cells, never
        # between a label and its value
        cells = " ".join(f'<span class="arkor-metric" style="display:inline-block;white-space:nowrap;'
                        f'margin-right:14px"><span style="color:#777">{k}</span> {v}</span>'
                        for k, v in metrics)
        shown = s["phase"] if s["phase"] in PHASES_SHOWN else s["status"]
        header = (f'<b class="arkor-name">{esc(s["name"] or "run")}</b> '
                  f'<code class="arkor-job-id">{esc(s["job_id"] or "not started")}</code> '
                  f'<span style="color:#777">{esc(s["backend"])}</span> {badge(shown)} '
                  f"{evalview.best_html(st.evals)}")
        extra = []
        for job in s["ahead"][:1]:
            at = (f" at step {job['step']} / {job['max_steps']}" if job["max_steps"]
                  else f" at step {job['step']}") if job["step"] is not None else ""
            extra.append(f'<div class="arkor-queue" style="color:#6d4c41">waiting for the local backend\'s '
                         f'training slot, held by <b>{esc(job["name"] or "a job")}</b> '
                         f'<code>{esc(job["id"])}</code>{esc(at)}</div>')
        if s["phase"] in PHASES_SHOWN and s["phase_detail"]:
            extra.append(f'<div class="arkor-phase" style="color:#5e35b1">{esc(s["phase"])}: '
                         f'{esc(s["phase_detail"])}</div>')
        if s["error"]:
            extra.append(f'<div class="arkor-error" style="color:#c62828;font-weight:600;'
                         f'white-space:pre-wrap">Training failed: {esc(s["error"])}</div>')
        elif s["transport"] and st.transport_level != "info" and not s["cancel_state"]:
            # (after a Cancel the "stream aborted" notice is expected: the cancel line says it all)
            color = "#c62828" if st.transport_level == "error" else "#ef6c00"
            extra.append(f'<div class="arkor-transport" style="color:{color}">{esc(s["transport"])}</div>')
        if s["cancel_detail"]:
            extra.append(f'<div class="arkor-cancel-state">{esc(s["cancel_detail"])}</div>')
        if self.blocking and s["status"] not in TERMINAL:
            extra.append('<div class="arkor-blocking" style="color:#6d4c41">run.result() is waiting in '
                         "this cell, so the kernel cannot receive clicks until it returns: interrupt "
                         "the kernel (■) to cancel, or wait with await run to keep Cancel clickable.</div>")
        with st.lock:
            health = evalview.health_html(st.evals.health)
        return (f'<div style="font-family:sans-serif;font-size:13px;line-height:1.5">{header}{bar}'
                f'<div style="margin:2px 0">{cells}</div>{health}{"".join(extra)}</div>')

    def checkpoints_text(self) -> str:
        st = self.run_state
        with st.lock:
            steps = [c.step for c in st.checkpoints]
            examples = evalview.examples_html(st.evals)
        if not steps and not examples:
            return ""
        shown = ", ".join(str(s) for s in steps[-20:])
        more = f" (+{len(steps) - 20} earlier)" if len(steps) > 20 else ""
        listed = (f'<div style="font-size:12px;line-height:1.4"><b>Checkpoints</b> {len(steps)}: '
                  f"step {esc(shown)}{more}</div>") if steps else ""
        return f"{listed}{samples_html(st)}{examples}"

    def log_text(self) -> str:
        st = self.run_state
        with st.lock:
            entries = list(st.log)[-LOG_LINES:]
            total = st.log_total
            t0 = st.origin
        lines = []
        for e in entries:
            line = e.html
            if line is None:  # formatted once, when first shown
                text = f"+{e.wall - t0:.1f}s {esc(event_line(e.item))}"
                style = _LEVEL_STYLE.get(e.level)
                line = e.html = f"<span{style}>{text}</span>" if style else text
            lines.append(line)
        hidden = total - len(entries)
        head = f"… {hidden} earlier events\n" if hidden > 0 else ""
        return ('<div style="max-height:150px;overflow-y:auto;display:flex;flex-direction:column-reverse;'
                'font-family:monospace;font-size:11px;line-height:1.35;border:1px solid #eee;padding:2px 4px">'
                f'<div style="white-space:pre-wrap">{head}{chr(10).join(lines)}</div></div>')
