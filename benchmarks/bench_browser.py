"""Measurement 2: time to panel in a real browser (JupyterLab + headless Chromium).

Reuses the browser-test harness (``tests/browser/lab.py``): a throwaway
JupyterLab, Debian's Chromium through Playwright. A notebook runs
``ak.live(trainer)`` against a real local server (paced synthetic worker)
once in a fresh kernel (cold: imports) and then ``WARM_RUNS`` times in the
same kernel (warm); side by side, the same kernel then shows plotly
``FigureWidget``s holding two points (cold: plotly's imports and ~5 MB
bundle; warm), which is what the panel's live chart was before it became
the snapshot's SVG. In the page, a 5 ms poller records when the k-th
``.arkor-panel`` appears and when its chart first shows a point (a line in
its ``svg.arkor-svg``), and when each plotly figure has drawn its data.
Kernel and browser share the host clock, so:

* to panel = panel in the DOM - the kernel's clock just before ``ak.live``;
* first point = point drawn - the first ``training.log`` event's recorded
  timestamp (store clock, ms).

    python -m benchmarks.bench_browser --full
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.bench_sse import raw_read
from benchmarks.common import median, mode_parser, save
from benchmarks.local_server import local_server

WARM_RUNS = 3
STEP_S = "0.05"

OBSERVER = """
() => {
  window.__arkor = {panel: {}, point: {}, kind: {}, plotly: {}};
  const rec = window.__arkor;
  let seq = 0, pseq = 0;
  setInterval(() => {
    const now = Date.now();
    // a panel's output is replaced by its snapshot when its run ends: number each
    // panel element when first seen, not by its position in the page
    document.querySelectorAll('.arkor-panel').forEach((p) => {
      if (!p.dataset.benchSeq) p.dataset.benchSeq = String(seq++);
      const i = p.dataset.benchSeq;
      if (!(i in rec.panel)) rec.panel[i] = now;
      if (i in rec.point) return;
      const svg = p.querySelector('svg.arkor-svg');
      if (svg && svg.querySelector('path, polyline, circle')) { rec.point[i] = now; rec.kind[i] = 'svg'; }
    });
    // the peer: a bare plotly FigureWidget holding one point (what the old panel opened)
    document.querySelectorAll('.bench-plotly-peer .js-plotly-plot, .js-plotly-plot').forEach((gd) => {
      if (gd.closest('.arkor-panel')) return;
      if (!gd.dataset.benchSeq) gd.dataset.benchSeq = String(pseq++);
      const i = gd.dataset.benchSeq;
      if (!(i in rec.plotly) && gd.data && gd.data[0] && gd.data[0].x && gd.data[0].x.length > 0)
        rec.plotly[i] = now;
    });
  }, 5);
}
"""

def _cells(url: str, token: str, out: str, runs: int) -> list[str]:
    cells = ["import time, json\n_T = []\n_J = []\n_P = []"]
    for k in range(runs):
        cells.append(
            "_T.append(time.time())\n"
            "import arkor_nb as ak\n"
            f"_tr = ak.create_trainer(name='ttp-{k}', model='arkor-nb/synthetic', max_steps=200,\n"
            f"    backend=ak.LocalBackend(url={url!r}, token={token!r}))\n"
            "run = ak.live(_tr)"
        )
        cells.append("await run\n_J.append(run.job_id)")
    for _ in range(runs):  # side by side: a plotly FigureWidget with one point, cold then warm
        cells.append(
            "_P.append(time.time())\n"
            "import plotly.graph_objects as go\n"
            "_f = go.FigureWidget(data=[{'type': 'scatter', 'x': [1, 2], 'y': [1.0, 0.5]}])\n"
            "_f"
        )
    cells.append("time.sleep(20)  # let the last figure draw before the timestamps are written")
    cells.append(f"open({out!r}, 'w').write(json.dumps({{'t0': _T, 'jobs': _J, 'plotly_t0': _P}}))")
    return cells


def run_and_measure(mode: str) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright  # noqa: F401 - fail early if missing

    result = _run_with_stamps(mode)
    save(f"browser-{mode}", result)
    return result


def _run_with_stamps(mode: str) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    from tests.browser.lab import LabPage, LabServer, launch_chromium, poll, write_notebook

    runs = 1 + (WARM_RUNS if mode == "full" else 1)
    out: dict[str, Any] = {"mode": mode}
    with local_server(ARKOR_NB_SYNTHETIC_STEP_S=STEP_S) as server, \
            tempfile.TemporaryDirectory(prefix="arkor-bench-lab-") as tmp:
        root, scratch = Path(tmp) / "root", Path(tmp) / "scratch"
        root.mkdir()
        result_file = Path(tmp) / "kernel-times.json"
        write_notebook(root / "ttp.ipynb", _cells(server.url, server.token, str(result_file), runs))
        lab = LabServer(root, scratch)
        t_lab = time.perf_counter()
        lab.start()
        out["lab_start_s"] = time.perf_counter() - t_lab
        try:
            with sync_playwright() as pw:
                browser = launch_chromium(pw)
                try:
                    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
                    lp = LabPage(page, lab)
                    t_open = time.perf_counter()
                    lp.open("ttp.ipynb", "bench-ttp", timeout=240)
                    out["open_to_kernel_idle_s"] = time.perf_counter() - t_open
                    page.evaluate(OBSERVER)
                    lp.run_all()
                    poll(result_file.exists, timeout=600, interval=0.5, what="the notebook to finish")
                    rec = page.evaluate("() => window.__arkor")
                finally:
                    browser.close()
        finally:
            lab.stop()
        kernel = json.loads(result_file.read_text())
        rows = []
        for k, (t0, job) in enumerate(zip(kernel["t0"], kernel["jobs"], strict=True)):
            stamps = raw_read(server, job)["stamps"]
            first_event = min(stamps.values()) if stamps else None
            panel_ms = rec["panel"].get(str(k))
            point_ms = rec["point"].get(str(k))
            rows.append({
                "run": "cold" if k == 0 else f"warm {k}",
                "first_point_chart": rec.get("kind", {}).get(str(k)),
                "to_panel_s": (panel_ms / 1e3 - t0) if panel_ms else None,
                "to_first_point_s": (point_ms / 1e3 - t0) if point_ms else None,
                "first_event_after_live_s": (first_event - t0) if first_event else None,
                "point_after_first_event_s": (point_ms / 1e3 - first_event)
                if point_ms and first_event else None,
            })
        plotly_rows = []
        for k, t0 in enumerate(kernel["plotly_t0"]):
            drawn = rec["plotly"].get(str(k))
            plotly_rows.append({"run": "cold" if k == 0 else f"warm {k}",
                                "figure_to_point_s": (drawn / 1e3 - t0) if drawn else None})
        out["plotly_peer"] = plotly_rows
        out["plotly_warm_figure_to_point_s"] = median(
            r["figure_to_point_s"] for r in plotly_rows[1:] if r["figure_to_point_s"] is not None)
        out["rows"] = rows
        warm = [r for r in rows if r["run"] != "cold"]
        out["warm_to_panel_s"] = median(r["to_panel_s"] for r in warm)
        out["warm_point_after_first_event_s"] = median(r["point_after_first_event_s"] for r in warm)
        out["cold"] = rows[0]
    return out


def main(argv: list[str] | None = None) -> None:
    ap = mode_parser(__doc__)
    a = ap.parse_args(argv)
    print(json.dumps(run_and_measure(a.mode or "full"), indent=1, default=str))


if __name__ == "__main__":
    main()
