"""The SDK boundary's checks of what a user passes: job ids, chat messages, sampling numbers.

Every public entry (``ak.job``, ``ak.events``, ``ak.download``, ``ak.chat``,
``Trainer.attach``, the CLI through them) checks its arguments here, once,
before any request: text that cannot travel (a NUL in a URL, a lone surrogate
such as a non-UTF-8 command-line argument decodes to, NaN in JSON) is a
ConfigError naming the argument, never an httpx or encoder traceback.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from arkor_nb.core.errors import ConfigError
from arkor_nb.sdk.config import utf8

MAX_JOB_ID = 256


def check_job_id(job_id: Any) -> str:
    """A job id that can go in a URL path, or ConfigError("job_id", ...)."""
    hint = "list jobs with ak.jobs() or `arkor-nb jobs`"
    if not isinstance(job_id, str) or not job_id.strip():
        raise ConfigError("job_id", f"must be a job id string like 'job_1a2b...', got {job_id!r}; "
                                    f"{hint}")
    utf8("job_id", job_id)
    if ("/" in job_id or "?" in job_id or "#" in job_id or "%" in job_id
            or any(c.isspace() or not c.isprintable() for c in job_id)):
        raise ConfigError("job_id", f"{job_id!r} is not a job id (no '/', '?', '#', '%', spaces "
                                    f"or control characters); {hint}")
    if len(job_id) > MAX_JOB_ID:
        raise ConfigError("job_id", f"is {len(job_id)} characters long; a job id has at most "
                                    f"{MAX_JOB_ID}; {hint}")
    return job_id


def check_messages(messages: Any) -> list[dict[str, Any]]:
    """A prompt string or ``[{"role", "content"}, ...]`` -> the list, or ConfigError("messages")."""
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    if (not isinstance(messages, Sequence) or not messages
            or not all(isinstance(m, Mapping) and isinstance(m.get("role"), str) for m in messages)):
        raise ConfigError("messages", 'pass a prompt string or a list like '
                                      '[{"role": "user", "content": "hi"}]')
    out = [dict(m) for m in messages]
    for i, message in enumerate(out):
        utf8(f"messages[{i}].role", message["role"])
        content = message.get("content")
        if not isinstance(content, str):
            raise ConfigError(f"messages[{i}].content", f"must be a string, got "
                                                        f"{type(content).__name__}")
        utf8("messages" if len(out) == 1 else f"messages[{i}].content", content)
    return out


def check_number(field: str, value: Any, *, integer: bool = False) -> Any:
    """A finite number (an int when ``integer``), or ConfigError naming ``field``."""
    if value is None:
        return None
    if integer:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(field, f"must be a whole number, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(field, f"must be a finite number, got {value!r}")
    return value
