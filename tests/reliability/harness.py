"""Fault-injection helpers on the suite's one server harness (``tests/local/server_harness``).

``LocalServer`` is that ``ServerProcess`` on a fixed loopback port, so a
restart after ``SIGKILL`` comes back where the client expects it; plus RSS
from ``/proc``, the figures report and a listener that counts trouble.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import arkor_nb as ak
from tests.local.server_harness import ServerProcess, wait_for

__all__ = ["LocalServer", "ServerProcess", "wait_for"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


class LocalServer(ServerProcess):
    """``with LocalServer(tmp_path / "home", env={...}) as srv: srv.url, srv.token``.

    The suite's one server harness (``ServerProcess``) on a fixed free port, so a
    restart after ``SIGKILL`` comes back where the client expects it, with the
    server's own pacing and keepalive defaults, its log next to the home, and
    API helpers that go through the public routes.
    """

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
        super().__init__(home, step_s=None, ping_s=None, extra_env=dict(env or {}), args=args,
                         port=port or free_port(), preexec=preexec, cwd=cwd,
                         log_path=home.parent / f"{home.name}-server.log")

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


def wait_in_thread(trainer: ak.Trainer) -> tuple[threading.Thread, dict[str, Any]]:
    """Run ``trainer.wait()`` on a thread, keeping its result or error and when it ended,
    so a test can kill and restart processes while the wait is in progress."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["result"] = trainer.wait()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            out["error"] = exc
        out["ended"] = time.monotonic()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def with_tiny_model(home: Path) -> Path:
    """Put the built-in tiny model (built once per test session) into a server's home,
    so a server on that home chats with ``arkor-nb/tiny`` without rebuilding it."""
    import shutil

    from arkor_nb.local.training.models import ensure_tiny_model, tiny_model_dir
    from tests.local.training_helpers import home as session_home

    target = tiny_model_dir(home)
    if not target.exists():
        shutil.copytree(ensure_tiny_model(session_home()), target)
    return home

