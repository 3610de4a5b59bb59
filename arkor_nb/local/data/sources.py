"""Where rows come from (``datasetSource``): files, blobs, hub datasets.

``{"type": "file", "path", "evalPath"?}`` (jsonl, json, csv, parquet),
``{"type": "huggingface", "name", "split"?, "subset"?, "evalSplit"?}`` and
``{"type": "blob", "url", "token"?, "format"?}`` (downloaded with httpx).
Each yields ``(where, raw_row)`` pairs; ``rows`` normalises them.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from arkor_nb.local.data.blob import download_blob
from arkor_nb.local.data.rows import FILE_FORMATS, RowError

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
        yield from _iter_csv_rows(path)
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        for i, row in enumerate(pq.read_table(path).to_pylist(), start=1):
            yield f"row {i}", row
    else:
        raise ValueError(f"unsupported file type {path.suffix!r}; use one of {sorted(FILE_FORMATS)}")


# Python's csv module stops at 131,072 characters a field; a long answer or a
# JSON messages cell can be longer. Fields up to the JSON row limit are read.
CSV_FIELD_LIMIT = 64 * 1024 * 1024


def _iter_csv_rows(path: Path) -> Iterator[tuple[str, Any]]:
    """Rows of a CSV file; a row the csv module cannot read ends the file with a RowError."""
    csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        while True:
            first_line = reader.line_num + 1  # where the next row starts
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                where = f"line {first_line}"
                yield where, RowError(where, f"cannot be read as CSV ({exc}; a field may be at "
                                             f"most {CSV_FIELD_LIMIT:,} characters)")
                return
            yield f"line {reader.line_num}", dict(row)


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


# ------------------------------------------------------------------ sources


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
