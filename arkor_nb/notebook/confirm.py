"""Cancel confirmation: ask the backend to cancel the job, then poll until it says it ended.

Its own thread, so the Cancel click (a flag and an abort) returns at once
and the panel can say truthfully what the backend did: accepted and ended,
still running after ``CANCEL_CONFIRM_S``, refused, or nothing to cancel.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from arkor_nb.core.format import fix_for
from arkor_nb.core.wire import TrainingJob
from arkor_nb.notebook.progress import RunState

CANCEL_CONFIRM_S = 20.0  # how long we poll the backend for the final status


class CancelConfirmation:
    def __init__(self, trainer: Any, state: RunState, on_change: Callable[[], None]) -> None:
        self.trainer = trainer
        self.state = state
        self.on_change = on_change
        self.final_job: TrainingJob | None = None  # the backend's last word, once terminal
        self.thread = threading.Thread(target=self._run, name="arkor-nb-cancel", daemon=True)

    def start(self) -> CancelConfirmation:
        self.thread.start()
        return self

    def _run(self) -> None:
        trainer = self.trainer
        try:
            if trainer.job_id is None:
                self.state.set_cancel("remote-none", "nothing to cancel on the backend: the job was "
                                      "not created")
                return
            job = trainer.cancel()
            deadline = time.monotonic() + CANCEL_CONFIRM_S
            delay = 0.1
            pause = threading.Event()
            while job is not None and not job.is_terminal and time.monotonic() < deadline:
                pause.wait(delay)  # paced polling of the backend, not test synchronisation
                delay = min(1.0, delay * 2)
                job = trainer.cancel()  # idempotent: returns the job, terminal once confirmed
            if job is None:
                self.state.set_cancel("remote-none", "nothing to cancel on the backend")
                return
            self.final_job = job
            self.state.set_job(job)
            if job.is_terminal:
                self.state.set_cancel("remote-ok", f"backend accepted the cancel; job {job.id} is "
                                      f"{job.status}")
            else:
                self.state.set_cancel("remote-pending", f"backend accepted the cancel; job {job.id} "
                                      f"still {job.status} after {CANCEL_CONFIRM_S:.0f} s")
        except Exception as exc:
            self.state.set_cancel("remote-failed", f"the backend did not accept the cancel: "
                                  f"{fix_for(exc)}")
        finally:
            self.on_change()
