"""Server-Sent-Events for a job's log: replay from the store, then live tail.

The store is the only source of events: a subscriber keeps a cursor (the
last id it sent), reads the next page after it, and sleeps on a per-job
wake-up when it is caught up. Memory per subscriber is one page, however
long the log; a wake-up costs one indexed read per subscriber.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator

from starlette.responses import StreamingResponse

from arkor_nb.core.events import TERMINAL_EVENT_TYPES
from arkor_nb.core.status import TERMINAL_STATUSES
from arkor_nb.local.server.store import Store

PAGE_SIZE = 500
DEFAULT_PING_S = 15.0
DEFAULT_RETRY_MS = 3000


class Hub:
    """Wakes the SSE subscribers of a job when its log grows.

    Writers live on worker-reader threads; subscribers on the server's event
    loop. ``notify`` may be called from any thread and coalesces: a burst of
    appends schedules a single wake-up on the loop.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._futures: dict[str, asyncio.Future[None]] = {}
        self._pending: set[str] = set()
        self._lock = threading.Lock()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def waiter(self, job_id: str) -> asyncio.Future[None]:
        """A future resolved by the next ``notify(job_id)``; take it *before* reading."""
        fut = self._futures.get(job_id)
        if fut is None or fut.done():
            assert self._loop is not None, "Hub.bind() was not called"
            fut = self._loop.create_future()
            self._futures[job_id] = fut
        return fut

    def notify(self, job_id: str) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with self._lock:
            if job_id in self._pending:
                return
            self._pending.add(job_id)
        try:
            loop.call_soon_threadsafe(self._fire, job_id)
        except RuntimeError:  # loop closed between the check and the call
            with self._lock:
                self._pending.discard(job_id)

    def _fire(self, job_id: str) -> None:
        with self._lock:
            self._pending.discard(job_id)
        fut = self._futures.pop(job_id, None)
        if fut is not None and not fut.done():
            fut.set_result(None)


def _frame(*, event_id: int, data: str, event: str | None = None, retry: int | None) -> str:
    head = f"retry: {retry}\n" if retry is not None else ""
    kind = f"event: {event}\n" if event is not None else ""
    return f"{head}id: {event_id}\n{kind}data: {data}\n\n"


async def job_event_frames(
    store: Store,
    hub: Hub,
    job_id: str,
    *,
    after: int = 0,
    ping_s: float = DEFAULT_PING_S,
    retry_ms: int = DEFAULT_RETRY_MS,
    page_size: int = PAGE_SIZE,
) -> AsyncIterator[str]:
    """SSE text for one job: events with id > ``after``, then ``event: end``.

    Every frame carries ``id:`` (data frames their own id; ``ping`` and ``end``
    the cursor, i.e. the last event id sent, so a resume from any frame is
    exact). The first frame carries the ``retry:`` hint.
    """
    cursor = after
    retry: int | None = retry_ms
    while True:
        wake = hub.waiter(job_id)
        # The status is read *before* the page: the terminal event and the
        # terminal status commit in one transaction, so a job already terminal
        # here has its whole log visible to the read below. Read the other way
        # round, a writer committing between the two reads made a subscriber
        # end without the last events.
        job = store.get_job(job_id)
        finished = job is None or job["status"] in TERMINAL_STATUSES
        rows = store.read_events(job_id, cursor, page_size)
        if rows:
            parts: list[str] = []
            terminal = False
            for row in rows:
                parts.append(_frame(event_id=row.id, data=row.data, retry=retry))
                retry = None
                cursor = row.id
                if row.type in TERMINAL_EVENT_TYPES:
                    terminal = True
                    break
            if terminal:
                parts.append(_end_frame(store, job_id, cursor))
                yield "".join(parts)
                return
            yield "".join(parts)
            continue
        if finished:
            yield _end_frame(store, job_id, cursor, retry=retry)
            return
        try:
            await asyncio.wait_for(asyncio.shield(wake), timeout=ping_s)
        except asyncio.TimeoutError:
            yield _frame(event_id=cursor, event="ping", data="{}", retry=retry)
            retry = None


def _end_frame(store: Store, job_id: str, cursor: int, *, retry: int | None = None) -> str:
    job = store.get_job(job_id)
    status = job["status"] if job else "unknown"
    data = json.dumps({"jobId": job_id, "status": status}, separators=(",", ":"))
    return _frame(event_id=cursor, event="end", data=data, retry=retry)


SSE_HEADERS = {
    "Cache-Control": "no-cache, no-transform",
    "X-Accel-Buffering": "no",
}


def sse_response(frames: AsyncIterator[str]) -> StreamingResponse:
    """A text/event-stream response; never compressed, never buffered by proxies."""
    return StreamingResponse(frames, media_type="text/event-stream", headers=SSE_HEADERS)
