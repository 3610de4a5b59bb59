"""Run records: every event to JSONL (``run.save``) and ``replay`` (``compare`` is in compare.py).

Why a spool file: a run may log a million events; keeping them all as
objects would cost gigabytes, and serialising each one on the streaming
thread would cost time per event. The recorder only appends the event to a
list (O(1)); the panel's timer thread writes batches to a temporary JSONL
spool, and ``save(path)`` copies it. Nothing recorded is lost: ``save``
flushes first.

File format: one JSON object per line. Line 1 is a header
``{"type": "arkor.run", "version": 1, "name", "jobId", "backend", "config"}``;
every other line is a wire event exactly as the SSE data carried it
(camelCase, with ``jobId`` and ``timestamp``) plus ``"id"``, the SSE event id,
or a client-side ``{"type": "metrics.reported", "step", "metrics"}`` line
for each ``ctx.report(...)``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import weakref
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from arkor_nb.core.contexts import (
    CheckpointContext,
    MetricSeries,
    StreamNotice,
    best_of,
    metrics_of,
    parse_reported,
)
from arkor_nb.core.errors import ConfigError
from arkor_nb.core.events import parse_event
from arkor_nb.core.format import parse_time
from arkor_nb.notebook.progress import RunState
from arkor_nb.notebook.snapshot import snapshot_html

HEADER_TYPE = "arkor.run"
FORMAT_VERSION = 1


class Recorder:
    """Collects events cheaply and spools them to a temporary JSONL file."""

    def __init__(self, header: dict[str, Any]) -> None:
        self.header = dict(header)
        # A deque: append (streaming thread) and popleft (flush) are atomic,
        # so no event can land in a batch that is already being written.
        self._pending: deque[Any] = deque()
        self._lock = threading.Lock()
        fd, name = tempfile.mkstemp(prefix="arkor-run-", suffix=".jsonl")
        os.close(fd)
        self.spool = Path(name)
        self._finalizer = weakref.finalize(self, _unlink, self.spool)
        self.count = 0

    def add(self, item: Any) -> None:
        """Called per event on the streaming thread: just an append."""
        if not isinstance(item, (StreamNotice, CheckpointContext)):  # wire events only
            self._pending.append(item)

    def flush(self) -> None:
        """Write pending events to the spool (timer thread, or before save)."""
        with self._lock:
            pending = self._pending
            batch = [pending.popleft() for _ in range(len(pending))]
            if not batch:
                return
            lines = []
            for ev in batch:
                text = ev.model_dump_json(by_alias=True, exclude_none=True)  # pydantic-core: fast
                if ev.event_id is not None and text.endswith("}"):
                    text = f"{text[:-1]},\"id\":{json.dumps(ev.event_id)}}}"
                lines.append(text)
            with self.spool.open("a", encoding="utf-8") as fh:
                fh.write("\n".join(lines) + "\n")
            self.count += len(batch)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write header + every event so far to ``path`` (atomically: tmp file then rename)."""
        self.flush()
        target = Path(path)
        if target.exists() and target.is_dir():
            raise ConfigError("path", f"{target} is a directory; pass a file name like run.jsonl")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        with self._lock, tmp.open("w", encoding="utf-8") as out:
            out.write(json.dumps({"type": HEADER_TYPE, "version": FORMAT_VERSION, **self.header},
                                 separators=(",", ":"), default=str) + "\n")
            with self.spool.open("r", encoding="utf-8") as src:
                shutil.copyfileobj(src, out)
        os.replace(tmp, target)
        return target

    def close(self) -> None:
        self._finalizer()


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def _parse_ts(value: Any) -> float | None:
    parsed = parse_time(value)
    return None if parsed is None else parsed.timestamp()


def read_record(path: str | os.PathLike[str]) -> tuple[dict[str, Any], Iterator[Any]]:
    """(header, events) of a saved run; bad lines are skipped, as on the wire."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError("path", f"{p} does not exist; pass a file written by run.save(path)")
    header: dict[str, Any] = {}
    with p.open("r", encoding="utf-8") as fh:
        first = fh.readline()
    try:
        data = json.loads(first) if first.strip() else None
    except json.JSONDecodeError:
        data = None
    if isinstance(data, dict) and data.get("type") == HEADER_TYPE:
        header = data

    def events() -> Iterator[Any]:
        with p.open("r", encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    continue
                ev: Any = parse_event(obj, obj.get("id") if isinstance(obj, dict) else None)
                if ev is None:
                    ev = parse_reported(obj)  # ctx.report(...) lines
                if ev is not None:
                    yield ev

    return header, events()


def state_from_record(path: str | os.PathLike[str]) -> RunState:
    """Fold a saved run into a RunState, using event timestamps as the clock."""
    header, events = read_record(path)
    config = header.get("config") or {}
    st = RunState(name=header.get("name") or Path(path).stem, job_id=header.get("jobId"),
                  backend=header.get("backend") or "")
    st.apply_config(config)
    first: float | None = None
    last = 0.0
    for ev in events:
        ts = _parse_ts(ev.timestamp)
        if ts is not None:
            if first is None:
                first = ts
                st.created = ts
            last = ts
        st.fold(ev, now=ts if ts is not None else last)
    if st.ended is None and first is not None:
        st.ended = last  # an unfinished record: freeze the clock at its last event
    st.clock = lambda: st.ended if st.ended is not None else last  # replay has no live clock
    return st


class Replay:
    """A finished run redrawn from a JSONL record, no backend needed.

    Displays as the static snapshot (HTML) in Jupyter; ``state`` is the
    folded :class:`RunState`; ``panel`` builds the interactive panel.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.state = state_from_record(path)
        self._panel: Any = None
        self._metrics: MetricSeries | None = None

    @property
    def metrics(self) -> MetricSeries:
        """Task and reported metrics: name -> ``[(step, value)]``, as ``result.metrics``."""
        if self._metrics is None:
            self._metrics = metrics_of(read_record(self.path)[1])
        return self._metrics

    def best(self, metric: str, mode: str = "max") -> tuple[int, float]:
        """``(step, value)`` of the best ``metric``, as ``result.best``."""
        return best_of(self.metrics, metric, mode)

    def snapshot_html(self, *, smoothing: float = 0.6, log_y: bool = False) -> str:
        return snapshot_html(self.state, smoothing=smoothing, log_y=log_y)

    def _repr_html_(self) -> str:
        return self.snapshot_html()

    @property
    def panel(self) -> Any:
        """The live panel's widgets, in their finished state (log scale and smoothing work)."""
        if self._panel is None:
            from arkor_nb.notebook.panel import LivePanel  # deferred: subclasses an ipywidget

            self._panel = LivePanel(self.state)
            self._panel.finish()
        return self._panel

    def __repr__(self) -> str:
        s = self.state
        return f"<arkor_nb replay {s.name!r} {s.status} step={s.step} loss={s.loss}>"


def replay(path: str | os.PathLike[str]) -> Replay:
    """Redraw a saved run (``run.save(path)``) without any backend."""
    return Replay(path)
