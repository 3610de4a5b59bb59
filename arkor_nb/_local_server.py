"""Find or start the local server for a data directory (the SDK's half).

``LocalBackend`` calls :func:`ensure_server` (reuse the server named in
``<home>/server.json`` if it answers ``/healthz`` with the same instance id,
else spawn ``python -m arkor_nb.local.serve`` detached, so it outlives the
kernel that started it, and wait until it answers) or :func:`live_server`
(find one, start nothing). A lock file serialises concurrent callers so one
home never gets two servers. This module needs no ``[local]`` extra: the
server itself (``arkor_nb.local``) runs in the child process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

RUNTIME_FILE = "server.json"
SERVER_LOG = "server.log"
START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class RuntimeInfo:
    """Where a live server listens. ``token`` is kept out of ``repr`` on purpose."""

    url: str
    token: str = field(repr=False)
    pid: int


def home_dir() -> Path:
    """``$ARKOR_NB_HOME``, else the platform's user data dir for ``arkor-nb``."""
    env = os.environ.get("ARKOR_NB_HOME")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("arkor-nb"))


def prepare_home(home: Path) -> Path:
    home = Path(home).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    return home


@contextmanager
def flock(path: Path, *, blocking: bool = True) -> Iterator[IO[str] | None]:
    """An exclusive ``flock`` on ``path``; yields None if non-blocking and taken."""
    import fcntl  # here, not at import: POSIX only, and cloud users never get here
    handle = open(path, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield None
            return
        yield handle
    finally:
        handle.close()


def read_runtime(home: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((home / RUNTIME_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


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
                [sys.executable, "-m", "arkor_nb.local.serve", "--port", "0",
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


def child_env() -> dict[str, str]:
    """Our environment, plus this package's location on PYTHONPATH.

    Children run ``python -m arkor_nb...`` from another working directory, so
    they must find the same ``arkor_nb`` even when it is not pip-installed.
    """
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in parts:
        env["PYTHONPATH"] = os.pathsep.join([root, *parts])
    return env
