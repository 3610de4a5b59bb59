"""Durable job table and append-only event log (SQLite, WAL).

Every event is written here *before* anyone is told about it, so a stream
can always be replayed from the log and a killed server loses nothing it
acknowledged. The event's ``rowid`` is its SSE ``id``: global, monotonic,
never reused (``AUTOINCREMENT``), hence monotonic per job too.

One connection per thread (``threading.local``); writes are serialised by a
process-wide lock so concurrent writers never spin on ``SQLITE_BUSY``.
Reads are paged: nothing here ever loads a whole event log into memory.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from arkor_nb.core.events import (
    TERMINAL_EVENT_MODELS,
    CheckpointSaved,
    TrainingEvent,
    TrainingFailed,
    TrainingLog,
    event_type,
)
from arkor_nb.core.status import QUEUED, RUNNING, TERMINAL_STATUSES

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT NOT NULL UNIQUE,
    name         TEXT NOT NULL,
    status       TEXT NOT NULL,
    config       TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    started_at   TEXT,
    completed_at TEXT,
    error        TEXT
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status, seq);
CREATE TABLE IF NOT EXISTS events (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    type   TEXT NOT NULL,
    data   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_job ON events(job_id, id);
"""


def _private_file(path: Path) -> None:
    """Create ``path`` as 0600 (SQLite gives its -wal/-shm files the same mode) or tighten it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for extra in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if extra.exists():
            os.chmod(extra, 0o600)


def utc_now() -> str:
    """ISO-8601 UTC timestamp with milliseconds, the wire's time format."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class StoredEvent:
    """One row of the log: ``data`` is the event's JSON text, ready for an SSE frame."""

    id: int
    type: str
    data: str


class StoreError(RuntimeError):
    """The data directory cannot be written (disk full, read-only, corrupt file)."""


# SQLite's primary result codes for a file that is not (or no longer) a sound database.
_DAMAGE_CODES = frozenset({11, 26})  # SQLITE_CORRUPT, SQLITE_NOTADB


def is_damage(err: BaseException | None) -> bool:
    """Whether ``err`` (or what caused it) says the database file itself is damaged."""
    while err is not None:
        if isinstance(err, sqlite3.Error) and (getattr(err, "sqlite_errorcode", 0) & 0xFF) in _DAMAGE_CODES:
            return True
        err = err.__cause__
    return False


class DamagedDatabaseError(StoreError):
    """``arkor.db`` is corrupt or not a database; ``path`` names it."""

    def __init__(self, path: Path, detail: str) -> None:
        self.path = path
        self.detail = " ".join(detail.split())[:200]  # one line, whatever SQLite said
        super().__init__(f"the arkor-nb job database {path} is damaged ({self.detail})")


