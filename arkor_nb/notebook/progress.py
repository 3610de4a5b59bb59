"""The run model behind every view: folds stream items into a small, bounded state.

Pure Python, no widgets: the live panel, the static snapshot, the text
progress, replay and compare all read the same model. ``fold`` is called on
the streaming thread for every event and must stay cheap and O(1): it only
updates scalars, appends to decimated series and to a ring buffer; anything
that formats text happens later, when a view renders. The figures derived
from the state (elapsed, rate, ETA, progress, curves) are in ``run_figures.py``.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from arkor_nb.core.contexts import MetricsReported, StreamNotice
from arkor_nb.core.events import (
    CheckpointEval,
    CheckpointSample,
    CheckpointSaved,
    TrainingCancelled,
    TrainingCompleted,
    TrainingFailed,
    TrainingLog,
    TrainingPhase,
    TrainingStarted,
)
from arkor_nb.core.format import describe_notice, parse_time
from arkor_nb.core.status import (
    ACTIVE_STATUSES,
    CONNECTING,
    DETACHED,
    FAILED,
    QUEUED,
    RUNNING,
    SAVING,
    TERMINAL_STATUSES,
    TRAINING,
)
from arkor_nb.notebook.evals import EvalTrack
from arkor_nb.notebook.run_figures import RunFigures, StepRate
from arkor_nb.notebook.series import DecimatedSeries

LOG_RING = 300  # events kept for the event log
MAX_POINTS = 2000  # per loss curve
SIDE_POINTS = 1000  # eval loss / learning rate curves (sparser or smooth)

TERMINAL = TERMINAL_STATUSES  # the one definition lives in core/status.py
WAITING = frozenset({CONNECTING, QUEUED})  # no step yet: the first sign of life makes it running


@dataclass
class Checkpoint:
    step: int
    wall: float
    artifacts: list[Any] = field(default_factory=list)
    # prompt -> reply text (None while sampling, "" if empty); errors go to ``sample_error``
    samples: dict[str, str | None] = field(default_factory=dict)
    sample_error: str | None = None


@dataclass(slots=True)
class LogEntry:
    """One event-log line; ``item`` is formatted only when rendered."""

    wall: float
    item: Any  # a TrainingEvent, a StreamNotice, or a str (panel message)
    level: str = "info"  # info | warn | error
    html: str | None = None  # the rendered line, cached by the panel


class RunState(RunFigures):
    """Folded state of one run. Thread-safe: ``fold`` under ``lock``; views copy under it."""

    def __init__(
        self,
        *,
        name: str = "",
        job_id: str | None = None,
        backend: str = "",
        max_steps: int | None = None,
        num_epochs: float | None = None,
        clock: Any = time.monotonic,
    ) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self.name = name
        self.job_id = job_id
        self.backend = backend
        self.max_steps = max_steps
        self.num_epochs = num_epochs
        self.status: str = CONNECTING
        self.created = clock()  # when this view began; elapsed counts from the job's creation
        self.job_created: float | None = None  # the job's createdAt, on this clock
        self.started: float | None = None
        self.ended: float | None = None
        self.step = 0
        self.ahead: list[dict[str, Any]] = []  # queued: the jobs holding the backend's slot
        self.phase: str | None = None  # a ViewState: PREPARING | TRAINING | SAVING (local backend)
        self.phase_detail: str | None = None
        self.epoch: float | None = None
        self.loss: float | None = None
        self.eval_loss: float | None = None
        self.learning_rate: float | None = None
        self.samples_per_second: float | None = None
        self.best_loss: float | None = None
        self.best_step: int | None = None
        self.best_eval_loss: float | None = None
        self.error: str | None = None  # backend's failure message (training.failed)
        self.transport: str | None = None  # client-side stream problem, with the fix
        self.transport_level = "info"
        self.cancel_state: str | None = None  # requested | aborted-local | remote-ok | remote-failed
        self.cancel_detail: str | None = None
        self.metrics: dict[str, Any] = {}
        self.artifacts: list[Any] = []
        self.metadata: dict[str, Any] = {}
        self.config: dict[str, Any] = {}  # the job's wire config (compare shows what differs)
        self.evals = EvalTrack()  # task metrics, eval examples, health (notebook/evals.py)
        self.checkpoints: list[Checkpoint] = []
        self.log: deque[LogEntry] = deque(maxlen=LOG_RING)
        self.log_total = 0
        self.loss_series = DecimatedSeries(MAX_POINTS)
        self.eval_series = DecimatedSeries(SIDE_POINTS)
        self.lr_series = DecimatedSeries(SIDE_POINTS)
        self.n_events = 0
        self.version = 0  # bumps on any change: a view redraws only when it moved
        self.log_version = 0
        self.ckpt_version = 0
        self.rate = StepRate()

    # ------------------------------------------------------------------ fold

    def when(self, iso: str | None, now: float | None = None) -> float | None:
        """A backend timestamp (ISO 8601) on this state's clock; None if absent or unparseable.

        Why: a reattached panel replays the history at once; its times must be
        the events' own, not the moment they arrived. Never later than now.
        """
        parsed = parse_time(iso)
        if parsed is None:
            return None
        wall = parsed.timestamp()
        now = self.clock() if now is None else now
        return now - max(0.0, time.time() - wall)

    def fold(self, item: Any, now: float | None = None) -> None:
        """Apply one stream item (a typed event or a StreamNotice). Never raises on odd input."""
        t = self.clock() if now is None else now
        stamped = self.when(getattr(item, "timestamp", None), t)
        if stamped is not None:
            t = stamped
        with self.lock:
            self.n_events += 1
            self.version += 1
            if isinstance(item, TrainingLog):
                self._fold_log(item, t)
                self._add_log(LogEntry(t, item))
                return
            if isinstance(item, StreamNotice):
                self._fold_notice(item)
                return
            if isinstance(item, CheckpointSample):  # a worker's reply (live, reattached or replayed)
                self.set_sample(item.step, item.prompt, item.reply)
                return
            if isinstance(item, MetricsReported):  # ctx.report(...): drawn with the task metrics
                self.evals.fold_reported(item.step, item.metrics)
                return
            if isinstance(item, CheckpointEval):
                self.evals.fold_eval(item)
                self.ckpt_version += 1
                self._add_log(LogEntry(t, item))
                return
            level = "info"
            if isinstance(item, TrainingPhase):
                if self.status in WAITING:
                    self.status = RUNNING
                self.phase, self.phase_detail = item.phase, item.detail
            elif isinstance(item, TrainingStarted):
                self.phase, self.phase_detail = TRAINING, None
                if self.status not in TERMINAL:
                    self.status = RUNNING
                self.started = self.started or t
                self.metadata = dict(item.metadata or {})
                self._max_from(self.metadata)
            elif isinstance(item, CheckpointSaved):
                self.checkpoints.append(Checkpoint(item.step, t, list(item.artifacts or [])))
                self.ckpt_version += 1
                self.step = max(self.step, item.step)
            elif isinstance(item, (TrainingCompleted, TrainingFailed, TrainingCancelled)):
                self.status = item.job_status
                self.ended = t
                if isinstance(item, TrainingCompleted):
                    self.metrics = dict(item.metrics or {})
                    self.artifacts = list(item.artifacts or [])
                else:
                    if item.step is not None:
                        self.step = max(self.step, item.step)
                    if isinstance(item, TrainingFailed):
                        self.error = item.error
                    level = "error" if isinstance(item, TrainingFailed) else "warn"
            elif isinstance(item, str):
                level = "info"
            else:
                return
            self._add_log(LogEntry(t, item, level))

    def _add_log(self, entry: LogEntry) -> None:
        """One event-log line (under ``lock``)."""
        self.log.append(entry)
        self.log_total += 1
        self.log_version += 1

    def _detach(self) -> None:
        """We stopped watching (under ``lock``); the job itself may still run."""
        if self.status not in TERMINAL:
            self.status = DETACHED
            self.ended = self.ended or self.clock()

    def _fold_log(self, ev: TrainingLog, t: float) -> None:
        step = ev.step
        if self.phase not in (TRAINING, SAVING):
            self.phase, self.phase_detail = TRAINING, None
        if self.status in WAITING:
            self.status = RUNNING
        if self.started is None:
            self.started = t
        if step > self.step:
            self.step = step
        self.rate.mark(t, step)
        loss = ev.loss
        if loss is not None and math.isfinite(loss):
            self.loss = loss
            self.loss_series.append(step, loss)
            if self.best_loss is None or loss < self.best_loss:
                self.best_loss, self.best_step = loss, step
        ev_loss = ev.eval_loss
        if ev_loss is not None and math.isfinite(ev_loss):
            self.eval_loss = ev_loss
            self.eval_series.append(step, ev_loss)
            if self.best_eval_loss is None or ev_loss < self.best_eval_loss:
                self.best_eval_loss = ev_loss
        lr = ev.learning_rate
        if lr is not None:
            self.learning_rate = lr
            self.lr_series.append(step, lr)
        if ev.epoch is not None:
            self.epoch = ev.epoch
        if ev.samples_per_second is not None:
            self.samples_per_second = ev.samples_per_second
        self.evals.fold_health(ev)

    def _fold_notice(self, n: StreamNotice) -> None:
        if n.kind == "connected":
            if self.transport_level != "info" or self.transport:
                self.transport = None
                self.transport_level = "info"
            return  # not worth an event-log line per (re)connect
        text, level = describe_notice(n)
        self.transport = text
        self.transport_level = level
        if n.kind in ("aborted", "error"):
            self._detach()
        self._add_log(LogEntry(self.clock(), n, level))

    def _max_from(self, meta: dict[str, Any]) -> None:
        for key in ("maxSteps", "max_steps", "totalSteps", "total_steps"):
            value = meta.get(key)
            if isinstance(value, int) and value > 0:
                self.max_steps = value
                return

    # ------------------------------------------------------- panel-side updates

    def note(self, text: str, level: str = "info") -> None:
        """A line from the panel itself (cancel accepted, sampling failed...)."""
        with self.lock:
            self._add_log(LogEntry(self.clock(), text, level))
            self.version += 1

    def set_job(self, job: Any, *, status_known: bool = True) -> None:
        """Adopt what a TrainingJob says (id, name, status, config).

        ``status_known=False`` for a stand-in the trainer made before (or without)
        loading the job: its status is only the model's default ("queued"), and
        a panel must not claim a running job is queued, so it stays "connecting".
        """
        if job is None:
            return
        with self.lock:
            self.job_id = getattr(job, "id", None) or self.job_id
            self.name = self.name or getattr(job, "name", "") or ""
            created = self.when(getattr(job, "created_at", None))
            if created is not None and created != self.job_created:
                self.job_created = created
                for entry in self.log:  # their "+12.3s" were counted from another origin
                    entry.html = None
                self.log_version += 1
            status = getattr(job, "status", None) if status_known else None
            if status in TERMINAL and self.status not in TERMINAL:
                self.status = status
                self.ended = self.ended or self.clock()
                if status == FAILED and not self.error:
                    self.error = getattr(job, "error", None)
            elif status in ACTIVE_STATUSES and self.status in WAITING:
                self.status = status
            config = getattr(job, "config", None) or {}
            self.apply_config(config)
            self.version += 1

    def apply_config(self, config: dict[str, Any]) -> None:
        with self.lock:
            self.config = {**self.config, **config}
            if self.max_steps is None and isinstance(config.get("maxSteps"), int):
                self.max_steps = config["maxSteps"]
            if self.num_epochs is None and isinstance(config.get("numTrainEpochs"), (int, float)):
                self.num_epochs = float(config["numTrainEpochs"])

    def set_ahead(self, jobs: list[dict[str, Any]]) -> None:
        """The jobs our queued job waits behind (id, name, step, max_steps)."""
        with self.lock:
            if jobs != self.ahead:
                self.ahead = jobs
                self.version += 1

    def set_cancel(self, state: str, detail: str | None = None) -> None:
        with self.lock:
            self.cancel_state = state
            self.cancel_detail = detail
            self.version += 1

    def set_transport(self, text: str, level: str = "error") -> None:
        with self.lock:
            self.transport = text
            self.transport_level = level
            self._detach()
            self._add_log(LogEntry(self.clock(), text, level))
            self.version += 1

    def set_sample(self, step: int, prompt: str, reply: str | None, error: str | None = None) -> None:
        with self.lock:
            for ck in reversed(self.checkpoints):
                if ck.step == step:
                    if error is not None:
                        ck.sample_error = error
                    else:
                        ck.samples[prompt] = reply
                    break
            self.ckpt_version += 1
            self.version += 1

    # ------------------------------------------------------------- derived
    # terminal, origin, elapsed, steps_per_second, eta, progress, curves: run_figures.py

    def summary(self) -> dict[str, Any]:
        """The figures a snapshot table and text progress show."""
        with self.lock:
            return {
                "name": self.name,
                "job_id": self.job_id,
                "backend": self.backend,
                "status": self.status,
                "ahead": list(self.ahead) if self.status == QUEUED else [],
                "phase": self.phase if self.status == RUNNING else None,
                "phase_detail": self.phase_detail if self.status == RUNNING else None,
                "step": self.step,
                "max_steps": self.max_steps,
                "epoch": self.epoch,
                "loss": self.loss,
                "eval_loss": self.eval_loss,
                "learning_rate": self.learning_rate,
                "samples_per_second": self.samples_per_second,
                "best_loss": self.best_loss,
                "best_step": self.best_step,
                "best_eval_loss": self.best_eval_loss,
                "elapsed": self.elapsed(),
                "eta": self.eta(),
                "error": self.error,
                "transport": self.transport,
                "cancel_state": self.cancel_state,
                "cancel_detail": self.cancel_detail,
                "checkpoints": [c.step for c in self.checkpoints],
                "best_metric": self.evals.best_of(),  # (name, step, value) or None
                "log_events": self.n_events,
            }
