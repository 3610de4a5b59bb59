"""Static snapshot of a run: inline SVG chart + summary table, plain HTML.

Why: a saved notebook is read on GitHub, nbviewer or by a colleague without
a kernel, where no widget or JavaScript runs. The snapshot needs nothing but
HTML and SVG (no script, no CDN) and stays small (each curve thinned to
``SNAPSHOT_POINTS``), so it can sit in a cell output for good.
"""

from __future__ import annotations

from typing import Any

from arkor_nb.core.contexts import StreamNotice
from arkor_nb.core.format import describe_notice, event_line, fduration, fnum, fpct
from arkor_nb.notebook.evalview import best_html, examples_html, health_html, metric_chart
from arkor_nb.notebook.palette import LR_COLOR, SERIES, badge
from arkor_nb.notebook.progress import RunState
from arkor_nb.notebook.series import ema, thin
from arkor_nb.notebook.svgchart import Line, svg_chart
from arkor_nb.notebook.text import esc

SNAPSHOT_POINTS = 400


def run_lines(state: RunState, *, smoothing: float = 0.6, color: str = SERIES[0],
              eval_color: str = SERIES[1], label: str = "", lr: bool = True,
              limit: int = SNAPSHOT_POINTS) -> list[Line]:
    """Lines for one run: raw loss (faint), smoothed loss, eval loss, learning rate."""
    curves = state.curves()
    prefix = f"{label} " if label else ""
    lines: list[Line] = []
    xs, ys = curves["loss"]
    if xs:
        tx, ty = thin(xs, ys, limit)
        if smoothing > 0:
            lines.append(Line(tx, ty, color, f"{prefix}loss (raw)", 1.0, 0.25))
            lines.append(Line(tx, ema(tx, ty, smoothing), color, f"{prefix}loss", derived=True))
        else:
            lines.append(Line(tx, ty, color, f"{prefix}loss"))
    ex, ey = curves["eval_loss"]
    if ex:
        tx, ty = thin(ex, ey, limit)
        lines.append(Line(tx, ty, eval_color, f"{prefix}eval loss", 1.6, 1.0, "5,3"))
    lx, ly = curves["learning_rate"]
    if lr and lx:
        tx, ty = thin(lx, ly, limit // 2)
        lines.append(Line(tx, ty, LR_COLOR, f"{prefix}learning rate", 1.0, 0.6, "2,2", axis="y2"))
    return lines


def stream_row(state: RunState, s: dict[str, Any]) -> bool:
    """Whether the snapshot needs a "stream" row: only for a real transport problem.

    After a Cancel (or any local abort) the stream's "stopped watching" note is
    noise: the status row and the cancel row already say truthfully whether the
    job was cancelled on the backend or keeps running there.
    """
    if not s["transport"] or s["error"] or s["cancel_state"] or state.transport_level == "info":
        return False
    return s["transport"] != describe_notice(StreamNotice("aborted"))[0]


def summary_table(state: RunState) -> str:
    s = state.summary()
    max_steps = s["max_steps"]
    rows = [
        ("status", badge(s["status"])),
        ("job", esc(s["job_id"] or "–") + (f" ({esc(s['backend'])})" if s["backend"] else "")),
        ("steps", esc(f"{s['step']}" + (f" / {max_steps}" if max_steps else ""))),
        ("final loss", esc(fnum(s["loss"]))),
        ("best loss", esc(f"{fnum(s['best_loss'])} at step {s['best_step']}"
                          if s["best_loss"] is not None else "–")),
        ("eval loss", esc(fnum(s["eval_loss"]))),
        ("learning rate", esc(fnum(s["learning_rate"], 3))),
        ("epoch", esc(fnum(s["epoch"], 3))),
        ("samples/s", esc(fnum(s["samples_per_second"], 3))),
        ("elapsed", esc(fduration(s["elapsed"]))),
        ("checkpoints", esc(", ".join(str(c) for c in s["checkpoints"]) or "–")),
    ]
    if s["best_metric"] is not None:
        name, step, value = s["best_metric"]
        rows.insert(5, (f"best {esc(name)}", esc(f"{fpct(value)} at step {step}")))
    if s["error"]:
        rows.append(("error", f'<span style="color:#c62828">{esc(s["error"])}</span>'))
    if stream_row(state, s):
        rows.append(("stream", esc(s["transport"])))
    if s["cancel_detail"]:
        rows.append(("cancel", esc(s["cancel_detail"])))
    body = "".join(f'<tr><th style="text-align:left;padding:1px 10px 1px 0;font-weight:600">{k}</th>'
                   f'<td style="text-align:left">{v}</td></tr>' for k, v in rows)
    return f'<table class="arkor-summary" style="font-size:12px;border-collapse:collapse">{body}</table>'


def samples_html(state: RunState, *, max_chars: int = 300) -> str:
    """Checkpoint samples, newest last; replies cut to ``max_chars`` to keep outputs small."""
    rows = []
    with state.lock:
        ckpts = list(state.checkpoints)
    for ck in ckpts:
        if not ck.samples and not ck.sample_error:
            continue
        cells = []
        for prompt, reply in ck.samples.items():
            text = "sampling…" if reply is None else (reply[:max_chars] + ("…" if len(reply) > max_chars else ""))
            cells.append(f"<div><i>{esc(prompt[:120])}</i> → {esc(text)}</div>")
        if ck.sample_error:
            cells.append(f'<div style="color:#c62828">sampling failed: {esc(ck.sample_error)}</div>')
        rows.append(f'<tr><td style="vertical-align:top;padding-right:8px;white-space:nowrap">step {ck.step}</td>'
                    f'<td style="text-align:left">{"".join(cells)}</td></tr>')
    if not rows:
        return ""
    return ('<table class="arkor-samples" style="font-size:12px;border-collapse:collapse">'
            + "".join(rows) + "</table>")


def snapshot_html(state: RunState, *, smoothing: float = 0.6, log_y: bool = False) -> str:
    """Chart + summary + samples: the static record a cell keeps after the run.

    The live panel's output is replaced by this when the run ends, so a saved
    notebook shows it everywhere (GitHub, nbviewer, a reopened notebook).
    """
    chart = charts_html(state, smoothing=smoothing, log_y=log_y)
    title = esc(state.name or state.job_id or "run")
    last_error = ""
    with state.lock:
        failures = [e for e in state.log if e.level == "error"]
    if failures and not state.error:
        last_error = f'<div style="color:#c62828">{esc(event_line(failures[-1].item))}</div>'
    return (f'<div class="arkor-snapshot" style="font-family:sans-serif">'
            f'<div style="font-weight:600;margin:2px 0">{title} {badge(state.status)} '
            f'<span style="font-weight:400">{best_html(state.evals)}</span></div>'
            f'<div style="display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start">'
            f"{chart}<div>{summary_table(state)}</div></div>"
            f"{health_html(state.evals.health)}{samples_html(state)}"
            f"{examples_html(state.evals)}{last_error}</div>")


def charts_html(state: RunState, *, smoothing: float = 0.6, log_y: bool = False,
                hover: bool = False) -> str:
    """The loss chart and, once there are task metrics, the metric chart beside it."""
    loss = svg_chart(run_lines(state, smoothing=smoothing), log_y=log_y, hover=hover)
    with state.lock:
        has_metrics = bool(state.evals.series)
        metrics = metric_chart(state.evals, hover=hover) if has_metrics else ""
    side = (f'<div class="arkor-metric-chart" style="flex:1 1 300px;max-width:440px">{metrics}</div>'
            if metrics else "")
    return f'<div style="flex:1 1 480px;max-width:720px">{loss}</div>{side}'
