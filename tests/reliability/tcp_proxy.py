"""A loopback TCP proxy that injects the faults a real network path produces.

It sits between the client and the local server (both on 127.0.0.1) and
forwards bytes unchanged, except on the server -> client direction where each
new connection gets the next fault from a cycle:

* ``Drop(after)``: close the connection after ``after`` bytes (``rst=True``
  aborts it with a TCP reset instead of a clean FIN);
* ``Stall(after, seconds)``: stop forwarding for ``seconds`` (longer than the
  keepalive), keeping the socket open, as a wedged middlebox does;
* ``CutFrame(after)``: after ``after`` bytes, forward up to the middle of the
  next SSE ``data:`` line and close: a frame cut off mid-way, as a dying
  connection leaves it (``rst=True`` resets instead of closing);
* ``None``: a clean connection.

Offsets are jittered with a seeded RNG so faults land at different places
relative to SSE frames and HTTP chunks, yet a run is reproducible.
The proxy runs its own asyncio loop on a daemon thread, so it works under
sync and async tests alike.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Drop:
    after: int
    rst: bool = False


@dataclass(frozen=True)
class Stall:
    after: int
    seconds: float


@dataclass(frozen=True)
class CutFrame:
    after: int
    rst: bool = False


Fault = Drop | Stall | CutFrame | None

_DATA = b"data: "


@dataclass
class ProxyStats:
    connections: int = 0
    bytes_down: int = 0
    bytes_up: int = 0
    drops: int = 0
    stalls: int = 0
    cut_frames: int = 0
    faults_by_conn: list[str] = field(default_factory=list)


class FaultProxy:
    """``with FaultProxy(server_port, [Drop(20_000), Stall(9_000, 3.0)]) as proxy: proxy.url``."""

    def __init__(
        self,
        upstream_port: int,
        faults: Sequence[Fault] = (None,),
        *,
        upstream_host: str = "127.0.0.1",
        jitter: float = 0.5,
        seed: int = 0,
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.faults = list(faults) or [None]
        self.jitter = jitter
        self.stats = ProxyStats()
        self._rng = random.Random(seed)
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="fault-proxy", daemon=True
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    # ------------------------------------------------------------- lifecycle

    def start(self) -> FaultProxy:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        self.port = fut.result(timeout=10)
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set_faults(self, faults: Sequence[Fault]) -> None:
        """Change the cycle for connections opened from now on."""
        self.faults = list(faults) or [None]

    # --------------------------------------------------------------- internals

    async def _listen(self) -> int:
        self._server = await asyncio.start_server(self._on_client, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _pick_fault(self) -> Fault:
        n = self.stats.connections
        self.stats.connections += 1
        fault = self.faults[n % len(self.faults)]
        if fault is not None and self.jitter:
            spread = int(fault.after * self.jitter)
            after = max(1, fault.after + self._rng.randint(-spread, spread))
            fault = type(fault)(**{**fault.__dict__, "after": after})
        self.stats.faults_by_conn.append(repr(fault))
        return fault

    async def _on_client(
        self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        fault = self._pick_fault()
        try:
            sreader, swriter = await asyncio.open_connection(*self.upstream)
        except OSError:
            cwriter.transport.abort()
            self._tasks.discard(task)  # type: ignore[arg-type]
            return
        up = asyncio.ensure_future(self._pipe_up(creader, swriter))
        down = asyncio.ensure_future(self._pipe_down(sreader, cwriter, fault))
        try:
            await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (up, down):
                t.cancel()
            await asyncio.gather(up, down, return_exceptions=True)
            for w in (cwriter, swriter):
                if not w.transport.is_closing():
                    w.close()
            self._tasks.discard(task)  # type: ignore[arg-type]

    async def _pipe_up(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Rewrite Host to the upstream's, as a reverse proxy does, so the server's
        # DNS-rebinding check (Host must be its own loopback address) still passes.
        mine = f"Host: 127.0.0.1:{self.port}\r\n".encode()
        theirs = f"Host: {self.upstream[0]}:{self.upstream[1]}\r\n".encode()
        while data := await reader.read(65536):
            data = data.replace(mine, theirs)
            self.stats.bytes_up += len(data)
            writer.write(data)
            await writer.drain()

    async def _pipe_down(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, fault: Fault
    ) -> None:
        sent = 0
        pending = fault
        while data := await reader.read(65536):
            if isinstance(pending, CutFrame) and sent + len(data) >= pending.after:
                at = data.find(_DATA, max(0, pending.after - sent))
                if at >= 0:  # forward into the middle of that data line, then cut
                    head = data[: at + len(_DATA) + 5]
                    writer.write(head)
                    await writer.drain()
                    self.stats.bytes_down += len(head)
                    self.stats.cut_frames += 1
                    self._close(writer, pending.rst)
                    return
            if isinstance(pending, (Drop, Stall)) and sent + len(data) >= pending.after:
                cut = pending.after - sent
                head, data = data[:cut], data[cut:]
                writer.write(head)
                await writer.drain()
                sent += len(head)
                self.stats.bytes_down += len(head)
                if isinstance(pending, Drop):
                    self.stats.drops += 1
                    self._close(writer, pending.rst)
                    return
                if isinstance(pending, Stall):
                    self.stats.stalls += 1
                    await asyncio.sleep(pending.seconds)
                pending = None
            writer.write(data)
            await writer.drain()
            sent += len(data)
            self.stats.bytes_down += len(data)

    @staticmethod
    def _close(writer: asyncio.StreamWriter, rst: bool) -> None:
        if rst:
            sock = writer.get_extra_info("socket")
            if sock is not None:  # linger 0 -> the kernel sends RST on close
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        else:
            writer.close()
