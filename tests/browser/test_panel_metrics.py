"""The judged-run panel in real JupyterLab + Chromium: the task-metric chart beside the loss
chart, the best checkpoint in the header, eval examples with the wrong field marked, the
health row, hover in percent, and the saved snapshot keeping the metric chart.

Two drivers: a real local run of ``arkor-nb/tiny`` with ``task_eval`` (the worker's own
evals; the panel must carry exactly the backend's metrics), and the loopback cloud fake
(tests/sdk/fake_cloud.py), which streams chosen ``checkpoint.eval`` events and health logs
over real HTTP/SSE, paced, and holds the stream open (a gate) for the screenshot, so the
values, the wrong field and the hover text are known in advance.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.backend import Backend
from tests.browser.conftest import ARTIFACTS, REPO
from tests.browser.lab import LabPage, poll, write_notebook
from tests.panel.test_judging import judged_events
from tests.sdk.fake_cloud import SUPPORTED_MODEL, End, Event, FakeCloud, Gate, Stall

pytestmark = pytest.mark.slow


@pytest.fixture()
def cloud() -> Iterator[FakeCloud]:
    with FakeCloud() as server:
        yield server


def test_panel_shows_the_metric_chart_examples_and_health(
    lab_page: LabPage, lab_root: Path, cloud: FakeCloud
) -> None:
    events = judged_events()
    cloud.default_events = events
    gate = threading.Event()
    actions: list = []
    for i, data in enumerate(events, 1):
        if data["type"] == "training.completed":
            actions.append(Gate(gate))  # the run stays live until the screenshot
        actions += [Event(str(i), data), Stall(0.05)]
    cloud.script(*actions, End())
    write_notebook(lab_root / "judged.ipynb", [
        "import arkor_nb as ak\n"
        f"backend = ak.CloudBackend(base_url={cloud.url!r}, token={cloud.token!r}, "
        f"org_slug={cloud.org!r}, project_slug={cloud.project!r})\n"
        f'trainer = ak.create_trainer(name="judged", model={SUPPORTED_MODEL!r}, max_steps=30, '
        "backend=backend)\n"
        "run = ak.live(trainer)",
        "await run\nrun.status",
    ])
    lab_page.open("judged.ipynb", workspace="judged")
    lab_page.run_all()
    page = lab_page.page
    panel = page.locator(".arkor-panel").first
    panel.wait_for(state="visible", timeout=120_000)
    metric = panel.locator(".arkor-metric-chart svg.arkor-metric-svg").first
    poll(lambda: metric.locator('[data-name="fields/all"]').count()
         and metric.locator('[data-name="fields/all"]').get_attribute("data-xs") == "10,20,30",
         timeout=120, what="three evaluated checkpoints on the metric chart")
    assert metric.locator('[data-name="fields/all"]').get_attribute("data-ys") == "40,90,70"
    assert metric.locator(".arkor-best-point").text_content() == "best 90% @ 20"

    # beside the loss chart, not under it (1400 px viewport)
    loss_box = panel.locator(".arkor-chart .arkor-live-chart").first.bounding_box()
    metric_box = metric.bounding_box()
    assert loss_box and metric_box and metric_box["x"] > loss_box["x"] + loss_box["width"] - 5
    assert abs(metric_box["y"] - loss_box["y"]) < 40

    assert panel.locator(".arkor-status .arkor-best").inner_text() == "best fields/all 90% @ step 20"
    health = panel.locator(".arkor-status .arkor-health").inner_text()
    assert re.search(r"grad norm 1\.8\s+tokens/s 930\s+peak RSS 760 MB\s+GPU memory 1\.37 GB", health)
    examples = panel.locator(".arkor-checkpoints .arkor-examples")
    assert "at step 30" in examples.inner_text()
    assert examples.locator(".arkor-field-wrong").all_inner_texts() == ["priority: low"]

    # hover on the metric chart reads values in percent
    box = metric.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] * 0.52, box["y"] + box["height"] * 0.5)
    tip = panel.locator(".arkor-metric-chart .arkor-tip").first
    tip.wait_for(state="visible", timeout=10_000)
    assert tip.inner_text().startswith("step 20 · fields/all 90%"), tip.inner_text()
    lab_page.screenshot(ARTIFACTS / "judged-panel.png", ".arkor-panel")

    gate.set()  # the run completes: the snapshot keeps the metric chart, no JavaScript needed
    cell = page.locator(".jp-Notebook .jp-CodeCell").first
    snapshot = cell.locator(".arkor-snapshot").first
    snapshot.wait_for(timeout=60_000)
    assert snapshot.locator(".arkor-metric-chart svg.arkor-metric-svg polyline").count() >= 2
    assert "best fields/all" in snapshot.inner_text()
    lab_page.wait_kernel_idle(timeout=60)
    lab_page.screenshot(ARTIFACTS / "judged-snapshot.png", ".arkor-snapshot")


@pytest.mark.timeout(600)  # a real tiny-model run with evals at three checkpoints on 2 shared cores
def test_a_real_local_run_with_task_eval_draws_the_metric_chart(
    lab_page: LabPage, lab_root: Path, backend_home: Path
) -> None:
    """The real worker evaluates held-out tickets at each checkpoint (arkor-nb/tiny, task_eval):
    the panel's metric chart carries exactly the metrics of the backend's checkpoint.eval events.
    The run is long; once two checkpoints are judged the test presses Cancel, and the snapshot
    that replaces the panel keeps the metric chart."""
    data = REPO / "data"
    write_notebook(lab_root / "judged-local.ipynb", [
        "import arkor_nb as ak\n"
        'trainer = ak.create_trainer(name="judged-local", model="arkor-nb/tiny",\n'
        f'    dataset={{"type": "file", "path": {str(data / "triage.jsonl")!r}}},\n'
        "    max_steps=2000, save_steps=10, logging_steps=1, batch_size=4,\n"
        f'    task_eval=ak.TaskEval(data={str(data / "triage_eval.jsonl")!r}, scorers=["exact", "fields"],\n'
        "                          max_tokens=24, limit=6))\n"
        "run = ak.live(trainer)",
        "await run\nrun.status",
    ])
    lab_page.open("judged-local.ipynb", workspace="judged-local")
    lab_page.run_all()
    page = lab_page.page
    backend = poll(lambda: Backend.find(backend_home), timeout=180, what="the kernel's local backend")
    job = poll(lambda: backend.job_named("judged-local"), timeout=120, what="the judged-local job")
    panel = page.locator(".arkor-panel").first
    metric = panel.locator(".arkor-metric-chart svg.arkor-metric-svg").first
    line = metric.locator('[data-name="fields/all"]')
    poll(lambda: line.count() and line.get_attribute("data-xs").split(",")[:2] == ["10", "20"],
         timeout=420, interval=0.5, what="the first two checkpoints' metrics on the panel")
    xs = line.get_attribute("data-xs").split(",")
    ys = [float(y) for y in line.get_attribute("data-ys").split(",")][:len(xs)]
    evals = {e["step"]: e for e in backend.events(job["id"]) if e.get("type") == "checkpoint.eval"}
    assert all(evals[int(x)]["n"] == 6 for x in xs)
    assert ys == [float(f"{100 * evals[int(x)]['metrics']['fields/all']:.4g}") for x in xs]
    assert panel.locator(".arkor-status .arkor-best").inner_text().startswith("best fields/all ")
    health = panel.locator(".arkor-status .arkor-health").inner_text()
    assert "grad norm" in health and "tokens/s" in health and "peak RSS" in health
    assert panel.locator(".arkor-checkpoints .arkor-examples .arkor-example").count() >= 1
    lab_page.screenshot(ARTIFACTS / "judged-local-panel.png", ".arkor-panel")

    panel.locator(".arkor-cancel").first.click()
    cell = page.locator(".jp-Notebook .jp-CodeCell").first
    snapshot = cell.locator(".arkor-snapshot").first
    snapshot.wait_for(timeout=120_000)
    poll(lambda: backend.status(job["id"]) == "cancelled", timeout=60, what="the job cancelled")
    final = [e for e in backend.events(job["id"]) if e.get("type") == "checkpoint.eval"]
    drawn = snapshot.locator(".arkor-metric-chart svg.arkor-metric-svg polyline").count()
    assert drawn == min(len(final[-1]["metrics"]), 7)  # one line per metric (METRIC_LINES = 7)
    lab_page.screenshot(ARTIFACTS / "judged-local-snapshot.png", ".arkor-snapshot")
