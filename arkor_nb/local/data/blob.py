"""Blob datasets (``{"type": "blob", "url", "token"?, "format"?}``): fetched over HTTP.

The local copy in ``<home>/datasets/`` is keyed by the URL **and** the token
(a job with another token, or none, never reads a copy fetched with this one)
and revalidated on every job: a conditional GET (``If-None-Match`` /
``If-Modified-Since`` from the last answer's ``ETag`` / ``Last-Modified``)
returns 304 when the copy is current, else the file is fetched again. A 401 or
403 is an error even when a copy exists. Copies are 0600; their names are
hashes, and neither the URL nor the token is written anywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from arkor_nb.core.redact import redact_url, scrub
from arkor_nb.local.data.rows import FILE_FORMATS


class BlobError(ValueError):
    """A blob dataset could not be downloaded; the message shows the URL without secrets."""

    field = "datasetSource.url"

    def __init__(self, url: str, reason: str) -> None:
        safe = redact_url(url, every_query=True)
        super().__init__(f"could not download the dataset from {safe}: {scrub(reason, url)}; "
                         "check the URL (and the token, for a private file)")


def blob_cache_path(url: str, home: Path, fmt: str | None = None, token: str | None = None) -> Path:
    """Where the copy of ``url`` fetched with ``token`` lives (a hash of both names it)."""
    suffix = Path(url.split("?", 1)[0]).suffix.lower()
    if fmt:
        suffix = next((s for s, f in FILE_FORMATS.items() if f == fmt), suffix)
    if suffix not in FILE_FORMATS:
        suffix = ".jsonl"
    key = hashlib.sha256(json.dumps([url, token or ""]).encode()).hexdigest()[:32]
    return Path(home) / "datasets" / f"blob-{key}{suffix}"


def _validators(meta: Path) -> dict[str, str]:
    try:
        data = json.loads(meta.read_text())
    except (OSError, ValueError):
        return {}
    out = {}
    if isinstance(data, dict):
        if isinstance(data.get("etag"), str):
            out["If-None-Match"] = data["etag"]
        if isinstance(data.get("lastModified"), str):
            out["If-Modified-Since"] = data["lastModified"]
    return out


def _private_write(path: Path, data: bytes | None = None) -> int:
    """Open ``path`` for writing as 0600 (created or truncated); returns the fd."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    os.fchmod(fd, 0o600)
    if data is not None:
        os.write(fd, data)
    return fd


def download_blob(url: str, home: Path, token: str | None = None, fmt: str | None = None) -> Path:
    """The current copy of ``url`` as fetched with ``token`` (revalidated now)."""
    import httpx

    dest = blob_cache_path(url, home, fmt, token)
    meta = dest.with_name(dest.name + ".meta")
    dest.parent.mkdir(parents=True, exist_ok=True)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if dest.is_file():
        headers.update(_validators(meta))
    tmp = dest.with_name(f"{dest.name}.{os.getpid()}.part")
    try:
        # httpx drops Authorization on a redirect to another origin.
        with httpx.stream("GET", url, headers=headers, follow_redirects=True,
                          timeout=60.0) as resp:
            if resp.status_code == 304 and dest.is_file():
                return dest
            if resp.status_code >= 400:
                hint = (" (the token was refused: check datasetSource.token)"
                        if resp.status_code in (401, 403) else "")
                raise BlobError(url, f"HTTP {resp.status_code} {resp.reason_phrase}{hint}")
            with os.fdopen(_private_write(tmp), "wb") as fh:
                for chunk in resp.iter_bytes():
                    fh.write(chunk)
            seen = {"etag": resp.headers.get("etag"),
                    "lastModified": resp.headers.get("last-modified")}
    except httpx.HTTPError as exc:
        tmp.unlink(missing_ok=True)
        raise BlobError(url, f"{type(exc).__name__}: {exc}") from None
    tmp.replace(dest)
    os.close(_private_write(meta, json.dumps(seen).encode()))
    return dest
