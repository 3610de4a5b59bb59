"""A recording Jupyter comm, installed through ``comm.create_comm`` (the hook the
``comm`` package provides for frontends), so tests can count and size the
messages the panel would send to the browser without running one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import comm
from comm import DummyComm


@dataclass
class Sent:
    comm_id: str
    msg_type: str
    size: int  # JSON bytes + binary buffers
    data: Any


@dataclass
class Wire:
    sent: list[Sent] = field(default_factory=list)

    def since(self, mark: int) -> list[Sent]:
        return self.sent[mark:]

    def updates(self, mark: int = 0) -> list[Sent]:
        return [m for m in self.sent[mark:] if m.msg_type == "comm_msg"]


@contextmanager
def recording() -> Iterator[Wire]:
    wire = Wire()

    class RecordingComm(DummyComm):
        def publish_msg(self, msg_type: str, data: Any = None, metadata: Any = None,
                        buffers: Any = None, **keys: Any) -> None:
            size = len(json.dumps(data, default=str)) + sum(memoryview(b).nbytes for b in buffers or [])
            wire.sent.append(Sent(self.comm_id, msg_type, size, data))

    original = comm.create_comm
    comm.create_comm = lambda *a, **kw: RecordingComm(*a, **kw)
    try:
        yield wire
    finally:
        comm.create_comm = original
