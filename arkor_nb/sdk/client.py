"""CloudApiClient: the job API of an Arkor-compatible backend, over HTTP.

The cloud and the embedded local server share one wire protocol (see
docs/protocol.md), so the Trainer, the jobs API and the credential bootstrap
all go through this class. A client is cheap: it owns one
``httpx.AsyncClient`` for the duration of an ``async with`` block, which
keeps every connection on the event loop that opened it (the sync API and
the async API run on different loops). Shared request pieces live in
``http``; the chat route in ``chat_transport``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any

import httpx

from arkor_nb.core.errors import CloudApiError, CloudUnreachableError
from arkor_nb.core.wire import TrainingJob
from arkor_nb.sdk.http import (
    REQUEST_TIMEOUT_S,
    UNREACHABLE,
    ProjectScope,
    Verify,
    auth_headers,
    keepalive_interval,
    raise_for_status_async,
    tls_verify,
)


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
        return auth_headers(self.token)

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
