"""Trainer: the public API of one run (start, wait, cancel, subscribe).

How one event travels: :class:`~arkor_nb.sdk.stream.JobStream` reads the job's
SSE stream (decoding, resume, de-dup, backoff: see that module) and yields
typed events one chunk at a time; :meth:`Dispatcher._dispatch` (``dispatch.py``) folds each event
into ``trainer.job``, hands it to the ``subscribe`` listeners, builds the
callback context, and runs the chunk's callbacks together
(``callbacks.run_callbacks``). A terminal event, or ``event: end``, ends
``wait()``.

The async methods are the real implementation; the sync ones run them on
arkor_nb's private event-loop thread (``sync``), so the same trainer works
in a script, in Jupyter and from worker threads. Concurrent waits share one
stream (``sync.SharedRun``), so callbacks never fire twice.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections.abc import Callable, Mapping
from contextlib import aclosing
from typing import Any

from arkor_nb.core.contexts import (
    Callbacks,
    Listener,
    ListenerItem,
    ReconnectPolicy,
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
from arkor_nb.core.format import cancel_hint
from arkor_nb.core.status import CANCELLED
from arkor_nb.core.taskeval import TaskEval
from arkor_nb.core.wire import TrainingJob
from arkor_nb.sdk.abort import AbortSignal
from arkor_nb.sdk.arguments import check_job_id
from arkor_nb.sdk.backends import (
    make_backend,
)
from arkor_nb.sdk.chat_transport import SyncChatClient
from arkor_nb.sdk.config import make_callbacks, make_reconnect
from arkor_nb.sdk.dispatch import Dispatcher, tell
from arkor_nb.sdk.judging import Judge, check_task_eval
from arkor_nb.sdk.stream import STREAM_ERRORS, JobStream, describe_backend
from arkor_nb.sdk.sync import AsyncOnce, SharedRun, run_sync

logger = logging.getLogger("arkor_nb")

# What a best-effort job lookup may swallow.
LOOKUP_ERRORS: tuple[type[Exception], ...] = (CloudApiError, *STREAM_ERRORS)


class Trainer(Dispatcher):
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
        check_job_id(job_id)
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
        tell(listeners, item)

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

