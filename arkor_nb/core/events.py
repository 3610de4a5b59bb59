"""Wire events: what a job's SSE stream carries (``docs/protocol.md``).

Each event type name is spelled once, in its model's ``type`` Literal; the
sets below and every producer (workers, job manager, store) derive from them.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import Field, TypeAdapter, ValidationError

from arkor_nb.core.status import CANCELLED, COMPLETED, FAILED
from arkor_nb.core.wire import WireModel


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
    # local backend extras (docs/protocol.md): the run's health in one row
    grad_norm: float | None = None
    tokens_per_second: float | None = None
    rss_mb: float | None = None
    gpu_mem_mb: float | None = None


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


class CheckpointEval(_EventBase):
    """Task metrics of one checkpoint on held-out prompts (``taskEval``).

    ``metrics``: scorer name -> mean score in [0, 1] over ``n`` prompts;
    ``examples``: the first few (all ``n`` when a client-side scorer needs
    them), each ``{prompt, expected, reply, scores: {name: float}}``.
    The local worker emits it after each checkpoint and at the end; a client
    evaluating through ``ctx.infer`` produces the same shape.
    """

    type: Literal["checkpoint.eval"] = "checkpoint.eval"
    step: int
    metrics: dict[str, float]
    n: int = 0
    examples: list[dict[str, Any]] = Field(default_factory=list)


TrainingEvent = Annotated[
    TrainingStarted | TrainingLog | CheckpointSaved | TrainingCompleted | TrainingFailed | TrainingCancelled
    | TrainingPhase | CheckpointSample | CheckpointEval,
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
