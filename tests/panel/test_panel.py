"""The panel's widget state, fed typed events directly (no backend, no browser)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from arkor_nb.core.contexts import StreamNotice
from arkor_nb.core.events import CheckpointSaved, TrainingFailed, TrainingLog, TrainingStarted
from arkor_nb.notebook.panel import LivePanel
from arkor_nb.notebook.progress import RunState
from arkor_nb.notebook.snapshot import snapshot_html
from tests.panel.comms import recording
from tests.panel.conftest import synthetic_events


def fed(n: int, **kw: Any) -> RunState:
    st = RunState(name="demo", job_id="job_x", backend="local")
    for ev in synthetic_events(n, **kw):
        st.fold(ev)
    return st


def _hover(svg: str, name: str) -> tuple[list[str], list[str]]:
    """The exact values a hoverable line carries (what the chart's JavaScript shows)."""
    m = re.search(rf'data-name="{re.escape(name)}" data-xs="([^"]*)" data-ys="([^"]*)"', svg)
    assert m, f"no hover data for {name!r}"
    return m.group(1).split(","), m.group(2).split(",")


def test_panel_traces_status_and_final_snapshot() -> None:
    st = RunState(name="demo", job_id="job_x", backend="local")
    panel = LivePanel(st)
    assert panel.svg_chart.live and "waiting for the first step" in panel.svg_chart.value
    events = list(synthetic_events(300, eval_every=50, checkpoint_every=100))
    for ev in events[:-1]:  # all but the completion
        st.fold(ev)
    panel.render()
    svg = panel.svg_chart.value
    assert panel.chart_box.children == (panel.svg_chart, panel.metric_chart)
    assert panel.metric_chart.layout.display == "none"  # no task metric yet
    xs, ys = _hover(svg, "loss (raw)")
    assert xs == [str(i) for i in range(1, 301)]
    assert [float(y) for y in ys] == pytest.approx([2.0 / (1 + s / 100) for s in range(1, 301)], rel=1e-3)
    assert _hover(svg, "eval loss")[0] == ["50", "100", "150", "200", "250", "300"]
    assert 100 <= len(_hover(svg, "learning rate")[0]) <= 200  # thinned like the snapshot's
    assert 'data-name="loss"' not in svg  # the smoothed line is derived: no values of its own
    status = panel.status_html.value
    assert '<span class="arkor-step">300 / 300</span>' in status
    assert "arkor-badge-running" in status
    assert "Checkpoints</b> 3: step 100, 200, 300" in panel.checkpoints_html.value
    assert "checkpoint saved at step 300" in panel.log_html.value
    assert panel.cancel_button.description == "Cancel" and not panel.cancel_button.disabled

    st.fold(events[-1])
    panel.finish()
    assert not panel.svg_chart.live  # the watchdog stands down
    # one look: the live chart is the saved snapshot's chart, plus hover values
    live_svg = re.sub(r' data-[a-z0-9]+="[^"]*"', "", panel.svg_chart.value)
    assert live_svg in snapshot_html(st)
    assert "arkor-badge-completed" in panel.status_html.value
    assert panel.cancel_button.description == "Completed" and panel.cancel_button.disabled
    assert panel.remote_toggle.disabled
    assert "ETA" not in panel.status_html.value  # no frozen ETA on a stopped run


def test_controls_only_set_flags_and_the_next_redraw_applies_them() -> None:
    st = fed(500, complete=False)
    panel = LivePanel(st)
    woken: list[int] = []
    panel.wake = lambda: woken.append(1)
    panel.render()
    assert "loss (log)" not in panel.svg_chart.value and "loss (raw)" in panel.svg_chart.value
    panel.log_toggle.value = True
    panel.smoothing.value = 0.0
    assert woken  # the handler only asked for a redraw...
    assert "loss (log)" not in panel.svg_chart.value  # ...it did not draw
    panel.render()
    assert "loss (log)" in panel.svg_chart.value
    assert "loss (raw)" not in panel.svg_chart.value  # no smoothing: the raw line is the line
    assert 200 <= len(_hover(panel.svg_chart.value, "loss")[0]) <= 400  # thinned like the snapshot


def test_cancel_click_calls_back_and_shows_cancelling() -> None:
    asked: list[bool] = []
    panel = LivePanel(fed(10, complete=False), on_cancel=asked.append)
    panel.remote_toggle.value = False
    panel.cancel_button.click()
    assert asked == [False]
    assert panel.cancel_button.description == "Cancelling…" and panel.cancel_button.disabled


def test_failure_is_shown_prominently_in_red() -> None:
    st = RunState(name="f")
    panel = LivePanel(st)
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
    panel = LivePanel(st)
    st.fold(StreamNotice("reconnecting", attempt=3, delay=4.0, error=OSError("connection refused")))
    panel.render()
    assert "arkor-transport" in panel.status_html.value
    # never silent (issue 11): the attempt, the next delay and the last error
    assert ("reconnecting (attempt 3, next in 4.0 s, last error: OSError: connection refused)"
            in panel.status_html.value)


def test_an_empty_chart_says_what_it_waits_for_and_the_panel_shows_little_text() -> None:
    st = RunState(name="q", job_id="job_q", backend="local")
    panel = LivePanel(st)
    panel.render()
    svg = panel.svg_chart.value
    assert "waiting for the first step" in svg and "<polyline" not in svg and ">step<" not in svg
    # saved mid-run, the panel's output carries no stale text line
    assert panel._repr_mimebundle_()["text/plain"] == ""
    panel.set_reattach("job_q", "local")
    assert panel.svg_chart.reattach == 'import arkor_nb as ak; run = ak.live(job_id="job_q")'
    beat = panel.svg_chart.beat
    panel.beat()
    assert panel.svg_chart.beat == beat + 1
    st.fold(StreamNotice("aborted"))
    panel.finish()
    assert "no steps were logged" in panel.svg_chart.value


def test_metrics_never_split_a_label_from_its_value() -> None:
    panel = LivePanel(fed(50, complete=False))
    panel.render()
    cells = re.findall(r'<span class="arkor-metric" style="([^"]*)"><span style="color:#777">([^<]*)</span>',
                       panel.status_html.value)
    assert {label for _, label in cells} >= {"step", "loss", "learning rate", "ETA", "elapsed"}
    assert all("white-space:nowrap" in style and "inline-block" in style for style, _ in cells)


def test_redraw_messages_stay_small_and_few_however_long_the_run() -> None:
    """Per redraw: a handful of comm messages, <= 50 kB, at 1k and at 200k events."""
    with recording() as wire:
        st = RunState(name="long", job_id="job_l", backend="local")
        panel = LivePanel(st)
        chart_id = panel.svg_chart.comm.comm_id
        per_redraw: dict[int, tuple[int, int, int]] = {}
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
                chart = [m for m in msgs if m.comm_id == chart_id]
                per_redraw[step] = (len(msgs), sum(m.size for m in msgs), len(chart))
        assert _hover(panel.svg_chart.value, "loss (raw)")[0][-1] == "200000"
    for step in (1000, 100_000, 200_000):
        count, size, chart_msgs = per_redraw[step]
        assert 1 <= count <= 4, per_redraw[step]  # status, chart, log
        assert chart_msgs == 1, per_redraw[step]  # the chart redraw is one message
        assert size <= 50_000, per_redraw[step]
    # flat: a redraw late in the run costs no more than one early on (plus slack for digits)
    assert per_redraw[200_000][1] <= per_redraw[2000][1] * 1.3


def test_checkpoint_samples_appear_beside_the_step() -> None:
    st = fed(20, complete=False)
    st.fold(CheckpointSaved(step=20))
    st.set_sample(20, "What is 2+2?", None)
    panel = LivePanel(st)
    panel.render()
    assert "sampling…" in panel.checkpoints_html.value
    st.set_sample(20, "What is 2+2?", "4")
    panel.render()
    html = panel.checkpoints_html.value
    assert "step 20" in html and "<i>What is 2+2?</i> → 4" in html


def test_snapshot_learning_rate_ticks_are_distinct() -> None:
    """A slowly decaying lr (0.0029986 -> 0.0029725) must not label every tick "0.003"."""
    import re

    from arkor_nb.notebook.svgchart import Line, svg_chart

    lrs = [0.0029986 - i * 0.0000006 for i in range(45)]
    svg = svg_chart([
        Line(xs=list(range(1, 46)), ys=[1.0] * 45, color="#1f77b4"),
        Line(xs=list(range(1, 46)), ys=lrs, color="#999", axis="y2"),
    ])
    labels = re.findall(r'fill="[^"]+">([^<]+)</text>', svg.split("learning rate")[0])
    lr_labels = [t for t in labels if "e-3" in t]
    assert len(lr_labels) >= 2 and len(set(lr_labels)) == len(lr_labels), lr_labels
    assert all(re.fullmatch(r"\d\.\d+e-3", t) for t in lr_labels), lr_labels  # 2.98e-3, not 0.0029799


def test_phases_show_what_the_job_does_before_its_first_step() -> None:
    from arkor_nb.core.events import TrainingPhase

    st = RunState(name="p", job_id="job_p", backend="local")
    panel = LivePanel(st)
    st.fold(TrainingPhase(phase="preparing", detail="building arkor-nb/tiny (first run only, ~20 s)"))
    panel.render()
    status = panel.status_html.value
    assert "arkor-badge-preparing" in status
    assert "preparing: building arkor-nb/tiny (first run only, ~20 s)" in status
    assert "ETA" not in status  # no step yet: no ETA
    st.fold(TrainingStarted())
    for ev in synthetic_events(20, complete=False):
        st.fold(ev)
    panel.render()
    status = panel.status_html.value
    assert "arkor-badge-running" in status and "arkor-phase" not in status
    st.fold(TrainingPhase(phase="saving", detail="saving the adapter"))
    panel.render()
    assert "saving: saving the adapter" in panel.status_html.value


def test_live_chart_javascript_is_a_packaged_file(tmp_path: Any) -> None:
    """The anywidget ESM lives in livechart.js next to its module, and the wheel ships it."""
    import subprocess
    import sys
    import zipfile
    from pathlib import Path

    from arkor_nb.notebook import livechart

    js = Path(livechart.__file__).with_name("livechart.js")
    chart = livechart.new_live_chart("<svg></svg>")
    assert chart._esm == js.read_text() and "export default { render }" in chart._esm
    assert "ESM = r" not in Path(livechart.__file__).read_text()  # no JavaScript in a Python string
    repo = Path(livechart.__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(repo)], check=True, capture_output=True, timeout=240)
    (wheel,) = tmp_path.glob("arkor_nb-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        assert zf.read("arkor_nb/notebook/livechart.js").decode() == js.read_text()
