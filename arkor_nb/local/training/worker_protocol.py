"""The worker stdio protocol, both ends, in one place (see docs/protocol.md).

- stdin line 1: the job spec, JSON ``{"jobId", "config", "jobDir", "home",
  "secrets"?}``; later lines say ``cancel``; EOF on stdin means cancel too
  (the server went away). ``secrets`` (``{"datasetSource.token": ...}``) are
  the config values the server never stores (a dataset token, a dataset URL
  with a password or a signed query): the pipe is their only copy outside the
  server's memory.
- stdout: one typed event per line, without ``jobId``/``timestamp`` (the
  server adds them when it records the event), ending with exactly one
  terminal event. Everything else (library logs, progress bars, stray
  prints) goes to stderr: :class:`WorkerChannel` re-points fd 1 at stderr
  and writes the protocol to a private duplicate of the original stdout.

Workers (the real trainer and the synthetic one) use :class:`WorkerChannel`;
the job manager uses :meth:`JobSpec.to_line`, :data:`CANCEL_LINE` and
:func:`decode_event`. This module stays light (no torch) for the synthetic
worker's sake.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from arkor_nb.core.events import TERMINAL_EVENT_MODELS, TrainingEvent, parse_event_json
from arkor_nb.core.redact import redact_url

log = logging.getLogger("arkor_nb.worker")

CANCEL_LINE = "cancel\n"
_WORKER_ONLY = {"job_id", "timestamp"}  # the server's to set, not the worker's


@dataclass(frozen=True)
class JobSpec:
    """What a worker is told about its job (the first stdin line).

    ``config`` is the stored (secret-free) config; the worker sees
    :meth:`full_config`, with ``secrets`` (dotted path -> value) put back.
    """

    job_id: str
    config: dict[str, Any]
    job_dir: Path
    home: Path
    secrets: dict[str, str] = field(default_factory=dict)

    def to_line(self) -> str:
        body = {"jobId": self.job_id, "config": self.config,
                "jobDir": str(self.job_dir), "home": str(self.home)}
        if self.secrets:
            body["secrets"] = self.secrets
        return json.dumps(body) + "\n"

    @classmethod
    def from_line(cls, line: str) -> JobSpec:
        """Parse the spec line; ValueError says what is wrong with it."""
        data = json.loads(line)
        if not isinstance(data, dict) or not {"config", "jobDir", "home"} <= set(data):
            raise ValueError("first stdin line must be a JSON object with config, jobDir and home")
        return cls(job_id=str(data.get("jobId", "")), config=dict(data["config"] or {}),
                   job_dir=Path(data["jobDir"]), home=Path(data["home"]),
                   secrets=dict(data.get("secrets") or {}))

    def full_config(self) -> dict[str, Any]:
        return with_secrets(self.config, self.secrets)


# Config values that are secrets: never stored, never shown (dotted paths).
SECRET_FIELDS = ("datasetSource.token",)
# URLs whose user info and query are secrets (a signed ``?sig=``, ``user:pw@``):
# stored redacted (``https://***@host/x?***``), the real one handed over like a token.
SECRET_URL_FIELDS = ("datasetSource.url",)


def split_secrets(config: dict[str, Any], marker: str) -> tuple[dict[str, Any], dict[str, str]]:
    """``config`` with each secret replaced by ``marker`` (a secret URL by its
    redacted form), and the secrets themselves. On a stored config, the
    secrets it returns name what a worker would still need (a marker)."""
    stored = json.loads(json.dumps(config))  # a deep copy of plain JSON
    secrets: dict[str, str] = {}
    for dotted in SECRET_FIELDS + SECRET_URL_FIELDS:
        *parents, leaf = dotted.split(".")
        node = stored
        for key in parents:
            node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, dict) or not isinstance(node.get(leaf), str):
            continue
        value = node[leaf]
        if dotted in SECRET_URL_FIELDS:
            hidden = redact_url(value, every_query=True)
            if hidden != value or marker in value:
                secrets[dotted], node[leaf] = value, hidden
        else:
            secrets[dotted], node[leaf] = value, marker
    return stored, secrets


def with_secrets(config: dict[str, Any], secrets: dict[str, str]) -> dict[str, Any]:
    """The inverse of :func:`split_secrets` (a copy; ``config`` is left as is)."""
    full = json.loads(json.dumps(config))
    for dotted, value in secrets.items():
        *parents, leaf = dotted.split(".")
        node = full
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return full


def encode_event(event: TrainingEvent) -> str:
    """One stdout line (NaN/Infinity become null: JSON has neither)."""
    return event.model_dump_json(by_alias=True, exclude_none=True, exclude=_WORKER_ONLY) + "\n"


def decode_event(raw: bytes, job_id: str) -> TrainingEvent | None:
    """A worker's stdout line as the typed event the store records; None if malformed."""
    event = parse_event_json(raw)
    if event is not None:
        event.job_id = job_id
    return event


class WorkerChannel:
    """A worker's end: read the spec, watch for cancel, emit events (one terminal only).

    ``silent``: a rank other than 0 of a multi-process job, which shares rank
    0's stdout; it writes no events (they are dropped) and keeps nothing open
    on stdout.
    """

    def __init__(self, *, silent: bool = False) -> None:
        sys.stdout.flush()
        fd = os.open(os.devnull, os.O_WRONLY) if silent else os.dup(1)
        os.dup2(2, 1)  # stray prints (C or Python) now land on stderr
        sys.stdout = sys.stderr
        self._out: TextIO = os.fdopen(fd, "w", encoding="utf-8", buffering=1)
        self._lock = threading.Lock()
        self.terminal_sent = False

    @staticmethod
    def read_spec() -> JobSpec:
        """The first stdin line; ValueError (or EOFError) when it is missing or bad."""
        first = sys.stdin.readline()
        if not first:
            raise EOFError("no job spec on stdin")
        return JobSpec.from_line(first)

    def emit(self, event: TrainingEvent) -> None:
        """Write one event; anything after the terminal event is dropped."""
        line = encode_event(event)
        with self._lock:
            if self.terminal_sent:
                return
            if isinstance(event, TERMINAL_EVENT_MODELS):
                self.terminal_sent = True
            self._out.write(line)
            self._out.flush()

    @staticmethod
    def watch_cancel(cancel: threading.Event) -> threading.Thread:
        """Set ``cancel`` on a ``cancel`` line or on EOF (the server went away)."""

        def run() -> None:
            try:
                for line in sys.stdin:
                    if line.strip().lower() == CANCEL_LINE.strip():
                        log.info("cancel requested")
                        break
            except (OSError, ValueError):
                pass
            cancel.set()

        thread = threading.Thread(target=run, name="arkor-stdin", daemon=True)
        thread.start()
        return thread
