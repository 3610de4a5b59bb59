"""FakeCloud: a real HTTP/1.1 server on 127.0.0.1 speaking the Arkor cloud protocol.

Not a mock: the SDK talks to it over a real socket, so framing, chunked
encoding, SSE parsing, timeouts and dropped connections are all exercised.
A raw asyncio server (rather than an ASGI app) gives byte-level control:
tests can script each stream open to send garbage, stall, close cleanly or
drop the connection mid-body.

Usage::

    with FakeCloud() as cloud:
        cloud.default_events = [started(), log(1, 0.9), completed()]
        backend = cloud.backend()          # CloudBackend with all four parts set
        ...
        cloud.script(Event("1", log(1, 0.5)), Drop())   # next stream open
        cloud.fail_opens(503, 401)                      # statuses of next opens

Routes: ``POST /v1/auth/anonymous``, ``GET/POST /v1/projects``,
``POST/GET /v1/jobs``, ``GET /v1/jobs/{id}``, ``GET /v1/jobs/{id}/events/stream``
(honours ``Last-Event-ID``), ``POST /v1/jobs/{id}/cancel``,
``POST /v1/inference/chat`` (SSE or JSON), ``GET /v1/jobs?status=&limit=&before=``
(paged), ``GET /v1/jobs/{id}?after=&limit=`` (paged log), ``GET
/v1/jobs/{id}/artifacts/{path}`` (files of ``cloud.artifacts[job_id]``, a JSON
listing for a folder). Every request is recorded.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

SUPPORTED_MODEL = "unsloth/gemma-4-E4B-it"

# ----------------------------------------------------------- event builders


def started(**metadata: Any) -> dict[str, Any]:
    return {"type": "training.started", "metadata": metadata or None}


def log(step: int, loss: float | None = None, **extra: Any) -> dict[str, Any]:
    return {"type": "training.log", "step": step, "loss": loss, **extra}


def checkpoint(step: int, artifacts: list[Any] | None = None) -> dict[str, Any]:
    return {"type": "checkpoint.saved", "step": step, "artifacts": artifacts or []}


def checkpoint_eval(step: int, metrics: dict[str, float], n: int = 0,
                    examples: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """``checkpoint.eval``: task metrics of one checkpoint (what the local worker emits)."""
    return {"type": "checkpoint.eval", "step": step, "metrics": metrics, "n": n,
            "examples": examples or []}


def health_log(step: int, loss: float, *, grad_norm: float, tokens_per_second: float,
               rss_mb: float, gpu_mem_mb: float | None = None) -> dict[str, Any]:
    """``training.log`` with the local worker's health fields (camelCase, as on the wire)."""
    extra = {"gradNorm": grad_norm, "tokensPerSecond": tokens_per_second, "rssMb": rss_mb}
    if gpu_mem_mb is not None:
        extra["gpuMemMb"] = gpu_mem_mb
    return log(step, loss, **extra)


def completed(artifacts: list[Any] | None = None, **metrics: Any) -> dict[str, Any]:
    return {"type": "training.completed", "metrics": metrics, "artifacts": artifacts or []}


def failed(error: str, step: int | None = None) -> dict[str, Any]:
    return {"type": "training.failed", "error": error, "step": step}


def cancelled(step: int | None = None) -> dict[str, Any]:
    return {"type": "training.cancelled", "step": step}


# ----------------------------------------------------------- stream actions


@dataclass(frozen=True)
class Event:
    """A data frame ``id: <id>`` + ``data: <json>`` (jobId/timestamp filled in)."""

    id: str | None
    data: dict[str, Any]


@dataclass(frozen=True)
class Raw:
    """Bytes written as they are (garbage, partial frames, comments)."""

    data: bytes


@dataclass(frozen=True)
class Ping:
    id: str | None = None


@dataclass(frozen=True)
class End:
    pass


@dataclass(frozen=True)
class Stall:
    """The server goes silent for ``seconds`` (no bytes at all)."""

    seconds: float


@dataclass(frozen=True)
class Gate:
    """The server waits until the test sets ``event`` (at most 30 s)."""

    event: threading.Event


@dataclass(frozen=True)
class Drop:
    """Close the connection without finishing the chunked body (a transport error)."""


@dataclass(frozen=True)
class Replay:
    """Send the job's durable log after Last-Event-ID (what a real server does)."""


Action = Event | Raw | Ping | End | Stall | Gate | Drop | Replay


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: Any
    at: float = field(default_factory=time.monotonic)


def sse_event_bytes(event_id: str | None, data: dict[str, Any]) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}data: {json.dumps(data)}\n\n".encode()


