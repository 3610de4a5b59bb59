"""ak.jobs / job / events / download / chat and the paged routes against the real local server.

Synthetic jobs (no model) keep this fast; the tiny-model run with peft lives
in test_training_e2e.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

import arkor_nb as ak
from arkor_nb.core.errors import JobNotFoundError
from arkor_nb.core.events import CheckpointSaved, TrainingCompleted, TrainingLog, TrainingStarted
from arkor_nb.sdk.jobs import cancel_job
from tests.local.server_harness import (
    ServerProcess,
    all_events,
    create_job,
    wait_status,
)


def backend(server: ServerProcess) -> ak.LocalBackend:
    return ak.LocalBackend(url=server.url, token=server.token)


@pytest.fixture(scope="module")
def finished(server: ServerProcess) -> list[str]:
    """Three completed synthetic jobs (oldest first), 6 steps, checkpoints at 2, 4 and 6."""
    ids = []
    with server.client() as client:
        for i in range(3):
            job = create_job(client, name=f"run-{i}", maxSteps=6, saveSteps=2)
            wait_status(client, job["id"], "completed")
            ids.append(job["id"])
    return ids


def test_jobs_lists_newest_first_with_progress(server: ServerProcess, finished: list[str]) -> None:
    listed = ak.jobs(backend=backend(server))
    ours = [j for j in listed if j.id in finished]
    assert [j.id for j in ours] == finished[::-1]
    first = ours[-1]
    assert first.status == "completed" and first.name == "run-0"
    assert first.model_extra["step"] == 6 and isinstance(first.model_extra["bestLoss"], float)
    assert "6/6" in str(listed) and "run-0" in str(listed)
    assert all(j.status == "completed" for j in ak.jobs(status="completed", backend=backend(server)))
    assert [j.id for j in ak.jobs(limit=2, backend=backend(server))][:2] == [finished[2], finished[1]]


def test_list_route_pages_with_a_cursor(client: httpx.Client, finished: list[str]) -> None:
    page = client.get("/v1/jobs", params={"limit": 2}).json()
    assert len(page["jobs"]) == 2 and page["nextBefore"] == page["jobs"][1]["id"]
    rest = client.get("/v1/jobs", params={"limit": 1000, "before": page["nextBefore"]}).json()
    ids = [j["id"] for j in page["jobs"] + rest["jobs"]]
    assert len(ids) == len(set(ids)) and set(finished) <= set(ids)
    assert rest["nextBefore"] is None
    unknown = client.get("/v1/jobs", params={"before": "job_nope"})
    assert unknown.status_code == 404 and "job_nope" in unknown.json()["error"]
    bad = client.get("/v1/jobs", params={"status": "done"})
    assert bad.status_code == 400 and bad.json()["field"] == "status"


def test_new_routes_keep_auth_and_host_checks(server: ServerProcess, finished: list[str]) -> None:
    with httpx.Client(base_url=server.url, trust_env=False) as anon:
        assert anon.get("/v1/jobs", params={"before": finished[0]}).status_code == 401
        assert anon.get(f"/v1/jobs/{finished[0]}/artifacts/adapter").status_code == 401
    with server.client(headers={"Host": "evil.example"}) as rebinding:
        assert rebinding.get("/v1/jobs").status_code in (400, 403, 421)
    with server.client(headers={"Origin": "https://evil.example"}) as cross:
        assert cross.get(f"/v1/jobs/{finished[0]}").status_code == 403


def test_job_and_events_match_the_stored_log(server: ServerProcess, client: httpx.Client,
                                             finished: list[str]) -> None:
    job = ak.job(finished[0], backend=backend(server))
    assert job.status == "completed" and job.config["maxSteps"] == 6
    events = ak.events(finished[0], backend=backend(server))
    raw = all_events(client, finished[0])
    assert [e.type for e in events] == [r["type"] for r in raw]
    assert [e.event_id for e in events] == [r["eventId"] for r in raw]
    assert isinstance(events[0], TrainingStarted) and isinstance(events[-1], TrainingCompleted)
    assert [e.step for e in events if isinstance(e, CheckpointSaved)] == [2, 4, 6]
    assert [e.step for e in events if isinstance(e, TrainingLog)] == [1, 2, 3, 4, 5, 6]


def test_job_config_secrets_are_redacted(server: ServerProcess, client: httpx.Client) -> None:
    job = create_job(client, maxSteps=1, datasetSource={
        "type": "blob", "url": "http://127.0.0.1:9/data.jsonl", "token": "hf_do_not_show_me"})
    assert "hf_do_not_show_me" not in json.dumps(job)
    wait_status(client, job["id"], "completed", "failed")
    assert "hf_do_not_show_me" not in client.get(f"/v1/jobs/{job['id']}").text
    assert "hf_do_not_show_me" not in client.get("/v1/jobs").text
    shown = ak.job(job["id"], backend=backend(server))
    assert shown.config["datasetSource"]["token"] == "***"


def test_unknown_job_names_the_id(server: ServerProcess) -> None:
    for call in (lambda: ak.job("job_0000dead", backend=backend(server)),
                 lambda: ak.events("job_0000dead", backend=backend(server)),
                 lambda: ak.download("job_0000dead", backend=backend(server)),
                 lambda: ak.chat("job_0000dead", "hi", backend=backend(server)),
                 lambda: cancel_job("job_0000dead", backend=backend(server))):
        with pytest.raises(JobNotFoundError) as err:
            call()
        assert "job_0000dead" in str(err.value) and f"the local backend at {server.url}" in str(err.value)


def test_download_final_and_checkpoint(server: ServerProcess, finished: list[str],
                                       tmp_path: Path) -> None:
    final = ak.download(finished[0], to=tmp_path / "final", backend=backend(server))
    assert json.loads((final / "adapter_config.json").read_text())["step"] == 6
    ckpt = ak.download(finished[0], to=tmp_path / "s4", step=4, backend=backend(server))
    assert json.loads((ckpt / "adapter_config.json").read_text())["step"] == 4
    with pytest.raises(ak.ConfigError) as err:
        ak.download(finished[0], to=tmp_path / "s5", step=5, backend=backend(server))
    assert "saved checkpoints: 2, 4, 6" in str(err.value)


def test_chat_final_checkpoint_base_and_stream(server: ServerProcess, finished: list[str]) -> None:
    final = ak.chat(finished[0], "hello", backend=backend(server))
    step2 = ak.chat(finished[0], "hello", step=2, backend=backend(server))
    base = ak.chat(model="arkor-nb/synthetic", messages="hello", backend=backend(server))
    assert final and step2 and base and len({final, step2, base}) == 3
    pieces = list(ak.chat(finished[0], "hello", stream=True, backend=backend(server)))
    assert len(pieces) > 1 and "".join(pieces) == final
    with pytest.raises(ak.ConfigError) as err:
        ak.chat(finished[0], "hello", step=5, backend=backend(server))
    assert err.value.field == "step" and "5" in str(err.value)


def test_cancel_a_running_job(server: ServerProcess, client: httpx.Client) -> None:
    job = create_job(client, maxSteps=100_000)
    wait_status(client, job["id"], "running")
    assert cancel_job(job["id"], backend=backend(server)).id == job["id"]
    assert wait_status(client, job["id"], "cancelled")["status"] == "cancelled"
    events = ak.events(job["id"], backend=backend(server))
    assert events[-1].type == "training.cancelled"


def test_an_older_database_gets_step_and_best_loss_backfilled(tmp_path: Path) -> None:
    """A home written before the summary columns existed lists its jobs with them filled in."""
    import sqlite3

    from arkor_nb.local.server.store import Store

    db = tmp_path / "arkor.db"
    conn = sqlite3.connect(db)
    conn.executescript("""
        CREATE TABLE jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL, status TEXT NOT NULL, config TEXT NOT NULL,
            created_at TEXT NOT NULL, started_at TEXT, completed_at TEXT, error TEXT);
        CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL,
            type TEXT NOT NULL, data TEXT NOT NULL);
        INSERT INTO jobs (id, name, status, config, created_at)
            VALUES ('job_old', 'old', 'completed', '{}', '2026-01-01T00:00:00Z'),
                   ('job_empty', 'empty', 'queued', '{}', '2026-01-01T00:00:00Z');
        INSERT INTO events (job_id, type, data) VALUES
            ('job_old', 'training.log', '{"type":"training.log","step":1,"loss":2.5}'),
            ('job_old', 'training.log', '{"type":"training.log","step":2,"loss":1.25}'),
            ('job_old', 'training.log', '{"type":"training.log","step":3,"loss":1.5}'),
            ('job_old', 'checkpoint.saved', '{"type":"checkpoint.saved","step":3}');
    """)
    conn.close()
    store = Store(db)
    jobs = {j["id"]: j for j in store.list_jobs()}
    assert (jobs["job_old"]["step"], jobs["job_old"]["bestLoss"]) == (3, 1.25)
    assert (jobs["job_empty"]["step"], jobs["job_empty"]["bestLoss"]) == (None, None)
    store.append("job_old", [])  # terminal: nothing appended, nothing changes
    store.close()
    assert Store(db).get_job("job_old")["step"] == 3  # reopening does not redo or undo it
