"""Judging runs end to end (issue 18.1-18.2): SDK -> real local server -> real worker.

Task metrics at each checkpoint (built-in scorers in the worker, a Python
callable in the client), on_eval, ctx.report, the record and its replay,
result.metrics / result.best, download(step=); and the client-side path
(a job started without taskEval is scored through ctx.infer).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import arkor_nb as ak
from arkor_nb.core.contexts import MetricsReported
from arkor_nb.core.events import CheckpointEval, CheckpointSaved, TrainingCompleted
from arkor_nb.notebook.record import Recorder
from tests.local.training_helpers import EVAL, TRAIN

HELD_OUT = [json.loads(line) for line in EVAL.read_text().splitlines()[:6]]


def first_word(expected: str, reply: str) -> float:
    """A user scorer: the reply starts with the expected answer's first word."""
    return float(reply.split()[:1] == expected.split()[:1])


def make(backend: ak.LocalBackend, name: str, **kw: Any) -> ak.Trainer:
    return ak.create_trainer(name=name, model="arkor-nb/tiny", dataset={"type": "file", "path": str(TRAIN)},
                             max_steps=6, save_steps=3, logging_steps=2, backend=backend, **kw)


def test_task_metrics_reports_record_replay_best_and_download(backend: ak.LocalBackend,
                                                               tmp_path: Path) -> None:
    items: list[Any] = []
    evals: list[ak.EvalContext] = []

    def on_checkpoint(ctx: ak.CheckpointContext) -> None:
        ctx.report(ckpt_marker=ctx.step / 100)

    def on_eval(ctx: ak.EvalContext) -> None:
        evals.append(ctx)
        ctx.report(my_score=1.0 - ctx.step / 10)

    trainer = make(backend, "judged", callbacks={"on_checkpoint": on_checkpoint, "on_eval": on_eval},
                   task_eval=ak.TaskEval(data=HELD_OUT, scorers=["exact", "fields", first_word],
                                         max_tokens=10))
    assert trainer.config["taskEval"]["allExamples"] is True  # the callable needs every reply
    assert trainer.config["taskEval"]["scorers"] == ["exact", "fields"]
    recorder = Recorder({"name": "judged", "backend": "local", "config": {}})
    trainer.subscribe(items.append)
    trainer.subscribe(recorder.add)
    result = trainer.wait()
    assert result.job.status == "completed"

    kinds = [type(i).__name__ for i in items if not isinstance(i, ak.StreamNotice)]
    # each checkpoint: saved, its context, its eval; the final weights (step 6) were
    # already scored at the step-6 checkpoint, so no extra eval at the end
    got = [(type(i).__name__, getattr(i, "step", None)) for i in items
           if isinstance(i, (CheckpointSaved, CheckpointEval, TrainingCompleted))]
    assert got == [("CheckpointSaved", 3), ("CheckpointEval", 3), ("CheckpointSaved", 6),
                   ("CheckpointEval", 6), ("TrainingCompleted", None)], kinds
    ev = [i for i in items if isinstance(i, CheckpointEval)]
    for e in ev:
        assert e.n == 6 and len(e.examples) == 6
        assert {"exact", "fields/all", "first_word"} <= set(e.metrics)
        assert all("first_word" in x["scores"] for x in e.examples)
        want = sum(first_word(x["expected"], x["reply"]) for x in e.examples) / 6
        assert e.metrics["first_word"] == pytest.approx(want)
    assert [c.step for c in evals] == [3, 6] and evals[0].metrics == ev[0].metrics
    assert evals[0].examples[0]["expected"] == HELD_OUT[0]["messages"][-1]["content"]

    reported = [i for i in items if isinstance(i, MetricsReported)]
    assert [(r.step, r.metrics) for r in reported] == [
        (3, {"ckpt_marker": 0.03}), (3, {"my_score": 0.7}), (6, {"ckpt_marker": 0.06}), (6, {"my_score": 0.4})]

    metrics = result.metrics
    assert metrics["my_score"] == [(3, 0.7), (6, 0.4)]
    assert metrics["exact"] == [(3, ev[0].metrics["exact"]), (6, ev[1].metrics["exact"])]
    assert result.best("my_score") == (3, 0.7)
    assert result.best("my_score", mode="min") == (6, 0.4)
    with pytest.raises(ak.ConfigError, match="no values of 'nope'.*my_score"):
        result.best("nope")

    # the record keeps both kinds of metrics; replay gives the same series and best
    path = recorder.save(tmp_path / "run.jsonl")
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert sum(x["type"] == "metrics.reported" for x in lines) == 4
    assert sum(x["type"] == "checkpoint.eval" for x in lines) == 2
    replayed = ak.replay(path)
    assert replayed.metrics == metrics
    assert replayed.best("fields/all") == result.best("fields/all")

    # the best checkpoint, fetched by its step
    step, _ = result.best("my_score")
    folder = ak.download(trainer.job_id, tmp_path / "best", step=step, backend=backend)
    assert (folder / "adapter_config.json").is_file()
    assert any(folder.glob("adapter_model.*"))


