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

from arkor_nb.notebook.evals import EvalTrack
from arkor_nb.notebook.evalview import best_mark, metric_lines
from arkor_nb.notebook.palette import SERIES, badge
from arkor_nb.notebook.svgchart import Line, svg_chart

WIDTH, HEIGHT = 760, 320
METRIC_WIDTH = 560


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
    # task metrics (checkpoint.eval): name -> [(step, value in [0, 1])]
    metrics: dict[str, list[tuple[int, float]]] = field(default_factory=dict)


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}g}"


def _finite(xs: Sequence[float], ys: Sequence[float]) -> tuple[list[float], list[float]]:
    kept = [(float(x), float(y)) for x, y in zip(xs, ys, strict=False) if math.isfinite(y)]
    return [x for x, _ in kept], [y for _, y in kept]


def loss_curve_svg(
    steps: Sequence[int],
    losses: Sequence[float],
    eval_steps: Sequence[int] = (),
    eval_losses: Sequence[float] = (),
) -> str:
    """Inline SVG of training (and eval) loss against step, one hoverable point per log."""
    lines = []
    for css, (xs, ys), name, color, dash in (
        ("train", _finite(steps, losses), "loss", SERIES[0], ""),
        ("eval", _finite(eval_steps, eval_losses), "eval loss", SERIES[1], "5,3"),
    ):
        if xs:
            lines.append(Line(xs, ys, color, name, width=2, dash=dash, points=True, css=css))
    if not lines:
        return '<p class="empty">No loss values were logged.</p>'
    return svg_chart(lines, width=WIDTH, height=HEIGHT, svg_id="loss-chart", fluid=True,
                     label="training loss by step")


def metric_curve_svg(metrics: dict[str, list[tuple[int, float]]]) -> str:
    """Task metrics by checkpoint (0-100 %), the best point of the headline metric ringed."""
    track = EvalTrack()
    for name, points in metrics.items():
        for step, value in points:
            track.add(name, step, value, task=True)
    if not track.series:
        return ""
    lines = metric_lines(track)
    for line in lines:
        line.points = True
    return svg_chart(lines, width=METRIC_WIDTH, height=HEIGHT, svg_id="metric-chart", fluid=True,
                     y_label="task metric", y_range=(0.0, 100.0), unit="%", marks=best_mark(track),
                     css_class="arkor-svg arkor-metric-svg", label="task metrics by checkpoint")


_CSS = """
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1f2328;background:#f6f8fa}
main{max-width:900px;margin:0 auto;padding:24px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px}
.sub{color:#57606a;margin:0 0 16px}
.card{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:16px}
.stats{display:grid;grid-template-columns:repeat(auto-fit,minmax(140px,1fr));gap:10px;margin-top:12px}
.stat{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:10px}
.stat b{display:block;font-size:20px}.stat span{color:#57606a;font-size:13px}
table{border-collapse:collapse;width:100%;background:#fff}
td,th{border:1px solid #d0d7de;padding:6px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa;font-weight:600}code,pre{font:13px ui-monospace,SFMono-Regular,Menlo,monospace}
pre{white-space:pre-wrap;margin:0}
svg [data-step]:hover{fill-opacity:1;r:5}.cursor{stroke:#8c959f;stroke-dasharray:3 3}
.readout{font-size:12px;fill:#1f2328;font-weight:600}
"""

# A crosshair on each chart that follows the mouse and reads out the nearest point.
_JS = """
(function(){
  var NS='http://www.w3.org/2000/svg';
  [].forEach.call(document.querySelectorAll('svg.arkor-svg'),function(svg){
    var pts=[].slice.call(svg.querySelectorAll('[data-step]')); if(!pts.length) return;
    var vb=svg.viewBox.baseVal, cursor=document.createElementNS(NS,'line'), readout=document.createElementNS(NS,'text');
    cursor.setAttribute('class','cursor'); readout.setAttribute('class','readout');
    cursor.setAttribute('y1',20); cursor.setAttribute('y2',vb.height-30);
    [cursor,readout].forEach(function(el){el.setAttribute('visibility','hidden'); svg.appendChild(el);});
    svg.addEventListener('mousemove',function(e){
      var r=svg.getBoundingClientRect(), x=(e.clientX-r.left)*vb.width/r.width, best=pts[0], d=1e9;
      pts.forEach(function(p){var dx=Math.abs(p.cx.baseVal.value-x); if(dx<d){d=dx;best=p;}});
      var cx=best.cx.baseVal.value, cy=best.cy.baseVal.value;
      cursor.setAttribute('x1',cx); cursor.setAttribute('x2',cx); cursor.setAttribute('visibility','visible');
      readout.textContent=best.querySelector('title').textContent;
      readout.setAttribute('x',Math.min(cx+8,vb.width-200)); readout.setAttribute('y',Math.max(cy-8,14));
      readout.setAttribute('visibility','visible');
    });
    svg.addEventListener('mouseleave',function(){
      cursor.setAttribute('visibility','hidden'); readout.setAttribute('visibility','hidden');
    });
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
    metrics = metric_curve_svg(data.metrics)
    if metrics:
        metrics = f'<h2>Task metrics (held-out prompts, per checkpoint)</h2><div class="card">{metrics}</div>'
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>arkor-nb demo: {esc(data.name)}</title><style>{_CSS}</style></head><body><main>"
        f"<h1>{esc(data.name)} {badge(data.status)}</h1>"
        f'<p class="sub">job <code>{esc(data.job_id)}</code> · model <code>{esc(data.model)}</code>'
        f" · data <code>{esc(data.dataset)}</code></p>"
        f'<div class="stats">{"".join(stats)}</div>'
        f'<h2>Loss</h2><div class="card">'
        f"{loss_curve_svg(data.steps, data.losses, data.eval_steps, data.eval_losses)}</div>"
        f"{metrics}{samples}<h2>Configuration sent</h2><table>{config_rows}</table>"
        + (f"<h2>Files</h2><ul>{links}</ul>" if links else "")
        + f"</main><script>{_JS}</script></body></html>"
    )
