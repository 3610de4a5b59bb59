"""``ak.live()``: show a run in the notebook while it trains, without blocking the cell.

Parts (threads, all daemons, all owned by one :class:`LiveRun`):
- *stream* (here): starts the job if needed and runs ``trainer.wait(abort_signal=own)``;
  the trainer calls our listener for each item, which only folds it into
  the :class:`RunState` and appends it to the recorder (O(1));
- *ticker* (``ticker.py``): redraws the panel (or the text progress) a few
  times a second in one batch, beats for the panel's watchdog, flushes the
  recorder;
- *cancel confirmation* (``confirm.py``): asks the backend to cancel and
  polls until it confirms;
- *sampler* (``sampler.py``): samples ``sample_prompts`` at each checkpoint
  with the ``infer`` of the CheckpointContext the listener hears;
- *queue* (``queue.py``, local backend): while the job is queued, asks which
  job holds the training slot, and cancels it when the panel's button asks.

The Cancel button aborts only our own stream signal (at once) and, when its
toggle is on, calls ``trainer.cancel()``; the trainer's own abort signal and
callbacks are left as the user set them (the panel only listens).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, TextIO

from arkor_nb.core.contexts import TrainingResult
from arkor_nb.core.errors import AbortedError, ConfigError
from arkor_nb.core.format import cancel_command
from arkor_nb.core.status import CANCELLED, DETACHED
from arkor_nb.notebook.chart import figure
from arkor_nb.notebook.confirm import CancelConfirmation
from arkor_nb.notebook.ipython import RunInterrupted, in_jupyter_kernel, is_cell_task, show
from arkor_nb.notebook.progress import TERMINAL, RunState
from arkor_nb.notebook.queue import QueueWatch
from arkor_nb.notebook.record import Recorder
from arkor_nb.notebook.run_threads import RunThreads
from arkor_nb.notebook.sampler import Sampler
from arkor_nb.notebook.snapshot import snapshot_html
from arkor_nb.notebook.text import TextProgress
from arkor_nb.notebook.ticker import Ticker
from arkor_nb.sdk.abort import AbortController
from arkor_nb.sdk.trainer import Trainer

INTERRUPT_CONFIRM_S = 10.0  # how long an interrupted wait waits for that answer before its line


class LiveRun(RunThreads):
    """A run followed live. Returned by :func:`live`; see the module docstring."""

    def __init__(self, trainer: Any, *, sample_prompts: list[str] | None = None,
                 display: bool = True, interval: float = 0.5, text_stream: TextIO | None = None,
                 sample_max_tokens: int = 64) -> None:
        if sample_prompts is not None:
            if isinstance(sample_prompts, str) or not all(isinstance(p, str) for p in sample_prompts):
                raise ConfigError("sample_prompts", 'pass a list of strings, e.g. ["Hello!"]')
        if interval <= 0:
            raise ConfigError("interval", "must be > 0 seconds (0.5 is a good value)")
        self.trainer = trainer
        self.interval = interval
        self.sample_prompts = list(sample_prompts or [])
        self.sample_max_tokens = sample_max_tokens
        self._worker_samples = self._ask_worker_for_samples()
        config = dict(getattr(trainer, "config", None) or {})
        name = getattr(trainer, "name", "") or ""
        if name == trainer.job_id:  # an attached trainer is named after its id until it loads the job
            name = ""
        self.state = RunState(name=name, job_id=trainer.job_id,
                              backend=getattr(trainer, "backend_kind", "") or "")
        self._job_adopted = False
        self.state.apply_config(config)
        self.recorder = Recorder({"name": self.state.name, "jobId": trainer.job_id,
                                  "backend": self.state.backend, "config": config})
        self._abort = AbortController()
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._wake = threading.Event()
        self._ticker = Ticker(interval, self._tick, self._wake)
        self._result: TrainingResult | None = None
        self._error: BaseException | None = None
        self._cancel_remote: bool | None = None
        self._cancel_thread: threading.Thread | None = None
        self._confirm: CancelConfirmation | None = None
        self._done_callbacks: list[Any] = []
        self._sampler: Sampler | None = None
        self._queue: QueueWatch | None = None
        self._panel: Any = None
        self._text: TextProgress | None = None
        self._panel_closed = False
        self._handle: Any = None  # the panel's cell output; the snapshot replaces it at the end
        self._beat_at = 0.0
        self._jupyter = display and in_jupyter_kernel()
        if display and not self._jupyter:
            self._text = TextProgress(text_stream)
        self._unsubscribe = trainer.subscribe(self._on_item)

    def _ask_worker_for_samples(self) -> bool:
        """On the local backend, a job we start samples its checkpoints in the worker.

        The worker has the model in memory, so a reply arrives as a
        ``checkpoint.sample`` event right after the checkpoint, instead of a
        server round trip that reloads the model while training holds the CPU.
        The cloud, and jobs already started, keep the ``ctx.infer`` sampler.
        """
        trainer = self.trainer
        if (not self.sample_prompts or trainer.job_id is not None
                or getattr(trainer, "backend_kind", "") != "local"
                or not isinstance(getattr(trainer, "config", None), dict)):
            return False
        trainer.config = {**trainer.config, "samplePrompts": list(self.sample_prompts),
                          "sampleMaxTokens": self.sample_max_tokens}
        return True

    def _worker_sampling(self) -> bool:
        """True when this job's worker answers the sample prompts itself (started with them)."""
        if self._worker_samples:
            return True
        job = getattr(self.trainer, "job", None)
        return bool(job is not None and (job.config or {}).get("samplePrompts"))

    # ------------------------------------------------------------ lifecycle

    def start(self) -> LiveRun:
        """Display (in Jupyter), then stream on background threads; returns at once."""
        if self._jupyter:
            self._show()
        if self.sample_prompts:
            self._sampler = Sampler(self.state, self.sample_prompts, max_tokens=self.sample_max_tokens,
                                    on_change=self._after_late_change)
        if getattr(self.trainer, "backend_kind", "") == "local":  # one training slot: say who holds it
            self._queue = QueueWatch(self.state, self.trainer.backend, on_change=self._wake.set).start()
            if self._panel is not None:
                self._panel.on_cancel_ahead = self._queue.request_cancel

        self._stream = threading.Thread(target=self._stream_main, name="arkor-nb-stream", daemon=True)
        self._ticker.start()
        self._stream.start()
        return self

    @property
    def panel(self) -> Any:
        """The panel widget (built on first use when not displayed)."""
        if self._panel is None:
            from arkor_nb.notebook.panel import LivePanel  # deferred: subclasses an ipywidget

            panel = LivePanel(self.state, on_cancel=lambda remote: self.cancel(remote=remote))
            panel.wake = self._wake.set
            if self._queue is not None:
                panel.on_cancel_ahead = self._queue.request_cancel
            panel.set_reattach(self.state.job_id, self.state.backend)
            self._panel = panel
            if self._done.is_set():
                panel.finish()
        return self._panel

    def _show(self) -> None:
        # one output: the live panel now, replaced by the static snapshot when the run ends,
        # so a saved notebook keeps only the snapshot (no widget reference, no stale text)
        self._handle = show(self.panel)

    # ------------------------------------------------------------ cancel

    def cancel(self, remote: bool = True) -> None:
        """Stop watching at once; with ``remote`` also ask the backend to cancel the job.

        Same as the panel's Cancel button. Returns at once; the panel shows
        whether the backend accepted and the job's final status.
        """
        with self._lock:
            if self._cancel_remote is not None or self._done.is_set():
                return
            self._cancel_remote = bool(remote)
        if self._panel is not None:
            self._panel.show_cancelling()
        detail = ("cancelling: stopped the local stream, asking the backend to cancel the job…"
                  if remote else "stopped watching; the job keeps running on the backend "
                  "(reattach with ak.live(job_id=...))")
        self.state.set_cancel("requested", detail)
        if remote:
            self._confirm = CancelConfirmation(self.trainer, self.state, self._after_late_change).start()
            self._cancel_thread = self._confirm.thread
        self._abort.abort("cancelled from the notebook panel")

    # ------------------------------------------------------------ results

    def done(self) -> bool:
        return self._done.is_set()

    def result(self, timeout: float | None = None) -> TrainingResult:
        """Block until the run ends; return its TrainingResult (for scripts).

        In a notebook prefer ``await run``: a blocking wait holds widget clicks
        until the cell ends. Interrupting (kernel stop button, Ctrl-C) acts as
        Cancel, following the panel's "also cancel on backend" toggle, and
        raises :class:`RunInterrupted`, whose one line says what happened.
        After a local-only cancel this raises AbortedError (the job keeps
        running on the backend).
        """
        panel = self._panel
        if panel is not None:
            panel.blocking = True
            self._wake.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while not self._done.wait(0.1):
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"the run did not end within {timeout} s "
                                       "(it keeps running; call result() again)")
            thread = self._cancel_thread
            if thread is not None:
                thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        except KeyboardInterrupt:
            self.cancel(remote=self._remote_default())
            self._done.wait(INTERRUPT_CONFIRM_S)
            thread = self._cancel_thread
            if thread is not None:
                thread.join(INTERRUPT_CONFIRM_S)
            raise RunInterrupted(self.interrupt_line()) from None
        finally:
            if panel is not None:
                panel.blocking = False
        return self._outcome()

    def _remote_default(self) -> bool:
        """The panel's "also cancel on backend" toggle (on without a panel)."""
        panel = self._panel
        return bool(panel.remote_toggle.value) if panel is not None else True

    def interrupt_line(self) -> str:
        """One true sentence about an interrupted wait: cancelled on the backend, or detached."""
        s = self.state.summary()
        job_id = s["job_id"]
        if job_id is None:
            return "interrupted before the job was created: nothing runs on the backend"
        stop = (f"stop it with: {cancel_command(job_id, s['backend'])} (or reattach: "
                f'ak.live(job_id="{job_id}"), then Cancel)')
        status, cancel = s["status"], s["cancel_state"]
        if cancel == "remote-ok" and status == CANCELLED:
            return f"interrupted: job {job_id} cancelled on the backend at step {s['step']}"
        if status in TERMINAL and status != DETACHED:
            return f"interrupted: job {job_id} had already ended ({status}) at step {s['step']}"
        if self._cancel_remote:
            why = s["cancel_detail"] or "no answer from the backend yet"
            return f"interrupted: asked the backend to cancel job {job_id} ({why}); {stop}"
        return f"interrupted: detached, job {job_id} still running on the backend; {stop}"

    def _outcome(self) -> TrainingResult:
        if self._result is not None:
            return self._result
        job = self._confirm.final_job if self._confirm is not None else None
        if job is not None and job.is_terminal:
            return TrainingResult(job=job, artifacts=[])
        if self._error is not None:
            raise self._error
        raise AbortedError("the run was stopped before it ended")

    def __await__(self) -> Any:
        return self._wait_async().__await__()

    async def _wait_async(self) -> TrainingResult:
        """Wait on the caller's loop (the kernel's in a notebook), so widget clicks still arrive.

        An interrupt of the cell (ipykernel cancels the cell's task) acts as
        Cancel, as in :meth:`result`, and ends the cell with one line.
        """
        loop = asyncio.get_running_loop()
        event = asyncio.Event()

        def wake() -> None:
            loop.call_soon_threadsafe(event.set)

        self._done_callbacks.append(wake)
        try:
            if not self._done.is_set():
                await event.wait()
            thread = self._cancel_thread
            if thread is not None and thread.is_alive():
                await asyncio.to_thread(thread.join)
        except asyncio.CancelledError:
            self.cancel(remote=self._remote_default())
            if not is_cell_task():
                raise  # cancelled by the caller's own code (wait_for, gather): plain asyncio
            await asyncio.to_thread(self._done.wait, INTERRUPT_CONFIRM_S)
            thread = self._cancel_thread
            if thread is not None:
                await asyncio.to_thread(thread.join, INTERRUPT_CONFIRM_S)
            raise RunInterrupted(self.interrupt_line()) from None
        finally:
            self._done_callbacks.remove(wake)
        return self._outcome()

    # ------------------------------------------------------------ records

    def save(self, path: Any) -> Any:
        """Write every event so far to a JSONL file (see ``arkor_nb.notebook.record``)."""
        return self.recorder.save(path)

    def snapshot_html(self) -> str:
        """The static snapshot (inline SVG + summary table), as the cell keeps it."""
        smoothing, log_y = 0.6, False
        if self._panel is not None:
            smoothing, log_y = float(self._panel.smoothing.value), bool(self._panel.log_toggle.value)
        return snapshot_html(self.state, smoothing=smoothing, log_y=log_y)

    def figure(self) -> Any:
        """The run's curves as an interactive plotly figure, on demand (needs plotly).

        The live panel draws a light SVG chart; plotly's ~5 MB bundle is only
        paid by those who ask for zoom and pan.
        """
        smoothing = float(self._panel.smoothing.value) if self._panel is not None else 0.6
        return figure(self.state.curves(), smoothing=smoothing, title=self.state.name)

    def _repr_html_(self) -> str:
        return self.snapshot_html()

    def __repr__(self) -> str:
        s = self.state
        return f"<LiveRun {s.name!r} job={s.job_id} {s.status} step={s.step}>"

    @property
    def ticks(self) -> int:
        """Redraws done so far (the throttle bounds it)."""
        return self._ticker.ticks

    @property
    def job_id(self) -> str | None:
        return self.state.job_id

    @property
    def status(self) -> str:
        return self.state.status


def live(trainer: Any = None, *, job_id: str | None = None, backend: Any = "local",
         sample_prompts: list[str] | None = None, display: bool = True,
         interval: float = 0.5) -> LiveRun:
    """Show a run live: display the panel, start the job if needed, stream in the background.

    ``live(trainer)`` follows a Trainer; ``live(job_id=..., backend=...)``
    attaches to an existing job and replays its history from the start.
    Returns at once with a :class:`LiveRun` (``result()``, ``cancel()``,
    ``await run``, ``save()``). Outside Jupyter it prints compact text progress.
    """
    if trainer is None and job_id is None:
        raise ConfigError("trainer", "pass a Trainer (ak.create_trainer(...)) or job_id=... to attach")
    if trainer is not None and job_id is not None:
        raise ConfigError("job_id", "pass either a trainer or job_id=..., not both")
    if trainer is None:
        trainer = Trainer.attach(str(job_id), backend=backend)
    elif not hasattr(trainer, "subscribe") or not hasattr(trainer, "wait"):
        raise ConfigError("trainer", f"expected an ak.Trainer, got {type(trainer).__name__}")
    return LiveRun(trainer, sample_prompts=sample_prompts, display=display, interval=interval).start()


__all__ = ["LiveRun", "live"]
