"""``ak.compare(runs)``: several runs side by side, to tell which settings are best.

One row per run: status, **only the config keys whose values differ between
the runs** (named as ``create_trainer`` spells them: ``learning_rate``,
``lora.r``), the best task metric and its step, final loss and duration;
the loss curves overlaid on one chart and the metric curves on another.
Drawn with the one SVG engine, so it is static HTML that a saved notebook keeps.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from arkor_nb.core.config_keys import KEYWORD_OF, WIRE_CONFIG_KEYS
from arkor_nb.core.errors import ConfigError
from arkor_nb.core.format import fduration, fnum, fpct, fsci
from arkor_nb.notebook.evalview import METRIC_H, METRIC_W, metric_lines
from arkor_nb.notebook.palette import badge, series_color
from arkor_nb.notebook.progress import RunState
from arkor_nb.notebook.record import state_from_record
from arkor_nb.notebook.snapshot import run_lines
from arkor_nb.notebook.svgchart import Mark, svg_chart
from arkor_nb.notebook.text import esc

MISSING = "–"


def config_label(wire_key: str) -> str:
    """``learningRate`` -> ``learning_rate``, ``loraR`` -> ``lora.r``; unknown keys as they are."""
    return KEYWORD_OF.get(wire_key, wire_key)


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def differing_config(configs: list[dict[str, Any]]) -> list[str]:
    """Wire keys whose values are not the same in every config (absent counts as a value),
    in ``create_trainer``'s order of options (then any other key, as first seen)."""
    keys: list[str] = []
    for config in configs:
        keys.extend(k for k in config if k not in keys)
    rank = {k: i for i, k in enumerate(WIRE_CONFIG_KEYS)}
    keys.sort(key=lambda k: rank.get(k, len(rank)))  # stable: unknown keys keep their order
    return [k for k in keys if len({_canon(c.get(k, MISSING)) for c in configs}) > 1]


def _shown(value: Any) -> str:
    if value is MISSING:
        return MISSING
    if isinstance(value, dict):  # a dataset source: its path or name says enough
        value = value.get("path") or value.get("name") or value.get("url") or value
    if isinstance(value, float):
        return fsci(value, 3)  # 5e-4, as the panel writes a learning rate
    return value if isinstance(value, str) else _canon(value)


def primary_metric(states: list[RunState]) -> str | None:
    """The metric to rank by: the first run's headline metric that any run has."""
    for st in states:
        if st.evals.primary is not None:
            return st.evals.primary
    return None


def compare_html(states: list[tuple[str, RunState]], *, smoothing: float = 0.6, log_y: bool = False,
                 metric: str | None = None) -> str:
    """Loss chart, metric chart and the one-row-per-run table (see the module docstring)."""
    runs = [st for _, st in states]
    metric = metric or primary_metric(runs)
    lines, mlines, marks = [], [], []
    for i, (label, st) in enumerate(states):
        color = series_color(i)
        lines += run_lines(st, smoothing=smoothing, color=color, eval_color=color, label=label, lr=False)
        with st.lock:
            if metric is not None:
                mlines += metric_lines(st.evals, label=label, color=color, names=[metric])
                best = st.evals.best_of(metric)
                if best is not None:
                    marks.append(Mark(best[1], 100 * best[2], color, ""))
    charts = [f"<div>{svg_chart(lines, log_y=log_y)}</div>"]
    if mlines:
        charts.append('<div class="arkor-metric-chart">' + svg_chart(
            mlines, width=METRIC_W, height=METRIC_H, y_label=metric or "task metric",
            y_range=(0.0, 100.0), unit="%", marks=marks, css_class="arkor-svg arkor-metric-svg") + "</div>")
    with_config = [dict(st.config) for st in runs]
    differing = differing_config(with_config)
    head = ["run", "status", *(config_label(k) for k in differing),
            f"best {metric}" if metric else "best metric", "final loss", "duration"]
    body = []
    for i, (label, st) in enumerate(states):
        s = st.summary()
        best = st.evals.best_of(metric) if metric else None
        cells = [f'<span style="color:{series_color(i)}">■</span> {esc(label)}', badge(s["status"]),
                 *(f'<span class="arkor-config-value">{esc(_shown(with_config[i].get(k, MISSING)))}</span>'
                   for k in differing),
                 esc(f"{fpct(best[2])} @ {best[1]}" if best else MISSING),
                 esc(fnum(s["loss"])), esc(fduration(s["elapsed"]))]
        body.append("<tr>" + "".join(f'<td style="padding:1px 8px">{c}</td>' for c in cells) + "</tr>")
    header = "".join(f'<th style="text-align:left;padding:1px 8px" class="arkor-col">{esc(h)}</th>'
                     for h in head)
    table = (f'<table class="arkor-compare" style="font-size:12px;border-collapse:collapse">'
             f"<tr>{header}</tr>{''.join(body)}</table>")
    return (f'<div class="arkor-snapshot arkor-compare-view" style="font-family:sans-serif">'
            f'<div style="display:flex;flex-wrap:wrap;gap:12px">{"".join(charts)}</div>{table}</div>')


