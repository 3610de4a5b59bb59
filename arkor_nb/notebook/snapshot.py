"""Static snapshot of a run: inline SVG chart + summary table, plain HTML.

Why: a saved notebook is read on GitHub, nbviewer or by a colleague without
a kernel, where no widget or JavaScript runs. The snapshot needs nothing but
HTML and SVG (no script, no CDN) and stays small (each curve thinned to
``SNAPSHOT_POINTS``), so it can sit in a cell output for good.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from arkor_nb.core.contexts import StreamNotice
from arkor_nb.core.format import describe_notice, event_line, fduration, fnum, fsci, status_label
from arkor_nb.core.status import (
    CANCELLED,
    COMPLETED,
    CONNECTING,
    DETACHED,
    FAILED,
    PREPARING,
    QUEUED,
    RUNNING,
    SAVING,
)
from arkor_nb.notebook.progress import RunState
from arkor_nb.notebook.series import ema, thin
from arkor_nb.notebook.text import esc

SNAPSHOT_POINTS = 400
W, H = 720, 260
PAD_L, PAD_R, PAD_T, PAD_B = 58, 62, 24, 34
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"]
LR_COLOR = "#7f7f7f"
STATUS_COLORS: dict[str, str] = {
    COMPLETED: "#2e7d32",
    FAILED: "#c62828",
    CANCELLED: "#ef6c00",
    RUNNING: "#1565c0",
    PREPARING: "#5e35b1",
    SAVING: "#5e35b1",
    QUEUED: "#6d4c41",
    CONNECTING: "#6d4c41",
    DETACHED: "#6d4c41",
}


@dataclass
class Line:
    xs: list[float]
    ys: list[float]
    color: str
    name: str = ""
    width: float = 1.6
    opacity: float = 1.0
    dash: str = ""
    axis: str = "y"  # "y" (left) or "y2" (right, learning rate)
    derived: bool = False  # computed from another line (smoothed): no hover values of its own


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step) * step
    out: list[float] = []
    v = start
    while v <= hi + step * 1e-9 and len(out) < 12:
        out.append(round(v, 12))
        v += step
    return out


def _tick_digits(ticks: list[float], minimum: int) -> int:
    """Significant digits that tell neighbouring ticks apart (0.00298 vs 0.00299)."""
    if len(ticks) < 2:
        return minimum
    step = abs(ticks[1] - ticks[0])
    biggest = max(abs(t) for t in ticks)
    if step == 0 or biggest == 0:
        return minimum
    return max(minimum, math.floor(math.log10(biggest / step)) + 2)


def svg_chart(lines: list[Line], *, log_y: bool = False, width: int = W, height: int = H,
              hover: bool = False, empty: str = "no points yet") -> str:
    """An SVG line chart; ``y2`` lines get their own right-hand axis.

    ``hover`` adds the exact values as ``data-`` attributes (the live chart's
    JavaScript shows them under the pointer); ``empty`` is the text shown
    instead of axes while there is no point.
    """
    left = [ln for ln in lines if ln.axis == "y" and ln.xs]
    right = [ln for ln in lines if ln.axis == "y2" and ln.xs]
    all_x = [x for ln in left + right for x in (ln.xs[0], ln.xs[-1])]
    pw, ph = width - PAD_L - PAD_R, height - PAD_T - PAD_B
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" class="arkor-svg" font-family="sans-serif" font-size="11">',
        f'<rect x="{PAD_L}" y="{PAD_T}" width="{pw}" height="{ph}" fill="#fff" stroke="#ccc"/>',
    ]
    if not all_x:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="#888" '
                     f'class="arkor-empty-chart">{esc(empty)}</text></svg>')
        return "".join(parts)
    x0, x1 = min(all_x), max(all_x)
    if x1 == x0:
        x1 = x0 + 1
    if hover:
        parts[0] = parts[0][:-1] + f' data-x0="{x0:g}" data-x1="{x1:g}" data-pl="{PAD_L}" data-pw="{pw}">'

    def sx(x: float) -> float:
        return PAD_L + (x - x0) / (x1 - x0) * pw

    def y_range(group: list[Line], use_log: bool) -> tuple[float, float, Any]:
        vals = [y for ln in group for y in ln.ys if (y > 0 or not use_log)]
        if not vals:
            return 0.0, 1.0, lambda y: y
        f = (lambda y: math.log10(y)) if use_log else (lambda y: y)
        lo, hi = f(min(vals)), f(max(vals))
        if hi == lo:  # one value: a small band around it, on its own scale (2e-3, not -0.5..0.5)
            pad = abs(lo) * 0.05 or 0.5
            lo, hi = lo - pad, hi + pad
        margin = (hi - lo) * 0.05
        return lo - margin, hi + margin, f

    def path(ln: Line, lo: float, hi: float, f: Any) -> str:
        pts = []
        for x, y in zip(ln.xs, ln.ys, strict=True):
            if log_y and ln.axis == "y" and y <= 0:
                continue
            py = PAD_T + ph - (f(y) - lo) / (hi - lo) * ph
            pts.append(f"{sx(x):.1f},{py:.1f}")
        if not pts:
            return ""
        dash = f' stroke-dasharray="{ln.dash}"' if ln.dash else ""
        single = len(pts) == 1
        data = ""
        if hover and ln.name and not ln.derived:
            data = (f' data-name="{esc(ln.name)}" data-xs="{",".join(f"{x:g}" for x in ln.xs)}" '
                    f'data-ys="{",".join(fnum(y, 4) for y in ln.ys)}"')
        if single:
            cx, cy = pts[0].split(",")
            return f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{ln.color}"{data}/>'
        return (f'<polyline fill="none" stroke="{ln.color}" stroke-width="{ln.width}" '
                f'stroke-opacity="{ln.opacity}"{dash}{data} points="{" ".join(pts)}"><title>{esc(ln.name)}'
                "</title></polyline>")

    # grid + axes
    whole = all(float(x).is_integer() for x in all_x)
    for xt in [t for t in _ticks(x0, x1, 6) if not whole or float(t).is_integer()]:
        px = sx(xt)
        parts.append(f'<line x1="{px:.1f}" y1="{PAD_T}" x2="{px:.1f}" y2="{PAD_T + ph}" stroke="#eee"/>'
                     f'<text x="{px:.1f}" y="{height - PAD_B + 14}" text-anchor="middle" fill="#555">'
                     f"{fnum(xt, 6)}</text>")
    parts.append(f'<text x="{PAD_L + pw / 2}" y="{height - 4}" text-anchor="middle" fill="#555">step</text>')
    if left:
        lo, hi, f = y_range(left, log_y)
        for yt in _ticks(lo, hi, 5):
            py = PAD_T + ph - (yt - lo) / (hi - lo) * ph
            label = fnum(10 ** yt if log_y else yt, 3)
            parts.append(f'<line x1="{PAD_L}" y1="{py:.1f}" x2="{PAD_L + pw}" y2="{py:.1f}" stroke="#eee"/>'
                         f'<text x="{PAD_L - 4}" y="{py + 4:.1f}" text-anchor="end" fill="#555">{label}</text>')
        parts.append(f'<text x="12" y="{PAD_T + ph / 2}" transform="rotate(-90 12 {PAD_T + ph / 2})" '
                     f'text-anchor="middle" fill="#555">loss{" (log)" if log_y else ""}</text>')
        for ln in left:
            parts.append(path(ln, lo, hi, f))
    if right:
        lo2, hi2, f2 = y_range(right, False)
        lr_ticks = _ticks(lo2, hi2, 4)
        digits = _tick_digits(lr_ticks, 2)
        for yt in lr_ticks:
            py = PAD_T + ph - (yt - lo2) / (hi2 - lo2) * ph
            parts.append(f'<text x="{PAD_L + pw + 4}" y="{py + 4:.1f}" fill="{LR_COLOR}">'
                         f"{fsci(yt, digits)}</text>")
        parts.append(f'<text x="{width - 8}" y="{PAD_T + ph / 2}" transform="rotate(90 {width - 8} '
                     f'{PAD_T + ph / 2})" text-anchor="middle" fill="{LR_COLOR}">learning rate</text>')
        for ln in right:
            parts.append(path(ln, lo2, hi2, f2))
    # legend
    lx: float = PAD_L + 6
    for ln in [ln for ln in lines if ln.name and ln.opacity >= 0.5]:
        parts.append(f'<rect x="{lx}" y="6" width="12" height="3" fill="{ln.color}"/>'
                     f'<text x="{lx + 15}" y="11" fill="#333">{esc(ln.name)}</text>')
        lx += 22 + 6.5 * len(ln.name)
    parts.append("</svg>")
    return "".join(parts)


def run_lines(state: RunState, *, smoothing: float = 0.6, color: str = COLORS[0],
              eval_color: str = COLORS[1], label: str = "", lr: bool = True,
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


def badge(status: str) -> str:
    color = STATUS_COLORS.get(status, "#555")
    label = status_label(status)
    return (f'<span class="arkor-badge arkor-badge-{esc(status)}" style="background:{color};color:#fff;'
            f'border-radius:3px;padding:1px 6px;font-size:90%">{esc(label)}</span>')


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
    chart = svg_chart(run_lines(state, smoothing=smoothing), log_y=log_y)
    title = esc(state.name or state.job_id or "run")
    last_error = ""
    with state.lock:
        failures = [e for e in state.log if e.level == "error"]
    if failures and not state.error:
        last_error = f'<div style="color:#c62828">{esc(event_line(failures[-1].item))}</div>'
    return (f'<div class="arkor-snapshot" style="font-family:sans-serif">'
            f'<div style="font-weight:600;margin:2px 0">{title} {badge(state.status)}</div>'
            f'<div style="display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start">'
            f"<div>{chart}</div><div>{summary_table(state)}</div></div>"
            f"{samples_html(state)}{last_error}</div>")


def compare_html(states: list[tuple[str, RunState]], *, smoothing: float = 0.6,
                 log_y: bool = False) -> str:
    """Several runs' loss curves on one chart, plus a one-row-per-run table."""
    lines: list[Line] = []
    for i, (label, st) in enumerate(states):
        color = COLORS[i % len(COLORS)]
        for ln in run_lines(st, smoothing=smoothing, color=color, eval_color=color, label=label,
                            lr=False):
            lines.append(ln)
    chart = svg_chart(lines, log_y=log_y)
    head = "".join(f'<th style="text-align:left;padding:1px 8px">{h}</th>' for h in
                   ("run", "status", "steps", "final loss", "best loss", "eval loss", "elapsed"))
    body = []
    for i, (label, st) in enumerate(states):
        s = st.summary()
        color = COLORS[i % len(COLORS)]
        cells = [f'<span style="color:{color}">■</span> {esc(label)}', badge(s["status"]), esc(s["step"]),
                 esc(fnum(s["loss"])),
                 esc(f"{fnum(s['best_loss'])}@{s['best_step']}" if s["best_loss"] is not None else "–"),
                 esc(fnum(s["eval_loss"])), esc(fduration(s["elapsed"]))]
        body.append("<tr>" + "".join(f'<td style="padding:1px 8px">{c}</td>' for c in cells) + "</tr>")
    table = (f'<table class="arkor-compare" style="font-size:12px;border-collapse:collapse">'
             f"<tr>{head}</tr>{''.join(body)}</table>")
    return f'<div class="arkor-snapshot arkor-compare-view" style="font-family:sans-serif">{chart}{table}</div>'
