"""InferenceEngine: base model, final adapter and checkpoints; streaming; thread safety."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from arkor_nb.core.errors import ConfigError
from arkor_nb.local.training.inference import InferenceEngine
from tests.local.training_helpers import (
    EVAL,
    TrainedJob,
    home,
)

TICKET = [json.loads(line)["messages"][:2] for line in EVAL.read_text().splitlines()[:3]]


@pytest.fixture(scope="module")
def engine() -> InferenceEngine:
    return InferenceEngine(home())


def jobs(job: TrainedJob):  # noqa: ANN201 - the job_dir callable the server passes
    def job_dir(job_id: str) -> Path:
        if job_id != "job_test":
            raise ConfigError("adapter.jobId", f"no local job {job_id!r}")
        return job.job_dir
    return job_dir


def test_checkpoint_streams_text(engine: InferenceEngine, trained_job: TrainedJob) -> None:
    pieces = list(engine.stream_chat(target={"kind": "checkpoint", "jobId": "job_test", "step": 30},
                                     messages=TICKET[0], max_tokens=24, job_dir=jobs(trained_job)))
    assert len(pieces) > 1 and all(isinstance(p, str) and p for p in pieces)
    assert "".join(pieces).strip()


def test_final_adapter_learned_the_format_the_base_did_not(engine: InferenceEngine, trained_job: TrainedJob) -> None:
    final = engine.chat(target={"kind": "final", "jobId": "job_test"}, messages=TICKET[1],
                        max_tokens=32, job_dir=jobs(trained_job))
    base = engine.chat(target={"kind": "base", "model": "arkor-nb/tiny"}, messages=TICKET[1],
                       max_tokens=32, job_dir=jobs(trained_job))
    # 60 steps teach the reply's shape (the values need the demo's ~200 steps)
    assert final.startswith("category:"), final
    assert not base.startswith("category:"), base


def test_greedy_is_deterministic_and_concurrent_streams_do_not_mix(
        engine: InferenceEngine, trained_job: TrainedJob) -> None:
    targets = [{"kind": "checkpoint", "jobId": "job_test", "step": 30},
               {"kind": "final", "jobId": "job_test"},
               {"kind": "base", "model": "arkor-nb/tiny"}]
    alone = [engine.chat(target=t, messages=TICKET[2], max_tokens=20, job_dir=jobs(trained_job))
             for t in targets]
    results: dict[int, str] = {}

    def run(i: int) -> None:
        results[i] = engine.chat(target=targets[i % 3], messages=TICKET[2], max_tokens=20,
                                 job_dir=jobs(trained_job))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert [results[i] for i in range(6)] == alone + alone
    assert alone[0] != alone[2]  # the adapter really was applied


def test_sampling_with_temperature_returns_text(engine: InferenceEngine, trained_job: TrainedJob) -> None:
    text = engine.chat(target={"kind": "final", "jobId": "job_test"}, messages=TICKET[0],
                       temperature=1.0, max_tokens=8, job_dir=jobs(trained_job))
    assert isinstance(text, str) and text


def test_closing_the_stream_early_is_fine(engine: InferenceEngine, trained_job: TrainedJob) -> None:
    stream = engine.stream_chat(target={"kind": "final", "jobId": "job_test"}, messages=TICKET[0],
                                max_tokens=64, job_dir=jobs(trained_job))
    first = next(iter(stream))
    stream.close()
    assert first


@pytest.mark.parametrize(
    ("target", "kwargs", "field", "text"),
    [
        ({"kind": "checkpoint", "jobId": "job_test", "step": 7}, {}, "adapter.step", "saved steps: [30, 60]"),
        ({"kind": "final", "jobId": "job_nope"}, {}, "adapter.jobId", "job_nope"),
        ({"kind": "checkpoint", "jobId": "job_test", "step": "30"}, {}, "adapter.step", "whole-number"),
        ({"kind": "lora"}, {}, "adapter.kind", "base"),
        ({"kind": "base", "model": "nobody/not-cached"}, {}, "baseModel", "offline"),
        ({"kind": "base", "model": "arkor-nb/synthetic"}, {}, "baseModel", "no weights"),
        ({"kind": "final", "jobId": "job_test"}, {"messages": []}, "messages", "non-empty"),
        ({"kind": "final", "jobId": "job_test"}, {"messages": [{"role": "bot", "content": "x"}]}, "messages", "role"),
        ({"kind": "final", "jobId": "job_test"}, {"temperature": -1}, "temperature", "between"),
        ({"kind": "final", "jobId": "job_test"}, {"max_tokens": 0}, "maxTokens", "between"),
    ],
)
def test_bad_requests_raise_config_error(engine: InferenceEngine, trained_job: TrainedJob,
                                         target: dict, kwargs: dict, field: str, text: str) -> None:
    args = {"target": target, "messages": TICKET[0], "job_dir": jobs(trained_job), **kwargs}
    with pytest.raises(ConfigError) as info:
        engine.stream_chat(**args)
    assert info.value.field == field
    assert text in str(info.value)


def test_unfinished_job_has_no_final_adapter(engine: InferenceEngine, tmp_path: Path) -> None:
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(ConfigError) as info:
        engine.stream_chat(target={"kind": "final", "jobId": "job_x"}, messages=TICKET[0],
                           job_dir=lambda _id: tmp_path)
    assert info.value.field == "adapter" and "checkpoint" in str(info.value)
