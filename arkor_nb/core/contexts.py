"""What user code and listeners receive: callback contexts, stream notices,
results, the callbacks bundle and the reconnect policy.

Callback contexts are plain dataclasses because users construct and read
them, never serialise them.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field

from arkor_nb.core.errors import ConfigError
from arkor_nb.core.events import (
    CheckpointEval,
    TrainingEvent,
)
from arkor_nb.core.wire import TrainingJob, WireModel

# -------------------------------------------------- client-side stream notices


@dataclass(frozen=True)
class StreamNotice:
    """What the client itself observed about the stream (never on the wire).

    Delivered to ``trainer.subscribe`` listeners so a panel can say
    "reconnecting in 2.0 s" or "aborted" without talking HTTP itself.
    ``kind`` is one of ``"connected"``, ``"reconnecting"``, ``"aborted"``,
    ``"error"`` (transport gave up: ``error`` holds the exception).
    """

    kind: Literal["connected", "reconnecting", "aborted", "error"]
    attempt: int = 0
    delay: float | None = None
    error: BaseException | None = None


# ----------------------------------------------------------- metrics (judging)

MetricSeries = dict[str, list[tuple[int, float]]]
"""``result.metrics``: metric name -> ``[(step, value), ...]`` in step order."""


class MetricsReported(WireModel):
    """Floats a callback recorded with ``ctx.report(**metrics)`` at ``step``.

    Client-side only (never sent by a backend): listeners get it as an item,
    the recorder writes it as a JSONL line like the wire events, and replay
    reads it back with :func:`parse_reported`.
    """

    type: Literal["metrics.reported"] = "metrics.reported"
    job_id: str = ""
    timestamp: str = ""
    step: int
    metrics: dict[str, float]
    event_id: str | None = Field(default=None, exclude=True)


def parse_reported(data: Any) -> MetricsReported | None:
    """A decoded JSONL line -> MetricsReported, or None when it is something else."""
    if not isinstance(data, dict) or data.get("type") != "metrics.reported":
        return None
    try:
        return MetricsReported.model_validate(data)
    except ValueError:
        return None


def check_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """``ctx.report`` arguments -> ``{name: float}``; ConfigError names a bad one."""
    if not metrics:
        raise ConfigError("report", "pass at least one metric, e.g. ctx.report(accuracy=0.9)")
    out = {}
    for name, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"report.{name}", f"must be a finite number, got {value!r}")
        out[name] = float(value)
    return out


def add_metrics(series: MetricSeries, step: int, metrics: dict[str, float]) -> None:
    """Fold ``metrics`` at ``step`` into ``series`` (a later value at the same step wins)."""
    for name, value in metrics.items():
        points = series.setdefault(name, [])
        if points and points[-1][0] == step:
            points[-1] = (step, float(value))
        else:
            points.append((step, float(value)))
            if len(points) > 1 and points[-2][0] > step:
                points.sort(key=lambda p: p[0])


def metrics_of(items: Iterable[Any]) -> MetricSeries:
    """Evaluated and reported metrics of a stream of items (events, records)."""
    series: MetricSeries = {}
    for item in items:
        if isinstance(item, (CheckpointEval, MetricsReported)):
            add_metrics(series, item.step, item.metrics)
    return series


def best_of(series: MetricSeries, metric: str, mode: str = "max") -> tuple[int, float]:
    """``(step, value)`` of the best point of ``metric`` (earliest step on a tie)."""
    if mode not in ("max", "min"):
        raise ConfigError("mode", f'must be "max" or "min", got {mode!r}')
    points = series.get(metric)
    if not points:
        known = ", ".join(sorted(series)) or "none yet"
        raise ConfigError("metric", f"no values of {metric!r} were recorded; recorded metrics: {known}")
    sign = 1.0 if mode == "max" else -1.0
    step, value = max(points, key=lambda p: (sign * p[1], -p[0]))
    return step, value


# ---------------------------------------------------------- callback contexts


@dataclass
class _Reports:
    """``ctx.report(**metrics)``: your own floats, recorded at this context's step."""

    _report: Callable[[dict[str, float]], None] | None = field(
        default=None, kw_only=True, repr=False, compare=False
    )

    def report(self, **metrics: float) -> None:
        """Record ``name=value`` floats at ``ctx.step``: they reach the panel, the
        record, ``result.metrics`` and ``result.best`` like task metrics do."""
        checked = check_metrics(metrics)
        if self._report is None:
            raise ConfigError("report", "this context is not attached to a running trainer")
        self._report(checked)


