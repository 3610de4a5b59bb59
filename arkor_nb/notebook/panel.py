"""The live panel: ipywidgets layout around the run model, redrawn in batches.

Rules that keep it responsive and cheap, however long the run:
- events only fold into :class:`RunState`; nothing here runs per event;
- ``render`` is called by one timer thread a few times per second and only
  assigns traits whose text actually changed (one comm message each), the
  chart in one message;
- button and control handlers only set flags / call ``on_cancel``;
- no ``Output`` widget capture from threads, no ``clear_output``.

When the run ends, ``finish`` swaps the plotly chart for the static SVG
snapshot (a light ``HTML`` widget) and retires the plotly figure so its
~5 MB bundle does not stay in saved widget state.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from . import chart as chart_mod
from .progress import TERMINAL, RunState
from .series import Smoother
from .snapshot import badge, run_lines, samples_html, svg_chart
from .text import describe, esc, fduration, fnum

LOG_LINES = 120  # event-log lines sent to the browser (the ring keeps LOG_RING = 300)
LOG_EVERY = 1.0  # seconds between event-log redraws while streaming

CSS_CLASSES = {
    "panel": "arkor-panel",
    "status": "arkor-status",
    "cancel": "arkor-cancel",
    "remote_toggle": "arkor-remote-toggle",
    "log_scale": "arkor-logscale",
    "smoothing": "arkor-smoothing",
    "chart": "arkor-chart",
    "checkpoints": "arkor-checkpoints",
    "log": "arkor-log",
}

FINAL_LABELS = {
    "completed": "Completed",
    "failed": "Failed",
    "cancelled": "Cancelled",
    "detached": "Stopped",
}


_LEVEL_STYLE = {"error": ' style="color:#c62828"', "warn": ' style="color:#ef6c00"'}


class LivePanel(widgets.VBox):
    """The run's panel. Build with a :class:`RunState`; ``render()`` from one thread."""

    def __init__(self, state: RunState, *, on_cancel: Callable[[bool], None] | None = None,
                 use_plotly: bool = True, hide_snapshot: str = "", **kwargs: Any) -> None:
        self.run_state = state
        # Where this panel renders, its own static snapshot output is redundant: hide it.
        # Viewers without widgets (GitHub, nbviewer without state) never see this style.
        self._style = (f"<style>.arkor-snap-{esc(hide_snapshot)}{{display:none}}</style>"
                       if hide_snapshot else "")
        self._on_cancel = on_cancel
        self.status_html = widgets.HTML(value="")
        self.cancel_button = widgets.Button(description="Cancel", button_style="danger",
                                            icon="stop", tooltip="Stop watching; see the toggle")
        self.remote_toggle = widgets.Checkbox(value=True, description="also cancel the job on the backend",
                                              indent=False, layout=widgets.Layout(width="auto"))
        self.log_toggle = widgets.Checkbox(value=False, description="log scale", indent=False,
                                           layout=widgets.Layout(width="auto"))
        self.smoothing = widgets.FloatSlider(value=0.6, min=0.0, max=0.99, step=0.01,
                                             description="smoothing", readout_format=".2f",
                                             continuous_update=False)
        self.svg_chart = widgets.HTML(value=svg_chart([]))
        self.chart_box = widgets.Box(children=[self.svg_chart])
        self.checkpoints_html = widgets.HTML(value="")
        self.log_html = widgets.HTML(value="")
        for w, key in ((self, "panel"), (self.status_html, "status"), (self.cancel_button, "cancel"),
                       (self.remote_toggle, "remote_toggle"), (self.log_toggle, "log_scale"),
                       (self.smoothing, "smoothing"), (self.chart_box, "chart"),
                       (self.checkpoints_html, "checkpoints"), (self.log_html, "log")):
            w.add_class(CSS_CLASSES[key])
        controls = widgets.HBox([self.cancel_button, self.remote_toggle, self.log_toggle, self.smoothing],
                                layout=widgets.Layout(align_items="center", flex_flow="row wrap"))
        super().__init__(children=[self.status_html, controls, self.chart_box, self.checkpoints_html,
                                   self.log_html], **kwargs)
        self.figure: Any = None
        self._use_plotly = use_plotly
        self._render_lock = threading.Lock()
        self._seen: dict[str, int] = {}
        self._view = (self.smoothing.value, self.log_toggle.value)
        self._drawn_view: tuple[float, bool] | None = None
        self._log_drawn = -1
        self._log_at = 0.0
        self._ckpt_drawn = -1
        self._smoother = Smoother()
        self.finished = False
        self.blocking = False  # True while run.result() holds the kernel
        self.renders = 0  # redraws done (tests check the throttle bounds this)
        self.wake: Callable[[], None] = lambda: None  # set by the owner's ticker
        self.cancel_button.on_click(self._clicked_cancel)
        self.log_toggle.observe(self._view_changed, names="value")
        self.smoothing.observe(self._view_changed, names="value")

    def __repr__(self) -> str:
        # also the text/plain of the panel's cell output: keep it short (saved notebooks)
        st = self.run_state
        return f"<arkor_nb live panel: {st.name or 'run'} {st.job_id or ''} {st.status} step {st.step}>"

    # ------------------------------------------------------------ handlers

    def _clicked_cancel(self, _button: Any) -> None:
        remote = bool(self.remote_toggle.value)
        self.show_cancelling()
        if self._on_cancel is not None:
            self._on_cancel(remote)

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

    # ----------------------------------------------------------- plotly chart

    def attach_figure(self) -> bool:
        """Build the plotly figure (slow the first time in a kernel); False if unavailable."""
        if not self._use_plotly or self.figure is not None or self.finished:
            return self.figure is not None
        fig = chart_mod.new_figure()
        if fig is None:
            self._use_plotly = False
            return False
        fig.add_class(CSS_CLASSES["chart"] + "-plotly")
        with self._render_lock:
            if self.finished:
                chart_mod.retire_figure(fig)
                return False
            self.figure = fig
            self._seen = {}  # everything is new to the figure
            self._drawn_view = None
            self.chart_box.children = [fig]
        return True

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
                log_version, ckpt_version = st.log_version, st.ckpt_version
            self._set(self.status_html, self.status_text())
            changed = {k for k, v in versions.items() if self._seen.get(k) != v}
            view_changed = self._drawn_view != self._view
            if changed or view_changed:
                curves = st.curves()
                smoothing, log_y = self._view
                if self.figure is not None:
                    chart_mod.update_figure(self.figure, curves, smoothing=smoothing, log_y=log_y,
                                            changed=changed, view_changed=view_changed,
                                            smoother=self._smoother)
                else:
                    self._draw_svg()
                self._seen = versions
                self._drawn_view = self._view
            if ckpt_version != self._ckpt_drawn:
                self._set(self.checkpoints_html, self.checkpoints_text())
                self._ckpt_drawn = ckpt_version
            if log_version != self._log_drawn and now - self._log_at >= LOG_EVERY:
                self._set(self.log_html, self.log_text())
                self._log_drawn = log_version
                self._log_at = now
            self.renders += 1

    @staticmethod
    def _set(widget: Any, value: str) -> None:
        if widget.value != value:
            widget.value = value

    def _draw_svg(self) -> None:
        smoothing, log_y = self._view
        self._set(self.svg_chart, svg_chart(run_lines(self.run_state, smoothing=smoothing),
                                            log_y=log_y))

    # --------------------------------------------------------------- finish

    def finish(self) -> None:
        """Final state: static chart, final button label, full log; plotly retired."""
        with self._render_lock:
            st = self.run_state
            self.finished = True
            self._draw_svg()
            fig, self.figure = self.figure, None
            self.chart_box.children = [self.svg_chart]
            if fig is not None:
                chart_mod.retire_figure(fig)
            self._set(self.status_html, self.status_text())
            self._set(self.checkpoints_html, self.checkpoints_text())
            self._set(self.log_html, self.log_text())
            with st.lock:
                self._log_drawn, self._ckpt_drawn = st.log_version, st.ckpt_version
            self.cancel_button.description = FINAL_LABELS.get(st.status, st.status.capitalize())
            self.cancel_button.button_style = ""
            self.cancel_button.disabled = True
            self.remote_toggle.disabled = True
            self.renders += 1

    def refresh_final(self) -> None:
        """Re-render texts after the run ended (a late cancel confirmation, a sample reply)."""
        with self._render_lock:
            st = self.run_state
            self._draw_svg()
            self._set(self.status_html, self.status_text())
            self._set(self.checkpoints_html, self.checkpoints_text())
            self._set(self.log_html, self.log_text())
            self.cancel_button.description = FINAL_LABELS.get(st.status, st.status.capitalize())

    # ---------------------------------------------------------------- texts

    def status_text(self) -> str:
        st = self.run_state
        s = st.summary()
        max_steps = s["max_steps"]
        step_txt = f"{s['step']} / {max_steps}" if max_steps else f"{s['step']}"
        progress = st.progress()
        bar = ""
        if progress is not None:
            color = "#c62828" if s["status"] == "failed" else "#1565c0"
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
            ("lr", fnum(s["learning_rate"], 3)),
            ("epoch", fnum(s["epoch"], 3)),
            ("best", best),
            ("throughput", rate),
            ("ETA", f'<span class="arkor-eta">{fduration(s["eta"])}</span>'),
            ("elapsed", f'<span class="arkor-elapsed">{fduration(s["elapsed"])}</span>'),
        ]
        cells = "".join(f'<span style="margin-right:14px"><span style="color:#777">{k}</span> {v}</span>'
                        for k, v in metrics)
        header = (f'<b class="arkor-name">{esc(s["name"] or "run")}</b> '
                  f'<code class="arkor-job-id">{esc(s["job_id"] or "not started")}</code> '
                  f'<span style="color:#777">{esc(s["backend"])}</span> {badge(s["status"])}')
        extra = []
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
                         "the kernel (■) to cancel.</div>")
        return (f'{self._style}<div style="font-family:sans-serif;font-size:13px;line-height:1.5">{header}{bar}'
                f'<div style="margin:2px 0">{cells}</div>{"".join(extra)}</div>')

    def checkpoints_text(self) -> str:
        st = self.run_state
        with st.lock:
            steps = [c.step for c in st.checkpoints]
        if not steps:
            return ""
        shown = ", ".join(str(s) for s in steps[-20:])
        more = f" (+{len(steps) - 20} earlier)" if len(steps) > 20 else ""
        return (f'<div style="font-size:12px;line-height:1.4"><b>Checkpoints</b> {len(steps)}: step {esc(shown)}{more}'
                f"</div>{samples_html(st)}")

    def log_text(self) -> str:
        st = self.run_state
        with st.lock:
            entries = list(st.log)[-LOG_LINES:]
            total = st.log_total
            t0 = st.created
        lines = []
        for e in entries:
            line = e.html
            if line is None:  # formatted once, when first shown
                text = f"+{e.wall - t0:.1f}s {esc(describe(e.item))}"
                style = _LEVEL_STYLE.get(e.level)
                line = e.html = f"<span{style}>{text}</span>" if style else text
            lines.append(line)
        hidden = total - len(entries)
        head = f"… {hidden} earlier events\n" if hidden > 0 else ""
        return ('<div style="max-height:150px;overflow-y:auto;display:flex;flex-direction:column-reverse;'
                'font-family:monospace;font-size:11px;line-height:1.35;border:1px solid #eee;padding:2px 4px">'
                f'<div style="white-space:pre-wrap">{head}{chr(10).join(lines)}</div></div>')
