"""The `arkor-nb` job commands as real subprocesses against the real local server,
including Ctrl-C (a real SIGINT) during `run` and `logs -f`.

``ARKOR_NB_HOME`` points the CLI's default ``--backend local`` at the test
server, so the printed ``arkor-nb cancel <id>`` command is run exactly as printed.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import IO

import httpx

from tests.local.server_harness import (
    ServerProcess,
    create_job,
    wait_status,
)

REPO = Path(__file__).resolve().parents[2]


def cli_env(server: ServerProcess, tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "ARKOR_NB_HOME": str(server.home), "HOME": str(tmp_path),
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def arkor(server: ServerProcess, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "arkor_nb", *args], env=cli_env(server, tmp_path),
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)


def spawn(server: ServerProcess, tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "arkor_nb", *args], env=cli_env(server, tmp_path),
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def read_until(stream: IO[str] | None, prefix: str) -> list[str]:
    """Lines of a child's output up to and including the first that starts with ``prefix``."""
    assert stream is not None
    lines = []
    for line in stream:
        lines.append(line.rstrip("\n"))
        if line.startswith(prefix):
            return lines
    raise AssertionError(f"the process ended before printing {prefix!r}: {lines}")


def test_ctrl_c_during_run_prints_the_exact_cancel_command(server: ServerProcess, client: httpx.Client,
                                                           tmp_path: Path) -> None:
    (tmp_path / "trainer.py").write_text(textwrap.dedent("""
        import arkor_nb as ak
        trainer = ak.create_trainer(name="long", model="arkor-nb/synthetic", max_steps=100_000)
    """))
    proc = spawn(server, tmp_path, "run")
    try:
        job_id = read_until(proc.stdout, "Started job ")[-1].split()[2]
        wait_status(client, job_id, "running")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert client.get(f"/v1/jobs/{job_id}").json()["job"]["status"] == "running"
    command = err.strip().splitlines()[-1].split("cancel it with: ", 1)[1]
    assert command == f"arkor-nb cancel {job_id}"
    cancel = arkor(server, tmp_path, *shlex.split(command)[1:])
    assert cancel.returncode == 0, cancel.stderr
    assert wait_status(client, job_id, "cancelled")["status"] == "cancelled"


def test_logs_follow_exits_1_when_the_job_is_cancelled(server: ServerProcess, client: httpx.Client,
                                                        tmp_path: Path) -> None:
    job = create_job(client, maxSteps=100_000)
    proc = spawn(server, tmp_path, "logs", job["id"], "-f")
    try:
        lines = read_until(proc.stdout, "step 3 ")
        assert lines[0].startswith("started") and lines[1].startswith("step 1  loss ")
        client.post(f"/v1/jobs/{job['id']}/cancel")
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err
    assert out.splitlines()[-1].startswith("cancelled at step ")


def test_ctrl_c_during_logs_follow(server: ServerProcess, client: httpx.Client, tmp_path: Path) -> None:
    job = create_job(client, maxSteps=100_000)
    proc = spawn(server, tmp_path, "logs", job["id"], "-f")
    try:
        read_until(proc.stdout, "step 2 ")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        client.post(f"/v1/jobs/{job['id']}/cancel")
    assert proc.returncode == 130
    assert err.strip().endswith(f"arkor-nb cancel {job['id']}")


def test_jobs_download_chat_on_the_local_backend(server: ServerProcess, client: httpx.Client,
                                                 tmp_path: Path) -> None:
    job = create_job(client, name="cli-local", maxSteps=4, saveSteps=2)
    wait_status(client, job["id"], "completed")
    listed = arkor(server, tmp_path, "jobs", "--json", "--status", "completed")
    assert listed.returncode == 0, listed.stderr
    assert job["id"] in [j["id"] for j in json.loads(listed.stdout)]
    text = arkor(server, tmp_path, "jobs")
    assert "cli-local" in text.stdout and "4/4" in text.stdout
    down = arkor(server, tmp_path, "download", job["id"], "--step", "2")
    assert down.returncode == 0, down.stderr
    config = json.loads((tmp_path / f"{job['id']}-step-2" / "adapter_config.json").read_text())
    assert config["step"] == 2
    chat = arkor(server, tmp_path, "chat", job["id"], "hello")
    assert chat.returncode == 0 and chat.stdout.strip()
    logs = arkor(server, tmp_path, "logs", job["id"])
    assert logs.returncode == 0 and logs.stdout.splitlines()[-1].startswith("completed")
    missing = arkor(server, tmp_path, "download", "job_0000dead")
    assert missing.returncode == 2 and "job_0000dead" in missing.stderr
