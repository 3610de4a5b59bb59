"""A server killed with SIGKILL mid-run and restarted on the same home loses nothing."""

from __future__ import annotations

from pathlib import Path

from tests.local.server_harness import (
    ServerProcess,
    all_events,
    create_job,
    data_frames,
    pid_alive,
    read_stream,
    wait_for,
    wait_status,
    worker_pid,
)


def test_server_sigkill_mid_run_then_restart(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = ServerProcess(home, step_s=0.05).start()
    try:
        with first.client() as c:
            job = create_job(c, maxSteps=1000, saveSteps=5)
            queued = create_job(c, maxSteps=3)
            seen = read_stream(c, job["id"], until=lambda f: f.event is None and
                               f.json().get("step") == 8)
        wpid = worker_pid(home, job["id"])
        first.kill()
        # The orphaned worker sees EOF on stdin and stops by itself.
        wait_for(lambda: not pid_alive(wpid), 10, what="the orphaned worker to exit")
    finally:
        first.stop()

    second = ServerProcess(home, step_s=0.01).start()
    try:
        with second.client() as c:
            failed = c.get(f"/v1/jobs/{job['id']}").json()["job"]
            assert failed["status"] == "failed"
            assert "server stopped while this job was running" in failed["error"]
            # Resume the stream where the first server cut it: each event exactly once.
            rest = read_stream(c, job["id"], last_event_id=data_frames(seen)[-1].id)
            assert rest[-1].event == "end"
            resumed = data_frames(seen) + data_frames(rest)
            ids = [f.id for f in resumed]
            assert len(ids) == len(set(ids))
            log = all_events(c, job["id"])
            assert ids == [e["eventId"] for e in log]
            assert log[-1]["type"] == "training.failed" and log[-1]["step"] >= 8
            steps = [e["step"] for e in log if e["type"] == "training.log"]
            assert steps == list(range(1, steps[-1] + 1)), "no recorded step was lost"
            assert sum(e["type"] == "checkpoint.saved" for e in log) >= 1
            # The job queued before the crash runs on the new server.
            assert wait_status(c, queued["id"], "completed")["status"] == "completed"
            # A full replay from the start also works after the restart.
            assert [f.id for f in data_frames(read_stream(c, job["id"]))] == ids
    finally:
        second.stop()


def test_graceful_stop_fails_running_jobs_with_the_reason(tmp_path: Path) -> None:
    home = tmp_path / "home"
    srv = ServerProcess(home, step_s=0.05).start()
    try:
        with srv.client() as c:
            job = create_job(c, maxSteps=1000)
            read_stream(c, job["id"], until=lambda f: f.event is None and
                        f.json().get("step") == 3)
        wpid = worker_pid(home, job["id"])
        srv.stop()  # SIGTERM
        wait_for(lambda: not pid_alive(wpid), 10, what="the worker to stop with the server")
        assert not (home / "server.json").exists()
    finally:
        srv.stop()
    again = ServerProcess(home).start()
    try:
        with again.client() as c:
            ended = c.get(f"/v1/jobs/{job['id']}").json()["job"]
            assert ended["status"] == "failed"
            assert "server was shut down while this job was running" in ended["error"]
            log = all_events(c, job["id"])
            assert [e["type"] for e in log].count("training.failed") == 1
            assert not any(e["type"] == "training.cancelled" for e in log)
    finally:
        again.stop()
