"""The live chart: a plotly ``FigureWidget`` fed in one message per redraw.

Why a subclass: plotly's own ``batch_update`` sends four comm messages per
update (two edit counters, the update, then a reset to None). We send the
same update as ONE message (the counters and the update together) and reset
the Python-side copy without echoing it, which keeps the panel within its
message budget. Arrays travel as binary float32/int32 buffers, not JSON.

plotly is imported lazily (the first ``FigureWidget`` in a kernel costs
seconds of imports); ``load_figure_class`` returns None when plotly or
anywidget is missing, and the panel then draws the SVG chart instead.
"""

from __future__ import annotations

from typing import Any

from .series import Smoother, thin

RAW, SMOOTH, EVAL, LR = 0, 1, 2, 3
SMOOTH_POINTS = 1000  # the smoothed line is smooth: half the points carry it
LR_POINTS = 500  # a schedule is smoother still
_FIG_CLASS: Any = None
ESM_STUB = "export default {};"  # replaces the ~5 MB bundle before the figure is closed


def load_figure_class() -> Any:
    """The one-message FigureWidget subclass, or None without plotly/anywidget."""
    global _FIG_CLASS
    if _FIG_CLASS is not None:
        return _FIG_CLASS
    try:
        import plotly.graph_objects as go
    except Exception:  # plotly or anywidget missing / broken: SVG chart instead
        return None

    class OneMessageFigure(go.FigureWidget):  # type: ignore[misc, name-defined]
        def _send_update_msg(self, restyle_data: Any, relayout_data: Any,
                             trace_indexes: Any = None, source_view_id: Any = None) -> None:
            trace_indexes = self._normalize_trace_indexes(trace_indexes)
            trace_edit_id = self._last_trace_edit_id + 1
            layout_edit_id = self._last_layout_edit_id + 1
            self._trace_edit_in_process = True
            self._layout_edit_in_process = True
            msg = {
                "style_data": restyle_data,
                "layout_data": relayout_data,
                "style_traces": trace_indexes,
                "trace_edit_id": trace_edit_id,
                "layout_edit_id": layout_edit_id,
                "source_view_id": source_view_id,
            }
            with self.hold_sync():  # the three changes leave as one comm message
                self._last_trace_edit_id = trace_edit_id
                self._last_layout_edit_id = layout_edit_id
                self._py2js_update = msg
            with self._lock_property(_py2js_update=None):  # local reset, not sent
                self._py2js_update = None

    _FIG_CLASS = OneMessageFigure
    return _FIG_CLASS


def new_figure() -> Any:
    cls = load_figure_class()
    if cls is None:
        return None
    fig = cls(
        data=[
            {"type": "scatter", "mode": "lines", "name": "loss (raw)", "opacity": 0.25,
             "line": {"color": "#1f77b4", "width": 1}, "showlegend": False, "hoverinfo": "skip"},
            {"type": "scatter", "mode": "lines", "name": "loss", "line": {"color": "#1f77b4", "width": 2}},
            {"type": "scatter", "mode": "lines+markers", "name": "eval loss",
             "line": {"color": "#d62728", "width": 1.5, "dash": "dash"}, "marker": {"size": 4}},
            {"type": "scatter", "mode": "lines", "name": "learning rate", "yaxis": "y2",
             "line": {"color": "#7f7f7f", "width": 1, "dash": "dot"}},
        ],
        layout={
            "height": 300,
            "margin": {"l": 55, "r": 60, "t": 10, "b": 40},
            "xaxis": {"title": {"text": "step"}},
            "yaxis": {"title": {"text": "loss"}, "type": "linear"},
            "yaxis2": {"title": {"text": "learning rate"}, "overlaying": "y", "side": "right",
                       "showgrid": False, "exponentformat": "e"},
            "legend": {"orientation": "h", "x": 0, "y": 1.12},
            "template": "plotly_white",
            "uirevision": "arkor",  # keep the user's zoom across redraws
        },
    )
    return fig


def update_figure(fig: Any, curves: dict[str, tuple[list[float], list[float]]], *, smoothing: float,
                  log_y: bool, changed: set[str], view_changed: bool, smoother: Smoother) -> None:
    """Push changed curves (and the axis type) to ``fig`` as one ``Plotly.update``.

    ``plotly_update`` stores the arrays without re-validating them (they are
    ours and well-formed), which keeps a redraw at about a millisecond.
    """
    import numpy as np

    def arr_x(xs: list[float]) -> Any:
        if xs and all(float(x).is_integer() for x in xs[-3:]) and abs(xs[-1]) < 2**31:
            return np.asarray(xs, dtype=np.int32)
        return np.asarray(xs, dtype=np.float32)

    traces: list[int] = []
    xs_out: list[Any] = []
    ys_out: list[Any] = []
    visible: list[Any] = []

    def put(index: int, x: Any, y: Any, vis: Any = True) -> None:
        traces.append(index)
        xs_out.append(x)
        ys_out.append(np.asarray(y, dtype=np.float32))
        visible.append(vis)

    if "loss" in changed or view_changed:
        xs, ys = curves["loss"]
        x = arr_x(xs)
        put(RAW, x, ys, smoothing > 0)
        tx, ty = thin(xs, ys, SMOOTH_POINTS)
        put(SMOOTH, arr_x(tx), smoother.smooth(tx, ty, smoothing))
    if "eval_loss" in changed:
        xs, ys = curves["eval_loss"]
        put(EVAL, arr_x(xs), ys)
    if "learning_rate" in changed:
        xs, ys = thin(*curves["learning_rate"], LR_POINTS)
        put(LR, arr_x(xs), ys)
    relayout = {"yaxis.type": "log" if log_y else "linear"} if view_changed else {}
    if not traces and not relayout:
        return
    restyle = {"x": xs_out, "y": ys_out, "visible": visible} if traces else {}
    fig.plotly_update(restyle_data=restyle, relayout_data=relayout, trace_indexes=traces or None)


def retire_figure(fig: Any) -> None:
    """Close the figure, first shrinking its saved state (drop the JS bundle and data).

    A Jupyter client that records widget state (nbclient does, for closed
    widgets too) would otherwise keep ~5 MB of plotly per run in the notebook.
    """
    try:
        with fig.hold_sync():
            fig._esm = ESM_STUB
            fig._widget_data = []
            fig._widget_layout = {}  # the template alone is ~10 kB
            # Redraws reset _py2js_update locally only, so the front end (and a
            # saved notebook's widget state) still holds the last arrays: clear it.
            fig.send_state(["_py2js_update"])
    except Exception:  # a half-built figure: closing is all that matters
        pass
    fig.close()
