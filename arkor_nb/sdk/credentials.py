"""``~/.arkor/credentials.json``: the Arkor cloud identity, shared with the TS SDK.

Same file and shape as the TypeScript SDK so one ``arkor login`` (or one
anonymous bootstrap) serves both: ``{"mode": "anon", "token", "anonymousId",
"arkorCloudApiUrl", "orgSlug"}`` or ``{"mode": "oauth", "accessToken", ...,
"arkorCloudApiUrl"?}``. Writes are atomic and private (mode 0600) because the
file holds a bearer token.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import httpx

from arkor_nb.core.errors import CloudApiError, CloudUnreachableError, error_from_body
from arkor_nb.sdk.http import CLIENT_HEADER, PRODUCTION_URL, UNREACHABLE, tls_verify

CLOUD_URL_ENV = "ARKOR_CLOUD_API_URL"
Credentials = dict[str, Any]


def credentials_path() -> Path:
    return Path.home() / ".arkor" / "credentials.json"


def read_credentials(path: Path | None = None) -> Credentials | None:
    """The stored credentials, or None when absent, unreadable or not a JSON object."""
    path = path or credentials_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def atomic_write_json(path: Path, data: Any, *, mode: int | None = None) -> None:
    """Write JSON so readers see the old or the new file, never half of one.

    A uniquely named temp file in the same directory (created with ``mode``
    from the start, so a secret is never briefly world-readable) is renamed
    over the target.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.", dir=path.parent
    )
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_credentials(credentials: Credentials, path: Path | None = None) -> None:
    """Store credentials atomically with mode 0600."""
    atomic_write_json(path or credentials_path(), credentials, mode=0o600)


def credentials_token(credentials: Credentials) -> str | None:
    key = "token" if credentials.get("mode") == "anon" else "accessToken"
    token = credentials.get(key) or credentials.get("token")
    return token if isinstance(token, str) and token else None


def default_cloud_url(credentials: Credentials | None = None) -> str:
    """Base URL: ``ARKOR_CLOUD_API_URL``, then the credentials' stamped URL, then production."""
    env = os.environ.get(CLOUD_URL_ENV)
    if env is not None:
        return env.rstrip("/")
    stamped = (credentials or {}).get("arkorCloudApiUrl")
    if isinstance(stamped, str):
        return stamped.rstrip("/")
    return PRODUCTION_URL


def request_anonymous_token(base_url: str | None = None, kind: str = "cli") -> dict[str, str]:
    """``POST /v1/auth/anonymous``; returns ``{token, anonymousId, kind, orgSlug}``.

    Raises CloudApiError when the server refuses (e.g. anonymous use disabled).
    """
    url = (base_url or default_cloud_url()).rstrip("/")
    try:
        response = httpx.post(
            f"{url}/v1/auth/anonymous",
            json={"kind": kind},
            headers={"X-Arkor-Client": CLIENT_HEADER},
            timeout=30.0,
            verify=tls_verify(),
        )
    except UNREACHABLE as exc:
        raise CloudUnreachableError(url, exc) from exc
    if not response.is_success:
        raise error_from_body(response.status_code, response.content)
    try:
        data = response.json()
        org = data["personalOrg"]["slug"]
        token = data["token"]
        anonymous_id = data["anonymousId"]
    except (ValueError, KeyError, TypeError) as exc:
        raise CloudApiError(
            response.status_code,
            f"unexpected /v1/auth/anonymous answer: {response.text[:200]!r}",
        ) from exc
    return {
        "token": str(token),
        "anonymousId": str(anonymous_id),
        "kind": str(data.get("kind", kind)),
        "orgSlug": str(org),
    }


def ensure_credentials(base_url: str | None = None, path: Path | None = None) -> Credentials:
    """Stored credentials, or a fresh anonymous identity minted and stored.

    The anonymous token is requested from ``base_url`` (default: the
    ``ARKOR_CLOUD_API_URL`` / production URL) and the URL is stamped into the
    file so later runs keep talking to the same server.
    """
    path = path or credentials_path()
    existing = read_credentials(path)
    if existing is not None:
        return existing
    if path.exists():
        print(
            f"arkor-nb: warning: {path} was unreadable and is being replaced by a new "
            "anonymous identity.",
            file=sys.stderr,
        )
    url = (base_url or default_cloud_url()).rstrip("/")
    anon = request_anonymous_token(url, "cli")
    credentials: Credentials = {
        "mode": "anon",
        "token": anon["token"],
        "anonymousId": anon["anonymousId"],
        "arkorCloudApiUrl": url,
        "orgSlug": anon["orgSlug"],
    }
    write_credentials(credentials, path)
    return credentials
