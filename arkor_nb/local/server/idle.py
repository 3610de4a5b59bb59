"""Optional idle shutdown for an auto-started server.

A server that ``ensure_server`` started in the background should not live
forever once nobody uses it (a finished test session, a closed notebook).
With an idle timeout it exits when, for that long, no request was in flight
(open SSE streams count) and no job was running or queued. The next
``ensure_server`` simply starts a new one on the same data.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from arkor_nb.local.server.security import ASGIApp, AsgiScope, Receive, Send


class ActivityTracker:
    """ASGI middleware counting in-flight HTTP requests and the last activity time."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.in_flight = 0
        self.last_activity = time.monotonic()

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            self.last_activity = time.monotonic()

    def idle_for(self) -> float:
        return 0.0 if self.in_flight else time.monotonic() - self.last_activity


async def watch_idle(tracker: ActivityTracker, has_jobs: Callable[[], bool], timeout_s: float,
                     on_idle: Callable[[], Any]) -> None:
    """Call ``on_idle`` once nothing happened for ``timeout_s`` seconds."""
    interval = max(0.05, min(5.0, timeout_s / 4))
    while True:
        await asyncio.sleep(interval)
        if has_jobs():
            tracker.last_activity = time.monotonic()
            continue
        if tracker.idle_for() >= timeout_s:
            on_idle()
            return
