"""The jobs table's Open/Cancel buttons and ak.playground, clicked against the real local server.

Widgets are built in-process (no kernel needed for their models); a click
runs the real handler, which only starts a thread; the test joins it and
reads the widgets' traits, as the front end would receive them.
"""

from __future__ import annotations

import html

import httpx

import arkor_nb as ak
from arkor_nb.notebook.jobs_table import JobsWidget
from arkor_nb.notebook.panel import LivePanel
from tests.local.server_harness import (
    ServerProcess,
    create_job,
    wait_status,
)


def backend(server: ServerProcess) -> ak.LocalBackend:
    return ak.LocalBackend(url=server.url, token=server.token)


def join(threads: list) -> None:
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive()


def test_cancel_button_cancels_a_running_job(server: ServerProcess, client: httpx.Client) -> None:
    done = create_job(client, name="done", maxSteps=2)
    wait_status(client, done["id"], "completed")
    running = create_job(client, name="long", maxSteps=100_000)
    wait_status(client, running["id"], "running")
    table = JobsWidget(ak.jobs(limit=2, backend=backend(server)), backend(server))
    assert done["id"] not in table.cancel_buttons  # nothing to cancel on a finished job
    assert not table.cancel_buttons[running["id"]].disabled
    table.cancel_buttons[running["id"]].click()
    join(table.threads)
    # The handler's thread followed the job until the backend confirmed.
    assert client.get(f"/v1/jobs/{running['id']}").json()["job"]["status"] == "cancelled"
    assert table.cancel_buttons[running["id"]].disabled
    assert table.cancel_buttons[running["id"]].description == "Cancelled"
    assert "cancelled</span>" in table.badges[running["id"]].value
    assert "asked the backend to cancel" in table.status.value


def test_open_button_attaches_a_live_panel(server: ServerProcess, client: httpx.Client) -> None:
    job = create_job(client, name="open-me", maxSteps=5)
    wait_status(client, job["id"], "completed")
    table = JobsWidget(ak.jobs(limit=1, backend=backend(server)), backend(server))
    table.open_buttons[job["id"]].click()
    join(table.threads)
    assert len(table.panel_area.children) == 1
    assert isinstance(table.panel_area.children[0], LivePanel)
    result = table.runs[job["id"]].result(timeout=60)
    assert result.job.status == "completed" and table.runs[job["id"]].state.step == 5


def test_playground_shows_base_and_fine_tuned_side_by_side(server: ServerProcess,
                                                           client: httpx.Client) -> None:
    job = create_job(client, name="pg", maxSteps=4, saveSteps=2)
    wait_status(client, job["id"], "completed")
    pg = ak.playground(job["id"], backend=backend(server))
    assert pg.base_model == "arkor-nb/synthetic"
    pg.build()
    pg.prompt.value = "Where is my parcel?"
    pg.send.click()
    assert pg.thread is not None
    pg.thread.join(60)
    base = ak.chat(model="arkor-nb/synthetic", messages="Where is my parcel?", max_tokens=128,
                   temperature=0, backend=backend(server))
    tuned = ak.chat(job["id"], "Where is my parcel?", max_tokens=128, temperature=0,
                    backend=backend(server))
    assert pg.replies == [base, tuned] and base != tuned
    assert all(html.escape(r) in o.value for o, r in zip(pg.outputs, (base, tuned), strict=True))
    assert not pg.send.disabled and pg.status.value == ""
    step2 = ak.playground(job["id"], step=2, backend=backend(server)).ask("Where is my parcel?")
    assert step2[0] == base and step2[1] != tuned
