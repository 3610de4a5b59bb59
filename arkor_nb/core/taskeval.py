"""``ak.TaskEval``: held-out prompts scored at every checkpoint, and its wire form.

The held-out rows are in the training formats (``messages``, ShareGPT
``conversations``, ``prompt``/``completion``, ``instruction``/``input``/
``output``); the last assistant turn is the expected answer and every turn
before it is the prompt. The client checks a spec at ``create_trainer`` and
sends it as the local config key ``taskEval``::

    {"rows": [{"messages": [..., {"role": "assistant", "content": expected}]}],
     "scorers": ["exact", "fields"], "maxTokens": 48, "allExamples": false}

and the server checks it again with :func:`check_wire_task_eval`, so both
refuse a bad spec with the same words. ``allExamples`` asks the worker to
send every reply (a client-side callable scorer needs them).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arkor_nb.core.errors import ConfigError
from arkor_nb.core.scorers import ScorerSpec, check_scorer, scorer_name

DEFAULT_EVAL_MAX_TOKENS = 64
MAX_EVAL_TOKENS = 4096
MAX_EVAL_ROWS = 10_000
EXAMPLES_SHOWN = 8  # examples a checkpoint.eval carries when no callable needs them all
_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                   "system": "system", "tool": "tool"}

Message = dict[str, str]


@dataclass(frozen=True)
class EvalPair:
    """One held-out prompt: the chat turns to answer and the expected reply."""

    messages: list[Message]
    expected: str

    @property
    def prompt(self) -> str:
        """The last user turn (what an example shows as its prompt)."""
        users = [m["content"] for m in self.messages if m["role"] == "user"]
        return users[-1] if users else self.messages[-1]["content"]


@dataclass
class TaskEval:
    """Task metrics at every checkpoint: ``create_trainer(..., task_eval=ak.TaskEval(...))``.

    ``data``: a held-out file (``.jsonl``/``.json``/``.csv`` in a training
    format) or a list of rows; the last assistant turn of each row is the
    expected answer. ``scorers``: ``"exact"``, ``"contains"``, ``"fields"``,
    ``"json"``, ``"regex:<pattern>"`` or callables ``fn(expected, reply) ->
    float``. ``max_tokens``: reply length; ``limit``: use only the first N rows.
    """

    data: str | os.PathLike[str] | Sequence[dict[str, Any]]
    scorers: Sequence[ScorerSpec] = ("exact",)
    max_tokens: int = DEFAULT_EVAL_MAX_TOKENS
    limit: int | None = None
    pairs: list[EvalPair] = field(default_factory=list, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Check everything now, so a bad spec fails at ``create_trainer`` (fields named)."""
        base = "task_eval"
        if isinstance(self.scorers, (str, bytes)) or callable(self.scorers):
            self.scorers = [self.scorers]  # type: ignore[list-item]
        self.scorers = list(self.scorers)
        if not self.scorers:
            raise ConfigError(f"{base}.scorers", 'needs at least one scorer, e.g. ["exact"]')
        names: set[str] = set()
        for i, spec in enumerate(self.scorers):
            check_scorer(spec, f"{base}.scorers[{i}]")
            name = scorer_name(spec)
            if name in names:
                raise ConfigError(f"{base}.scorers[{i}]", f"two scorers are named {name!r}; "
                                                          "give each callable its own name")
            names.add(name)
        _whole(self.max_tokens, f"{base}.max_tokens", 1, MAX_EVAL_TOKENS)
        if self.limit is not None:
            _whole(self.limit, f"{base}.limit", 1, MAX_EVAL_ROWS)
        rows = read_eval_rows(self.data, f"{base}.data")
        if self.limit is not None:
            rows = rows[: self.limit]
        self.pairs = eval_pairs(rows, f"{base}.data")

    @property
    def builtin_scorers(self) -> list[str]:
        return [s for s in self.scorers if isinstance(s, str)]

    @property
    def callables(self) -> list[Callable[[str, str], float]]:
        return [s for s in self.scorers if not isinstance(s, str)]

    def to_wire(self) -> dict[str, Any]:
        """The local config key ``taskEval`` (built-in scorers only; callables stay here)."""
        return {
            "rows": [{"messages": [*p.messages, {"role": "assistant", "content": p.expected}]}
                     for p in self.pairs],
            "scorers": self.builtin_scorers,
            "maxTokens": int(self.max_tokens),
            "allExamples": bool(self.callables),
        }


