"""Typed shapes shared by the client, the local backend and the notebook panel.

Wire models are pydantic v2 with camelCase aliases (the Arkor wire format);
Python code reads them in snake_case. Callback contexts are plain dataclasses
because users construct and read them, never serialise them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.alias_generators import to_camel

JobStatus = Literal["queued", "running", "completed", "failed", "cancelled"]
TERMINAL_STATUSES: frozenset[str] = frozenset({"completed", "failed", "cancelled"})


class WireModel(BaseModel):
    """Base for every JSON body: camelCase on the wire, snake_case in Python.

    Unknown fields are kept (``extra="allow"``) so a newer server never breaks
    an older client.
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class TrainingJob(WireModel):
    id: str
    name: str = ""
    status: str = "queued"  # a JobStatus; kept as str so new statuses never fail parsing
    config: dict[str, Any] = Field(default_factory=dict)
    created_at: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    error: str | None = None
    org_slug: str | None = None
    project_slug: str | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


# ---------------------------------------------------------------- wire events


class _EventBase(WireModel):
    job_id: str = ""
    timestamp: str = ""
    # The SSE ``id:`` of the frame that carried this event (client side only).
    event_id: str | None = Field(default=None, exclude=True)


class TrainingStarted(_EventBase):
    type: Literal["training.started"] = "training.started"
    metadata: dict[str, Any] | None = None


class TrainingLog(_EventBase):
    type: Literal["training.log"] = "training.log"
    step: int
    loss: float | None = None
    eval_loss: float | None = None
    learning_rate: float | None = None
    epoch: float | None = None
    samples_per_second: float | None = None


class CheckpointSaved(_EventBase):
    type: Literal["checkpoint.saved"] = "checkpoint.saved"
    step: int
    artifacts: list[Any] | None = None


class TrainingCompleted(_EventBase):
    type: Literal["training.completed"] = "training.completed"
    metrics: dict[str, Any] | None = None
    artifacts: list[Any] | None = None


class TrainingFailed(_EventBase):
    type: Literal["training.failed"] = "training.failed"
    error: str
    step: int | None = None


class TrainingCancelled(_EventBase):
    type: Literal["training.cancelled"] = "training.cancelled"
    step: int | None = None


TrainingEvent = Annotated[
    TrainingStarted | TrainingLog | CheckpointSaved | TrainingCompleted | TrainingFailed | TrainingCancelled,
    Field(discriminator="type"),
]
TERMINAL_EVENT_TYPES: frozenset[str] = frozenset(
    {"training.completed", "training.failed", "training.cancelled"}
)
_EVENT_ADAPTER: TypeAdapter[TrainingEvent] = TypeAdapter(TrainingEvent)
EVENT_TYPES: frozenset[str] = frozenset(
    {
        "training.started",
        "training.log",
        "checkpoint.saved",
        "training.completed",
        "training.failed",
        "training.cancelled",
    }
)


def parse_event(data: Any, event_id: str | None = None) -> TrainingEvent | None:
    """Parse one decoded SSE data object; ``None`` for unknown or malformed events.

    Unknown types and bad payloads are skipped by the protocol, never fatal,
    so this never raises.
    """
    if not isinstance(data, dict) or data.get("type") not in EVENT_TYPES:
        return None
    try:
        event = _EVENT_ADAPTER.validate_python(data)
    except ValidationError:
        return None
    event.event_id = event_id
    return event


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
