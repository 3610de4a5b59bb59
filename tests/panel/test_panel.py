"""The panel's widget state, fed typed events directly (no backend, no browser)."""

from __future__ import annotations

from typing import Any

import pytest

from arkor_nb.notebook.chart import ESM_STUB
from arkor_nb.notebook.panel import LivePanel
from arkor_nb.notebook.progress import MAX_POINTS, RunState
from arkor_nb.types import (
    CheckpointSaved,
    StreamNotice,
    TrainingFailed,
    TrainingLog,
    TrainingStarted,
)
from tests.panel.comms import recording
from tests.panel.conftest import synthetic_events


def fed(n: int, **kw: Any) -> RunState:
    st = RunState(name="demo", job_id="job_x", backend="local")
    for ev in synthetic_events(n, **kw):
        st.fold(ev)
    return st


def test_panel_traces_status_and_final_snapshot() -> None:
    st = RunState(name="demo", job_id="job_x", backend="local")
    panel = LivePanel(st)
    assert panel.attach_figure()
    events = list(synthetic_events(300, eval_every=50, checkpoint_every=100))
    for ev in events[:-1]:  # all but the completion
        st.fold(ev)
    panel.render()
    fig = panel.figure
    assert panel.chart_box.children == (fig,)
    raw, smooth, ev_trace, lr = fig.data
    assert list(raw.x) == list(range(1, 301))
    assert list(raw.y) == pytest.approx([2.0 / (1 + s / 100) for s in range(1, 301)], rel=1e-6)
    assert list(ev_trace.x) == [50, 100, 150, 200, 250, 300]
    assert len(lr.x) == 300 and lr.yaxis == "y2"
    assert smooth.y[-1] > raw.y[-1]  # the EMA lags a falling loss
    status = panel.status_html.value
    assert '<span class="arkor-step">300 / 300</span>' in status
    assert "arkor-badge-running" in status
    assert "Checkpoints</b> 3: step 100, 200, 300" in panel.checkpoints_html.value
    assert "checkpoint saved at step 300" in panel.log_html.value
    assert panel.cancel_button.description == "Cancel" and not panel.cancel_button.disabled

    st.fold(events[-1])
    panel.finish()
    assert panel.figure is None
    assert fig.comm is None or fig._esm == ESM_STUB  # retired: closed, bundle dropped
    assert fig._esm == ESM_STUB
    assert panel.chart_box.children == (panel.svg_chart,)
    assert "<svg" in panel.svg_chart.value and "polyline" in panel.svg_chart.value
    assert "arkor-badge-completed" in panel.status_html.value
    assert panel.cancel_button.description == "Completed" and panel.cancel_button.disabled
    assert panel.remote_toggle.disabled


def test_controls_only_set_flags_and_the_next_redraw_applies_them() -> None:
    st = fed(500, complete=False)
    panel = LivePanel(st)
    assert panel.attach_figure()
    woken: list[int] = []
    panel.wake = lambda: woken.append(1)
    panel.render()
    assert panel.figure.layout.yaxis.type == "linear"
    panel.log_toggle.value = True
    panel.smoothing.value = 0.0
    assert woken  # the handler only asked for a redraw...
    assert panel.figure.layout.yaxis.type == "linear"  # ...it did not draw
    panel.render()
    assert panel.figure.layout.yaxis.type == "log"
    raw, smooth = panel.figure.data[0], panel.figure.data[1]
    assert raw.visible is False  # no smoothing: the raw line is the line
    assert list(smooth.y) == pytest.approx(list(raw.y), rel=1e-6)


def test_cancel_click_calls_back_and_shows_cancelling() -> None:
    asked: list[bool] = []
    panel = LivePanel(fed(10, complete=False), on_cancel=asked.append)
    panel.remote_toggle.value = False
    panel.cancel_button.click()
    assert asked == [False]
    assert panel.cancel_button.description == "Cancelling…" and panel.cancel_button.disabled


def test_failure_is_shown_prominently_in_red() -> None:
    st = RunState(name="f")
    panel = LivePanel(st, use_plotly=False)
    st.fold(TrainingStarted())
    st.fold(TrainingLog(step=1, loss=1.0))
    st.fold(TrainingFailed(error="dataset row 7: missing 'messages' column", step=1))
    panel.finish()
    assert "arkor-error" in panel.status_html.value
    assert "Training failed: dataset row 7: missing &#x27;messages&#x27; column" in panel.status_html.value
    assert 'style="color:#c62828"' in panel.log_html.value
    assert panel.cancel_button.description == "Failed"


