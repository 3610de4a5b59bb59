"""Every exception arkor_nb raises on purpose. Each message names what went wrong and the fix.

The hierarchy (``ak.ArkorError`` catches them all)::

    ArkorError
    ├── CloudApiError            the backend answered an HTTP error (.status, .message, .body)
    │   ├── CloudUnreachableError no HTTP answer at all (.status == 0, .url)
    │   ├── RemoteConfigError    4xx about one field of the request; also a ConfigError
    │   └── JobNotFoundError     404 for a job id; also a ConfigError (.field == "job_id")
    ├── ConfigError (ValueError) a bad argument or setting (.field names it)
    │   ├── RemoteConfigError    ... spotted by the backend instead of the client
    │   └── JobNotFoundError     ... an unknown job id
    ├── AbortedError             the trainer's abort signal fired (the job keeps running)
    ├── ReconnectExhaustedError  the event stream failed max_attempts times in a row
    └── ScopeError               .arkor/state.json belongs to another org

``error_from_body`` maps an HTTP error answer onto this hierarchy (every
request of the SDK goes through it). Transport failures (``httpx``
connection errors, timeouts) are not wrapped here: the stream retries them
and ends in ReconnectExhaustedError.
"""

from __future__ import annotations

import json
from typing import Any


class ArkorError(Exception):
    """Base class for every arkor_nb error."""


class CloudApiError(ArkorError):
    """The backend answered with an HTTP error.

    ``status`` is the HTTP status code and ``message`` the server's own words
    (its ``error``/``message`` field when the body is JSON).
    """

    def __init__(self, status: int, message: str, *, body: object = None) -> None:
        self.status = status
        self.message = message
        self.body = body
        text = f"HTTP {status}: {message}"
        if status == 426:
            text += " (this client is too old for the server: upgrade with `pip install -U arkor-nb`)"
        super().__init__(text)


class CloudUnreachableError(CloudApiError):
    """No HTTP answer at all from the backend: the name does not resolve, the
    connection is refused or times out (``status`` is 0, ``url`` the address tried)."""

    def __init__(self, url: str, reason: object) -> None:
        detail = str(reason) or type(reason).__name__
        text = (f"cannot reach {url} ({detail}); check the address (for the Arkor cloud: "
                "ARKOR_CLOUD_API_URL, the arkorCloudApiUrl in ~/.arkor/credentials.json or "
                "CloudBackend(base_url=...)), your network and proxy settings, and that the "
                "server is up")
        super().__init__(0, text)
        self.url = url
        self.args = (text,)


class AbortedError(ArkorError):
    """The trainer's abort signal fired; the backend job was not cancelled."""

    def __init__(self, reason: object = None) -> None:
        self.reason = reason
        super().__init__("aborted" if reason is None else f"aborted: {reason}")


class ReconnectExhaustedError(ArkorError):
    """The event stream failed ``max_attempts`` times in a row; ``__cause__`` is the last failure."""

    def __init__(self, attempts: int, last_error: BaseException | None = None) -> None:
        self.attempts = attempts
        self.last_error = last_error
        detail = f": {last_error}" if last_error is not None else ""
        super().__init__(f"event stream failed {attempts} times in a row{detail}")


class ConfigError(ArkorError, ValueError):
    """A trainer argument has a bad value; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


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


class ScopeError(ArkorError):
    """.arkor/state.json belongs to a different org than the current credentials."""


class JobNotFoundError(ConfigError, CloudApiError):
    """The backend has no job with this id (HTTP 404); ``job_id`` names it.

    Both a CloudApiError (``.status == 404``) and a ConfigError
    (``.field == "job_id"``): an unknown id is bad input, and it came from the
    backend. ``where`` says which backend (e.g. "the local backend at http://...").
    """

    def __init__(self, job_id: str, where: str = "the backend", message: str = "", *,
                 body: object = None) -> None:
        detail = f" ({message})" if message else ""
        text = (f"job {job_id!r} does not exist on {where}{detail}; check the id "
                "(`arkor-nb jobs` or ak.jobs() list the jobs there) and the backend")
        CloudApiError.__init__(self, 404, text, body=body)
        self.field = "job_id"
        self.job_id = job_id
        self.args = (f"job_id: {text}",)


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


def announced_interrupt() -> KeyboardInterrupt:
    """A plain KeyboardInterrupt marked ``arkor_nb_announced``: ``wait()`` already
    printed the one line (job id, still running, how to stop it), so a caller
    such as the CLI need not print another."""
    interrupt = KeyboardInterrupt()
    interrupt.arkor_nb_announced = True  # type: ignore[attr-defined]
    return interrupt
