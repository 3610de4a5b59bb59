"""Toggle off, a queued second run, a kernel restart, and the reattach line, in real JupyterLab.

The path: a first run holds the local backend's only training slot; the user
unticks "also cancel on the backend" and presses Cancel (the job keeps
training); a second run waits in the queue; the kernel restarts. The old
panel must say it is disconnected and show the exact line that reattaches;
that line, pasted into a cell, brings back a panel that counts time from the
job's creation, not from the reattach.
"""

from __future__ import annotations

import datetime
import re
import time
from pathlib import Path

import pytest

from tests.browser.backend import Backend
from tests.browser.conftest import ARTIFACTS, REPO
from tests.browser.lab import LabPage, lab_restart_kernel, panel_points, poll, write_notebook

pytestmark = pytest.mark.slow

MAX_STEPS = 3000


def _cells() -> list[str]:
    data = REPO / "data" / "triage.jsonl"
    return [
        "import arkor_nb as ak\n"
        "\n"
        "def make(name):\n"
        "    return ak.create_trainer(\n"
        f'        name=name, model="arkor-nb/tiny", dataset={{"type": "file", "path": {str(data)!r}}},\n'
        f"        max_steps={MAX_STEPS}, logging_steps=1, batch_size=2)\n"
        "\n"
        'holder = ak.live(make("slot-holder"))',
        'waiting = ak.live(make("waiting"))',
        "",
    ]


def _seconds(text: str) -> int:
    parts = [int(p) for p in text.strip().split(":")]
    return sum(p * 60**i for i, p in enumerate(reversed(parts)))


def _created(job: dict) -> float:
    return datetime.datetime.fromisoformat(job["createdAt"].replace("Z", "+00:00")).timestamp()


def test_restart_shows_disconnected_and_the_reattach_line_works(
    lab_page: LabPage, lab_root: Path, backend_home: Path
) -> None:
    write_notebook(lab_root / "restart.ipynb", _cells())
    lab_page.open("restart.ipynb", workspace="restart")
    lab_page.run_all()
    page = lab_page.page
    backend = poll(lambda: Backend.find(backend_home), timeout=180, what="the kernel's local backend")
    holder = poll(lambda: backend.job_named("slot-holder"), timeout=120, what="the first job")
    waiting = poll(lambda: backend.job_named("waiting"), timeout=120, what="the second job")
    panels = page.locator(".arkor-panel")
    poll(lambda: panels.count() == 2, timeout=120, what="two panels")
    poll(lambda: panel_points(page) >= 3, timeout=240, interval=0.5, what="the first run's points")
    assert backend.status(waiting["id"]) == "queued"

    # Toggle off, Cancel: we stop watching, the first job keeps the slot.
    first = panels.nth(0)
    first.locator(".arkor-remote-toggle input[type=checkbox]").uncheck()
    first.locator(".arkor-cancel").click()
    poll(lambda: panels.count() == 1, timeout=60, what="the first panel to give way to its snapshot")
    assert backend.status(holder["id"]) == "running"
    second = panels.nth(0)
    assert "queued" in second.locator(".arkor-status").inner_text()
    assert "waiting for the first step" in second.locator(".arkor-chart").inner_text()
    lab_page.screenshot(ARTIFACTS / "restart-queued.png", ".arkor-panel")

    # Kernel restart: the old panel says it is disconnected and how to reattach.
    lab_restart_kernel(lab_page)
    lab_page.wait_kernel_idle(timeout=120)
    second.and_(page.locator(".arkor-disconnected")).wait_for(timeout=60_000)
    line = second.locator(".arkor-reattach").inner_text().strip()
    assert line == f'import arkor_nb as ak; run = ak.live(job_id="{waiting["id"]}")', line
    assert second.locator(".arkor-cancel").is_disabled()
    assert "disconnected" in second.inner_text()
    lab_page.screenshot(ARTIFACTS / "restart-disconnected.png", ".arkor-panel")

    # The line, typed into a cell, reattaches; freeing the slot lets the job train.
    last = page.locator(".jp-Notebook .jp-CodeCell").nth(2)
    last.locator(".cm-content").click()
    page.keyboard.type(line)
    reattached_at = time.time()
    page.keyboard.press("Shift+Enter")
    fresh = page.locator(".arkor-panel:not(.arkor-disconnected)").first
    fresh.wait_for(timeout=120_000)
    backend.cancel(holder["id"])
    poll(lambda: backend.status(waiting["id"]) == "running", timeout=120, what="the second job to start")
    status = fresh.locator(".arkor-status")
    poll(lambda: re.search(r"\b[1-9]\d* / 3000\b", status.inner_text()), timeout=240, interval=0.5,
         what="step / max steps in the reattached panel")
    text = status.inner_text()
    assert text.count("waiting") == 1, text  # the job's name, once
    assert fresh.locator(".arkor-progress").count() == 1
    elapsed = _seconds(fresh.locator(".arkor-elapsed").inner_text())
    since_created = time.time() - _created(waiting)
    since_reattach = time.time() - reattached_at
    assert elapsed >= since_created - 3 > since_reattach, (elapsed, since_created, since_reattach)
    # the event log counts from the job's creation too: its first step came after the wait
    log = fresh.locator(".arkor-log").inner_text()
    first_step = re.search(r"\+(\d+\.\d)s step 1\b", log)
    assert first_step, log[-400:]
    started = [e for e in backend.events(waiting["id"]) if e.get("type") == "training.log"][0]
    expected = datetime.datetime.fromisoformat(started["timestamp"].replace("Z", "+00:00")).timestamp()
    assert abs(float(first_step.group(1)) - (expected - _created(waiting))) < 2.0
    lab_page.screenshot(ARTIFACTS / "restart-reattached.png", ".arkor-panel:not(.arkor-disconnected)")

    fresh.locator(".arkor-cancel").click()
    poll(lambda: backend.status(waiting["id"]) == "cancelled", timeout=60, what="the reattached job to cancel")
    assert backend.status(holder["id"]) == "cancelled"
