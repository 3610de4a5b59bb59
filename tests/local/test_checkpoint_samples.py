"""Checkpoint samples made by the worker (issue 12.5): the model in memory answers
``samplePrompts`` right after each checkpoint, and training is unchanged by it."""

from __future__ import annotations

from pathlib import Path

import pytest

from arkor_nb.core.errors import ConfigError
from arkor_nb.local.config import validate_config
from tests.local.training_helpers import TRAIN, home, logs, run_worker, terminal

PROMPTS = ["My card was declined.", "Where is my parcel?"]
CONFIG = {"model": "arkor-nb/tiny", "datasetSource": {"type": "file", "path": str(TRAIN)},
          "maxSteps": 6, "saveSteps": 3, "loggingSteps": 1}


def test_worker_samples_each_checkpoint_right_after_saving_and_training_is_unchanged(
        tmp_path: Path, built_tiny: Path) -> None:
    sampled = run_worker({**CONFIG, "samplePrompts": PROMPTS, "sampleMaxTokens": 16}, tmp_path / "a")
    plain = run_worker(CONFIG, tmp_path / "b")
    assert terminal(sampled)["type"] == terminal(plain)["type"] == "training.completed"
    types = [e["type"] for e in sampled]
    saved = [i for i, t in enumerate(types) if t == "checkpoint.saved"]
    assert [sampled[i]["step"] for i in saved] == [3, 6]
    for i in saved:
        step = sampled[i]["step"]
        follow = sampled[i + 1:i + 1 + len(PROMPTS)]  # the very next events
        assert [(e["type"], e["step"], e["prompt"]) for e in follow] == [
            ("checkpoint.sample", step, p) for p in PROMPTS]
        assert all(isinstance(e["reply"], str) and e["reply"].strip() for e in follow), follow
    assert types.count("checkpoint.sample") == 2 * len(PROMPTS)
    assert "checkpoint.sample" not in {e["type"] for e in plain}
    # greedy generation in eval mode draws no random numbers and leaves the model
    # training: the same losses, step for step, and the same final metrics
    assert [(e["step"], e["loss"]) for e in logs(sampled)] == [(e["step"], e["loss"]) for e in logs(plain)]
    assert terminal(sampled)["metrics"]["finalLoss"] == terminal(plain)["metrics"]["finalLoss"]


@pytest.mark.parametrize("prompts", ["hello", [], ["ok", ""], [1], ["x"] * 17])
def test_bad_sample_prompts_name_the_field_and_the_fix(prompts: object) -> None:
    with pytest.raises(ConfigError, match=r"samplePrompts.*sample_prompts= in ak.live"):
        validate_config({**CONFIG, "samplePrompts": prompts}, home=home())


def test_sample_max_tokens_is_checked() -> None:
    with pytest.raises(ConfigError, match="sampleMaxTokens"):
        validate_config({**CONFIG, "samplePrompts": ["hi"], "sampleMaxTokens": 0}, home=home())
