"""A damaged ``arkor.db`` (issue 19, point 6): never "ok" and then a 500.

Decision: the server refuses to start. It moves the damaged file (and its
-wal/-shm) aside to ``arkor.db.damaged-<UTC time>``, keeps it, prints one line
naming both files and how to start fresh, and exits 1; the next start begins
with an empty job database. Real server processes on real damaged files.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from arkor_nb.local.server.jobs import child_env
from tests.local.server_harness import create_job, wait_status
from tests.reliability.harness import LocalServer, report


def _damage(db: Path, how: str) -> None:
    if how == "cut":
        with open(db, "r+b") as fh:
            fh.truncate(100)
    else:
        db.write_bytes(os.urandom(8192))


def _serve_once(home: Path) -> subprocess.CompletedProcess[str]:
    """``arkor-nb serve`` on the damaged home; it must exit by itself (it did not, before)."""
    proc = subprocess.Popen([sys.executable, "-m", "arkor_nb", "serve", "--home", str(home),
                             "--port", "0"], env=child_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        err += "\n(still serving after 60 s: it started on the damaged database)"
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.parametrize(("how", "stop"), [("cut", "stop"), ("garbage", "stop"), ("cut", "kill")])
def test_a_damaged_database_is_set_aside_and_named(tmp_path: Path, how: str, stop: str) -> None:
    home = tmp_path / "home"
    db = home / "arkor.db"
    with LocalServer(home, env={"ARKOR_NB_SYNTHETIC_STEP_S": "0"}) as srv, srv.client() as c:
        wait_status(c, create_job(c, maxSteps=30)["id"], "completed")
        with sqlite3.connect(db) as raw:  # the pages so far move from the -wal into the file
            raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        wait_status(c, create_job(c, maxSteps=30)["id"], "completed")
        if stop == "kill":  # the -wal file stays behind, holding only the recent pages
            os.kill(srv.pid, signal.SIGKILL)
            srv.proc.wait(timeout=30)  # type: ignore[union-attr]
    original = db.read_bytes()
    _damage(db, how)
    damaged = db.read_bytes()
    assert damaged != original

    first = _serve_once(home)
    lines = first.stderr.strip().splitlines()
    assert first.returncode == 1, first.stderr
    assert "Traceback" not in first.stderr
    last = lines[-1]
    aside = sorted(home.glob("arkor.db.damaged-*"))
    assert [p for p in aside if not p.name.endswith(("-wal", "-shm"))], list(home.iterdir())
    kept = next(p for p in aside if not p.name.endswith(("-wal", "-shm")))
    assert kept.read_bytes() == damaged  # kept, byte for byte
    assert f"{db} is damaged" in last and str(kept) in last and "Start it again" in last, last
    assert not db.exists() and not (home / "arkor.db-wal").exists()

    # The next start is fresh and fully works.
    with LocalServer(home, env={"ARKOR_NB_SYNTHETIC_STEP_S": "0"}) as srv2, srv2.client() as c:
        assert c.get("/healthz").status_code == 200
        listed = c.get("/v1/jobs", params={"orgSlug": "local", "projectSlug": "default"})
        assert listed.status_code == 200 and listed.json()["jobs"] == []
        job = create_job(c, maxSteps=5)
        assert wait_status(c, job["id"], "completed")
    report("damaged_database", how=how, stop=stop, exit_code=first.returncode,
           stderr_lines=len(lines), message=last[:200])


def test_damage_found_while_serving_is_a_503_naming_the_file(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with LocalServer(home, env={"ARKOR_NB_SYNTHETIC_STEP_S": "0"}) as srv, srv.client() as c:
        for _ in range(3):
            wait_status(c, create_job(c, maxSteps=40)["id"], "completed")
        db = home / "arkor.db"
        with sqlite3.connect(db) as raw:  # put every page into the main file, then ruin them
            raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size = db.stat().st_size
        with open(db, "r+b") as fh:
            fh.seek(4096)
            fh.write(os.urandom(size - 4096))
        answers = [c.get("/v1/jobs", params={"orgSlug": "local", "projectSlug": "default",
                                             "limit": "1000"}),
                   c.post("/v1/jobs", params={"orgSlug": "local", "projectSlug": "default"},
                          json={"name": "x", "config": {"model": "arkor-nb/synthetic",
                                                        "maxSteps": 2}})]
    statuses = [a.status_code for a in answers]
    assert 500 not in statuses and 507 not in statuses, [a.text for a in answers]
    damaged = [a for a in answers if a.status_code == 503]
    assert damaged, [a.text for a in answers]
    for a in damaged:
        assert f"{db} is damaged" in a.json()["error"] and "start it again" in a.json()["error"]
    # Answered and logged by our handler, not re-raised to uvicorn, which would
    # close the keep-alive connection (the POST above was reset 3 times in 4).
    server_log = (home.parent / "home-server.log").read_text()
    assert "the job database is damaged" in server_log
    assert "Exception in ASGI application" not in server_log
    report("damaged_database_while_serving", statuses=statuses)
