"""Leaks and holes a new user or an adversary finds (issue 11), each against a real server.

Data roots when the server runs in ``/``; a blob dataset's token kept out of
the database, the API, results and logs; bad bytes answered with 4xx; a huge
``.json`` dataset read without holding it; half-sent requests timed out; and
error messages that name the real cause.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

import arkor_nb as ak
from tests.reliability.harness import (
    SCOPE,
    LocalServer,
    report,
    rss_kb,
    synthetic_config,
    wait_for,
)

ROW = {"prompt": "My card was declined at checkout.", "completion": "billing"}


def post_job(srv: LocalServer, body: bytes | dict[str, Any]) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    with srv.client() as c:
        return c.post("/v1/jobs", content=content, params=SCOPE,
                      headers={"content-type": "application/json"})


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    home = tmp_path_factory.mktemp("holes") / "home"
    env = {"ARKOR_NB_SYNTHETIC_STEP_S": "0.001", "ARKOR_NB_HEADER_TIMEOUT_S": "2",
           "ARKOR_NB_BODY_IDLE_S": "2"}
    with LocalServer(home, env=env) as server:
        yield server


# ------------------------------------------------------------ 4: data roots


def test_a_server_started_in_the_filesystem_root_refuses_system_files(tmp_path: Path) -> None:
    target = "/usr/share/distro-info/debian.csv"
    if not Path(target).is_file():  # any system data file with a dataset suffix will do
        target = next(str(p) for p in Path("/usr/share").rglob("*.json") if p.is_file())
    with LocalServer(tmp_path / "home", cwd=Path("/")) as server:
        started = time.perf_counter()
        answers = [post_job(server, {"name": "x", "config": {
            "model": "arkor-nb/tiny", "datasetSource": {"type": "file", "path": path}}})
            for path in (target, target.lstrip("/"))]  # absolute, and relative to cwd "/"
        elapsed = time.perf_counter() - started
        with server.client() as c:
            assert c.get("/v1/jobs", params=SCOPE).json()["jobs"] == []
    for answer in answers:
        assert answer.status_code == 400, answer.text
        body = answer.json()
        assert body["field"] == "datasetSource.path"
        assert "outside the allowed data folders" in body["error"]
        assert "ARKOR_NB_DATA_ROOTS" in body["error"]
        assert "column" not in body["error"]  # the file was never opened, so nothing is echoed
    report("data_roots", refused=target, cwd="/", seconds=round(elapsed, 3),
           error=answers[0].json()["error"][:160])


# --------------------------------------------------------------- 5: secrets


class BlobServer:
    """A loopback file host that wants a bearer token and remembers what it was sent."""

    def __init__(self, token: str, body: bytes) -> None:
        seen: list[str | None] = []
        self.seen = seen

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                seen.append(self.headers.get("Authorization"))
                if self.path.startswith("/missing"):
                    self.send_error(404)
                    return
                if self.headers.get("Authorization") != f"Bearer {token}":
                    self.send_error(401)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _files_under(root: Path) -> Iterator[Path]:
    return (p for p in root.rglob("*") if p.is_file())


def test_a_blob_token_reaches_the_worker_and_nothing_else(tmp_path: Path) -> None:
    token = "blob-secret-" + os.urandom(8).hex()
    rows = b'{"nope": 1}\n'  # the worker fetches it, then refuses the rows: no training needed
    blob = BlobServer(token, rows)
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    home.chmod(0o755)  # an existing, too-open data folder
    (home / "arkor.db").touch(mode=0o644)
    try:
        with LocalServer(home, args=("--max-jobs", "1")) as server:
            assert stat.S_IMODE(home.stat().st_mode) == 0o700
            backend = server.backend()
            trainer = ak.create_trainer(
                name="blob", model="arkor-nb/tiny", backend=backend,
                dataset={"type": "blob", "url": f"{blob.url}/rows.jsonl", "token": token})
            result = trainer.wait()
            assert result.job.status == "failed"
            assert "datasetSource" in (result.job.error or "")
            assert blob.seen == [f"Bearer {token}"]  # the worker had the token
            assert token not in repr(result) and token not in json.dumps(result.job.config)
            missing = ak.create_trainer(
                name="blob404", model="arkor-nb/tiny", backend=backend,
                dataset={"type": "blob", "url": f"{blob.url}/missing.jsonl?sig=abc", "token": token})
            error = missing.wait().job.error or ""
            with server.client() as c:
                listed = c.get("/v1/jobs", params=SCOPE).text
                one = c.get(f"/v1/jobs/{result.job.id}", params={**SCOPE, "events": "true"}).text
            # A job queued with a token when the server dies cannot get it back.
            busy = server.create_job(synthetic_config(100_000))
            wait_for(lambda: server.job(busy["id"])["job"]["status"] == "running", 60, "busy job")
            queued = ak.create_trainer(
                name="queued", model="arkor-nb/tiny", backend=backend,
                dataset={"type": "blob", "url": f"{blob.url}/rows.jsonl", "token": token}).start()
            server.kill()
            server.start()
            after = wait_for(lambda: (j := server.job(queued)["job"])["status"] == "failed" and j,
                             60, "the queued blob job to fail after the restart")
            assert server.job(busy["id"])["job"]["status"] == "failed"
        db_mode = stat.S_IMODE((home / "arkor.db").stat().st_mode)
        leaked = [str(p) for p in _files_under(home) if token.encode() in p.read_bytes()]
        logs = server.log_text()
    finally:
        blob.close()
    assert "datasetSource.url" in error and f"{blob.url}/missing.jsonl" in error
    assert "HTTP 404" in error and "sig=abc" not in error
    assert token not in listed and token not in one and token not in logs
    assert "***" in listed
    assert leaked == []  # not in arkor.db (nor its WAL), worker logs, job dirs, runtime files
    assert db_mode == 0o600
    with sqlite3.connect(home / "arkor.db") as db:
        stored = [row[0] for row in db.execute("SELECT config FROM jobs")]
    assert all(token not in c for c in stored) and any('"***"' in c for c in stored)
    assert "submit the job again" in after["error"] and "token" in after["error"]
    report("secrets", token_in_db=False, token_in_api=False, token_in_logs=False,
           db_mode=oct(db_mode), home_mode="0o700", restart_error=after["error"][:120],
           blob_error=error[:200])


# -------------------------------------------------------------- 6: bad bytes


def test_bad_bytes_get_4xx_never_500(srv: LocalServer, tmp_path: Path) -> None:
    job = srv.create_job(synthetic_config(5, saveSteps=5))
    wait_for(lambda: srv.job(job["id"])["job"]["status"] == "completed", 60, "job")
    with srv.client() as c:
        nul = c.get(f"/v1/jobs/{job['id']}/artifacts/adapter/%00", params=SCOPE)
        nul_job = c.get("/v1/jobs/job%00x", params=SCOPE)
    name = post_job(srv, b'{"name": "bad \\ud800", "config": {"model": "arkor-nb/synthetic"}}')
    path = post_job(srv, b'{"name": "ok", "config": {"model": "arkor-nb/tiny", "datasetSource": '
                         b'{"type": "file", "path": "/tmp/x\\udcff.jsonl"}}}')
    key = post_job(srv, b'{"name": "ok", "config": {"model": "arkor-nb/synthetic", '
                        b'"\\ud800": 1}}')
    answers = {"nul_path": nul, "nul_job": nul_job, "name": name, "path": path, "key": key}
    for what, answer in answers.items():
        assert 400 <= answer.status_code < 500, (what, answer.status_code, answer.text)
        assert "error" in answer.json(), what
    assert name.json()["field"] == "name"
    assert path.json()["field"] == "datasetSource.path"
    assert srv.job(job["id"])["job"]["status"] == "completed"  # still serving
    # The client: a file name that is not UTF-8 (as os.listdir returns it) is a ConfigError.
    odd = os.fsdecode(b"data-\xff.jsonl")
    with pytest.raises(ak.ConfigError) as info:
        ak.create_trainer(name="x", model="arkor-nb/tiny", backend=srv.backend(),
                          dataset={"type": "file", "path": str(tmp_path / odd)})
    assert info.value.field == "dataset.path" and "UTF-8" in str(info.value)
    report("bad_bytes", **{k: v.status_code for k, v in answers.items()},
           client=type(info.value).__name__)


# ------------------------------------------------------------------ 7: memory


def _write_json_array(path: Path, target_bytes: int) -> int:
    """A top-level JSON list of prompt/completion rows, about ``target_bytes`` long."""
    row = json.dumps({**ROW, "completion": "billing " + "x" * 400})
    rows = max(1, target_bytes // (len(row) + 2))
    chunk = ",\n".join([row] * 1000)
    with open(path, "w") as fh:
        fh.write("[\n")
        for i in range(rows // 1000):
            fh.write(("" if i == 0 else ",\n") + chunk)
        fh.write("\n]\n")
    return (rows // 1000) * 1000


def _peak_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_a_huge_json_array_dataset_does_not_blow_up_the_server(srv: LocalServer,
                                                               tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    rows = _write_json_array(big, 150 * 1024 * 1024)
    size_mb = big.stat().st_size / 2**20
    before = rss_kb(srv.pid)
    started = time.perf_counter()
    # evalSteps without eval data is refused only after every row was read and checked,
    # so no worker starts and only the server's own reading is measured.
    answer = post_job(srv, {"name": "big", "config": {
        "model": "arkor-nb/tiny", "evalSteps": 10,
        "datasetSource": {"type": "file", "path": str(big)}}})
    elapsed = time.perf_counter() - started
    peak = _peak_kb(srv.pid)
    assert answer.status_code == 400 and answer.json()["field"] == "evalSteps", answer.text
    assert peak < 300 * 1024, f"server peak RSS {peak / 1024:.0f} MB reading a {size_mb:.0f} MB .json"
    report("big_json", file_mb=round(size_mb), rows=rows, rss_before_mb=round(before / 1024, 1),
           peak_mb=round(peak / 1024, 1), seconds=round(elapsed, 1))


# ------------------------------------------------------- 8: half-sent requests


def test_half_sent_requests_are_closed(srv: LocalServer) -> None:
    """300 connections that stop half way through a request head, one slowloris that
    trickles a byte at a time, one that stalls in its body: all closed within the
    deadline (2 s here, 10 s by default) while the server keeps answering."""
    socks: list[socket.socket] = []
    for _ in range(300):
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
        s.sendall(b"GET /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nX-Half: " % srv.port)
        socks.append(s)
    body = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    body.sendall(b"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: Bearer %s\r\n"
                 b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"na"
                 % (srv.port, srv.token.encode()))
    slow = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    started = time.perf_counter()
    with srv.client() as c:
        assert c.get("/v1/jobs", params=SCOPE).status_code == 200  # not starved
    give_up = started + 20  # far beyond the deadline: a connection still open then never closes
    trickled = 0
    slow.settimeout(0.2)  # one byte per 0.2 s, each wait also watching for the close
    closed_slow = None
    for byte in b"GET /v1/jobs HTTP/1.1\r\nX-Slow: " + b"a" * 200:
        if time.perf_counter() > give_up:
            break
        try:
            slow.sendall(bytes([byte]))
            trickled += 1
            slow.recv(1024)  # the 408 or EOF: the server cut it off
        except TimeoutError:
            continue
        except OSError:
            pass
        closed_slow = time.perf_counter() - started
        break
    closed_at: list[float] = []
    for s in [*socks, body]:
        try:
            while True:
                s.settimeout(max(0.01, give_up - time.perf_counter()))
                if not s.recv(4096):
                    break
        except TimeoutError:
            pass
        except OSError:
            pass
        closed_at.append(time.perf_counter() - started)
        s.close()
    slow.close()
    worst = max(closed_at)
    assert worst < 15, f"a half-sent request stayed open {worst:.1f} s"
    assert closed_slow is not None and closed_slow < 15, "the slowloris was never cut off"
    with srv.client() as c:
        assert c.get("/v1/jobs", params=SCOPE).status_code == 200
    report("half_sent", connections=301, deadline_s=2, last_closed_s=round(worst, 2),
           slowloris_closed_s=round(closed_slow, 2), slowloris_bytes=trickled)


# -------------------------------------------------------- error messages


def test_error_messages_name_the_real_cause(srv: LocalServer, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    backend = srv.backend()
    # A missing file: the message shows the absolute path the client resolved.
    with pytest.raises(ak.ArkorError) as missing:
        ak.create_trainer(name="m", model="arkor-nb/tiny", backend=backend,
                          dataset={"type": "file", "path": "data/missing.jsonl"}).start()
    text = str(missing.value)
    assert str(tmp_path / "data" / "missing.jsonl") in text
    assert "server's working directory" not in text and "os.getcwd()" in text
    # A UTF-8 BOM (as Windows editors write it) is accepted.
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + (json.dumps(ROW) + "\n").encode() * 3)
    job = post_job(srv, {"name": "bom", "config": {"model": "arkor-nb/tiny", "dryRun": True,
                                                   "datasetSource": {"type": "file", "path": str(bom)}}})
    assert job.status_code == 200, job.text
    with srv.client() as c:
        c.post(f"/v1/jobs/{job.json()['job']['id']}/cancel", params=SCOPE)
    # Empty prompts or answers are refused with their line numbers.
    empty = tmp_path / "empty.jsonl"
    lines = [ROW, {**ROW, "completion": ""}, ROW, {**ROW, "prompt": "  "}]
    empty.write_text("".join(json.dumps(r) + "\n" for r in lines))
    refused = post_job(srv, {"name": "e", "config": {"model": "arkor-nb/tiny",
                                                     "datasetSource": {"type": "file", "path": str(empty)}}})
    assert refused.status_code == 400
    assert "line 2" in refused.json()["error"] and "line 4" in refused.json()["error"]
    assert "line 1" not in refused.json()["error"] and "line 3" not in refused.json()["error"]
    # A value the server refuses names the Python keyword as well as the wire key.
    with pytest.raises(ak.ArkorError) as lr:
        ak.create_trainer(name="lr", model="arkor-nb/synthetic", learning_rate=5.0,
                          backend=backend).start()
    assert "learningRate" in str(lr.value) and "learning_rate=" in str(lr.value)
    report("error_messages", missing=text[:160], empty_rows=refused.json()["error"][:160],
           learning_rate=str(lr.value)[:160])
