"""How task metrics look: the metric chart, the best checkpoint, eval examples, the health row.

The panel, the snapshot and ``compare`` draw them from a run's
:class:`~arkor_nb.notebook.evals.EvalTrack` with the one SVG engine
(``svgchart``), so live and saved runs look the same. Metrics are scores in
[0, 1] drawn as 0-100 %. In the examples, a ``fields`` answer
(``key: value | key: value``, or a JSON object) is compared part by part and
each wrong or missing field is highlighted (parsed and normalised as the
``fields`` scorer does: ``core/scorers.py``); other answers are marked right or
wrong as a whole from their scores.
"""

from __future__ import annotations

from typing import Any

from arkor_nb.core.format import fnum, fpct
from arkor_nb.core.scorers import parse_fields
from arkor_nb.notebook.evals import EvalTrack, Health
from arkor_nb.notebook.palette import ERROR, RIGHT, WRONG, series_color
from arkor_nb.notebook.series import thin
from arkor_nb.notebook.svgchart import Line, Mark, svg_chart
from arkor_nb.notebook.text import esc

METRIC_W, METRIC_H = 440, 260
METRIC_LINES = 7  # metric curves drawn (the primary first); hover and the log name the rest
EMPTY_METRICS = "task metrics appear after the first checkpoint"
CUT = 120  # characters of a prompt / answer shown in the examples table


def metric_lines(track: EvalTrack, *, label: str = "", color: str | None = None,
                 names: list[str] | None = None, limit: int = 400) -> list[Line]:
    """One line per metric in percent (the primary metric first, thicker)."""
    curves = track.curves()
    primary = track.primary
    order = names if names is not None else (
        ([primary] if primary else []) + [n for n in curves if n != primary])[:METRIC_LINES]
    prefix = f"{label} " if label else ""
    lines = []
    for i, name in enumerate(order):
        if name not in curves or not curves[name][0]:
            continue
        xs, ys = thin(*curves[name], limit)
        lines.append(Line(xs, [100 * y for y in ys], color or series_color(i), f"{prefix}{name}",
                          width=2.2 if name == primary else 1.4, css="arkor-metric-line"))
    return lines


def best_mark(track: EvalTrack, color: str = ERROR) -> list[Mark]:
    best = track.best_of()
    if best is None:
        return []
    _, step, value = best
    return [Mark(step, 100 * value, color, f"best {fpct(value)} @ {step}")]


def metric_chart(track: EvalTrack, *, hover: bool = False, empty: str = EMPTY_METRICS) -> str:
    """The task-metric chart: one line per metric, 0-100 %, the best point ringed."""
    return svg_chart(metric_lines(track), width=METRIC_W, height=METRIC_H, hover=hover,
                     empty=empty, y_label="task metric", y_range=(0.0, 100.0), unit="%",
                     marks=best_mark(track), css_class="arkor-svg arkor-metric-svg")


def best_html(track: EvalTrack) -> str:
    """``best fields/all 92% @ step 40``: the checkpoint to download (empty before any eval)."""
    best = track.best_of()
    if best is None:
        return ""
    name, step, value = best
    return (f'<span class="arkor-best" title="ak.download(job_id, step={step})">best '
            f"{esc(name)} <b>{fpct(value)}</b> @ step {step}</span>")


def health_html(h: Health) -> str:
    """One compact row: grad norm, tokens/s, peak RSS, GPU memory (what the worker reported)."""
    if not h.known:
        return ""
    bits = []
    if h.grad_norm is not None:
        bits.append(("grad norm", fnum(h.grad_norm, 3)))
    if h.tokens_per_second is not None:
        bits.append(("tokens/s", f"{h.tokens_per_second:,.0f}"))
    if h.peak_rss_mb is not None:
        bits.append(("peak RSS", _mb(h.peak_rss_mb)))
    if h.gpu_mem_mb is not None:
        peak = f" (peak {_mb(h.peak_gpu_mem_mb)})" if h.peak_gpu_mem_mb != h.gpu_mem_mb else ""
        bits.append(("GPU memory", _mb(h.gpu_mem_mb) + peak))
    cells = " ".join(f'<span style="white-space:nowrap;margin-right:14px"><span style="color:#777">'
                     f"{k}</span> {esc(v)}</span>" for k, v in bits)
    return (f'<div class="arkor-health" style="font-size:12px;color:#333">'
            f'<span style="color:#777">health @ step {h.step}:</span> {cells}</div>')


def _mb(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value / 1024:.2f} GB" if value >= 1024 else f"{value:.0f} MB"


# ------------------------------------------------------------------ examples


def _cut(text: str) -> str:
    return text if len(text) <= CUT else text[:CUT - 1] + "…"


def _span(text: str, right: bool, css: str) -> str:
    return (f'<span class="{css}" style="background:{RIGHT if right else WRONG};border-radius:2px;'
            f'padding:0 2px">{esc(_cut(text))}</span>')


def reply_html(expected: str, reply: str, scores: dict[str, Any]) -> str:
    """The reply with its wrong parts highlighted (fields part by part, else as a whole)."""
    want = parse_fields(expected) if any(str(k).startswith("fields") for k in scores) else None
    got = parse_fields(reply) if want else None
    if want and got:
        parts = []
        for key, value in got.items():
            ok = want.get(key) == value
            parts.append(_span(f"{key}: {value}", ok,
                               "arkor-field arkor-field-right" if ok else "arkor-field arkor-field-wrong"))
        parts += [_span(f"{key}: (missing)", False, "arkor-field arkor-field-missing")
                  for key in want if key not in got]
        return " | ".join(parts)
    values = [v for v in scores.values() if isinstance(v, (int, float))]
    ok = bool(values) and min(values) >= 1.0
    return _span(reply or "(empty reply)", ok, "arkor-reply-right" if ok else "arkor-reply-wrong")


def expected_text(expected: str, scores: dict[str, Any]) -> str:
    """The expected answer on one line: ``key: value | key: value`` for a fields answer."""
    fields = parse_fields(expected) if any(str(k).startswith("fields") for k in scores) else None
    return " | ".join(f"{k}: {v}" for k, v in fields.items()) if fields else " ".join(expected.split())


def examples_html(track: EvalTrack, *, limit: int = 3) -> str:
    """The latest eval's first examples: prompt, expected, reply (wrong parts marked), scores."""
    if not track.examples:
        return ""
    rows = []
    for ex in track.examples[:limit]:
        raw = ex.get("scores")
        scores: dict[str, Any] = raw if isinstance(raw, dict) else {}
        expected, reply = str(ex.get("expected", "")), str(ex.get("reply", ""))
        shown = ", ".join(f"{esc(k)} {fpct(v)}" for k, v in list(scores.items())[:4]
                          if isinstance(v, (int, float)))
        rows.append(f'<tr class="arkor-example"><td><i>{esc(_cut(str(ex.get("prompt", ""))))}</i></td>'
                    f"<td>{esc(_cut(expected_text(expected, scores)))}</td>"
                    f"<td>{reply_html(expected, reply, scores)}</td>"
                    f'<td style="color:#555">{shown}</td></tr>')
    head = "".join(f'<th style="text-align:left;padding-right:8px">{h}</th>'
                   for h in ("prompt", "expected", "reply", "scores"))
    return (f'<div class="arkor-examples" style="font-size:12px;line-height:1.35;margin-top:4px">'
            f"<b>Eval examples</b> "
            f"at step {track.examples_step} ({len(track.examples[:limit])} of {track.n})"
            f'<table style="border-collapse:collapse;font-size:12px"><tr>{head}</tr>{"".join(rows)}'
            "</table></div>")
