"""The data directory fails under the server: disk full mid-run, read-only at start.

What must hold: a clear error (status + message naming the cause and the fix),
nothing already recorded is lost or corrupted (SQLite ``integrity_check``), no
job is left claiming to run when nothing runs, and the server recovers once
space is back.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

import arkor_nb as ak
from tests.reliability.harness import (
    SCOPE,
    EventLog,
    LocalServer,
    free_port,
    report,
    synthetic_config,
    wait_for,
)
from tests.reliability.small_disk import small_disk


def _integrity(db: Path) -> str:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def _event_count(db: Path, job_id: str) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return int(
            conn.execute("SELECT COUNT(*) FROM events WHERE job_id=?", (job_id,)).fetchone()[0]
        )


def test_disk_full_mid_run_is_a_clear_error_and_loses_nothing(tmp_path: Path) -> None:
    with small_disk(8) as disk:
        home = disk.root / "home"
        srv = LocalServer(
            home, env={"ARKOR_NB_SYNTHETIC_STEP_S": "0.002"}, preexec=disk.server_preexec()
        )
        srv.log_path = tmp_path / "server.log"
        srv.start()
        try:
            a = srv.create_job(synthetic_config(50), name="before")
            wait_for(lambda: srv.job(a["id"])["job"]["status"] == "completed", 60, "job A")
            a_events = len(srv.stored_events(a["id"]))

            seen = EventLog()
            trainer = ak.create_trainer(
                name="disk-full",
                model="arkor-nb/synthetic",
                max_steps=100_000,
                backend=srv.backend(),
                reconnect=ak.ReconnectPolicy(0.05, 0.5),
            )
            trainer.subscribe(seen)
            b_id = trainer.start()
            out: dict[str, Any] = {}
            thread = threading.Thread(
                target=lambda: out.setdefault("r", trainer.wait()), daemon=True
            )
            thread.start()
            wait_for(lambda: len(seen.events) >= 200, 60, "200 events of job B")
            disk.fill(srv.pid)

            with srv.client() as c:
                # New work is refused with a clear, actionable error...
                r = wait_for(
                    lambda: (
                        (
                            resp := c.post(
                                "/v1/jobs",
                                params=SCOPE,
                                json={"name": "x", "config": synthetic_config(5)},
                            )
                        ).status_code
                        != 200
                        and resp
                    ),
                    30,
                    "a refused POST while the disk is full",
                )
                refused = (r.status_code, r.json())
                # ...while reads keep working.
                assert c.get("/healthz").status_code == 200
                assert c.get(f"/v1/jobs/{a['id']}", params=SCOPE).status_code == 200
            disk.free()
            t_free = time.monotonic()
            job_b = wait_for(
                lambda: (j := srv.job(b_id)["job"])["status"] != "running" and j,
                30,
                "job B to stop claiming 'running' once space is back",
            )
            recover_s = time.monotonic() - t_free
            thread.join(timeout=30)
            assert not thread.is_alive(), "the client's wait() never returned"
            stored_b = srv.stored_events(b_id)
            c_job = srv.create_job(synthetic_config(20), name="after")
            wait_for(lambda: srv.job(c_job["id"])["job"]["status"] == "completed", 60, "job C")
        finally:
            srv.stop()
        integrity = _integrity(home / "arkor.db")
        a_after = _event_count(home / "arkor.db", a["id"])
    report(
        "disk_full_mid_run",
        mechanism=disk.kind,
        refused_status=refused[0],
        refused_error=refused[1].get("error", "")[:100],
        job_b_status=job_b["status"],
        job_b_error=(job_b.get("error") or "")[:100],
        events_b_stored=len(stored_b),
        events_b_delivered=len(seen.events),
        lost=len({int(e["id"]) for e in stored_b} - set(seen.ids)),
        seconds_to_settle_after_free=round(recover_s, 1),
        integrity=integrity,
    )
    assert refused[0] == 507 and refused[1].get("field") == "home"
    assert "free disk space" in refused[1]["error"]
    assert job_b["status"] == "failed"
    assert any(w in (job_b["error"] or "").lower() for w in ("disk", "database", "space")), job_b
    assert out["r"].job.status == "failed"
    assert seen.ids == [int(e["id"]) for e in stored_b]
    assert integrity == "ok"
    assert a_after == a_events


def test_read_only_data_dir_is_refused_clearly_and_left_intact(tmp_path: Path) -> None:
    with small_disk(8) as disk:
        home = disk.root / "home"
        srv = LocalServer(home, preexec=disk.server_preexec())
        srv.log_path = tmp_path / "server.log"
        with srv:
            a = srv.create_job(synthetic_config(30), name="before")
            wait_for(lambda: srv.job(a["id"])["job"]["status"] == "completed", 60, "job A")
            a_events = len(srv.stored_events(a["id"]))
        disk.set_readonly(True)
        try:
            port = free_port()
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "arkor_nb.local.server.serve",
                    "--port",
                    str(port),
                    "--home",
                    str(home),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )

            def settled() -> str | None:
                if proc.poll() is not None:
                    return "exited"
                try:
                    httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                    return "serving"
                except httpx.HTTPError:
                    return None

            outcome = wait_for(settled, 60, "the server to refuse or come up read-only")
            if outcome == "serving":
                token = (home / "token").read_text().strip()
                with httpx.Client(
                    base_url=f"http://127.0.0.1:{port}",
                    headers={"Authorization": f"Bearer {token}"},
                ) as c:
                    post = c.post(
                        "/v1/jobs", params=SCOPE, json={"name": "x", "config": synthetic_config(5)}
                    )
                    get = c.get(f"/v1/jobs/{a['id']}", params=SCOPE)
                proc.terminate()
            output = proc.communicate(timeout=30)[0]
        finally:
            disk.set_readonly(False)
        integrity = _integrity(home / "arkor.db")
        a_after = _event_count(home / "arkor.db", a["id"])
    report(
        "read_only_home",
        mechanism=disk.kind,
        outcome=outcome,
        exit_code=proc.returncode,
        message=output.strip().splitlines()[-1][:160] if output.strip() else "",
        integrity=integrity,
    )
    assert integrity == "ok" and a_after == a_events
    if outcome == "exited":
        assert proc.returncode != 0
        assert str(home) in output and "read-only" in output.lower()
        assert "Traceback" not in output, f"a bare traceback instead of a clear error:\n{output}"
    else:
        assert post.status_code == 507 and get.status_code == 200
