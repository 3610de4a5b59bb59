"""The SSE decoder on real httpx responses, however the bytes are split."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx

from arkor_nb.client import SseFrame, iter_sse

STREAM = (
    "\ufeff: comment\r\n"
    "retry: 1000\r\n"
    "id: 1\r\n"
    'data: {"a": 1}\r\n'
    "\r\n"
    "event: ping\n"
    "data:\n"
    "\n"
    "id: 2\r"
    "data: line one\r"
    "data:  line two\r"
    "\r"
    "data: no id here\n"
    "unknown: field\n"
    "data\n"
    "\n"
    "id: bad\0id\n"
    "data: x\n"
    "\n"
    "event: end\n"
    "data: {}\n"
    "\n"
    "data: incomplete frame at EOF is dropped"
).encode()

EXPECTED = [
    SseFrame(None, '{"a": 1}', "1"),
    SseFrame("ping", "", None),
    SseFrame(None, "line one\n line two", "2"),
    SseFrame(None, "no id here\n", None),
    SseFrame(None, "x", None),
    SseFrame("end", "{}", None),
]


def decode(chunks: list[bytes]) -> list[SseFrame]:
    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    async def run() -> list[SseFrame]:
        response = httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())
        return [frame async for frame in iter_sse(response)]

    return asyncio.run(run())


def test_whole_stream() -> None:
    assert decode([STREAM]) == EXPECTED


def test_every_two_way_split_gives_the_same_frames() -> None:
    for cut in range(1, len(STREAM)):
        assert decode([STREAM[:cut], STREAM[cut:]]) == EXPECTED, cut


def test_byte_by_byte() -> None:
    assert decode([STREAM[i : i + 1] for i in range(len(STREAM))]) == EXPECTED
