"""start() idempotence, the sync/async bridge, cancel(), and trainers side by side."""

from __future__ import annotations

import asyncio
import threading

import pytest

import arkor_nb as ak
from tests.sdk.fake_cloud import (
    SUPPORTED_MODEL,
    Event,
    FakeCloud,
    Gate,
    checkpoint,
    completed,
    log,
    started,
)


def make(cloud: FakeCloud, policy: ak.ReconnectPolicy, name: str = "run", **kwargs: object) -> ak.Trainer:
    return ak.create_trainer(
        name=name, model=SUPPORTED_MODEL, backend=cloud.backend(), reconnect=policy, **kwargs
    )


def test_start_is_idempotent_and_sends_the_built_config(cloud: FakeCloud, fast) -> None:
    trainer = make(cloud, fast, max_steps=7, lora={"r": 8, "alpha": 16})
    assert trainer.job_id is None
    first = trainer.start()
    assert trainer.start() == first == trainer.job_id
    posts = cloud.requests_to("POST", "/v1/jobs")
    assert len(posts) == 1
    assert posts[0].body == {
        "name": "run",
        "config": {"model": SUPPORTED_MODEL, "loraR": 8, "loraAlpha": 16, "maxSteps": 7},
    }
    assert trainer.config == posts[0].body["config"]


def test_concurrent_starts_from_threads_and_tasks_create_one_job(cloud: FakeCloud, fast) -> None:
    cloud.create_job_gate = threading.Event()
    trainer = make(cloud, fast)
    ids: list[str] = []
    threads = [threading.Thread(target=lambda: ids.append(trainer.start())) for _ in range(6)]
    for thread in threads:
        thread.start()

    async def from_tasks() -> list[str]:
        return list(await asyncio.gather(*(trainer.start_async() for _ in range(4))))

    task_ids: list[str] = []
    runner = threading.Thread(target=lambda: task_ids.extend(asyncio.run(from_tasks())))
    runner.start()
    cloud.wait_for(lambda: len(cloud.requests_to("POST", "/v1/jobs")) == 1)
    cloud.create_job_gate.set()
    for thread in [*threads, runner]:
        thread.join(10)
    assert len(set(ids + task_ids)) == 1 and len(ids) == 6 and len(task_ids) == 4
    assert len(cloud.requests_to("POST", "/v1/jobs")) == 1


def test_a_failed_start_can_be_retried(cloud: FakeCloud, fast) -> None:
    cloud.create_job_status = 500
    trainer = make(cloud, fast)
    with pytest.raises(ak.CloudApiError) as info:
        trainer.start()
    assert info.value.status == 500 and info.value.message == "scripted failure"
    cloud.create_job_status = None
    assert trainer.start().startswith("job_")


def test_server_side_validation_errors_are_config_errors_too(cloud: FakeCloud, fast) -> None:
    cloud.create_job_status = 400
    cloud.create_job_body = {"error": "maxSteps: must be at most 10000", "field": "maxSteps"}
    with pytest.raises(ak.ConfigError) as info:
        make(cloud, fast, max_steps=5).start()
    assert info.value.field == "maxSteps"
    assert str(info.value) == "maxSteps: must be at most 10000"
    assert isinstance(info.value, ak.CloudApiError) and info.value.status == 400
    cloud.create_job_body = {"error": "quota exceeded"}  # no field: a plain CloudApiError
    with pytest.raises(ak.CloudApiError) as plain:
        make(cloud, fast).start()
    assert not isinstance(plain.value, ak.ConfigError)


def test_cancel_posts_to_the_backend_and_is_a_no_op_before_start(cloud: FakeCloud, fast) -> None:
    trainer = make(cloud, fast)
    assert trainer.cancel() is None
    assert cloud.requests_to("POST", "/v1/jobs") == []
    job_id = trainer.start()
    job = trainer.cancel()
    assert isinstance(job, ak.TrainingJob) and job.id == job_id and job.status == "cancelled"
    assert len(cloud.requests_to("POST", f"/v1/jobs/{job_id}/cancel")) == 1


def test_sync_callback_may_call_the_sync_api(cloud: FakeCloud, fast) -> None:
    """Sync callbacks run on a worker thread, so trainer.cancel() inside one cannot deadlock."""
    cloud.default_events = [started(), log(1, 1.0), completed()]
    cancelled: list[ak.TrainingJob | None] = []
    holder: list[ak.Trainer] = []
    trainer = make(cloud, fast, callbacks={"on_log": lambda ctx: cancelled.append(holder[0].cancel())})
    holder.append(trainer)
    assert trainer.wait().job.status == "completed"
    assert cancelled and cancelled[0] is not None


