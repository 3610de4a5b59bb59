"""Run user callbacks in order: sync ones of one received chunk in ONE thread hop.

Sync callbacks run on a worker thread so they may block (``ctx.infer``) or
call the sync API (``trainer.cancel()``) without stalling or deadlocking the
event loop. One ``asyncio.to_thread`` round trip costs ~100 us, so a chunk's
consecutive sync callbacks share one. Async callbacks are awaited on the loop,
in order, never concurrently. The first exception stops the rest and
propagates unchanged.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

Call = tuple[Callable[[Any], Any], Any]  # (callback, ctx)


def is_async_callable(fn: Any) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - callable objects with async __call__
    )


def _run_sync(calls: Sequence[Call]) -> tuple[int, Awaitable[Any]] | None:
    """Run sync callbacks in order on this (worker) thread. A sync function that
    returns an awaitable hands it back, with its index, for the loop to await."""
    for index, (fn, ctx) in enumerate(calls):
        outcome = fn(ctx)
        if inspect.isawaitable(outcome):
            return index, outcome
    return None


async def run_callbacks(calls: Sequence[Call]) -> None:
    """Run ``calls`` in order; consecutive sync ones share one thread hop."""
    kinds: dict[int, bool] = {}  # id(fn) -> async? (inspect costs ~8 us a call)

    def is_async(fn: Any) -> bool:
        kind = kinds.get(id(fn))
        if kind is None:
            kind = kinds[id(fn)] = is_async_callable(fn)
        return kind

    start = 0
    while start < len(calls):
        fn, ctx = calls[start]
        if is_async(fn):
            await fn(ctx)
            start += 1
            continue
        end = start + 1
        while end < len(calls) and not is_async(calls[end][0]):
            end += 1
        pending = await asyncio.to_thread(_run_sync, calls[start:end])
        if pending is None:
            start = end
        else:
            index, awaitable = pending
            await awaitable
            start += index + 1
