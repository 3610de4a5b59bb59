"""Task evals in the worker (issue 18.1/18.2): the model in memory answers every held-out
prompt after each checkpoint and at the end, batched and greedy; losses are unchanged;
the worker's health fields ride on training.log; bad specs are refused by the server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from arkor_nb.core.errors import ConfigError
from arkor_nb.core.taskeval import TaskEval
from arkor_nb.local.config import validate_config
from tests.local.training_helpers import EVAL, TRAIN, home, logs, run_worker, terminal

CONFIG = {"model": "arkor-nb/tiny", "datasetSource": {"type": "file", "path": str(TRAIN)},
          "maxSteps": 7, "saveSteps": 3, "loggingSteps": 1}
HELD_OUT = [json.loads(line) for line in EVAL.read_text().splitlines()[:10]]


def task_eval(**kw: object) -> dict[str, object]:
    return TaskEval(data=HELD_OUT, scorers=["exact", "fields", "contains", "json", "regex:team"],
                    max_tokens=12, **kw).to_wire()  # type: ignore[arg-type]


def test_worker_scores_each_checkpoint_and_the_end_and_losses_are_unchanged(
        tmp_path: Path, built_tiny: Path) -> None:
    judged = run_worker({**CONFIG, "taskEval": task_eval()}, tmp_path / "a")
    plain = run_worker(CONFIG, tmp_path / "b")
    assert terminal(judged)["type"] == terminal(plain)["type"] == "training.completed"
    types = [e["type"] for e in judged]
    # after each checkpoint (3, 6) its eval comes next; the end (7, no checkpoint) gets one too
    evals = [e for e in judged if e["type"] == "checkpoint.eval"]
    assert [e["step"] for e in evals] == [3, 6, 7]
    for i, t in enumerate(types):
        if t == "checkpoint.saved":
            assert judged[i + 1]["type"] == "checkpoint.eval" and judged[i + 1]["step"] == judged[i]["step"]
    assert types.index("checkpoint.eval", types.index("checkpoint.saved") + 2) < types.index("training.completed")
    for ev in evals:
        assert ev["n"] == 10
        names = set(ev["metrics"])
        assert {"exact", "contains", "json", "regex:team", "fields/all", "fields/category",
                "fields/priority", "fields/team"} <= names, names
        assert all(0.0 <= v <= 1.0 for v in ev["metrics"].values())
        assert 1 <= len(ev["examples"]) <= 8  # the first few, not all (no callable asked)
        ex = ev["examples"][0]
        assert ex["expected"] == HELD_OUT[0]["messages"][-1]["content"]
        assert ex["prompt"] == HELD_OUT[0]["messages"][1]["content"]
        assert isinstance(ex["reply"], str) and set(ex["scores"]) == {
            k for k in names if not k.startswith("fields/") or k[7:] in ("all", "category", "priority", "team")}
    # eval in eval mode, no grad, RNG restored: the same losses step for step
    assert [(e["step"], e["loss"]) for e in logs(judged)] == [(e["step"], e["loss"]) for e in logs(plain)]
    assert terminal(judged)["metrics"]["finalLoss"] == terminal(plain)["metrics"]["finalLoss"]
    # the run's health rides on each training.log
    health = [e for e in logs(judged) if "loss" in e]
    assert all(e["gradNorm"] > 0 and e["rssMb"] > 50 for e in health), health[0]
    assert all(e["tokensPerSecond"] > 0 for e in health[1:]), health
    assert "gpuMemMb" not in health[0]  # no CUDA here


def test_all_examples_carries_every_reply(tmp_path: Path, built_tiny: Path) -> None:
    spec = {**task_eval(limit=5), "allExamples": True, "scorers": []}
    events = run_worker({**CONFIG, "maxSteps": 3, "taskEval": spec}, tmp_path / "c")
    evals = [e for e in events if e["type"] == "checkpoint.eval"]
    assert [e["step"] for e in evals] == [3]
    assert evals[0]["n"] == 5 and len(evals[0]["examples"]) == 5 and evals[0]["metrics"] == {}


@pytest.mark.parametrize(("spec", "field"), [
    ({"rows": [], "scorers": ["exact"]}, "taskEval.rows"),
    ({"rows": [{"messages": [{"role": "user", "content": "hi"}]}], "scorers": ["exact"]}, "taskEval.rows"),
    ({"rows": HELD_OUT[:1], "scorers": ["bleu"]}, r"taskEval.scorers\[0\]"),
    ({"rows": HELD_OUT[:1], "scorers": ["exact", "regex:("]}, r"taskEval.scorers\[1\]"),
    ({"rows": HELD_OUT[:1], "scorers": ["exact"], "maxTokens": 0}, "taskEval.maxTokens"),
    ({"rows": HELD_OUT[:1], "scorers": ["exact"], "extra": 1}, "taskEval.extra"),
    ("exact", "taskEval"),
])
def test_server_refuses_bad_task_eval_naming_the_field(spec: object, field: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{field}"):
        validate_config({**CONFIG, "taskEval": spec}, home=home())
