"""What every request of the SDK shares: client header, TLS, timeouts, scope, errors.

The cloud and the embedded local server share one wire protocol (see
docs/protocol.md). ``client.CloudApiClient`` (the job API), ``chat_transport``
(``/v1/inference/chat``), ``credentials`` and ``download`` all build their
requests with these pieces and turn a non-2xx answer into the one error
hierarchy of :mod:`arkor_nb.core.errors` (``error_from_body``).
"""

from __future__ import annotations

import functools
import os
import ssl
import threading
from dataclasses import dataclass

import certifi
import httpx

from arkor_nb.core.errors import ConfigError, error_from_body
from arkor_nb.core.version import __version__

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


def auth_headers(token: str | None) -> dict[str, str]:
    """The client header, and the bearer token when there is one."""
    headers = {"X-Arkor-Client": CLIENT_HEADER}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


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