def test_a_job_started_without_task_eval_is_scored_by_the_client(backend: ak.LocalBackend) -> None:
    plain = make(backend, "plain")
    plain.start()
    assert "taskEval" not in plain.config
    seen: list[ak.EvalContext] = []
    attached = ak.Trainer.attach(plain.job_id, backend=backend, callbacks={"on_eval": seen.append},
                                 task_eval=ak.TaskEval(data=HELD_OUT[:3], scorers=["exact", "contains"],
                                                       max_tokens=8))
    result = attached.wait()
    assert result.job.status == "completed"
    assert [c.step for c in seen] == [3, 6]
    for ctx in seen:
        assert ctx.n == 3 and set(ctx.metrics) == {"exact", "contains"}
        assert [x["expected"] for x in ctx.examples] == [r["messages"][-1]["content"] for r in HELD_OUT[:3]]
        assert all(isinstance(x["reply"], str) for x in ctx.examples)
    assert [s for s, _ in result.metrics["exact"]] == [3, 6]


@pytest.mark.parametrize(("kw", "field"), [
    ({"data": []}, "task_eval.data"),
    ({"data": "no/such/file.jsonl"}, "task_eval.data"),
    ({"data": [{"messages": [{"role": "user", "content": "hi"}]}]}, "task_eval.data"),
    ({"data": [{"text": "just text"}]}, "task_eval.data"),
    ({"data": HELD_OUT, "scorers": ["bleu"]}, r"task_eval.scorers\[0\]"),
    ({"data": HELD_OUT, "scorers": ["exact", "regex:[a-"]}, r"task_eval.scorers\[1\]"),
    ({"data": HELD_OUT, "scorers": []}, "task_eval.scorers"),
    ({"data": HELD_OUT, "max_tokens": 0}, "task_eval.max_tokens"),
    ({"data": HELD_OUT, "limit": -1}, "task_eval.limit"),
])
def test_bad_task_eval_is_refused_in_the_client_naming_the_field(kw: dict[str, Any], field: str) -> None:
    with pytest.raises(ak.ConfigError, match=rf"^{field}"):
        ak.TaskEval(**kw)


def test_create_trainer_refuses_a_non_task_eval_and_cloud_never_gets_task_eval() -> None:
    with pytest.raises(ak.ConfigError, match="^task_eval"):
        ak.create_trainer(name="x", model="arkor-nb/tiny", task_eval={"data": HELD_OUT})
    cloud = ak.create_trainer(name="x", model=ak.SUPPORTED_MODELS[0], backend="cloud",
                              dataset={"type": "huggingface", "name": "a/b"},
                              task_eval=ak.TaskEval(data=HELD_OUT, scorers=["exact"]))
    assert "taskEval" not in cloud.config and cloud.task_eval is not None


def test_ctx_report_refuses_non_numbers() -> None:
    ctx = ak.LogContext(1, None, None, None, None, None, ak.TrainingJob(id="j"))
    with pytest.raises(ak.ConfigError, match="^report.acc"):
        ctx.report(acc="high")
    with pytest.raises(ak.ConfigError, match="not attached"):
        ctx.report(acc=0.5)
