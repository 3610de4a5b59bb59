"""The one SVG chart engine: the live panel, the snapshot, ``compare`` and the demo report.

Plain SVG text, no script and no CDN, so the same drawing works in a widget,
in a saved notebook on GitHub and in an offline HTML file. Lines on the left
axis share one scale (linear or log, or a fixed range such as 0-100 %);
``y2`` lines get their own right-hand axis (the learning rate).

Hover: with ``hover=True`` every named line carries its exact values
(``data-name``, ``data-xs``, ``data-ys``) and the ``svg`` its plot box
(``data-x0/x1/pl/pw``, ``data-unit``), which the live chart's JavaScript reads;
a line with ``points=True`` also draws one circle per point with a ``<title>``
(hover that works with JavaScript off, for short curves). ``marks`` ring a
point and label it (the best checkpoint).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from arkor_nb.core.format import fnum, fsci
from arkor_nb.notebook.palette import FRAME, GRID, LR_COLOR, MUTED, TEXT
from arkor_nb.notebook.text import esc

W, H = 720, 260
PAD_L, PAD_R, PAD_T, PAD_B = 58, 62, 24, 34


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
    points: bool = False  # one circle with a <title> per point (short curves)
    css: str = ""  # class of the line (and "<css>-points" for its circles)


@dataclass
class Mark:
    """A ringed point with a short label (e.g. the best checkpoint)."""

    x: float
    y: float
    color: str
    label: str = ""
    css: str = "arkor-best-point"


def ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (1, 2, 2.5, 5 x 10^k steps), at most 12."""
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


def tick_digits(values: list[float], minimum: int) -> int:
    """Significant digits that tell neighbouring ticks apart (0.00298 vs 0.00299)."""
    if len(values) < 2:
        return minimum
    step = abs(values[1] - values[0])
    biggest = max(abs(t) for t in values)
    if step == 0 or biggest == 0:
        return minimum
    return max(minimum, math.floor(math.log10(biggest / step)) + 2)


def _y_range(group: list[Line], use_log: bool) -> tuple[float, float, Callable[[float], float]]:
    vals = [y for ln in group for y in ln.ys if (y > 0 or not use_log)]
    if not vals:
        return 0.0, 1.0, lambda y: y
    f: Callable[[float], float] = math.log10 if use_log else (lambda y: y)
    lo, hi = f(min(vals)), f(max(vals))
    if hi == lo:  # one value: a small band around it, on its own scale (2e-3, not -0.5..0.5)
        pad = abs(lo) * 0.05 or 0.5
        lo, hi = lo - pad, hi + pad
    margin = (hi - lo) * 0.05
    return lo - margin, hi + margin, f


