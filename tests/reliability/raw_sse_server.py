"""A loopback HTTP server that answers the event stream with exact bytes a test chooses.

The SSE parsing path (httpx -> sdk/sse.py -> parse_event -> listeners) is fed
arbitrary bytes through a real socket, so the fuzzing covers everything the
client does with what the network hands it. Other routes answer like a tiny
backend: ``GET /v1/jobs/{id}`` returns the job with ``status`` set by the test.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class RawSseServer:
    """``bodies(n, request)`` gives the raw SSE body for the n-th stream open (0-based)."""

    bodies: Callable[[int, Request], bytes]
    job_status: str = "completed"
    requests: list[Request] = field(default_factory=list)
    stream_opens: int = 0

    def __post_init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True, name="raw-sse")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self, bodies: Callable[[int, Request], bytes]) -> RawSseServer:
        """Reuse one server for many hypothesis examples (starting one costs more than a run)."""
        self.bodies = bodies
        self.requests = []
        self.stream_opens = 0
        return self

    def __enter__(self) -> RawSseServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            buf = b""
            try:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head = buf.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
                method, path, _ = head[0].split(" ", 2)
                headers = {}
                for line in head[1:]:
                    k, _, v = line.partition(":")
                    headers[k.strip().lower()] = v.strip()
                req = Request(method, path, headers)
                self.requests.append(req)
                conn.sendall(self._respond(req))
            except OSError:
                return

    def _respond(self, req: Request) -> bytes:
        route = req.path.split("?", 1)[0]
        if req.method == "GET" and route.endswith("/events/stream"):
            n = self.stream_opens
            self.stream_opens += 1
            body = self.bodies(n, req)
            return (
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Cache-Control: no-cache\r\nConnection: close\r\n\r\n" + body
            )
        parts = route.strip("/").split("/")
        if req.method == "GET" and len(parts) == 3 and parts[:2] == ["v1", "jobs"]:
            job = {"id": parts[2], "name": "fuzz", "status": self.job_status, "config": {}}
            payload = json.dumps({"job": job}).encode()
        else:
            payload = json.dumps({"error": f"no route {req.method} {route}"}).encode()
            return (
                b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
                b"Connection: close\r\nContent-Length: "
                + str(len(payload)).encode()
                + b"\r\n\r\n"
                + payload
            )
        return (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
            b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload
        )


def frame(
    event_id: int | str | None, data: dict[str, object] | str, event: str | None = None
) -> bytes:
    """One SSE frame exactly as a server writes it."""
    lines = []
    if event is not None:
        lines.append(f"event: {event}")
    if event_id is not None:
        lines.append(f"id: {event_id}")
    text = data if isinstance(data, str) else json.dumps(data)
    lines.extend(f"data: {part}" for part in text.split("\n"))
    return ("\n".join(lines) + "\n\n").encode()
