"""Counts what a display sends to the frontend, from inside the kernel.

Imported by the generated benchmark notebooks. It wraps the kernel's
``Session.send``/``serialize`` (every iopub and comm message goes through
them, from any thread) and, while metering is on, counts messages and the
exact bytes put on the wire (frames + binary buffers), per message type.
It also samples process CPU time (all threads: IOPub thread, panel timers)
and peak RSS, so a display that defers work to a thread still pays for it.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

IOPUB_TYPES = frozenset(
    {
        "stream",
        "display_data",
        "update_display_data",
        "execute_result",
        "error",
        "clear_output",
        "comm_open",
        "comm_msg",
        "comm_close",
    }
)


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def _rss_kb() -> int:
    return _status_kb("VmRSS:")


def _peak_kb() -> int:
    # VmHWM, not getrusage: ru_maxrss survives execve, so a kernel spawned by a
    # big parent would report the parent's peak.
    return _status_kb("VmHWM:")


class Meter:
    """Message/byte/CPU accounting for one measured window."""

    def __init__(self) -> None:
        from IPython import get_ipython

        ip = get_ipython()
        if ip is None or not hasattr(ip, "kernel"):
            raise RuntimeError("kernel_meter must run inside an ipykernel")
        self.session = ip.kernel.session
        self._lock = threading.Lock()
        self._tl = threading.local()
        self.on = False
        self.reset()
        self._install()

    def reset(self) -> None:
        self.count = 0
        self.bytes = 0
        self.max_bytes = 0
        self.by_type: dict[str, list[int]] = {}
        self.first_t: float | None = None
        self.last_t: float | None = None

    def _install(self) -> None:
        sess = self.session
        orig_send = sess.send
        orig_serialize = sess.serialize
        tl = self._tl

        def serialize(msg: Any, ident: Any = None) -> Any:
            parts = orig_serialize(msg, ident)
            if getattr(tl, "want", False):
                tl.size = sum(len(p) for p in parts)
            return parts

        def send(
            stream: Any,
            msg_or_type: Any,
            content: Any = None,
            parent: Any = None,
            ident: Any = None,
            buffers: Any = None,
            track: bool = False,
            header: Any = None,
            metadata: Any = None,
        ) -> Any:
            if not self.on:
                return orig_send(
                    stream, msg_or_type, content, parent, ident, buffers, track, header, metadata
                )
            tl.want = True
            tl.size = 0
            try:
                msg = orig_send(
                    stream, msg_or_type, content, parent, ident, buffers, track, header, metadata
                )
            finally:
                tl.want = False
            if msg is not None:
                mtype = msg["header"]["msg_type"]
                if mtype in IOPUB_TYPES:
                    bufs = buffers if buffers is not None else msg.get("buffers") or []
                    size = tl.size + sum(memoryview(b).nbytes for b in bufs)
                    now = time.perf_counter()
                    with self._lock:
                        self.count += 1
                        self.bytes += size
                        if size > self.max_bytes:
                            self.max_bytes = size
                        entry = self.by_type.setdefault(mtype, [0, 0])
                        entry[0] += 1
                        entry[1] += size
                        if self.first_t is None:
                            self.first_t = now
                        self.last_t = now
            return msg

        sess.serialize = serialize
        sess.send = send

    # -- measured window --------------------------------------------------

    def start(self) -> None:
        self.flush()
        self.reset()
        self.rss_before_kb = _rss_kb()
        self.peak_before_kb = _peak_kb()
        self.cpu0 = time.process_time()
        self.wall0 = time.perf_counter()
        self.on = True

    def stop(self) -> None:
        self.flush()
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() - self.cpu0
        self.on = False
        self.peak_after_kb = _peak_kb()
        self.rss_after_kb = _rss_kb()

    @staticmethod
    def flush() -> None:
        """Wait until the IOPub thread has handled what was queued so far."""
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - a closed stream is not our business
                pass

    def report(self, **extra: Any) -> dict[str, Any]:
        span = (self.last_t - self.first_t) if self.first_t and self.last_t else 0.0
        return {
            "cpu_s": self.cpu,
            "wall_s": self.wall,
            "messages": self.count,
            "bytes": self.bytes,
            "max_message_bytes": self.max_bytes,
            "message_span_s": span,
            "by_type": {k: {"count": v[0], "bytes": v[1]} for k, v in self.by_type.items()},
            "rss_before_mb": self.rss_before_kb / 1024,
            "rss_after_mb": self.rss_after_kb / 1024,
            "peak_rss_mb": self.peak_after_kb / 1024,
            "peak_growth_mb": (self.peak_after_kb - self.peak_before_kb) / 1024,
            **extra,
        }

    def dump(self, path: str, **extra: Any) -> None:
        with open(path, "w") as f:
            json.dump(self.report(**extra), f)


_METER: Meter | None = None


def meter() -> Meter:
    global _METER
    if _METER is None:
        _METER = Meter()
    return _METER
