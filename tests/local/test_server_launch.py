"""Finding or starting the server (ensure_server) and `arkor-nb serve`'s refusals."""

from __future__ import annotations

import os
import signal
import stat
import threading
from pathlib import Path

import httpx
import pytest

from arkor_nb.core.home import home_dir, read_runtime
from arkor_nb.local.server.launch import serve_main
from arkor_nb.sdk.local_server import ensure_server
from tests.local.server_harness import ServerProcess, create_job, pid_alive, read_stream, wait_for


def test_home_dir_follows_env() -> None:
    assert home_dir() == Path(os.environ["ARKOR_NB_HOME"])


def test_ensure_server_starts_once_and_reuses(tmp_path: Path) -> None:
    home = tmp_path / "home"
    info = ensure_server(home)
    started = [info.pid]
    try:
        assert info.url.startswith("http://127.0.0.1:")
        assert info.token not in repr(info)
        assert stat.S_IMODE((home / "token").stat().st_mode) == 0o600
        assert stat.S_IMODE(home.stat().st_mode) & 0o077 == 0, "data dir is private"
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
        started.append(again.pid)
        assert again.pid != info.pid and again.token == info.token
        os.kill(again.pid, signal.SIGTERM)
        wait_for(lambda: not pid_alive(again.pid), what="graceful stop")
        assert not (home / "server.json").exists(), "a clean stop removes the runtime file"
    finally:
        for pid in started:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_serve_refuses_non_loopback_without_flag_and_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = str(tmp_path / "home")
    assert serve_main(["--host", "0.0.0.0", "--home", home]) == 2
    assert "--allow-remote" in capsys.readouterr().err
    assert serve_main(["--host", "0.0.0.0", "--allow-remote", "--home", home]) == 2
    assert "--token" in capsys.readouterr().err
    with pytest.raises(SystemExit) as short:
        serve_main(["--host", "0.0.0.0", "--allow-remote", "--token", "abc", "--home", home])
    assert short.value.code == 2 and "16 characters" in capsys.readouterr().err
    assert not (tmp_path / "home" / "server.json").exists()


def test_one_server_per_home(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    srv = ServerProcess(tmp_path / "home").start()
    try:
        assert serve_main(["--port", "0", "--home", str(srv.home)]) == 1
        assert "already serves" in capsys.readouterr().err
        assert srv.proc is not None and srv.proc.poll() is None
        assert read_runtime(srv.home)["pid"] == srv.pid  # type: ignore[index]
    finally:
        srv.stop()


def test_idle_timeout_exits_only_when_nothing_happens(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "home", args=("--idle-timeout", "1")).start()
    try:
        with srv.client() as c:
            job = create_job(c, maxSteps=150)  # ~1.5 s of training: longer than the timeout
            frames = read_stream(c, job["id"])
            assert frames[-1].json()["status"] == "completed"
            assert srv.proc is not None and srv.proc.poll() is None, "busy servers stay up"
        assert srv.proc is not None
        wait_for(lambda: srv.proc is not None and srv.proc.poll() is not None, 10,
                 what="the idle server to exit")
        assert srv.proc.returncode == 0
        assert not (srv.home / "server.json").exists()
    finally:
        srv.stop()


def test_concurrent_ensure_server_calls_share_one_server(tmp_path: Path) -> None:
    home = tmp_path / "home"
    pids: list[int] = []
    lock = threading.Lock()

    def call() -> None:
        info = ensure_server(home)
        with lock:
            pids.append(info.pid)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    try:
        assert len(pids) == 4 and len(set(pids)) == 1
    finally:
        for pid in set(pids):
            os.kill(pid, signal.SIGTERM)
        for pid in set(pids):
            wait_for(lambda pid=pid: not pid_alive(pid), what="server stop")


def test_ctrl_c_stops_the_foreground_server_cleanly(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "home").start()
    assert srv.proc is not None
    srv.proc.send_signal(signal.SIGINT)
    assert srv.proc.wait(timeout=20) == 130
    log = (srv.home / "test-server.log").read_text()
    assert "Traceback" not in log and "server stopped" in log
    assert not (srv.home / "server.json").exists()
