"""Property tests over the client's SSE path, fed arbitrary bytes through a real socket.

What the contract promises: arbitrary bytes never crash the client (``wait()``
either finishes or raises the documented transport error), a frame is only
ever delivered whole (a cut-off frame is never dispatched, even when its JSON
happens to be complete), garbage frames are skipped, and the resume point
(``Last-Event-ID``) is the last event that really arrived.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import arkor_nb as ak
from arkor_nb.core.contexts import StreamNotice
from arkor_nb.core.events import (
    CheckpointSaved,
    TrainingCancelled,
    TrainingCompleted,
    TrainingFailed,
    TrainingLog,
    TrainingStarted,
)
from tests.reliability.raw_sse_server import RawSseServer, Request, frame

JOB = "job_fuzz"
SERVER = RawSseServer(lambda n, r: b"")
FAST = ak.ReconnectPolicy(initial_delay=0.0, max_delay=0.0, max_attempts=2)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def log(step: int) -> dict[str, Any]:
    return {
        "type": "training.log",
        "jobId": JOB,
        "timestamp": "t",
        "step": step,
        "loss": 1.0 / (step + 1),
    }


def completed() -> dict[str, Any]:
    return {"type": "training.completed", "jobId": JOB, "timestamp": "t", "metrics": {}}


def run_client(server: RawSseServer) -> tuple[list[Any], BaseException | None]:
    """Attach to the job on ``server``; return what listeners saw and what wait() raised."""
    seen: list[Any] = []
    backend = ak.LocalBackend(url=server.url, token="fuzz-token")
    trainer = ak.Trainer.attach(JOB, backend=backend, reconnect=FAST)
    trainer.subscribe(seen.append)
    try:
        trainer.wait()
    except ak.ReconnectExhaustedError as err:
        return seen, err
    return seen, None


def events(seen: list[Any]) -> list[Any]:
    return [x for x in seen if not isinstance(x, StreamNotice)]


# ------------------------------------------------------------------ properties


@pytest.fixture(scope="module", autouse=True)
def _server() -> Iterator[None]:
    with SERVER:
        yield


@SETTINGS
@given(body=st.binary(max_size=2_000))
def test_arbitrary_bytes_never_crash(body: bytes) -> None:
    # First open: the fuzz bytes. Later opens: a clean terminal event, so wait()
    # can finish; a client that crashed on the garbage never gets there.
    def bodies(n: int, req: Request) -> bytes:
        return body if n == 0 else frame(10**9, completed())

    seen, err = run_client(SERVER.reset(bodies))
    wire_types = (
        TrainingStarted,
        TrainingLog,
        CheckpointSaved,
        TrainingCompleted,
        TrainingFailed,
        TrainingCancelled,
    )
    for item in seen:
        assert isinstance(item, (StreamNotice, *wire_types))
    # Either the client resumed and saw the clean end, or it gave up the documented way.
    assert err is None or isinstance(err, ak.ReconnectExhaustedError)


@SETTINGS
@given(
    n_complete=st.integers(min_value=0, max_value=5),
    cut=st.integers(min_value=0, max_value=10_000),
)
def test_a_cut_off_frame_is_never_delivered(n_complete: int, cut: int) -> None:
    whole = b"".join(frame(i, log(i)) for i in range(1, n_complete + 1))
    last = frame(n_complete + 1, log(n_complete + 1))
    cut %= len(last) - 1  # strictly short of the final blank line
    resume_ids: list[str | None] = []

    def bodies(n: int, req: Request) -> bytes:
        if n == 0:
            return whole + last[:cut]
        resume_ids.append(req.headers.get("last-event-id"))
        # The server replays from the resume point: the cut frame, then the end.
        start = int(req.headers.get("last-event-id") or 0) + 1
        replay = b"".join(frame(i, log(i)) for i in range(start, n_complete + 2))
        return replay + frame(n_complete + 2, completed())

    seen, err = run_client(SERVER.reset(bodies))
    assert err is None
    got = events(seen)
    steps = [e.step for e in got if isinstance(e, TrainingLog)]
    assert steps == list(range(1, n_complete + 2)), "each event once, in order, none partial"
    assert [e.event_id for e in got] == [str(i) for i in range(1, n_complete + 3)]
    assert resume_ids[0] == (str(n_complete) if n_complete else None)


garbage_block = st.binary(max_size=200).map(
    # Any bytes, made into one complete block: no blank line inside, one at the end.
    lambda b: b.replace(b"\r", b"").replace(b"\n\n", b"\n").strip(b"\n") + b"\n\n"
)


@SETTINGS
@given(blocks=st.lists(st.one_of(st.just(None), garbage_block), min_size=1, max_size=12))
def test_garbage_frames_between_real_ones_are_skipped(blocks: list[bytes | None]) -> None:
    # (id, bytes) segments; the server replays the same bytes after Last-Event-ID,
    # garbage included, exactly as a real server replays a log with a bad frame in it.
    segments: list[tuple[int | None, bytes]] = []
    step = 0
    for block in blocks:
        if block is None:
            step += 1
            segments.append((step, frame(step, log(step))))
        else:
            segments.append((None, block))
    segments.append((step + 1, frame(step + 1, completed())))
    # Only a garbage block that itself looks like an event could ever be delivered.
    fake_events = [b for b in blocks if b is not None and b"training." in b and b"data:" in b]

    def bodies(n: int, req: Request) -> bytes:
        after = req.headers.get("last-event-id")
        start = 0
        if after is not None and after.isdigit():
            start = next((i + 1 for i, (sid, _) in enumerate(segments) if sid == int(after)), 0)
        return b"".join(b for _, b in segments[start:])

    seen, err = run_client(SERVER.reset(bodies))
    assert err is None
    got = [e for e in events(seen) if isinstance(e, TrainingLog)]
    if not fake_events:
        assert [e.step for e in got] == list(range(1, step + 1))
        assert [e.loss for e in got] == [1.0 / (s + 1) for s in range(1, step + 1)]


def test_json_split_over_two_data_lines_is_one_event() -> None:
    """The SSE spec joins multi-line data with newlines; JSON tolerates that."""
    text = json.dumps(log(1), indent=1)
    body = frame(1, text) + frame(2, completed())
    seen, err = run_client(SERVER.reset(lambda n, r: body if n == 0 else frame(3, completed())))
    assert err is None
    assert [type(e).__name__ for e in events(seen)] == ["TrainingLog", "TrainingCompleted"]
