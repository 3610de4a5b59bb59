"""What user code and listeners receive: callback contexts, stream notices,
results, the callbacks bundle and the reconnect policy.

Callback contexts are plain dataclasses because users construct and read
them, never serialise them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from arkor_nb.core.events import (
    TrainingEvent,
)
from arkor_nb.core.wire import TrainingJob

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


# ---------------------------------------------------------- callback contexts


@dataclass
class StartedContext:
    job: TrainingJob


@dataclass
class LogContext:
    step: int
    loss: float | None
    eval_loss: float | None
    learning_rate: float | None
    epoch: float | None
    samples_per_second: float | None
    job: TrainingJob


@dataclass
class CheckpointContext:
    step: int
    adapter: dict[str, Any]  # {"kind": "checkpoint", "jobId": ..., "step": ...}
    job: TrainingJob
    infer: Callable[..., Any]
    artifacts: list[Any] = field(default_factory=list)


@dataclass
class CompletedContext:
    job: TrainingJob
    artifacts: list[Any] = field(default_factory=list)


@dataclass
class FailedContext:
    job: TrainingJob
    error: str


@dataclass
class CancelledContext:
    """``on_cancelled(ctx)``: the backend reports the job cancelled.

    ``artifacts`` lists what was saved before the cancel (checkpoints, and an
    adapter if one was written); ``step`` is the last step, when known.
    """

    job: TrainingJob
    artifacts: list[Any] = field(default_factory=list)
    step: int | None = None


@dataclass
class TrainingResult:
    job: TrainingJob
    artifacts: list[Any] = field(default_factory=list)


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


# ------------------------------------------------------- what listeners get

ListenerItem = TrainingEvent | StreamNotice | CheckpointContext
"""One item delivered to a ``trainer.subscribe(listener)`` listener.

In stream order, on the streaming loop, before user callbacks:

* every parsed wire event (a ``TrainingEvent``: ``TrainingStarted``,
  ``TrainingLog``, ``CheckpointSaved``, ``TrainingCompleted``, ``TrainingFailed``,
  ``TrainingCancelled``, ``TrainingPhase``, ...), each with ``event_id`` set;
* right after each ``CheckpointSaved``, a :class:`CheckpointContext` for the
  same step whose ``infer`` samples that checkpoint (so a panel can sample
  without touching ``trainer.callbacks``; ``infer`` blocks: call it from a
  thread of your own, never from the listener);
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
