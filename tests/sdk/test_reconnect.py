"""Reconnect rules, transport failures, abort and callback errors (docs/protocol.md, exactly)."""

from __future__ import annotations

import asyncio
import random
import socket
import threading
import time

import httpx
import pytest

import arkor_nb as ak
from arkor_nb.core.contexts import StreamNotice
from arkor_nb.sdk.stream import StreamClosedError, backoff_delay
from tests.sdk.fake_cloud import (
    SUPPORTED_MODEL,
    Drop,
    Event,
    FakeCloud,
    Gate,
    Ping,
    Raw,
    Stall,
    completed,
    log,
    started,
)


def make(cloud: FakeCloud, policy: ak.ReconnectPolicy, **kwargs: object) -> ak.Trainer:
    backend_kwargs = {"keepalive": kwargs.pop("keepalive")} if "keepalive" in kwargs else {}
    return ak.create_trainer(
        name="run",
        model=SUPPORTED_MODEL,
        backend=cloud.backend(**backend_kwargs),
        reconnect=policy,
        **kwargs,
    )


def notices_of(trainer: ak.Trainer) -> list[StreamNotice]:
    notices: list[StreamNotice] = []
    trainer.subscribe(lambda item: notices.append(item) if isinstance(item, StreamNotice) else None)
    return notices


# ------------------------------------------------------------------ backoff


def test_backoff_is_exponential_with_25_percent_jitter_and_clamped() -> None:
    policy = ak.ReconnectPolicy(initial_delay=1.0, max_delay=10.0)
    rng = random.Random(7)
    for attempt, base in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0)]:
        delays = [backoff_delay(policy, attempt, rng) for _ in range(400)]
        assert min(delays) >= 0.75 * base and max(delays) <= min(1.25 * base, 10.0)
        assert min(delays) < 0.85 * base and max(delays) > min(1.15 * base, 9.9)  # really jittered
    # the cap holds after jitter too: never above max_delay
    capped = [backoff_delay(policy, 10, rng) for _ in range(400)]
    assert max(capped) <= 10.0 and min(capped) >= 7.5
    assert backoff_delay(policy, 10_000, rng) <= 10.0  # huge attempt numbers do not overflow


def test_observed_reconnect_delays_follow_the_policy(cloud: FakeCloud) -> None:
    policy = ak.ReconnectPolicy(initial_delay=0.004, max_delay=0.02)
    trainer = make(cloud, policy)
    notices = notices_of(trainer)
    trainer.start()
    cloud.fail_opens(503, 503, 503, 503, 503)
    assert trainer.wait().job.status == "completed"
    reconnects = [n for n in notices if n.kind == "reconnecting"]
    assert [n.attempt for n in reconnects] == [1, 2, 3, 4, 5]
    for n, base in zip(reconnects, [0.004, 0.008, 0.016, 0.02, 0.02], strict=True):
        assert n.delay is not None and 0.75 * base - 1e-9 <= n.delay <= min(1.25 * base, 0.02) + 1e-9
        assert isinstance(n.error, ak.CloudApiError) and n.error.status == 503


# ------------------------------------------------------------ failure counting


def test_clean_eof_after_data_reconnects_at_initial_delay_without_counting(cloud: FakeCloud) -> None:
    policy = ak.ReconnectPolicy(initial_delay=0.003, max_delay=1.0, max_attempts=1)
    steps: list[int] = []
    trainer = make(cloud, policy, callbacks={"on_log": lambda c: steps.append(c.step)})
    notices = notices_of(trainer)
    job_id = trainer.start()
    cloud.default_events = []
    for i in range(1, 6):  # five clean closes in a row, each after one data frame
        cloud.script(Event(str(i), log(i, 1.0)), job_id=job_id)
    cloud.script(Event("6", completed()), job_id=job_id)
    assert trainer.wait().job.status == "completed"
    assert steps == [1, 2, 3, 4, 5]
    reconnects = [n for n in notices if n.kind == "reconnecting"]
    assert [(n.attempt, n.delay) for n in reconnects] == [(0, 0.003)] * 5