class Comparison:
    """Several runs overlaid: ``compare([run_a, run_b, "run_c.jsonl"])``.

    ``columns`` are the config keys that differ (``create_trainer`` names);
    ``rows()`` gives the table as dicts, for code.
    """

    def __init__(self, runs: Iterable[Any], *, metric: str | None = None) -> None:
        self.runs: list[tuple[str, RunState]] = [_as_state(run, i) for i, run in enumerate(runs)]
        if not self.runs:
            raise ConfigError("runs", "pass at least one run: a LiveRun, a replay() or a .jsonl path")
        self.metric = metric or primary_metric([st for _, st in self.runs])

    @property
    def columns(self) -> list[str]:
        return [config_label(k) for k in differing_config([dict(st.config) for _, st in self.runs])]

    def rows(self) -> list[dict[str, Any]]:
        """One dict per run: label, status, each differing config value, best metric, final loss, duration."""
        configs = [dict(st.config) for _, st in self.runs]
        differing = differing_config(configs)
        out = []
        for (label, st), config in zip(self.runs, configs, strict=True):
            s = st.summary()
            best = st.evals.best_of(self.metric) if self.metric else None
            out.append({"run": label, "status": s["status"],
                        **{config_label(k): config.get(k) for k in differing},
                        "best_metric": self.metric if best else None,
                        "best_step": best[1] if best else None, "best_value": best[2] if best else None,
                        "final_loss": s["loss"], "duration_s": s["elapsed"]})
        return out

    def snapshot_html(self, *, smoothing: float = 0.6, log_y: bool = False) -> str:
        return compare_html(self.runs, smoothing=smoothing, log_y=log_y, metric=self.metric)

    def _repr_html_(self) -> str:
        return self.snapshot_html()

    def __repr__(self) -> str:
        return "<arkor_nb comparison of " + ", ".join(label for label, _ in self.runs) + ">"


def _as_state(run: Any, index: int) -> tuple[str, RunState]:
    if isinstance(run, (str, os.PathLike)):
        st = state_from_record(run)
        return (st.name or Path(run).stem, st)
    state = getattr(run, "state", None)
    if isinstance(state, RunState):
        return (state.name or state.job_id or f"run {index + 1}", state)
    if isinstance(run, RunState):
        return (run.name or f"run {index + 1}", run)
    raise ConfigError(f"runs[{index}]", f"expected a LiveRun, a replay() or a .jsonl path, got {run!r}")


def compare(runs: Iterable[Any], *, metric: str | None = None) -> Comparison:
    """Compare runs (LiveRun, replay() result or JSONL path): differing config, best metric, curves."""
    return Comparison(runs, metric=metric)
