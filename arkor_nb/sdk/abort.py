"""AbortController / AbortSignal, as in the web platform and the TS SDK.

Thread-safe: a signal may be fired from a widget handler thread, a signal
handler or another event loop; listeners run in the firing thread, so they
must only set flags or schedule work (``loop.call_soon_threadsafe``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from arkor_nb.core.errors import AbortedError


class AbortSignal:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._event = threading.Event()
        self._reason: object = None
        self._listeners: list[Callable[[object], None]] = []

    @property
    def aborted(self) -> bool:
        return self._event.is_set()

    @property
    def reason(self) -> object:
        return self._reason

    def add_listener(self, listener: Callable[[object], None]) -> Callable[[], None]:
        """Call ``listener(reason)`` once on abort (at once if already aborted).

        Returns a function that removes the listener.
        """
        with self._lock:
            fire_now = self._event.is_set()
            if not fire_now:
                self._listeners.append(listener)
        if fire_now:
            listener(self._reason)

        def remove() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return remove

    def throw_if_aborted(self) -> None:
        if self.aborted:
            raise AbortedError(self._reason)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until aborted (or timeout); returns ``aborted``."""
        return self._event.wait(timeout)

    def _fire(self, reason: object) -> None:
        with self._lock:
            if self._event.is_set():
                return
            self._reason = reason
            self._event.set()
            listeners, self._listeners = self._listeners, []
        for listener in listeners:
            listener(reason)

    def __repr__(self) -> str:
        return f"AbortSignal(aborted={self.aborted})"


class AbortController:
    def __init__(self) -> None:
        self.signal = AbortSignal()

    def abort(self, reason: object = None) -> None:
        """Fire the signal; later calls do nothing."""
        self.signal._fire(reason)
