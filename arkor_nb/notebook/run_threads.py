"""The threads behind a :class:`~arkor_nb.notebook.live.LiveRun` (see that module).

``RunThreads`` is the half of ``LiveRun`` that runs off the cell: the
trainer listener (``_on_item``, on the streaming loop, O(1)), the stream
thread (``_stream_main``: start, ``wait``, then ``_finish``), the ticker's
redraw (``_tick``) and the end of the run (the static snapshot replaces the
panel's output, again after a late change). ``LiveRun`` holds the state and
the public API.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from arkor_nb.core.contexts import CheckpointContext, StreamNotice, TrainingResult
from arkor_nb.core.errors import AbortedError
from arkor_nb.core.format import fix_for, status_line
from arkor_nb.core.wire import TrainingJob
from arkor_nb.notebook.livechart import BEAT_S
from arkor_nb.notebook.progress import RunState
from arkor_nb.notebook.queue import QueueWatch
from arkor_nb.notebook.record import Recorder
from arkor_nb.notebook.sampler import Sampler
from arkor_nb.notebook.text import TextProgress
from arkor_nb.notebook.ticker import Ticker
from arkor_nb.sdk.abort import AbortController


def _loaded(job: Any) -> bool:
    """Whether a trainer's job came from the backend (a record always has its creation
    time), not the trainer's stand-in after a failed lookup (id, name, default status)."""
    return getattr(job, "created_at", None) is not None


class RunThreads:
    """Listener, stream thread, ticker redraw and end of run of one LiveRun."""

    trainer: Any
    state: RunState
    recorder: Recorder
    _abort: AbortController
    _done: threading.Event
    _wake: threading.Event
    _ticker: Ticker
    _result: TrainingResult | None
    _error: BaseException | None
    _cancel_remote: bool | None
    _done_callbacks: list[Any]
    _sampler: Sampler | None
    _queue: QueueWatch | None
    _panel: Any
    _text: TextProgress | None
    _panel_closed: bool
    _handle: Any
    _beat_at: float
    _job_adopted: bool
    _unsubscribe: Any

    def _worker_sampling(self) -> bool:
        raise NotImplementedError

    def snapshot_html(self) -> str:
        raise NotImplementedError

    def _adopt_job(self) -> None:
        """Take the job's name, status and creation time once the trainer has loaded it."""
        job = getattr(self.trainer, "job", None)
        if job is None or self._job_adopted:
            return
        if not _loaded(job):
            # the trainer's stand-in (the job lookup failed): its status is the model's
            # default and its name the id, not the job's: keep "connecting" until events
            # or the final result say more
            return
        self._job_adopted = True
        self.state.set_job(job)
        if self._panel is not None:
            self._panel.set_reattach(job.id, self.state.backend)

    def _on_item(self, item: Any) -> None:
        """Trainer listener: runs on the streaming loop for every event. O(1), never raises."""
        if not self._job_adopted:
            self._adopt_job()
        if isinstance(item, CheckpointContext):
            # the CheckpointSaved event before it already updated the panel; this
            # context carries ``infer``, bound to that checkpoint
            if self._sampler is not None:
                if self._worker_sampling():  # the replies follow as checkpoint.sample events
                    self._sampler.mark_pending(item.step)
                else:
                    self._sampler.queue(item)
            return
        if self._text is not None and isinstance(item, StreamNotice):
            self._text.notice(item)
        self.state.fold(item)
        self.recorder.add(item)
        ticker = self._ticker
        if not ticker.dirty:
            ticker.dirty = True
            self._wake.set()

    def _stream_main(self) -> None:
        trainer = self.trainer
        try:
            if trainer.job_id is None:
                self.state.note("creating the job…")
                trainer.start()
            if getattr(trainer, "job", None) is not None:
                self._adopt_job()
            else:  # attached: the trainer loads the job when it starts streaming
                self.state.set_job(TrainingJob(id=str(trainer.job_id)), status_known=False)
            self.recorder.header["jobId"] = trainer.job_id
            if self._panel is not None:
                self._panel.set_reattach(trainer.job_id, self.state.backend)
            self._wake.set()
            result = trainer.wait(abort_signal=self._abort.signal)
            self._result = result
            self.state.set_job(result.job, status_known=_loaded(result.job))
        except AbortedError as exc:
            self._error = exc
        except BaseException as exc:  # shown in the panel; result() re-raises it
            self._error = exc
            if not self.state.terminal:
                prefix = "could not start the job: " if trainer.job_id is None else ""
                self.state.set_transport(prefix + fix_for(exc), "error")
        finally:
            self._unsubscribe()
            if self._sampler is not None:
                # finish the samples of the last checkpoint so the snapshot shows them,
                # unless the user cancelled (then stop at once)
                cancelled = self._cancel_remote is not None
                self._sampler.shutdown(cancelled=cancelled)
            self._finish()

    def _finish(self) -> None:
        if self._queue is not None:
            self._queue.stop()
        self._ticker.stop()
        self.recorder.flush()
        if self._panel is not None:
            self._panel.finish()
        if self._text is not None:
            self._text.update(self.state, time.monotonic(), final=True)
        self._update_snapshot()
        self._done.set()
        for cb in list(self._done_callbacks):
            cb()

    def _tick(self, now: float) -> None:
        """One redraw (on the ticker's thread): panel or text progress, heartbeat, recorder."""
        try:
            if not self._job_adopted:
                self._adopt_job()
            if self._panel is not None:
                self._panel.render(now)
                if now - self._beat_at >= BEAT_S:
                    self._beat_at = now
                    self._panel.beat()
            if self._text is not None:
                self._text.update(self.state, now)
            self.recorder.flush()
        except Exception as exc:  # a view bug must not kill the ticker
            self.state.note(f"panel redraw failed: {type(exc).__name__}: {exc}", "error")

    def _update_snapshot(self) -> None:
        """Replace the panel's output with the static snapshot (again after a late change)."""
        if self._handle is None:
            return
        try:
            self._handle.update({"text/html": self.snapshot_html(),
                                 "text/plain": status_line(self.state.summary())}, raw=True)
        except Exception:  # the display went away (kernel shutting down)
            return
        panel = self._panel
        if panel is not None and not self._panel_closed:
            self._panel_closed = True
            panel.close_all()  # nothing shows it any more: keep it out of saved widget state

    def _after_late_change(self) -> None:
        """A change after the stream ended (cancel confirmed, sample reply): redraw the end state."""
        if self._done.is_set():
            if self._panel is not None and not self._panel_closed:
                self._panel.refresh_final()
            self._update_snapshot()
        else:
            self._wake.set()