def set_aside(path: Path) -> Path:
    """Rename a damaged database (and its -wal/-shm) to ``<name>.damaged-<UTC time>``; kept, never deleted."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    aside = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
    for suffix in ("-wal", "-shm", ""):  # the database last: a -wal left alone would be replayed
        part = path.with_name(path.name + suffix)
        if part.exists():
            os.replace(part, aside.with_name(aside.name + suffix))
    return aside


def damage_advice(path: Path) -> str:
    """What a user does about a damaged database while the server still runs."""
    return (f"the arkor-nb job database {path} is damaged; stop the local server and start it "
            "again (`arkor-nb serve`, or any SDK call): it moves the damaged file aside "
            "(kept as arkor.db.damaged-<time>) and starts with an empty job list")


class Store:
    """Jobs and events of one ``ARKOR_NB_HOME``; safe to share between threads."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _private_file(self.path)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._check_sound()
        try:
            with self._write_lock:
                self._conn().executescript(_SCHEMA)
                self._add_summary_columns()
        except (sqlite3.Error, StoreError) as err:
            if is_damage(err):
                self.close()
                raise DamagedDatabaseError(self.path, str(err.__cause__ or err)) from None
            raise

    def _check_sound(self) -> None:
        """Read every page once through a read-only connection (~0.3 s per 1M events),
        so a file cut short or overwritten is found before anything writes to it (it
        stays byte for byte as found) and not as a 500 on some later request."""
        try:
            conn = sqlite3.connect(f"file:{quote(str(self.path))}?mode=ro", uri=True, timeout=30)
            try:
                found = conn.execute("PRAGMA quick_check(1)").fetchone()
            finally:
                conn.close()
        except sqlite3.Error as err:
            if is_damage(err):
                raise DamagedDatabaseError(self.path, str(err)) from None
            return  # locked, unreadable...: the writable open below says what is wrong
        if found is None or found[0] != "ok":
            raise DamagedDatabaseError(self.path, f"integrity check: {found[0] if found else '?'}")

    def _add_summary_columns(self) -> None:
        """Latest step and best loss per job, kept up to date by ``append`` so a
        job list never reads the event log (added in place to older databases)."""
        conn = self._conn()
        have = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
        if {"step", "best_loss"} <= have:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            for column, kind in (("step", "INTEGER"), ("best_loss", "REAL")):
                if column not in have:
                    conn.execute(f"ALTER TABLE jobs ADD COLUMN {column} {kind}")
            # Once, for jobs recorded before these columns existed.
            log, saved = event_type(TrainingLog), event_type(CheckpointSaved)
            conn.execute(
                "UPDATE jobs SET "
                "step = (SELECT MAX(json_extract(data, '$.step')) FROM events e "
                "        WHERE e.job_id = jobs.id AND e.type IN (?1, ?2)), "
                "best_loss = (SELECT MIN(json_extract(data, '$.loss')) FROM events e "
                "             WHERE e.job_id = jobs.id AND e.type = ?1)",
                (log, saved),
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # ------------------------------------------------------------ connections

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None,
                                       check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA busy_timeout=30000")
            except sqlite3.Error as err:
                raise StoreError(
                    f"cannot open the arkor-nb database {self.path}: {err} (make the data "
                    "directory writable or set ARKOR_NB_HOME to another one)"
                ) from err
            self._local.conn = conn
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction under the write lock; errors become StoreError."""
        with self._write_lock:
            conn = self._conn()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.Error as err:
                if is_damage(err):
                    raise DamagedDatabaseError(self.path, str(err)) from err
                raise StoreError(
                    f"cannot write the arkor-nb database {self.path}: {err} "
                    "(free disk space or make the data directory writable; "
                    "set ARKOR_NB_HOME to use another one)"
                ) from err

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # ------------------------------------------------------------------- jobs

    @staticmethod
    def _job_from_row(row: tuple[Any, ...]) -> dict[str, Any]:
        job_id, name, status, config, created, started, completed, error, step, best = row
        job: dict[str, Any] = {
            "id": job_id,
            "name": name,
            "status": status,
            "config": json.loads(config),
            "createdAt": created,
            "startedAt": started,
            "completedAt": completed,
            "error": error,
            "step": step,
            "bestLoss": best,
        }
        return job

    _JOB_COLUMNS = ("id, name, status, config, created_at, started_at, completed_at, error, "
                    "step, best_loss")

    def create_job(self, job_id: str, name: str, config: dict[str, Any]) -> dict[str, Any]:
        now = utc_now()
        with self._write() as conn:
            conn.execute(
                "INSERT INTO jobs (id, name, status, config, created_at) VALUES (?, ?, ?, ?, ?)",
                (job_id, name, QUEUED, json.dumps(config), now),
            )
        job = self.get_job(job_id)
        assert job is not None
        return job

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        row = self._conn().execute(
            f"SELECT {self._JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)
        ).fetchone()
        return None if row is None else self._job_from_row(row)

    def list_jobs(self, *, status: str | None = None, limit: int = 100,
                  before: str | None = None) -> list[dict[str, Any]]:
        """Newest first; ``before`` (a job id) starts after that job: the page cursor.

        Raises KeyError for an unknown cursor id."""
        where: list[str] = []
        args: list[Any] = []
        if before is not None:
            row = self._conn().execute("SELECT seq FROM jobs WHERE id = ?", (before,)).fetchone()
            if row is None:
                raise KeyError(before)
            where.append("seq < ?")
            args.append(row[0])
        if status is not None:
            where.append("status = ?")
            args.append(status)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        rows = self._conn().execute(
            f"SELECT {self._JOB_COLUMNS} FROM jobs {clause}ORDER BY seq DESC LIMIT ?",
            (*args, limit),
        ).fetchall()
        return [self._job_from_row(r) for r in rows]

    def job_ids_with_status(self, status: str) -> list[str]:
        """Oldest first (queue order)."""
        rows = self._conn().execute(
            "SELECT id FROM jobs WHERE status = ? ORDER BY seq", (status,)
        ).fetchall()
        return [r[0] for r in rows]

    def mark_running(self, job_id: str) -> bool:
        """queued -> running; False if the job left ``queued`` meanwhile (e.g. cancelled)."""
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE jobs SET status = ?, started_at = ? WHERE id = ? AND status = ?",
                (RUNNING, utc_now(), job_id, QUEUED),
            )
            return cur.rowcount == 1

    # ----------------------------------------------------------------- events

    def append(self, job_id: str, events: list[TrainingEvent]) -> list[int]:
        """Record typed events (stamping their ``job_id`` and ``timestamp``) in one transaction.

        When the last event is terminal, the job's status (and error) changes
        in the same transaction, so the log and the job never disagree.
        Nothing is appended to a job that is already terminal: each job gets
        exactly one terminal event. Returns the new ids.
        """
        ids: list[int] = []
        last = events[-1] if events else None
        with self._write() as conn:
            row = conn.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None or row[0] in TERMINAL_STATUSES:
                return ids
            now = utc_now()
            summary: dict[str, Any] = {}
            for event in events:
                event.job_id, event.timestamp = job_id, now
                cur = conn.execute(
                    "INSERT INTO events (job_id, type, data) VALUES (?, ?, ?)",
                    (job_id, event.type, event.model_dump_json(by_alias=True, exclude_none=True)),
                )
                assert cur.lastrowid is not None
                ids.append(cur.lastrowid)
                _fold_summary(summary, event)
            if summary:
                conn.execute(
                    "UPDATE jobs SET step = COALESCE(MAX(step, ?1), ?1, step), "
                    "best_loss = COALESCE(MIN(best_loss, ?2), ?2, best_loss) WHERE id = ?3",
                    (summary.get("step"), summary.get("loss"), job_id),
                )
            if isinstance(last, TERMINAL_EVENT_MODELS):
                error = last.error if isinstance(last, TrainingFailed) else None
                conn.execute(
                    "UPDATE jobs SET status = ?, completed_at = ?, error = ?, "
                    "started_at = COALESCE(started_at, ?) WHERE id = ?",
                    (last.job_status, now, error, now, job_id),
                )
        return ids

    def read_events(self, job_id: str, after: int = 0, limit: int = 500) -> list[StoredEvent]:
        """At most ``limit`` events with id > ``after``, oldest first."""
        rows = self._conn().execute(
            "SELECT id, type, data FROM events WHERE job_id = ? AND id > ? ORDER BY id LIMIT ?",
            (job_id, after, limit),
        ).fetchall()
        return [StoredEvent(*r) for r in rows]

    def last_step(self, job_id: str) -> int | None:
        """The step of the job's latest step-carrying event (for failure reports)."""
        row = self._conn().execute(
            "SELECT json_extract(data, '$.step') FROM events WHERE job_id = ? "
            "AND json_extract(data, '$.step') IS NOT NULL ORDER BY id DESC LIMIT 1",
            (job_id,),
        ).fetchone()
        return None if row is None or row[0] is None else int(row[0])


def _fold_summary(summary: dict[str, Any], event: TrainingEvent) -> None:
    """Fold one event into the batch's (max step, min training loss)."""
    if not isinstance(event, (TrainingLog, CheckpointSaved)):
        return
    summary["step"] = max(event.step, summary.get("step", event.step))
    loss = event.loss if isinstance(event, TrainingLog) else None
    if loss is not None and math.isfinite(loss):
        summary["loss"] = min(loss, summary.get("loss", loss))
