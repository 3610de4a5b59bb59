"""How a Trainer finds its API: the Arkor cloud or the embedded local server.

A backend resolves, once and lazily, to a base URL, a bearer token and an
org/project scope. Resolution is deferred to the first ``start()``/``wait()``
so constructing a trainer never touches the network or spawns a server.
"""

from __future__ import annotations

import asyncio
import os
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from arkor_nb.core.errors import ConfigError, ScopeError
from arkor_nb.sdk.client import CloudApiClient
from arkor_nb.sdk.credentials import (
    credentials_token,
    default_cloud_url,
    ensure_credentials,
    read_credentials,
)
from arkor_nb.sdk.http import ProjectScope, Verify, tls_verify
from arkor_nb.sdk.local_server import ensure_server, home_dir, live_server
from arkor_nb.sdk.state import ensure_project_state
from arkor_nb.sdk.sync import AsyncOnce

# Base models the Arkor cloud accepts for a job's ``model`` (mirrors the TS SDK).
SUPPORTED_MODELS: tuple[str, ...] = ("unsloth/gemma-4-E4B-it",)
LOCAL_SCOPE = ProjectScope("local", "default")
SERVER_GRACE_ENV = "ARKOR_NB_SERVER_GRACE_S"


def server_grace_s() -> float:
    """How long a ``LocalBackend(autostart=False)`` waits for a stopped server to come back."""
    raw = os.environ.get(SERVER_GRACE_ENV, "")
    try:
        return max(0.0, float(raw)) if raw else 30.0
    except ValueError:
        raise ConfigError(SERVER_GRACE_ENV, f"{raw!r} is not a number of seconds; e.g. 30") from None


@dataclass(frozen=True)
class ResolvedApi:
    """Everything a Trainer needs to talk to its backend."""

    base_url: str
    token: str | None
    scope: ProjectScope
    keepalive: float | None = None
    verify: Verify = None  # how the server's TLS certificate is checked (None: public CAs)

    def client(self) -> CloudApiClient:
        return CloudApiClient(self.base_url, self.token, keepalive=self.keepalive,
                              verify=self.verify)


class _Backend(ABC):
    """How a Trainer finds its API: resolved once, shared by concurrent callers."""

    kind: str = ""

    def __init__(self, keepalive: float | None) -> None:
        if keepalive is not None and keepalive <= 0:
            raise ConfigError("keepalive", "must be > 0 seconds (the server's ping interval)")
        self.keepalive = keepalive
        self._once: AsyncOnce[ResolvedApi] = AsyncOnce()
        self._moved: ResolvedApi | None = None

    async def resolve(self) -> ResolvedApi:
        """Resolve once; concurrent callers (any loop, any thread) share the work."""
        if self._moved is not None:
            return self._moved
        return await self._once.get(self._resolve)

    async def relocate(self, stale: ResolvedApi) -> ResolvedApi:
        """Where the API is now, after ``stale`` refused a connection.

        Fixed addresses stay where they are (the failure is transient); a
        backend that finds its server (a local one that may restart on another
        port) looks again, and later calls use what it found.
        """
        return stale

    @abstractmethod
    async def _resolve(self) -> ResolvedApi: ...


class LocalBackend(_Backend):
    """The embedded local server (``arkor_nb.local``), started on demand.

    With ``url`` and ``token`` given nothing is launched. Otherwise the
    server recorded in ``<home>/server.json`` is reused, or a new one is
    spawned when ``autostart=True`` (with ``autostart=False`` a missing
    server is an error). ``keepalive`` is the server's ping interval
    in seconds (default: ``ARKOR_NB_KEEPALIVE_S`` or 15); the client treats
    3x that without a byte as a stalled stream.

    ``verify`` checks an ``https://`` server's certificate: the path of a
    certificate to trust (a self-signed ``cert.pem``), an ``ssl.SSLContext``,
    or ``False``; default: the public CAs.
    """

    kind = "local"

    def __init__(
        self,
        home: str | Path | None = None,
        url: str | None = None,
        token: str | None = None,
        autostart: bool = True,
        *,
        keepalive: float | None = None,
        verify: Verify = None,
    ) -> None:
        super().__init__(keepalive)
        if (url is None) != (token is None):
            raise ConfigError(
                "backend", "LocalBackend needs both url= and token= (or neither, to auto-launch)"
            )
        if verify is not None:
            tls_verify(verify)  # a missing certificate file fails here, not at start()
        self.home = Path(home) if home is not None else None
        self.url = url
        self.token = token
        self.autostart = autostart
        self.verify = verify
        self._missing_since: float | None = None

    async def _resolve(self) -> ResolvedApi:
        if self.url is not None:
            return ResolvedApi(self.url.rstrip("/"), self.token, LOCAL_SCOPE, self.keepalive,
                               self.verify)
        return await self._find_server()

    async def relocate(self, stale: ResolvedApi) -> ResolvedApi:
        """The server may have died and come back on another port (``arkor-nb
        serve`` picks any free one): read ``server.json`` again, and with
        ``autostart`` start a server when none runs. With ``autostart=False``
        a server still missing after ``ARKOR_NB_SERVER_GRACE_S`` (default 30 s)
        is an error: a wait must end, not retry a dead port forever."""
        if self.url is not None:
            return stale
        if self.autostart:
            found = await self._find_server()
        else:
            info = await asyncio.to_thread(live_server, self.home)
            if info is None:
                now = time.monotonic()
                self._missing_since = self._missing_since or now
                if now - self._missing_since >= server_grace_s():
                    raise ConfigError(
                        "backend",
                        f"the local server for home {self.home or home_dir()} stopped and no "
                        f"server has answered for {now - self._missing_since:.0f} s; start one "
                        "with `arkor-nb serve` (then ak.Trainer.attach(job_id) or "
                        "ak.live(job_id=...) to follow the job again), or use autostart=True",
                    )
                return stale
            found = ResolvedApi(str(info.url).rstrip("/"), info.token, LOCAL_SCOPE, self.keepalive)
        self._missing_since = None
        if found != stale:
            self._moved = found
        return found

    async def _find_server(self) -> ResolvedApi:
        if self.autostart:
            info = await asyncio.to_thread(ensure_server, self.home)
        else:
            found = await asyncio.to_thread(live_server, self.home)
            if found is None:
                raise ConfigError(
                    "backend",
                    "LocalBackend(autostart=False) found no running local server for home "
                    f"{self.home or home_dir()}; start one with `arkor-nb serve`, pass url= and "
                    "token=, or use autostart=True",
                )
            info = found
        return ResolvedApi(str(info.url).rstrip("/"), info.token, LOCAL_SCOPE, self.keepalive)

    def __repr__(self) -> str:
        return f"LocalBackend(home={self.home!r}, url={self.url!r})"


