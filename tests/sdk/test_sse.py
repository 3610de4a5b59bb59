"""The SSE frame decoder: line endings split across chunks, own ids, comments, cut-off frames."""

from __future__ import annotations

from arkor_nb.sdk.sse import Frame, FrameDecoder


def feed_all(*chunks: str) -> list[list[Frame]]:
    decoder = FrameDecoder()
    return [decoder.feed(c) for c in chunks]


def test_frames_per_chunk_with_every_line_ending() -> None:
    out = feed_all("\ufeffid: 1\r\ndata: a\r", "\n\r\nevent: ping\rid: 2\r\r", "data: x\n\ndata: cut")
    assert out[0] == []
    assert out[1] == [Frame("", "a", "1")]  # the ping's closing CR waits for the next chunk
    assert out[2] == [Frame("ping", "", "2"), Frame("", "x", None)]  # "data: cut": never


def test_multiline_data_comments_and_ignored_fields() -> None:
    (frames,) = feed_all(": hello\ndata: one\ndata:two\nfoo: bar\nretry: soon\nid: a\0b\n\n\n")
    assert frames == [Frame("", "one\ntwo", None)]


def test_a_cr_at_a_chunk_end_is_one_line_end_with_the_next_lf() -> None:
    out = feed_all("data: a\r", "\n", "\r", "\n")
    assert out == [[], [], [], [Frame("", "a", None)]]  # a last CR waits: it may start a CRLF
