"""A real local server in a subprocess, plus a raw SSE frame reader, for server tests.

The server runs as ``python -m arkor_nb.local.server.serve`` on 127.0.0.1 so tests
can SIGKILL it and restart it on the same home (``tests/reliability/harness.py``
builds its fault-injection helpers on the same class). Frames are parsed by
hand (not by the SDK client) so tests see exactly what is on the wire.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from arkor_nb.core.home import read_runtime
from arkor_nb.local.server.jobs import child_env

SYNTHETIC = "arkor-nb/synthetic"


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition",
             every: float = 0.02) -> Any:
    """Poll ``predicate`` until truthy (returned) or fail after ``timeout`` seconds naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


class ServerProcess:
    """``python -m arkor_nb.local.server.serve`` for one home: start, SIGKILL, restart, stop.

    The one local-server harness of the test suite. ``port=0`` lets the server
    pick a port (read back from its runtime file); a fixed ``port`` brings a
    restarted server back where its clients expect it. ``step_s`` paces the
    synthetic worker and ``ping_s`` the SSE keepalive (None: the server's
    defaults). The server's output goes to ``log_path`` (inside the home unless
    given: a test that fills the home's disk keeps its log elsewhere).
    """

    def __init__(self, home: Path, *, step_s: float | None = 0.01, ping_s: float | None = 0.3,
                 extra_env: dict[str, str] | None = None, args: tuple[str, ...] = (),
                 port: int = 0, preexec: Callable[[], None] | None = None,
                 cwd: Path | None = None, log_path: Path | None = None) -> None:
        self.home = home
        self.env = child_env()
        self.env["ARKOR_NB_HOME"] = str(home)
        if step_s is not None:
            self.env["ARKOR_NB_SYNTHETIC_STEP_S"] = str(step_s)
        self.env.update(extra_env or {})
        ping = ["--ping-interval", str(ping_s)] if ping_s is not None else []
        self.args = ["--port", str(port), "--home", str(home), *ping, *args]
        self.preexec = preexec
        self.cwd = cwd
        self.log_path = log_path or home / "test-server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{port}" if port else ""
        self.token = ""
        self.starts = 0

    def start(self, timeout: float = 60.0) -> ServerProcess:
        self.home.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "arkor_nb.local.server.serve", *self.args],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=self.env,
            preexec_fn=self.preexec, cwd=self.cwd,
        )
        log.close()
        self.starts += 1
        proc = self.proc

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"server exited with {proc.returncode}: {self.log_text()[-3000:]}")
            runtime = read_runtime(self.home)
            if not runtime or runtime.get("pid") != proc.pid:
                return False
            try:
                ok = httpx.get(runtime["url"] + "/healthz", timeout=1, trust_env=False)
            except httpx.HTTPError:
                return False
            if ok.status_code != 200:
                return False
            self.url = runtime["url"]
            token_file = runtime.get("tokenFile")  # None when started with --token
            if token_file:
                self.token = Path(token_file).read_text().strip()
            return True

        wait_for(ready, timeout, what=f"the server to answer /healthz (log: {self.log_path})")
        return self

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def client(self, url: str | None = None, **kw: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}", **kw.pop("headers", {})}
        return httpx.Client(base_url=url or self.url, headers=headers, trust_env=False,
                            timeout=kw.pop("timeout", 30.0), **kw)

    def kill(self) -> None:
        """SIGKILL: no cleanup, no flush, exactly like a crash or the OOM killer."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


# ----------------------------------------------------------------- SSE frames


@dataclass
class Frame:
    id: str | None
    event: str | None
    data: str
    retry: int | None

    def json(self) -> Any:
        return json.loads(self.data)


def iter_frames(response: httpx.Response) -> Iterator[Frame]:
    """Frames exactly as sent (fields per frame, no carried-over id)."""
    fields: dict[str, list[str]] = {}
    for line in response.iter_lines():
        if line == "":
            if fields:
                retry = fields.get("retry")
                yield Frame(
                    id=fields["id"][-1] if "id" in fields else None,
                    event=fields["event"][-1] if "event" in fields else None,
                    data="\n".join(fields.get("data", [])),
                    retry=int(retry[-1]) if retry else None,
                )
            fields = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        fields.setdefault(name, []).append(value[1:] if value.startswith(" ") else value)


def read_stream(client: httpx.Client, job_id: str, *, last_event_id: str | None = None,
                until: Callable[[Frame], bool] | None = None) -> list[Frame]:
    """All frames of a job's stream (to ``event: end``, or until ``until(frame)``)."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
    frames: list[Frame] = []
    with client.stream("GET", f"/v1/jobs/{job_id}/events/stream", headers=headers) as response:
        assert response.status_code == 200, response.read()
        for frame in iter_frames(response):
            frames.append(frame)
            if frame.event == "end" or (until is not None and until(frame)):
                break
    return frames


def data_frames(frames: list[Frame]) -> list[Frame]:
    return [f for f in frames if f.event is None]


def create_job(client: httpx.Client, **config: Any) -> dict[str, Any]:
    body = {"name": config.pop("name", "t"), "config": {"model": SYNTHETIC, **config}}
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()["job"]
    return job


def job_status(client: httpx.Client, job_id: str) -> str:
    status: str = client.get(f"/v1/jobs/{job_id}").json()["job"]["status"]
    return status


def wait_status(client: httpx.Client, job_id: str, *statuses: str,
                timeout: float = 20.0) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()["job"]
        return job if job["status"] in statuses else None

    result: dict[str, Any] = wait_for(done, timeout, what=f"job {job_id} to be {statuses}")
    return result


def all_events(client: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = client.get(
        f"/v1/jobs/{job_id}", params={"events": "true", "limit": 10000}
    ).json()["events"]
    return events


def worker_pid(home: Path, job_id: str) -> int:
    path = home / "jobs" / job_id / "worker.pid"
    wait_for(path.exists, what="worker.pid")
    return int(path.read_text())


def pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (an orphan's reaper may be slow)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")