class CloudBackend(_Backend):
    """The Arkor cloud API (or anything speaking its protocol).

    Unset parts come from the environment and files, as in the TS SDK:
    base URL from ``ARKOR_CLOUD_API_URL``, then the credentials' stamped URL,
    then production; token from ``~/.arkor/credentials.json`` (an anonymous
    one is minted when absent); scope from ``.arkor/state.json`` in ``cwd``
    (a project is created or reused for anonymous users). With all four of
    ``base_url``, ``token``, ``org_slug`` and ``project_slug`` set, nothing
    is read and no bootstrap request is made.
    """

    kind = "cloud"

    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        org_slug: str | None = None,
        project_slug: str | None = None,
        *,
        cwd: str | Path | None = None,
        keepalive: float | None = None,
    ) -> None:
        super().__init__(keepalive)
        if (org_slug is None) != (project_slug is None):
            raise ConfigError(
                "backend", "CloudBackend needs both org_slug= and project_slug= (or neither)"
            )
        self.base_url = base_url
        self.token = token
        self.org_slug = org_slug
        self.project_slug = project_slug
        self.cwd = Path(cwd) if cwd is not None else None

    async def _resolve(self) -> ResolvedApi:
        if self.base_url and self.token and self.org_slug and self.project_slug:
            scope = ProjectScope(self.org_slug, self.project_slug)
            return ResolvedApi(self.base_url.rstrip("/"), self.token, scope, self.keepalive)
        if self.token is not None:
            stored = await asyncio.to_thread(read_credentials)
            credentials = stored if stored and credentials_token(stored) == self.token else {}
        else:
            credentials = await asyncio.to_thread(ensure_credentials, self.base_url)
        base_url = (self.base_url or default_cloud_url(credentials)).rstrip("/")
        token = self.token or credentials_token(credentials)
        if self.org_slug is not None and self.project_slug is not None:
            scope = ProjectScope(self.org_slug, self.project_slug)
        else:
            if not credentials:
                raise ScopeError(
                    "CloudBackend(token=...) without stored credentials cannot bootstrap a "
                    "project: also pass org_slug= and project_slug=."
                )
            async with CloudApiClient(base_url, token, keepalive=self.keepalive) as api:
                scope = await ensure_project_state(api, credentials, self.cwd)
        return ResolvedApi(base_url, token, scope, self.keepalive)

    def __repr__(self) -> str:
        return (
            f"CloudBackend(base_url={self.base_url!r}, org_slug={self.org_slug!r}, "
            f"project_slug={self.project_slug!r})"
        )


Backend = LocalBackend | CloudBackend
# What ``backend=`` accepts everywhere: "local", "cloud" or a configured backend.
BackendSpec = str | LocalBackend | CloudBackend


def make_backend(backend: BackendSpec) -> Backend:
    """``backend=`` as given by the user -> the backend object (one clear error otherwise)."""
    if isinstance(backend, (LocalBackend, CloudBackend)):
        return backend
    if backend == "local":
        return LocalBackend()
    if backend == "cloud":
        return CloudBackend()
    raise ConfigError(
        "backend",
        f'must be "local", "cloud", ak.LocalBackend(...) or ak.CloudBackend(...), got {backend!r}',
    )
