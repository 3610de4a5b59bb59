"""The local backend's HTTP API (Starlette): the Arkor wire protocol on 127.0.0.1.

Routes (docs/protocol.md: the wire table plus local extensions)::

    GET  /healthz                              liveness (no token)
    POST /v1/jobs                {name, config} -> {job}   (400 names the bad field)
    GET  /v1/jobs                              -> {jobs, nextBefore} (?status=&limit=&before=)
    GET  /v1/jobs/{id}                         -> {job, events?} (?events=true&after=&limit=)
    GET  /v1/jobs/{id}/events/stream           SSE, honours Last-Event-ID
    POST /v1/jobs/{id}/cancel                  -> {job}
    GET  /v1/jobs/{id}/artifacts/{path}        file download, or a listing for a directory
    POST /v1/inference/chat                    Arkor chat (SSE deltas or JSON)
    POST /v1/chat/completions                  OpenAI-compatible (model job:<id>[@<step>])
    GET  /v1/models                            OpenAI-style model list
    POST /v1/auth/anonymous, GET/POST /v1/projects   cloud bootstrap, answered locally

Every error is JSON ``{"error": message, "field"?: name}`` with a 4xx status
(5xx for a damaged or full job database and internal errors); OpenAI's nested
shape on ``/v1/chat/completions``. Reading bodies and query parameters, and
the error shapes, live in ``http_io.py``; the job queue in ``jobs.py``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from arkor_nb.core.errors import ConfigError
from arkor_nb.core.redact import redact_job
from arkor_nb.core.status import COMPLETED, JOB_STATUSES
from arkor_nb.core.version import __version__
from arkor_nb.local.config import validate_config
from arkor_nb.local.server import chat
from arkor_nb.local.server.http_io import (
    AnswerUnexpected,
    ApiError,
    error_response,
    int_param,
    json_body,
    last_event_id,
)
from arkor_nb.local.server.idle import ActivityTracker, watch_idle
from arkor_nb.local.server.jobs import JobManager
from arkor_nb.local.server.security import GuardMiddleware, SecurityPolicy
from arkor_nb.local.server.sse import DEFAULT_PING_S, Hub, job_event_frames, sse_response
from arkor_nb.local.server.store import (
    DamagedDatabaseError,
    Store,
    StoreError,
    damage_advice,
    is_damage,
)
from arkor_nb.local.server.worker_process import artifact_url

log = logging.getLogger("arkor_nb.local")

LOCAL_ORG = "local"
LOCAL_PROJECT = "default"
MAX_LIST = 10_000
MAX_JOB_BODY = 1024 * 1024  # a job is a name and a config; data travels as files
# ConfigError fields that mean "no such thing" when resolving a chat target.
_NOT_FOUND_FIELDS = frozenset({"adapter.jobId", "adapter.step", "jobId", "step", "model",
                               "baseModel"})


# ------------------------------------------------------------- validation


def validate_job_config(config: Any, home: Path) -> dict[str, Any]:
    """The normalised wire config, or ``ConfigError(field, message)`` (the training side's rules)."""
    if not isinstance(config, dict):
        raise ConfigError("config", "must be a JSON object of training settings")
    return validate_config(config, home=home)


# --------------------------------------------------------------------- app


class LocalApi:
    """Route handlers bound to one home's store, hub and job manager."""

    def __init__(self, *, home: Path, store: Store, hub: Hub, manager: JobManager,
                 ping_s: float, instance_id: str) -> None:
        self.home = home
        self.store = store
        self.hub = hub
        self.manager = manager
        self.ping_s = ping_s
        self.instance_id = instance_id
        self.chat_requests = 0  # chat replies asked for (/healthz), e.g. to see samples need none
        self.responder = chat.Responder(store, home, manager.job_dir)

    def _job(self, job_id: str) -> dict[str, Any]:
        job = self.store.get_job(job_id)
        if job is None:
            raise ApiError(404, f"no job {job_id!r} on this local server; list jobs with GET /v1/jobs",
                           "jobId")
        return job

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": __version__,
                             "instanceId": self.instance_id, "chatRequests": self.chat_requests})

    async def create_job(self, request: Request) -> Response:
        body = await json_body(request, MAX_JOB_BODY)
        name = body.get("name", "")
        if not isinstance(name, str) or len(name) > 256:
            raise ApiError(400, "name must be a string of at most 256 characters", "name")
        if "config" not in body:
            raise ApiError(400, "config is required: send {name, config: {model, datasetSource, ...}}",
                           "config")
        try:
            config = await run_in_threadpool(validate_job_config, body["config"], self.home)
        except ConfigError as err:
            raise ApiError(400, str(err), err.field) from None
        job = await run_in_threadpool(self.manager.create, name, config)
        return JSONResponse({"job": redact_job(job)})

    async def list_jobs(self, request: Request) -> Response:
        """Newest first, one page: ``?status=&limit=&before=<job id>``; ``nextBefore``
        is the cursor of the next page (null on the last one)."""
        limit = int_param(request, "limit", 100, 1, MAX_LIST)
        status = request.query_params.get("status")
        if status is not None and status not in JOB_STATUSES:
            raise ApiError(400, f"status must be one of {', '.join(JOB_STATUSES)}, got {status!r}",
                           "status")
        before = request.query_params.get("before") or None
        try:
            jobs = await run_in_threadpool(self.store.list_jobs, status=status, limit=limit,
                                           before=before)
        except KeyError:
            raise ApiError(404, f"no job {before!r} (the before= cursor); pass the id of the "
                                "last job of the previous page", "before") from None
        next_before = jobs[-1]["id"] if len(jobs) == limit else None
        return JSONResponse({"jobs": [redact_job(j) for j in jobs], "nextBefore": next_before})

    async def get_job(self, request: Request) -> Response:
        job = self._job(request.path_params["job_id"])
        body: dict[str, Any] = {"job": redact_job(job)}
        if request.query_params.get("events", "").lower() in ("1", "true", "yes"):
            after = int_param(request, "after", 0, 0, 2**62)
            limit = int_param(request, "limit", 1000, 1, MAX_LIST)
            rows = self.store.read_events(job["id"], after, limit)
            body["events"] = [{**json.loads(r.data), "eventId": str(r.id)} for r in rows]
        return JSONResponse(body)

    async def stream(self, request: Request) -> Response:
        job = self._job(request.path_params["job_id"])
        frames = job_event_frames(self.store, self.hub, job["id"],
                                  after=last_event_id(request), ping_s=self.ping_s)
        return sse_response(frames)

    async def cancel(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]
        self._job(job_id)
        job = await run_in_threadpool(self.manager.cancel, job_id)
        return JSONResponse({"job": redact_job(job) if isinstance(job, dict) else job})

    async def artifact(self, request: Request) -> Response:
        job = self._job(request.path_params["job_id"])
        rel = request.path_params["path"]
        base = self.manager.job_dir(job["id"]).resolve()
        target = (base / rel).resolve()
        if not target.is_relative_to(base):
            raise ApiError(404, f"artifact path {rel!r} is outside the job's directory", "path")
        if target.is_dir():
            files: list[dict[str, Any]] = []
            for path in sorted(target.rglob("*")):
                resolved = path.resolve()
                if path.is_file() and resolved.is_relative_to(base) and len(files) < 1000:
                    sub = str(path.relative_to(base))
                    files.append({"path": sub, "size": path.stat().st_size,
                                  "url": artifact_url(job["id"], sub)})
            return JSONResponse({"path": rel, "files": files})
        if not target.is_file():
            raise ApiError(404, f"job {job['id']} has no artifact {rel!r}", "path")
        return FileResponse(target, filename=target.name)

    async def inference_chat(self, request: Request) -> Response:
        body = await json_body(request)
        try:
            target, options = chat.parse_inference_body(body)
        except ConfigError as err:
            raise ApiError(400, str(err), err.field) from None
        return await self._respond(target, options, _target_name(target))

    async def chat_completions(self, request: Request) -> Response:
        body = await json_body(request)
        try:
            target, options, model = chat.parse_openai_body(body)
        except ConfigError as err:
            raise ApiError(400, str(err), err.field, openai_style=True) from None
        return await self._respond(target, options, model, openai_style=True)

    async def _respond(self, target: dict[str, Any], options: dict[str, Any],
                       model: str, *, openai_style: bool = False) -> Response:
        """Unknown job, step or model -> 404; other bad values -> 400."""
        self.chat_requests += 1
        try:
            return await chat.respond(self.responder, target, options, model)
        except chat.EngineUnavailable as err:
            raise ApiError(503, str(err), openai_style=openai_style) from None
        except ConfigError as err:
            status = 404 if err.field in _NOT_FOUND_FIELDS else 400
            raise ApiError(status, str(err), err.field, openai_style=openai_style) from None

    async def models(self, request: Request) -> Response:
        data = []
        for job in self.store.list_jobs(status=COMPLETED, limit=1000):
            data.append({"id": f"job:{job['id']}", "object": "model", "owned_by": "local",
                         "created": 0})
        return JSONResponse({"object": "list", "data": data})

    # Cloud bootstrap answered locally, so a cloud-shaped client works unchanged.
    # The local server issues no tokens (and never echoes one): its caller already
    # holds the token from <home>/token.
    async def anonymous(self, request: Request) -> Response:
        return JSONResponse({"anonymousId": "local", "kind": "local", "orgSlug": LOCAL_ORG})

    async def projects(self, request: Request) -> Response:
        project = {"id": "local-default", "slug": LOCAL_PROJECT, "name": LOCAL_PROJECT,
                   "orgSlug": LOCAL_ORG}
        if request.method == "POST":
            return JSONResponse({"project": project})
        return JSONResponse({"projects": [project]})


