"""Notebook views of a run: the live panel, static snapshots, records, replay, compare.

``live(trainer)`` displays the panel, starts the job if needed, streams on a
background thread and returns a :class:`LiveRun` at once (``result()``,
``cancel(remote=True)``, ``await run``, ``save(path)``, ``snapshot_html()``,
``figure()``, ``panel``). ``replay(path)`` redraws a saved run; ``compare([...])`` puts
several runs side by side (the config keys that differ, best task metric @ step, final
loss, duration; loss and metric curves overlaid). Outside Jupyter, ``live`` prints compact text progress.

Modules: ``progress`` (pure run model, RunState), ``evals`` (its task metrics, eval
examples and health), ``series`` (bounded decimated curves), ``panel`` (ipywidgets),
``svgchart`` (the one SVG chart engine: panel, snapshot, compare, demo report),
``palette`` (the one set of colours and the status badge), ``livechart`` (an SVG
in a small anywidget, its JavaScript in ``livechart.js``: hover values, kernel
watchdog), ``evalview`` (metric chart, best checkpoint, examples, health row),
``chart`` (plotly figure on demand, ``run.figure()``), ``snapshot`` (static SVG +
HTML), ``record`` (JSONL, replay), ``compare`` (runs side by side: the config keys
that differ, best metric), ``text`` (formatting, terminal progress), ``live`` (threads).

Verified: JupyterLab 4.6 (ipywidgets 8.1, anywidget 0.11) in headless
Chromium, and nbclient-executed notebooks (the saved file keeps only the
snapshot; ~43 kB added per run). Not
verified here: Notebook 7 (same widget manager as Lab), VS Code and Colab
(Colab renders anywidget only after
``google.colab.output.enable_custom_widget_manager()``; the SVG snapshot
needs no widget support anywhere).

Saved notebooks: the panel is displayed with an empty text/plain and, when
the run ends, its output is replaced by the static snapshot and its widgets
are emptied and closed: a saved notebook shows only the snapshot (no "model
not found", no stale text line), on GitHub and nbviewer too.

Kernel restart: the kernel beats about once a second; when the beats stop
the chart's JavaScript adds ``arkor-disconnected`` to the panel, disables its
controls and shows ``arkor-disconnected-note`` with the reattach line
(``arkor-reattach``: ``import arkor_nb as ak; run = ak.live(job_id="...")``).

Stable DOM hooks for browser tests (CSS classes set with ``add_class`` on
the widget's element, or on elements inside an HTML widget's value):

- ``arkor-panel``: the whole panel (a VBox);
- ``arkor-status``: the status HTML widget; inside it ``arkor-name``,
  ``arkor-job-id``, ``arkor-badge`` (+ ``arkor-badge-<status>``, e.g.
  ``arkor-badge-cancelled``), ``arkor-step`` ("12 / 100"), ``arkor-loss``,
  ``arkor-eval-loss``, ``arkor-eta``, ``arkor-elapsed``, ``arkor-progress``,
  ``arkor-error`` (backend failure), ``arkor-transport`` (stream problem),
  ``arkor-cancel-state`` (what the cancel did), ``arkor-blocking`` (shown
  while ``run.result()`` holds the kernel), ``arkor-best`` (the best checkpoint
  by the headline task metric: "best fields/all 92% @ step 40"), ``arkor-health``
  (grad norm, tokens/s, peak RSS, GPU memory from the latest training.log);
- ``arkor-cancel``: the Cancel button (text "Cancel" -> "Cancelling…" -> the
  final status: "Completed", "Failed", "Cancelled", "Stopped");
- ``arkor-remote-toggle``: the "also cancel the job on the backend" checkbox;
- ``arkor-logscale``, ``arkor-smoothing``: chart controls;
- ``arkor-chart``: the chart box: ``.arkor-live-chart`` holds an
  ``svg.arkor-svg`` (redrawn a few times a second); each hoverable line
  carries its exact values (``[data-name][data-xs][data-ys]``: count points
  with ``data-xs``); ``.arkor-tip`` is the hover tooltip; with no point yet
  it reads "waiting for the first step" (``.arkor-empty-chart``);
- ``arkor-metric-chart``: the task-metric chart beside it (hidden until the first
  ``checkpoint.eval``), an ``svg.arkor-metric-svg`` with one line per metric in
  percent (``data-unit="%"``) and the best point ringed (``.arkor-best-point``); the
  snapshot and ``compare`` wrap the same SVG in a ``div.arkor-metric-chart``;
- ``arkor-checkpoints``: checkpoint list and samples (``arkor-samples``), then the
  latest eval examples (``arkor-examples``, one ``tr.arkor-example`` each; in a
  reply, ``arkor-field-right`` / ``arkor-field-wrong`` / ``arkor-field-missing``
  per ``key: value`` field, else ``arkor-reply-right`` / ``arkor-reply-wrong``);
- ``arkor-log``: the event log (newest at the bottom);
- ``arkor-snapshot``: the static snapshot (the panel's cell output after the run);
  ``arkor-compare`` the table of ``ak.compare`` (``arkor-config-value`` cells).
"""

from __future__ import annotations

from arkor_nb.notebook.compare import compare
from arkor_nb.notebook.live import LiveRun, live
from arkor_nb.notebook.record import replay

__all__ = ["LiveRun", "live", "replay", "compare"]
