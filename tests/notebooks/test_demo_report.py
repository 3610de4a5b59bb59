"""The `make demo` report opens offline and shows every logged point; its inputs are real data."""

from __future__ import annotations

import math
import re
from pathlib import Path

from bs4 import BeautifulSoup

from arkor_nb.demo import EVAL_DATASET, fields_right, held_out_tickets
from arkor_nb.demo.report import ReportData, Sample, render_report

REPO = Path(__file__).resolve().parents[2]


def _report(**overrides: object) -> BeautifulSoup:
    steps = list(range(1, 41))
    data = ReportData(
        name="triage-demo",
        job_id="job_0123456789abcdef",
        status="completed",
        model="arkor-nb/tiny",
        dataset="data/triage.jsonl",
        steps=steps,
        losses=[6.3 * math.exp(-s / 9) + 0.2 for s in steps],
        eval_steps=[10, 20, 30, 40],
        eval_losses=[1.2, 0.5, 0.3, 0.25],
        duration_s=21.2,
        config={"model": "arkor-nb/tiny", "maxSteps": 40},
        samples=[
            Sample("Where is my parcel? <b>now</b>", "category: shipping", {"fine-tuned": "x"})
        ],
        links={"executed quickstart notebook": "quickstart.ipynb"},
    )
    for key, value in overrides.items():
        setattr(data, key, value)
    return BeautifulSoup(render_report(data), "html.parser")


def test_report_is_self_contained() -> None:
    soup = _report()
    html = str(soup)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "no CDN or remote asset"
    assert not soup.find_all("script", src=True) and not soup.find_all("link")
    assert soup.find("script") is not None, "the hover readout is inline JavaScript"
    # User text is escaped, never interpreted.
    assert "<b>now</b>" not in html and "&lt;b&gt;now&lt;/b&gt;" in html


def test_every_logged_point_is_hoverable() -> None:
    soup = _report()
    train = soup.select("#loss-chart .train-points circle")
    evals = soup.select("#loss-chart .eval-points circle")
    assert [int(c["data-step"]) for c in train] == list(range(1, 41))
    assert len(evals) == 4
    assert train[0].find("title").get_text() == "step 1: loss 5.837"
    text = soup.get_text(" ", strip=True)
    assert "completed" in text and "job_0123456789abcdef" in text and "0.25" in text


def test_non_finite_losses_are_left_out_not_drawn_at_zero() -> None:
    soup = _report(steps=[1, 2, 3], losses=[2.0, float("nan"), 1.0], eval_steps=[], eval_losses=[])
    assert [c["data-step"] for c in soup.select(".train-points circle")] == ["1", "3"]


def test_held_out_tickets_come_from_the_shipped_eval_file() -> None:
    tickets = held_out_tickets(REPO / EVAL_DATASET, count=2)
    assert len(tickets) == 2
    for messages, expected in tickets:
        assert messages[-1]["role"] == "user" and messages[-1]["content"]
        assert all(m["role"] != "assistant" for m in messages)
        assert expected.startswith("category:")


def test_fields_right_counts_exact_key_value_lines() -> None:
    expected = "category: shipping\npriority: medium\nteam: logistics"
    assert fields_right(expected, "category: shipping\npriority: medium\nteam: payments") == "2/3"
    assert fields_right(expected, expected) == "3/3"
    assert fields_right(expected, "Common base class") == "0/3"


def test_report_draws_task_metrics_with_the_panels_engine() -> None:
    soup = _report(metrics={"fields/all": [(10, 0.2), (20, 0.85), (40, 0.8)],
                            "exact": [(10, 0.0), (20, 0.5), (40, 0.6)]})
    chart = soup.select_one("svg#metric-chart.arkor-metric-svg")
    assert chart is not None
    points = chart.select(".arkor-metric-line-points circle")
    assert [(c["data-step"], c["data-value"]) for c in points[:3]] == [
        ("10", "20"), ("20", "85"), ("40", "80")]
    assert points[1].find("title").get_text() == "step 20: fields/all 85%"
    assert chart.select_one(".arkor-best-point").get_text() == "best 85% @ 20"
    # the loss chart comes from the same engine (the live panel's class and axes)
    assert "arkor-svg" in soup.select_one("svg#loss-chart")["class"]
    assert _report().select_one("#metric-chart") is None  # no task eval, no empty chart
