"""The job event stream: frame hygiene, keepalives, end, and Last-Event-ID replay."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import httpx

from arkor_nb.core.events import TrainingCompleted, TrainingLog, TrainingStarted
from arkor_nb.local.server.sse import Hub, job_event_frames
from arkor_nb.local.server.store import Store
from tests.local.server_harness import (
    ServerProcess,
    all_events,
    create_job,
    data_frames,
    iter_frames,
    read_stream,
)


def test_frames_have_ids_retry_and_end(client: httpx.Client) -> None:
    job = create_job(client, maxSteps=8, saveSteps=4, evalSteps=4)
    with client.stream("GET", f"/v1/jobs/{job['id']}/events/stream") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-accel-buffering"] == "no"
        assert "content-encoding" not in response.headers
        assert "no-cache" in response.headers["cache-control"]
        frames = []
        for frame in iter_frames(response):
            frames.append(frame)
            if frame.event == "end":
                break
    assert frames[0].retry is not None and frames[0].retry > 0
    assert all(f.retry is None for f in frames[1:])
    assert all(f.id is not None for f in frames), "every frame carries id:"
    data = data_frames(frames)
    ids = [int(f.id or 0) for f in data]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    types = [f.json()["type"] for f in data]
    assert types[0] == "training.started" and types[-1] == "training.completed"
    assert types.count("checkpoint.saved") == 2
    assert sum(1 for f in data if "evalLoss" in f.json()) == 2
    assert frames[-1].event == "end" and frames[-1].id == data[-1].id
    assert frames[-1].json() == {"jobId": job["id"], "status": "completed"}
    assert all(f.json()["jobId"] == job["id"] for f in data)
    # The stream equals the durable log.
    assert [f.json() for f in data] == [
        {k: v for k, v in e.items() if k != "eventId"} for e in all_events(client, job["id"])
    ]


def test_keepalive_pings_while_queued_then_live_events(client: httpx.Client) -> None:
    # A slow job in front keeps the second one queued, so its stream only pings.
    blocker = create_job(client, maxSteps=100000)
    queued = create_job(client, maxSteps=3)
    assert queued["status"] == "queued"
    with client.stream("GET", f"/v1/jobs/{queued['id']}/events/stream") as response:
        frames = []
        for frame in iter_frames(response):
            frames.append(frame)
            if len(frames) == 2:
                client.post(f"/v1/jobs/{blocker['id']}/cancel")
            if frame.event == "end":
                break
    assert [f.event for f in frames[:2]] == ["ping", "ping"]
    assert frames[0].id == "0" and frames[0].retry is not None
    types = [f.json()["type"] for f in data_frames(frames)]
    assert types[0] == "training.started" and types[-1] == "training.completed"
    assert frames[-1].event == "end"


def test_last_event_id_replays_exactly_the_rest(client: httpx.Client) -> None:
    job = create_job(client, maxSteps=30, saveSteps=10)
    full = data_frames(read_stream(client, job["id"]))
    ids = [f.id for f in full]
    for cut in (0, 1, len(full) // 2, len(full) - 2):
        rest = data_frames(read_stream(client, job["id"], last_event_id=ids[cut]))
        assert [f.id for f in rest] == ids[cut + 1:]
        assert [f.data for f in rest] == [f.data for f in full[cut + 1:]]
    # Resuming after the terminal event: no data, just end.
    tail = read_stream(client, job["id"], last_event_id=ids[-1])
    assert [f.event for f in tail] == ["end"]
    # Query-string form for clients that cannot set headers.
    with client.stream("GET", f"/v1/jobs/{job['id']}/events/stream",
                       params={"lastEventId": ids[-3]}) as response:
        got = [f.id for f in iter_frames(response) if f.event is None]
    assert got == ids[-2:]


def test_resume_mid_run_sees_each_event_once(server: ServerProcess) -> None:
    with server.client() as c:
        job = create_job(c, maxSteps=60)
        first = read_stream(c, job["id"], until=lambda f: f.event is None and
                            f.json().get("step") == 10)
        assert first[-1].json()["step"] == 10
        second = read_stream(c, job["id"], last_event_id=data_frames(first)[-1].id)
        seen = [f.id for f in data_frames(first) + data_frames(second)]
        assert len(seen) == len(set(seen))
        assert seen == [e["eventId"] for e in all_events(c, job["id"])]
        assert data_frames(second)[-1].json()["type"] == "training.completed"


def test_many_concurrent_subscribers_get_every_event(server: ServerProcess) -> None:
    with server.client() as c:
        job = create_job(c, maxSteps=50)
    results: list[list[str | None]] = []
    lock = threading.Lock()

    def subscribe() -> None:
        with server.client() as sub:
            ids = [f.id for f in data_frames(read_stream(sub, job["id"]))]
        with lock:
            results.append(ids)

    threads = [threading.Thread(target=subscribe) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    with server.client() as c:
        expected = [e["eventId"] for e in all_events(c, job["id"])]
    assert len(results) == 20
    assert all(ids == expected for ids in results)


def test_a_writer_committing_between_two_reads_does_not_cut_the_stream(tmp_path: Path) -> None:
    """The job's last events and its terminal status commit in one transaction.

    A subscriber that finds nothing new and then sees the job terminal must
    still send those events: here the worker's reader thread commits them at
    the worst moment, right after the subscriber's empty page. (CI saw 1 of
    20 concurrent subscribers end without the terminal event this way.)
    """

    hub = Hub()

    class WriterAfterEmptyPage(Store):
        armed = True

        def read_events(self, job_id, after=0, limit=500):  # type: ignore[no-untyped-def]
            rows = super().read_events(job_id, after, limit)
            if not rows and self.armed:
                self.armed = False
                done = threading.Thread(target=self.append, args=(job_id, [
                    TrainingLog(step=2, loss=0.5), TrainingCompleted()]))
                done.start()
                done.join()
                hub.notify(job_id)
            return rows

    store = WriterAfterEmptyPage(tmp_path / "arkor.db")
    store.create_job("job_x", "t", {})
    assert store.mark_running("job_x")
    store.append("job_x", [TrainingStarted(), TrainingLog(step=1, loss=1.0)])

    async def collect() -> list[str]:
        hub.bind(asyncio.get_running_loop())
        return [part async for part in job_event_frames(store, hub, "job_x", ping_s=5)]
    text = "".join(asyncio.run(collect()))
    assert not store.armed, "the writer ran"
    types = [json.loads(line[6:])["type"] for line in text.splitlines()
             if line.startswith("data: ") and '"type"' in line]
    assert types == ["training.started", "training.log", "training.log", "training.completed"]
    assert text.rstrip().endswith('"status":"completed"}')
