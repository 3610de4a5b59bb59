"""Find or start the local server for a data directory (``ARKOR_NB_HOME``).

``ensure_server`` is what ``LocalBackend`` calls: it reuses the server named
in ``<home>/server.json`` if that server answers ``/healthz`` with the same
instance id, and otherwise spawns ``python -m arkor_nb.local.serve`` detached
(it outlives the notebook kernel that started it) and waits until it answers.
A lock file serialises concurrent callers so one home never gets two servers.

``serve_main`` is ``arkor-nb serve``: the same server in the foreground.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import secrets
import socket
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

from arkor_nb import __version__
from arkor_nb.local.jobs import child_env

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


def _prepare_home(home: Path) -> Path:
    home = Path(home).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    return home


@contextmanager
def _flock(path: Path, *, blocking: bool = True) -> Iterator[IO[str] | None]:
    """An exclusive ``flock`` on ``path``; yields None if non-blocking and taken."""
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


def _write_runtime(home: Path, data: dict[str, Any]) -> None:
    tmp = home / f".{RUNTIME_FILE}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle)
    os.replace(tmp, home / RUNTIME_FILE)


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
    home = _prepare_home(home or home_dir())
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
    home = _prepare_home(home or home_dir())
    with _flock(home / "launch.lock"):
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


# ------------------------------------------------------------------ serving


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host.strip("[]"), port))
    sock.set_inheritable(False)
    return sock


def run_server(*, home: Path, host: str = "127.0.0.1", port: int = 0,
               allow_remote: bool = False, token: str | None = None,
               max_running: int = 1, ping_s: float | None = None,
               idle_timeout_s: float = 0.0) -> int:
    """Serve ``home`` until SIGINT/SIGTERM. Returns a process exit code."""
    import uvicorn

    from arkor_nb.local.app import create_app
    from arkor_nb.local.security import (
        TOKEN_FILE,
        SecurityPolicy,
        is_loopback_host,
        load_or_create_token,
    )

    home = _prepare_home(home)
    if not is_loopback_host(host) and not (allow_remote and token):
        print(f"arkor-nb serve: refusing to listen on non-loopback address {host!r}: pass "
              "--allow-remote and an explicit --token (or ARKOR_NB_TOKEN) to expose the "
              "trainer to the network", file=sys.stderr)
        return 2
    with _flock(home / "server.lock", blocking=False) as lock:
        if lock is None:
            runtime = read_runtime(home) or {}
            print(f"arkor-nb serve: another server already serves {home} "
                  f"(pid {runtime.get('pid')}, {runtime.get('url')}); stop it first",
                  file=sys.stderr)
            return 1
        secret = token or load_or_create_token(home)
        sock = _bind(host, port)
        bound_port = sock.getsockname()[1]
        instance_id = secrets.token_hex(8)
        policy = SecurityPolicy(token=secret, port=bound_port,
                                allow_remote=allow_remote and not is_loopback_host(host))

        def forget_runtime() -> None:
            runtime = read_runtime(home)
            if runtime is not None and runtime.get("instanceId") == instance_id:
                (home / RUNTIME_FILE).unlink(missing_ok=True)

        servers: list[Any] = []

        def stop_when_idle() -> None:
            print(f"arkor-nb local server: idle for {idle_timeout_s:g} s, exiting",
                  file=sys.stderr, flush=True)
            for srv in servers:
                srv.should_exit = True

        app = create_app(home=home, policy=policy, ping_s=ping_s, max_running=max_running,
                         instance_id=instance_id, on_shutdown=forget_runtime,
                         idle_timeout_s=idle_timeout_s, on_idle=stop_when_idle)
        url_host = "127.0.0.1" if not is_loopback_host(host) else host
        if ":" in url_host and not url_host.startswith("["):
            url_host = f"[{url_host}]"
        url = f"http://{url_host}:{bound_port}"
        _write_runtime(home, {
            "url": url, "pid": os.getpid(), "instanceId": instance_id, "home": str(home),
            "tokenFile": None if token else str(home / TOKEN_FILE),
            "version": __version__, "startedAt": time.time(),
        })
        print(f"arkor-nb local server {__version__} on {url} (home {home}; "
              f"token in {'the given --token' if token else home / TOKEN_FILE})",
              file=sys.stderr, flush=True)
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                                timeout_graceful_shutdown=3)
        server = uvicorn.Server(config)
        servers.append(server)
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C after its clean shutdown
            print("arkor-nb local server stopped", file=sys.stderr)
            return 130
        finally:
            forget_runtime()
        return 0


def serve_main(argv: list[str] | None = None) -> int:
    """``arkor-nb serve``: run the local server in the foreground."""
    parser = argparse.ArgumentParser(
        prog="arkor-nb serve",
        description="Run the arkor-nb local training server in the foreground.",
    )
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1; others need --allow-remote)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("ARKOR_NB_PORT", "0")),
                        help="port (default 0 = any free port; see <home>/server.json)")
    parser.add_argument("--home", type=Path, default=None,
                        help="data directory (default $ARKOR_NB_HOME or the user data dir)")
    parser.add_argument("--allow-remote", action="store_true",
                        help="allow a non-loopback --host (requires an explicit --token)")
    parser.add_argument("--token", default=None,
                        help="bearer token to require (default: <home>/token, or $ARKOR_NB_TOKEN)")
    parser.add_argument("--max-jobs", type=int, default=int(os.environ.get("ARKOR_NB_MAX_JOBS", "1")),
                        help="jobs that train at the same time (default 1; others queue)")
    parser.add_argument("--ping-interval", type=float, default=None,
                        help="SSE keepalive interval in seconds (default 15)")
    parser.add_argument("--idle-timeout", type=float,
                        default=float(os.environ.get("ARKOR_NB_IDLE_TIMEOUT_S", "0")),
                        help="exit after this many seconds with no request and no job "
                             "(default 0 = never; env ARKOR_NB_IDLE_TIMEOUT_S)")
    args = parser.parse_args(argv)
    token = args.token or os.environ.get("ARKOR_NB_TOKEN") or None
    if token is not None and len(token) < 16:
        parser.error("--token must be at least 16 characters")
    if args.max_jobs < 1:
        parser.error("--max-jobs must be at least 1")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    home = args.home or home_dir()
    try:
        return run_server(home=home, host=args.host, port=args.port,
                          allow_remote=args.allow_remote, token=token,
                          max_running=args.max_jobs, ping_s=args.ping_interval,
                          idle_timeout_s=max(0.0, args.idle_timeout))
    except OSError as err:  # read-only or full data dir, port in use: one clear line
        if err.filename is not None:
            print(f"arkor-nb serve: cannot use the data directory {home}: {err.strerror} "
                  f"({err.filename}); make it writable and free some space, or pass --home "
                  "(or set ARKOR_NB_HOME) to use another directory", file=sys.stderr)
        else:
            print(f"arkor-nb serve: cannot listen on {args.host}:{args.port}: "
                  f"{err.strerror or err}; pick another --port", file=sys.stderr)
        return 1
