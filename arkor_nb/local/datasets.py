"""Training data for the local worker: read, normalise, tokenise.

Sources (``datasetSource``): ``{"type": "file", "path", "evalPath"?}`` (jsonl, json,
csv, parquet), ``{"type": "huggingface", "name", "split"?, "subset"?, "evalSplit"?}``
and ``{"type": "blob", "url", "token"?, "format"?}`` (downloaded once with httpx).

Every row is normalised to one of three shapes, so tokenisation has one code
path per shape: ``{"messages": [...]}``, ``{"prompt", "completion"}`` or
``{"text"}``. Recognised columns: ``messages`` (or ShareGPT ``conversations``),
``prompt``+``completion``, ``instruction``+``input``?+``output``, ``text``;
``datasetFormat`` names the shape (``"messages"``, ``"prompt_completion"``,
``"instruction"``, ``"text"``) or maps canonical names to other columns
(``{"prompt": "question", "completion": "answer"}``).

Reading lives here (not in config.py) so validation and training read rows
the same way; a bad row is reported with its line number by both.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
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


# ------------------------------------------------------------------ reading


def file_format(path: Path) -> str | None:
    return FILE_FORMATS.get(path.suffix.lower())


def iter_file_rows(path: Path, fmt: str | None = None) -> Iterator[tuple[str, Any]]:
    """Yield ``(where, raw_row)``; a line that is not JSON yields a RowError as the row."""
    fmt = fmt or file_format(path)
    if fmt == "jsonl":
        with open(path, encoding="utf-8-sig") as fh:  # -sig: a UTF-8 BOM is skipped
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    yield f"line {lineno}", json.loads(line)
                except json.JSONDecodeError as exc:
                    yield f"line {lineno}", RowError(f"line {lineno}", f"not valid JSON ({exc.msg})")
    elif fmt == "json":
        yield from _iter_json_rows(path)
    elif fmt == "csv":
        with open(path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            for row in reader:
                yield f"line {reader.line_num}", dict(row)
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        for i, row in enumerate(pq.read_table(path).to_pylist(), start=1):
            yield f"row {i}", row
    else:
        raise ValueError(f"unsupported file type {path.suffix!r}; use one of {sorted(FILE_FORMATS)}")


# A .json file is read as a stream of rows, so its size never sets the
# server's memory; only the wrapped form {"data": [...]} is parsed whole, and
# only below this size.
JSON_WHOLE_LIMIT = 64 * 1024 * 1024
_JSON_CHUNK = 1024 * 1024
_JSON_MAX_ROW = 64 * 1024 * 1024
_JSON_WRAPPERS = ("data", "rows", "train", "examples")


def _iter_json_rows(path: Path) -> Iterator[tuple[str, Any]]:
    """Rows of a top-level JSON array, decoded one at a time from 1 MiB reads."""
    decoder = json.JSONDecoder()
    with open(path, encoding="utf-8-sig") as fh:
        buf, pos, eof = "", 0, False

        def fill() -> bool:
            nonlocal buf, pos, eof
            chunk = fh.read(_JSON_CHUNK)
            eof = not chunk
            buf, pos = buf[pos:] + chunk, 0
            return not eof

        def skip_space() -> str:
            nonlocal pos
            while True:
                while pos < len(buf) and buf[pos] in " \t\r\n":
                    pos += 1
                if pos < len(buf) or not fill():
                    return buf[pos] if pos < len(buf) else ""

        first = skip_space()
        if first == "{":
            yield from _wrapped_json_rows(path)
            return
        if first != "[":
            raise ValueError('a .json dataset must be a list of rows (or {"data": [...]})')
        pos += 1
        n = 0
        while True:
            token = skip_space()
            if token == "]":
                pos += 1
                if skip_space():
                    raise ValueError(f"unexpected text after the closing ']' of row {n}'s list")
                return
            if n:
                if token != ",":
                    raise ValueError(f"row {n}: expected ',' or ']' after it, found {token!r}")
                pos += 1
                skip_space()
            while True:
                try:
                    row, end = decoder.raw_decode(buf, pos)
                except json.JSONDecodeError as exc:
                    if eof or len(buf) - pos > _JSON_MAX_ROW:
                        raise ValueError(f"row {n + 1}: not valid JSON ({exc.msg})") from None
                    fill()
                    continue
                cut = end == len(buf) or buf[end] not in " \t\r\n,]"
                if cut and not eof and isinstance(row, (int, float)):
                    fill()  # a number may go on in the next read ("0." + "1")
                    continue
                break
            n += 1
            pos = end
            yield f"row {n}", row


def _wrapped_json_rows(path: Path) -> Iterator[tuple[str, Any]]:
    size = path.stat().st_size
    if size > JSON_WHOLE_LIMIT:
        raise ValueError(f"{path.name} is a JSON object of {size / 2**20:.0f} MB; a wrapped "
                         f'dataset ({{"data": [...]}}) is read whole, up to '
                         f"{JSON_WHOLE_LIMIT // 2**20} MB: write the rows as a top-level JSON "
                         "list, or better as .jsonl (one row per line)")
    with open(path, encoding="utf-8-sig") as fh:
        data = json.load(fh)
    rows = next((data[k] for k in _JSON_WRAPPERS if isinstance(data.get(k), list)), None)
    if rows is None:
        raise ValueError('a .json dataset must be a list of rows (or {"data": [...]})')
    for i, row in enumerate(rows, start=1):
        yield f"row {i}", row


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
    good, errors = 0, []
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


# ------------------------------------------------------------------ sources


def blob_cache_path(url: str, home: Path, fmt: str | None = None) -> Path:
    suffix = Path(url.split("?", 1)[0]).suffix.lower()
    if fmt:
        suffix = next((s for s, f in FILE_FORMATS.items() if f == fmt), suffix)
    if suffix not in FILE_FORMATS:
        suffix = ".jsonl"
    return Path(home) / "datasets" / f"blob-{hashlib.sha256(url.encode()).hexdigest()[:24]}{suffix}"


def download_blob(url: str, home: Path, token: str | None = None, fmt: str | None = None) -> Path:
    """Download once (atomically) into ``<home>/datasets/``; cached by URL."""
    import httpx

    dest = blob_cache_path(url, home, fmt)
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    tmp = dest.with_suffix(dest.suffix + ".part")
    try:
        with httpx.stream("GET", url, headers=headers, follow_redirects=True,
                          timeout=60.0) as resp:
            if resp.status_code >= 400:
                hint = (" (the token was refused: check datasetSource.token)"
                        if resp.status_code in (401, 403) else "")
                raise BlobError(url, f"HTTP {resp.status_code} {resp.reason_phrase}{hint}")
            with open(tmp, "wb") as fh:
                for chunk in resp.iter_bytes():
                    fh.write(chunk)
    except httpx.HTTPError as exc:
        raise BlobError(url, f"{type(exc).__name__}: {exc}") from None
    tmp.replace(dest)
    return dest


class BlobError(ValueError):
    """A blob dataset could not be downloaded; the message shows the URL without secrets."""

    field = "datasetSource.url"

    def __init__(self, url: str, reason: str) -> None:
        from arkor_nb.redact import redact_config

        safe = redact_config(url)
        super().__init__(f"could not download the dataset from {safe}: {reason.replace(url, safe)}; "
                         "check the URL (and the token, for a private file)")


def iter_hf_rows(name: str, split: str, subset: str | None = None) -> Iterator[tuple[str, Any]]:
    from datasets import load_dataset

    ds = load_dataset(name, subset, split=split)
    for i, row in enumerate(ds, start=1):
        yield f"row {i}", row


def source_rows(source: dict[str, Any], home: Path, *, eval_part: bool = False,
                split: str | None = None) -> Iterator[tuple[str, Any]] | None:
    """Raw rows of the train (or eval) part of a source; None when there is no eval part."""
    kind = source.get("type")
    if kind == "file":
        path = source.get("evalPath") if eval_part else source.get("path")
        return None if path is None else iter_file_rows(Path(path))
    if kind == "huggingface":
        name = source["name"]
        if eval_part:
            eval_split = source.get("evalSplit")
            return None if eval_split is None else iter_hf_rows(name, eval_split, source.get("subset"))
        return iter_hf_rows(name, split or source.get("split") or "train", source.get("subset"))
    if kind == "blob":
        if eval_part:
            return None
        path = download_blob(source["url"], home, source.get("token"), source.get("format"))
        return iter_file_rows(path)
    raise ValueError(f"unknown dataset type {kind!r}")


# ------------------------------------------------------------- tokenising


def _render(tokenizer: Any, messages: list[dict[str, str]], *, gen_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen_prompt)


def row_text_and_spans(row: dict[str, Any], tokenizer: Any) -> tuple[str, list[tuple[int, int]]]:
    """The training text of a row and the character spans of what the model should say.

    Spans come from rendering the conversation prefix by prefix, so any chat
    template works (no ``{% generation %}`` tags needed).
    """
    eos = tokenizer.eos_token or ""
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if "text" in row:
        text = row["text"] + eos
        return text, [(0, len(text))]
    if "messages" in row:
        messages = row["messages"]
    else:
        messages = [{"role": "user", "content": row["prompt"]},
                    {"role": "assistant", "content": row["completion"]}]
        if row.get("system"):
            messages.insert(0, {"role": "system", "content": row["system"]})
    if not has_template:
        text, spans = "", []
        for msg in messages:
            piece = msg["content"] + ("" if msg["role"] != "assistant" else eos) + "\n"
            if msg["role"] == "assistant":
                spans.append((len(text), len(text) + len(piece) - 1))
            text += piece
        return text, spans
    full = _render(tokenizer, messages)
    spans = []
    for i, msg in enumerate(messages):
        if msg["role"] != "assistant":
            continue
        start = len(_render(tokenizer, messages[:i], gen_prompt=True)) if i else 0
        end = len(_render(tokenizer, messages[: i + 1]))
        if full.startswith(_render(tokenizer, messages[: i + 1])):
            spans.append((start, end))
    return full, spans


def encode_row(
    row: dict[str, Any], tokenizer: Any, max_length: int, responses_only: bool
) -> dict[str, list[int]] | None:
    """Token ids + labels (-100 outside assistant spans when ``responses_only``).

    Returns None when truncation leaves nothing to learn from.
    """
    text, spans = row_text_and_spans(row, tokenizer)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = list(enc["input_ids"])[:max_length]
    offsets = list(enc["offset_mapping"])[:max_length]
    if responses_only:
        labels = [
            tid if any(s <= start < e for s, e in spans) else -100
            for tid, (start, _end) in zip(ids, offsets, strict=True)
        ]
    else:
        labels = list(ids)
    if all(label == -100 for label in labels):
        return None
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}


def collate(features: list[dict[str, list[int]]], pad_id: int) -> dict[str, Any]:
    """Right-pad a batch (labels with -100, so padding never counts in the loss)."""
    import torch

    width = max(len(f["input_ids"]) for f in features)
    out: dict[str, list[list[int]]] = {"input_ids": [], "attention_mask": [], "labels": []}
    for f in features:
        pad = width - len(f["input_ids"])
        out["input_ids"].append(f["input_ids"] + [pad_id] * pad)
        out["attention_mask"].append(f["attention_mask"] + [0] * pad)
        out["labels"].append(f["labels"] + [-100] * pad)
    return {k: torch.tensor(v) for k, v in out.items()}
