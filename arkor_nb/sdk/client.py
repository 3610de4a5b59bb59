"""CloudApiClient: the one place that speaks HTTP to an Arkor-compatible API.

The cloud and the embedded local server share one wire protocol (see
docs/protocol.md), so the Trainer, the credential bootstrap and checkpoint
inference all go through this module. A client is cheap: it owns one
``httpx.AsyncClient`` for the duration of an ``async with`` block, which
keeps every connection on the event loop that opened it (the sync API and
the async API run on different loops).
"""

from __future__ import annotations

import functools
import json
import os
import ssl
import threading
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import certifi
import httpx

from arkor_nb.core.errors import CloudApiError, CloudUnreachableError, ConfigError
from arkor_nb.core.version import __version__
from arkor_nb.core.wire import TrainingJob

CLIENT_HEADER = f"arkor-nb/{__version__} python"
PRODUCTION_URL = "https://api.arkor.ai"
DEFAULT_KEEPALIVE_S = 15.0
KEEPALIVE_ENV = "ARKOR_NB_KEEPALIVE_S"
REQUEST_TIMEOUT_S = 30.0
# Statuses on stream open that will never succeed on retry.
PERMANENT_STREAM_STATUSES: frozenset[int] = frozenset({401, 403, 410, 426})
# Transport failures that mean "nobody answered at that address" (not a dropped stream).
UNREACHABLE = (httpx.ConnectError, httpx.ConnectTimeout, httpx.ProxyError, httpx.UnsupportedProtocol)


@dataclass(frozen=True)
class ProjectScope:
    """Org/project a request is addressed to (``?orgSlug=&projectSlug=``)."""

    org_slug: str
    project_slug: str

    def params(self) -> dict[str, str]:
        return {"orgSlug": self.org_slug, "projectSlug": self.project_slug}


_ssl_lock = threading.Lock()
_ssl_context: ssl.SSLContext | None = None


Verify = ssl.SSLContext | bool | str | os.PathLike[str] | None


def tls_verify(verify: Verify = None) -> ssl.SSLContext | bool:
    """How a client checks the server's certificate.

    ``verify`` (from ``LocalBackend(verify=...)``): a CA/certificate file to
    trust (e.g. a self-signed server's ``cert.pem``), an ``ssl.SSLContext``,
    or ``False`` (no check). ``None``: one shared context with the public CAs
    (building one costs ~80 ms, and every start/wait/cancel opens a fresh
    client); with ``SSL_CERT_FILE`` or ``SSL_CERT_DIR`` set, httpx builds its
    own so those are honoured."""
    global _ssl_context
    if isinstance(verify, (str, os.PathLike)):
        return _trust_file(os.fspath(verify))
    if verify is not None:
        return verify
    if os.environ.get("SSL_CERT_FILE") or os.environ.get("SSL_CERT_DIR"):
        return True
    with _ssl_lock:
        if _ssl_context is None:
            _ssl_context = ssl.create_default_context(cafile=certifi.where())
        return _ssl_context


@functools.lru_cache(maxsize=8)
def _trust_file(path: str) -> ssl.SSLContext:
    if not os.path.isfile(path):
        raise ConfigError("verify", f"no certificate file at {path!r}; pass the server's "
                          "certificate (PEM), an ssl.SSLContext, or False")
    return ssl.create_default_context(cafile=path)


def keepalive_interval(value: float | None = None) -> float:
    """The server keepalive interval the client assumes, in seconds.

    Explicit value, else ``ARKOR_NB_KEEPALIVE_S``, else 15 s. The stream read
    timeout is three times this, so a stream that keeps sending pings never
    times out and a silent one is detected as stalled.
    """
    if value is None:
        raw = os.environ.get(KEEPALIVE_ENV)
        if raw:
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(
                    f"{KEEPALIVE_ENV}={raw!r} is not a number of seconds; unset it or set e.g. 15"
                ) from None
        else:
            value = DEFAULT_KEEPALIVE_S
    if value <= 0:
        raise ValueError("keepalive must be > 0 seconds")
    return value


class RemoteConfigError(ConfigError, CloudApiError):
    """The backend rejected a field of the request (HTTP 4xx with ``{"error", "field"}``).

    Both a ConfigError (``except ak.ConfigError`` catches bad input whether
    the client or the server spotted it; ``.field`` names it) and a
    CloudApiError (``.status``, ``.message``).
    """

    def __init__(self, status: int, field: str, message: str, *, body: object = None) -> None:
        CloudApiError.__init__(self, status, message, body=body)
        self.field = field
        prefix = "" if message.startswith(f"{field}:") else f"{field}: "
        self.args = (f"{prefix}{message}",)


