"""Issue 11, client side: a waiting ``wait()`` always ends, or says plainly what it waits for.

Real server processes, killed with SIGKILL and started again the normal way
(``python -m arkor_nb serve``, which picks a NEW port, or the client's own
auto-start); a real script interrupted with SIGINT.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import arkor_nb as ak
from arkor_nb.core.home import read_runtime
from arkor_nb.sdk.local_server import live_server
from tests.reliability.harness import EventLog, LocalServer, report, wait_for, wait_in_thread

REPO = Path(__file__).resolve().parents[2]
ENV = {"ARKOR_NB_SYNTHETIC_STEP_S": "0.01"}
POLICY = ak.ReconnectPolicy(initial_delay=0.2, max_delay=2.0)


def _serve_normally(home: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """``python -m arkor_nb serve`` with the default port choice (any free port)."""
    return subprocess.Popen(
        [sys.executable, "-m", "arkor_nb", "serve", "--home", str(home), "--port", "0"],
        env={**os.environ, **env, "ARKOR_NB_HOME": str(home)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    )


def _stop(proc_or_pid: subprocess.Popen[bytes] | int | None) -> None:
    if proc_or_pid is None:
        return
    pid = proc_or_pid if isinstance(proc_or_pid, int) else proc_or_pid.pid
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if isinstance(proc_or_pid, subprocess.Popen):
        proc_or_pid.wait(timeout=20)
    else:
        wait_for(lambda: not Path(f"/proc/{pid}").exists()
                 or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z", 20, "server exit")


def _started_trainer(srv: LocalServer, backend: ak.LocalBackend) -> tuple[ak.Trainer, EventLog]:
    trainer = ak.create_trainer(name="moved", model="arkor-nb/synthetic", max_steps=100_000,
                                logging_steps=1, backend=backend, reconnect=POLICY)
    seen = EventLog()
    trainer.subscribe(seen)
    trainer.start()
    return trainer, seen


def test_server_restarted_on_a_new_port_is_found_again(tmp_path: Path) -> None:
    home = tmp_path / "home"
    srv = LocalServer(home, env=ENV).start()
    restarted = None
    try:
        trainer, seen = _started_trainer(srv, ak.LocalBackend(home=home, autostart=False))
        thread, out = wait_in_thread(trainer)
        wait_for(lambda: len(seen.events) >= 20, 60, "20 events before the kill")
        srv.kill()
        restarted = _serve_normally(home, ENV)
        runtime = wait_for(lambda: (r := read_runtime(home)) and r.get("pid") == restarted.pid
                           and live_server(home) is not None and r, 60, "the restarted server")
        back_at = time.monotonic()
        thread.join(timeout=60)
        assert not thread.is_alive(), "wait() still retrying the old port"
        new_url = runtime["url"]
    finally:
        _stop(restarted)
        srv.stop()
    assert new_url != srv.url
    assert "error" not in out, out.get("error")
    result: ak.TrainingResult = out["result"]
    seconds = out["ended"] - back_at
    report("server_restart_new_port", old_url=srv.url, new_url=new_url,
           seconds_after_restart=round(seconds, 2), reconnects=seen.reconnects(),
           final_status=result.job.status)
    assert result.job.status == "failed"
    assert seen.events[-1].type == "training.failed"
    assert seconds < 10
    assert any(n.kind == "reconnecting" and n.error is not None and n.delay is not None
               for n in seen.notices)


def test_autostart_starts_a_server_when_the_old_one_died(tmp_path: Path) -> None:
    home = tmp_path / "home"
    srv = LocalServer(home, env=ENV).start()
    started_pid = None
    try:
        trainer, seen = _started_trainer(srv, ak.LocalBackend(home=home))  # autostart=True
        thread, out = wait_in_thread(trainer)
        wait_for(lambda: len(seen.events) >= 20, 60, "20 events before the kill")
        killed_at = time.monotonic()
        srv.kill()
        thread.join(timeout=90)
        assert not thread.is_alive(), "wait() never found a server"
        runtime = read_runtime(home) or {}
        started_pid = runtime.get("pid")
    finally:
        _stop(started_pid)
        srv.stop()
    assert "error" not in out, out.get("error")
    seconds = out["ended"] - killed_at
    report("server_killed_autostart", seconds_after_kill=round(seconds, 2),
           autostarted_url=runtime.get("url"), final_status=out["result"].job.status)
    assert started_pid is not None and started_pid != srv.pid
    assert out["result"].job.status == "failed"
    assert seconds < 30


def test_no_server_with_autostart_off_ends_the_wait_with_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARKOR_NB_SERVER_GRACE_S", "2")
    home = tmp_path / "home"
    srv = LocalServer(home, env=ENV).start()
    try:
        trainer, seen = _started_trainer(srv, ak.LocalBackend(home=home, autostart=False))
        thread, out = wait_in_thread(trainer)
        wait_for(lambda: len(seen.events) >= 5, 60, "5 events before the kill")
        killed_at = time.monotonic()
        srv.kill()
        thread.join(timeout=60)
        assert not thread.is_alive(), "wait() retried without end"
    finally:
        srv.stop()
    error = out.get("error")
    seconds = out["ended"] - killed_at
    report("server_gone_autostart_off", seconds_to_error=round(seconds, 2), error=str(error),
           reconnect_notices=seen.reconnects())
    assert isinstance(error, ak.ConfigError), error
    assert "arkor-nb serve" in str(error) and str(home) in str(error)
    assert seconds < 15
    reconnecting = [n for n in seen.notices if n.kind == "reconnecting"]
    assert reconnecting and all(n.delay is not None and n.error is not None for n in reconnecting)
    assert seen.notices[-1].kind == "error" and seen.notices[-1].error is error


def test_attaching_to_an_unknown_job_is_an_error_at_once(tmp_path: Path) -> None:
    with LocalServer(tmp_path / "home", env=ENV) as srv:
        began = time.monotonic()
        with pytest.raises(ak.CloudApiError) as info:
            ak.Trainer.attach("job_doesnotexist123", backend=srv.backend()).wait()
        seconds = time.monotonic() - began
    report("attach_unknown_job", seconds_to_error=round(seconds, 3), error=str(info.value))
    assert info.value.status == 404
    assert "job_doesnotexist123" in str(info.value) and f"local backend at {srv.url}" in str(info.value)
    assert seconds < 5


SCRIPT = textwrap.dedent("""
    import sys
    import arkor_nb as ak
    backend = ak.LocalBackend(url=sys.argv[1], token=sys.argv[2])
    trainer = ak.create_trainer(name="ctrl-c", model="arkor-nb/synthetic", max_steps=100000,
                                logging_steps=1, backend=backend,
                                callbacks={"on_started": lambda ctx: print("STARTED", flush=True)})
    print("JOB", trainer.start(), flush=True)
    trainer.wait()
