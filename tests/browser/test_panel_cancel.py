"""The live panel in real JupyterLab: a real local training run, plotted, then cancelled.

What a user does: open a notebook, Run All, watch the loss curve grow, press
Cancel. We judge from the backend (the job's status and event log) and from
the DOM, never from click timing: on a loaded 2-core machine the first plotly
figure alone takes 10-15 s.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.conftest import ARTIFACTS, REPO
from tests.browser.lab import LabPage, poll, write_notebook

pytestmark = pytest.mark.slow

RUN_NAME = "browser-cancel"
MIN_POINTS = 25  # logged steps that must be plotted before we press Cancel
PLOT = ".arkor-panel .js-plotly-plot.arkor-chart-plotly"
DOCS_SCREENSHOT = REPO / "docs" / "panel.png"


def _notebook_cells() -> list[str]:
    data, held_out = REPO / "data" / "triage.jsonl", REPO / "data" / "triage_eval.jsonl"
    return [
        "import arkor_nb as ak\n"
        "\n"
        'TICKET = "I was charged twice for order #51234. Please refund one payment."\n'
        "\n"
        "trainer = ak.create_trainer(\n"
        f"    name={RUN_NAME!r},\n"
        '    model="arkor-nb/tiny",\n'
        f'    dataset={{"type": "file", "path": {str(data)!r}, "eval_path": {str(held_out)!r}}},\n'
        '    lora={"r": 16, "alpha": 32},\n'
        "    learning_rate=3e-3,\n"
        "    max_steps=5000,  # far more than the test waits for: Cancel must stop it\n"
        "    logging_steps=1,\n"
        "    eval_steps=10,\n"
        "    save_steps=10,\n"
        ")\n"
        "run = ak.live(trainer, sample_prompts=[TICKET])",
    ]


class Backend:
    """The local backend the kernel started, read over its own HTTP API."""

    def __init__(self, url: str, token: str) -> None:
        self.http = httpx.Client(
            base_url=url,
            headers={"Authorization": f"Bearer {token}"},
            params={"orgSlug": "local", "projectSlug": "default"},
            timeout=10,
        )

    @classmethod
    def find(cls, home: Path) -> Backend | None:
        from arkor_nb.local.launch import live_server

        info = live_server(home)
        return None if info is None else cls(str(info.url), info.token)

    def job_named(self, name: str) -> dict[str, Any] | None:
        jobs = self.http.get("/v1/jobs").raise_for_status().json()["jobs"]
        matching = [j for j in jobs if j.get("name") == name]
        return matching[-1] if matching else None

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.http.get(f"/v1/jobs/{job_id}", params={"events": "true", "limit": 10_000})
        return response.raise_for_status().json()

    def logged_steps(self, job_id: str) -> int:
        events = self.job(job_id).get("events") or []
        return sum(1 for e in events if e.get("type") == "training.log")


def _points(lab_page: LabPage) -> int:
    """Points on the plotted training-loss curve (plotly simplifies paths: read its data)."""
    return int(
        lab_page.page.evaluate(
            """sel => {
                const gd = document.querySelector(sel);
                if (!gd || !gd.data || !gd.data.length) return 0;
                return Math.max(...gd.data.map(t => (t.x ? t.x.length : 0)));
            }""",
            PLOT,
        )
    )


def _sampled_reply(text: str, *, step: int) -> str | None:
    """The reply shown for ``step`` in the checkpoints view (None while it is still sampling)."""
    for match in re.finditer(rf"\bstep {step}\b(.*?)(?=\bstep \d+\b|\Z)", text, re.DOTALL):
        if "→" in match.group(1):
            reply = match.group(1).split("→", 1)[1].strip()
            return None if not reply or reply.startswith("sampling") else reply
    return None


def test_cancel_button_stops_a_real_local_run(
    lab_page: LabPage, lab_root: Path, backend_home: Path
) -> None:
    write_notebook(lab_root / "panel.ipynb", _notebook_cells())
    lab_page.open("panel.ipynb", workspace="panel")
    lab_page.run_all()
    page = lab_page.page

    # The cell returns at once (ak.live streams in the background): the kernel goes idle.
    page.locator(".arkor-panel").first.wait_for(state="visible", timeout=120_000)
    lab_page.wait_kernel_idle(timeout=120)

    backend = poll(
        lambda: Backend.find(backend_home), timeout=120, what="the local backend the kernel started"
    )
    job = poll(lambda: backend.job_named(RUN_NAME), timeout=60, what=f"job {RUN_NAME!r}")
    job_id = job["id"]

    # Backend first: the run really trains; then the browser: the curve shows it.
    poll(
        lambda: backend.logged_steps(job_id) >= MIN_POINTS,
        timeout=180,
        interval=1,
        what=f"{MIN_POINTS} training.log events from {job_id}",
    )
    poll(lambda: _points(lab_page) >= MIN_POINTS, timeout=120, interval=0.5, what="plotted points")
    # A checkpoint was saved and sampled: the model's reply is shown beside the step.
    poll(
        lambda: _sampled_reply(page.locator(".arkor-checkpoints").first.inner_text(), step=10),
        timeout=120,
        interval=1,
        what="the checkpoint at step 10 and its sampled reply in the panel",
    )
    assert backend.job(job_id)["job"]["status"] == "running"
    status = page.locator(".arkor-status").first
    assert job_id in status.inner_text()
    assert "running" in status.inner_text().lower()

    running_shot = lab_page.screenshot(ARTIFACTS / "panel-running.png", ".arkor-panel")
    lab_page.screenshot(ARTIFACTS / "lab-running.png")
    if os.environ.get("ARKOR_NB_UPDATE_DOCS_SCREENSHOT") == "1":
        # Refresh the README's screenshot on request only, so a test run never
        # dirties the checkout.
        shutil.copyfile(running_shot, DOCS_SCREENSHOT)

    toggle = page.locator(".arkor-remote-toggle input[type=checkbox]").first
    assert toggle.is_checked(), "the 'also cancel on the backend' toggle must default to on"
    button = page.locator(".arkor-cancel").first
    assert button.inner_text().strip() == "Cancel"
    button.click()

    # The backend ends the job `cancelled` (the worker stops after one more step) ...
    final = poll(
        lambda: (
            (j := backend.job(job_id)["job"])["status"] in {"cancelled", "completed", "failed"}
            and j
        ),
        timeout=90,
        interval=0.5,
        what=f"{job_id} to reach a terminal status",
    )
    assert final["status"] == "cancelled", final
    events = backend.job(job_id).get("events") or []
    assert events[-1]["type"] == "training.cancelled"
    assert backend.logged_steps(job_id) < 5000

    # ... and the panel's final DOM state says so.
    poll(
        lambda: button.inner_text().strip() == "Cancelled",
        timeout=60,
        what="the Cancel button to show the final status",
    )
    assert button.is_disabled()
    page.locator(".arkor-status .arkor-badge-cancelled").first.wait_for(timeout=30_000)
    assert "cancel" in page.locator(".arkor-status .arkor-cancel-state").first.inner_text().lower()
    log_text = page.locator(".arkor-log").first.inner_text()
    assert re.search(r"\bstep \d+\b.*\bloss\b", log_text), log_text[-500:]
    # The live chart gave way to the static snapshot curve.
    page.locator(".arkor-panel .arkor-chart svg.arkor-svg").first.wait_for(timeout=60_000)
    (ARTIFACTS / "panel-cancelled.txt").write_text(page.locator(".arkor-panel").first.inner_text())
    lab_page.screenshot(ARTIFACTS / "panel-cancelled.png", ".arkor-panel")
    lab_page.screenshot(ARTIFACTS / "lab-cancelled.png")
