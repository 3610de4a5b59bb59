"""``arkor-nb serve``: the local server's entry point (the server's half).

Finding or starting a server from the SDK lives in ``arkor_nb.sdk.local_server``
(the client's half); the home folder both halves share is ``arkor_nb.core.home``.
``run_server`` writes ``<home>/server.json`` so clients can find it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import secrets
import socket
import sys
import time
from pathlib import Path
from typing import Any

from arkor_nb.core.home import (
    RUNTIME_FILE,
    flock,
    home_dir,
    pid_alive,
    prepare_home,
    read_runtime,
)
from arkor_nb.core.version import __version__
from arkor_nb.local.server.security import (
    TOKEN_FILE,
    SecurityPolicy,
    is_loopback_host,
    load_or_create_token,
)
from arkor_nb.local.server.store import DamagedDatabaseError, set_aside

# ------------------------------------------------------------------ serving


def _write_runtime(home: Path, data: dict[str, Any]) -> None:
    tmp = home / f".{RUNTIME_FILE}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle)
    os.replace(tmp, home / RUNTIME_FILE)


# How long a server that finds the home taken waits for the winner's runtime file
# (a server started at the same moment is still importing), so its message, and
# the SDK that launched it, can name the server that serves the home.
WINNER_WAIT_S = 30.0


def _take_server_lock(held: contextlib.ExitStack, home: Path) -> bool:
    """Hold ``<home>/server.lock`` (True), or say which server holds it (False).

    Two servers started together (``arkor-nb serve`` racing an SDK autostart):
    the loser waits until the winner's ``server.json`` names it, then exits 1
    with its pid and URL; the SDK that started the loser uses the winner. If
    the holder dies before writing it, the lock is taken here instead.
    """
    deadline = time.monotonic() + WINNER_WAIT_S
    while True:
        probe = contextlib.ExitStack()
        if probe.enter_context(flock(home / "server.lock", blocking=False)) is not None:
            held.enter_context(probe)
            return True
        probe.close()
        runtime = read_runtime(home) or {}
        found = pid_alive(runtime.get("pid"))
        if found or time.monotonic() > deadline:
            where = (f"pid {runtime.get('pid')}, {runtime.get('url')}" if found else
                     f"another process holds {home / 'server.lock'}")
            print(f"arkor-nb serve: another server already serves {home} ({where}); "
                  "stop it first, or use it (the SDK finds it through server.json)",
                  file=sys.stderr)
            return False
        time.sleep(0.05)


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
               idle_timeout_s: float = 0.0, tls_cert: Path | None = None,
               tls_key: Path | None = None, insecure_http: bool = False) -> int:
    """Serve ``home`` until SIGINT/SIGTERM. Returns a process exit code.

    A non-loopback ``host`` needs ``allow_remote``, a token, and TLS
    (``tls_cert`` + ``tls_key``, served by uvicorn) unless ``insecure_http``:
    the bearer token and the user's data must not cross a network in clear.
    """
    import uvicorn

    from arkor_nb.local.server.app import create_app  # deferred: Starlette ([local] extra)

    home = prepare_home(home)
    if home.stat().st_mode & 0o077:  # private even if it existed before (it holds the token)
        os.chmod(home, 0o700)
    if not is_loopback_host(host) and not (allow_remote and token):
        print(f"arkor-nb serve: refusing to listen on non-loopback address {host!r}: pass "
              "--allow-remote and an explicit --token (or ARKOR_NB_TOKEN) to expose the "
              "trainer to the network", file=sys.stderr)
        return 2
    refusal = tls_refusal(host, tls_cert, tls_key, insecure_http)
    if refusal:
        print(f"arkor-nb serve: {refusal}", file=sys.stderr)
        return 2
    with contextlib.ExitStack() as held:
        if not _take_server_lock(held, home):
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

        try:
            app = create_app(home=home, policy=policy, ping_s=ping_s, max_running=max_running,
                             instance_id=instance_id, on_shutdown=forget_runtime,
                             idle_timeout_s=idle_timeout_s, on_idle=stop_when_idle)
        except DamagedDatabaseError as err:
            aside = set_aside(err.path)
            print(f"arkor-nb serve: {err}; it was moved to {aside} (nothing deleted) and the "
                  "server did not start. Start it again (`arkor-nb serve`, or any SDK call) to "
                  f"begin with an empty job database, or put a backup at {err.path} first",
                  file=sys.stderr)
            return 1
        url_host = "127.0.0.1" if not is_loopback_host(host) else host
        if ":" in url_host and not url_host.startswith("["):
            url_host = f"[{url_host}]"
        url = f"{'https' if tls_cert else 'http'}://{url_host}:{bound_port}"
        _write_runtime(home, {
            "url": url, "pid": os.getpid(), "instanceId": instance_id, "home": str(home),
            "tokenFile": None if token else str(home / TOKEN_FILE),
            "version": __version__, "startedAt": time.time(),
        })
        print(f"arkor-nb local server {__version__} on {url} (home {home}; "
              f"token in {'the given --token' if token else home / TOKEN_FILE})",
              file=sys.stderr, flush=True)
        # deferred: h11 and uvicorn's protocol classes ([local] extra)
        from arkor_nb.local.server.request_timeouts import TimedH11Protocol

        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                                timeout_graceful_shutdown=3, http=TimedH11Protocol,
                                ssl_certfile=str(tls_cert) if tls_cert else None,
                                ssl_keyfile=str(tls_key) if tls_key else None)
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


def tls_refusal(host: str, cert: Path | None, key: Path | None, insecure_http: bool) -> str | None:
    """Why these TLS options cannot serve ``host`` (one line), or None."""
    if (cert is None) != (key is None):
        return "--tls-cert and --tls-key go together: pass both (PEM files)"
    for flag, path in (("--tls-cert", cert), ("--tls-key", key)):
        if path is not None and not Path(path).is_file():
            return f"{flag} {path}: no such file"
    if cert is None and not insecure_http and not is_loopback_host(host):
        return (f"refusing to serve {host!r} over plain HTTP: the token and your data would "
                "cross the network in clear; pass --tls-cert and --tls-key, or keep the server "
                "on 127.0.0.1 and use an SSH tunnel (ssh -L), or --insecure-http on a network "
                "you trust")
    return None


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
    _scaling_options(parser)
    args = parser.parse_args(argv)
    token = args.token or os.environ.get("ARKOR_NB_TOKEN") or None
    if token is not None and len(token) < 16:
        parser.error("--token must be at least 16 characters")
    if args.max_jobs < 1:
        parser.error("--max-jobs must be at least 1")
    if args.processes != "auto" and (not args.processes.isdigit() or int(args.processes) < 1):
        parser.error("--processes must be a whole number of at least 1, or auto")
    os.environ["ARKOR_NB_PROCESSES"] = args.processes  # the job manager's default
    if args.rendezvous_host:
        os.environ["ARKOR_NB_RENDEZVOUS_HOST"] = args.rendezvous_host
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    home = args.home or home_dir()
    try:
        return run_server(home=home, host=args.host, port=args.port,
                          allow_remote=args.allow_remote, token=token,
                          max_running=args.max_jobs, ping_s=args.ping_interval,
                          idle_timeout_s=max(0.0, args.idle_timeout), tls_cert=args.tls_cert,
                          tls_key=args.tls_key, insecure_http=args.insecure_http)
    except OSError as err:  # read-only or full data dir, port in use: one clear line
        if err.filename is not None:
            print(f"arkor-nb serve: cannot use the data directory {home}: {err.strerror} "
                  f"({err.filename}); make it writable and free some space, or pass --home "
                  "(or set ARKOR_NB_HOME) to use another directory", file=sys.stderr)
        else:
            print(f"arkor-nb serve: cannot listen on {args.host}:{args.port}: "
                  f"{err.strerror or err}; pick another --port", file=sys.stderr)
        return 1


def _scaling_options(parser: argparse.ArgumentParser) -> None:
    """TLS for a remote server, and the processes a job trains on."""
    parser.add_argument("--tls-cert", type=Path, default=None,
                        help="serve HTTPS with this certificate (PEM; needs --tls-key)")
    parser.add_argument("--tls-key", type=Path, default=None, help="the certificate's private key")
    parser.add_argument("--insecure-http", action="store_true",
                        help="allow plain HTTP on a non-loopback --host (token in clear)")
    parser.add_argument("--processes", default=os.environ.get("ARKOR_NB_PROCESSES", "1"),
                        help="processes a job trains on unless its config says (default 1; "
                             "auto = one per GPU; torchrun DDP)")
    parser.add_argument("--rendezvous-host", default=None,
                        help="address other hosts reach this one at for multi-node jobs "
                             "(default 127.0.0.1; env ARKOR_NB_RENDEZVOUS_HOST)")
