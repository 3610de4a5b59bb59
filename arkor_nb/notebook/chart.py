"""``run.figure()``: the run's curves as a plotly figure, built on demand.

The live panel draws the snapshot's light SVG (``livechart``); plotly is
imported only here, for users who want zoom and pan, because its first
figure in a kernel costs seconds of imports and its widget bundle ~5 MB.
The figure is a plain ``go.Figure`` (rendered by plotly's own mime
renderer), not a ``FigureWidget``: nothing streams into it.
"""

from __future__ import annotations

from typing import Any

from arkor_nb.core.errors import ConfigError
from arkor_nb.notebook.series import ema, thin

SMOOTH_POINTS = 2000


def figure(curves: dict[str, tuple[list[float], list[float]]], *, smoothing: float = 0.6,
           title: str = "") -> Any:
    """Raw and smoothed loss, eval loss and learning rate (right axis), as the panel shows them."""
    try:
        import plotly.graph_objects as go
    except ImportError as exc:  # plotly is a declared dependency; say how to get it back
        raise ConfigError("figure", "needs plotly: pip install 'plotly>=6'") from exc
    xs, ys = curves["loss"]
    tx, ty = thin(xs, ys, SMOOTH_POINTS)
    fig = go.Figure()
    fig.add_scatter(x=xs, y=ys, mode="lines", name="loss (raw)" if smoothing > 0 else "loss",
                    opacity=0.25 if smoothing > 0 else 1.0, line={"color": "#1f77b4", "width": 1})
    if smoothing > 0 and tx:
        fig.add_scatter(x=tx, y=ema(tx, ty, smoothing), mode="lines", name="loss",
                        line={"color": "#1f77b4", "width": 2})
    ex, ey = curves["eval_loss"]
    if ex:
        fig.add_scatter(x=ex, y=ey, mode="lines+markers", name="eval loss", marker={"size": 4},
                        line={"color": "#d62728", "width": 1.5, "dash": "dash"})
    lx, ly = curves["learning_rate"]
    if lx:
        fig.add_scatter(x=lx, y=ly, mode="lines", name="learning rate", yaxis="y2",
                        line={"color": "#7f7f7f", "width": 1, "dash": "dot"})
    fig.update_layout(
        title={"text": title} if title else None,
        height=320, margin={"l": 55, "r": 60, "t": 40 if title else 10, "b": 40},
        xaxis={"title": {"text": "step"}}, yaxis={"title": {"text": "loss"}},
        yaxis2={"title": {"text": "learning rate"}, "overlaying": "y", "side": "right",
                "showgrid": False, "exponentformat": "e"},
        legend={"orientation": "h", "x": 0, "y": 1.12}, template="plotly_white",
        font={"family": "sans-serif", "size": 11},
    )
    return fig