def error_from_body(status: int, body: bytes) -> CloudApiError:
    """Turn an HTTP error body into CloudApiError with the server's own message."""
    text = body.decode("utf-8", errors="replace").strip()
    parsed: Any = None
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        parsed = None
    message = ""
    if isinstance(parsed, dict):
        for key in ("error", "message", "detail"):
            value = parsed.get(key)
            if isinstance(value, str) and value:
                message = value
                break
            if isinstance(value, dict) and isinstance(value.get("message"), str):
                message = value["message"]
                break
    if not message:
        message = text[:500] or f"request failed with HTTP {status}"
    field = parsed.get("field") if isinstance(parsed, dict) else None
    if status in (400, 422) and isinstance(field, str) and field:
        return RemoteConfigError(status, field, message, body=parsed)
    return CloudApiError(status, message, body=parsed if parsed is not None else text)


async def raise_for_status_async(response: httpx.Response) -> None:
    if response.is_success:
        return
    body = await response.aread()
    await response.aclose()
    raise error_from_body(response.status_code, body)


def raise_for_status_sync(response: httpx.Response) -> None:
    if response.is_success:
        return
    body = response.read()
    response.close()
    raise error_from_body(response.status_code, body)


class CloudApiClient:
    """Async HTTP client for one base URL and token.

    Use as ``async with CloudApiClient(url, token) as api: ...``. Methods
    raise :class:`CloudApiError` for HTTP errors and let ``httpx`` transport
    errors through (the Trainer decides which are retried).
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        keepalive: float | None = None,
        timeout: float = REQUEST_TIMEOUT_S,
        verify: Verify = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.verify = verify
        self.keepalive = keepalive_interval(keepalive)
        self.timeout = timeout
        self._http: httpx.AsyncClient | None = None

    @property
    def headers(self) -> dict[str, str]:
        headers = {"X-Arkor-Client": CLIENT_HEADER}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    @property
    def stream_timeout(self) -> httpx.Timeout:
        """Read timeout = 3x keepalive: only a silent (stalled) stream times out."""
        return httpx.Timeout(self.timeout, read=3 * self.keepalive)

    async def __aenter__(self) -> CloudApiClient:
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=self.headers, timeout=self.timeout,
            verify=tls_verify(self.verify)
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            raise RuntimeError("use CloudApiClient inside `async with`")
        return self._http

    async def request_json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
    ) -> Any:
        try:
            response = await self.http.request(method, path, params=params, json=json_body)
        except UNREACHABLE as exc:
            raise CloudUnreachableError(self.base_url, exc) from exc
        await raise_for_status_async(response)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise CloudApiError(
                response.status_code,
                f"expected a JSON body from {method} {path}, got {response.text[:200]!r}",
            ) from exc

    # ------------------------------------------------------------- jobs

    async def create_job(self, scope: ProjectScope, name: str, config: dict[str, Any]) -> TrainingJob:
        data = await self.request_json(
            "POST", "/v1/jobs", params=scope.params(), json_body={"name": name, "config": config}
        )
        return _job_from(data, "POST /v1/jobs")

    async def get_job(self, scope: ProjectScope, job_id: str) -> TrainingJob:
        data = await self.request_json("GET", f"/v1/jobs/{job_id}", params=scope.params())
        return _job_from(data, f"GET /v1/jobs/{job_id}")

    async def list_jobs(
        self,
        scope: ProjectScope,
        *,
        status: str | None = None,
        limit: int | None = None,
        before: str | None = None,
    ) -> list[TrainingJob]:
        """One page of jobs, newest first; ``before`` is the id of the last job of
        the previous page (the cursor), ``status`` filters server side."""
        params = scope.params()
        if status is not None:
            params["status"] = status
        if limit is not None:
            params["limit"] = str(limit)
        if before is not None:
            params["before"] = before
        data = await self.request_json("GET", "/v1/jobs", params=params)
        jobs = data.get("jobs", []) if isinstance(data, dict) else []
        return [TrainingJob.model_validate(job) for job in jobs]

    async def job_events_page(
        self, scope: ProjectScope, job_id: str, *, after: str | None = None, limit: int = 1000
    ) -> tuple[TrainingJob, list[dict[str, Any]]]:
        """The job and one page of its recorded events (raw wire dicts, oldest
        first, each with its ``eventId`` where the backend gives one)."""
        params = {**scope.params(), "events": "true", "limit": str(limit)}
        if after is not None:
            params["after"] = after
        data = await self.request_json("GET", f"/v1/jobs/{job_id}", params=params)
        job = _job_from(data, f"GET /v1/jobs/{job_id}")
        events = data.get("events") if isinstance(data, dict) else None
        return job, [e for e in events or [] if isinstance(e, dict)]

    async def list_artifact(self, scope: ProjectScope, job_id: str, path: str) -> dict[str, Any] | None:
        """``GET /v1/jobs/{id}/artifacts/{path}`` for a directory: ``{path, files:
        [{path, size, url}]}``; None when ``path`` is a single file, not a folder."""
        response = await self.http.get(
            f"/v1/jobs/{job_id}/artifacts/{path.strip('/')}", params=scope.params()
        )
        await raise_for_status_async(response)
        if "application/json" not in response.headers.get("content-type", ""):
            return None
        data = response.json()
        return data if isinstance(data, dict) and isinstance(data.get("files"), list) else None

    async def cancel_job(self, scope: ProjectScope, job_id: str) -> TrainingJob | None:
        data = await self.request_json(
            "POST", f"/v1/jobs/{job_id}/cancel", params=scope.params()
        )
        if isinstance(data, dict) and isinstance(data.get("job"), dict):
            return TrainingJob.model_validate(data["job"])
        return None

    @asynccontextmanager
    async def open_event_stream(
        self, scope: ProjectScope, job_id: str, last_event_id: str | None = None
    ) -> AsyncIterator[httpx.Response]:
        """Open the job's SSE stream; raises CloudApiError on a non-2xx open."""
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        request = self.http.build_request(
            "GET",
            f"/v1/jobs/{job_id}/events/stream",
            params=scope.params(),
            headers=headers,
            timeout=self.stream_timeout,
        )
        response = await self.http.send(request, stream=True)
        try:
            await raise_for_status_async(response)
            yield response
        finally:
            await response.aclose()

    # --------------------------------------------------------- projects

    async def list_projects(self, org_slug: str) -> list[dict[str, Any]]:
        data = await self.request_json("GET", "/v1/projects", params={"orgSlug": org_slug})
        projects = data.get("projects") if isinstance(data, dict) else None
        return [p for p in projects or [] if isinstance(p, dict)]

    async def create_project(self, org_slug: str, name: str, slug: str) -> dict[str, Any]:
        data = await self.request_json(
            "POST",
            "/v1/projects",
            params={"orgSlug": org_slug},
            json_body={"name": name, "slug": slug},
        )
        project = data.get("project") if isinstance(data, dict) else None
        if not isinstance(project, dict):
            raise CloudApiError(200, f"POST /v1/projects returned no project: {data!r}")
        return project


