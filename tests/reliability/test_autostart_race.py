"""``arkor-nb serve`` racing an SDK autostart on the same home (issue 19, point 5).

Two real processes start a server for one home at nearly the same moment:
an SDK call that auto-starts one, and ``python -m arkor_nb serve`` launched
0.1-0.3 s later. Whichever server wins, the SDK call must use it, never raise
"another server already serves H (pid None, None)".
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import arkor_nb as ak
from arkor_nb.core.home import read_runtime
from arkor_nb.local.server.jobs import child_env
from tests.reliability.harness import LocalServer, report, wait_for, wait_in_thread
from tests.reliability.test_hangs import ENV, _started_trainer

SDK_CALL = ("import sys, arkor_nb as ak; "
            "print('jobs', len(ak.jobs(backend=ak.LocalBackend(home=sys.argv[1]))))")
TRIALS = 10


def _serve(home: Path) -> subprocess.Popen[bytes]:
    """``arkor-nb serve`` for ``home``; its output goes to ``<home>-cli.log``."""
    with open(home.parent / f"{home.name}-cli.log", "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "arkor_nb", "serve", "--home", str(home),
                                 "--port", "0"], env={**child_env(), **ENV},
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log)


def _servers_of(home: Path) -> list[int]:
    """Pids of every server process for ``home`` (ours and the ones the SDK detached)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        is_server = b"serve" in argv or b"arkor_nb.local.server.serve" in argv
        if state != "Z" and is_server and str(home).encode() in argv:
            found.append(int(entry.name))
    return found


def _stop_all(home: Path) -> None:
    for pid in _servers_of(home):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    wait_for(lambda: not _servers_of(home), 30, "every server of the home to exit")


def _race(home: Path, delay: float) -> tuple[str | None, str | None]:
    """One trial: an SDK call auto-starts a server, ``arkor-nb serve`` follows ``delay`` s
    later. Returns (the SDK's error or None, the losing CLI's last line or None if it won)."""
    sdk = subprocess.Popen([sys.executable, "-c", SDK_CALL, str(home)], env=child_env(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(delay)  # the race itself: the user types `arkor-nb serve`
    cli = _serve(home)
    try:
        out, err = sdk.communicate(timeout=120)
        error = None
        if sdk.returncode != 0 or b"jobs 0" not in out:
            error = err.decode(errors="replace")[-400:]
        serving = wait_for(lambda: (r := read_runtime(home)) and r.get("pid"), 30,
                           "the winner's runtime file")
        assert len(_servers_of(home)) == 1, "two servers for one home"
        if serving == cli.pid:
            return error, None
        assert cli.wait(timeout=60) == 1  # the CLI lost: one line naming the real winner
        line = (home.parent / f"{home.name}-cli.log").read_text().strip().splitlines()[-1]
        assert f"pid {serving}," in line and "pid None" not in line, line
        return error, line
    finally:
        _stop_all(home)
        cli.wait(timeout=30)


def test_serve_started_just_after_an_sdk_autostart_never_breaks_the_sdk_call(tmp_path: Path) -> None:
    rng = random.Random(19)
    results = [_race(tmp_path / f"home{trial}", rng.uniform(0.1, 0.3)) for trial in range(TRIALS)]
    errors = [e for e, _ in results if e is not None]
    cli_won = sum(1 for _, line in results if line is None)
    report("autostart_race", trials=TRIALS, sdk_errors=len(errors), cli_won=cli_won,
           sdk_won=TRIALS - cli_won, load=Path("/proc/loadavg").read_text().split()[:3])
    assert errors == []


def _restart_race(home: Path, delay: float) -> str:
    srv = LocalServer(home, env=ENV).start()
    cli = None
    try:
        trainer, seen = _started_trainer(srv, ak.LocalBackend(home=home))  # autostart=True
        thread, out = wait_in_thread(trainer)
        wait_for(lambda: len(seen.events) >= 5, 60, "5 events before the kill")
        srv.kill()
        wait_for(lambda: [p for p in _servers_of(home) if p != srv.pid], 60,
                 "the trainer's backend to spawn a server", every=0.005)
        time.sleep(delay)
        cli = _serve(home)
        thread.join(timeout=120)
        assert not thread.is_alive(), "wait() never ended"
        return repr(out["error"]) if "error" in out else str(out["result"].job.status)
    finally:
        _stop_all(home)
        srv.stop()
        if cli is not None:
            cli.wait(timeout=30)


def test_serve_racing_the_autostart_of_a_waiting_trainer(tmp_path: Path) -> None:
    """The server dies while a trainer waits; the trainer's backend auto-starts a new
    one, and ``arkor-nb serve`` starts 0.1-0.3 s after that spawn."""
    rng = random.Random(5)
    outcomes = [_restart_race(tmp_path / f"home{trial}", rng.uniform(0.1, 0.3)) for trial in range(3)]
    report("autostart_race_waiting_trainer", trials=3, outcomes=outcomes)
    assert outcomes == ["failed"] * 3  # the job died with its server; the wait ended cleanly
