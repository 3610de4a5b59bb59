"""The live chart: the snapshot's own SVG in a small anywidget, plus hover and a kernel watchdog.

Why not plotly while streaming: a plotly ``FigureWidget`` ships its ~5 MB
bundle with every new panel and takes 1-2 s to draw a first point in a warm
kernel (benchmarks/README.md). This widget carries a few kB of JavaScript
and draws exactly the SVG the saved snapshot keeps, so live and saved look
the same. plotly stays available on demand (``run.figure()``).

The JavaScript does three things, none of which talks to the kernel:
- shows ``svg`` (the kernel redraws it a few times a second at most);
- hover: reads the exact values the SVG carries (``data-xs`` / ``data-ys``)
  and shows them for the step under the pointer;
- watchdog: while ``live`` is true the kernel bumps ``beat`` about once a
  second from a background thread (that works even while a cell blocks).
  When no beat arrives for ``STALE_S`` seconds (kernel restarted, died or
  stuck) it marks the whole panel disconnected, disables its buttons and
  shows ``reattach``: the exact ``ak.live(job_id="...")`` line to copy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

STALE_S = 8  # seconds without a beat before the panel says it is disconnected
BEAT_S = 1.0  # how often the kernel beats (run_threads.py), well under STALE_S

ESM = Path(__file__).with_name("livechart.js")  # anywidget reads the file


_CLASS: Any = None


def live_chart_class() -> Any:
    """The anywidget class (built on first use: anywidget is imported lazily), None without it."""
    global _CLASS
    if _CLASS is not None:
        return _CLASS
    try:
        import anywidget
        import traitlets
    except Exception:  # anywidget missing: the panel shows a plain HTML chart instead
        return None

    class LiveChart(anywidget.AnyWidget):  # type: ignore[misc, name-defined]
        """SVG chart + hover + kernel watchdog (see the module docstring)."""

        _esm = ESM
        stale_s = traitlets.Int(STALE_S).tag(sync=True)
        svg = traitlets.Unicode("").tag(sync=True)
        beat = traitlets.Int(0).tag(sync=True)
        live = traitlets.Bool(True).tag(sync=True)
        reattach = traitlets.Unicode("").tag(sync=True)

        @property
        def value(self) -> str:  # the same name as an HTML widget's, for the panel's code paths
            return str(self.svg)

        @value.setter
        def value(self, svg: str) -> None:
            self.svg = svg

    _CLASS = LiveChart
    return _CLASS


def new_live_chart(svg: str) -> Any:
    """A LiveChart showing ``svg``, or an ``ipywidgets.HTML`` when anywidget is missing."""
    cls = live_chart_class()
    if cls is None:
        import ipywidgets as widgets

        return widgets.HTML(value=svg)
    return cls(svg=svg)
