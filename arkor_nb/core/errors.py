"""Exceptions a user can catch. Each message names what went wrong and the fix."""

from __future__ import annotations


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


def announced_interrupt() -> KeyboardInterrupt:
    """A plain KeyboardInterrupt marked ``arkor_nb_announced``: ``wait()`` already
    printed the one line (job id, still running, how to stop it), so a caller
    such as the CLI need not print another."""
    interrupt = KeyboardInterrupt()
    interrupt.arkor_nb_announced = True  # type: ignore[attr-defined]
    return interrupt
