"""The self-contained HTML report `make demo` writes (demo/report.html).

Why its own module: the report must open offline (no CDN, no network), so
the loss curve is inline SVG drawn here, with a ``<title>`` on every point
(hover works even with JavaScript off) and a few lines of inline JavaScript
for a crosshair readout. Nothing here imports torch or talks HTTP; it only
turns recorded numbers into one HTML file.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

WIDTH, HEIGHT = 760, 320
PAD_L, PAD_R, PAD_T, PAD_B = 64, 20, 20, 44


@dataclass
class Sample:
    """One held-out ticket with the expected answer and what each model replied."""

    prompt: str
    expected: str
    replies: dict[str, str] = field(default_factory=dict)  # label -> reply


@dataclass
class ReportData:
    name: str
    job_id: str
    status: str
    model: str
    dataset: str
    steps: list[int]
    losses: list[float]
    eval_steps: list[int] = field(default_factory=list)
    eval_losses: list[float] = field(default_factory=list)
    learning_rates: list[float] = field(default_factory=list)
    duration_s: float | None = None
    config: dict[str, Any] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    links: dict[str, str] = field(default_factory=dict)  # label -> relative path


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}g}"


def _scale(lo: float, hi: float, a: float, b: float):  # type: ignore[no-untyped-def]
    span = (hi - lo) or 1.0
    return lambda v: a + (v - lo) * (b - a) / span


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = min((m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw), default=raw)
    start = math.ceil(lo / step) * step
    ticks, value = [], start
    while value <= hi + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


def loss_curve_svg(
    steps: Sequence[int],
    losses: Sequence[float],
    eval_steps: Sequence[int] = (),
    eval_losses: Sequence[float] = (),
) -> str:
    """Inline SVG of training (and eval) loss against step, one hoverable point per log."""
    train = [(s, v) for s, v in zip(steps, losses, strict=False) if math.isfinite(v)]
    evals = [(s, v) for s, v in zip(eval_steps, eval_losses, strict=False) if math.isfinite(v)]
    points = train + evals
    if not points:
        return '<p class="empty">No loss values were logged.</p>'
    x_lo, x_hi = min(p[0] for p in points), max(p[0] for p in points)
    y_lo, y_hi = min(p[1] for p in points), max(p[1] for p in points)
    y_pad = (y_hi - y_lo) * 0.05 or 0.5
    y_lo, y_hi = max(0.0, y_lo - y_pad), y_hi + y_pad
    sx = _scale(x_lo, x_hi, PAD_L, WIDTH - PAD_R)
    sy = _scale(y_lo, y_hi, HEIGHT - PAD_B, PAD_T)
    out = [
        f'<svg id="loss-chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" '
        f'role="img" aria-label="training loss by step">'
    ]
    for tick in _ticks(y_lo, y_hi):
        y = sy(tick)
        out.append(
            f'<line class="grid" x1="{PAD_L}" x2="{WIDTH - PAD_R}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="tick" x="{PAD_L - 8}" y="{y + 4:.1f}" text-anchor="end">{tick:g}</text>'
        )
    for tick in _ticks(float(x_lo), float(x_hi), 6):
        x = sx(tick)
        out.append(
            f'<text class="tick" x="{x:.1f}" y="{HEIGHT - PAD_B + 18}" '
            f'text-anchor="middle">{tick:g}</text>'
        )
    out.append(
        f'<line class="axis" x1="{PAD_L}" x2="{WIDTH - PAD_R}" y1="{HEIGHT - PAD_B}" '
        f'y2="{HEIGHT - PAD_B}"/><line class="axis" x1="{PAD_L}" x2="{PAD_L}" '
        f'y1="{PAD_T}" y2="{HEIGHT - PAD_B}"/>'
        f'<text class="label" x="{(PAD_L + WIDTH - PAD_R) / 2}" y="{HEIGHT - 6}" '
        f'text-anchor="middle">step</text>'
        f'<text class="label" x="14" y="{(PAD_T + HEIGHT - PAD_B) / 2}" text-anchor="middle" '
        f'transform="rotate(-90 14 {(PAD_T + HEIGHT - PAD_B) / 2})">loss</text>'
    )
    for cls, series, label in (("train", train, "loss"), ("eval", evals, "eval loss")):
        if not series:
            continue
        coords = " ".join(f"{sx(s):.1f},{sy(v):.1f}" for s, v in series)
        out.append(f'<polyline class="{cls}" points="{coords}"/>')
        out.append(f'<g class="{cls}-points">')
        for s, v in series:
            out.append(
                f'<circle cx="{sx(s):.1f}" cy="{sy(v):.1f}" r="3" data-step="{s}" '
                f'data-value="{v:.6g}"><title>step {s}: {label} {v:.4g}</title></circle>'
            )
        out.append("</g>")
    out.append(
        f'<line id="cursor" x1="0" x2="0" y1="{PAD_T}" y2="{HEIGHT - PAD_B}" visibility="hidden"/>'
        '<text id="readout" x="0" y="0" visibility="hidden"></text></svg>'
    )
    return "".join(out)


_CSS = """
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1f2328;background:#f6f8fa}
main{max-width:900px;margin:0 auto;padding:24px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px}
.sub{color:#57606a;margin:0 0 16px}
.card{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:16px}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:13px;background:#ddf4ff;color:#0969da}
.badge.completed{background:#dafbe1;color:#1a7f37}.badge.failed{background:#ffebe9;color:#cf222e}
.badge.cancelled{background:#fff8c5;color:#9a6700}
.stats{display:grid;grid-template-columns:repeat(auto-fit,minmax(140px,1fr));gap:10px;margin-top:12px}
.stat{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:10px}
.stat b{display:block;font-size:20px}.stat span{color:#57606a;font-size:13px}
table{border-collapse:collapse;width:100%;background:#fff}
td,th{border:1px solid #d0d7de;padding:6px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa;font-weight:600}code,pre{font:13px ui-monospace,SFMono-Regular,Menlo,monospace}
pre{white-space:pre-wrap;margin:0}
svg .grid{stroke:#eaeef2}svg .axis{stroke:#8c959f}svg .tick,svg .label{fill:#57606a;font-size:12px}
svg polyline{fill:none;stroke-width:2}svg .train{stroke:#0969da}svg .eval{stroke:#bf3989;stroke-dasharray:5 3}
svg .train-points circle{fill:#0969da;fill-opacity:.25}svg .eval-points circle{fill:#bf3989}
svg circle:hover{fill-opacity:1;r:5}#cursor{stroke:#8c959f;stroke-dasharray:3 3}
#readout{font-size:12px;fill:#1f2328;font-weight:600}
.legend span{margin-right:16px;font-size:13px;color:#57606a}
.legend i{display:inline-block;width:18px;height:3px;vertical-align:middle;margin-right:6px}
"""

# A crosshair that follows the mouse and reads out the nearest logged point.
_JS = """
(function(){
  var svg=document.getElementById('loss-chart'); if(!svg) return;
  var pts=[].slice.call(svg.querySelectorAll('.train-points circle'));
  var cursor=document.getElementById('cursor'), readout=document.getElementById('readout');
  if(!pts.length) return;
  svg.addEventListener('mousemove',function(e){
    var r=svg.getBoundingClientRect(), vb=svg.viewBox.baseVal;
    var x=(e.clientX-r.left)*vb.width/r.width, best=pts[0], d=1e9;
    pts.forEach(function(p){var dx=Math.abs(p.cx.baseVal.value-x); if(dx<d){d=dx;best=p;}});
    var cx=best.cx.baseVal.value, cy=best.cy.baseVal.value;
    cursor.setAttribute('x1',cx); cursor.setAttribute('x2',cx); cursor.setAttribute('visibility','visible');
    readout.textContent='step '+best.dataset.step+'  loss '+best.dataset.value;
    readout.setAttribute('x',Math.min(cx+8,vb.width-170)); readout.setAttribute('y',Math.max(cy-8,14));
    readout.setAttribute('visibility','visible');
  });
  svg.addEventListener('mouseleave',function(){
    cursor.setAttribute('visibility','hidden'); readout.setAttribute('visibility','hidden');
  });
})();
"""


def _stat(label: str, value: str) -> str:
    return f'<div class="stat"><b>{html.escape(value)}</b><span>{html.escape(label)}</span></div>'


def render_report(data: ReportData) -> str:
    """The whole report as one HTML string with no external references."""
    esc = html.escape
    finite = [v for v in data.losses if math.isfinite(v)]
    best = min(finite) if finite else None
    best_step = data.steps[data.losses.index(best)] if best is not None else None
    stats = [
        _stat("steps", str(data.steps[-1]) if data.steps else "0"),
        _stat("first loss", _fmt(finite[0] if finite else None)),
        _stat("final loss", _fmt(finite[-1] if finite else None)),
        _stat(
            f"best loss (step {best_step})" if best_step is not None else "best loss", _fmt(best)
        ),
    ]
    if data.eval_losses:
        stats.append(_stat("final eval loss", _fmt(data.eval_losses[-1])))
    if data.duration_s is not None:
        stats.append(_stat("run time (queue to end)", f"{data.duration_s:.1f} s"))
    samples = ""
    if data.samples:
        labels = list(dict.fromkeys(label for s in data.samples for label in s.replies))
        head = "".join(f"<th>{esc(label)}</th>" for label in labels)
        rows = "".join(
            "<tr><td><pre>{}</pre></td><td><pre>{}</pre></td>{}</tr>".format(
                esc(s.prompt),
                esc(s.expected),
                "".join(f"<td><pre>{esc(s.replies.get(label, ''))}</pre></td>" for label in labels),
            )
            for s in data.samples
        )
        samples = (
            "<h2>Held-out tickets</h2><table><tr><th>ticket</th><th>expected</th>"
            f"{head}</tr>{rows}</table>"
        )
    config_rows = "".join(
        f"<tr><th><code>{esc(k)}</code></th><td><code>{esc(json.dumps(v))}</code></td></tr>"
        for k, v in data.config.items()
    )
    links = "".join(
        f'<li><a href="{esc(path)}">{esc(label)}</a></li>' for label, path in data.links.items()
    )
    legend = '<div class="legend"><span><i style="background:#0969da"></i>training loss</span>'
    if data.eval_losses:
        legend += '<span><i style="background:#bf3989"></i>eval loss</span>'
    legend += "</div>"
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>arkor-nb demo: {esc(data.name)}</title><style>{_CSS}</style></head><body><main>"
        f'<h1>{esc(data.name)} <span class="badge {esc(data.status)}">{esc(data.status)}</span></h1>'
        f'<p class="sub">job <code>{esc(data.job_id)}</code> · model <code>{esc(data.model)}</code>'
        f" · data <code>{esc(data.dataset)}</code></p>"
        f'<div class="stats">{"".join(stats)}</div>'
        f'<h2>Loss</h2><div class="card">{legend}'
        f"{loss_curve_svg(data.steps, data.losses, data.eval_steps, data.eval_losses)}</div>"
        f"{samples}<h2>Configuration sent</h2><table>{config_rows}</table>"
        + (f"<h2>Files</h2><ul>{links}</ul>" if links else "")
        + f"</main><script>{_JS}</script></body></html>"
    )