def test_async_callback_calling_the_sync_api_gets_a_clear_error(cloud: FakeCloud, fast) -> None:
    holder: list[ak.Trainer] = []

    async def on_log(ctx: ak.LogContext) -> None:
        holder[0].cancel()

    trainer = make(cloud, fast, callbacks={"on_log": on_log})
    holder.append(trainer)
    with pytest.raises(RuntimeError, match="cancel_async"):
        trainer.wait()


def test_sync_wait_works_inside_a_running_event_loop(cloud: FakeCloud, fast) -> None:
    """As in a Jupyter cell: the kernel's loop is running when wait() is called."""
    trainer = make(cloud, fast)

    async def cell() -> ak.TrainingResult:
        assert asyncio.get_running_loop().is_running()
        return trainer.wait()

    assert asyncio.run(cell()).job.status == "completed"


def test_two_trainers_waited_concurrently_with_gather(cloud: FakeCloud, fast) -> None:
    cloud.default_events = [started(), *[log(i, 1.0) for i in range(1, 30)], checkpoint(29), completed()]
    steps: dict[str, list[int]] = {"a": [], "b": []}
    trainers = [
        make(cloud, fast, name=key, callbacks={"on_log": lambda ctx, key=key: steps[key].append(ctx.step)})
        for key in ("a", "b")
    ]

    async def both() -> list[ak.TrainingResult]:
        return list(await asyncio.gather(*(t.wait_async() for t in trainers)))

    results = asyncio.run(both())
    assert [r.job.status for r in results] == ["completed", "completed"]
    assert results[0].job.id != results[1].job.id
    assert steps["a"] == steps["b"] == list(range(1, 30))


def test_two_trainers_waited_from_threads(cloud: FakeCloud, fast) -> None:
    cloud.default_events = [started(), *[log(i, 1.0) for i in range(1, 30)], completed()]
    steps: dict[str, list[int]] = {"a": [], "b": []}
    results: dict[str, ak.TrainingResult] = {}
    trainers = {
        key: make(cloud, fast, name=key, callbacks={"on_log": lambda ctx, key=key: steps[key].append(ctx.step)})
        for key in ("a", "b")
    }
    threads = [
        threading.Thread(target=lambda key=key: results.__setitem__(key, trainers[key].wait()))
        for key in trainers
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert {k: r.job.status for k, r in results.items()} == {"a": "completed", "b": "completed"}
    assert steps["a"] == steps["b"] == list(range(1, 30))
    assert results["a"].job.name == "a" and results["b"].job.name == "b"


def test_keyboard_interrupt_style_cancellation_of_wait_async(cloud: FakeCloud, fast) -> None:
    """Cancelling the awaiting task (what Ctrl-C does to the sync bridge) closes the stream."""
    trainer = make(cloud, fast)
    job_id = trainer.start()
    gate = threading.Event()
    cloud.script(Event("1", started()), Gate(gate), job_id=job_id)

    async def run() -> None:
        task = asyncio.ensure_future(trainer.wait_async())
        await cloud.await_for(lambda: trainer.job is not None and trainer.job.status == "running")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    gate.set()


def test_concurrent_waits_on_one_trainer_share_one_stream(cloud: FakeCloud, fast) -> None:
    """The panel's wait and the user's wait must not fire callbacks twice."""
    trainer = make(cloud, fast, callbacks={"on_log": lambda ctx: steps.append(ctx.step)})
    steps: list[int] = []
    job_id = trainer.start()
    gate = threading.Event()
    cloud.script(Event("1", started()), Event("2", log(1, 1.0)), Gate(gate), Event("3", log(2, 1.0)),
                 Event("4", completed()), job_id=job_id)
    panel = ak.AbortController()
    results: dict[str, object] = {}

    def run(key: str, signal: ak.AbortSignal | None) -> None:
        try:
            results[key] = trainer.wait(abort_signal=signal)
        except ak.AbortedError as exc:
            results[key] = exc

    threads = [
        threading.Thread(target=run, args=("user", None)),
        threading.Thread(target=run, args=("panel", panel.signal)),
        threading.Thread(target=run, args=("other", None)),
    ]
    for thread in threads:
        thread.start()
    cloud.wait_for(lambda: steps == [1])
    # all three calls have joined the one stream (internal count, read only)
    cloud.wait_for(lambda: trainer._stream.waiters == 3)
    panel.abort()  # only the panel's wait ends; the shared stream keeps going
    threads[1].join(5)
    assert isinstance(results["panel"], ak.AbortedError)
    gate.set()
    for thread in threads:
        thread.join(10)
    assert isinstance(results["user"], ak.TrainingResult)
    assert results["user"] is results["other"]
    assert steps == [1, 2]
    assert len(cloud.stream_opens(job_id)) == 1
