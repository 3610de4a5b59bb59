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

MAX_STEPS = 20_000  # never reached: the test cancels both jobs


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
        'one = ak.live(make("first"))',
        'two = ak.live(make("second"))',
        "",
    ]


def _seconds(text: str) -> int:
    parts = [int(p) for p in text.strip().split(":")]
    return sum(p * 60**i for i, p in enumerate(reversed(parts)))


def _created(job: dict) -> float:
    return datetime.datetime.fromisoformat(job["createdAt"].replace("Z", "+00:00")).timestamp()


@pytest.mark.timeout(600)  # two model loads, a kernel restart and a reattach on 2 shared cores
def test_restart_shows_disconnected_and_the_reattach_line_works(
    lab_page: LabPage, lab_root: Path, backend_home: Path
) -> None:
    write_notebook(lab_root / "restart.ipynb", _cells())
    lab_page.open("restart.ipynb", workspace="restart")
    lab_page.run_all()
    page = lab_page.page
    backend = poll(lambda: Backend.find(backend_home), timeout=180, what="the kernel's local backend")
    first = poll(lambda: backend.job_named("first"), timeout=120, what="the first job")
    second = poll(lambda: backend.job_named("second"), timeout=120, what="the second job")
    panels = page.locator(".arkor-panel")
    poll(lambda: panels.count() == 2, timeout=120, what="two panels")
    # Both cells start their job from a background thread: whichever job was created
    # first holds the slot, the other waits in the queue.
    holder, waiting = poll(
        lambda: sorted((first, second), key=lambda j: backend.status(j["id"]) != "running")
        if {backend.status(first["id"]), backend.status(second["id"])} == {"running", "queued"}
        else None,
        timeout=120,
        what="one job running, one queued",
    )
    # (by the id in the panel's header: a queued panel also names the job ahead of it)
    holder_panel = page.locator(".arkor-panel", has=page.locator(".arkor-job-id", has_text=holder["id"]))
    waiting_panel = page.locator(".arkor-panel", has=page.locator(".arkor-job-id", has_text=waiting["id"]))
    poll(lambda: panel_points(holder_panel) >= 3,
         timeout=240, interval=0.5, what="the running job's points")

    # Toggle off, Cancel: we stop watching, the running job keeps the slot.
    holder_panel.locator(".arkor-remote-toggle input[type=checkbox]").uncheck()
    holder_panel.locator(".arkor-cancel").click()
    poll(lambda: panels.count() == 1, timeout=60, what="the stopped panel to give way to its snapshot")
    assert backend.status(holder["id"]) == "running"
    assert backend.status(waiting["id"]) == "queued"
    second = waiting_panel
    assert "queued" in second.locator(".arkor-status").inner_text()
    assert "waiting for the first step" in second.locator(".arkor-chart").inner_text()
    # it names the job it waits behind (name, id, step / max) and offers to cancel it
    queue = second.locator(".arkor-queue")
    ahead = rf"held by {holder['name']} {holder['id']} at step \d+ / {MAX_STEPS}"
    poll(lambda: queue.count() and re.search(ahead, queue.inner_text()), timeout=60,
         what="the queued panel to name the job holding the slot, its step and max steps")
    assert holder["name"] in second.locator(".arkor-cancel-ahead").inner_text()
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
    seen: list[str] = [""]

    def stepping() -> bool:
        seen[0] = status.inner_text()
        return re.search(rf"\b[1-9]\d* / {MAX_STEPS}(?!\d)", seen[0]) is not None

    try:
        poll(stepping, timeout=180, interval=0.5, what="step / max steps in the reattached panel")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the panel read: {seen[0]!r}") from None
    text = status.inner_text()
    assert text.count(waiting["name"]) == 1, text  # the job's name, once
    assert fresh.locator(".arkor-progress").count() == 1
    elapsed = _seconds(fresh.locator(".arkor-elapsed").inner_text())
    since_created = time.time() - _created(waiting)
    since_reattach = time.time() - reattached_at
    assert elapsed >= since_created - 3 > since_reattach, (elapsed, since_created, since_reattach)
    # the event log counts from the job's creation too: it started after its wait in the queue
    log = fresh.locator(".arkor-log").inner_text()
    started_line = re.search(r"\+(\d+\.\d)s started\b", log)
    assert started_line, log[-400:]
    started = next(e for e in backend.events(waiting["id"]) if e.get("type") == "training.started")
    expected = datetime.datetime.fromisoformat(started["timestamp"].replace("Z", "+00:00")).timestamp()
    assert abs(float(started_line.group(1)) - (expected - _created(waiting))) < 2.0
    assert float(started_line.group(1)) > since_reattach  # not counted from the reattach
    lab_page.screenshot(ARTIFACTS / "restart-reattached.png", ".arkor-panel:not(.arkor-disconnected)")

    fresh.locator(".arkor-cancel").click()
    poll(lambda: backend.status(waiting["id"]) == "cancelled", timeout=60, what="the reattached job to cancel")
    assert backend.status(holder["id"]) == "cancelled"
