"""Find or start the local server for a data directory (the SDK's half).

``LocalBackend`` calls :func:`ensure_server` (reuse the server named in
``<home>/server.json`` if it answers ``/healthz`` with the same instance id,
else spawn ``python -m arkor_nb.local.server.serve`` detached, so it outlives the
kernel that started it, and wait until it answers) or :func:`live_server`
(find one, start nothing). A lock file serialises concurrent callers so one
home never gets two servers. This module needs no ``[local]`` extra: the
server itself (``arkor_nb.local``) runs in the child process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from arkor_nb.core.home import (
    SERVER_LOG,
    child_env,
    flock,
    home_dir,
    pid_alive,
    prepare_home,
    read_runtime,
)

START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class RuntimeInfo:
    """Where a live server listens. ``token`` is kept out of ``repr`` on purpose."""

    url: str
    token: str = field(repr=False)
    pid: int


def _healthy(url: str, instance_id: str | None, timeout: float = 2.0) -> bool:
    try:
        response = httpx.get(url.rstrip("/") + "/healthz", timeout=timeout, trust_env=False)
    except httpx.HTTPError:
        return False
    if response.status_code != 200:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    return instance_id is None or body.get("instanceId") == instance_id


def _info_from_runtime(home: Path, runtime: dict[str, Any]) -> RuntimeInfo:
    token_file = runtime.get("tokenFile")
    if not token_file:
        token = os.environ.get("ARKOR_NB_TOKEN", "")
        if not token:
            raise RuntimeError(
                f"the server at {runtime.get('url')} was started with an explicit token; "
                "set ARKOR_NB_TOKEN or pass LocalBackend(url=..., token=...)"
            )
    else:
        token = Path(token_file).read_text().strip()
    return RuntimeInfo(url=str(runtime["url"]), token=token, pid=int(runtime["pid"]))


def live_server(home: Path | None = None) -> RuntimeInfo | None:
    """The server recorded in the runtime file, if it is alive and really that server."""
    home = prepare_home(home or home_dir())
    runtime = read_runtime(home)
    if runtime is None or "url" not in runtime:
        return None
    if not _healthy(str(runtime["url"]), runtime.get("instanceId")):
        return None
    return _info_from_runtime(home, runtime)


def _log_tail(path: Path, limit: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return ""


def _winner(home: Path, loser: int, deadline: float) -> RuntimeInfo | None:
    """The server that took ``home`` while ours was starting (``arkor-nb serve``
    run at the same moment), once it answers; None if ``server.json`` names no
    other live process. Ours exits only after the winner's runtime file is written."""
    while time.monotonic() < deadline:
        runtime = read_runtime(home)
        pid = runtime.get("pid") if runtime else None
        if runtime is None or not isinstance(pid, int) or pid == loser or not pid_alive(pid):
            return None
        if _healthy(str(runtime.get("url")), runtime.get("instanceId")):
            return _info_from_runtime(home, runtime)
        time.sleep(0.05)
    return None


def ensure_server(home: Path | None = None, *, timeout: float = START_TIMEOUT_S) -> RuntimeInfo:
    """Reuse the home's live server or start one (detached); wait for ``/healthz``."""
    home = prepare_home(home or home_dir())
    with flock(home / "launch.lock"):
        info = live_server(home)
        if info is not None:
            return info
        log_path = home / SERVER_LOG
        with open(log_path, "ab") as log_file:
            proc = subprocess.Popen(
                [sys.executable, "-m", "arkor_nb.local.server.serve", "--port", "0",
                 "--home", str(home)],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                start_new_session=True,
                close_fds=True,
                env=child_env(),
            )
        # Reap it whenever it exits, so a dead server never lingers as a zombie.
        threading.Thread(target=proc.wait, daemon=True).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                winner = _winner(home, proc.pid, deadline)
                if winner is not None:  # another server took the home as ours started: use it
                    return winner
                raise RuntimeError(
                    f"the arkor-nb local server exited with code {proc.returncode} while "
                    f"starting; see {log_path}:\n{_log_tail(log_path)}"
                )
            runtime = read_runtime(home)
            if runtime is not None and runtime.get("pid") == proc.pid:
                if _healthy(str(runtime["url"]), runtime.get("instanceId")):
                    return _info_from_runtime(home, runtime)
            time.sleep(0.05)
        proc.kill()
        raise RuntimeError(
            f"the arkor-nb local server did not answer /healthz within {timeout:.0f} s; "
            f"see {log_path}:\n{_log_tail(log_path)}"
        )


