"""Measurement 8: what opening a new live panel sends to the browser, next to a plotly FigureWidget.

Each ``ak.live()`` builds a panel; every widget in it opens a comm whose
``comm_open`` carries the widget's whole state (for an anywidget, its
JavaScript too). We record every message through ``comm.create_comm`` (the
hook the ``comm`` package offers frontends) and sum the JSON + binary bytes:

* arkor_nb panel: ``LivePanel`` (status, buttons, controls, the live chart
  anywidget with its ESM, checkpoints and log) before the first event, and
  one redraw of a 1,000-step run (what the first point costs);
* peer: the live chart this replaced, a plotly ``FigureWidget`` with two
  points (its comm_open carries plotly's anywidget bundle).

    python -m benchmarks.bench_panel_weight
"""

from __future__ import annotations

import json
import time
from typing import Any

from benchmarks.common import mode_parser, save


def _recording() -> tuple[list[tuple[str, int]], Any]:
    import comm
    from comm import DummyComm

    sent: list[tuple[str, int]] = []

    class RecordingComm(DummyComm):
        def publish_msg(self, msg_type: str, data: Any = None, metadata: Any = None,
                        buffers: Any = None, **keys: Any) -> None:
            size = len(json.dumps(data, default=str)) + sum(memoryview(b).nbytes for b in buffers or [])
            sent.append((msg_type, size))

    original = comm.create_comm
    comm.create_comm = lambda *a, **kw: RecordingComm(*a, **kw)
    return sent, lambda: setattr(comm, "create_comm", original)


def measure() -> dict[str, Any]:
    from arkor_nb.core.events import TrainingLog
    from arkor_nb.notebook.panel import LivePanel
    from arkor_nb.notebook.progress import RunState

    sent, restore = _recording()
    try:
        st = RunState(name="weight", job_id="job_w", backend="local")
        t = time.perf_counter()
        panel = LivePanel(st)
        build_s = time.perf_counter() - t
        opened = sum(size for kind, size in sent if kind == "comm_open")
        mark = len(sent)
        for step in range(1, 1001):
            st.fold(TrainingLog(step=step, loss=2.0 / (1 + step / 100), learning_rate=3e-3))
        t = time.perf_counter()
        panel.render()
        redraw_s = time.perf_counter() - t
        redraw = sum(size for _, size in sent[mark:])

        import plotly.graph_objects as go

        mark = len(sent)
        t = time.perf_counter()
        go.FigureWidget(data=[{"type": "scatter", "x": [1, 2], "y": [1.0, 0.5]}])
        plotly_s = time.perf_counter() - t
        plotly_open = sum(size for kind, size in sent[mark:] if kind == "comm_open")
    finally:
        restore()
    return {
        "arkor_panel_open_bytes": opened,
        "arkor_panel_build_s": build_s,
        "arkor_first_redraw_bytes_1k_steps": redraw,
        "arkor_first_redraw_s": redraw_s,
        "plotly_figurewidget_open_bytes": plotly_open,
        "plotly_figurewidget_build_s": plotly_s,
    }


def main(argv: list[str] | None = None) -> None:
    ap = mode_parser(__doc__)
    a = ap.parse_args(argv)
    result = {"mode": a.mode or "full", **measure()}
    save(f"panel-weight-{result['mode']}", result)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
