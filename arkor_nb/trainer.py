"""create_trainer / Trainer: start, wait (a reconnecting SSE reader), cancel, dispatch.

The async methods are the real implementation; the sync ones run them on
arkor_nb's private event-loop thread (see ``_sync``), so the same trainer
works in a script, in Jupyter and from worker threads.

Stream rules (docs/protocol.md): a clean EOF after at least one parseable data frame
reconnects at ``initial_delay`` without counting a failure; a connect error,
a stall, or an EOF without a parseable frame counts one failure and backs
off ``initial_delay * 2**n`` +/-25%, clamped to ``max_delay``; the counter
resets on every parseable data frame; after ``max_attempts`` failed
reconnects the next failure raises ReconnectExhaustedError. 401/403/410/426
on open raise CloudApiError at once. A callback exception ends ``wait()``
with that exception, unchanged, and no reconnect.

Nothing is lost or delivered twice: events are de-duplicated by id, and
``Last-Event-ID`` only moves past frames that decoded. A frame damaged in
transit (undecodable data, a lost ``id:`` line, or a jump in otherwise
consecutive ids) makes the reader resume from the last good id once; what
is still broken after that replay is skipped, never fatal.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import json
import logging
import random
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import httpx

from ._config import build_config, non_empty_str
from ._sync import AsyncOnce, run_sync
from .abort import AbortSignal
from .backends import SUPPORTED_MODELS, CloudBackend, LocalBackend, ResolvedApi
from .client import (
    PERMANENT_STREAM_STATUSES,
    CloudApiClient,
    Scope,
    SyncChatClient,
    chat_async,
    iter_sse,
)
from .errors import AbortedError, CloudApiError, ConfigError, ReconnectExhaustedError
from .types import (
    Callbacks,
    CheckpointContext,
    CheckpointSaved,
    CompletedContext,
    FailedContext,
    LogContext,
    ReconnectPolicy,
    StartedContext,
    StreamNotice,
    TrainingCancelled,
    TrainingCompleted,
    TrainingEvent,
    TrainingFailed,
    TrainingJob,
    TrainingLog,
    TrainingResult,
    TrainingStarted,
    parse_event,
)

logger = logging.getLogger("arkor_nb")

Backend = LocalBackend | CloudBackend
Listener = Callable[[Any], None]
# What counts as a transport failure while opening or reading the stream.
STREAM_ERRORS: tuple[type[Exception], ...] = (httpx.HTTPError, OSError)  # incl. CorruptFrameError
# ...and what a best-effort job lookup may swallow.
LOOKUP_ERRORS: tuple[type[Exception], ...] = (CloudApiError, *STREAM_ERRORS)


class StreamClosedError(ConnectionError):
    """The stream ended (cleanly) without a single parseable data frame."""


class CorruptFrameError(ConnectionError):
    """A frame with an id did not decode: treated as transport damage, retried once."""


class _CallbackFailed(Exception):
    """Carries a user-callback exception past the transport-error handlers."""

    def __init__(self, original: Exception) -> None:
        super().__init__(repr(original))
        self.original = original


def _fingerprint(payload: dict[str, Any]) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)


def backoff_delay(policy: ReconnectPolicy, failures: int, rng: random.Random | None = None) -> float:
    """Delay before the reconnect that follows ``failures`` earlier failures.

    ``initial_delay * 2**failures`` with +/-25% jitter, clamped to
    ``[0, max_delay]`` after the jitter, so the cap is never exceeded.
    """
    base = min(policy.initial_delay * (2.0**min(failures, 64)), policy.max_delay)
    jitter = base * ((rng or random).random() * 0.5 - 0.25)
    return max(0.0, min(policy.max_delay, base + jitter))


def make_backend(backend: Any) -> Backend:
    if isinstance(backend, (LocalBackend, CloudBackend)):
        return backend
    if backend == "local":
        return LocalBackend()
    if backend == "cloud":
        return CloudBackend()
    raise ConfigError(
        "backend",
        f'must be "local", "cloud", ak.LocalBackend(...) or ak.CloudBackend(...), got {backend!r}',
    )


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


def _is_async_callable(fn: Any) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - callable objects with async __call__
    )


class CheckpointInfer:
    """``ctx.infer``: chat with the checkpoint that was just saved.

    ``infer(messages=[...], temperature=..., max_tokens=..., stream=True)``
    posts ``/v1/inference/chat`` bound to ``{"kind": "checkpoint", "jobId",
    "step"}`` and returns the ``httpx.Response``. With ``stream=True`` (the
    default) the body is not read yet: iterate ``response.iter_lines()``
    (SSE ``data:`` chunks, then ``data: [DONE]``) and close it with
    ``response.close()`` (or ``with contextlib.closing(response): ...``). With ``stream=False`` the
    body is read (``response.json()``). Blocking: arkor_nb runs sync
    callbacks on a worker thread, so call it freely there; from an ``async``
    callback use ``await ctx.infer.aio(...)``.
    """

    def __init__(self, chat: SyncChatClient, scope: Scope, adapter: dict[str, Any]) -> None:
        self._chat = chat
        self._scope = scope
        self.adapter = adapter

    def __call__(
        self,
        messages: Sequence[Mapping[str, Any]] | None = None,
        *,
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: int | None = None,
        stream: bool = True,
        tools: list[Any] | None = None,
        tool_choice: Any = None,
        response_format: Any = None,
        structured_outputs: Any = None,
    ) -> httpx.Response:
        body = self._body(
            messages, temperature, top_p, max_tokens, stream, tools, tool_choice,
            response_format, structured_outputs,
        )
        return self._chat.chat(self._scope, body, stream=bool(stream))

    async def aio(
        self,
        messages: Sequence[Mapping[str, Any]] | None = None,
        *,
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: int | None = None,
        stream: bool = True,
        tools: list[Any] | None = None,
        tool_choice: Any = None,
        response_format: Any = None,
        structured_outputs: Any = None,
    ) -> httpx.Response:
        """Async twin for ``async`` callbacks: ``await ctx.infer.aio(...)``; with
        ``stream=True`` read ``response.aiter_lines()`` then ``await response.aclose()``."""
        body = self._body(
            messages, temperature, top_p, max_tokens, stream, tools, tool_choice,
            response_format, structured_outputs,
        )
        return await chat_async(
            self._chat.base_url, self._chat.token, self._scope, body, stream=bool(stream)
        )

    def _body(
        self,
        messages: Sequence[Mapping[str, Any]] | None,
        temperature: float | None,
        top_p: float | None,
        max_tokens: int | None,
        stream: bool,
        tools: list[Any] | None,
        tool_choice: Any,
        response_format: Any,
        structured_outputs: Any,
    ) -> dict[str, Any]:
        if messages is None or isinstance(messages, (str, bytes)):
            raise ConfigError("messages", 'pass a list like [{"role": "user", "content": "hi"}]')
        body: dict[str, Any] = {
            "messages": [dict(m) for m in messages],
            "adapter": dict(self.adapter),
            "stream": bool(stream),
        }
        optional = {
            "temperature": temperature,
            "topP": top_p,
            "maxTokens": max_tokens,
            "tools": tools,
            "toolChoice": tool_choice,
            "responseFormat": response_format,
            "structuredOutputs": structured_outputs,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        return body


@dataclass
class _Pump:
    """One running stream shared by every concurrent ``wait()`` of a trainer."""

    future: concurrent.futures.Future[TrainingResult]
    loop: asyncio.AbstractEventLoop
    task: asyncio.Task[None] | None = None
    waiters: int = 0


class _SeenIds:
    """Event ids already delivered, in O(1) memory for numeric ids.

    Ids are monotonic per job (docs/protocol.md), so a numeric id at or below the
    highest one seen is a replayed duplicate; only non-numeric ids (some other
    server's scheme) need a set. Keeping every id cost ~100 MB per 1M events.
    """

    __slots__ = ("_high", "_other")

    def __init__(self) -> None:
        self._high: int | None = None
        self._other: set[str] = set()

    def add(self, event_id: str) -> None:
        if event_id.isdigit():
            value = int(event_id)
            if self._high is None or value > self._high:
                self._high = value
        else:
            self._other.add(event_id)

    def __contains__(self, event_id: object) -> bool:
        if not isinstance(event_id, str):
            return False
        if event_id.isdigit():
            return self._high is not None and int(event_id) <= self._high
        return event_id in self._other

    def __bool__(self) -> bool:
        return self._high is not None or bool(self._other)


@dataclass
class _StreamState:
    """Per-``wait()`` bookkeeping of the reconnecting reader."""

    api: ResolvedApi
    job_id: str
    last_event_id: str | None = None
    seen_ids: _SeenIds = field(default_factory=lambda: _SeenIds())
    idless: set[str] = field(default_factory=set)  # fingerprints of frames that came without an id
    corrupt_ids: set[str] = field(default_factory=set)  # ids (or fingerprints) damaged once
    sequential: bool | None = None  # ids so far were consecutive integers (None: not known yet)
    failures: int = 0
    parseable: bool = False
    ended: bool = False


def _check_sequence(state: _StreamState, frame_id: str) -> None:
    """On a server whose ids count up by one, a jump means frames were lost in
    transit (e.g. a damaged frame was dropped): resume from the last good id.
    A jump that is still there after the replay is real and accepted."""
    last = state.last_event_id
    if state.sequential is False or last is None or not (last.isdigit() and frame_id.isdigit()):
        return
    previous, current = int(last), int(frame_id)
    if current == previous + 1:
        state.sequential = True
    elif current > previous + 1 and state.sequential:
        key = f"gap:{previous}:{current}"
        if key not in state.corrupt_ids:
            state.corrupt_ids.add(key)
            raise CorruptFrameError(
                f"events {previous + 1}..{current - 1} went missing; resuming after {previous}"
            )
        state.sequential = False
    else:
        state.sequential = False


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
        self._start = AsyncOnce[str]()
        self._listeners: list[Listener] = []
        self._listeners_lock = threading.Lock()
        self._chat: SyncChatClient | None = None
        self._chat_lock = threading.Lock()
        self._pump: _Pump | None = None
        self._pump_lock = threading.Lock()

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
    ) -> Trainer:
        """A trainer bound to an existing job: ``start()`` returns ``job_id``
        without POSTing and ``wait()`` streams the job's log from the start."""
        non_empty_str("job_id", job_id)
        return cls(
            name=job_id,
            config={},
            callbacks=callbacks,
            abort_signal=abort_signal,
            backend=backend,
            reconnect=reconnect,
            job_id=job_id,
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
        """Call ``listener(item)`` for every parsed event (before user callbacks)
        and every :class:`StreamNotice`. Runs on the streaming loop: keep it
        quick; exceptions are logged and ignored. Returns an unsubscribe function."""
        if not callable(listener):
            raise ConfigError("listener", f"must be callable, got {listener!r}")
        with self._listeners_lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._listeners_lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def _notify(self, item: Any) -> None:
        with self._listeners_lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(item)
            except Exception:
                logger.exception("arkor_nb: a subscribe() listener raised; ignored")

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
        """Block until the job is terminal; see :meth:`wait_async`."""
        return run_sync(self.wait_async(abort_signal=abort_signal))

    async def wait_async(self, *, abort_signal: AbortSignal | None = None) -> TrainingResult:
        """Start if needed, stream events to callbacks, return the TrainingResult.

        Resolves for completed, failed and cancelled jobs (read
        ``result.job.status``). Raises AbortedError when this call's or the
        trainer's abort signal fires (the backend job keeps running),
        ReconnectExhaustedError, CloudApiError for 401/403/410/426 on open,
        or the exception a callback raised.

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
        pump = self._join_pump(loop)
        waiter = asyncio.wrap_future(pump.future)  # cancelling it never cancels the pump
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
                if await self._leave_pump(pump):
                    self._notify(StreamNotice("aborted"))
                raise AbortedError(fired[0]) from None
            raise
        finally:
            for remove in removers:
                remove()
            if not left:
                await self._leave_pump(pump)

    def _join_pump(self, loop: asyncio.AbstractEventLoop) -> _Pump:
        with self._pump_lock:
            pump = self._pump
            if pump is None or pump.future.done():
                future: concurrent.futures.Future[TrainingResult] = concurrent.futures.Future()
                future.set_running_or_notify_cancel()
                pump = self._pump = _Pump(future=future, loop=loop)
                pump.task = loop.create_task(self._run_pump(future))
            pump.waiters += 1
            return pump

    async def _leave_pump(self, pump: _Pump) -> bool:
        """Detach one waiter; the last one out stops the stream. True if it stopped."""
        with self._pump_lock:
            pump.waiters -= 1
            stop = pump.waiters == 0 and not pump.future.done()
        if not stop or pump.task is None:
            return False
        if pump.loop is asyncio.get_running_loop():
            pump.task.cancel()
            await asyncio.gather(pump.task, return_exceptions=True)
        else:
            try:
                pump.loop.call_soon_threadsafe(pump.task.cancel)
            except RuntimeError:
                pass
        return True

    async def _run_pump(self, future: concurrent.futures.Future[TrainingResult]) -> None:
        """The one stream reader behind all current waiters; settles ``future``."""
        try:
            result = await self._wait_core()
        except asyncio.CancelledError:
            if not future.done():
                future.set_exception(
                    AbortedError("the stream was stopped (every waiter left, or its loop closed)")
                )
            raise
        except BaseException as exc:
            self._notify(StreamNotice("error", error=exc))
            future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            future.set_result(result)

    async def _wait_core(self) -> TrainingResult:
        job_id = await self.start_async()
        api = await self.backend.resolve()
        state = _StreamState(api=api, job_id=job_id)
        policy = self.reconnect
        async with api.client() as client:
            if self.job is None:
                await self._load_job(client, state)
            while True:
                error: BaseException
                callback_error: Exception | None = None
                try:
                    async with client.open_event_stream(
                        api.scope, job_id, state.last_event_id
                    ) as response:
                        self._notify(StreamNotice("connected", attempt=state.failures))
                        result = await self._consume(response, state)
                        if result is None and state.ended:
                            result = await self._result_after_end(client, state)
                    if result is not None:
                        return result
                    if state.parseable:
                        delay = policy.initial_delay
                        self._notify(StreamNotice("reconnecting", attempt=0, delay=delay))
                        await asyncio.sleep(delay)
                        continue
                    error = StreamClosedError(
                        "the event stream closed without a parseable data frame"
                    )
                except _CallbackFailed as failed:
                    callback_error = failed.original
                except CloudApiError as exc:
                    if exc.status in PERMANENT_STREAM_STATUSES:
                        raise
                    error = exc
                except STREAM_ERRORS as exc:
                    error = exc
                if callback_error is not None:
                    # Re-raised outside the except block so it arrives unchanged.
                    raise callback_error
                if policy.max_attempts is not None and state.failures >= policy.max_attempts:
                    raise ReconnectExhaustedError(state.failures + 1, error) from error
                delay = backoff_delay(policy, state.failures)
                state.failures += 1
                self._notify(
                    StreamNotice("reconnecting", attempt=state.failures, delay=delay, error=error)
                )
                await asyncio.sleep(delay)

    async def _load_job(self, client: CloudApiClient, state: _StreamState) -> None:
        """Attached trainers learn the job's name/status before streaming."""
        try:
            self.job = await client.get_job(state.api.scope, state.job_id)
            if self._attached_id is not None and self.job.name:
                self.name = self.job.name
        except LOOKUP_ERRORS:
            self.job = TrainingJob(id=state.job_id, name=self.name)

    async def _result_after_end(
        self, client: CloudApiClient, state: _StreamState
    ) -> TrainingResult | None:
        """``event: end`` without a terminal event: trust the job's own status."""
        try:
            job = await client.get_job(state.api.scope, state.job_id)
        except LOOKUP_ERRORS:
            return None
        if not job.is_terminal:
            return None
        self.job = job
        return TrainingResult(job=job, artifacts=[])

    async def _consume(
        self, response: httpx.Response, state: _StreamState
    ) -> TrainingResult | None:
        """Read one connection; returns the result on a terminal event.

        ``Last-Event-ID`` only advances past frames that decoded, so a frame
        corrupted in transit (garbage inside its ``data:``) is replayed by
        the server after the reconnect instead of being lost (a frame that is
        broken again on replay is skipped, never fatal). A valid frame that
        lost its ``id:`` line on a stream that carries ids is treated the same
        way; frames of id-less servers are de-duplicated by content.
        """
        state.parseable = False
        state.ended = False
        async for frame in iter_sse(response):
            if frame.event == "ping":
                if frame.id is not None:
                    state.last_event_id = frame.id
                continue
            if frame.event == "end":
                state.ended = True
                return None
            if not frame.data.strip():
                continue
            try:
                payload = json.loads(frame.data)
            except ValueError:
                if frame.id is not None and frame.id not in state.seen_ids:
                    if frame.id not in state.corrupt_ids:
                        # Probably damaged in transit: resume from the last good id
                        # so the server replays it, in order.
                        state.corrupt_ids.add(frame.id)
                        raise CorruptFrameError(
                            f"event {frame.id} did not decode; resuming after "
                            f"{state.last_event_id}"
                        ) from None
                    # Broken again on replay: the record itself is bad. Skip it.
                    state.seen_ids.add(frame.id)
                    state.last_event_id = frame.id
                continue
            if not isinstance(payload, dict):
                continue
            state.parseable = True
            state.failures = 0
            if frame.id is not None:
                if frame.id in state.seen_ids:
                    continue  # a replayed duplicate: neither delivered nor resumed from
                _check_sequence(state, frame.id)
                state.seen_ids.add(frame.id)
                state.last_event_id = frame.id
                if state.idless and _fingerprint(payload) in state.idless:
                    continue
            else:
                fingerprint = _fingerprint(payload)
                if fingerprint in state.idless:
                    continue
                if state.seen_ids and fingerprint not in state.corrupt_ids:
                    # This server sends ids, so a data frame without one had its
                    # id line damaged: resume and take the intact replay instead.
                    state.corrupt_ids.add(fingerprint)
                    raise CorruptFrameError(
                        f"a data frame arrived without its id; resuming after "
                        f"{state.last_event_id}"
                    )
                state.idless.add(fingerprint)
            event = parse_event(payload, frame.id)
            if event is None:
                continue
            result = await self._dispatch(event, state)
            if result is not None:
                return result
        return None

    # ----------------------------------------------------------- dispatch

    def _chat_client(self, api: ResolvedApi) -> SyncChatClient:
        with self._chat_lock:
            if self._chat is None:
                self._chat = SyncChatClient(api.base_url, api.token)
            return self._chat

    async def _dispatch(self, event: TrainingEvent, state: _StreamState) -> TrainingResult | None:
        job = self.job or TrainingJob(id=state.job_id, name=self.name)
        callbacks = self.callbacks
        if isinstance(event, TrainingStarted):
            job = self.job = job.model_copy(
                update={"status": "running", "started_at": event.timestamp or job.started_at}
            )
            self._notify(event)
            await self._call(callbacks.on_started, StartedContext(job=job))
        elif isinstance(event, TrainingLog):
            if job.status == "queued":
                job = self.job = job.model_copy(update={"status": "running"})
            self._notify(event)
            await self._call(
                callbacks.on_log,
                LogContext(
                    step=event.step,
                    loss=event.loss,
                    eval_loss=event.eval_loss,
                    learning_rate=event.learning_rate,
                    epoch=event.epoch,
                    samples_per_second=event.samples_per_second,
                    job=job,
                ),
            )
        elif isinstance(event, CheckpointSaved):
            self._notify(event)
            adapter = {"kind": "checkpoint", "jobId": state.job_id, "step": event.step}
            infer = CheckpointInfer(self._chat_client(state.api), state.api.scope, adapter)
            await self._call(
                callbacks.on_checkpoint,
                CheckpointContext(
                    step=event.step,
                    adapter=adapter,
                    job=job,
                    infer=infer,
                    artifacts=list(event.artifacts or []),
                ),
            )
        elif isinstance(event, TrainingCompleted):
            artifacts = list(event.artifacts or [])
            job = self.job = job.model_copy(
                update={"status": "completed", "completed_at": event.timestamp or None}
            )
            self._notify(event)
            await self._call(callbacks.on_completed, CompletedContext(job=job, artifacts=artifacts))
            return TrainingResult(job=job, artifacts=artifacts)
        elif isinstance(event, TrainingFailed):
            job = self.job = job.model_copy(
                update={
                    "status": "failed",
                    "error": event.error,
                    "completed_at": event.timestamp or None,
                }
            )
            self._notify(event)
            await self._call(callbacks.on_failed, FailedContext(job=job, error=event.error))
            return TrainingResult(job=job, artifacts=[])
        elif isinstance(event, TrainingCancelled):
            job = self.job = job.model_copy(
                update={"status": "cancelled", "completed_at": event.timestamp or None}
            )
            self._notify(event)
            return TrainingResult(job=job, artifacts=[])
        return None

    async def _call(self, callback: Any, ctx: Any) -> None:
        """Await one user callback. Sync callbacks run on a worker thread so they
        may block (``ctx.infer``) or call the sync API (``trainer.cancel()``)
        without stalling or deadlocking the event loop."""
        if callback is None:
            return
        try:
            if _is_async_callable(callback):
                await callback(ctx)
            else:
                outcome = await asyncio.to_thread(callback, ctx)
                if inspect.isawaitable(outcome):
                    await outcome
        except Exception as exc:
            raise _CallbackFailed(exc) from exc


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
) -> Trainer:
    """Build a :class:`Trainer`. Nothing is sent until ``start()``/``wait()``.

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
    return Trainer(
        name=name,
        config=config,
        callbacks=callbacks,
        abort_signal=abort_signal,
        backend=resolved_backend,
        reconnect=reconnect,
    )

