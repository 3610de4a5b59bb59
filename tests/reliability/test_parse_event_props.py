"""Property tests over ``arkor_nb.core.events.parse_event``: the one gate every wire event passes.

The protocol says unknown types and malformed payloads are skipped, never fatal,
so for *any* JSON value parse_event must return None or a well-typed event,
and every well-formed event must survive a wire round trip unchanged.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from arkor_nb.core.events import (
    EVENT_TYPES,
    CheckpointSaved,
    TrainingCancelled,
    TrainingCompleted,
    TrainingFailed,
    TrainingLog,
    TrainingStarted,
    parse_event,
)

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
wire_keys = st.sampled_from(
    [
        "type",
        "jobId",
        "timestamp",
        "step",
        "loss",
        "evalLoss",
        "learningRate",
        "epoch",
        "samplesPerSecond",
        "metrics",
        "artifacts",
        "error",
        "metadata",
    ]
)
type_values = st.sampled_from(sorted(EVENT_TYPES)) | st.text(max_size=20)
# Dicts that look like events: right keys, arbitrary values (the fuzzing that matters).
event_like = st.dictionaries(wire_keys, json_values, max_size=8).flatmap(
    lambda d: st.builds(lambda t: {**d, "type": t}, type_values)
)

MODELS = {
    "training.started": TrainingStarted,
    "training.log": TrainingLog,
    "checkpoint.saved": CheckpointSaved,
    "training.completed": TrainingCompleted,
    "training.failed": TrainingFailed,
    "training.cancelled": TrainingCancelled,
}


@settings(max_examples=400, deadline=None)
@given(data=json_values | event_like, event_id=st.none() | st.text(max_size=10))
def test_never_raises_and_returns_typed_event_or_none(data: Any, event_id: str | None) -> None:
    event = parse_event(data, event_id)
    if event is None:
        return
    assert isinstance(data, dict)
    assert isinstance(event, MODELS[data["type"]])
    assert event.event_id == event_id
    # Required fields really are present and typed.
    if isinstance(event, (TrainingLog, CheckpointSaved)):
        assert isinstance(event.step, int)
    if isinstance(event, TrainingFailed):
        assert isinstance(event.error, str)


finite = st.floats(allow_nan=False, allow_infinity=False, width=32)
logs = st.builds(
    TrainingLog,
    job_id=st.text(max_size=12),
    timestamp=st.text(max_size=30),
    step=st.integers(min_value=0, max_value=10**12),
    loss=st.none() | finite,
    eval_loss=st.none() | finite,
    learning_rate=st.none() | finite,
    epoch=st.none() | finite,
    samples_per_second=st.none() | finite,
)
others = st.one_of(
    st.builds(
        TrainingStarted,
        job_id=st.text(max_size=12),
        metadata=st.none() | st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    ),
    st.builds(CheckpointSaved, job_id=st.text(max_size=12), step=st.integers(0, 10**9)),
    st.builds(
        TrainingCompleted,
        job_id=st.text(max_size=12),
        metrics=st.none() | st.dictionaries(st.text(max_size=5), finite, max_size=3),
    ),
    st.builds(
        TrainingFailed,
        job_id=st.text(max_size=12),
        error=st.text(max_size=50),
        step=st.none() | st.integers(0, 10**6),
    ),
    st.builds(
        TrainingCancelled, job_id=st.text(max_size=12), step=st.none() | st.integers(0, 10**6)
    ),
)


@settings(max_examples=300, deadline=None)
@given(event=logs | others, event_id=st.integers(min_value=1).map(str))
def test_wire_round_trip_is_lossless(event: Any, event_id: str) -> None:
    wire = json.loads(json.dumps(event.to_wire()))  # exactly what crosses the network
    back = parse_event(wire, event_id)
    assert back is not None
    assert back.to_wire() == event.to_wire()
    assert back.event_id == event_id


@given(step=st.integers(min_value=0), loss=finite)
def test_wire_keys_are_camel_case(step: int, loss: float) -> None:
    wire = TrainingLog(step=step, loss=loss, eval_loss=loss, learning_rate=loss).to_wire()
    assert {"evalLoss", "learningRate"} <= wire.keys()
    assert not any("_" in k for k in wire)
    assert wire["step"] == step and wire["loss"] == loss
