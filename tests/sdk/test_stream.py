"""JobStream on its own (no Trainer): decoding, de-dup, resume, end, unknown jobs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

import arkor_nb as ak
from arkor_nb.core.contexts import StreamNotice
from arkor_nb.core.events import TrainingCompleted, TrainingLog
from arkor_nb.sdk.stream import JobNotFoundError, JobStream
from tests.sdk.fake_cloud import End, Event, FakeCloud, Raw, completed, log, started


def _log(step: int, event_id: str | None, eol: str = "\n") -> str:
    data = json.dumps({"type": "training.log", "jobId": "j", "timestamp": "t", "step": step})
    head = f"id: {event_id}{eol}" if event_id is not None else ""
    return f"{head}data: {data}{eol}{eol}"


STREAM = (
    "\ufeff: comment\r\n"
    "retry: 1000\r\n"
    + _log(1, "1", "\r\n")
    + "event: ping\ndata:\n\n"
    + 'id: 2\rdata: {"type": "training.log",\rdata:  "step": 2}\r\r'  # CR only, multi-line data
    + _log(3, None)  # no id line: delivered, resume point unchanged
    + "unknown: field\ndata\n\n"  # an empty frame: dropped
    + "id: bad\0id\n" + 'data: {"type": "training.log", "step": 4}\n\n'  # NUL id: ignored
    + _log(2, "2")  # a replayed duplicate id: dropped
    + "id: 3\ndata: {not json\n\n"  # unparseable: skipped
    + _log(5, "4")
    + "event: end\ndata: {}\n\n"
    + _log(6, "5")  # after end: never read
).encode()

EXPECTED = [(1, "1"), (2, "2"), (3, None), (4, None), (5, "4")]


def decode(chunks: list[bytes]) -> tuple[list[tuple[int, str | None]], JobStream]:
    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    async def run() -> tuple[list[Any], JobStream]:
        stream = JobStream(ak.CloudBackend(), "j")
        response = httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())
        items = [item async for batch in stream._read(response) for item in batch]
        return items, stream

    items, stream = asyncio.run(run())
    assert all(isinstance(i, TrainingLog) for i in items)
    return [(i.step, i.event_id) for i in items], stream


def test_whole_stream() -> None:
    items, stream = decode([STREAM])
    assert items == EXPECTED
    assert stream.ended and stream.last_event_id == "4"


def test_every_two_way_split_gives_the_same_events() -> None:
    for cut in range(1, len(STREAM)):
        assert decode([STREAM[:cut], STREAM[cut:]])[0] == EXPECTED, cut


def test_byte_by_byte() -> None:
    assert decode([STREAM[i : i + 1] for i in range(len(STREAM))])[0] == EXPECTED


def test_a_frame_cut_off_at_eof_is_never_dispatched() -> None:
    cut = _log(7, "7").encode()[:-1]  # complete JSON, missing only the final blank line
    items, stream = decode([_log(6, "6").encode() + cut])
    assert items == [(6, "6")] and stream.last_event_id == "6" and not stream.ended


# ------------------------------------------------- against the fake cloud


def collect(stream: JobStream) -> list[Any]:
    async def run() -> list[Any]:
        return [item async for item in stream]

    return asyncio.run(run())


def test_a_stream_without_a_trainer_yields_typed_events_and_notices(cloud: FakeCloud, fast) -> None:
    cloud.add_job("job_a", [started(), log(1, 0.5), completed()])
    cloud.script(Event("1", started()), Event("2", log(1, 0.5)), job_id="job_a")  # clean close
    stream = JobStream(cloud.backend(), "job_a", fast, known=True)
    items = collect(stream)
    kinds = [i.kind if isinstance(i, StreamNotice) else i.type for i in items]
    assert kinds == ["connected", "training.started", "training.log", "reconnecting", "connected",
                     "training.completed"]
    assert isinstance(items[-1], TrainingCompleted) and items[-1].event_id == "3"
    assert items[3].attempt == 0 and items[3].delay == fast.initial_delay  # no failure counted
    assert [o.headers.get("last-event-id") for o in cloud.stream_opens("job_a")] == [None, "2"]
    assert stream.ended  # the default replay ends with `event: end`


def test_end_stops_the_stream_for_good(cloud: FakeCloud, fast) -> None:
    cloud.add_job("job_e", [started()])
    cloud.script(Event("1", started()), End(), Event("2", log(1, 1.0)), job_id="job_e")
    items = collect(JobStream(cloud.backend(), "job_e", fast, known=True))
    assert [getattr(i, "type", None) for i in items] == [None, "training.started"]
    assert len(cloud.stream_opens("job_e")) == 1


def test_a_404_for_a_job_never_seen_is_an_error_at_once(cloud: FakeCloud, fast) -> None:
    stream = JobStream(cloud.backend(), "job_doesnotexist123", fast)
    with pytest.raises(JobNotFoundError) as info:
        collect(stream)
    assert info.value.status == 404 and isinstance(info.value, ak.CloudApiError)
    assert "job_doesnotexist123" in str(info.value) and cloud.url in str(info.value)
    assert len(cloud.stream_opens()) == 1


def test_a_404_for_a_job_seen_to_exist_is_transient(cloud: FakeCloud, fast) -> None:
    cloud.add_job("job_k", [started(), completed()])
    cloud.fail_opens(404, 404)
    items = collect(JobStream(cloud.backend(), "job_k", fast, known=True))
    reconnects = [i for i in items if isinstance(i, StreamNotice) and i.kind == "reconnecting"]
    assert [(n.attempt, n.error.status) for n in reconnects] == [(1, 404), (2, 404)]
    assert isinstance(items[-1], TrainingCompleted)


def test_garbage_only_streams_never_reset_the_failure_count(cloud: FakeCloud) -> None:
    cloud.add_job("job_g", [started()])
    for _ in range(3):
        cloud.script(Raw(b"data: {broken\n\n"), job_id="job_g")
    policy = ak.ReconnectPolicy(initial_delay=0.001, max_delay=0.002, max_attempts=2)
    with pytest.raises(ak.ReconnectExhaustedError):
        collect(JobStream(cloud.backend(), "job_g", policy, known=True))
    assert len(cloud.stream_opens("job_g")) == 3


def test_a_skipped_frame_still_moves_the_resume_point() -> None:
    """As in EventSource: a broken record is skipped once, not replayed after every reconnect."""
    items, stream = decode([_log(1, "1").encode() + b"id: 2\ndata: {broken\n\n"])
    assert items == [(1, "1")] and stream.last_event_id == "2"
    assert stream.failures == 0
