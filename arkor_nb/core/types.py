"""Typed shapes shared by the client, the local backend and the notebook panel.

Wire models are pydantic v2 with camelCase aliases (the Arkor wire format);
Python code reads them in snake_case. Callback contexts are plain dataclasses
because users construct and read them, never serialise them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.alias_generators import to_camel

# The one spelling of each job status; everything else uses these constants.
JobStatus = Literal["queued", "running", "completed", "failed", "cancelled"]
JOB_STATUSES: tuple[str, ...] = get_args(JobStatus)
QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED = JOB_STATUSES
TERMINAL_STATUSES: frozenset[str] = frozenset({COMPLETED, FAILED, CANCELLED})


class WireModel(BaseModel):
    """Base for every JSON body: camelCase on the wire, snake_case in Python.

    Unknown fields are kept (``extra="allow"``) so a newer server never breaks
    an older client.
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready camelCase dict (nulls left out), as the wire carries it."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class TrainingJob(WireModel):
    id: str
    name: str = ""
    status: str = QUEUED  # a JobStatus; kept as str so new statuses never fail parsing
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


# ------------------------------------------------------------- config keys
# The one table of training options: create_trainer keyword -> wire ``config``
# key. The client's checks, the server's validation and the workers' defaults
# all derive their key lists from it.

TRAINING_OPTIONS: tuple[str, ...] = (
    "max_steps", "num_train_epochs", "learning_rate", "batch_size", "optim",
    "lr_scheduler_type", "weight_decay", "warmup_steps", "logging_steps", "save_steps",
    "eval_steps", "dataset_format", "dataset_split", "train_on_responses_only", "dry_run",
)
LORA_OPTIONS: dict[str, str] = {
    "r": "loraR", "alpha": "loraAlpha", "max_length": "maxLength", "load_in_4bit": "loadIn4bit",
}
# keyword (``lora.<key>`` for lora options) -> wire key
CONFIG_KEYS: dict[str, str] = {
    "model": "model",
    "dataset": "datasetSource",
    **{keyword: to_camel(keyword) for keyword in TRAINING_OPTIONS},
    **{f"lora.{key}": wire for key, wire in LORA_OPTIONS.items()},
}
WIRE_CONFIG_KEYS: tuple[str, ...] = tuple(CONFIG_KEYS.values())
# Local-backend extensions (docs/protocol.md): keyword -> wire key. Only
# ``ak.live`` adds them, and only to a job it starts on the local backend, so
# the cloud never receives them.
LOCAL_CONFIG_KEYS: dict[str, str] = {"sample_prompts": "samplePrompts",
                                     "sample_max_tokens": "sampleMaxTokens"}
KEYWORD_OF: dict[str, str] = {wire: keyword for keyword, wire in CONFIG_KEYS.items()}
# dataset type -> its wire keys (the required one first)
DATASET_SOURCE_KEYS: dict[str, tuple[str, ...]] = {
    "file": ("path", "evalPath"),
    "huggingface": ("name", "split", "subset", "evalSplit"),
    "blob": ("url", "token", "format"),
}


def wire_config(options: dict[str, Any]) -> dict[str, Any]:
    """``{keyword: value}`` -> ``{wire key: value}``; KeyError names an unknown keyword."""
    return {CONFIG_KEYS[keyword]: value for keyword, value in options.items()}


# ---------------------------------------------------------------- wire events
# Each event type name is spelled once, in its model's ``type`` Literal; the
# sets below and every producer (workers, job manager, store) derive from them.


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
    job_status: ClassVar[str] = COMPLETED
    metrics: dict[str, Any] | None = None
    artifacts: list[Any] | None = None


class TrainingFailed(_EventBase):
    type: Literal["training.failed"] = "training.failed"
    job_status: ClassVar[str] = FAILED
    error: str
    step: int | None = None


class TrainingCancelled(_EventBase):
    type: Literal["training.cancelled"] = "training.cancelled"
    job_status: ClassVar[str] = CANCELLED
    step: int | None = None
    artifacts: list[Any] | None = None  # what was saved before the cancel, when the backend says


class TrainingPhase(_EventBase):
    """What a job does before and after its training steps (local backend).

    ``phase``: ``"preparing"`` (building or loading the model, loading data) or
    ``"saving"``; ``detail`` says what exactly, e.g. "building arkor-nb/tiny
    (first run only, ~20 s)". Other clients skip the unknown type.
    """

    type: Literal["training.phase"] = "training.phase"
    phase: str
    detail: str | None = None


class CheckpointSample(_EventBase):
    """The reply of the checkpoint just saved to one ``samplePrompts`` prompt (local backend).

    Generated greedily by the worker with the model still in memory, right
    after ``checkpoint.saved``, so samples need no model reload. Other clients
    skip the unknown type.
    """

    type: Literal["checkpoint.sample"] = "checkpoint.sample"
    step: int
    prompt: str
    reply: str


TrainingEvent = Annotated[
    TrainingStarted | TrainingLog | CheckpointSaved | TrainingCompleted | TrainingFailed | TrainingCancelled
    | TrainingPhase | CheckpointSample,
    Field(discriminator="type"),
]
TerminalEvent = TrainingCompleted | TrainingFailed | TrainingCancelled
TERMINAL_EVENT_MODELS: tuple[type[TerminalEvent], ...] = get_args(TerminalEvent)
EVENT_MODELS: tuple[type[_EventBase], ...] = get_args(get_args(TrainingEvent)[0])


def event_type(model: type[_EventBase]) -> str:
    """The wire ``type`` of an event model (its Literal's one value)."""
    value: str = model.model_fields["type"].default
    return value


EVENT_TYPES: frozenset[str] = frozenset(map(event_type, EVENT_MODELS))
TERMINAL_EVENT_TYPES: frozenset[str] = frozenset(map(event_type, TERMINAL_EVENT_MODELS))
# terminal event type -> the job status it ends in
TERMINAL_STATUS_OF: dict[str, str] = {event_type(m): m.job_status for m in TERMINAL_EVENT_MODELS}
_EVENT_ADAPTER: TypeAdapter[TrainingEvent] = TypeAdapter(TrainingEvent)


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


def parse_event_json(text: str | bytes) -> TrainingEvent | None:
    """Like :func:`parse_event` for JSON text (one validation pass, no dict copy)."""
    try:
        return _EVENT_ADAPTER.validate_json(text)
    except (ValidationError, ValueError):
        return None


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

ListenerItem = (
    TrainingStarted
    | TrainingLog
    | CheckpointSaved
    | TrainingCompleted
    | TrainingFailed
    | TrainingCancelled
    | StreamNotice
    | CheckpointContext
)
"""One item delivered to a ``trainer.subscribe(listener)`` listener.

In stream order, on the streaming loop, before user callbacks:

* every parsed wire event (``TrainingStarted``, ``TrainingLog``,
  ``CheckpointSaved``, ``TrainingCompleted``, ``TrainingFailed``,
  ``TrainingCancelled``), each with ``event_id`` set;
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
