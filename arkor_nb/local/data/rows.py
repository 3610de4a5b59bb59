"""Training rows: every row of every source normalised to one of three shapes.

Every row is normalised to one of three shapes, so tokenisation has one code
path per shape: ``{"messages": [...]}``, ``{"prompt", "completion"}`` or
``{"text"}``. Recognised columns: ``messages`` (or ShareGPT ``conversations``),
``prompt``+``completion``, ``instruction``+``input``?+``output``, ``text``;
``datasetFormat`` names the shape (``"messages"``, ``"prompt_completion"``,
``"instruction"``, ``"text"``) or maps canonical names to other columns
(``{"prompt": "question", "completion": "answer"}``).

Validation (``local.config``) and training (``local.training``) both read rows
through this package, so a bad row is reported with its line number by both.
``sources`` reads files, blobs and hub datasets; ``tokenize`` turns rows into
token ids.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

FILE_FORMATS: dict[str, str] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".parquet": "parquet",
}
FORMAT_NAMES: dict[str, str] = {
    "messages": "messages",
    "chat": "messages",
    "conversations": "messages",
    "prompt_completion": "prompt_completion",
    "prompt-completion": "prompt_completion",
    "instruction": "instruction",
    "alpaca": "instruction",
    "text": "text",
}
CANONICAL_COLUMNS = ("messages", "prompt", "completion", "instruction", "input", "output", "text", "system")
ROLES = frozenset({"system", "user", "assistant", "tool"})
_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                   "system": "system", "tool": "tool"}


class RowError(ValueError):
    """One row cannot be used; ``where`` is e.g. ``"line 7"`` or ``"row 3"``."""

    def __init__(self, where: str, message: str) -> None:
        self.where = where
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class RowFormat:
    """How to read rows: a forced shape (or None = detect) and a column mapping."""

    kind: str | None = None
    columns: tuple[tuple[str, str], ...] = ()

    def column(self, canonical: str) -> str:
        return dict(self.columns).get(canonical, canonical)


def parse_format(dataset_format: Any) -> RowFormat:
    """``datasetFormat`` -> RowFormat; raises ValueError with the fix on bad values."""
    if dataset_format is None:
        return RowFormat()
    if isinstance(dataset_format, str):
        kind = FORMAT_NAMES.get(dataset_format.strip().lower())
        if kind is None:
            raise ValueError(
                f"unknown format {dataset_format!r}; use one of "
                f"{sorted(set(FORMAT_NAMES.values()))} or a column mapping like "
                '{"prompt": "question", "completion": "answer"}'
            )
        return RowFormat(kind=kind)
    if isinstance(dataset_format, dict):
        cols: list[tuple[str, str]] = []
        for key, value in dataset_format.items():
            if key not in CANONICAL_COLUMNS:
                raise ValueError(
                    f"unknown key {key!r} in the column mapping; keys are {list(CANONICAL_COLUMNS)}"
                )
            if not isinstance(value, str) or not value:
                raise ValueError(f"column name for {key!r} must be a non-empty string")
            cols.append((key, value))
        keys = {k for k, _ in cols}
        kind = None
        if "messages" in keys:
            kind = "messages"
        elif keys & {"instruction", "output"}:
            kind = "instruction"
        elif keys & {"prompt", "completion"}:
            kind = "prompt_completion"
        elif "text" in keys:
            kind = "text"
        return RowFormat(kind=kind, columns=tuple(cols))
    raise ValueError("must be a format name (string) or a column mapping (object)")


def _text(value: Any, where: str, column: str, *, blank_ok: bool = True) -> str:
    """A string cell; a prompt or answer must also have some text (a blank one teaches nothing)."""
    if value is None:
        raise RowError(where, f"column {column!r} is empty")
    if not isinstance(value, str):
        raise RowError(where, f"column {column!r} must be a string, got {type(value).__name__}")
    if not blank_ok and not value.strip():
        raise RowError(where, f"column {column!r} is empty; fill it in or remove the row")
    return value


def _messages(value: Any, where: str, column: str) -> list[dict[str, str]]:
    if isinstance(value, str):  # csv cells hold JSON text
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise RowError(where, f"column {column!r} is not a JSON list of messages") from exc
    if not isinstance(value, list) or not value:
        raise RowError(where, f"column {column!r} must be a non-empty list of messages")
    out: list[dict[str, str]] = []
    for j, msg in enumerate(value):
        if not isinstance(msg, dict):
            raise RowError(where, f"message {j} must be an object with role and content")
        role = msg.get("role", msg.get("from"))
        content = msg.get("content", msg.get("value"))
        role = _SHAREGPT_ROLES.get(str(role), role) if "from" in msg else role
        if role not in ROLES:
            raise RowError(where, f"message {j} has role {role!r}; use one of {sorted(ROLES)}")
        if not isinstance(content, str):
            raise RowError(where, f"message {j} needs a string 'content'")
        if role in ("user", "assistant") and not content.strip():
            raise RowError(where, f"message {j} ({role}) has empty content; fill it in or "
                           "remove the row")
        out.append({"role": role, "content": content})
    if not any(m["role"] == "assistant" for m in out):
        raise RowError(where, "has no assistant message to learn from")
    return out


def normalize_row(raw: Any, where: str, fmt: RowFormat = RowFormat()) -> dict[str, Any]:
    """One raw row -> ``{"messages"}`` / ``{"prompt","completion"}`` / ``{"text"}``."""
    if isinstance(raw, RowError):
        raise raw
    if not isinstance(raw, dict):
        raise RowError(where, f"must be an object, got {type(raw).__name__}")
    kind = fmt.kind
    col = fmt.column
    if kind is None:
        if col("messages") in raw or "conversations" in raw:
            kind = "messages"
        elif col("prompt") in raw and col("completion") in raw:
            kind = "prompt_completion"
        elif col("instruction") in raw and col("output") in raw:
            kind = "instruction"
        elif col("text") in raw:
            kind = "text"
        else:
            raise RowError(
                where,
                f"no recognised columns (found {sorted(raw)[:8]}); use messages, prompt+completion, "
                "instruction+input+output or text, or map yours with datasetFormat, "
                'e.g. {"prompt": "question", "completion": "answer"}',
            )
    missing = [c for c in _required(kind, fmt) if c not in raw]
    if missing:
        raise RowError(where, f"missing column(s) {missing} for the {kind!r} format")
    if kind == "messages":
        name = col("messages") if col("messages") in raw else "conversations"
        messages = _messages(raw[name], where, name)
        system = raw.get(col("system"))
        if isinstance(system, str) and system and messages[0]["role"] != "system":
            messages.insert(0, {"role": "system", "content": system})
        return {"messages": messages}
    if kind == "prompt_completion":
        row = {
            "prompt": _text(raw[col("prompt")], where, col("prompt"), blank_ok=False),
            "completion": _text(raw[col("completion")], where, col("completion"), blank_ok=False),
        }
    elif kind == "instruction":
        prompt = _text(raw[col("instruction")], where, col("instruction"), blank_ok=False)
        extra = raw.get(col("input"))
        if isinstance(extra, str) and extra.strip():
            prompt = f"{prompt}\n\n{extra}"
        row = {"prompt": prompt,
               "completion": _text(raw[col("output")], where, col("output"), blank_ok=False)}
    else:
        return {"text": _text(raw[col("text")], where, col("text"), blank_ok=False)}
    system = raw.get(col("system"))
    if isinstance(system, str) and system:
        row["system"] = system
    return row


def _required(kind: str, fmt: RowFormat) -> list[str]:
    if kind == "messages":
        return []  # messages or conversations; checked when read
    if kind == "prompt_completion":
        return [fmt.column("prompt"), fmt.column("completion")]
    if kind == "instruction":
        return [fmt.column("instruction"), fmt.column("output")]
    return [fmt.column("text")]


def check_rows(
    rows: Iterator[tuple[str, Any]], fmt: RowFormat, *, max_errors: int = 5
) -> tuple[int, list[str]]:
    """Count good rows and describe the first few bad ones (with line numbers)."""
    good, errors = 0, list[str]()
    for where, raw in rows:
        try:
            normalize_row(raw, where, fmt)
            good += 1
        except RowError as exc:
            if len(errors) < max_errors:
                errors.append(str(exc))
            elif len(errors) == max_errors:
                errors.append("...")
    return good, errors


def load_normalized(rows: Iterator[tuple[str, Any]], fmt: RowFormat) -> list[dict[str, Any]]:
    """All rows normalised; the first bad row raises RowError (validation ran before)."""
    return [normalize_row(raw, where, fmt) for where, raw in rows]
