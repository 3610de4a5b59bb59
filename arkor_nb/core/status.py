"""Job statuses and the panel's own view states: the one spelling of each.

``JobStatus`` is what a backend says about a job (``TrainingJob.status`` on the
wire). It is a ``str`` enum, so a member *is* its string: ``JobStatus.QUEUED ==
"queued"``, it hashes and serialises as ``"queued"``, and a plain ``str`` read
from the wire compares equal to it. ``TrainingJob.status`` stays a plain ``str``
so a status this version does not know still parses.

``ViewState`` is what only a view shows (the live panel, the snapshot, text
progress): states that are not a job's status on the backend. ``PREPARING``,
``TRAINING`` and ``SAVING`` are also the local worker's ``training.phase``
values.

Everything else in the package uses these names; ``tests/local/test_vocabulary.py``
fails when one of the strings is spelled as a literal anywhere else.
"""

from __future__ import annotations

from enum import Enum


class _Word(str, Enum):
    """A ``str`` enum whose ``str()`` and ``format()`` are the bare value (as 3.11's StrEnum)."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class JobStatus(_Word):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class ViewState(_Word):
    CONNECTING = "connecting"  # the job's real status is not loaded yet (a reattached panel)
    PREPARING = "preparing"  # local worker: building or loading the model, loading data
    TRAINING = "training"  # steps are being logged
    SAVING = "saving"  # local worker: saving the adapter
    DETACHED = "detached"  # we stopped watching; the job itself may still run


QUEUED = JobStatus.QUEUED
RUNNING = JobStatus.RUNNING
COMPLETED = JobStatus.COMPLETED
FAILED = JobStatus.FAILED
CANCELLED = JobStatus.CANCELLED
JOB_STATUSES: tuple[str, ...] = tuple(JobStatus)
TERMINAL_STATUSES: frozenset[str] = frozenset({COMPLETED, FAILED, CANCELLED})
ACTIVE_STATUSES: frozenset[str] = frozenset({QUEUED, RUNNING})  # a job that can still change

CONNECTING = ViewState.CONNECTING
PREPARING = ViewState.PREPARING
TRAINING = ViewState.TRAINING
SAVING = ViewState.SAVING
DETACHED = ViewState.DETACHED
VIEW_STATES: tuple[str, ...] = tuple(ViewState)
