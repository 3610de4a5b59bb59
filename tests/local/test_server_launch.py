"""Finding or starting the server (ensure_server) and `arkor-nb serve`'s refusals."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import httpx

from arkor_nb.local.jobs import child_env
from arkor_nb.local.launch import ensure_server, home_dir, read_runtime
from tests.local.server_harness import ServerProcess, pid_alive, wait_for


def test_home_dir_follows_env() -> None:
    assert home_dir() == Path(os.environ["ARKOR_NB_HOME"])


def test_ensure_server_starts_once_and_reuses(tmp_path: Path) -> None:
    home = tmp_path / "home"
    info = ensure_server(home)
    try:
        assert info.url.startswith("http://127.0.0.1:")
        assert info.token not in repr(info)
        assert stat.S_IMODE((home / "token").stat().st_mode) == 0o600
        runtime = read_runtime(home)
        assert runtime is not None and runtime["pid"] == info.pid
        assert stat.S_IMODE((home / "server.json").stat().st_mode) == 0o600
        assert ensure_server(home).pid == info.pid  # reused, not respawned
        ok = httpx.get(info.url + "/v1/jobs", headers={"Authorization": f"Bearer {info.token}"},
                       trust_env=False)
        assert ok.status_code == 200
        # A dead server is replaced, with the same token.
        os.kill(info.pid, signal.SIGKILL)
        wait_for(lambda: not pid_alive(info.pid), what="server death")
        again = ensure_server(home)
        assert again.pid != info.pid and again.token == info.token
        os.kill(again.pid, signal.SIGTERM)
        wait_for(lambda: not pid_alive(again.pid), what="graceful stop")
        assert not (home / "server.json").exists(), "a clean stop removes the runtime file"
    finally:
        for pid in (info.pid,):
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)


def _serve(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "arkor_nb.local.serve", *args],
                          capture_output=True, text=True, timeout=timeout, env=child_env())


def test_serve_refuses_non_loopback_without_flag_and_token(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    refused = _serve("--host", "0.0.0.0", "--home", home)
    assert refused.returncode == 2 and "--allow-remote" in refused.stderr
    no_token = _serve("--host", "0.0.0.0", "--allow-remote", "--home", home)
    assert no_token.returncode == 2 and "--token" in no_token.stderr
    short = _serve("--host", "0.0.0.0", "--allow-remote", "--token", "abc", "--home", home)
    assert short.returncode == 2 and "16 characters" in short.stderr


def test_one_server_per_home(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "home").start()
    try:
        second = _serve("--port", "0", "--home", str(srv.home))
        assert second.returncode == 1 and "already serves" in second.stderr
        assert srv.proc is not None and srv.proc.poll() is None
    finally:
        srv.stop()
