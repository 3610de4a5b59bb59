"""Scheduling: the queue, cancel (queued, running, finished) and worker failures."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.local.server_harness import (
    ServerProcess,
    all_events,
    create_job,
    data_frames,
    job_status,
    pid_alive,
    read_stream,
    wait_for,
    wait_status,
    worker_pid,
)


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """50 ms synthetic steps: slow enough to act mid-run, fast enough to finish quickly."""
    srv = ServerProcess(tmp_path_factory.mktemp("home"), step_s=0.05).start()
    yield srv
    srv.stop()


@pytest.fixture()
def client(slow_server: ServerProcess) -> Iterator[httpx.Client]:
    with slow_server.client() as c:
        yield c


def test_second_job_waits_for_the_first(client: httpx.Client) -> None:
    first = create_job(client, maxSteps=10)
    second = create_job(client, maxSteps=3)
    assert first["status"] == "running"
    assert second["status"] == "queued"
    wait_for(lambda: job_status(client, first["id"]) == "running", what="first running")
    assert job_status(client, second["id"]) == "queued"
    done_first = wait_status(client, first["id"], "completed")
    done_second = wait_status(client, second["id"], "completed")
    assert done_second["startedAt"] >= done_first["completedAt"]
    assert all_events(client, second["id"])[0]["type"] == "training.started"


def test_cancel_queued_job_at_once(client: httpx.Client) -> None:
    running = create_job(client, maxSteps=200)
    queued = create_job(client, maxSteps=5)
    response = client.post(f"/v1/jobs/{queued['id']}/cancel")
    assert response.status_code == 200
    assert response.json()["job"]["status"] == "cancelled"
    events = all_events(client, queued["id"])
    assert [e["type"] for e in events] == ["training.cancelled"]
    frames = read_stream(client, queued["id"])
    assert [f.event for f in frames][-1] == "end"
    # Cancelling a terminal job changes nothing and adds no event.
    again = client.post(f"/v1/jobs/{queued['id']}/cancel").json()["job"]
    assert again == response.json()["job"]
    assert len(all_events(client, queued["id"])) == 1
    client.post(f"/v1/jobs/{running['id']}/cancel")
    wait_status(client, running["id"], "cancelled")


def test_cancel_running_job_stops_within_one_step(client: httpx.Client) -> None:
    job = create_job(client, maxSteps=1000)
    frames = read_stream(client, job["id"], until=lambda f: f.event is None and
                         f.json().get("step") == 5)
    response = client.post(f"/v1/jobs/{job['id']}/cancel")
    assert response.status_code == 200
    assert response.json()["job"]["status"] in ("running", "cancelled")
    logged_at_cancel = max(e.get("step", 0) for e in all_events(client, job["id"]))
    rest = read_stream(client, job["id"], last_event_id=frames[-1].id)
    final = wait_status(client, job["id"], "cancelled")
    assert final["error"] is None and final["completedAt"]
    last = data_frames(rest)[-1].json()
    assert last["type"] == "training.cancelled"
    assert last["step"] <= logged_at_cancel + 1
    steps = [f.json()["step"] for f in data_frames(rest) if f.json()["type"] == "training.log"]
    assert not steps or max(steps) <= logged_at_cancel + 1
    assert rest[-1].event == "end"


def test_killed_worker_fails_the_job_and_the_server_keeps_serving(
    slow_server: ServerProcess, client: httpx.Client
) -> None:
    job = create_job(client, maxSteps=1000)
    read_stream(client, job["id"], until=lambda f: f.event is None and f.json().get("step") == 3)
    pid = worker_pid(slow_server.home, job["id"])
    os.kill(pid, signal.SIGKILL)
    failed = wait_status(client, job["id"], "failed")
    assert "SIGKILL" in failed["error"]
    last = all_events(client, job["id"])[-1]
    assert last["type"] == "training.failed" and last["error"] == failed["error"]
    assert last["step"] >= 3
    assert not pid_alive(pid)
    after = create_job(client, maxSteps=2)
    assert wait_status(client, after["id"], "completed")["status"] == "completed"


def test_worker_reported_failure(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "home",
                        extra_env={"ARKOR_NB_SYNTHETIC_FAIL_AT_STEP": "3"}).start()
    try:
        with srv.client() as c:
            job = create_job(c, maxSteps=10)
            failed = wait_status(c, job["id"], "failed")
            assert "synthetic failure at step 3" in failed["error"]
            events = all_events(c, job["id"])
            assert events[-1] == {**events[-1], "type": "training.failed", "step": 3}
            assert sum(e["type"] == "training.failed" for e in events) == 1
    finally:
        srv.stop()
