"""Close connections that never finish sending a request (slowloris, dead peers).

uvicorn's h11 protocol only times out a connection that sits idle *after* a
response (``timeout_keep_alive``); one that sends half a request head, or
stops half way through a body, is kept open forever, one socket and one
protocol object each. This subclass adds the two missing deadlines:

- the request line and headers must arrive whole within ``head_timeout``
  seconds of the connection (or of the previous response); trickling bytes
  does not extend it;
- a request body must not stall for longer than ``body_idle`` seconds.

Streaming responses are not affected: once a request is fully received the
timers are off, so an SSE stream can stay open for hours.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

HEAD_TIMEOUT_S = 10.0
BODY_IDLE_S = 30.0


def _env_seconds(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, default))
    except ValueError:
        return default
    return value if value > 0 else default


class TimedH11Protocol(H11Protocol):
    """``H11Protocol`` with a request-head deadline and a body idle timeout."""

    head_timeout = _env_seconds("ARKOR_NB_HEADER_TIMEOUT_S", HEAD_TIMEOUT_S)
    body_idle = _env_seconds("ARKOR_NB_BODY_IDLE_S", BODY_IDLE_S)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._guard: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.head_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        state = self.conn.their_state
        if state is h11.IDLE:  # a head is on its way: its deadline does not move
            if self._guard is None:
                self._arm(self.head_timeout)
        elif state is h11.SEND_BODY:  # progress on the body extends its timer
            self._arm(self.body_idle)
        else:
            self._disarm()

    def on_response_complete(self) -> None:
        self._disarm()  # idle between requests is uvicorn's keep-alive timeout
        super().on_response_complete()

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._guard = self.loop.call_later(seconds, self._expire)

    def _disarm(self) -> None:
        if self._guard is not None:
            self._guard.cancel()
            self._guard = None

    def _expire(self) -> None:
        self._guard = None
        if self.transport.is_closing() or self.conn.their_state not in (h11.IDLE, h11.SEND_BODY):
            return
        if self.conn.their_state is h11.IDLE and self.conn.our_state is h11.IDLE:
            try:  # nothing was answered yet: say why before closing
                self.transport.write(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n"
                                     b"Connection: close\r\n\r\n")
            except OSError:
                pass
        self.transport.close()
