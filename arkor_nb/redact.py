"""Secrets out of job configs before they are shown or sent back.

A config may carry credentials (a blob dataset's ``token``, a URL with a
password); the worker needs them, but listings, ``ak.job()`` and the CLI never
show them. Used by the local server's responses and by the client, so a
backend that does not redact is still shown redacted.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REDACTED = "***"
_SECRET_KEY = re.compile(r"token|secret|password|passwd|api[_-]?key|authorization|credential",
                         re.IGNORECASE)


def _redact_url(value: str) -> str:
    """``https://user:pw@host/x?sig=..`` -> password and query signature hidden."""
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
    if query and re.search(r"(sig|signature|token|key|credential)", query, re.IGNORECASE):
        query = REDACTED
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_config(value: Any) -> Any:
    """A copy of ``value`` with secret-looking keys and URL credentials replaced by ``***``."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if isinstance(key, str) and _SECRET_KEY.search(key) and item not in (None, ""):
                out[key] = REDACTED
            else:
                out[key] = redact_config(item)
        return out
    if isinstance(value, list):
        return [redact_config(item) for item in value]
    if isinstance(value, str) and "://" in value:
        return _redact_url(value)
    return value


def redact_job(job: dict[str, Any]) -> dict[str, Any]:
    """A job dict whose ``config`` is redacted (everything else as is)."""
    if isinstance(job.get("config"), dict):
        return {**job, "config": redact_config(job["config"])}
    return job
