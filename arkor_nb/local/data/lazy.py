"""Rows of a large ``.jsonl`` file read on demand, so a job's start does not grow with the file.

``line_index`` finds where each row starts with one vectorised pass over the
bytes (about a second for a 400 MB file, 8 bytes of memory per row); a
``LazyRows`` dataset then reads, normalises and tokenises row ``i`` only when
the ``Trainer`` asks for it (``os.pread``: no shared file position). Its
length is the row count, so ``num_train_epochs`` and the sampler see the same
numbers the eager path would, and ``holdout`` picks the same held-out rows for
both paths. A row whose answer is cut off at ``maxLength`` is dropped where it
is met (counted once in ``dropped``), as the eager path drops it up front.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from arkor_nb.local.data.rows import RowError, RowFormat, normalize_row

_CHUNK = 16 * 1024 * 1024
_BOM = b"\xef\xbb\xbf"


class IndexCancelled(Exception):
    """The cancel flag was set while the file was being indexed."""


def line_index(path: Path, cancel: threading.Event | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """``(starts, line_numbers)`` of the non-blank lines of a jsonl file.

    ``line_numbers`` (1-based) is None when no line is blank: row ``i`` is line ``i + 1``.
    """
    starts_parts: list[np.ndarray] = [np.zeros(1, dtype=np.int64)]
    size = 0
    with open(path, "rb") as fh:
        while True:
            if cancel is not None and cancel.is_set():
                raise IndexCancelled(str(path))
            chunk = fh.read(_CHUNK)
            if not chunk:
                break
            nl = np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == 10)
            starts_parts.append(nl.astype(np.int64) + size + 1)
            size += len(chunk)
    starts = np.concatenate(starts_parts)
    ends = np.append(starts[1:] - 1, size)  # each line's end, without its newline
    starts = starts[: len(ends)]
    keep = ends > starts
    short = np.flatnonzero(keep & (ends - starts < 8))  # blank-looking lines: check their bytes
    if len(short):
        fd = os.open(path, os.O_RDONLY)
        try:
            for i in short:
                text = os.pread(fd, int(ends[i] - starts[i]), int(starts[i]))
                if not text.replace(_BOM, b"").strip():
                    keep[i] = False
        finally:
            os.close(fd)
    if keep.all():
        return starts, None
    return starts[keep], np.arange(1, len(starts) + 1, dtype=np.int64)[keep]


def holdout(n: int, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic hold-out of ``n`` rows: ``(train, held)`` row positions, each ascending."""
    n_eval = max(1, round(n * fraction))
    order = np.random.default_rng(0).permutation(n)
    held = np.sort(order[:n_eval])
    mask = np.ones(n, dtype=bool)
    mask[held] = False
    return np.flatnonzero(mask), held


class LazyRows:
    """A map-style dataset over chosen rows of a jsonl file; ``encode`` runs per item.

    ``encode(row) -> dict | None`` (None: dropped). Items that drop come back
    as None; ``collate`` skips them (``keep_batch`` refills an empty batch).
    """

    def __init__(self, path: Path, starts: np.ndarray, numbers: np.ndarray | None,
                 positions: np.ndarray,
                 fmt: RowFormat,
                 encode: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None) -> None:
        self.path = Path(path)
        self.starts, self.numbers, self.positions = starts, numbers, positions
        self.fmt, self.encode = fmt, encode
        self.file_size = self.path.stat().st_size
        self._dropped = np.zeros(len(positions), dtype=bool)
        self._fd: int | None = None
        self._first_kept: dict[str, Any] | None = None

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def dropped(self) -> int:
        return int(self._dropped.sum())

    def head(self, n: int) -> LazyRows:
        return LazyRows(self.path, self.starts, self.numbers, self.positions[:n], self.fmt,
                        self.encode)

    def row(self, i: int) -> dict[str, Any]:
        """The normalised row ``i`` (RowError with its line number when it is bad)."""
        pos = int(self.positions[i])
        start = int(self.starts[pos])
        end = int(self.starts[pos + 1]) if pos + 1 < len(self.starts) else self.file_size
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        raw = os.pread(self._fd, end - start, start)
        if start == 0:
            raw = raw.removeprefix(_BOM)
        where = f"line {pos + 1 if self.numbers is None else int(self.numbers[pos])}"
        try:
            value = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RowError(where, f"not valid JSON ({getattr(exc, 'msg', exc)})") from None
        return normalize_row(value, where, self.fmt)

    def __getitem__(self, i: int) -> dict[str, Any] | None:
        assert self.encode is not None
        encoded = self.encode(self.row(i))
        if encoded is None:
            self._dropped[i] = True
        return encoded

    def __iter__(self) -> Iterator[dict[str, Any] | None]:
        for i in range(len(self)):
            yield self[i]

    def keep_batch(self) -> dict[str, Any]:
        """The first row that is not dropped (refills a batch where every row dropped)."""
        if self._first_kept is None:
            for item in self:
                if item is not None:
                    self._first_kept = item
                    break
            else:
                raise ValueError("every row is cut off before its answer")
        return self._first_kept

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
