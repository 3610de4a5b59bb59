"""Judged runs in the panel, the snapshot and compare: task metrics from ``checkpoint.eval``
events streamed by the loopback cloud fake (real HTTP + SSE, the real Trainer and panel)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from bs4 import BeautifulSoup

from arkor_nb import compare, create_trainer, replay
from arkor_nb.notebook import live
from tests.sdk.fake_cloud import (
    SUPPORTED_MODEL,
    FakeCloud,
    checkpoint,
    checkpoint_eval,
    completed,
    health_log,
    started,
)

EXPECTED = "category: shipping | priority: high | team: logistics"
EXAMPLES_20 = [
    {"prompt": "Where is my parcel?", "expected": EXPECTED,
     "reply": "category: shipping | priority: low | team: logistics",
     "scores": {"fields/all": 0.0, "fields/category": 1.0, "fields/priority": 0.0, "exact": 0.0}},
    {"prompt": "Refund please", "expected": "category: billing | priority: medium | team: payments",
     "reply": "category: billing | priority: medium | team: payments",
     "scores": {"fields/all": 1.0, "fields/category": 1.0, "fields/priority": 1.0, "exact": 1.0}},
]


def judged_events(*, best_at: int = 20) -> list[dict[str, Any]]:
    """A 30-step run: health logs, checkpoints at 10/20/30, each followed by its eval."""
    events: list[dict[str, Any]] = [started(maxSteps=30)]
    scores = {10: 0.4, 20: 0.9, 30: 0.7} if best_at == 20 else {10: 0.2, 20: 0.3, 30: 0.5}
    for step in range(1, 31):
        events.append(health_log(step, 2.0 / step, grad_norm=1.5 + step / 100,
                                 tokens_per_second=900.0 + step, rss_mb=700.0 + step * 2,
                                 gpu_mem_mb=1500.0 if step < 30 else 1400.0))
        if step % 10 == 0:
            events.append(checkpoint(step))
            events.append(checkpoint_eval(
                step, {"fields/all": scores[step], "exact": scores[step] / 2}, n=60,
                examples=EXAMPLES_20 if step > 10 else EXAMPLES_20[1:]))
    events.append(completed())
    return events


def _hover(svg: str, name: str) -> tuple[list[str], list[str]]:
    m = re.search(rf'data-name="{re.escape(name)}" data-xs="([^"]*)" data-ys="([^"]*)"', svg)
    assert m, f"no hover data for {name!r} in {svg[:300]}"
    return m.group(1).split(","), m.group(2).split(",")


def _run(cloud: FakeCloud, name: str, **kw: Any) -> Any:
    trainer = create_trainer(name=name, model=SUPPORTED_MODEL, max_steps=30, backend=cloud.backend(), **kw)
    run = live(trainer, display=False)
    assert run.result(timeout=60).job.status == "completed"
    return run


def test_panel_shows_metrics_best_checkpoint_examples_and_health(tmp_path: Path) -> None:
    with FakeCloud() as cloud:
        cloud.default_events = judged_events()
        trainer = create_trainer(name="judged", model=SUPPORTED_MODEL, max_steps=30,
                                 backend=cloud.backend())
        run = live(trainer, display=False)
        panel = run.panel
        run.result(timeout=60)
    st = run.state
    # the model: one series per metric, best point, latest examples, health
    assert st.evals.curves()["fields/all"] == ([10, 20, 30], [0.4, 0.9, 0.7])
    assert st.evals.best_of() == ("fields/all", 20, 0.9)
    assert st.evals.examples_step == 30 and st.evals.n == 60
    h = st.evals.health
    assert (h.step, h.grad_norm, h.tokens_per_second) == (30, 1.8, 930.0)
    assert h.peak_rss_mb == 760.0 and h.gpu_mem_mb == 1400.0 and h.peak_gpu_mem_mb == 1500.0

    # the widgets: metric chart beside the loss chart, in percent, best point ringed
    assert panel.metric_chart.layout.display == ""
    svg = panel.metric_chart.value
    assert 'class="arkor-svg arkor-metric-svg"' in svg and 'data-unit="%"' in svg
    assert _hover(svg, "fields/all") == (["10", "20", "30"], ["40", "90", "70"])
    assert _hover(svg, "exact") == (["10", "20", "30"], ["20", "45", "35"])
    assert 'class="arkor-best-point"' in svg and "best 90% @ 20" in svg
    status = panel.status_html.value
    assert re.search(r'class="arkor-best"[^>]*>best fields/all <b>90%</b> @ step 20<', status)
    health = BeautifulSoup(status, "html.parser").select_one(".arkor-health").get_text(" ", strip=True)
    assert health == ("health @ step 30: grad norm 1.8 tokens/s 930 peak RSS 760 MB "
                      "GPU memory 1.37 GB (peak 1.46 GB)")
    examples = BeautifulSoup(panel.checkpoints_html.value, "html.parser").select_one(".arkor-examples")
    assert "at step 30 (2 of 60)" in examples.get_text(" ")
    assert "eval at step 20 (n=60): fields/all 90%, exact 45%" in panel.log_html.value

    # the snapshot carries the same metric chart (minus the hover data) and the best row
    snap = run.snapshot_html()
    assert re.sub(r' data-[a-z0-9]+="[^"]*"', "", svg) in snap
    soup = BeautifulSoup(snap, "html.parser")
    assert soup.select(".arkor-metric-chart svg.arkor-metric-svg polyline")
    assert "best fields/all" in soup.select_one(".arkor-summary").get_text(" ")
    assert soup.select_one(".arkor-snapshot .arkor-health") is not None

    # record -> replay: the same judged state, without the backend
    again = replay(run.save(tmp_path / "judged.jsonl"))
    assert again.state.evals.curves() == st.evals.curves()
    assert again.state.evals.best_of() == ("fields/all", 20, 0.9)
    assert "arkor-metric-svg" in again.snapshot_html()


def test_wrong_fields_are_highlighted_in_the_examples() -> None:
    with FakeCloud() as cloud:
        events = judged_events()
        cloud.default_events = events[: events.index(next(
            e for e in events if e["type"] == "checkpoint.eval" and e["step"] == 20)) + 1] + [completed()]
        run = _run(cloud, "fields")
    soup = BeautifulSoup(run.panel.checkpoints_html.value, "html.parser")
    rows = soup.select(".arkor-examples .arkor-example")
    assert len(rows) == 2
    first = rows[0]
    assert [s.get_text() for s in first.select(".arkor-field-wrong")] == ["priority: low"]
    assert [s.get_text() for s in first.select(".arkor-field-right")] == ["category: shipping",
                                                                          "team: logistics"]
    assert not rows[1].select(".arkor-field-wrong")


def test_compare_shows_only_the_config_keys_that_differ() -> None:
    with FakeCloud() as cloud:
        cloud.default_events = judged_events()
        a = _run(cloud, "lr-small", learning_rate=1e-4, lora={"r": 8, "alpha": 16}, batch_size=4)
        b = _run(cloud, "lr-big", learning_rate=1e-3, lora={"r": 16, "alpha": 16}, batch_size=4)
        cloud.default_events = judged_events(best_at=30)
        c = _run(cloud, "lr-mid", learning_rate=5e-4, lora={"r": 8, "alpha": 16}, batch_size=4)
    cmp = compare([a, b, c])
    assert cmp.columns == ["learning_rate", "lora.r"]
    rows = cmp.rows()
    assert [(r["run"], r["learning_rate"], r["lora.r"]) for r in rows] == [
        ("lr-small", 1e-4, 8), ("lr-big", 1e-3, 16), ("lr-mid", 5e-4, 8)]
    assert [(r["best_step"], r["best_value"]) for r in rows] == [(20, 0.9), (20, 0.9), (30, 0.5)]
    soup = BeautifulSoup(cmp.snapshot_html(), "html.parser")
    head = [th.get_text() for th in soup.select(".arkor-compare th")]
    assert head == ["run", "status", "learning_rate", "lora.r", "best fields/all", "final loss",
                    "duration"]
    cells = [td.get_text(" ", strip=True) for td in soup.select(".arkor-compare tr")[3].select("td")]
    assert cells[2:5] == ["5e-4", "8", "50% @ 30"]
    # the metric curves overlaid: one line per run, each run's best point ringed
    metric = soup.select_one(".arkor-metric-chart svg")
    assert len(metric.select("polyline")) == 3 and len(metric.select(".arkor-best-point")) == 3


def test_reported_metrics_are_drawn_with_the_task_metrics_but_never_the_headline() -> None:
    from arkor_nb.core.contexts import MetricsReported
    from arkor_nb.core.events import CheckpointEval
    from arkor_nb.notebook.panel import LivePanel
    from arkor_nb.notebook.progress import RunState

    st = RunState(name="reported", job_id="job_r")
    for step in (5, 10, 15):
        st.fold(MetricsReported(step=step, metrics={"my_score": step / 20}))
    st.fold(CheckpointEval(step=10, metrics={"exact": 0.3}, n=4))
    assert st.evals.curves() == {"exact": ([10], [0.3]), "my_score": ([5, 10, 15], [0.25, 0.5, 0.75])}
    assert st.evals.best_of() == ("exact", 10, 0.3)  # a reported metric is drawn, not the headline
    panel = LivePanel(st)
    panel.render()
    svg = panel.metric_chart.value
    assert _hover(svg, "my_score") == (["5", "10", "15"], ["25", "50", "75"])
    assert "best 30% @ 10" in svg and panel.metric_chart.layout.display == ""
