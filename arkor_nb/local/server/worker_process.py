"""One training worker subprocess, seen from the server: its command and its stdio.

A worker speaks the stdio protocol of ``worker_protocol``: a spec line in,
``cancel`` lines in, typed events out (one per line, ending with exactly one
terminal event), free text on stderr. ``WorkerRun`` holds one started
process: it writes to stdin, reads stdout in chunks and decodes whole lines
into event models (adding each artifact's download ``url``), copies stderr
to the job's private ``worker.log`` keeping its last lines, and stops a
worker that ignores ``cancel``. ``describe_exit`` says in words why a worker
stopped without a terminal event. What to do with the events (store, wake
subscribers, schedule the next job) is the scheduler's (``jobs.py``).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from arkor_nb.core.events import TERMINAL_EVENT_MODELS, TrainingEvent
from arkor_nb.local.server.torchrun import launch_command, stop_job
from arkor_nb.local.training.models import SYNTHETIC_MODEL_ID
from arkor_nb.local.training.worker_protocol import CANCEL_LINE, decode_event

log = logging.getLogger("arkor_nb.local")

_MAX_LINE = 4 * 1024 * 1024
_STDERR_TAIL_LINES = 20


def worker_command(config: dict[str, Any], endpoint: str | None = None,
                   job_id: str = "") -> list[str]:
    """The synthetic event source for ``arkor-nb/synthetic``, the real trainer otherwise
    (under torchrun for several processes or nodes; ``endpoint``: node 0's rendezvous)."""
    if config.get("model") == SYNTHETIC_MODEL_ID:
        return [sys.executable, "-m", "arkor_nb.local.training.synthetic_worker"]
    processes, nodes = int(config.get("processes", 1)), int(config.get("nodes", 1))
    if processes == 1 and nodes == 1:
        return [sys.executable, "-m", "arkor_nb.local.training.worker"]
    return launch_command(processes, nodes, endpoint=endpoint, job_id=job_id)


def artifact_url(job_id: str, path: str) -> str:
    return f"/v1/jobs/{job_id}/artifacts/{quote(path.strip('/'))}"


def _with_urls(job_id: str, event: TrainingEvent) -> TrainingEvent:
    """Give each artifact a download URL (the worker only knows jobDir-relative paths)."""
    artifacts = getattr(event, "artifacts", None)
    if isinstance(artifacts, list):
        event.artifacts = [  # type: ignore[union-attr]
            {**a, "url": artifact_url(job_id, a["path"])}
            if isinstance(a, dict) and isinstance(a.get("path"), str)
            else a
            for a in artifacts
        ]
    return event


def describe_exit(returncode: int, stderr_tail: list[str]) -> str:
    """Why a worker stopped without a result, in words a user can act on."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        text = f"training worker was killed by {name} (signal {-returncode})"
        if -returncode == signal.SIGKILL:
            text += "; it may have run out of memory or been killed from outside"
    else:
        text = f"training worker exited with code {returncode} without reporting a result"
    if stderr_tail:
        tail = "\n".join(line[:300] for line in stderr_tail)[-2000:]
        text += f"; last worker output:\n{tail}"
    return text


@dataclass
class WorkerRun:
    """A started worker process of one job and what the server learnt from its output."""

    job_id: str
    proc: subprocess.Popen[bytes]
    job_dir: Path
    stderr_tail: deque[str] = field(default_factory=lambda: deque(maxlen=_STDERR_TAIL_LINES))
    terminal_seen: bool = False  # set by the scheduler once the terminal event is stored
    cancel_requested: bool = False
    last_step: int | None = None
    stdin_lock: threading.Lock = field(default_factory=threading.Lock)
    stderr_thread: threading.Thread | None = None

    # ----------------------------------------------------------------- stdin

    def write(self, text: str) -> None:
        with self.stdin_lock:
            stdin = self.proc.stdin
            if stdin is None or stdin.closed:
                return
            try:
                stdin.write(text.encode())
                stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                pass  # the worker is gone; its exit is handled by the stdout reader

    def send_cancel(self) -> None:
        self.write(CANCEL_LINE)

    def close_stdin(self) -> None:
        if self.proc.stdin is not None:
            with self.stdin_lock:
                try:
                    self.proc.stdin.close()
                except OSError:
                    pass

    def force_stop(self) -> None:
        """A worker that ignored ``cancel`` for the grace period: terminate, then kill."""
        if self.proc.poll() is not None:
            return
        log.warning("job %s: worker ignored cancel; terminating it", self.job_id)
        self.proc.terminate()  # torchrun passes SIGTERM on to its ranks
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        stop_job(self.job_id, grace_s=1.0)

    # ---------------------------------------------------------------- output

    def start_stderr_reader(self) -> None:
        self.stderr_thread = threading.Thread(
            target=self._read_stderr, daemon=True, name=f"stderr-{self.job_id}"
        )
        self.stderr_thread.start()

    def _read_stderr(self) -> None:
        stream: IO[bytes] | None = self.proc.stderr
        if stream is None:
            return
        fd = os.open(self.job_dir / "worker.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.fchmod(fd, 0o600)  # private even if it existed: a library may log what it fetched
        with os.fdopen(fd, "ab") as sink:
            for raw in stream:
                sink.write(raw)
                sink.flush()
                self.stderr_tail.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def read_events(self, on_batch: Callable[[list[TrainingEvent]], None]) -> None:
        """Read stdout to EOF in chunks; hand each chunk's whole lines to ``on_batch`` as events.

        Raises whatever ``on_batch`` raises (the caller stops the worker then)."""
        stream = self.proc.stdout
        assert stream is not None
        fd = stream.fileno()
        buf = b""
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return
            buf += chunk
            if b"\n" not in chunk:
                if len(buf) > _MAX_LINE:
                    log.warning("job %s: dropping an over-long worker line", self.job_id)
                    buf = b""
                continue
            *lines, buf = buf.split(b"\n")
            batch = self._decode(lines)
            if batch:
                on_batch(batch)

    def _decode(self, lines: list[bytes]) -> list[TrainingEvent]:
        """The events of these lines, up to the first terminal one (nothing after a terminal)."""
        if self.terminal_seen:
            return []
        batch: list[TrainingEvent] = []
        for raw in lines:
            if not raw.strip():
                continue
            event = decode_event(raw, self.job_id)
            if event is None:
                log.warning("job %s: skipping malformed worker line %.200r", self.job_id, raw)
                continue
            step = getattr(event, "step", None)
            if isinstance(step, int):
                self.last_step = step
            batch.append(_with_urls(self.job_id, event))
            if isinstance(event, TERMINAL_EVENT_MODELS):
                break
        return batch