@pytest.mark.parametrize(
    "script",
    [
        pytest.param([], id="empty-200"),
        pytest.param([Ping(), Ping()], id="ping-only"),
        pytest.param([Raw(b"<html>proxy error</html>\n\n")], id="garbage-only"),
        pytest.param([Raw(b"data: {broken\n\n"), Ping()], id="malformed-json-only"),
    ],
)
def test_streams_without_a_parseable_frame_count_failures(cloud: FakeCloud, script: list) -> None:
    policy = ak.ReconnectPolicy(initial_delay=0.001, max_delay=0.004, max_attempts=2)
    trainer = make(cloud, policy)
    trainer.start()
    for _ in range(3):
        cloud.script(*script)
    with pytest.raises(ak.ReconnectExhaustedError) as info:
        trainer.wait()
    assert len(cloud.stream_opens()) == 3  # the first try + max_attempts reconnects
    assert isinstance(info.value.__cause__, StreamClosedError)
    assert info.value.attempts == 3


def test_failure_counter_resets_on_each_parseable_data_frame(cloud: FakeCloud) -> None:
    policy = ak.ReconnectPolicy(initial_delay=0.001, max_delay=0.004, max_attempts=1)
    steps: list[int] = []
    trainer = make(cloud, policy, callbacks={"on_log": lambda c: steps.append(c.step)})
    cloud.default_events = [started(), log(1, 1.0), log(2, 1.0), log(3, 1.0), completed()]
    job_id = trainer.start()
    cloud.script(Raw(b"junk\n\n"), job_id=job_id)  # failure 1 of 1 allowed
    cloud.script(Event("1", started()), Event("2", log(1, 1.0)), Drop(), job_id=job_id)  # reset, fail
    cloud.script(Event("3", log(2, 1.0)), Drop(), job_id=job_id)  # reset, fail
    # then the default replay finishes the job
    assert trainer.wait().job.status == "completed"
    assert steps == [1, 2, 3]
    assert len(cloud.stream_opens()) == 4


def test_reconnect_exhausted_carries_the_last_failure_as_cause(cloud: FakeCloud) -> None:
    policy = ak.ReconnectPolicy(initial_delay=0.001, max_delay=0.004, max_attempts=2)
    trainer = make(cloud, policy)
    notices = notices_of(trainer)
    trainer.start()
    cloud.fail_opens(500, 502, 503)
    with pytest.raises(ak.ReconnectExhaustedError) as info:
        trainer.wait()
    cause = info.value.__cause__
    assert isinstance(cause, ak.CloudApiError) and cause.status == 503
    assert info.value.last_error is cause
    assert len(cloud.stream_opens()) == 3
    assert notices[-1].kind == "error" and notices[-1].error is info.value


def test_connect_errors_count_and_exhaust() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    backend = ak.CloudBackend(base_url=f"http://127.0.0.1:{port}", token="t", org_slug="o", project_slug="p")
    policy = ak.ReconnectPolicy(initial_delay=0.001, max_delay=0.002, max_attempts=2)
    trainer = ak.Trainer.attach("job_x", backend=backend, reconnect=policy)
    with pytest.raises(ak.ReconnectExhaustedError) as info:
        trainer.wait()
    assert isinstance(info.value.__cause__, httpx.ConnectError)


@pytest.mark.parametrize("status", [401, 403, 410, 426])
def test_permanent_statuses_raise_at_once(cloud: FakeCloud, fast, status: int) -> None:
    trainer = make(cloud, fast)
    trainer.start()
    cloud.fail_opens(status)
    with pytest.raises(ak.CloudApiError) as info:
        trainer.wait()
    assert info.value.status == status
    assert info.value.message == f"scripted HTTP {status}"
    assert len(cloud.stream_opens()) == 1
    if status == 426:
        assert "pip install -U arkor-nb" in str(info.value)


