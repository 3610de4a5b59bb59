"""Processes dying under a live run: the server (SIGKILL + restart) and the worker.

Nothing the server acknowledged may be lost, the client must come back on its
own, and an interrupted job must end with a status and a reason a user can read.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

import arkor_nb as ak
from tests.reliability.harness import (
    EventLog,
    LocalServer,
    report,
    synthetic_config,
    tree_rss_kb,
    wait_for,
    wait_in_thread,
)

FAST_RECONNECT = ak.ReconnectPolicy(initial_delay=0.05, max_delay=0.5)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _worker_pid(srv: LocalServer, job_id: str) -> int:
    path = srv.home / "jobs" / job_id / "worker.pid"
    return int(wait_for(lambda: path.exists() and path.read_text().strip(), 30, "worker.pid"))


def test_server_sigkill_and_restart_loses_nothing(tmp_path: Path) -> None:
    env = {"ARKOR_NB_SYNTHETIC_STEP_S": "0.005"}
    srv = LocalServer(tmp_path / "home", env=env).start()
    try:
        seen = EventLog()
        trainer = ak.create_trainer(
            name="killed-server",
            model="arkor-nb/synthetic",
            max_steps=100_000,
            logging_steps=1,
            backend=srv.backend(),
            reconnect=FAST_RECONNECT,
        )
        trainer.subscribe(seen)
        job_id = trainer.start()
        thread, out = wait_in_thread(trainer)
        wait_for(lambda: len(seen.events) >= 300, 60, "300 events before the kill")
        worker = _worker_pid(srv, job_id)
        srv.kill()
        killed_at = len(seen.events)
        # The orphaned worker notices (stdin EOF) and stops; it must not linger.
        wait_for(lambda: not _alive(worker), 30, "the orphaned worker to exit")
        srv.start()  # same home, same port
        thread.join(timeout=60)
        assert not thread.is_alive(), "wait() did not finish after the restart"
        assert "error" not in out, out.get("error")
        result: ak.TrainingResult = out["result"]
        stored = srv.stored_events(job_id)
        job = srv.job(job_id)["job"]
    finally:
        srv.stop()
    stored_ids = [int(e["id"]) for e in stored]
    report(
        "server_sigkill_restart",
        events_before_kill=killed_at,
        events_stored=len(stored),
        events_delivered=len(seen.events),
        duplicates=seen.duplicates,
        lost=len(set(stored_ids) - set(seen.ids)),
        reconnects=seen.reconnects(),
        final_status=job["status"],
        error=job["error"],
    )
    assert seen.ids == stored_ids, "delivered == the durable log, in order"
    assert seen.duplicates == 0
    steps = seen.steps()
    assert steps == list(range(1, len(steps) + 1)), "no step missing before the kill"
    assert len(steps) >= killed_at - 1  # every log seen before the kill (the other is training.started)
    assert result.job.status == "failed" == job["status"]
    last = seen.events[-1]
    assert last.type == "training.failed"
    assert "server stopped" in last.error and "interrupted" in last.error
    assert last.step == steps[-1]


def test_worker_killed_fails_with_cause_and_server_keeps_serving(tmp_path: Path) -> None:
    env = {"ARKOR_NB_SYNTHETIC_STEP_S": "0.005"}
    # Two training slots: a neighbour job runs right through the other's crash.
    with LocalServer(tmp_path / "home", env=env, args=("--max-jobs", "2")) as srv:
        seen, neighbour = EventLog(), EventLog()
        doomed = ak.create_trainer(
            name="doomed",
            model="arkor-nb/synthetic",
            max_steps=100_000,
            backend=srv.backend(),
            reconnect=FAST_RECONNECT,
        )
        other = ak.create_trainer(
            name="neighbour",
            model="arkor-nb/synthetic",
            max_steps=600,
            backend=srv.backend(),
            reconnect=FAST_RECONNECT,
        )
        doomed.subscribe(seen)
        other.subscribe(neighbour)
        job_id = doomed.start()
        other.start()
        thread, out = wait_in_thread(doomed)
        other_thread, other_out = wait_in_thread(other)
        wait_for(lambda: len(seen.events) >= 50 and len(neighbour.events) >= 50, 60, "both running")
        os.kill(_worker_pid(srv, job_id), signal.SIGKILL)
        thread.join(timeout=60)
        other_thread.join(timeout=60)
        assert not thread.is_alive() and "error" not in out, out
        assert not other_thread.is_alive() and "error" not in other_out, other_out
        result: ak.TrainingResult = out["result"]
        # And new work still runs afterwards.
        after = ak.create_trainer(
            name="after",
            model="arkor-nb/synthetic",
            max_steps=30,
            backend=srv.backend(),
            reconnect=FAST_RECONNECT,
        )
        after.start()
        follow_up = after.wait()
        server_rss = tree_rss_kb(srv.pid)
    assert result.job.status == "failed"
    failed = seen.events[-1]
    assert failed.type == "training.failed"
    assert "SIGKILL" in failed.error and "killed" in failed.error
    assert result.job.error == failed.error
    assert other_out["result"].job.status == "completed"
    assert neighbour.steps() == list(range(1, 601)) and neighbour.duplicates == 0
    assert follow_up.job.status == "completed"
    report(
        "worker_sigkill",
        events_before_kill=len(seen.events) - 1,
        error=failed.error[:120],
        neighbour_events=len(neighbour.events),
        neighbour_status=other_out["result"].job.status,
        follow_up_status=follow_up.job.status,
        server_rss_kb=server_rss,
    )


@pytest.mark.parametrize("jobs,steps", [(20, 25)])
def test_jobs_submitted_at_once_run_in_order_each_with_its_stream(
    tmp_path: Path, jobs: int, steps: int
) -> None:
    env = {"ARKOR_NB_SYNTHETIC_STEP_S": "0.001"}
    with LocalServer(tmp_path / "home", env=env) as srv:
        ids: list[str] = []
        lock = threading.Lock()
        barrier = threading.Barrier(jobs)

        def submit(i: int) -> None:
            barrier.wait()
            job = srv.create_job(synthetic_config(steps), name=f"q{i:02d}")
            with lock:
                ids.append(job["id"])

        threads = [threading.Thread(target=submit, args=(i,)) for i in range(jobs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(ids) == jobs
        # Stream each job from the start with a real trainer (attach).
        logs: dict[str, EventLog] = {}
        results: dict[str, ak.TrainingResult] = {}
        for job_id in ids:
            logs[job_id] = EventLog()
            t = ak.Trainer.attach(job_id, backend=srv.backend(), reconnect=FAST_RECONNECT)
            t.subscribe(logs[job_id])
            results[job_id] = t.wait()
        with srv.client() as c:
            r = c.get("/v1/jobs", params={"orgSlug": "local", "projectSlug": "default"})
        listed = r.json()["jobs"]  # newest first: reversed, the server's queue order
    by_creation = [j for j in reversed(listed) if j["id"] in ids]
    assert len(by_creation) == jobs
    starts = [j["startedAt"] for j in by_creation]
    ends = [j["completedAt"] for j in by_creation]
    assert all(r.job.status == "completed" for r in results.values())
    # One at a time, in submission order: each starts after the previous one ended.
    assert starts == sorted(starts)
    assert all(ends[k] <= starts[k + 1] for k in range(jobs - 1)), list(
        zip(starts, ends, strict=True)
    )
    for job_id, log in logs.items():
        assert {e.job_id for e in log.events} == {job_id}
        assert log.steps() == list(range(1, steps + 1))
        assert log.events[0].type == "training.started"
        assert log.events[-1].type == "training.completed"
        assert log.duplicates == 0 and log.in_order
    report("queue_20_jobs", jobs=jobs, events_per_job=steps + 2, all_complete=True)