def _target_name(target: dict[str, Any]) -> str:
    if target["kind"] == "base":
        return str(target["model"])
    if target["kind"] == "checkpoint":
        return f"job:{target['jobId']}@{target['step']}"
    return f"job:{target['jobId']}"


def create_app(*, home: Path, policy: SecurityPolicy, ping_s: float | None = None,
               max_running: int = 1, instance_id: str | None = None,
               on_shutdown: Callable[[], None] | None = None,
               idle_timeout_s: float = 0.0,
               on_idle: Callable[[], None] | None = None) -> GuardMiddleware:
    """The full ASGI app for one home: guard middleware around the Starlette routes.

    The lifespan binds the SSE hub to the serving loop, recovers jobs a dead
    server left running, starts queued ones, and on shutdown calls
    ``on_shutdown`` (uvicorn re-raises SIGTERM after its own shutdown, so code
    after ``server.run`` may never run) and cancels the workers. With
    ``idle_timeout_s > 0`` it calls ``on_idle`` once no request and no job
    was active for that long (see ``idle.py``).
    """
    store = Store(home / "arkor.db")
    hub = Hub()
    manager = JobManager(store, home, hub.notify, max_running=max_running)
    if ping_s is None:
        ping_s = float(os.environ.get("ARKOR_NB_SSE_PING_S", DEFAULT_PING_S))
    api = LocalApi(home=home, store=store, hub=hub, manager=manager, ping_s=ping_s,
                   instance_id=instance_id or secrets.token_hex(8))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        hub.bind(asyncio.get_running_loop())
        await run_in_threadpool(manager.start)
        watcher = None
        if idle_timeout_s > 0 and on_idle is not None:
            watcher = asyncio.create_task(
                watch_idle(tracker, manager.busy, idle_timeout_s, on_idle))
        try:
            yield
        finally:
            if watcher is not None:
                watcher.cancel()
            if on_shutdown is not None:
                on_shutdown()
            await run_in_threadpool(manager.shutdown)

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.message, exc.field, openai_style=exc.openai_style)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = {404: f"no route {request.url.path}; see the routes in arkor_nb.local.server.app",
                   405: f"method {request.method} is not allowed on {request.url.path}"}
        return error_response(exc.status_code, message.get(exc.status_code, str(exc.detail)))

    async def store_error(request: Request, exc: Exception) -> Response:
        if is_damage(exc) or isinstance(exc, DamagedDatabaseError):
            return error_response(503, damage_advice(store.path), "home")
        return error_response(507, str(exc), "home")

    async def internal_error(request: Request, exc: Exception) -> Response:
        if is_damage(exc):
            log.error("the job database is damaged (%s)", exc)
            return error_response(503, damage_advice(store.path), "home")
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, f"internal error in the local server ({type(exc).__name__}); "
                           f"see {home / 'server.log'} and report it")

    routes = [
        Route("/healthz", api.healthz, methods=["GET"]),
        Route("/v1/jobs", api.create_job, methods=["POST"]),
        Route("/v1/jobs", api.list_jobs, methods=["GET"]),
        Route("/v1/jobs/{job_id}", api.get_job, methods=["GET"]),
        Route("/v1/jobs/{job_id}/events/stream", api.stream, methods=["GET"]),
        Route("/v1/jobs/{job_id}/cancel", api.cancel, methods=["POST"]),
        Route("/v1/jobs/{job_id}/artifacts/{path:path}", api.artifact, methods=["GET"]),
        Route("/v1/inference/chat", api.inference_chat, methods=["POST"]),
        Route("/v1/chat/completions", api.chat_completions, methods=["POST"]),
        Route("/v1/models", api.models, methods=["GET"]),
        Route("/v1/auth/anonymous", api.anonymous, methods=["POST"]),
        Route("/v1/projects", api.projects, methods=["GET", "POST"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(AnswerUnexpected, handler=internal_error)],
        exception_handlers={ApiError: api_error, HTTPException: http_error,
                            StoreError: store_error, Exception: internal_error},
    )
    app.state.api = api
    tracker = ActivityTracker(app)
    return GuardMiddleware(tracker, policy)