@dataclass
class StartedContext(_Reports):
    job: TrainingJob


@dataclass
class LogContext(_Reports):
    step: int
    loss: float | None
    eval_loss: float | None
    learning_rate: float | None
    epoch: float | None
    samples_per_second: float | None
    job: TrainingJob


@dataclass
class CheckpointContext(_Reports):
    step: int
    adapter: dict[str, Any]  # {"kind": "checkpoint", "jobId": ..., "step": ...}
    job: TrainingJob
    infer: Callable[..., Any]
    artifacts: list[Any] = field(default_factory=list)


@dataclass
class CompletedContext(_Reports):
    job: TrainingJob
    artifacts: list[Any] = field(default_factory=list)


@dataclass
class FailedContext(_Reports):
    job: TrainingJob
    error: str


@dataclass
class CancelledContext(_Reports):
    """``on_cancelled(ctx)``: the backend reports the job cancelled.

    ``artifacts`` lists what was saved before the cancel (checkpoints, and an
    adapter if one was written); ``step`` is the last step, when known.
    """

    job: TrainingJob
    artifacts: list[Any] = field(default_factory=list)
    step: int | None = None


@dataclass
class EvalContext(_Reports):
    """``on_eval(ctx)``: a checkpoint's task metrics (``checkpoint.eval``).

    ``metrics``: scorer name -> mean in [0, 1]; ``examples``: the replies the
    event carried, each ``{prompt, expected, reply, scores}``.
    """

    step: int
    metrics: dict[str, float]
    examples: list[dict[str, Any]]
    job: TrainingJob
    n: int = 0


@dataclass
class TrainingResult:
    """What ``wait()`` returns. ``metrics``: name -> ``[(step, value)]`` of every
    task metric and ``ctx.report`` value; ``best(metric)`` -> ``(step, value)``."""

    job: TrainingJob
    artifacts: list[Any] = field(default_factory=list)
    metrics: MetricSeries = field(default_factory=dict)

    def best(self, metric: str, mode: str = "max") -> tuple[int, float]:
        """The step with the best ``metric`` (``mode`` "max" or "min") and its value;
        fetch that checkpoint with ``ak.download(job_id, step=step)``."""
        return best_of(self.metrics, metric, mode)


Callback = Callable[[Any], "None | Awaitable[None]"]


@dataclass
class Callbacks:
    """User callbacks; each may be sync or async. Awaited in order, never concurrently."""

    on_started: Callback | None = None
    on_log: Callback | None = None
    on_checkpoint: Callback | None = None
    on_completed: Callback | None = None
    on_failed: Callback | None = None
    on_cancelled: Callback | None = None
    on_eval: Callback | None = None


# ------------------------------------------------------- what listeners get

ListenerItem = TrainingEvent | StreamNotice | CheckpointContext | MetricsReported
"""One item delivered to a ``trainer.subscribe(listener)`` listener.

In stream order, on the streaming loop, before user callbacks:

* every parsed wire event (a ``TrainingEvent``: ``TrainingStarted``,
  ``TrainingLog``, ``CheckpointSaved``, ``TrainingCompleted``, ``TrainingFailed``,
  ``TrainingCancelled``, ``TrainingPhase``, ...), each with ``event_id`` set;
* right after each ``CheckpointSaved``, a :class:`CheckpointContext` for the
  same step whose ``infer`` samples that checkpoint (so a panel can sample
  without touching ``trainer.callbacks``; ``infer`` blocks: call it from a
  thread of your own, never from the listener);
* every ``CheckpointEval`` (task metrics; scores of client-side callable
  scorers already folded in, and produced by the client itself when it
  evaluates through ``ctx.infer``);
* a :class:`MetricsReported` for each ``ctx.report(...)`` call, after the
  callbacks of the chunk that made it;
* :class:`StreamNotice` items for what the client itself saw: connected,
  reconnecting (attempt, next delay, last error), aborted, error.
"""

Listener = Callable[[ListenerItem], None]


@dataclass(frozen=True)
class ReconnectPolicy:
    """Backoff for the event stream: ``initial_delay * 2**attempt`` +/-25%, clamped."""

    initial_delay: float = 1.0
    max_delay: float = 60.0
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        if self.initial_delay < 0:
            raise ValueError("ReconnectPolicy.initial_delay must be >= 0 seconds")
        if self.max_delay < self.initial_delay:
            raise ValueError("ReconnectPolicy.max_delay must be >= initial_delay")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("ReconnectPolicy.max_attempts must be >= 1 or None (unlimited)")
