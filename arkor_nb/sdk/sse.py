"""Server-sent events, decoded chunk by chunk (the WHATWG "event stream interpretation").

Ours rather than httpx-sse's: the stream needs what that library's public API
(``EventSource.aiter_sse``) does not give: the frames of each received chunk
together (a chunk's callbacks run together) and each frame's *own* ``id``
(``ServerSentEvent.id`` is the last id seen, inherited by frames without one).

Rules kept from the spec: lines end with CRLF, LF or CR (a CR at the end of a
chunk may be the first half of a CRLF); a leading BOM is dropped; ``:`` starts
a comment; one space after the colon is dropped; ``data`` lines are joined
with ``\\n``; an ``id`` containing NUL is ignored; a frame is dispatched on a
blank line, so a frame cut off by the end of the stream never is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NEWLINE = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class Frame:
    event: str  # "" for the default ("message")
    data: str
    id: str | None  # this frame's own id field, None when it had none


class FrameDecoder:
    """Feed text as it arrives; get the frames completed by it."""

    def __init__(self) -> None:
        self._partial = ""  # an unterminated line (plus a CR that may start a CRLF)
        self._started = False
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self._fields = False  # whether the frame being read has any field yet

    def feed(self, text: str) -> list[Frame]:
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")
        text = self._partial + text
        hold = ""
        if text.endswith("\r"):
            text, hold = text[:-1], "\r"
        *lines, rest = _NEWLINE.split(text)
        self._partial = rest + hold
        frames = []
        for line in lines:
            frame = self._line(line)
            if frame is not None:
                frames.append(frame)
        return frames

    def _line(self, line: str) -> Frame | None:
        if not line:
            if not self._fields:
                return None
            frame = Frame(self._event, "\n".join(self._data), self._id)
            self._event, self._data, self._id, self._fields = "", [], None, False
            return frame
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            if "\0" in value:
                return None
            self._id = value
        elif name != "retry" or not value.isdigit():
            return None  # an unknown field, or a retry that is not a number, is ignored
        self._fields = True
        return None