def test_transport_problem_is_explained() -> None:
    st = RunState()
    panel = LivePanel(st, use_plotly=False)
    st.fold(StreamNotice("reconnecting", attempt=3, delay=4.0, error=OSError("connection refused")))
    panel.render()
    assert "arkor-transport" in panel.status_html.value
    assert "reconnecting in 4.0 s" in panel.status_html.value


def test_svg_chart_before_plotly_and_without_it() -> None:
    st = fed(50, complete=False)
    panel = LivePanel(st, use_plotly=False)
    panel.render()
    assert panel.figure is None
    assert panel.chart_box.children == (panel.svg_chart,)
    assert panel.svg_chart.value.count("<polyline") >= 2


def test_redraw_messages_stay_small_and_few_however_long_the_run() -> None:
    """Per redraw: a handful of comm messages, <= 50 kB, at 1k and at 200k events."""
    with recording() as wire:
        st = RunState(name="long", job_id="job_l", backend="local")
        panel = LivePanel(st)
        assert panel.attach_figure()
        per_redraw: dict[int, tuple[int, int]] = {}
        ev = TrainingLog(step=0, loss=1.0, learning_rate=1e-4)
        for step in range(1, 200_001):
            ev.step = step
            ev.loss = 2.0 / (1 + step / 1000) + (step % 7) * 0.01
            ev.eval_loss = 1.0 + 1 / step if step % 50 == 0 else None
            ev.learning_rate = 1e-4 * (1 - step / 200_001)
            st.fold(ev)
            if step % 1000 == 0:
                mark = len(wire.sent)
                panel._log_at = 0.0  # include the event log in every redraw (worst case)
                panel.render()
                msgs = wire.updates(mark)
                per_redraw[step] = (len(msgs), sum(m.size for m in msgs))
        fig = panel.figure
        assert len(fig.data[0].x) <= MAX_POINTS
        assert fig.data[0].x[-1] == 200_000
    for step in (1000, 100_000, 200_000):
        count, size = per_redraw[step]
        assert 1 <= count <= 4, per_redraw[step]  # status, chart (one message), log
        assert size <= 50_000, per_redraw[step]
    # flat: a redraw late in the run costs no more than one early on (plus slack for digits)
    assert per_redraw[200_000][1] <= per_redraw[2000][1] * 1.3


def test_chart_update_is_one_comm_message() -> None:
    with recording() as wire:
        st = fed(100, complete=False)
        panel = LivePanel(st)
        assert panel.attach_figure()
        fig_id = panel.figure.comm.comm_id
        panel.render()
        st.fold(TrainingLog(step=101, loss=0.5))
        mark = len(wire.sent)
        panel.render()
        chart_msgs = [m for m in wire.updates(mark) if m.comm_id == fig_id]
    assert len(chart_msgs) == 1
    state = chart_msgs[0].data["state"]
    assert state["_py2js_update"]["style_traces"] == [0, 1]
    assert state["_last_trace_edit_id"] == state["_py2js_update"]["trace_edit_id"]


def test_checkpoint_samples_appear_beside_the_step() -> None:
    st = fed(20, complete=False)
    st.fold(CheckpointSaved(step=20))
    st.set_sample(20, "What is 2+2?", None)
    panel = LivePanel(st, use_plotly=False)
    panel.render()
    assert "sampling…" in panel.checkpoints_html.value
    st.set_sample(20, "What is 2+2?", "4")
    panel.render()
    html = panel.checkpoints_html.value
    assert "step 20" in html and "<i>What is 2+2?</i> → 4" in html


def test_snapshot_learning_rate_ticks_are_distinct() -> None:
    """A slowly decaying lr (0.0029986 -> 0.0029725) must not label every tick "0.003"."""
    import re

    from arkor_nb.notebook.snapshot import Line, svg_chart

    lrs = [0.0029986 - i * 0.0000006 for i in range(45)]
    svg = svg_chart([
        Line(xs=list(range(1, 46)), ys=[1.0] * 45, color="#1f77b4"),
        Line(xs=list(range(1, 46)), ys=lrs, color="#999", axis="y2"),
    ])
    labels = re.findall(r'fill="[^"]+">([^<]+)</text>', svg.split("learning rate")[0])
    lr_labels = [t for t in labels if t.startswith("0.00")]
    assert len(lr_labels) >= 2 and len(set(lr_labels)) == len(lr_labels), lr_labels
