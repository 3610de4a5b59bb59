"""The fault proxy itself: each fault does what it says, so later tests mean something."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.reliability.tcp_proxy import CutFrame, Drop, FaultProxy, Stall

# SSE-shaped, ~100 kB, so CutFrame has data lines to cut into
PAYLOAD = b"".join(b'id: %d\ndata: {"type": "training.log", "step": %d}\n\n' % (i, i) for i in range(2_000))


@pytest.fixture
def blaster() -> Iterator[int]:
    """A loopback server that sends PAYLOAD to each client, then closes."""
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with conn:
                try:
                    conn.sendall(PAYLOAD)
                except OSError:
                    pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield port
    stop.set()
    t.join(timeout=5)
    srv.close()


def _read_all(port: int, timeout: float = 10.0) -> tuple[bytes, str]:
    out = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            while chunk := s.recv(65536):
                out += chunk
        except ConnectionResetError:
            return bytes(out), "reset"
        except TimeoutError:
            return bytes(out), "timeout"
    return bytes(out), "eof"


def test_clean_connection_is_transparent(blaster: int) -> None:
    with FaultProxy(blaster, [None]) as proxy:
        data, how = _read_all(proxy.port)
    assert (data, how) == (PAYLOAD, "eof")
    assert proxy.stats.bytes_down == len(PAYLOAD)


def test_drop_cuts_exactly_after_n_bytes(blaster: int) -> None:
    with FaultProxy(blaster, [Drop(10_000)], jitter=0) as proxy:
        data, how = _read_all(proxy.port)
    assert data == PAYLOAD[:10_000] and how == "eof"
    assert proxy.stats.drops == 1


def test_drop_with_rst_resets(blaster: int) -> None:
    with FaultProxy(blaster, [Drop(5_000, rst=True)], jitter=0) as proxy:
        data, how = _read_all(proxy.port)
    assert how == "reset"
    assert PAYLOAD.startswith(data) and len(data) <= 5_000


@pytest.mark.parametrize("rst", [False, True])
def test_cut_frame_stops_in_the_middle_of_the_next_data_line(blaster: int, rst: bool) -> None:
    with FaultProxy(blaster, [CutFrame(777, rst=rst)], jitter=0) as proxy:
        data, how = _read_all(proxy.port)
    at = PAYLOAD.find(b"data: ", 777)
    if not rst:
        assert data == PAYLOAD[: at + len(b"data: ") + 5] and how == "eof"
        assert not data.endswith(b"\n")  # the frame is left incomplete: never dispatched
    else:  # a reset may also discard what was in flight
        assert how == "reset" and PAYLOAD.startswith(data) and len(data) <= at + 11
    assert proxy.stats.cut_frames == 1


def test_stall_holds_the_stream_open(blaster: int) -> None:
    with FaultProxy(blaster, [Stall(1_000, 1.5)], jitter=0) as proxy:
        t0 = time.monotonic()
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
            got = bytearray()
            while len(got) < 1_000:
                got += s.recv(65536)
            s.settimeout(0.5)
            with pytest.raises(TimeoutError):  # nothing arrives during the stall
                s.recv(1)
            s.settimeout(10)
            while chunk := s.recv(65536):
                got += chunk
        assert bytes(got) == PAYLOAD
        assert time.monotonic() - t0 >= 1.5
    assert proxy.stats.stalls == 1


def test_faults_cycle_per_connection(blaster: int) -> None:
    with FaultProxy(blaster, [Drop(100), None], jitter=0) as proxy:
        first, _ = _read_all(proxy.port)
        second, _ = _read_all(proxy.port)
    assert len(first) == 100 and second == PAYLOAD
    assert proxy.stats.connections == 2