""")


def test_ctrl_c_in_wait_says_the_job_keeps_running_in_one_line(tmp_path: Path) -> None:
    with LocalServer(tmp_path / "home", env=ENV) as srv:
        script = tmp_path / "train.py"
        script.write_text(SCRIPT)
        proc = subprocess.Popen([sys.executable, str(script), srv.url, srv.token],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}"
                                     f"{os.environ.get('PYTHONPATH', '')}"})
        assert proc.stdout is not None
        job_line = proc.stdout.readline()
        assert job_line.startswith("JOB "), job_line + (proc.stderr.read() if proc.stderr else "")
        job_id = job_line.split()[1]
        assert proc.stdout.readline().strip() == "STARTED"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
        job = srv.job(job_id)["job"]
        with srv.client() as c:
            c.post(f"/v1/jobs/{job_id}/cancel", params={"orgSlug": "local", "projectSlug": "default"})
    lines = [line for line in stderr.splitlines() if line.startswith("arkor-nb:")]
    report("ctrl_c_in_wait", returncode=proc.returncode, line=lines, job_status=job["status"])
    assert len(lines) == 1, stderr
    assert job_id in lines[0] and "keeps running" in lines[0]
    assert "trainer.cancel()" in lines[0] and f"arkor-nb cancel {job_id}" in lines[0]
    assert "concurrent/futures" not in stderr and "asyncio" not in stderr, stderr
    assert stderr.rstrip().endswith("KeyboardInterrupt")
    assert proc.returncode != 0
    assert job["status"] == "running"  # interrupting a wait never cancels the job


def test_reconnect_notices_reach_the_text_progress(tmp_path: Path) -> None:
    """Never silent: the text progress of ak.live() prints each reconnect with its
    attempt, next delay and last error."""
    import io

    from tests.reliability.tcp_proxy import Drop, FaultProxy

    with LocalServer(tmp_path / "home", env=ENV) as srv:
        with FaultProxy(srv.port, [None, Drop(3_000), None], jitter=0) as proxy:  # POST, stream, resume
            trainer = ak.create_trainer(name="noisy", model="arkor-nb/synthetic", max_steps=60,
                                        logging_steps=1, reconnect=POLICY,
                                        backend=ak.LocalBackend(url=proxy.url, token=srv.token))
            text = io.StringIO()
            result = ak.LiveRun(trainer, text_stream=text).start().result()
    printed = text.getvalue()
    assert result.job.status == "completed"
    line = next(x for x in printed.splitlines() if "reconnecting" in x)
    assert "reconnecting (attempt 1, next in " in line, printed  # the attempt, the next delay
    assert " s, last error: " in line, printed  # ...and the last error, named
