"""Job statuses: the one spelling of each."""

from __future__ import annotations

from typing import Literal, get_args

# The one spelling of each job status; everything else uses these constants.
JobStatus = Literal["queued", "running", "completed", "failed", "cancelled"]
JOB_STATUSES: tuple[str, ...] = get_args(JobStatus)
QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED = JOB_STATUSES
TERMINAL_STATUSES: frozenset[str] = frozenset({COMPLETED, FAILED, CANCELLED})