def _job_from(data: Any, what: str) -> TrainingJob:
    if isinstance(data, dict) and isinstance(data.get("job"), dict):
        return TrainingJob.model_validate(data["job"])
    raise CloudApiError(200, f"{what} returned no job: {str(data)[:200]}")


class SyncChatClient:
    """Blocking client for ``POST /v1/inference/chat`` (checkpoint sampling).

    Sync on purpose: ``ctx.infer(...)`` is called from user callbacks, which
    arkor_nb runs on worker threads, and the streaming ``httpx.Response`` it
    returns must outlive the callback's event-loop turn. One pooled
    ``httpx.Client`` per trainer, created on first use; thread-safe.
    """

    def __init__(self, base_url: str, token: str | None, *, timeout: float = 300.0,
                 verify: Verify = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.verify = verify
        self.timeout = timeout
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                headers = {"X-Arkor-Client": CLIENT_HEADER}
                if self.token:
                    headers["Authorization"] = f"Bearer {self.token}"
                self._client = httpx.Client(
                    base_url=self.base_url, headers=headers, timeout=self.timeout,
                    verify=tls_verify(self.verify)
                )
            return self._client

    def chat(self, scope: ProjectScope, body: dict[str, Any], *, stream: bool) -> httpx.Response:
        """POST the chat body. With ``stream=True`` the body is not read yet:
        iterate ``response.iter_lines()`` and call ``response.close()``
        (or use ``contextlib.closing``) when done. Raises CloudApiError on non-2xx."""
        http = self._http()
        headers = {"Accept": "text/event-stream"} if stream else {}
        request = http.build_request(
            "POST", "/v1/inference/chat", params=scope.params(), json=body, headers=headers
        )
        response = http.send(request, stream=stream)
        raise_for_status_sync(response)
        return response

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


class _ClientOwnedStream(httpx.AsyncByteStream):
    """A response body that also closes the one-off client that fetched it."""

    def __init__(self, inner: httpx.AsyncByteStream, client: httpx.AsyncClient) -> None:
        self._inner = inner
        self._client = client

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            await self._client.aclose()


async def chat_async(
    base_url: str,
    token: str | None,
    scope: ProjectScope,
    body: dict[str, Any],
    *,
    stream: bool,
    timeout: float = 300.0,
    verify: Verify = None,
) -> httpx.Response:
    """Async twin of :meth:`SyncChatClient.chat` on the caller's event loop.

    With ``stream=True`` iterate ``response.aiter_lines()`` and ``await
    response.aclose()`` when done (that also closes the connection pool).
    """
    headers = {"X-Arkor-Client": CLIENT_HEADER}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    client = httpx.AsyncClient(
        base_url=base_url.rstrip("/"), headers=headers, timeout=timeout, verify=tls_verify(verify)
    )
    try:
        request = client.build_request(
            "POST",
            "/v1/inference/chat",
            params=scope.params(),
            json=body,
            headers={"Accept": "text/event-stream"} if stream else {},
        )
        response = await client.send(request, stream=stream)
        await raise_for_status_async(response)
    except BaseException:
        await client.aclose()
        raise
    if not stream:
        await client.aclose()
        return response
    assert isinstance(response.stream, httpx.AsyncByteStream)
    response.stream = _ClientOwnedStream(response.stream, client)
    return response
