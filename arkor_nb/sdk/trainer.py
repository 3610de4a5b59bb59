"""create_trainer / Trainer: the public API (start, wait, cancel, subscribe) and dispatch.

How one event travels: :class:`~arkor_nb.sdk.stream.JobStream` reads the job's
SSE stream (decoding, resume, de-dup, backoff: see that module) and yields
typed events one chunk at a time; :meth:`Trainer._dispatch` folds each event
into ``trainer.job``, hands it to the ``subscribe`` listeners, builds the
callback context, and runs the chunk's callbacks together
(``_callbacks.run_callbacks``). A terminal event, or ``event: end``, ends
``wait()``.

The async methods are the real implementation; the sync ones run them on
arkor_nb's private event-loop thread (``_sync``), so the same trainer works
in a script, in Jupyter and from worker threads. Concurrent waits share one
stream (``_sync.SharedRun``), so callbacks never fire twice.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections.abc import Callable, Mapping
from contextlib import aclosing
from dataclasses import fields
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
    ReconnectPolicy,
    StartedContext,
    StreamNotice,
    TrainingResult,
)
from arkor_nb.core.errors import (
    AbortedError,
    CloudApiError,
    ConfigError,
    JobNotFoundError,
    announced_interrupt,
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
from arkor_nb.core.format import cancel_hint
from arkor_nb.core.status import CANCELLED, QUEUED, RUNNING
from arkor_nb.core.taskeval import TaskEval
from arkor_nb.core.wire import TrainingJob
from arkor_nb.sdk.abort import AbortSignal
from arkor_nb.sdk.backends import (
    SUPPORTED_MODELS,
    ResolvedApi,
    make_backend,
)
from arkor_nb.sdk.callbacks import Call, run_callbacks
from arkor_nb.sdk.chat_transport import SyncChatClient
from arkor_nb.sdk.config import build_config, non_empty_str
from arkor_nb.sdk.infer import CheckpointInfer
from arkor_nb.sdk.judging import Judge, check_task_eval
from arkor_nb.sdk.stream import STREAM_ERRORS, JobStream, StreamItem, describe_backend
from arkor_nb.sdk.sync import AsyncOnce, SharedRun, run_sync

logger = logging.getLogger("arkor_nb")

# What a best-effort job lookup may swallow.
LOOKUP_ERRORS: tuple[type[Exception], ...] = (CloudApiError, *STREAM_ERRORS)


def make_callbacks(callbacks: Any) -> Callbacks:
    if callbacks is None:
        return Callbacks()
    if isinstance(callbacks, Callbacks):
        items = {f.name: getattr(callbacks, f.name) for f in fields(Callbacks)}
    elif isinstance(callbacks, Mapping):
        items = dict(callbacks)
        allowed = {f.name for f in fields(Callbacks)}
        for key in items:
            if key not in allowed:
                raise ConfigError(
                    f"callbacks.{key}", f"unknown callback; allowed names are {sorted(allowed)}"
                )
    else:
        raise ConfigError(
            "callbacks", 'must be a dict like {"on_log": fn} or ak.Callbacks(on_log=fn)'
        )
    for key, value in items.items():
        if value is not None and not callable(value):
            raise ConfigError(f"callbacks.{key}", f"must be callable, got {value!r}")
    return Callbacks(**items)


def make_reconnect(reconnect: Any) -> ReconnectPolicy:
    if reconnect is None:
        return ReconnectPolicy()
    if isinstance(reconnect, ReconnectPolicy):
        return reconnect
    if isinstance(reconnect, Mapping):
        try:
            return ReconnectPolicy(**reconnect)
        except (TypeError, ValueError) as exc:
            raise ConfigError("reconnect", str(exc)) from None
    raise ConfigError("reconnect", "must be ak.ReconnectPolicy(...) or a dict of its fields")


class Trainer:
    """A training run on a backend. Build one with :func:`create_trainer`.

    Attributes: ``name``, ``config`` (the camelCase wire config), ``job_id``,
    ``job`` (latest known :class:`TrainingJob`), ``backend``,
    ``backend_kind`` (``"local"`` or ``"cloud"``).
    """

    def __init__(
        self,
        *,
        name: str,
        config: dict[str, Any],
        callbacks: Callbacks | Mapping[str, Any] | None = None,
        abort_signal: AbortSignal | None = None,
        backend: Any = "local",
        reconnect: ReconnectPolicy | Mapping[str, Any] | None = None,
        job_id: str | None = None,
        task_eval: TaskEval | None = None,
    ) -> None:
        if abort_signal is not None and not isinstance(abort_signal, AbortSignal):
            raise ConfigError(
                "abort_signal", "must be an ak.AbortController().signal (an ak.AbortSignal)"
            )
        self.name = name
        self.config = config
        self.callbacks = make_callbacks(callbacks)
        self.abort_signal = abort_signal
        self.backend = make_backend(backend)
        self.backend_kind: str = self.backend.kind
        self.reconnect = make_reconnect(reconnect)
        self.job: TrainingJob | None = None
        self._attached_id = job_id
        self.task_eval = check_task_eval(task_eval)
        self._judge = Judge(self.task_eval)
        self._start = AsyncOnce[str]()
        self._listeners: list[Listener] = []
        self._listeners_lock = threading.Lock()
        self._chat: SyncChatClient | None = None
        self._chat_lock = threading.Lock()
        self._stream = SharedRun[TrainingResult](
            lambda: AbortedError("the stream was stopped (every waiter left, or its loop closed)")
        )

    # ------------------------------------------------------------ creation

    @classmethod
    def attach(
        cls,
        job_id: str,
        *,
        backend: Any = "local",
        callbacks: Callbacks | Mapping[str, Any] | None = None,
        reconnect: ReconnectPolicy | Mapping[str, Any] | None = None,
        abort_signal: AbortSignal | None = None,
        task_eval: TaskEval | None = None,
    ) -> Trainer:
        """A trainer bound to an existing job: ``start()`` returns ``job_id``
        without POSTing and ``wait()`` streams the job's log from the start.
        ``task_eval`` scores its checkpoints in this client (through
        ``ctx.infer``) unless the job was started with one."""
        non_empty_str("job_id", job_id)
        return cls(
            name=job_id,
            config={},
            callbacks=callbacks,
            abort_signal=abort_signal,
            backend=backend,
            reconnect=reconnect,
            job_id=job_id,
            task_eval=task_eval,
        )

    @property
    def job_id(self) -> str | None:
        if self._attached_id is not None:
            return self._attached_id
        return self.job.id if self.job is not None else self._start.value

    def __repr__(self) -> str:
        status = self.job.status if self.job is not None else "not started"
        return f"<Trainer {self.name!r} job={self.job_id} {status} backend={self.backend_kind}>"

    # ---------------------------------------------------------- listeners

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(item)`` for every stream item; returns an unsubscribe function.

        Items (``types.ListenerItem``), in stream order and before user
        callbacks: every parsed event; after each ``CheckpointSaved`` a
        ``CheckpointContext`` whose ``infer`` samples that checkpoint; and
        ``StreamNotice`` s (connected, reconnecting with attempt/delay/error,
        aborted, error). Runs on the streaming loop: keep it quick (no
        blocking calls such as ``infer``); exceptions are logged and ignored.
        """
        if not callable(listener):
            raise ConfigError("listener", f"must be callable, got {listener!r}")
        with self._listeners_lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._listeners_lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def _notify(self, item: ListenerItem) -> None:
        with self._listeners_lock:
            listeners = list(self._listeners)
        _tell(listeners, item)

    # -------------------------------------------------------------- start

    async def start_async(self) -> str:
        """Create the job (once); later and concurrent calls return the same id."""
        if self._attached_id is not None:
            return self._attached_id
        return await self._start.get(self._create_job)

    async def _create_job(self) -> str:
        api = await self.backend.resolve()
        async with api.client() as client:
            job = await client.create_job(api.scope, self.name, self.config)
        self.job = job
        return job.id

    def start(self) -> str:
        return run_sync(self.start_async())

    # ------------------------------------------------------------- cancel

    async def cancel_async(self) -> TrainingJob | None:
        """Ask the backend to stop the job (best effort; a local ``wait()`` keeps
        streaming until the job's terminal event). None before ``start()``."""
        job_id = self.job_id
        if job_id is None:
            return None
        api = await self.backend.resolve()
        async with api.client() as client:
            job = await client.cancel_job(api.scope, job_id)
        if job is not None and (self.job is None or not self.job.is_terminal):
            self.job = job
        return job

    def cancel(self) -> TrainingJob | None:
        return run_sync(self.cancel_async())

    # --------------------------------------------------------------- wait

    def wait(self, *, abort_signal: AbortSignal | None = None) -> TrainingResult:
        """Block until the job is terminal; see :meth:`wait_async`.

        Ctrl-C stops waiting but not the job (as in the Arkor SDK): one line
        says so and how to stop it, then KeyboardInterrupt is re-raised.
        """
        try:
            return run_sync(self.wait_async(abort_signal=abort_signal))
        except KeyboardInterrupt:
            print(self._interrupted_line(), file=sys.stderr, flush=True)
            raise announced_interrupt() from None

    def _interrupted_line(self) -> str:
        job_id = self.job_id
        if job_id is None:
            return "arkor-nb: interrupted before the job was created; nothing is running"
        return (
            f"arkor-nb: stopped waiting; job {job_id} keeps running on the {self.backend_kind} "
            f"backend; stop it with trainer.cancel() or the panel's Cancel button, or "
            f"{cancel_hint(job_id, self.backend_kind)}"
        )

    async def wait_async(self, *, abort_signal: AbortSignal | None = None) -> TrainingResult:
        """Start if needed, stream events to callbacks, return the TrainingResult.

        Resolves for completed, failed and cancelled jobs (read
        ``result.job.status``) and when the server ends the stream. Raises
        AbortedError when this call's or the trainer's abort signal fires
        (the backend job keeps running), ReconnectExhaustedError,
        CloudApiError for 401/403/410/426 on open or for a job the backend
        says does not exist, or the exception a callback raised.

        Concurrent waits on one trainer (say the notebook panel's and the
        user's) share ONE stream, so callbacks never fire twice; a per-call
        ``abort_signal`` detaches only its own call, and the stream stops
        when the last waiter leaves.
        """
        signals = [s for s in (self.abort_signal, abort_signal) if s is not None]
        for signal in signals:
            if signal.aborted:  # before anything is sent: not even start()
                self._notify(StreamNotice("aborted"))
                raise AbortedError(signal.reason)
        loop = asyncio.get_running_loop()
        run = self._stream.join(self._watch)
        waiter = asyncio.wrap_future(run.future)  # cancelling it never cancels the run
        fired: list[object] = []

        def on_abort(reason: object) -> None:
            fired.append(reason)
            try:
                loop.call_soon_threadsafe(waiter.cancel)
            except RuntimeError:  # loop already closed: nothing left to stop
                pass

        removers = [signal.add_listener(on_abort) for signal in signals]
        left = False
        try:
            return await waiter
        except asyncio.CancelledError:
            if fired:
                left = True
                if await self._stream.leave(run):
                    self._notify(StreamNotice("aborted"))
                raise AbortedError(fired[0]) from None
            raise
        finally:
            for remove in removers:
                remove()
            if not left:
                await self._stream.leave(run)

    async def _watch(self) -> TrainingResult:
        """The one stream reader behind all current waiters."""
        try:
            job_id = await self.start_async()
            known = await self._load_job(job_id)
            stream = JobStream(self.backend, job_id, self.reconnect, known=known)
            saved: list[Any] = []  # artifacts announced by checkpoint.saved (for a cancel)
            async with aclosing(stream.batches()) as batches:
                async for batch in batches:
                    result = await self._dispatch(batch, job_id, saved)
                    if result is not None:
                        return result
            return await self._result_after_end(job_id, saved)  # event: end, no terminal event
        except Exception as exc:
            self._notify(StreamNotice("error", error=exc))
            raise

    async def _load_job(self, job_id: str) -> bool:
        """Learn the job's name/status before streaming; True if it is known to exist.

        A job this trainer created exists. An attached id the backend answers
        404 for is a wrong or foreign id: a clear error now, not a retry loop.
        """
        if self.job is not None and self._attached_id is None:
            return True
        api = await self.backend.resolve()
        try:
            async with api.client() as client:
                self.job = await client.get_job(api.scope, job_id)
        except CloudApiError as exc:
            if exc.status == 404:
                where = describe_backend(self.backend_kind, api.base_url)
                raise JobNotFoundError(job_id, where) from None
            self.job = TrainingJob(id=job_id, name=self.name)
            return False
        except LOOKUP_ERRORS:
            self.job = TrainingJob(id=job_id, name=self.name)
            return False
        if self._attached_id is not None and self.job.name:
            self.name = self.job.name
        return True

    async def _result_after_end(self, job_id: str, saved: list[Any]) -> TrainingResult:
        """``event: end`` without a terminal event: the stream is over for good.
        Fetch the job once to report its status (no further stream is opened)."""
        try:
            api = await self.backend.resolve()
            async with api.client() as client:
                self.job = await client.get_job(api.scope, job_id)
        except LOOKUP_ERRORS as exc:
            logger.info("arkor_nb: job %s: stream ended; status lookup failed: %s", job_id, exc)
        job = self.job or TrainingJob(id=job_id, name=self.name)
        return TrainingResult(job=job, artifacts=list(saved) if job.status == CANCELLED else [],
                              metrics=self._judge.series)

    # ----------------------------------------------------------- dispatch

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
                _tell(listeners, item)
                continue
            if isinstance(item, CheckpointEval):
                item = judge.complete(item)  # callable scorers run here, on its examples
            chat = await self._chat_for() if isinstance(item, CheckpointSaved) else None
            callback, ctx, result = self._apply(item, job_id, saved, chat)
            judge.saw_step(getattr(item, "step", None))
            _tell(listeners, item)  # after _apply: listeners may read trainer.job
            if isinstance(ctx, CheckpointContext):
                _tell(listeners, ctx)  # so a panel can sample with ctx.infer
            if callback is not None:
                ctx._report = judge.reporter(getattr(ctx, "step", None), job_id)
                calls.append((callback, ctx))
            if isinstance(ctx, CheckpointContext) and judge.client_evaluates(self._job_config()):
                evaluated = await asyncio.to_thread(judge.evaluate, ctx.infer, ctx.step, job_id)
                eval_callback, eval_ctx, _ = self._apply(evaluated, job_id, saved, None)
                _tell(listeners, evaluated)
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
                _tell(listeners, reported)
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
                job = self.job = job.model_copy(update={"status": RUNNING})
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
                update={"status": RUNNING, "started_at": event.timestamp or job.started_at}
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
            update: dict[str, Any] = {"status": event.job_status,
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
                self._chat = SyncChatClient(api.base_url, api.token)
            return self._chat, api.scope


def _tell(listeners: list[Listener], item: ListenerItem) -> None:
    for listener in listeners:
        try:
            listener(item)
        except Exception:
            logger.exception("arkor_nb: a subscribe() listener raised; ignored")


def create_trainer(
    *,
    name: str,
    model: str,
    dataset: Mapping[str, Any] | None = None,
    lora: Mapping[str, Any] | None = None,
    max_steps: int | None = None,
    num_train_epochs: float | None = None,
    learning_rate: float | None = None,
    batch_size: int | None = None,
    optim: str | None = None,
    lr_scheduler_type: str | None = None,
    weight_decay: float | None = None,
    warmup_steps: int | None = None,
    logging_steps: int | None = None,
    save_steps: int | None = None,
    eval_steps: int | None = None,
    dataset_format: str | dict[str, str] | None = None,
    dataset_split: str | float | None = None,
    train_on_responses_only: bool | None = None,
    dry_run: bool | None = None,
    callbacks: Callbacks | Mapping[str, Any] | None = None,
    abort_signal: AbortSignal | None = None,
    backend: Any = "local",
    reconnect: ReconnectPolicy | Mapping[str, Any] | None = None,
    task_eval: TaskEval | None = None,
) -> Trainer:
    """Build a :class:`Trainer`. Nothing is sent until ``start()``/``wait()``.

    ``task_eval=ak.TaskEval(...)`` scores held-out prompts at every checkpoint:
    on the local backend the worker does it with the model in memory (sent as
    ``taskEval``); on the cloud this client does it through ``ctx.infer``.

    Keyword-only; an unknown keyword raises TypeError naming it, a bad value
    raises ConfigError naming the field. See docs/protocol.md for each option.
    """
    resolved_backend = make_backend(backend)
    non_empty_str("name", name)
    non_empty_str("model", model)
    if resolved_backend.kind == "cloud" and model not in SUPPORTED_MODELS:
        raise ConfigError(
            "model",
            f"{model!r} is not available on the Arkor cloud; supported models: "
            f"{', '.join(SUPPORTED_MODELS)} (any Hugging Face model works with backend=\"local\")",
        )
    options = {
        "max_steps": max_steps,
        "num_train_epochs": num_train_epochs,
        "learning_rate": learning_rate,
        "batch_size": batch_size,
        "optim": optim,
        "lr_scheduler_type": lr_scheduler_type,
        "weight_decay": weight_decay,
        "warmup_steps": warmup_steps,
        "logging_steps": logging_steps,
        "save_steps": save_steps,
        "eval_steps": eval_steps,
        "dataset_format": dataset_format,
        "dataset_split": dataset_split,
        "train_on_responses_only": train_on_responses_only,
        "dry_run": dry_run,
    }
    config = build_config(
        model=model,
        dataset=dataset,
        lora=lora,
        options=options,
        absolute_paths=resolved_backend.kind == "local",
    )
    task_eval = check_task_eval(task_eval)
    if task_eval is not None and resolved_backend.kind == "local":
        config["taskEval"] = task_eval.to_wire()
    return Trainer(
        name=name,
        config=config,
        callbacks=callbacks,
        abort_signal=abort_signal,
        backend=resolved_backend,
        reconnect=reconnect,
        task_eval=task_eval,
    )

