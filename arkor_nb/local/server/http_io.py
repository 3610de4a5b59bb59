"""The edges of a local API request: reading what comes in, shaping a refusal.

Reading: a JSON object body under a size cap whose every string is valid
UTF-8 (SQLite and the worker must be able to hold it), an integer query
parameter within bounds, and ``Last-Event-ID`` (bad values replay from the
start). Refusing: ``ApiError`` carries a 4xx status, a message that names
the field and the fix, and the field; ``error_response`` writes it as our
``{"error", "field"?}`` body, or OpenAI's nested shape on the
OpenAI-compatible route. The route handlers live in ``app.py``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from arkor_nb.local.server.security import DEFAULT_MAX_BODY


class ApiError(Exception):
    """A 4xx answer with a message that names the field and the fix."""

    def __init__(self, status: int, message: str, field: str | None = None, *,
                 openai_style: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.openai_style = openai_style


def error_response(status: int, message: str, field: str | None = None, *,
                   openai_style: bool = False) -> JSONResponse:
    """Our error body; OpenAI's nested shape on the OpenAI-compatible route."""
    if openai_style:
        kind = "not_found_error" if status == 404 else "invalid_request_error"
        return JSONResponse({"error": {"message": message, "type": kind, "param": field,
                                       "code": None}}, status_code=status)
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    return JSONResponse(body, status_code=status)


async def json_body(request: Request, limit: int = DEFAULT_MAX_BODY) -> dict[str, Any]:
    """The body as a JSON object ({} when empty), or ApiError naming ``body`` or the bad field."""
    size = 0
    chunks: list[bytes] = []
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"request body is larger than {limit} bytes", "body")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as err:
        raise ApiError(400, f"request body is not valid JSON: {err}", "body") from None
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object", "body")
    bad = _not_unicode(body)
    if bad is not None:
        raise ApiError(400, f"{bad} contains text that is not valid Unicode (a lone surrogate "
                       "such as \\ud800, or a file name that is not UTF-8); send UTF-8 text or "
                       "rename the file", bad)
    return body


def _not_unicode(body: dict[str, Any]) -> str | None:
    """The field (``config.`` left out) of the first string SQLite/UTF-8 cannot hold."""
    stack: list[tuple[str, Any]] = [("", body)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return where.removeprefix("config.") or "body"
        elif isinstance(value, dict):
            for key, item in value.items():
                stack.append((f"{where}.{key}" if where else str(key), item))
                stack.append((f"{where} (a key)" if where else "body (a key)", key))
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", item) for i, item in enumerate(value))
    return None


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    """Query parameter ``name`` as an integer in [low, high]; ``default`` when absent."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"query parameter {name} must be an integer", name) from None
    if not low <= value <= high:
        raise ApiError(400, f"query parameter {name} must be between {low} and {high}", name)
    return value


def last_event_id(request: Request) -> int:
    """Where an SSE stream resumes: the header (or ``?lastEventId=``); 0 for none or garbage."""
    raw = request.headers.get("last-event-id") or request.query_params.get("lastEventId")
    if raw is None:
        return 0
    try:
        value = int(raw.strip())
    except ValueError:
        return 0
    # Out of SQLite's INTEGER range (e.g. an id from elsewhere): replay from the start.
    return value if 0 <= value < 2**63 else 0


class AnswerUnexpected:
    """ASGI middleware: an exception no handler took gets ``handler``'s answer, and that is all.

    Starlette's catch-all handler answers and then re-raises (for the server's
    log), and uvicorn closes the keep-alive connection after such an error: a
    client's next request on it was reset (a damaged database: the 503 came,
    the next POST got ``Connection reset by peer``). ``handler`` logs it
    instead. Once a response has started (a stream) nothing else can be
    said: re-raised.
    """

    def __init__(self, app: ASGIApp,
                 handler: Callable[[Request, Exception], Awaitable[Response]]) -> None:
        self.app = app
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            if started:
                raise
            response = await self.handler(Request(scope, receive), exc)
            await response(scope, receive, send)
