"""Task-eval scorers: pure functions ``(expected, reply) -> {metric: float in [0, 1]}``.

Built-in scorers, named in ``TaskEval(scorers=[...])`` and in the wire
``taskEval.scorers``:

* ``exact``: the reply equals the expected answer, whitespace and case normalised;
* ``contains``: the normalised expected answer occurs in the normalised reply;
* ``fields``: both parse as ``key: value | key: value`` (``|`` or newlines
  between fields) or as a JSON object; one metric per expected field
  (``fields/<key>``) plus ``fields/all`` (every field right);
* ``json``: the reply parses as JSON;
* ``regex:<pattern>``: the pattern is found in the reply (``re.search``).

A Python callable ``fn(expected, reply) -> float`` is a scorer too (named
after the function); it runs in the client. The worker and the client score
with these same functions, so the numbers agree.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

from arkor_nb.core.errors import ConfigError

BUILTIN_SCORERS: tuple[str, ...] = ("exact", "contains", "fields", "json")
REGEX_PREFIX = "regex:"
FIELDS_ALL = "fields/all"

ScorerSpec = str | Callable[[str, str], float]


def normalize(text: str) -> str:
    """Whitespace collapsed, case folded, outer punctuation-free spacing: what ``exact`` compares."""
    return " ".join(str(text).split()).casefold()


def parse_fields(text: str) -> dict[str, str]:
    """``"a: 1 | b: 2"`` (or one field a line, or a JSON object) -> ``{"a": "1", "b": "2"}``.

    Keys and values are normalised; parts without a colon are ignored.
    """
    stripped = str(text).strip()
    if stripped.startswith("{"):
        try:
            obj = json.loads(stripped)
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            return {normalize(k): normalize(v if isinstance(v, str) else json.dumps(v))
                    for k, v in obj.items()}
    fields: dict[str, str] = {}
    for part in re.split(r"[|\n]", stripped):
        key, sep, value = part.partition(":")
        if sep and key.strip():
            fields.setdefault(normalize(key), normalize(value))
    return fields


def _parses_as_json(reply: str) -> bool:
    try:
        json.loads(reply)
    except ValueError:
        return False
    return True


def scorer_name(spec: ScorerSpec) -> str:
    """The metric name a scorer reports under (a callable: its ``__name__``)."""
    if isinstance(spec, str):
        return spec
    return str(getattr(spec, "__name__", None) or type(spec).__name__)


def check_scorer(spec: Any, field: str, *, callables: bool = True) -> None:
    """ConfigError naming ``field`` for an unknown scorer or a bad regex."""
    if callable(spec) and not isinstance(spec, str):
        if not callables:
            raise ConfigError(field, "a Python callable runs in the client and cannot be sent to "
                                     "the server; send only built-in scorer names")
        return
    if not isinstance(spec, str):
        raise ConfigError(field, f"must be a scorer name or a callable fn(expected, reply) -> float, "
                                 f"got {spec!r}")
    if spec.startswith(REGEX_PREFIX):
        pattern = spec[len(REGEX_PREFIX):]
        if not pattern:
            raise ConfigError(field, 'a regex scorer needs a pattern, e.g. "regex:^category: "')
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConfigError(field, f"bad regular expression {pattern!r}: {exc}") from None
        return
    if spec not in BUILTIN_SCORERS:
        raise ConfigError(field, f"unknown scorer {spec!r}; use one of {', '.join(BUILTIN_SCORERS)}, "
                                 '"regex:<pattern>" or a callable fn(expected, reply) -> float')


def score_builtin(spec: str, expected: str, reply: str) -> dict[str, float]:
    """One built-in scorer's metrics for one reply."""
    if spec == "exact":
        return {spec: float(normalize(expected) == normalize(reply))}
    if spec == "contains":
        return {spec: float(normalize(expected) in normalize(reply))}
    if spec == "json":
        return {spec: float(_parses_as_json(reply.strip()))}
    if spec == "fields":
        want = parse_fields(expected)
        got = parse_fields(reply)
        scores = {f"fields/{key}": float(got.get(key) == value) for key, value in want.items()}
        scores[FIELDS_ALL] = float(bool(want) and all(v == 1.0 for v in scores.values()))
        return scores
    if spec.startswith(REGEX_PREFIX):
        return {spec: float(re.search(spec[len(REGEX_PREFIX):], reply) is not None)}
    raise ConfigError("scorers", f"unknown scorer {spec!r}")


def score_callable(fn: Callable[[str, str], Any], expected: str, reply: str) -> dict[str, float]:
    """A user scorer's value for one reply, checked to be a finite number."""
    value = fn(expected, reply)
    if isinstance(value, bool):
        value = float(value)
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError("task_eval.scorers", f"scorer {scorer_name(fn)} returned {value!r}; "
                                               "it must return a number (0.0 to 1.0)")
    return {scorer_name(fn): float(value)}


def score_reply(specs: Sequence[ScorerSpec], expected: str, reply: str) -> dict[str, float]:
    """Every scorer's metrics for one reply (built-ins and callables alike)."""
    scores: dict[str, float] = {}
    for spec in specs:
        if isinstance(spec, str):
            scores.update(score_builtin(spec, expected, reply))
        else:
            scores.update(score_callable(spec, expected, reply))
    return scores


def mean_scores(per_reply: Sequence[dict[str, float]]) -> dict[str, float]:
    """Metric -> mean over the replies that have it (``fields/<key>`` only where expected)."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for scores in per_reply:
        for name, value in scores.items():
            sums[name] = sums.get(name, 0.0) + value
            counts[name] = counts.get(name, 0) + 1
    return {name: sums[name] / counts[name] for name in sums}
