"""One chunk's callbacks: in order, sync ones in one thread hop, first exception wins."""

from __future__ import annotations

import asyncio
import threading

import pytest

import arkor_nb as ak
from arkor_nb.sdk.callbacks import run_callbacks
from tests.sdk.fake_cloud import (
    SUPPORTED_MODEL,
    Event,
    FakeCloud,
    Raw,
    completed,
    log,
    sse_event_bytes,
    started,
)


class Boom(Exception):
    pass


def test_sync_callbacks_share_one_hop_async_ones_run_on_the_loop_in_order() -> None:
    seen: list[tuple[str, int, int]] = []  # (kind, value, thread id)

    def sync(value: int) -> None:
        seen.append(("sync", value, threading.get_ident()))

    async def async_(value: int) -> None:
        seen.append(("async", value, threading.get_ident()))

    async def main() -> int:
        await run_callbacks([(sync, 1), (sync, 2), (async_, 3), (sync, 4), (sync, 5)])
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert [(k, v) for k, v, _ in seen] == [("sync", 1), ("sync", 2), ("async", 3), ("sync", 4), ("sync", 5)]
    threads = [t for _, _, t in seen]
    assert threads[0] == threads[1] != loop_thread  # one hop for 1 and 2, off the loop
    assert threads[2] == loop_thread  # async on the loop
    assert threads[3] == threads[4] != loop_thread


def test_the_first_exception_stops_the_rest_and_is_raised_unchanged() -> None:
    called: list[int] = []
    boom = Boom("third")

    def ok(value: int) -> None:
        called.append(value)

    def bad(value: int) -> None:
        called.append(value)
        raise boom

    with pytest.raises(Boom) as info:
        asyncio.run(run_callbacks([(ok, 1), (ok, 2), (bad, 3), (ok, 4)]))
    assert info.value is boom and called == [1, 2, 3]


def test_a_sync_function_returning_an_awaitable_is_awaited_before_the_next() -> None:
    order: list[str] = []

    async def later() -> None:
        order.append("awaited")

    def returns_coroutine(_: object) -> object:
        order.append("sync")
        return later()

    asyncio.run(run_callbacks([(returns_coroutine, None), (lambda _: order.append("next"), None)]))
    assert order == ["sync", "awaited", "next"]


def test_a_raising_callback_in_the_middle_of_a_chunk_ends_wait_at_once(cloud: FakeCloud, fast) -> None:
    """All frames arrive in ONE write: the chunk's callbacks run together, and the
    exception at step 3 stops steps 4-5 and the terminal callback."""
    calls: list[int] = []
    completed_calls: list[object] = []

    def on_log(ctx: ak.LogContext) -> None:
        calls.append(ctx.step)
        if ctx.step == 3:
            raise Boom("step 3")

    trainer = ak.create_trainer(name="run", model=SUPPORTED_MODEL, backend=cloud.backend(), reconnect=fast,
                                callbacks={"on_log": on_log, "on_completed": completed_calls.append})
    job_id = trainer.start()
    frames = [(str(i), log(i, 1.0)) for i in range(1, 6)] + [("6", completed())]
    chunk = b"".join(sse_event_bytes(i, {**d, "jobId": job_id, "timestamp": "t"}) for i, d in frames)
    cloud.script(Event("0", started()), Raw(chunk), job_id=job_id)
    with pytest.raises(Boom):
        trainer.wait()
    assert calls == [1, 2, 3] and completed_calls == []
    assert len(cloud.stream_opens(job_id)) == 1
