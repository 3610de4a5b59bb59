"""A 5,000-event run through a TCP path that drops, resets, stalls and cuts frames.

The client talks to the real local server through :mod:`tcp_proxy`; every
connection suffers a real fault somewhere in its byte stream (jittered, so
drops land inside HTTP headers, chunk framing and SSE frames alike; a cut
stops in the middle of a data line). TCP never flips bytes inside a frame,
so neither does the proxy. The run must
still reach the callbacks complete, in order and without duplicates.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import arkor_nb as ak
from tests.reliability.harness import EventLog, LocalServer, report
from tests.reliability.tcp_proxy import CutFrame, Drop, FaultProxy, Stall

STEPS = 5_000
KEEPALIVE_S = 0.5  # client treats 1.5 s of silence as a stalled stream


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ARKOR_NB_KEEPALIVE_S", str(KEEPALIVE_S))
    env = {"ARKOR_NB_SYNTHETIC_STEP_S": "0.0005", "ARKOR_NB_SSE_PING_S": str(KEEPALIVE_S)}
    with LocalServer(tmp_path / "home", env=env) as srv:
        yield srv


def test_5000_events_survive_drops_resets_stalls_and_cut_frames(server: LocalServer) -> None:
    faults = [Drop(40_000), Stall(30_000, 3 * KEEPALIVE_S + 1.5), CutFrame(20_000)]
    faults += [Drop(25_000, rst=True), CutFrame(35_000, rst=True), Drop(15_000)] * 6
    on_log_steps: list[int] = []
    with FaultProxy(server.port, faults, seed=7) as proxy:
        trainer = ak.create_trainer(
            name="faulty-path",
            model="arkor-nb/synthetic",
            max_steps=STEPS,
            logging_steps=1,
            backend=ak.LocalBackend(url=proxy.url, token=server.token),
            reconnect=ak.ReconnectPolicy(initial_delay=0.05, max_delay=0.5),
            callbacks={"on_log": lambda ctx: on_log_steps.append(ctx.step)},
        )
        seen = EventLog()
        trainer.subscribe(seen)
        t0 = time.monotonic()
        trainer.start()
        result = trainer.wait()
        elapsed = time.monotonic() - t0
        stats = proxy.stats

    assert result.job.status == "completed"
    stored = server.stored_events(trainer.job_id)
    stored_ids = [int(e["id"]) for e in stored]
    lost = len(set(stored_ids) - set(seen.ids))
    report(
        "fault_proxy_5000",
        events_stored=len(stored),
        events_delivered=len(seen.events),
        on_log_calls=len(on_log_steps),
        duplicates=seen.duplicates,
        lost=lost,
        connections=stats.connections,
        drops=stats.drops,
        stalls=stats.stalls,
        cut_frames=stats.cut_frames,
        reconnects=seen.reconnects(),
        seconds=round(elapsed, 1),
    )
    # The faults really happened, many times, of every kind.
    assert stats.drops >= 5 and stats.cut_frames >= 3 and stats.stalls >= 1, stats
    # Complete, in order, no duplicates: at the callbacks and at the listener.
    assert on_log_steps == list(range(1, STEPS + 1))
    assert seen.steps() == list(range(1, STEPS + 1))
    assert seen.duplicates == 0 and seen.in_order
    assert seen.ids == stored_ids, "the client saw exactly the server's durable log"
    assert lost == 0