def _whole(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(name, f"must be a whole number from {low} to {high:,}, got {value!r}")
    return value


# ------------------------------------------------------------------- rows


def read_eval_rows(data: Any, name: str) -> list[dict[str, Any]]:
    """A held-out file or list -> its rows (dicts). ConfigError names ``name``."""
    if isinstance(data, (str, os.PathLike)):
        path = Path(data).expanduser()
        if not path.is_file():
            raise ConfigError(name, f"{path} does not exist; pass a .jsonl file of held-out rows "
                                    "or a list of rows")
        try:
            rows = _read_file(path)
        except (ValueError, OSError, UnicodeDecodeError, csv.Error) as exc:
            raise ConfigError(name, f"cannot read {path.name}: {exc}") from None
    elif isinstance(data, Sequence) and not isinstance(data, (bytes, str)):
        rows = list(data)
    else:
        raise ConfigError(name, f"must be a file path or a list of rows, got {type(data).__name__}")
    if not rows:
        raise ConfigError(name, "has no rows; give at least one held-out example")
    if len(rows) > MAX_EVAL_ROWS:
        raise ConfigError(name, f"has {len(rows):,} rows; use at most {MAX_EVAL_ROWS:,} (set limit=)")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ConfigError(name, f"row {i + 1} is {type(row).__name__}, not an object")
    return rows


def _read_file(path: Path) -> list[Any]:
    suffix = path.suffix.lower()
    with path.open(encoding="utf-8") as fh:
        if suffix == ".json":
            data = json.load(fh)
            return list(data) if isinstance(data, list) else [data]
        if suffix == ".csv":
            return list(csv.DictReader(fh))
        rows = []
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as exc:
                    raise ValueError(f"line {n} is not JSON ({exc})") from None
        return rows


def eval_pairs(rows: Sequence[dict[str, Any]], name: str) -> list[EvalPair]:
    """Rows -> prompts and expected answers; ConfigError names the first bad row."""
    pairs = []
    for i, row in enumerate(rows):
        try:
            pairs.append(eval_pair(row))
        except ValueError as exc:
            raise ConfigError(name, f"row {i + 1} {exc}") from None
    return pairs


def eval_pair(row: dict[str, Any]) -> EvalPair:
    """One row in a training format -> EvalPair; ValueError says what is missing."""
    turns = row.get("messages", row.get("conversations"))
    if turns is not None:
        return _from_turns(turns)
    system = row.get("system")
    head: list[Message] = [{"role": "system", "content": system}] if isinstance(system, str) else []
    if "prompt" in row or "completion" in row:
        prompt, completion = row.get("prompt"), row.get("completion")
        if isinstance(completion, list):
            return _from_turns(_as_turns(prompt) + completion)
        if not isinstance(completion, str) or not completion.strip():
            raise ValueError("has no assistant turn: its completion is empty")
        return EvalPair(head + _as_turns(prompt), completion)
    if "instruction" in row or "output" in row:
        output = row.get("output")
        if not isinstance(output, str) or not output.strip():
            raise ValueError("has no assistant turn: its output is empty")
        text = str(row.get("instruction") or "")
        if row.get("input"):
            text = f"{text}\n\n{row['input']}" if text else str(row["input"])
        if not text.strip():
            raise ValueError("has no prompt: instruction and input are empty")
        return EvalPair(head + [{"role": "user", "content": text}], output)
    raise ValueError("has no assistant turn; give messages ending in an assistant reply, "
                     "prompt/completion or instruction/output")


def _as_turns(prompt: Any) -> list[Message]:
    if isinstance(prompt, str) and prompt.strip():
        return [{"role": "user", "content": prompt}]
    if isinstance(prompt, list) and prompt:
        return _messages(prompt)
    raise ValueError("has no prompt")


def _messages(turns: Any) -> list[Message]:
    if not isinstance(turns, list):
        raise ValueError("has messages that are not a list")
    out = []
    for turn in turns:
        if not isinstance(turn, dict):
            raise ValueError("has a message that is not an object")
        role = turn.get("role", _SHAREGPT_ROLES.get(str(turn.get("from", "")).lower()))
        content = turn.get("content", turn.get("value"))
        if role not in _SHAREGPT_ROLES.values() or not isinstance(content, str):
            raise ValueError("has a message without a known role and string content")
        out.append({"role": str(role), "content": content})
    return out


def _from_turns(turns: Any) -> EvalPair:
    messages = _messages(turns)
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
    if last is None or not messages[last]["content"].strip():
        raise ValueError("has no assistant turn (its last assistant reply is the expected answer)")
    if last == 0 or not any(m["role"] != "system" for m in messages[:last]):
        raise ValueError("has no prompt before its assistant turn")
    return EvalPair(messages[:last], messages[last]["content"])


# ------------------------------------------------------------------- wire


def check_wire_task_eval(value: Any) -> dict[str, Any]:
    """The server's check of ``taskEval``; returns it normalised (ConfigError names the key)."""
    key = "taskEval"
    if not isinstance(value, dict):
        raise ConfigError(key, 'must be an object {"rows": [...], "scorers": [...], "maxTokens": 64} '
                               "(set with task_eval=ak.TaskEval(...) in create_trainer)")
    unknown = sorted(set(value) - {"rows", "scorers", "maxTokens", "allExamples", "limit"})
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]}", "unknown key; known keys are rows, scorers, "
                                                 "maxTokens, allExamples, limit")
    rows = value.get("rows")
    if not isinstance(rows, list):
        raise ConfigError(f"{key}.rows", "must be a list of held-out rows")
    rows = read_eval_rows(rows, f"{key}.rows")
    limit = value.get("limit")
    if limit is not None:
        rows = rows[: _whole(limit, f"{key}.limit", 1, MAX_EVAL_ROWS)]
    eval_pairs(rows, f"{key}.rows")
    scorers = value.get("scorers")
    if not isinstance(scorers, list):
        raise ConfigError(f"{key}.scorers", 'must be a list of scorer names like ["exact"]')
    if not scorers and not value.get("allExamples"):
        raise ConfigError(f"{key}.scorers", 'needs at least one scorer, e.g. ["exact"]')
    for i, spec in enumerate(scorers):
        check_scorer(spec, f"{key}.scorers[{i}]", callables=False)
    max_tokens = value.get("maxTokens", DEFAULT_EVAL_MAX_TOKENS)
    _whole(max_tokens, f"{key}.maxTokens", 1, MAX_EVAL_TOKENS)
    all_examples = value.get("allExamples", False)
    if not isinstance(all_examples, bool):
        raise ConfigError(f"{key}.allExamples", f"must be true or false, got {all_examples!r}")
    return {"rows": rows, "scorers": list(scorers), "maxTokens": max_tokens,
            "allExamples": all_examples}