@pytest.mark.parametrize("status", [404, 408, 429, 500, 503])
def test_transient_statuses_are_retried(cloud: FakeCloud, fast, status: int) -> None:
    policy = ak.ReconnectPolicy(initial_delay=0.001, max_delay=0.004, max_attempts=3)
    trainer = make(cloud, policy)
    trainer.start()
    cloud.fail_opens(status, status)
    assert trainer.wait().job.status == "completed"
    assert len(cloud.stream_opens()) == 3


def test_dropped_connection_mid_body_reconnects_and_resumes(cloud: FakeCloud, fast) -> None:
    steps: list[int] = []
    trainer = make(cloud, fast, callbacks={"on_log": lambda c: steps.append(c.step)})
    notices = notices_of(trainer)
    cloud.default_events = [started(), log(1, 1.0), log(2, 1.0), completed()]
    job_id = trainer.start()
    cloud.script(Event("1", started()), Event("2", log(1, 1.0)), Raw(b"id: 3\ndata: {\"ty"), Drop(), job_id=job_id)
    assert trainer.wait().job.status == "completed"
    assert steps == [1, 2]
    opens = cloud.stream_opens(job_id)
    assert opens[1].headers.get("last-event-id") == "2"
    failure = next(n for n in notices if n.kind == "reconnecting")
    assert isinstance(failure.error, httpx.RemoteProtocolError)


# ------------------------------------------------------------ stall timeout


def test_a_stalled_stream_is_a_transport_failure(cloud: FakeCloud, fast) -> None:
    trainer = make(cloud, fast, keepalive=0.05)  # read timeout = 3 x 0.05 s
    notices = notices_of(trainer)
    cloud.default_events = [started(), log(1, 1.0), completed()]
    job_id = trainer.start()
    cloud.script(Event("1", started()), Stall(5.0), job_id=job_id)
    began = time.monotonic()
    assert trainer.wait().job.status == "completed"
    assert time.monotonic() - began < 3.0  # detected long before the server's 5 s stall ends
    failure = next(n for n in notices if n.kind == "reconnecting")
    assert isinstance(failure.error, httpx.ReadTimeout)
    assert failure.attempt == 1
    assert cloud.stream_opens(job_id)[1].headers.get("last-event-id") == "1"


def test_keepalive_pings_keep_a_slow_stream_open(cloud: FakeCloud, fast) -> None:
    trainer = make(cloud, fast, keepalive=0.1)  # read timeout 0.3 s; total silence in data 0.6 s
    job_id = trainer.start()
    pings = []
    for _ in range(12):
        pings += [Stall(0.05), Ping()]
    cloud.script(Event("1", started()), *pings, Event("2", completed()), job_id=job_id)
    assert trainer.wait().job.status == "completed"
    assert len(cloud.stream_opens()) == 1


def test_keepalive_env_knob(monkeypatch: pytest.MonkeyPatch) -> None:
    from arkor_nb.sdk.client import CloudApiClient

    monkeypatch.setenv("ARKOR_NB_KEEPALIVE_S", "2")
    assert CloudApiClient("http://x").stream_timeout.read == 6.0
    monkeypatch.delenv("ARKOR_NB_KEEPALIVE_S")
    assert CloudApiClient("http://x").stream_timeout.read == 45.0
    assert CloudApiClient("http://x", keepalive=1).stream_timeout.read == 3.0
    monkeypatch.setenv("ARKOR_NB_KEEPALIVE_S", "soon")
    with pytest.raises(ValueError, match="ARKOR_NB_KEEPALIVE_S"):
        CloudApiClient("http://x")


# ------------------------------------------------------------------ abort


