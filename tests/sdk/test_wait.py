"""Trainer.wait semantics against the loopback FakeCloud: callbacks, frames, resume."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading

import pytest

import arkor_nb as ak
from arkor_nb.core.contexts import StreamNotice
from arkor_nb.core.events import TrainingLog
from tests.sdk.fake_cloud import (
    SUPPORTED_MODEL,
    Drop,
    End,
    Event,
    FakeCloud,
    Gate,
    Ping,
    Raw,
    checkpoint,
    completed,
    failed,
    log,
    started,
)


def make(cloud: FakeCloud, policy: ak.ReconnectPolicy, **kwargs: object) -> ak.Trainer:
    return ak.create_trainer(
        name="run", model=SUPPORTED_MODEL, backend=cloud.backend(), reconnect=policy, **kwargs
    )


def test_full_run_calls_every_callback_with_snake_case_contexts(cloud: FakeCloud, fast) -> None:
    cloud.default_events = [
        started(gpu="none"),
        log(1, 0.9, evalLoss=1.1, learningRate=2e-4, epoch=0.5, samplesPerSecond=12.5),
        checkpoint(1, [{"kind": "checkpoint", "step": 1, "path": "checkpoints/step-1"}]),
        log(2, 0.4),
        completed([{"kind": "adapter", "path": "adapter"}], train_loss=0.4),
    ]
    calls: list[tuple[str, object]] = []
    callbacks = ak.Callbacks(
        on_started=lambda ctx: calls.append(("started", ctx)),
        on_log=lambda ctx: calls.append(("log", ctx)),
        on_checkpoint=lambda ctx: calls.append(("checkpoint", ctx)),
        on_completed=lambda ctx: calls.append(("completed", ctx)),
        on_failed=lambda ctx: calls.append(("failed", ctx)),
    )
    trainer = make(cloud, fast, callbacks=callbacks)
    result = trainer.wait()

    assert [name for name, _ in calls] == ["started", "log", "checkpoint", "log", "completed"]
    started_ctx = calls[0][1]
    assert isinstance(started_ctx, ak.StartedContext)
    assert started_ctx.job.status == "running" and started_ctx.job.id == trainer.job_id
    first_log = calls[1][1]
    assert isinstance(first_log, ak.LogContext)
    assert (first_log.step, first_log.loss, first_log.eval_loss) == (1, 0.9, 1.1)
    assert (first_log.learning_rate, first_log.epoch, first_log.samples_per_second) == (2e-4, 0.5, 12.5)
    ckpt = calls[2][1]
    assert isinstance(ckpt, ak.CheckpointContext)
    assert ckpt.adapter == {"kind": "checkpoint", "jobId": trainer.job_id, "step": 1}
    assert ckpt.artifacts == [{"kind": "checkpoint", "step": 1, "path": "checkpoints/step-1"}]
    assert callable(ckpt.infer)
    done = calls[4][1]
    assert isinstance(done, ak.CompletedContext)
    assert done.artifacts == [{"kind": "adapter", "path": "adapter"}]
    assert result.job.status == "completed"
    # a plain str, as parsed from the wire: printed lists of statuses read ('a', 'completed')
    assert type(result.job.status) is str and type(started_ctx.job.status) is str
    assert repr((trainer.name, result.job.status)) == "('run', 'completed')"
    assert result.artifacts == [{"kind": "adapter", "path": "adapter"}]
    assert trainer.job is not None and trainer.job.status == "completed"
    assert trainer.job.started_at is not None and trainer.job.completed_at is not None


def test_failed_and_cancelled_jobs_resolve_instead_of_raising(cloud: FakeCloud, fast) -> None:
    cloud.default_events = [started(), log(1, 0.5), failed("CUDA out of memory", step=1)]
    errors: list[str] = []
    trainer = make(cloud, fast, callbacks={"on_failed": lambda ctx: errors.append(ctx.error)})
    result = trainer.wait()
    assert result.job.status == "failed" and type(result.job.status) is str
    assert result.job.error == "CUDA out of memory"
    assert errors == ["CUDA out of memory"]

    cloud.default_events = [started(), {"type": "training.cancelled", "step": 3}]
    result = make(cloud, fast).wait()
    assert result.job.status == "cancelled" and type(result.job.status) is str
    assert result.artifacts == []


def test_async_callbacks_are_awaited_in_order_never_concurrently(cloud: FakeCloud, fast) -> None:
    cloud.default_events = [started(), *[log(i, 1.0 / i) for i in range(1, 21)], completed()]
    active = 0
    peak = 0
    steps: list[int] = []

    async def on_log(ctx: ak.LogContext) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0)  # yield: a concurrent dispatcher would interleave here
        steps.append(ctx.step)
        active -= 1

    def on_completed(ctx: ak.CompletedContext) -> None:
        steps.append(-1)

    make(cloud, fast, callbacks={"on_log": on_log, "on_completed": on_completed}).wait()
    assert steps == [*range(1, 21), -1]
    assert peak == 1


def test_listeners_see_every_event_before_callbacks_and_may_not_break_the_stream(
    cloud: FakeCloud, fast
) -> None:
    cloud.default_events = [started(), log(1, 0.5), log(2, 0.4), completed()]
    order: list[str] = []
    trainer = make(cloud, fast, callbacks={"on_log": lambda ctx: order.append(f"cb{ctx.step}")})

    def listener(item: object) -> None:
        if isinstance(item, TrainingLog):
            order.append(f"l{item.step}:{item.event_id}")

    def broken(item: object) -> None:
        raise RuntimeError("listener bug")

    notices: list[StreamNotice] = []
    trainer.subscribe(listener)
    trainer.subscribe(broken)
    unsubscribe = trainer.subscribe(lambda item: notices.append(item) if isinstance(item, StreamNotice) else None)
    removed: list[object] = []
    trainer.subscribe(removed.append)()  # unsubscribed at once
    result = trainer.wait()
    assert result.job.status == "completed"
    assert order == ["l1:2", "cb1", "l2:3", "cb2"]
    assert [n.kind for n in notices] == ["connected"]
    assert removed == []
    unsubscribe()


def test_pings_are_skipped_and_end_without_terminal_event_uses_job_status(cloud: FakeCloud, fast) -> None:
    cloud.default_events = []
    trainer = make(cloud, fast)
    job_id = trainer.start()
    cloud.script(Ping(), Event("1", started()), Ping(), Event("2", log(1, 0.3)), Ping(), End())
    cloud.jobs[job_id]["status"] = "completed"
    result = trainer.wait()
    assert result.job.status == "completed"
    assert len(cloud.stream_opens()) == 1


def test_end_ends_wait_without_a_terminal_event_and_opens_no_further_stream(cloud: FakeCloud, fast) -> None:
    """``event: end`` ends wait(); the job is fetched once for its status. A further
    open would be answered 410 (the stream is gone), which must never be reached."""
    trainer = make(cloud, fast)
    job_id = trainer.start()
    cloud.script(Event("1", started()), End(), job_id=job_id)  # job still "queued" on the server
    trainer.subscribe(lambda item: cloud.fail_opens(410) if isinstance(item, StreamNotice)
                      and item.kind == "connected" else None)
    result = trainer.wait()
    assert result.job.status == "queued"  # what the backend says, not a guess
    assert len(cloud.stream_opens(job_id)) == 1
    assert len(cloud.requests_to("GET", f"/v1/jobs/{job_id}")) == 1


def test_end_resolves_even_when_the_status_lookup_fails(cloud: FakeCloud, fast) -> None:
    trainer = make(cloud, fast)
    job_id = trainer.start()
    cloud.script(Event("1", started()), End(), job_id=job_id)
    # once the stream is open, the job vanishes: the status lookup answers 404
    trainer.subscribe(lambda item: cloud.jobs.pop(job_id, None) if isinstance(item, StreamNotice)
                      and item.kind == "connected" else None)
    result = trainer.wait()
    assert result.job.id == job_id and result.job.status == "running"  # as last seen
    assert len(cloud.stream_opens(job_id)) == 1


def test_unknown_types_and_malformed_frames_are_skipped(cloud: FakeCloud, fast) -> None:
    steps: list[int] = []
    trainer = make(cloud, fast, callbacks={"on_log": lambda ctx: steps.append(ctx.step)})
    job_id = trainer.start()
    cloud.script(
        Event("1", started()),
        Event("2", {"type": "training.future_thing", "foo": 1}),
        Event("3", {"type": "training.log", "loss": 0.1}),  # missing step
        Raw(b"data: [1, 2]\n\n"),
        Raw(b"data: {no id and not json\n\n"),
        Raw(b"data:\n\n"),  # empty event
        Raw(b": a comment line\n\n"),
        Raw(b"\xff\xfe garbage bytes \x00\n"),
        Event("4", log(7, 0.2)),
        Raw(b'id: 5\r\ndata: {"type": "training.log",\r\ndata:  "step": 8}\r\n\r\n'),  # CRLF, multi-line
        Event("6", completed()),
        job_id=job_id,
    )
    result = trainer.wait()
    assert result.job.status == "completed"
    assert steps == [7, 8]
    assert len(cloud.stream_opens()) == 1


def test_an_unparseable_frame_is_skipped_without_a_reconnect(cloud: FakeCloud, fast) -> None:
    steps: list[int] = []
    notices: list[StreamNotice] = []
    trainer = make(cloud, fast, callbacks={"on_log": lambda ctx: steps.append(ctx.step)})
    trainer.subscribe(lambda item: notices.append(item) if isinstance(item, StreamNotice) else None)
    job_id = trainer.start()
    cloud.script(
        Event("1", started()),
        Event("2", log(1, 1.0)),
        Raw(b"id: 3\ndata: {broken\n\n"),
        Raw(b'id: 4\ndata: {"type": "training.log", "st\x00\xff{garbage\r\nep": 2}\n\n'),
        Event("5", log(3, 1.0)),
        Event("6", completed()),
        job_id=job_id,
    )
    assert trainer.wait().job.status == "completed"
    assert steps == [1, 3]
    assert len(cloud.stream_opens(job_id)) == 1
    assert [n.kind for n in notices] == ["connected"]


def test_sparse_ids_are_trusted(cloud: FakeCloud, fast) -> None:
    steps: list[int] = []
    trainer = make(cloud, fast, callbacks={"on_log": lambda ctx: steps.append(ctx.step)})
    job_id = trainer.start()
    cloud.script(Event("1", started()), Event("2", log(1, 1.0)), Event("10", log(4, 1.0)),
                 Event("20", log(5, 1.0)), Event("30", completed()), job_id=job_id)
    assert trainer.wait().job.status == "completed"
    assert steps == [1, 4, 5]
    assert len(cloud.stream_opens(job_id)) == 1


def test_a_frame_cut_off_mid_way_is_never_dispatched_and_comes_back_whole(cloud: FakeCloud, fast) -> None:
    """A drop right before the blank line that ends a frame: its JSON is complete,
    but SSE only dispatches on the blank line, so it arrives once, from the replay."""
    steps: list[int] = []
    trainer = make(cloud, fast, callbacks={"on_log": lambda ctx: steps.append(ctx.step)})
    cloud.default_events = [started(), log(1, 1.0), log(2, 1.0), completed()]
    job_id = trainer.start()
    frame = json.dumps({**log(2, 1.0), "jobId": job_id, "timestamp": "t"}).encode()
    cloud.script(Event("1", started()), Event("2", log(1, 1.0)), Raw(b"id: 3\ndata: " + frame + b"\n"),
                 Drop(), job_id=job_id)
    assert trainer.wait().job.status == "completed"
    assert steps == [1, 2]
    assert [o.headers.get("last-event-id") for o in cloud.stream_opens(job_id)] == [None, "2"]


def test_last_event_id_resume_loses_and_duplicates_nothing(cloud: FakeCloud, fast) -> None:
    cloud.default_events = [started(), *[log(i, 1.0) for i in range(1, 6)], completed()]
    steps: list[int] = []
    trainer = make(cloud, fast, callbacks={"on_log": lambda ctx: steps.append(ctx.step)})
    job_id = trainer.start()
    # First connection delivers ids 1..3 and closes cleanly; the replay then
    # resumes after Last-Event-ID 3.
    cloud.script(Event("1", started()), Event("2", log(1, 1.0)), Event("3", log(2, 1.0)), job_id=job_id)
    result = trainer.wait()
    assert result.job.status == "completed"
    assert steps == [1, 2, 3, 4, 5]
    opens = cloud.stream_opens(job_id)
    assert [o.headers.get("last-event-id") for o in opens] == [None, "3"]


def test_duplicate_ids_from_a_server_that_ignores_last_event_id_are_dropped(cloud: FakeCloud, fast) -> None:
    steps: list[int] = []
    trainer = make(cloud, fast, callbacks={"on_log": lambda ctx: steps.append(ctx.step)})
    job_id = trainer.start()
    cloud.script(Event("1", started()), Event("2", log(1, 1.0)), job_id=job_id)
    cloud.script(
        Event("1", started()), Event("2", log(1, 1.0)), Event("3", log(2, 1.0)), Event("4", completed()),
        job_id=job_id,
    )
    trainer.wait()
    assert steps == [1, 2]


def test_checkpoint_infer_is_bound_to_the_checkpoint_and_forwards_options(cloud: FakeCloud, fast) -> None:
    cloud.default_events = [started(), checkpoint(5), completed()]
    cloud.chat_gate = threading.Event()
    texts: list[str] = []
    statuses: list[tuple[bool, int]] = []

    def on_checkpoint(ctx: ak.CheckpointContext) -> None:
        response = ctx.infer(
            messages=[{"role": "user", "content": "hi"}],
            temperature=0.2,
            max_tokens=5,
            tools=[{"type": "function", "function": {"name": "f"}}],
            tool_choice="auto",
            response_format={"type": "json_object"},
            structured_outputs={"json": {"type": "object"}},
        )
        # Returned before the server sent the whole body: streaming really is lazy.
        statuses.append((response.is_stream_consumed, response.status_code))
        cloud.chat_gate.set()
        with contextlib.closing(response):
            for line in response.iter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    texts.append(json.loads(line[6:])["choices"][0]["delta"]["content"])
        plain = ctx.infer([{"role": "user", "content": "again"}], stream=False)
        texts.append(plain.json()["choices"][0]["message"]["content"])

    trainer = make(cloud, fast, callbacks={"on_checkpoint": on_checkpoint})
    trainer.wait()
    assert statuses == [(False, 200)]
    assert texts == ["Hel", "lo", "Hello"]
    chats = cloud.requests_to("POST", "/v1/inference/chat")
    assert chats[0].query == {"orgSlug": "acme", "projectSlug": "proj"}
    assert chats[0].body == {
        "messages": [{"role": "user", "content": "hi"}],
        "adapter": {"kind": "checkpoint", "jobId": trainer.job_id, "step": 5},
        "stream": True,
        "temperature": 0.2,
        "maxTokens": 5,
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "toolChoice": "auto",
        "responseFormat": {"type": "json_object"},
        "structuredOutputs": {"json": {"type": "object"}},
    }
    assert chats[1].body["stream"] is False
    assert chats[1].body["adapter"]["step"] == 5


def test_infer_http_error_is_a_cloud_api_error(cloud: FakeCloud, fast) -> None:
    cloud.default_events = [started(), checkpoint(1), completed()]
    caught: list[ak.CloudApiError] = []

    def on_checkpoint(ctx: ak.CheckpointContext) -> None:
        cloud.valid_tokens.discard(cloud.token)
        try:
            ctx.infer([{"role": "user", "content": "x"}])
        except ak.CloudApiError as exc:
            caught.append(exc)
        finally:
            cloud.valid_tokens.add(cloud.token)

    make(cloud, fast, callbacks={"on_checkpoint": on_checkpoint}).wait()
    assert caught and caught[0].status == 401
    assert "bearer token" in caught[0].message


def test_every_request_carries_auth_client_header_and_scope(cloud: FakeCloud, fast) -> None:
    trainer = make(cloud, fast)
    trainer.wait()
    trainer.cancel()
    assert cloud.requests
    for request in cloud.requests:
        assert request.headers["authorization"] == "Bearer test-token"
        assert request.headers["x-arkor-client"] == f"arkor-nb/{ak.__version__} python"
        assert request.query == {"orgSlug": "acme", "projectSlug": "proj"}
    assert cloud.stream_opens()[0].headers["accept"] == "text/event-stream"


def test_attach_streams_an_existing_job_from_the_beginning(cloud: FakeCloud, fast) -> None:
    cloud.add_job("job_old", [started(), log(1, 0.7), log(2, 0.6), completed()], name="older-run")
    steps: list[int] = []
    trainer = ak.Trainer.attach(
        "job_old", backend=cloud.backend(), reconnect=fast, callbacks={"on_log": lambda c: steps.append(c.step)}
    )
    assert trainer.start() == "job_old"
    result = trainer.wait()
    assert steps == [1, 2]
    assert result.job.status == "completed"
    assert trainer.name == "older-run"
    assert cloud.requests_to("POST", "/v1/jobs") == []
    assert cloud.stream_opens()[0].headers.get("last-event-id") is None


def test_gate_holds_stream_until_released(cloud: FakeCloud, fast) -> None:
    """Events arrive live: a listener sees step 1 while the server still holds the rest."""
    gate = threading.Event()
    trainer = make(cloud, fast)
    job_id = trainer.start()
    cloud.script(Event("1", started()), Event("2", log(1, 0.5)), Gate(gate), Event("3", completed()), job_id=job_id)
    seen: list[int] = []
    trainer.subscribe(lambda item: seen.append(item.step) if isinstance(item, TrainingLog) else None)
    results: list[ak.TrainingResult] = []
    thread = threading.Thread(target=lambda: results.append(trainer.wait()))
    thread.start()
    cloud.wait_for(lambda: seen == [1])
    assert results == []
    gate.set()
    thread.join(10)
    assert results[0].job.status == "completed"


@pytest.mark.parametrize("bad", [b"data: nope\n\n", b"\x00\x01\x02"])
def test_garbage_frames_do_not_count_as_progress(cloud: FakeCloud, bad: bytes) -> None:
    policy = ak.ReconnectPolicy(initial_delay=0.001, max_delay=0.002, max_attempts=1)
    trainer = make(cloud, policy)
    trainer.start()
    cloud.script(Raw(bad))
    cloud.script(Raw(bad))
    with pytest.raises(ak.ReconnectExhaustedError):
        trainer.wait()
    assert len(cloud.stream_opens()) == 2


def test_async_callbacks_use_infer_aio_on_their_own_loop(cloud: FakeCloud, fast) -> None:
    cloud.default_events = [started(), checkpoint(2), completed()]
    texts: list[str] = []

    async def on_checkpoint(ctx: ak.CheckpointContext) -> None:
        response = await ctx.infer.aio([{"role": "user", "content": "hi"}], top_p=0.9)
        try:
            async for line in response.aiter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    texts.append(json.loads(line[6:])["choices"][0]["delta"]["content"])
        finally:
            await response.aclose()
        plain = await ctx.infer.aio([{"role": "user", "content": "x"}], stream=False)
        texts.append(plain.json()["choices"][0]["message"]["content"])

    make(cloud, fast, callbacks={"on_checkpoint": on_checkpoint}).wait()
    assert texts == ["Hel", "lo", "Hello"]
    body = cloud.requests_to("POST", "/v1/inference/chat")[0].body
    assert body["topP"] == 0.9 and body["adapter"] == {"kind": "checkpoint", "jobId": "job_1", "step": 2}


# ------------------------------------------------------------ on_cancelled


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_on_cancelled_fires_once_with_what_was_saved_before_the_cancel(
    cloud: FakeCloud, fast, kind: str
) -> None:
    ckpt2 = [{"kind": "checkpoint", "step": 2, "path": "checkpoints/step-2"}]
    ckpt4 = [{"kind": "checkpoint", "step": 4, "path": "checkpoints/step-4"}]
    cloud.default_events = [started(), log(1, 0.5), checkpoint(2, ckpt2), checkpoint(4, ckpt4),
                            {"type": "training.cancelled", "step": 5}]
    seen: list[ak.CancelledContext] = []
    failed_calls: list[object] = []

    def on_cancelled(ctx: ak.CancelledContext) -> None:
        seen.append(ctx)

    async def on_cancelled_async(ctx: ak.CancelledContext) -> None:
        seen.append(ctx)

    trainer = make(cloud, fast, callbacks={
        "on_cancelled": on_cancelled if kind == "sync" else on_cancelled_async,
        "on_failed": failed_calls.append,
    })
    result = trainer.wait()
    assert result.job.status == "cancelled"
    assert result.artifacts == ckpt2 + ckpt4
    assert len(seen) == 1 and failed_calls == []
    assert seen[0].step == 5 and seen[0].artifacts == ckpt2 + ckpt4
    assert seen[0].job.status == "cancelled"


def test_cancelled_event_artifacts_win_when_the_backend_lists_them(cloud: FakeCloud, fast) -> None:
    listed = [{"kind": "checkpoint", "step": 2, "path": "checkpoints/step-2"},
              {"kind": "adapter", "path": "adapter"}]
    cloud.default_events = [started(), checkpoint(2, listed[:1]),
                            {"type": "training.cancelled", "step": 3, "artifacts": listed}]
    assert make(cloud, fast).wait().artifacts == listed


# ------------------------------------------------------------ unknown job ids


def test_attaching_to_a_job_that_does_not_exist_is_a_clear_error_at_once(cloud: FakeCloud, fast) -> None:
    trainer = ak.Trainer.attach("job_doesnotexist123", backend=cloud.backend(), reconnect=fast)
    with pytest.raises(ak.CloudApiError) as info:
        trainer.wait()
    assert info.value.status == 404
    assert "job_doesnotexist123" in str(info.value)
    assert f"cloud backend at {cloud.url}" in str(info.value)
    assert cloud.stream_opens() == []


def test_listeners_get_a_checkpoint_context_that_can_sample(cloud: FakeCloud, fast) -> None:
    cloud.default_events = [started(), checkpoint(2), completed()]
    contexts: list[ak.CheckpointContext] = []
    trainer = make(cloud, fast)
    trainer.subscribe(lambda item: contexts.append(item) if isinstance(item, ak.CheckpointContext)
                      else None)
    trainer.wait()
    assert [c.step for c in contexts] == [2]
    response = contexts[0].infer(messages=[{"role": "user", "content": "hi"}], stream=False)
    assert response.json()["choices"][0]["message"]["content"] == "Hello"
    body = cloud.requests_to("POST", "/v1/inference/chat")[0].body
    assert body["adapter"] == {"kind": "checkpoint", "jobId": trainer.job_id, "step": 2}


def test_listeners_see_the_job_already_updated_by_each_event(cloud: FakeCloud, fast) -> None:
    cloud.default_events = [started(), log(1, 0.5), completed()]
    trainer = make(cloud, fast)
    seen: list[tuple[str, str]] = []
    trainer.subscribe(lambda item: seen.append((item.type, trainer.job.status))
                      if hasattr(item, "type") and hasattr(item, "event_id") else None)
    trainer.wait()
    assert seen == [("training.started", "running"), ("training.log", "running"),
                    ("training.completed", "completed")]
