"""Notebook views of a run: the live panel, static snapshots, records, replay, compare.

``live(trainer)`` displays the panel, starts the job if needed, streams on a
background thread and returns a :class:`LiveRun` at once (``result()``,
``cancel(remote=True)``, ``await run``, ``save(path)``, ``snapshot_html()``,
``panel``). ``replay(path)`` redraws a saved run; ``compare([...])`` overlays
several runs. Outside Jupyter, ``live`` prints compact text progress.

Modules: ``progress`` (pure run model, RunState), ``series`` (bounded decimated curves),
``panel`` (ipywidgets), ``chart`` (plotly FigureWidget, one message per
redraw), ``snapshot`` (static SVG + HTML), ``record`` (JSONL, replay,
compare), ``text`` (formatting, terminal progress), ``live`` (threads).

Verified: JupyterLab 4.6 (ipywidgets 8.1, plotly 7.1 FigureWidget on
anywidget 0.11) in headless Chromium, and nbclient-executed notebooks
(the saved file keeps the snapshot; ~60-75 kB added per run). Not
verified here: Notebook 7 (same widget manager as Lab), VS Code and Colab
(Colab renders anywidget only after
``google.colab.output.enable_custom_widget_manager()``; the SVG snapshot
needs no widget support anywhere).

Saved notebooks: while the panel is rendered it hides its own snapshot
output (a ``<style>`` in the status widget), so a live view shows one chart;
GitHub and nbviewer (no widgets) show the snapshot. At the end the plotly
figure is closed after its ``_esm`` bundle and data are replaced by stubs,
so widget state recorded by nbclient does not carry ~5 MB of plotly.

Stable DOM hooks for browser tests (CSS classes set with ``add_class`` on
the widget's element, or on elements inside an HTML widget's value):

- ``arkor-panel``: the whole panel (a VBox);
- ``arkor-status``: the status HTML widget; inside it ``arkor-name``,
  ``arkor-job-id``, ``arkor-badge`` (+ ``arkor-badge-<status>``, e.g.
  ``arkor-badge-cancelled``), ``arkor-step`` ("12 / 100"), ``arkor-loss``,
  ``arkor-eval-loss``, ``arkor-eta``, ``arkor-elapsed``, ``arkor-progress``,
  ``arkor-error`` (backend failure), ``arkor-transport`` (stream problem),
  ``arkor-cancel-state`` (what the cancel did), ``arkor-blocking`` (shown
  while ``run.result()`` holds the kernel);
- ``arkor-cancel``: the Cancel button (text "Cancel" -> "Cancelling…" -> the
  final status: "Completed", "Failed", "Cancelled", "Stopped");
- ``arkor-remote-toggle``: the "also cancel the job on the backend" checkbox;
- ``arkor-logscale``, ``arkor-smoothing``: chart controls;
- ``arkor-chart``: the chart box. While streaming it holds the plotly
  FigureWidget, whose own element is ``.js-plotly-plot.arkor-chart-plotly``
  (select it with ``.arkor-chart .js-plotly-plot``, NOT
  ``.arkor-chart-plotly .js-plotly-plot``: the class sits on the plot
  element itself; count points with ``gd.data[0].x.length``; traces are
  0 raw loss, 1 smoothed loss, 2 eval loss, 3 learning rate). Before plotly
  has loaded and after the run ends it holds an HTML widget with an
  ``svg.arkor-svg`` instead;
- ``arkor-checkpoints``: checkpoint list and samples (``arkor-samples``);
- ``arkor-log``: the event log (newest at the bottom);
- ``arkor-snapshot``: the static snapshot (its own cell output after the
  run; a pending placeholder is ``arkor-snapshot-pending``).
"""

from __future__ import annotations

from .live import LiveRun, live
from .record import compare, replay

__all__ = ["LiveRun", "live", "replay", "compare"]
