"""Run the real local server as a child process the tests can kill, restart and measure.

Each server gets its own ``ARKOR_NB_HOME`` (token, SQLite store, job dirs) and
a fixed loopback port, so a restart after ``SIGKILL`` comes back where the
client expects it. Readiness is polled on ``/healthz`` with a deadline.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

import arkor_nb as ak


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(cond: Callable[[], Any], timeout: float, what: str, every: float = 0.02) -> Any:
    """Poll ``cond`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def rss_kb(pid: int) -> int:
    """Resident set size of a process, from /proc (no extra dependency)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def tree_rss_kb(pid: int) -> int:
    """RSS of a process and its live children (the server and its workers)."""
    total = rss_kb(pid)
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        for child in children.read_text().split():
            try:
                total += tree_rss_kb(int(child))
            except (FileNotFoundError, AssertionError):
                pass
    return total


class LocalServer:
    """``with LocalServer(tmp_path / "home", env={...}) as srv: srv.url, srv.token``."""

    def __init__(
        self,
        home: Path,
        *,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
        args: tuple[str, ...] = (),
        preexec: Callable[[], None] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.home = home
        self.cwd = cwd
        self.preexec = preexec
        self.port = port or free_port()
        self.args = args
        self.extra_env = dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = home.parent / f"{home.name}-server.log"
        self.starts = 0

    # ----------------------------------------------------------- lifecycle

    def start(self, timeout: float = 60.0) -> LocalServer:
        self.home.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "ARKOR_NB_HOME": str(self.home), **self.extra_env}
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "arkor_nb.local.serve",
                "--port",
                str(self.port),
                "--home",
                str(self.home),
                *self.args,
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=self.preexec,
            cwd=self.cwd,
        )
        log.close()
        self.starts += 1
        wait_for(
            self._healthy, timeout, f"server on port {self.port} (log: {self.log_text()[-2000:]})"
        )
        return self

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(
                f"server exited with {self.proc.returncode}: {self.log_text()[-3000:]}"
            )
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

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

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ accessors

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def token(self) -> str:
        return (self.home / "token").read_text().strip()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def client(self, url: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=url or self.url,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30.0,
        )

    def backend(self, url: str | None = None) -> ak.LocalBackend:
        return ak.LocalBackend(url=url or self.url, token=self.token)

    # ---------------------------------------------------------------- API

    def create_job(self, config: dict[str, Any], name: str = "rel") -> dict[str, Any]:
        with self.client() as c:
            r = c.post("/v1/jobs", json={"name": name, "config": config}, params=SCOPE)
            assert r.status_code in (200, 201), r.text
            return r.json()["job"]

    def job(self, job_id: str) -> dict[str, Any]:
        with self.client() as c:
            r = c.get(f"/v1/jobs/{job_id}", params=SCOPE)
            assert r.status_code == 200, r.text
            return r.json()

    def stored_events(self, job_id: str) -> list[dict[str, Any]]:
        """The durable log, read through the stream with nothing skipped."""
        out: list[dict[str, Any]] = []
        with (
            self.client() as c,
            c.stream("GET", f"/v1/jobs/{job_id}/events/stream", params=SCOPE) as r,
        ):
            assert r.status_code == 200, r.read()
            ev_id, data, name = None, [], None
            for line in r.iter_lines():
                if line == "":
                    if name == "end":
                        break
                    if data:
                        out.append({"id": ev_id, **json.loads("\n".join(data))})
                    data, name = [], None
                elif line.startswith("id:"):
                    ev_id = line[3:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip(" "))
                elif line.startswith("event:"):
                    name = line[6:].strip()
        return out


SCOPE = {"orgSlug": "local", "projectSlug": "default"}

SYNTHETIC = "arkor-nb/synthetic"


def synthetic_config(steps: int, **extra: Any) -> dict[str, Any]:
    return {"model": SYNTHETIC, "maxSteps": steps, "loggingSteps": 1, **extra}


def report(test: str, **figures: Any) -> None:
    """Print a test's measured figures; also append them as JSON to
    ``$ARKOR_NB_RELIABILITY_REPORT`` when set (docs/reliability.md is built from it)."""
    line = json.dumps({"test": test, **figures}, default=str)
    print(f"\nFIGURES {line}")
    target = os.environ.get("ARKOR_NB_RELIABILITY_REPORT")
    if target:
        with open(target, "a") as fh:
            fh.write(line + "\n")


class EventLog:
    """A trainer listener that keeps what a user would see, and counts trouble."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.notices: list[ak.StreamNotice] = []
        self.ids: list[int] = []

    def __call__(self, item: Any) -> None:
        if isinstance(item, ak.StreamNotice):
            self.notices.append(item)
            return
        if isinstance(item, ak.CheckpointContext):
            return  # the CheckpointSaved event before it is what was received
        self.events.append(item)
        self.ids.append(int(item.event_id))

    @property
    def duplicates(self) -> int:
        return len(self.ids) - len(set(self.ids))

    @property
    def in_order(self) -> bool:
        return all(a < b for a, b in zip(self.ids, self.ids[1:], strict=False))

    def steps(self) -> list[int]:
        return [e.step for e in self.events if e.type == "training.log"]

    def reconnects(self) -> int:
        return sum(1 for n in self.notices if n.kind == "reconnecting")
