"""ak.jobs()'s table and ak.playground in real JupyterLab: Cancel, Open and Send clicked in Chromium.

Synthetic jobs (no model) keep it short; we judge from the backend (the job's
status) and from the DOM the clicks produce, never from click timing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser.backend import Backend
from tests.browser.conftest import ARTIFACTS
from tests.browser.lab import LabPage, poll, write_notebook

pytestmark = pytest.mark.slow

CELLS = [
    "import arkor_nb as ak\n"
    "\n"
    'done = ak.create_trainer(name="browser-jobs-done", model="arkor-nb/synthetic", max_steps=3)\n'
    "done.start()\n"
    "done.wait().job.status",
    'long = ak.create_trainer(name="browser-jobs-long", model="arkor-nb/synthetic", max_steps=100_000)\n'
    "long_id = long.start()\n"
    "ak.jobs(limit=2)",
    "ak.playground(done.job_id)",
]


def test_jobs_table_buttons_and_playground(lab_page: LabPage, lab_root: Path, backend_home: Path) -> None:
    write_notebook(lab_root / "jobs.ipynb", CELLS)
    lab_page.open("jobs.ipynb", workspace="jobs")
    lab_page.run_all()
    page = lab_page.page
    page.locator(".arkor-jobs").first.wait_for(state="visible", timeout=120_000)
    page.locator(".arkor-playground").first.wait_for(state="visible", timeout=120_000)
    lab_page.wait_kernel_idle(timeout=120)
    backend = poll(lambda: Backend.find(backend_home), timeout=60, what="the kernel's local backend")
    long_job = backend.job_named("browser-jobs-long")
    done_job = backend.job_named("browser-jobs-done")
    assert long_job is not None and done_job is not None
    assert backend.job(long_job["id"])["job"]["status"] in ("queued", "running")

    # Cancel on the running job's row: the backend ends it, the row says so.
    cancel = page.locator(f'.arkor-jobs-cancel[title*="{long_job["id"]}"]').first
    assert not cancel.is_disabled()
    assert page.locator(f'.arkor-jobs-cancel[title*="{done_job["id"]}"]').count() == 0
    cancel.click()
    poll(lambda: backend.job(long_job["id"])["job"]["status"] == "cancelled", timeout=60,
         what=f"{long_job['id']} cancelled on the backend")
    poll(lambda: cancel.inner_text().strip() == "Cancelled", timeout=60,
         what="the row's button to show the confirmed status")

    # Open on the finished job's row: its live panel appears under the table.
    page.locator(f'.arkor-jobs-open[title*="{done_job["id"]}"]').first.click()
    panel = page.locator(".arkor-jobs .arkor-panel").first
    panel.wait_for(state="visible", timeout=120_000)
    poll(lambda: done_job["id"] in panel.inner_text(), timeout=60, what="the panel to name the job")

    # The playground: one prompt, two replies side by side.
    page.locator(".arkor-playground-prompt textarea").first.fill("Where is my parcel?")
    page.locator(".arkor-playground-send").first.click()
    base = page.locator(".arkor-playground-base pre").first
    tuned = page.locator(".arkor-playground-tuned pre").first
    poll(lambda: base.inner_text().strip() and tuned.inner_text().strip(), timeout=60,
         what="both replies in the playground")
    assert "Where is my parcel?" in base.inner_text() and base.inner_text() != tuned.inner_text()
    lab_page.screenshot(ARTIFACTS / "playground.png", ".arkor-playground")
    lab_page.screenshot(ARTIFACTS / "jobs-table.png", ".arkor-jobs")