def test_abort_stops_the_local_stream_but_not_the_job(cloud: FakeCloud, fast) -> None:
    controller = ak.AbortController()
    gate = threading.Event()
    trainer = make(cloud, fast, abort_signal=controller.signal)
    notices = notices_of(trainer)
    job_id = trainer.start()
    cloud.script(Event("1", started()), Gate(gate), job_id=job_id)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            trainer.wait()
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    cloud.wait_for(lambda: trainer.job is not None and trainer.job.status == "running")
    controller.abort("user pressed stop")
    thread.join(5)
    gate.set()
    assert not thread.is_alive()
    assert isinstance(errors[0], ak.AbortedError) and errors[0].reason == "user pressed stop"
    assert cloud.requests_to("POST", f"/v1/jobs/{job_id}/cancel") == []
    assert notices[-1].kind == "aborted"


def test_pre_aborted_signal_raises_without_streaming(cloud: FakeCloud, fast) -> None:
    controller = ak.AbortController()
    controller.abort()
    trainer = make(cloud, fast, abort_signal=controller.signal)
    with pytest.raises(ak.AbortedError):
        trainer.wait()
    assert cloud.requests == []  # not even the job was created


def test_per_call_abort_signal_only_stops_that_wait(cloud: FakeCloud, fast) -> None:
    trainer = make(cloud, fast)
    job_id = trainer.start()
    gate = threading.Event()
    cloud.script(Event("1", started()), Gate(gate), job_id=job_id)
    panel = ak.AbortController()

    async def both() -> tuple[BaseException | ak.TrainingResult, ...]:
        first = asyncio.ensure_future(trainer.wait_async(abort_signal=panel.signal))
        await cloud.await_for(lambda: len(cloud.stream_opens(job_id)) >= 1)
        panel.abort()
        outcome = await asyncio.gather(first, return_exceptions=True)
        gate.set()
        return (outcome[0], await trainer.wait_async())

    aborted, result = asyncio.run(both())
    assert isinstance(aborted, ak.AbortedError)
    assert isinstance(result, ak.TrainingResult) and result.job.status == "completed"


def test_abort_during_backoff_sleep_is_prompt(cloud: FakeCloud) -> None:
    controller = ak.AbortController()
    policy = ak.ReconnectPolicy(initial_delay=30.0, max_delay=60.0)
    trainer = make(cloud, policy, abort_signal=controller.signal)
    notices = notices_of(trainer)
    trainer.start()
    cloud.fail_opens(503)
    errors: list[BaseException] = []
    thread = threading.Thread(target=lambda: _capture(trainer.wait, errors))
    thread.start()
    cloud.wait_for(lambda: any(n.kind == "reconnecting" for n in notices))
    began = time.monotonic()
    controller.abort()
    thread.join(5)
    assert time.monotonic() - began < 2.0
    assert isinstance(errors[0], ak.AbortedError)


def _capture(fn, errors: list[BaseException]) -> None:
    try:
        fn()
    except BaseException as exc:  # noqa: BLE001
        errors.append(exc)


# ------------------------------------------------------- callback exceptions


class UserBug(Exception):
    pass


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_callback_exception_propagates_unchanged_without_reconnect(cloud: FakeCloud, fast, kind: str) -> None:
    cloud.default_events = [started(), log(1, 1.0), log(2, 1.0), completed()]
    bug = UserBug("my callback broke")
    seen: list[int] = []

    def sync_cb(ctx: ak.LogContext) -> None:
        seen.append(ctx.step)
        raise bug

    async def async_cb(ctx: ak.LogContext) -> None:
        seen.append(ctx.step)
        raise bug

    trainer = make(cloud, fast, callbacks={"on_log": sync_cb if kind == "sync" else async_cb})
    with pytest.raises(UserBug) as info:
        trainer.wait()
    assert info.value is bug
    assert seen == [1]
    assert len(cloud.stream_opens()) == 1


def test_callback_raising_a_transport_error_is_not_mistaken_for_one(cloud: FakeCloud, fast) -> None:
    boom = httpx.ReadError("raised by user code")

    def on_completed(ctx: ak.CompletedContext) -> None:
        raise boom

    trainer = make(cloud, fast, callbacks={"on_completed": on_completed})
    with pytest.raises(httpx.ReadError) as info:
        trainer.wait()
    assert info.value is boom
    assert len(cloud.stream_opens()) == 1
