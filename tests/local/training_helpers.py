"""Shared pieces for the real-training tests: the tiny base, a worker runner, one trained job.

The tiny model is built once per test session into ``ARKOR_NB_HOME`` (set by
tests/conftest.py); the worker runs as a real subprocess speaking the stdio
protocol, exactly as the server spawns it.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arkor_nb.local.training.models import ensure_tiny_model

REPO = Path(__file__).resolve().parents[2]
TRAIN = REPO / "data" / "triage.jsonl"
EVAL = REPO / "data" / "triage_eval.jsonl"


def home() -> Path:
    return Path(os.environ["ARKOR_NB_HOME"])


def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


@dataclass
class WorkerRun:
    """A worker subprocess; ``events`` fill in as its stdout arrives."""

    proc: subprocess.Popen[str]
    events: list[dict[str, Any]] = field(default_factory=list)
    raw_lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None
    stderr_path: Path | None = None

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 120.0) -> dict[str, Any]:
        """The first event matching ``predicate`` (polling with a deadline)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in list(self.events):
                if predicate(event):
                    return event
            if self.proc.poll() is not None and self.reader is not None and not self.reader.is_alive():
                break
            time.sleep(0.01)
        raise AssertionError(f"no matching event; got {[e['type'] for e in self.events]}; "
                             f"stderr tail: {self.stderr_tail()}")

    def finish(self, timeout: float = 180.0) -> list[dict[str, Any]]:
        """Wait for exit (stdin stays open until then: EOF would mean cancel)."""
        try:
            self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        assert self.reader is not None
        self.reader.join(timeout=10)
        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()
        return self.events

    def stderr_tail(self) -> str:
        return "" if self.stderr_path is None else self.stderr_path.read_text()[-2000:]


def start_worker(config: dict[str, Any], job_dir: Path, *, job_id: str = "job_test",
                 env: dict[str, str] | None = None) -> WorkerRun:
    """A worker on ``config``; ``env``: variables set for it on top of this process's."""
    job_dir.mkdir(parents=True, exist_ok=True)
    stderr_path = job_dir.parent / f"{job_dir.name}.stderr.log"
    stderr = open(stderr_path, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "arkor_nb.local.training.worker"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True,
        env={**worker_env(), **(env or {})}, cwd=REPO,
    )
    stderr.close()
    run = WorkerRun(proc=proc, stderr_path=stderr_path)
    run.send(json.dumps({"jobId": job_id, "config": config, "jobDir": str(job_dir), "home": str(home())}))

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            run.raw_lines.append(line)
            run.events.append(json.loads(line))

    run.reader = threading.Thread(target=read, daemon=True)
    run.reader.start()
    return run


def run_worker(config: dict[str, Any], job_dir: Path) -> list[dict[str, Any]]:
    return start_worker(config, job_dir).finish()


def logs(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "training.log" and e.get("loss") is not None]


def started(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The training.started event; only training.phase events (setup) may come before it."""
    at = next(i for i, e in enumerate(events) if e["type"] == "training.started")
    assert all(e["type"] == "training.phase" for e in events[:at]), [e["type"] for e in events[:at]]
    return events[at]


def terminal(events: list[dict[str, Any]]) -> dict[str, Any]:
    ends = [e for e in events if e["type"] in ("training.completed", "training.failed", "training.cancelled")]
    assert len(ends) == 1, [e["type"] for e in events]
    assert events[-1] is ends[0], "the terminal event must be the last line"
    return ends[0]


@dataclass
class TrainedJob:
    job_dir: Path
    events: list[dict[str, Any]]
    config: dict[str, Any]


DEMO_CONFIG: dict[str, Any] = {
    "model": "arkor-nb/tiny",
    "datasetSource": {"type": "file", "path": str(TRAIN), "evalPath": str(EVAL)},
    "maxSteps": 60,
    "loggingSteps": 5,
    "saveSteps": 30,
    "evalSteps": 30,
}


@functools.cache
def shared_trained_job() -> TrainedJob:
    """One real 60-step LoRA run of the tiny model on the demo data, once per test process
    (memoised here, so every module that asks for the fixture shares it)."""
    ensure_tiny_model(home())
    job_dir = Path(tempfile.mkdtemp(prefix="trained-", dir=home())) / "job"
    events = run_worker(DEMO_CONFIG, job_dir)
    return TrainedJob(job_dir=job_dir, events=events, config=DEMO_CONFIG)
