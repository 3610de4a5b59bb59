"""One job's event stream: SSE decoding, resume, de-dup, backoff, failure counting.

:class:`JobStream` is an async generator of typed items (wire events and
:class:`StreamNotice` s) that needs no Trainer: ``async for item in
JobStream(backend, job_id, policy)``. ``batches()`` yields the same items one
list per received chunk, so the Trainer can run a chunk's callbacks in one
thread hop. The rules are the Arkor protocol's (docs/protocol.md):

* frames are decoded by ``sse.FrameDecoder``; an unparseable data frame, an unknown type
  and an empty frame are skipped and the stream goes on (never a reconnect);
  ``event: ping`` is a keepalive; ``event: end`` ends the stream for good;
* de-dup by event id, resume with ``Last-Event-ID`` (the last id received);
* a clean EOF after at least one parseable data frame reconnects at
  ``initial_delay`` without counting a failure; a connect error, a stall (no
  byte for 3x the keepalive: the read timeout) or an EOF without a parseable
  frame counts one failure and backs off ``initial_delay * 2**n`` +/-25%,
  clamped to ``max_delay``; each parseable data frame resets the count;
  ``max_attempts`` failures in a row raise ReconnectExhaustedError;
* on open, 401/403/410/426 raise CloudApiError at once; 404, 408, 429 and 5xx
  are transient, except 404 for a job this client never saw exist (a wrong
  id would otherwise be retried forever): that raises at once, naming it;
* every reconnect is announced by a ``reconnecting`` notice (attempt, next
  delay, last error); a connection refused asks the backend to
  ``relocate()`` (a local server restarted on another port is found again).
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, Protocol

import httpx

from arkor_nb.core.contexts import ReconnectPolicy, StreamNotice
from arkor_nb.core.errors import CloudApiError, JobNotFoundError, ReconnectExhaustedError
from arkor_nb.core.events import TrainingEvent, parse_event_json
from arkor_nb.sdk.http import PERMANENT_STREAM_STATUSES
from arkor_nb.sdk.sse import FrameDecoder

# What counts as a transport failure while opening or reading the stream.
STREAM_ERRORS: tuple[type[Exception], ...] = (httpx.HTTPError, OSError)

StreamItem = TrainingEvent | StreamNotice


class StreamClosedError(ConnectionError):
    """The stream ended (cleanly) without a single parseable data frame."""


class BackendLike(Protocol):
    """What a stream needs from a backend (``backends.LocalBackend``/``CloudBackend``)."""

    kind: str

    async def resolve(self) -> Any: ...

    async def relocate(self, stale: Any) -> Any: ...


def backoff_delay(policy: ReconnectPolicy, failures: int, rng: random.Random | None = None) -> float:
    """Delay before the reconnect that follows ``failures`` earlier failures.

    ``initial_delay * 2**failures`` with +/-25% jitter, clamped to
    ``[0, max_delay]`` after the jitter, so the cap is never exceeded.
    """
    base = min(policy.initial_delay * (2.0 ** min(failures, 64)), policy.max_delay)
    jitter = base * ((rng or random).random() * 0.5 - 0.25)
    return max(0.0, min(policy.max_delay, base + jitter))


def describe_backend(kind: str, base_url: str) -> str:
    return f"the {kind} backend at {base_url}"


class SeenIds:
    """Event ids already delivered, in O(1) memory for numeric ids.

    Ids are monotonic per job, so a numeric id at or below the highest one
    seen is a replayed duplicate; only non-numeric ids need a set.
    """

    __slots__ = ("_high", "_other")

    def __init__(self) -> None:
        self._high = -1
        self._other: set[str] = set()

    def check_and_add(self, event_id: str) -> bool:
        """True if ``event_id`` is new (and remember it), False for a duplicate."""
        if event_id.isdigit():
            value = int(event_id)
            if value <= self._high:
                return False
            self._high = value
            return True
        if event_id in self._other:
            return False
        self._other.add(event_id)
        return True


class JobStream:
    """The reconnecting event stream of one job (see the module docstring).

    ``known=True`` says this client has seen the job exist (it created or
    fetched it), so a 404 is transient; a successful open sets it too.
    After iteration, ``ended`` tells whether the server sent ``event: end``.
    """

    def __init__(
        self,
        backend: BackendLike,
        job_id: str,
        policy: ReconnectPolicy | None = None,
        *,
        known: bool = False,
        last_event_id: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.backend = backend
        self.job_id = job_id
        self.policy = policy or ReconnectPolicy()
        self.known = known
        self.last_event_id = last_event_id
        self.failures = 0
        self.ended = False
        self._rng = rng
        self._seen = SeenIds()
        self._parsed = False  # a parseable data frame arrived on this connection

    async def __aiter__(self) -> AsyncIterator[StreamItem]:
        async for batch in self.batches():
            for item in batch:
                yield item

    async def batches(self) -> AsyncGenerator[list[StreamItem], None]:
        """Items one list per received chunk, until ``event: end`` (then return)."""
        api = await self.backend.resolve()
        client = api.client()
        await client.__aenter__()
        try:
            while True:
                error: BaseException
                try:
                    async with client.open_event_stream(
                        api.scope, self.job_id, self.last_event_id
                    ) as response:
                        self.known = True
                        yield [StreamNotice("connected", attempt=self.failures)]
                        async for batch in self._read(response):
                            yield batch
                    if self.ended:
                        return
                    if self._parsed:  # a clean close after data: resume at once-ish
                        delay = self.policy.initial_delay
                        yield [StreamNotice("reconnecting", attempt=0, delay=delay)]
                        await asyncio.sleep(delay)
                        continue
                    error = StreamClosedError(
                        "the event stream closed without a parseable data frame"
                    )
                except CloudApiError as exc:
                    if exc.status in PERMANENT_STREAM_STATUSES:
                        raise
                    if exc.status == 404 and not self.known:
                        where = describe_backend(self.backend.kind, api.base_url)
                        raise JobNotFoundError(self.job_id, where) from None
                    error = exc
                except STREAM_ERRORS as exc:
                    error = exc
                policy = self.policy
                if policy.max_attempts is not None and self.failures >= policy.max_attempts:
                    raise ReconnectExhaustedError(self.failures + 1, error) from error
                delay = backoff_delay(policy, self.failures, self._rng)
                self.failures += 1
                if isinstance(error, httpx.ConnectError):
                    moved = await self.backend.relocate(api)
                    if moved != api:  # the server is elsewhere now: go there at once
                        await client.__aexit__(None, None, None)
                        api, client = moved, moved.client()
                        await client.__aenter__()
                        delay = min(delay, policy.initial_delay)
                yield [
                    StreamNotice("reconnecting", attempt=self.failures, delay=delay, error=error)
                ]
                await asyncio.sleep(delay)
        finally:
            await client.__aexit__(None, None, None)

    async def _read(self, response: httpx.Response) -> AsyncIterator[list[StreamItem]]:
        """Decode one connection (``sse.FrameDecoder``), one list per received chunk.

        A frame cut off by EOF is never dispatched (SSE dispatches on the
        blank line), so a dropped connection cannot deliver half an event.
        """
        self._parsed = False
        decoder = FrameDecoder()
        async for text in response.aiter_text():
            batch: list[StreamItem] = []
            for frame in decoder.feed(text):
                if frame.event == "ping":
                    if frame.id is not None:
                        self.last_event_id = frame.id
                    continue
                if frame.event == "end":
                    self.ended = True
                    if batch:
                        yield batch
                    return
                event = self._parse(frame.data, frame.id)
                if event is not None:
                    batch.append(event)
            if batch:
                yield batch

    def _parse(self, data: str, frame_id: str | None) -> TrainingEvent | None:
        """One data frame -> a typed event, or None (skipped: empty, unparseable,
        unknown type, or a duplicate id).

        A frame's id moves the resume point even when its data is skipped (as
        in EventSource), so a broken record is not replayed after every
        reconnect; only a parseable frame resets the failure count.
        """
        if not data or data.isspace():
            return None
        event = parse_event_json(data)
        if event is not None or _is_json_object(data):
            self._parsed = True
            self.failures = 0
        if frame_id is not None:
            if not self._seen.check_and_add(frame_id):
                return None  # a replayed duplicate
            self.last_event_id = frame_id
            if event is not None:
                # straight into the model's field storage: pydantic's __setattr__
                # costs ~3 us an event and event_id is client-side only (excluded)
                event.__dict__["event_id"] = frame_id
        return event


def _is_json_object(data: str) -> bool:
    """A parseable data frame whose type we do not know (or whose fields are bad)."""
    try:
        return isinstance(json.loads(data), dict)
    except ValueError:
        return False
