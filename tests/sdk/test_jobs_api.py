"""ak.jobs / job / events / download / chat against the loopback fake cloud."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

import arkor_nb as ak
from arkor_nb.core.errors import JobNotFoundError
from arkor_nb.core.events import CheckpointSaved, TrainingCompleted, TrainingLog
from arkor_nb.sdk.jobs import cancel_job
from tests.sdk.fake_cloud import FakeCloud, checkpoint, completed, log, started

ADAPTER_FILES = {
    "adapter_config.json": json.dumps({"peft_type": "LORA", "r": 4}).encode(),
    "adapter_model.safetensors": b"\x00" * 300_000,
    "tokenizer.json": b"{}",
}


def finished_job(cloud: FakeCloud, job_id: str = "job_done", status: str = "completed") -> None:
    """A job with checkpoints at steps 2 and 4 and (if completed) a final adapter."""
    events = [started(), log(1, 2.0), log(2, 1.5), checkpoint(2, [{"kind": "checkpoint", "step": 2,
                                                                  "path": "checkpoints/step-2"}]),
              log(3, 1.1), log(4, 1.3), checkpoint(4, [{"kind": "checkpoint", "step": 4,
                                                        "path": "checkpoints/step-4"}])]
    if status == "completed":
        events.append(completed([{"kind": "adapter", "path": "adapter"}], finalLoss=1.3))
    cloud.add_job(job_id, events, status=status, name="support-bot")
    files: dict[str, bytes] = {}
    for root in ("adapter", "checkpoints/step-2", "checkpoints/step-4"):
        if root == "adapter" and status != "completed":
            continue
        for name, data in ADAPTER_FILES.items():
            files[f"{root}/{name}"] = data if name.endswith(".json") else data + root.encode()
        if root.startswith("checkpoints"):
            files[f"{root}/optimizer.pt"] = b"o" * 1000
            files[f"{root}/rng_state.pth"] = b"r"
    cloud.artifacts[job_id] = files


# ------------------------------------------------------------------ jobs


def test_jobs_newest_first_with_status_filter(cloud: FakeCloud) -> None:
    for i in range(5):
        cloud.add_job(f"job_{i}", [], status="completed" if i % 2 else "running", name=f"run-{i}")
    listed = ak.jobs(backend=cloud.backend())
    assert [j.id for j in listed] == ["job_4", "job_3", "job_2", "job_1", "job_0"]
    assert isinstance(listed, list) and all(isinstance(j, ak.TrainingJob) for j in listed)
    running = ak.jobs(status="running", backend=cloud.backend())
    assert [j.id for j in running] == ["job_4", "job_2", "job_0"]
    assert cloud.requests_to("GET", "/v1/jobs")[-1].query["status"] == "running"
    assert [j.id for j in ak.jobs(limit=2, backend=cloud.backend())] == ["job_4", "job_3"]


def test_jobs_pages_through_the_before_cursor(cloud: FakeCloud) -> None:
    for i in range(2345):
        cloud.jobs[f"job_{i:05d}"] = {"id": f"job_{i:05d}", "name": "n", "status": "completed",
                                      "config": {}}
    listed = ak.jobs(limit=None, backend=cloud.backend())
    assert len(listed) == 2345
    assert listed[0].id == "job_02344" and listed[-1].id == "job_00000"
    pages = cloud.requests_to("GET", "/v1/jobs")
    assert [p.query.get("before") for p in pages] == [None, "job_01345", "job_00345"]
    assert len(ak.jobs(limit=1500, backend=cloud.backend())) == 1500


def test_jobs_text_and_html_tables(cloud: FakeCloud) -> None:
    finished_job(cloud)
    cloud.jobs["job_done"].update(config={"maxSteps": 4}, step=4, bestLoss=1.1,
                                  createdAt="2026-01-02T03:04:05Z", startedAt="2026-01-02T03:04:05Z",
                                  completedAt="2026-01-02T03:06:10Z")
    listed = ak.jobs(backend=cloud.backend())
    text = str(listed)
    header, line = text.splitlines()
    assert header.split() == ["NAME", "ID", "STATUS", "STEP", "BEST", "LOSS", "CREATED", "DURATION"]
    assert line.split() == ["support-bot", "job_done", "completed", "4/4", "1.1", "2026-01-02",
                            "03:04:05", "2m05s"]
    assert repr(listed) == text and listed == list(listed) and listed[0].id == "job_done"
    page = listed._repr_html_()
    assert "job_done" in page and "completed</span>" in page and "<table" in page
    assert str(ak.jobs(status="failed", backend=cloud.backend())) == "no jobs"


def test_bad_listing_arguments_name_the_field(cloud: FakeCloud) -> None:
    with pytest.raises(ak.ConfigError) as err:
        ak.jobs(status="done", backend=cloud.backend())
    assert err.value.field == "status" and "completed" in str(err.value)
    with pytest.raises(ak.ConfigError) as err:
        ak.jobs(limit=0, backend=cloud.backend())
    assert err.value.field == "limit"
    assert cloud.requests_to("GET", "/v1/jobs") == []


# ----------------------------------------------------------------- one job


def test_job_redacts_secrets(cloud: FakeCloud) -> None:
    cloud.add_job("job_s", [], status="completed")
    cloud.jobs["job_s"]["config"] = {
        "model": "m",
        "datasetSource": {"type": "blob", "url": "https://u:pw@blob.example/d.jsonl?sig=abc",
                          "token": "hf_supersecret"},
        "maxSteps": 3,
    }
    job = ak.job("job_s", backend=cloud.backend())
    assert job.status == "completed" and job.config["maxSteps"] == 3
    text = json.dumps(job.config)
    assert "hf_supersecret" not in text and "pw@" not in text and "sig=abc" not in text
    assert job.config["datasetSource"]["token"] == "***"
    assert "blob.example/d.jsonl" in job.config["datasetSource"]["url"]
    assert "hf_supersecret" not in str(ak.jobs(backend=cloud.backend())[0].config)


def test_unknown_job_is_a_clear_error_naming_the_id(cloud: FakeCloud) -> None:
    for call in (lambda: ak.job("job_nope", backend=cloud.backend()),
                 lambda: ak.events("job_nope", backend=cloud.backend()),
                 lambda: ak.download("job_nope", backend=cloud.backend()),
                 lambda: ak.chat("job_nope", "hi", backend=cloud.backend()),
                 lambda: cancel_job("job_nope", backend=cloud.backend())):
        with pytest.raises(JobNotFoundError) as err:
            call()
        assert "job_nope" in str(err.value) and f"the cloud backend at {cloud.url}" in str(err.value)
        assert isinstance(err.value, ak.CloudApiError) and err.value.status == 404
        assert isinstance(err.value, ak.ConfigError) and err.value.field == "job_id"
    with pytest.raises(ak.ConfigError) as bad:
        ak.job("../etc", backend=cloud.backend())
    assert bad.value.field == "job_id"


def test_events_are_typed_and_paged(cloud: FakeCloud) -> None:
    cloud.add_job("job_long", [started(), *(log(i, 10.0 / i) for i in range(1, 2501)),
                               checkpoint(2500), completed()], status="completed")
    fired: list[object] = []
    events = ak.events("job_long", backend=cloud.backend())
    assert len(events) == 2503
    assert isinstance(events[1], TrainingLog) and events[1].step == 1 and events[1].event_id == "2"
    assert isinstance(events[-2], CheckpointSaved) and isinstance(events[-1], TrainingCompleted)
    assert [e.step for e in events if isinstance(e, TrainingLog)] == list(range(1, 2501))
    afters = [r.query.get("after") for r in cloud.requests_to("GET", "/v1/jobs/job_long")]
    assert afters == [None, "1000", "2000"]
    assert fired == []


def test_cancel_job(cloud: FakeCloud) -> None:
    cloud.add_job("job_r", [started()], status="running")
    assert cancel_job("job_r", backend=cloud.backend()).status == "cancelled"
    assert len(cloud.requests_to("POST", "/v1/jobs/job_r/cancel")) == 1


# ---------------------------------------------------------------- download


def test_download_final_adapter_and_checkpoint(cloud: FakeCloud, tmp_path: Path) -> None:
    finished_job(cloud)
    folder = ak.download("job_done", to=tmp_path / "final", backend=cloud.backend())
    assert folder == tmp_path / "final"
    assert sorted(p.name for p in folder.iterdir()) == sorted(ADAPTER_FILES)
    assert (folder / "adapter_config.json").read_bytes() == ADAPTER_FILES["adapter_config.json"]
    ckpt = ak.download("job_done", to=tmp_path / "s2", step=2, backend=cloud.backend())
    # a clean adapter folder: the optimizer and RNG state stay on the backend
    assert sorted(p.name for p in ckpt.iterdir()) == sorted(ADAPTER_FILES)
    assert (ckpt / "adapter_model.safetensors").read_bytes().endswith(b"checkpoints/step-2")
    assert not list(tmp_path.rglob("*.part"))


def test_download_errors_name_the_saved_steps(cloud: FakeCloud, tmp_path: Path) -> None:
    finished_job(cloud)
    with pytest.raises(ak.ConfigError) as err:
        ak.download("job_done", to=tmp_path / "x", step=3, backend=cloud.backend())
    assert err.value.field == "step" and "saved checkpoints: 2, 4" in str(err.value)
    finished_job(cloud, "job_cancelled", status="cancelled")
    with pytest.raises(ak.ConfigError) as err:
        ak.download("job_cancelled", to=tmp_path / "y", backend=cloud.backend())
    assert "cancelled" in str(err.value) and "2, 4" in str(err.value)
    assert ak.download("job_cancelled", to=tmp_path / "y", step=4, backend=cloud.backend()).is_dir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ak.ConfigError) as err:
        ak.download("job_done", to=tmp_path / "file", backend=cloud.backend())
    assert err.value.field == "to"


# -------------------------------------------------------------------- chat


def test_chat_text_stream_checkpoint_and_base(cloud: FakeCloud) -> None:
    finished_job(cloud)
    cloud.chat_pieces = ["Hel", "lo", " there"]
    assert ak.chat("job_done", "hi", backend=cloud.backend()) == "Hello there"
    body = cloud.requests_to("POST", "/v1/inference/chat")[-1].body
    assert body["adapter"] == {"kind": "final", "jobId": "job_done"}
    assert body["messages"] == [{"role": "user", "content": "hi"}] and body["stream"] is False
    chunks = ak.chat("job_done", [{"role": "user", "content": "hi"}], step=2, stream=True,
                     temperature=0, max_tokens=5, backend=cloud.backend())
    assert list(chunks) == ["Hel", "lo", " there"]
    body = cloud.requests_to("POST", "/v1/inference/chat")[-1].body
    assert body["adapter"] == {"kind": "checkpoint", "jobId": "job_done", "step": 2}
    assert body["temperature"] == 0 and body["maxTokens"] == 5 and body["stream"] is True
    assert ak.chat(model="base/model", messages="hi", backend=cloud.backend()) == "Hello there"
    body = cloud.requests_to("POST", "/v1/inference/chat")[-1].body
    assert body["baseModel"] == "base/model" and "adapter" not in body


def test_chat_bad_arguments(cloud: FakeCloud) -> None:
    with pytest.raises(ak.ConfigError) as err:
        ak.chat("job_x", "hi", model="m", backend=cloud.backend())
    assert err.value.field == "job_id"
    with pytest.raises(ak.ConfigError) as err:
        ak.chat("job_x", [], backend=cloud.backend())
    assert err.value.field == "messages"
    with pytest.raises(ak.ConfigError) as err:
        ak.chat("job_x", "hi", temprature=0.5, backend=cloud.backend())
    assert err.value.field == "temprature"
    assert cloud.requests_to("POST", "/v1/inference/chat") == []


def test_async_twins(cloud: FakeCloud, tmp_path: Path) -> None:
    finished_job(cloud)

    async def main() -> None:
        backend = cloud.backend()
        assert [j.id for j in await ak.jobs_async(backend=backend)] == ["job_done"]
        assert (await ak.job_async("job_done", backend=backend)).name == "support-bot"
        assert len(await ak.events_async("job_done", backend=backend)) == 8
        folder = await ak.download_async("job_done", to=tmp_path / "a", backend=backend)
        assert (folder / "adapter_config.json").is_file()
        assert await ak.chat_async("job_done", "hi", backend=backend) == "Hello"
        pieces = [p async for p in await ak.chat_async("job_done", "hi", stream=True, backend=backend)]
        assert pieces == ["Hel", "lo"]
        direct = [p async for p in ak.chat_async("job_done", "hi", step=2, stream=True, backend=backend)]
        assert direct == ["Hel", "lo"]
        with pytest.raises(ak.ConfigError):
            ak.chat_async("job_done", "hi", step=-1, backend=backend)
        with pytest.raises(JobNotFoundError):
            await ak.job_async("job_missing", backend=backend)

    asyncio.run(main())


def test_playground_and_jobs_table_on_the_cloud(cloud: FakeCloud) -> None:
    from arkor_nb.notebook.jobs_table import JobsWidget

    finished_job(cloud)
    cloud.jobs["job_done"]["config"] = {"model": "unsloth/gemma-4-E4B-it"}
    pg = ak.playground("job_done", step=4, backend=cloud.backend())
    assert pg.ask("hi") == ("Hello", "Hello")
    base, tuned = (r.body for r in cloud.requests_to("POST", "/v1/inference/chat")[-2:])
    assert base["baseModel"] == "unsloth/gemma-4-E4B-it" and "adapter" not in base
    assert tuned["adapter"] == {"kind": "checkpoint", "jobId": "job_done", "step": 4}

    cloud.add_job("job_run", [started()], status="running")
    table = JobsWidget(ak.jobs(backend=cloud.backend()), cloud.backend())
    assert list(table.cancel_buttons) == ["job_run"]
    table.cancel_buttons["job_run"].click()
    for thread in table.threads:
        thread.join(30)
    assert cloud.jobs["job_run"]["status"] == "cancelled"
    assert table.cancel_buttons["job_run"].description == "Cancelled"