def svg_chart(lines: Sequence[Line], *, log_y: bool = False, width: int = W, height: int = H,
              hover: bool = False, empty: str = "no points yet", y_label: str = "loss",
              y_range: tuple[float, float] | None = None, unit: str = "",
              marks: Sequence[Mark] = (), css_class: str = "arkor-svg", svg_id: str = "",
              fluid: bool = False, label: str = "") -> str:
    """An SVG line chart (see the module docstring).

    ``y_range`` fixes the left axis (e.g. ``(0, 100)`` for percentages, whose
    ticks then read ``40%`` with ``unit="%"``); ``empty`` is the text shown
    instead of axes while there is no point; ``fluid`` scales the drawing to
    its container's width; ``label`` is its accessible name.
    """
    left = [ln for ln in lines if ln.axis == "y" and ln.xs]
    right = [ln for ln in lines if ln.axis == "y2" and ln.xs]
    all_x = [x for ln in left + right for x in (ln.xs[0], ln.xs[-1])]
    pw, ph = width - PAD_L - PAD_R, height - PAD_T - PAD_B
    # scales down with its container (the viewBox keeps the drawing's proportions)
    size = 'width="100%"' if fluid else f'width="{width}" height="{height}" style="max-width:100%;height:auto"'
    ident = f' id="{esc(svg_id)}"' if svg_id else ""
    aria = f' role="img" aria-label="{esc(label)}"' if label else ""
    head = (f'<svg xmlns="http://www.w3.org/2000/svg"{ident} {size} viewBox="0 0 {width} {height}" '
            f'class="{esc(css_class)}" font-family="sans-serif" font-size="11"{aria}')
    frame = f'<rect x="{PAD_L}" y="{PAD_T}" width="{pw}" height="{ph}" fill="#fff" stroke="{FRAME}"/>'
    if not all_x:
        return (f'{head}>{frame}<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="#888" '
                f'class="arkor-empty-chart">{esc(empty)}</text></svg>')
    x0, x1 = min(all_x), max(all_x)
    if x1 == x0:
        x1 = x0 + 1
    if hover:
        head += f' data-x0="{x0:g}" data-x1="{x1:g}" data-pl="{PAD_L}" data-pw="{pw}"'
        if unit:
            head += f' data-unit="{esc(unit)}"'
    parts = [head + ">", frame]

    def sx(x: float) -> float:
        return PAD_L + (x - x0) / (x1 - x0) * pw

    def sy(y: float, lo: float, hi: float) -> float:
        return PAD_T + ph - (y - lo) / (hi - lo) * ph

    def path(ln: Line, lo: float, hi: float, f: Callable[[float], float]) -> str:
        kept = [(x, y) for x, y in zip(ln.xs, ln.ys, strict=True)
                if not (log_y and ln.axis == "y" and y <= 0)]
        if not kept:
            return ""
        pts = [f"{sx(x):.1f},{sy(f(y), lo, hi):.1f}" for x, y in kept]
        data = ""
        if hover and ln.name and not ln.derived:
            data = (f' data-name="{esc(ln.name)}" data-xs="{",".join(f"{x:g}" for x in ln.xs)}" '
                    f'data-ys="{",".join(fnum(y, 4) for y in ln.ys)}"')
        css = f' class="{esc(ln.css)}"' if ln.css else ""
        if len(pts) == 1:
            cx, cy = pts[0].split(",")
            out = f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{ln.color}"{css}{data}/>'
        else:
            dash = f' stroke-dasharray="{ln.dash}"' if ln.dash else ""
            out = (f'<polyline fill="none" stroke="{ln.color}" stroke-width="{ln.width}" '
                   f'stroke-opacity="{ln.opacity}"{dash}{css}{data} points="{" ".join(pts)}">'
                   f"<title>{esc(ln.name)}</title></polyline>")
        if ln.points:
            dots = "".join(
                f'<circle cx="{p.split(",")[0]}" cy="{p.split(",")[1]}" r="3" fill="{ln.color}" '
                f'fill-opacity="0.3" data-step="{x:g}" data-value="{y:.6g}"><title>step {x:g}: '
                f"{esc(ln.name)} {fnum(y)}{esc(unit)}</title></circle>"
                for p, (x, y) in zip(pts, kept, strict=True))
            out += f'<g class="{esc(ln.css or "line")}-points">{dots}</g>'
        return out

    whole = all(float(x).is_integer() for x in all_x)
    for xt in [t for t in ticks(x0, x1, 6) if not whole or float(t).is_integer()]:
        px = sx(xt)
        parts.append(f'<line x1="{px:.1f}" y1="{PAD_T}" x2="{px:.1f}" y2="{PAD_T + ph}" stroke="{GRID}"/>'
                     f'<text x="{px:.1f}" y="{height - PAD_B + 14}" text-anchor="middle" fill="{MUTED}">'
                     f"{fnum(xt, 6)}</text>")
    parts.append(f'<text x="{PAD_L + pw / 2}" y="{height - 4}" text-anchor="middle" fill="{MUTED}">step</text>')
    if left:
        if y_range is not None:
            lo, hi = y_range
            f: Callable[[float], float] = lambda y: y  # noqa: E731
        else:
            lo, hi, f = _y_range(left, log_y)
        for yt in ticks(lo, hi, 5):
            py = sy(yt, lo, hi)
            text = fnum(10 ** yt if log_y and y_range is None else yt, 3) + unit
            parts.append(f'<line x1="{PAD_L}" y1="{py:.1f}" x2="{PAD_L + pw}" y2="{py:.1f}" stroke="{GRID}"/>'
                         f'<text x="{PAD_L - 4}" y="{py + 4:.1f}" text-anchor="end" fill="{MUTED}">{esc(text)}</text>')
        axis_name = y_label + (" (log)" if log_y and y_range is None else "")
        parts.append(f'<text x="12" y="{PAD_T + ph / 2}" transform="rotate(-90 12 {PAD_T + ph / 2})" '
                     f'text-anchor="middle" fill="{MUTED}">{esc(axis_name)}</text>')
        parts.extend(path(ln, lo, hi, f) for ln in left)
        for mk in marks:
            if lo <= mk.y <= hi and x0 <= mk.x <= x1:
                cx, cy = sx(mk.x), sy(mk.y, lo, hi)
                anchor = "end" if cx > PAD_L + pw * 0.7 else "start"
                dx = -7 if anchor == "end" else 7
                parts.append(f'<g class="{esc(mk.css)}"><circle cx="{cx:.1f}" cy="{cy:.1f}" r="5" '
                             f'fill="none" stroke="{mk.color}" stroke-width="2"/>'
                             f'<text x="{cx + dx:.1f}" y="{max(PAD_T + 10, cy - 7):.1f}" '
                             f'text-anchor="{anchor}" fill="{mk.color}">{esc(mk.label)}</text></g>')
    if right:
        lo2, hi2, f2 = _y_range(right, False)
        lr_ticks = ticks(lo2, hi2, 4)
        digits = tick_digits(lr_ticks, 2)
        for yt in lr_ticks:
            parts.append(f'<text x="{PAD_L + pw + 4}" y="{sy(yt, lo2, hi2) + 4:.1f}" fill="{LR_COLOR}">'
                         f"{fsci(yt, digits)}</text>")
        parts.append(f'<text x="{width - 8}" y="{PAD_T + ph / 2}" transform="rotate(90 {width - 8} '
                     f'{PAD_T + ph / 2})" text-anchor="middle" fill="{LR_COLOR}">learning rate</text>')
        parts.extend(path(ln, lo2, hi2, f2) for ln in right)
    lx: float = PAD_L + 6
    for ln in [ln for ln in lines if ln.name and ln.opacity >= 0.5]:
        if lx > width - 40:
            break  # a crowded legend stops at the edge; hover still names every line
        parts.append(f'<rect x="{lx}" y="6" width="12" height="3" fill="{ln.color}"/>'
                     f'<text x="{lx + 15}" y="11" fill="{TEXT}">{esc(ln.name)}</text>')
        lx += 22 + 6.5 * len(ln.name)
    parts.append("</svg>")
    return "".join(parts)
