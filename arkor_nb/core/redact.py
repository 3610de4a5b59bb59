"""Secrets out of job configs before they are shown or sent back.

A config may carry credentials (a blob dataset's ``token``, a URL with a
password); the worker needs them, but listings, ``ak.job()`` and the CLI never
show them. Used by the local server's responses and by the client, so a
backend that does not redact is still shown redacted.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REDACTED = "***"
_SIGNED_QUERY = re.compile(r"sig|signature|token|key|credential|secret|password|auth", re.IGNORECASE)
_SECRET_KEY = re.compile(r"token|secret|password|passwd|api[_-]?key|authorization|credential",
                         re.IGNORECASE)


def redact_url(value: str, *, every_query: bool = False) -> str:
    """``https://user:pw@host/x?sig=..`` -> ``https://***@host/x?***``.

    User info is always hidden; the query is hidden when it looks signed
    (``sig``, ``signature``, ``token``, ``key``, ``credential``...) or, with
    ``every_query``, whenever there is one (a dataset URL: any query may be a
    capability). Not a URL: returned as is.
    """
    try:
        parts = urlsplit(value)
    except ValueError:
        return value
    if not parts.scheme or not parts.netloc:
        return value
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rsplit('@', 1)[1]}"
    query = parts.query
    if query and query != REDACTED and (every_query or _SIGNED_QUERY.search(query)):
        query = REDACTED
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def scrub(text: str, url: str) -> str:
    """``text`` (an error message, a log line) with ``url`` and its secret parts
    (password, user, query) replaced, however a library re-rendered the URL."""
    safe = redact_url(url, every_query=True)
    out = text.replace(url, safe)
    try:
        parts = urlsplit(url)
    except ValueError:
        return out
    for secret in (parts.query, parts.password, parts.username):
        if secret and len(secret) >= 3:
            out = out.replace(secret, REDACTED)
    return out


@lru_cache(maxsize=1024)
def _secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key))


def redact_config(value: Any) -> Any:
    """``value`` with secret-looking keys and URL credentials replaced by ``***``.

    Returns ``value`` itself when nothing needs hiding (the common case: a
    10,000-job listing then costs no copies), else a redacted copy.
    """
    if isinstance(value, dict):
        out: dict[str, Any] | None = None
        for key, item in value.items():
            if isinstance(key, str) and _secret_key(key) and item not in (None, "", REDACTED):
                new: Any = REDACTED
            else:
                new = redact_config(item)
            if new is not item:
                if out is None:
                    out = dict(value)
                out[key] = new
        return value if out is None else out
    if isinstance(value, list):
        items = [redact_config(item) for item in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    if isinstance(value, str) and "://" in value:
        hidden = redact_url(value)
        return value if hidden == value else hidden
    return value


def redact_job(job: dict[str, Any]) -> dict[str, Any]:
    """A job dict whose ``config`` is redacted (the same dict when nothing is secret)."""
    config = job.get("config")
    if isinstance(config, dict):
        hidden = redact_config(config)
        if hidden is not config:
            return {**job, "config": hidden}
    return job
