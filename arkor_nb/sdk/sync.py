"""Run the async core from sync code on ONE private background event loop.

Why: ``trainer.wait()`` must work the same in a plain script, inside
Jupyter's already-running loop and from worker threads, without patching
asyncio globally (nest-asyncio breaks ``asyncio.current_task()`` and with it
anyio/httpx). Every sync entry point submits its coroutine to this loop and
blocks the calling thread on the result; many callers (two trainers waited
from two threads, say) share the loop concurrently.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
_pid: int | None = None


def _run(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.call_soon(ready.set)
    loop.run_forever()


def background_loop() -> asyncio.AbstractEventLoop:
    """The shared private loop, started on first use (and again after a fork)."""
    global _loop, _thread, _pid
    with _lock:
        if _loop is None or _pid != os.getpid() or _thread is None or not _thread.is_alive():
            loop = asyncio.new_event_loop()
            ready = threading.Event()
            thread = threading.Thread(
                target=_run, args=(loop, ready), name="arkor-nb-loop", daemon=True
            )
            thread.start()
            ready.wait()
            _loop, _thread, _pid = loop, thread, os.getpid()
        return _loop


def on_background_loop() -> bool:
    """True when called from the private loop's own thread."""
    return _thread is not None and threading.current_thread() is _thread


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the private loop and block this thread until it finishes.

    Ctrl-C (KeyboardInterrupt) cancels the coroutine, so an interrupted
    ``trainer.wait()`` closes its stream instead of leaking it.
    """
    if on_background_loop():
        coro.close()
        raise RuntimeError(
            "a blocking arkor_nb call was made from an async callback running on "
            "arkor_nb's own event loop; it would deadlock. Await the *_async twin "
            "(e.g. `await trainer.cancel_async()`) or use a sync callback instead."
        )
    future = asyncio.run_coroutine_threadsafe(coro, background_loop())
    try:
        return future.result()
    except KeyboardInterrupt:
        future.cancel()
        raise


class AsyncOnce(Generic[T]):
    """Run an async factory once, shared by concurrent callers on any loop or thread.

    The first caller runs the factory; the others await its outcome. A
    failure is not cached, so a later call may retry (e.g. ``start()`` after
    the server was down).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._future: concurrent.futures.Future[T] | None = None

    @property
    def value(self) -> T | None:
        future = self._future
        if future is not None and future.done() and future.exception() is None:
            return future.result()
        return None

    async def get(self, factory: Callable[[], Awaitable[T]]) -> T:
        with self._lock:
            future = self._future
            owner = future is None
            if future is None:
                future = self._future = concurrent.futures.Future()
                future.set_running_or_notify_cancel()  # so waiters can never cancel it
        if not owner:
            return await asyncio.shield(asyncio.wrap_future(future))
        try:
            value = await factory()
        except BaseException as exc:
            with self._lock:
                self._future = None
            if isinstance(exc, asyncio.CancelledError):
                future.set_exception(RuntimeError("the first caller was cancelled; call again"))
            else:
                future.set_exception(exc)
            raise
        future.set_result(value)
        return value


@dataclass
class _Shared(Generic[T]):
    future: concurrent.futures.Future[T]
    loop: asyncio.AbstractEventLoop
    task: asyncio.Task[None] | None = None
    waiters: int = 0


class SharedRun(Generic[T]):
    """ONE run of a coroutine shared by concurrent awaiters (any loop, any thread).

    Why: two waits on one trainer (the panel's and the user's) must share one
    stream, or callbacks would fire twice. ``join`` starts the run on the
    caller's loop if none is running; each awaiter awaits ``result`` and calls
    ``leave``; the last one out stops the run. A run stopped that way settles
    with ``stopped()``'s exception.
    """

    def __init__(self, stopped: Callable[[], BaseException]) -> None:
        self._lock = threading.Lock()
        self._current: _Shared[T] | None = None
        self._stopped = stopped

    @property
    def waiters(self) -> int:
        """How many awaiters the current run has (0 when none runs)."""
        run = self._current
        return run.waiters if run is not None and not run.future.done() else 0

    def join(self, start: Callable[[], Coroutine[Any, Any, T]]) -> _Shared[T]:
        loop = asyncio.get_running_loop()
        with self._lock:
            run = self._current
            if run is None or run.future.done():
                future: concurrent.futures.Future[T] = concurrent.futures.Future()
                future.set_running_or_notify_cancel()
                run = self._current = _Shared(future=future, loop=loop)
                run.task = loop.create_task(self._drive(start(), future))
            run.waiters += 1
            return run

    async def _drive(self, coro: Coroutine[Any, Any, T], future: concurrent.futures.Future[T]) -> None:
        try:
            result = await coro
        except asyncio.CancelledError:
            if not future.done():
                future.set_exception(self._stopped())
            raise
        except BaseException as exc:
            future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            future.set_result(result)

    async def leave(self, run: _Shared[T]) -> bool:
        """Detach one awaiter; the last one out stops the run. True if it stopped."""
        with self._lock:
            run.waiters -= 1
            stop = run.waiters == 0 and not run.future.done()
        if not stop or run.task is None:
            return False
        if run.loop is asyncio.get_running_loop():
            run.task.cancel()
            await asyncio.gather(run.task, return_exceptions=True)
        else:
            try:
                run.loop.call_soon_threadsafe(run.task.cancel)
            except RuntimeError:
                pass
        return True
