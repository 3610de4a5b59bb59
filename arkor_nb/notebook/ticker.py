"""The redraw clock of a live run: one thread, at most one redraw per interval.

Events only set ``wake`` (O(1) on the streaming loop); this thread turns
them into batched redraws, at most one per ``interval`` seconds, and once a
second when idle so the elapsed clock and the kernel's heartbeat move.
``stop`` ends even a throttle wait at once, so a cancel is never held up by it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Ticker:
    def __init__(self, interval: float, draw: Callable[[float], None], wake: threading.Event) -> None:
        self.interval = interval
        self.draw = draw  # draw(now); must not raise
        self.wake = wake
        self.ticks = 0  # redraws done (tests check the throttle bounds this)
        self.dirty = False  # set by the owner's listener; cleared here when a redraw starts
        self._stop = threading.Event()
        self._stopping = False
        self._last = 0.0
        self._thread = threading.Thread(target=self._loop, name="arkor-nb-ticker", daemon=True)

    def start(self) -> Ticker:
        self._thread.start()
        return self

    def stop(self, timeout: float = 30) -> None:
        """Stop and wait for the last redraw to finish (not when called from the ticker itself)."""
        self._stopping = True
        self._stop.set()
        self.wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=timeout)

    def _loop(self) -> None:
        while True:
            self.wake.wait(timeout=1.0)  # 1 Hz even when idle: the elapsed clock moves
            if self._stopping:
                return
            wait = self.interval - (time.monotonic() - self._last)
            if wait > 0:
                # throttle: at most one redraw per interval, but a stop ends the wait
                if self._stop.wait(wait) or self._stopping:
                    return
            self.wake.clear()
            self.dirty = False
            now = time.monotonic()
            self._last = now
            self.ticks += 1
            self.draw(now)
