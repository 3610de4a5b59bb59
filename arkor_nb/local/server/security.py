"""Who may talk to the local server: token, Host and Origin checks.

A trainer left running on a laptop must not be drivable by a web page the
user happens to open. Three layers, checked on every request in this order:

1. ``Host`` must be the loopback address and port we bound (defeats DNS
   rebinding, where ``evil.example`` resolves to 127.0.0.1);
2. a browser's ``Origin`` / ``Sec-Fetch-Site`` must not be another site;
3. ``Authorization: Bearer <token>`` must match, compared in constant time.

``/healthz`` skips only the token check. The token lives in ``<home>/token``
(mode 0600) and is never logged or echoed.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

AsgiScope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[AsgiScope, Receive, Send], Awaitable[None]]

TOKEN_FILE = "token"
OPEN_PATHS = frozenset({"/healthz"})
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
DEFAULT_MAX_BODY = 8 * 1024 * 1024


def is_loopback_host(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1", "[::1]") or host.startswith("127.")


def load_or_create_token(home: Path) -> str:
    """Read ``<home>/token``, creating it (0600, atomically, race-free) on first use."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / TOKEN_FILE
    if not path.exists():
        tmp = home / f".token.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_urlsafe(32).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # fails if another process won the race: use theirs
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)
    token = path.read_text().strip()
    if not token:
        raise RuntimeError(f"{path} is empty: delete it and restart the server to create a new token")
    return token


@dataclass
class SecurityPolicy:
    """The checks' parameters; ``port`` is filled in once the socket is bound."""

    token: str = field(repr=False)
    port: int = 0
    allow_remote: bool = False
    extra_origins: frozenset[str] = frozenset()

    def host_ok(self, host: str | None) -> bool:
        if self.allow_remote:
            return True
        if not host:
            return False
        return host.lower() in {f"{name}:{self.port}" for name in LOOPBACK_NAMES}

    def origin_ok(self, origin: str | None, fetch_site: str | None) -> bool:
        if origin is not None:
            own = {f"http://{name}:{self.port}" for name in LOOPBACK_NAMES}
            return origin.lower() in own or origin in self.extra_origins
        return fetch_site not in ("cross-site", "same-site")

    def token_ok(self, authorization: str | None) -> bool:
        if not authorization:
            return False
        scheme, _, presented = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(presented.strip().encode(), self.token.encode())


class GuardMiddleware:
    """Pure ASGI middleware applying :class:`SecurityPolicy` (and a body-size cap)."""

    def __init__(self, app: ASGIApp, policy: SecurityPolicy,
                 max_body: int = DEFAULT_MAX_BODY) -> None:
        self.app = app
        self.policy = policy
        self.max_body = max_body

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":  # no websocket routes: refuse before any check
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        path = scope.get("path", "")
        if not self.policy.host_ok(headers.get("host")):
            await _reject(send, 403, "Host header is not this server's loopback address; "
                          "connect to the URL in the runtime file (server.json)", "host")
            return
        if not self.policy.origin_ok(headers.get("origin"), headers.get("sec-fetch-site")):
            await _reject(send, 403, "cross-site browser requests are not allowed; "
                          "call the local server from Python (the arkor_nb client)", "origin")
            return
        if path not in OPEN_PATHS and not self.policy.token_ok(headers.get("authorization")):
            await _reject(send, 401, "missing or wrong bearer token; send "
                          "'Authorization: Bearer <token>' with the token from <home>/token",
                          "authorization", extra=[(b"www-authenticate", b"Bearer")])
            return
        if "\x00" in path:  # %00: no file, job or route name holds one
            await _reject(send, 400, "the URL path contains a NUL byte (%00); remove it", "path")
            return
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            await _reject(send, 413, f"request body is larger than {self.max_body} bytes; "
                          "send a smaller body (large datasets go in files, not in requests)",
                          "body")
            return
        await self.app(scope, receive, send)


async def _reject(send: Send, status: int, message: str, field_name: str,
                  extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"error": message, "field": field_name}).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())] + (extra or [])
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
