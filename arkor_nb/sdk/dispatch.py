"""How one chunk of events reaches the job, the listeners and the callbacks.

``Dispatcher`` is the half of :class:`~arkor_nb.sdk.trainer.Trainer` that runs
per received chunk: ``_apply`` folds one event into ``trainer.job`` and builds
its callback context (terminal events carry their ``job_status``), the
``subscribe`` listeners hear every item (``tell``), task evals are completed or
run here (``judging``), and the chunk's callbacks run together
(``callbacks.run_callbacks``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from arkor_nb.core.contexts import (
    Callbacks,
    CancelledContext,
    CheckpointContext,
    CompletedContext,
    EvalContext,
    FailedContext,
    Listener,
    ListenerItem,
    LogContext,
    StartedContext,
    StreamNotice,
    TrainingResult,
)
from arkor_nb.core.events import (
    CheckpointEval,
    CheckpointSaved,
    TrainingCancelled,
    TrainingCompleted,
    TrainingFailed,
    TrainingLog,
    TrainingStarted,
)
from arkor_nb.core.status import QUEUED, RUNNING
from arkor_nb.core.wire import TrainingJob
from arkor_nb.sdk.backends import (
    Backend,
    ResolvedApi,
)
from arkor_nb.sdk.callbacks import Call, run_callbacks
from arkor_nb.sdk.chat_transport import SyncChatClient
from arkor_nb.sdk.infer import CheckpointInfer
from arkor_nb.sdk.judging import Judge
from arkor_nb.sdk.stream import StreamItem

logger = logging.getLogger("arkor_nb")


def tell(listeners: list[Listener], item: ListenerItem) -> None:
    """Hand one item to every listener; a listener that raises is logged and skipped."""
    for listener in listeners:
        try:
            listener(item)
        except Exception:
            logger.exception("arkor_nb: a subscribe() listener raised; ignored")


class Dispatcher:
    """Per-chunk dispatch of a Trainer (see the module docstring)."""

    name: str
    config: dict[str, Any]
    callbacks: Callbacks
    backend: Backend
    job: TrainingJob | None
    _judge: Judge
    _listeners: list[Listener]
    _listeners_lock: threading.Lock
    _chat: SyncChatClient | None
    _chat_lock: threading.Lock

    async def _dispatch(
        self, batch: list[StreamItem], job_id: str, saved: list[Any]
    ) -> TrainingResult | None:
        """One received chunk: update the job, tell listeners, then run the
        chunk's callbacks together. Returns the result on a terminal event."""
        with self._listeners_lock:
            listeners = list(self._listeners)
        calls: list[Call] = []
        result: TrainingResult | None = None
        judge = self._judge
        for item in batch:
            if isinstance(item, StreamNotice):
                tell(listeners, item)
                continue
            if isinstance(item, CheckpointEval):
                item = judge.complete(item)  # callable scorers run here, on its examples
            chat = await self._chat_for() if isinstance(item, CheckpointSaved) else None
            callback, ctx, result = self._apply(item, job_id, saved, chat)
            judge.saw_step(getattr(item, "step", None))
            tell(listeners, item)  # after _apply: listeners may read trainer.job
            if isinstance(ctx, CheckpointContext):
                tell(listeners, ctx)  # so a panel can sample with ctx.infer
            if callback is not None:
                ctx._report = judge.reporter(getattr(ctx, "step", None), job_id)
                calls.append((callback, ctx))
            if isinstance(ctx, CheckpointContext) and judge.client_evaluates(self._job_config()):
                evaluated = await asyncio.to_thread(judge.evaluate, ctx.infer, ctx.step, job_id)
                eval_callback, eval_ctx, _ = self._apply(evaluated, job_id, saved, None)
                tell(listeners, evaluated)
                if eval_callback is not None:
                    eval_ctx._report = judge.reporter(evaluated.step, job_id)
                    calls.append((eval_callback, eval_ctx))
            if result is not None:
                result.metrics = judge.series
                break  # nothing after a terminal event belongs to this run
        try:
            if calls:
                await run_callbacks(calls)
        finally:
            for reported in judge.take_reported():
                tell(listeners, reported)
        return result

    def _job_config(self) -> dict[str, Any]:
        """The config the job was started with (an attached job's, once known)."""
        if self.config or self.job is None:
            return self.config
        return self.job.config

    def _apply(
        self, event: Any, job_id: str, saved: list[Any], chat: tuple[SyncChatClient, Any] | None
    ) -> tuple[Any, Any, TrainingResult | None]:
        """Fold one event into ``self.job``: (callback, context, result-if-terminal)."""
        job = self.job or TrainingJob(id=job_id, name=self.name)
        cb = self.callbacks
        if isinstance(event, TrainingLog):
            if job.status == QUEUED:
                job = self.job = job.model_copy(update={"status": str(RUNNING)})
            if cb.on_log is None:
                return None, None, None  # the hot path: no context to build
            ctx = LogContext(
                step=event.step,
                loss=event.loss,
                eval_loss=event.eval_loss,
                learning_rate=event.learning_rate,
                epoch=event.epoch,
                samples_per_second=event.samples_per_second,
                job=job,
            )
            return cb.on_log, ctx, None
        if isinstance(event, TrainingStarted):
            job = self.job = job.model_copy(
                update={"status": str(RUNNING), "started_at": event.timestamp or job.started_at}
            )
            return cb.on_started, StartedContext(job=job), None
        if isinstance(event, CheckpointSaved):
            artifacts = list(event.artifacts or [])
            saved.extend(artifacts)
            adapter = {"kind": "checkpoint", "jobId": job_id, "step": event.step}
            assert chat is not None
            infer = CheckpointInfer(chat[0], chat[1], adapter)
            checkpoint = CheckpointContext(
                step=event.step, adapter=adapter, job=job, infer=infer, artifacts=artifacts
            )
            return cb.on_checkpoint, checkpoint, None
        if isinstance(event, CheckpointEval):
            evaluated = EvalContext(step=event.step, metrics=dict(event.metrics),
                                    examples=list(event.examples), job=job, n=event.n)
            return cb.on_eval, evaluated, None
        if isinstance(event, (TrainingCompleted, TrainingFailed, TrainingCancelled)):
            update: dict[str, Any] = {"status": str(event.job_status),  # a plain str, as parsed from the wire
                                      "completed_at": event.timestamp or None}
            if isinstance(event, TrainingFailed):
                update["error"] = event.error
            job = self.job = job.model_copy(update=update)
            if isinstance(event, TrainingCompleted):
                artifacts = list(event.artifacts or [])
                done = CompletedContext(job=job, artifacts=artifacts)
                return cb.on_completed, done, TrainingResult(job=job, artifacts=artifacts)
            if isinstance(event, TrainingFailed):
                failed = FailedContext(job=job, error=event.error)
                return cb.on_failed, failed, TrainingResult(job=job, artifacts=[])
            artifacts = list(event.artifacts) if event.artifacts is not None else list(saved)
            stopped = CancelledContext(job=job, artifacts=artifacts, step=event.step)
            return cb.on_cancelled, stopped, TrainingResult(job=job, artifacts=artifacts)
        return None, None, None

    async def _chat_for(self) -> tuple[SyncChatClient, Any]:
        """The pooled chat client for where the backend is now, and its scope."""
        api: ResolvedApi = await self.backend.resolve()
        with self._chat_lock:
            if self._chat is None or self._chat.base_url != api.base_url.rstrip("/"):
                self._chat = SyncChatClient(api.base_url, api.token, verify=api.verify)
            return self._chat, api.scope