class FakeCloud:
    """A scriptable Arkor cloud on ``self.url``. Thread-safe to script from tests."""

    def __init__(self, *, token: str = "test-token", org: str = "acme", project: str = "proj") -> None:
        self.token = token
        self.org = org
        self.project = project
        self.valid_tokens: set[str] = {token}
        self.default_events: list[dict[str, Any]] = [started(), log(1, 1.0), completed()]
        self.job_logs: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.projects: dict[str, list[dict[str, Any]]] = {}
        self.requests: list[Recorded] = []
        self.anonymous_enabled = True
        self.anon_org = "anon-org"
        self.chat_pieces: list[str] = ["Hel", "lo"]
        self.artifacts: dict[str, dict[str, bytes]] = {}
        self.chat_gate: threading.Event | None = None
        self.create_job_status: int | None = None
        self.create_job_body: dict[str, Any] = {"error": "scripted failure"}
        self.create_job_gate: threading.Event | None = None
        self.get_job_gate: threading.Event | None = None  # GET /v1/jobs/{id} waits for it
        self.get_job_statuses: deque[int] = deque()  # the next job lookups answer these
        self._scripts: deque[list[Action]] = deque()
        self._job_scripts: dict[str, deque[list[Action]]] = {}
        self._open_statuses: deque[int] = deque()
        self._ids = itertools.count(1)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self.url = ""

    # ------------------------------------------------------------ lifecycle

    def start(self) -> FakeCloud:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        future.result(10)
        return self

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        async def _stop() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self._handlers):
                task.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(_stop(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> FakeCloud:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ scripting

    def backend(self, **kwargs: Any) -> Any:
        """A CloudBackend pointed here with all four parts set (no bootstrap)."""
        from arkor_nb import CloudBackend

        return CloudBackend(
            base_url=self.url,
            token=self.token,
            org_slug=self.org,
            project_slug=self.project,
            **kwargs,
        )

    def script(self, *actions: Action, job_id: str | None = None) -> None:
        """What the next stream open sends (per job if ``job_id``), then closes cleanly."""
        if job_id is None:
            self._scripts.append(list(actions))
        else:
            self._job_scripts.setdefault(job_id, deque()).append(list(actions))

    def fail_opens(self, *statuses: int) -> None:
        """The next stream opens answer these HTTP statuses, in order."""
        self._open_statuses.extend(statuses)

    def add_job(self, job_id: str, events: list[dict[str, Any]], *, status: str = "running", name: str = "existing") -> None:
        self.jobs[job_id] = {"id": job_id, "name": name, "status": status, "config": {}, "createdAt": _now()}
        self.job_logs[job_id] = [(str(i), self._stamp(job_id, e)) for i, e in enumerate(events, 1)]

    def stream_opens(self, job_id: str | None = None) -> list[Recorded]:
        return [
            r
            for r in list(self.requests)
            if r.method == "GET" and r.path.endswith("/events/stream")
            and (job_id is None or r.path == f"/v1/jobs/{job_id}/events/stream")
        ]

    def requests_to(self, method: str, path: str) -> list[Recorded]:
        return [r for r in list(self.requests) if r.method == method and r.path == path]

    async def await_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """``wait_for`` for async tests: poll without blocking the caller's loop."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {timeout} s")
            await asyncio.sleep(0.002)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Poll ``predicate`` until true or fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {timeout} s")
            time.sleep(0.002)

    # ------------------------------------------------------------ HTTP core

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers: dict[str, str] = {}
            for line in lines[1:]:
                if ":" in line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0") or 0)
            raw = await reader.readexactly(length) if length else b""
            parts = urlsplit(target)
            query = dict(parse_qsl(parts.query))
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
            request = Recorded(method, parts.path, query, headers, body)
            self.requests.append(request)
            await self._route(request, writer)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._handlers.discard(task)
            if not writer.transport.is_closing():
                writer.close()

    async def _json(self, writer: asyncio.StreamWriter, status: int, data: Any) -> None:
        payload = json.dumps(data).encode()
        writer.write(
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + payload
        )
        await writer.drain()
        writer.close()

    async def _chunked_head(self, writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            b"X-Accel-Buffering: no\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )
        await writer.drain()

    @staticmethod
    async def _chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
        if data:
            writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            await writer.drain()

    @staticmethod
    async def _finish(writer: asyncio.StreamWriter) -> None:
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        writer.close()

    def _authorized(self, request: Recorded) -> bool:
        auth = request.headers.get("authorization", "")
        return auth.startswith("Bearer ") and auth[7:] in self.valid_tokens

    async def _route(self, request: Recorded, writer: asyncio.StreamWriter) -> None:
        path, method = request.path, request.method
        if path == "/v1/auth/anonymous" and method == "POST":
            return await self._anonymous(writer)
        if not self._authorized(request):
            return await self._json(writer, 401, {"error": "invalid or missing bearer token"})
        if path == "/v1/projects":
            return await self._projects(request, writer)
        if path.startswith("/v1/") and path != "/v1/projects":
            if not request.query.get("orgSlug") or not request.query.get("projectSlug"):
                return await self._json(writer, 400, {"error": "orgSlug and projectSlug are required"})
        if path == "/v1/jobs" and method == "POST":
            return await self._create_job(request, writer)
        if path == "/v1/jobs" and method == "GET":
            return await self._list_jobs(request, writer)
        if path == "/v1/inference/chat" and method == "POST":
            return await self._chat(request, writer)
        segments = path.strip("/").split("/")
        if len(segments) >= 3 and segments[:2] == ["v1", "jobs"]:
            job_id = segments[2]
            rest = segments[3:]
            if rest == ["events", "stream"] and method == "GET":
                return await self._stream(request, job_id, writer)
            if job_id not in self.jobs:
                return await self._json(writer, 404, {"error": f"job {job_id} not found"})
            if rest == [] and method == "GET":
                return await self._get_job(request, job_id, writer)
            if rest[:1] == ["artifacts"] and len(rest) > 1 and method == "GET":
                return await self._artifact(job_id, "/".join(rest[1:]), writer)
            if rest == ["cancel"] and method == "POST":
                job = self.jobs[job_id]
                if job["status"] not in ("completed", "failed", "cancelled"):
                    job["status"] = "cancelled"
                return await self._json(writer, 200, {"job": job})
        await self._json(writer, 404, {"error": f"no route {method} {path}"})

    # ------------------------------------------------------------- routes

    async def _list_jobs(self, request: Recorded, writer: asyncio.StreamWriter) -> None:
        """Newest first; ``?status=&limit=&before=<id>`` paging like the local server."""
        jobs = list(reversed(self.jobs.values()))
        status = request.query.get("status")
        if status:
            jobs = [j for j in jobs if j["status"] == status]
        before = request.query.get("before")
        if before:
            ids = [j["id"] for j in jobs]
            if before not in self.jobs:
                return await self._json(writer, 404, {"error": f"no job {before}", "field": "before"})
            jobs = jobs[ids.index(before) + 1:] if before in ids else []
        limit = int(request.query.get("limit", "100"))
        page = jobs[:limit]
        following = page[-1]["id"] if len(jobs) > limit else None
        await self._json(writer, 200, {"jobs": page, "nextBefore": following})

    async def _get_job(self, request: Recorded, job_id: str, writer: asyncio.StreamWriter) -> None:
        """The job and its log (``?after=<eventId>&limit=`` pages it), each event with eventId."""
        if self.get_job_gate is not None:
            await _wait_gate(self.get_job_gate)
        if self.get_job_statuses:
            status = self.get_job_statuses.popleft()
            return await self._json(writer, status, {"error": f"scripted HTTP {status}"})
        log = self.job_logs.get(job_id, [])
        after = request.query.get("after")
        if after is not None:
            log = [(i, e) for i, e in log if int(i) > int(after)]
        if "limit" in request.query:
            log = log[: int(request.query["limit"])]
        events = [{**data, "eventId": event_id} for event_id, data in log]
        await self._json(writer, 200, {"job": self.jobs[job_id], "events": events})

    async def _artifact(self, job_id: str, path: str, writer: asyncio.StreamWriter) -> None:
        """A file of ``self.artifacts[job_id]`` (path -> bytes), or a listing for a folder."""
        files = self.artifacts.get(job_id, {})
        if path in files:
            payload = files[path]
            writer.write(
                f"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode() + payload
            )
            await writer.drain()
            writer.close()
            return
        inside = sorted(p for p in files if p.startswith(path.rstrip("/") + "/"))
        if not inside:
            return await self._json(writer, 404, {"error": f"job {job_id} has no artifact {path}", "field": "path"})
        listing = [{"path": p, "size": len(files[p]), "url": f"/v1/jobs/{job_id}/artifacts/{p}"} for p in inside]
        await self._json(writer, 200, {"path": path, "files": listing})

    async def _anonymous(self, writer: asyncio.StreamWriter) -> None:
        if not self.anonymous_enabled:
            return await self._json(writer, 403, {"error": "anonymous access is disabled"})
        n = next(self._ids)
        token = f"anon-token-{n}"
        self.valid_tokens.add(token)
        await self._json(
            writer,
            200,
            {"token": token, "anonymousId": f"anon-{n}", "kind": "cli", "personalOrg": {"slug": self.anon_org}},
        )

    async def _projects(self, request: Recorded, writer: asyncio.StreamWriter) -> None:
        org = request.query.get("orgSlug", "")
        projects = self.projects.setdefault(org, [])
        if request.method == "GET":
            return await self._json(writer, 200, {"projects": projects})
        body = request.body if isinstance(request.body, dict) else {}
        slug = body.get("slug")
        if any(p["slug"] == slug for p in projects):
            return await self._json(writer, 409, {"error": f"project {slug} already exists"})
        project = {"id": f"prj_{next(self._ids)}", "slug": slug, "name": body.get("name"), "orgSlug": org}
        projects.append(project)
        await self._json(writer, 201, {"project": project})

    async def _create_job(self, request: Recorded, writer: asyncio.StreamWriter) -> None:
        if self.create_job_gate is not None:
            await _wait_gate(self.create_job_gate)
        if self.create_job_status is not None:
            return await self._json(writer, self.create_job_status, self.create_job_body)
        body = request.body if isinstance(request.body, dict) else {}
        job_id = f"job_{next(self._ids)}"
        job = {
            "id": job_id,
            "name": body.get("name", ""),
            "status": "queued",
            "config": body.get("config", {}),
            "createdAt": _now(),
            "orgSlug": request.query.get("orgSlug"),
            "projectSlug": request.query.get("projectSlug"),
        }
        self.jobs[job_id] = job
        self.job_logs[job_id] = [
            (str(i), self._stamp(job_id, e)) for i, e in enumerate(self.default_events, 1)
        ]
        await self._json(writer, 200, {"job": job})

    def _stamp(self, job_id: str, data: dict[str, Any]) -> dict[str, Any]:
        stamped = {k: v for k, v in data.items() if v is not None}
        stamped.setdefault("jobId", job_id)
        stamped.setdefault("timestamp", _now())
        return stamped

    async def _stream(self, request: Recorded, job_id: str, writer: asyncio.StreamWriter) -> None:
        if self._open_statuses:
            status = self._open_statuses.popleft()
            return await self._json(writer, status, {"error": f"scripted HTTP {status}"})
        if job_id not in self.jobs:
            return await self._json(writer, 404, {"error": f"job {job_id} not found"})
        queue = self._job_scripts.get(job_id)
        if queue:
            actions = queue.popleft()
        elif self._scripts:
            actions = self._scripts.popleft()
        else:
            actions = [Replay(), End()]
        await self._chunked_head(writer)
        last = request.headers.get("last-event-id")
        for action in actions:
            if isinstance(action, Event):
                await self._chunk(writer, sse_event_bytes(action.id, self._stamp(job_id, action.data)))
            elif isinstance(action, Raw):
                await self._chunk(writer, action.data)
            elif isinstance(action, Ping):
                head = f"id: {action.id}\n" if action.id is not None else ""
                await self._chunk(writer, f"{head}event: ping\ndata: \n\n".encode())
            elif isinstance(action, End):
                await self._chunk(writer, b"event: end\ndata: {}\n\n")
            elif isinstance(action, Stall):
                await asyncio.sleep(action.seconds)
            elif isinstance(action, Gate):
                await _wait_gate(action.event)
            elif isinstance(action, Drop):
                writer.transport.abort()
                return
            elif isinstance(action, Replay):
                for event_id, data in self.job_logs.get(job_id, []):
                    if last is not None and int(event_id) <= int(last):
                        continue
                    await self._chunk(writer, sse_event_bytes(event_id, data))
        await self._finish(writer)

    async def _chat(self, request: Recorded, writer: asyncio.StreamWriter) -> None:
        body = request.body if isinstance(request.body, dict) else {}
        adapter = body.get("adapter")
        if isinstance(adapter, dict) and adapter.get("jobId") not in self.jobs:
            return await self._json(
                writer, 404, {"error": f"job {adapter.get('jobId')} not found", "field": "adapter.jobId"}
            )
        if not body.get("stream", True):
            text = "".join(self.chat_pieces)
            return await self._json(
                writer,
                200,
                {
                    "object": "chat.completion",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                },
            )
        await self._chunked_head(writer)
        for index, piece in enumerate(self.chat_pieces):
            if index == 1 and self.chat_gate is not None:
                await _wait_gate(self.chat_gate)
            chunk = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": piece}}]}
            await self._chunk(writer, f"data: {json.dumps(chunk)}\n\n".encode())
        await self._chunk(writer, b"data: [DONE]\n\n")
        await self._finish(writer)


async def _wait_gate(gate: threading.Event, limit: float = 30.0) -> None:
    """Server side: hold the response until the test opens the gate."""
    deadline = time.monotonic() + limit
    while not gate.is_set() and time.monotonic() < deadline:
        await asyncio.sleep(0.002)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


_REASONS = {
    200: "OK",
    201: "Created",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    409: "Conflict",
    410: "Gone",
    426: "Upgrade Required",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}
