"""Run All of the shipped quickstart in real JupyterLab, Cancel mid-run, save, reload, convert.

What a new user does: open notebooks/quickstart.ipynb, Run All, watch the
curve, press Cancel while Run All is still inside ``await run``. Judged from
the backend (status, event log) and the DOM, never from click timing: the
click-to-cancelled time is recorded in test-artifacts/, not asserted.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import time
from pathlib import Path

import nbformat
import pytest
from bs4 import BeautifulSoup
from nbconvert import HTMLExporter

from tests.browser.backend import Backend
from tests.browser.conftest import ARTIFACTS, REPO
from tests.browser.lab import LabPage, lab_save, panel_points, poll

pytestmark = pytest.mark.slow

MAX_STEPS = 3000  # far more than the test waits for: Cancel must stop it
MIN_POINTS = 12  # logged steps plotted before we press Cancel
DOCS_SCREENSHOT = REPO / "docs" / "panel.png"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def _quickstart_copy(lab_root: Path) -> Path:
    """notebooks/quickstart.ipynb, unchanged but for a longer run and earlier checkpoints."""
    nb = nbformat.read(REPO / "notebooks" / "quickstart.ipynb", as_version=4)
    setup = nb.cells[1]
    assert "max_steps=60" in setup.source and "save_steps=30" in setup.source
    setup.source = setup.source.replace("max_steps=60", f"max_steps={MAX_STEPS}").replace(
        "save_steps=30", "save_steps=10"
    )
    (lab_root / "notebooks").mkdir(exist_ok=True)
    if not (lab_root / "data").exists():
        (lab_root / "data").symlink_to(REPO / "data", target_is_directory=True)
    path = lab_root / "notebooks" / "quickstart.ipynb"
    nbformat.write(nb, path)
    return path


def _sampled_reply(text: str, *, step: int) -> str | None:
    for match in re.finditer(rf"\bstep {step}\b(.*?)(?=\bstep \d+\b|\Z)", text, re.DOTALL):
        if "→" in match.group(1):
            reply = match.group(1).split("→", 1)[1].strip()
            return None if not reply or reply.startswith("sampling") else reply
    return None


def _when(iso: str) -> float:
    return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_run_all_then_cancel_then_save_reload_and_convert(
    lab_page: LabPage, lab_root: Path, backend_home: Path
) -> None:
    path = _quickstart_copy(lab_root)
    lab_page.open("notebooks/quickstart.ipynb", workspace="runall")
    lab_page.run_all()
    page = lab_page.page
    cells = page.locator(".jp-Notebook .jp-CodeCell")

    backend = poll(lambda: Backend.find(backend_home), timeout=180, what="the kernel's local backend")
    job = poll(lambda: backend.job_named("quickstart"), timeout=120, what="the quickstart job")
    job_id = job["id"]
    poll(lambda: panel_points(page) >= MIN_POINTS, timeout=240, interval=0.5, what="plotted points")
    # A checkpoint was sampled and its reply shown beside the step.
    poll(
        lambda: _sampled_reply(page.locator(".arkor-checkpoints").first.inner_text(), step=10),
        timeout=120,
        interval=1,
        what="the step-10 checkpoint's sampled reply",
    )
    # Hover shows exact values under the pointer.
    chart = page.locator(".arkor-chart .arkor-live-chart").first  # stable; its svg is redrawn
    chart.scroll_into_view_if_needed()
    box = chart.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.5)
    tip = page.locator(".arkor-tip").first
    tip.wait_for(state="visible", timeout=10_000)
    assert re.match(r"step \d+ · loss \(raw\) \d", tip.inner_text()), tip.inner_text()
    page.mouse.move(0, 0)

    # Run All is inside `await run` (the cell shows [*]) when we click.
    await_cell = cells.nth(2)
    assert "await run" in await_cell.inner_text()
    assert "[*]" in await_cell.locator(".jp-InputPrompt").inner_text()
    assert backend.status(job_id) == "running"
    shot = lab_page.screenshot(ARTIFACTS / "runall-running.png", ".arkor-panel")
    lab_page.screenshot(ARTIFACTS / "runall-lab-running.png")
    if os.environ.get("ARKOR_NB_UPDATE_DOCS_SCREENSHOT") == "1":
        shutil.copyfile(shot, DOCS_SCREENSHOT)  # on request only: a test never dirties the checkout

    # At 1280 px with the file browser open the metrics row wraps between metrics,
    # never between a label and its value: every metric stays on one line.
    page.set_viewport_size({"width": 1280, "height": 800})
    assert page.locator(".jp-FileBrowser").first.is_visible()
    heights = page.locator(".arkor-status .arkor-metric").evaluate_all(
        "els => els.map(e => [e.innerText, e.getBoundingClientRect().height])")
    assert len(heights) >= 8 and all(h < 30 for _, h in heights), heights
    lab_page.screenshot(ARTIFACTS / "runall-1280.png", ".arkor-panel")

    toggle = page.locator(".arkor-remote-toggle input[type=checkbox]").first
    assert toggle.is_checked(), "the 'also cancel on the backend' toggle defaults to on"
    button = page.locator(".arkor-cancel").first
    assert button.inner_text().strip() == "Cancel"
    clicked = time.time()
    button.click()

    final = poll(
        lambda: (j := backend.job(job_id))["job"]["status"] in {"cancelled", "completed", "failed"} and j,
        timeout=60,
        interval=0.2,
        what=f"{job_id} to reach a terminal status",
    )
    assert final["job"]["status"] == "cancelled", final["job"]
    events = final.get("events") or []
    assert events[-1]["type"] == "training.cancelled"
    steps = sum(1 for e in events if e.get("type") == "training.log")
    assert steps < MAX_STEPS  # stopped mid-run, while Run All still awaited it
    cancelled_after = _when(events[-1]["timestamp"]) - clicked

    # The next cells ran: the comparison cell said the run was cancelled, the replay drew it.
    poll(lambda: "(the run was cancelled)" in cells.nth(3).inner_text(), timeout=120,
         what="the cell after `await run` to run")
    cells.nth(6).locator(".arkor-snapshot").first.wait_for(timeout=60_000)  # ak.replay(record)
    lab_page.wait_kernel_idle(timeout=60)
    # The panel's output is now its snapshot, which says what happened.
    panel_cell = cells.nth(1)
    snapshot = panel_cell.locator(".arkor-snapshot").first
    snapshot.wait_for(timeout=30_000)
    assert panel_cell.locator(".arkor-panel").count() == 0
    assert snapshot.locator(".arkor-badge-cancelled").count() >= 1
    assert "cancelled" in snapshot.inner_text()
    lab_page.screenshot(ARTIFACTS / "runall-cancelled.png", ".jp-Notebook")
    (ARTIFACTS / "runall-figures.json").write_text(json.dumps(
        {"click_to_training_cancelled_s": round(cancelled_after, 3), "steps_logged": steps}))

    # Save, reload the page: only the snapshot, no widget error, no stale text line.
    lab_save(lab_page)
    poll(lambda: any(c.get("outputs") for c in json.loads(path.read_text())["cells"]),
         timeout=30, what="the saved notebook on disk")
    page.reload()
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
    panel_cell = page.locator(".jp-Notebook .jp-CodeCell").nth(1)
    panel_cell.locator(".arkor-snapshot svg.arkor-svg").first.wait_for(timeout=60_000)
    text = page.locator(".jp-Notebook").first.inner_text()
    assert "Error displaying widget" not in text and "model not found" not in text
    assert "live panel" not in text
    lab_page.screenshot(ARTIFACTS / "runall-reloaded.png", ".jp-Notebook .jp-CodeCell >> nth=1")

    # nbconvert (what GitHub / nbviewer show): the snapshot, nothing else for that cell.
    saved = nbformat.read(path, as_version=4)
    outputs = saved.cells[3].outputs
    assert len(outputs) == 1 and WIDGET_VIEW not in outputs[0]["data"], outputs
    body, _ = HTMLExporter().from_notebook_node(saved)
    soup = BeautifulSoup(body, "html.parser")
    cell_html = soup.select(".jp-CodeCell")[1]
    assert len(cell_html.select(".arkor-snapshot svg polyline")) >= 1
    assert "live panel" not in soup.get_text() and "Error displaying widget" not in soup.get_text()
