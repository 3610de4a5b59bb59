"""While a job waits in the local backend's queue: say which job holds the slot, cancel it on request.

The local backend trains one job at a time. A queued panel with nothing but
a ticking clock leaves the user guessing (often the slot is held by a run
they stopped watching with the backend toggle off), so this part asks the
backend every few seconds which job is running (name, id, step / max) and,
when the panel's button asks for it, cancels that job. Its own thread: HTTP
never runs on the streaming loop, the ticker or a click handler.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from arkor_nb.core.status import QUEUED, RUNNING
from arkor_nb.notebook.progress import WAITING, RunState
from arkor_nb.sdk.jobs import cancel_job, jobs

POLL_S = 2.0


class QueueWatch:
    def __init__(self, state: RunState, backend: Any, on_change: Callable[[], None]) -> None:
        self.state = state
        self.backend = backend
        self.on_change = on_change
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._cancel: str | None = None
        self._thread = threading.Thread(target=self._loop, name="arkor-nb-queue", daemon=True)

    def start(self) -> QueueWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def request_cancel(self, job_id: str) -> None:
        """From the panel's button: only a flag; the thread does the HTTP."""
        self._cancel = job_id
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            status = self.state.status
            if status not in WAITING:
                self.state.set_ahead([])
                self.on_change()
                return
            try:
                target, self._cancel = self._cancel, None
                if target is not None:
                    cancel_job(target, backend=self.backend)
                    self.state.note(f"asked the backend to cancel job {target}, which held the "
                                    "training slot")
                if status == QUEUED:
                    running = jobs(status=RUNNING, limit=3, backend=self.backend)
                    self.state.set_ahead([{
                        "id": j.id, "name": j.name, "step": getattr(j, "step", None),
                        "max_steps": (j.config or {}).get("maxSteps"),
                    } for j in running if j.id != self.state.job_id])
                    self.on_change()
            except Exception as exc:  # the panel keeps going; the reason is in the event log
                self.state.note(f"could not ask the backend about its queue: {exc}", "warn")
            self._wake.wait(POLL_S)
            self._wake.clear()
