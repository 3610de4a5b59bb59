"""Every speed path trains the same model as the plain Trainer path (tiny model, fixed seed)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from arkor_nb.local.training.speed import SpeedPlan, apply_override, cpu_has_native_bf16, speed_plan
from tests.local.training_helpers import EVAL, TRAIN, logs, run_worker, started, terminal

# Stated tolerances, per logged step: float32 paths differ only by summation order;
# bf16 autocast rounds every matmul input to 8 bits of mantissa.
FLOAT32_REL = 1e-4
BF16_REL = 2e-2


def _losses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, speed: str,
            **config: Any) -> tuple[list[float], dict[str, Any], dict[str, Any]]:
    monkeypatch.setenv("ARKOR_NB_SPEED", speed)
    cfg = {"model": "arkor-nb/tiny", "datasetSource": {"type": "file", "path": str(TRAIN)},
           "maxSteps": 6, "loggingSteps": 1, "batchSize": 4, "datasetSplit": 0.05, "evalSteps": 6,
           **config}
    events = run_worker(cfg, tmp_path / f"job-{speed.replace('=', '').replace(',', '-')}")
    end = terminal(events)
    assert end["type"] == "training.completed", end
    evals = [e["evalLoss"] for e in events if e.get("evalLoss") is not None]
    return [e["loss"] for e in logs(events)] + evals, started(events)["metadata"], end["metrics"]


def _close(a: list[float], b: list[float], rel: float) -> None:
    assert len(a) == len(b) == 7, (a, b)  # six steps and the held-out loss
    for x, y in zip(a, b, strict=True):
        assert math.isclose(x, y, rel_tol=rel), (a, b)


@pytest.mark.parametrize("responses_only", [True, False])
def test_float32_speed_paths_match_the_plain_trainer(tmp_path: Path, built_tiny: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      responses_only: bool) -> None:
    cfg = {"trainOnResponsesOnly": responses_only}
    plain, meta, plain_metrics = _losses(tmp_path, monkeypatch, "plain", **cfg)
    assert meta["speed"] == {"labels_only_loss": False, "padding_free": False,
                             "bf16_autocast": False, "row_attention": False, "bf16_base": False,
                             "threads": 1}
    assert meta["attention"] == "sdpa"
    labels_only, meta, _ = _losses(tmp_path, monkeypatch, "labels_only_loss=1,padding_free=0,"
                                   "bf16_autocast=0", **cfg)
    assert meta["speed"]["labels_only_loss"] and not meta["speed"]["padding_free"]
    _close(plain, labels_only, FLOAT32_REL)
    # Padding-free: without the prompt mask (responses_only False) a row's first token
    # would be predicted from the row before it if the boundary were not cut.
    packed, meta, packed_metrics = _losses(tmp_path, monkeypatch, "labels_only_loss=1,padding_free=1,"
                                           "bf16_autocast=0,row_attention=0", **cfg)
    assert meta["speed"]["padding_free"] and meta["attention"] == "sdpa"
    _close(plain, packed, FLOAT32_REL)
    # Attention per packed row instead of one masked attention over the flattened batch.
    rows, meta, _ = _losses(tmp_path, monkeypatch, "labels_only_loss=1,padding_free=1,"
                            "bf16_autocast=0,row_attention=1", **cfg)
    assert meta["speed"]["row_attention"] and meta["attention"] == "arkor_rows"
    _close(plain, rows, FLOAT32_REL)


def test_bf16_autocast_matches_the_plain_trainer_within_its_tolerance(
        tmp_path: Path, built_tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plain, _, _ = _losses(tmp_path, monkeypatch, "plain")
    fast, meta, _ = _losses(tmp_path, monkeypatch, "labels_only_loss=1,padding_free=1,bf16_autocast=1")
    assert meta["speed"]["bf16_autocast"] is True
    _close(plain, fast, BF16_REL)
    assert fast != plain  # it did run in bf16


def test_bf16_base_weights_train_exactly_as_autocast_and_generate(
        tmp_path: Path, built_tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Storing the frozen base in bf16 once gives autocast's matmul inputs: identical losses.
    Samples and task evals generate on that model (under autocast) at each checkpoint."""
    from arkor_nb import TaskEval

    held_out = [json.loads(line) for line in EVAL.read_text().splitlines()[:3]]
    cfg = {"model": "arkor-nb/tiny", "datasetSource": {"type": "file", "path": str(TRAIN)},
           "maxSteps": 6, "loggingSteps": 1, "batchSize": 4, "saveSteps": 3,
           "samplePrompts": ["my parcel is late"], "sampleMaxTokens": 6,
           "taskEval": TaskEval(data=held_out, scorers=["exact", "fields"], max_tokens=8).to_wire()}
    runs = {}
    for speed in ("bf16_autocast=1,bf16_base=0", "bf16_autocast=1,bf16_base=1"):
        monkeypatch.setenv("ARKOR_NB_SPEED", speed)
        events = run_worker(cfg, tmp_path / speed.replace("=", "").replace(",", "-"))
        assert terminal(events)["type"] == "training.completed", terminal(events)
        assert started(events)["metadata"]["speed"]["bf16_base"] is speed.endswith("1")
        evals = [e for e in events if e["type"] == "checkpoint.eval"]
        assert [e["step"] for e in evals] == [3, 6] and all(e["n"] == 3 for e in evals)
        assert [e["step"] for e in events if e["type"] == "checkpoint.sample"] == [3, 6]
        runs[speed] = [e["loss"] for e in logs(events)]
    assert runs["bf16_autocast=1,bf16_base=1"] == runs["bf16_autocast=1,bf16_base=0"]


def test_the_plan_takes_every_path_this_cpu_supports_and_overrides_turn_them_off() -> None:
    plan = speed_plan("cpu", env={})
    bf16 = cpu_has_native_bf16()
    assert plan == SpeedPlan(labels_only_loss=True, padding_free=True, bf16_autocast=bf16,
                             row_attention=True, bf16_base=bf16, threads=1)
    flags = Path("/proc/cpuinfo").read_text()
    assert cpu_has_native_bf16() == (" amx_bf16" in flags or " avx512_bf16" in flags)
    assert speed_plan("cpu", env={"ARKOR_NB_SPEED": "plain", "ARKOR_NB_TORCH_THREADS": "2"}) == \
        SpeedPlan(threads=2)
    assert speed_plan("cpu", loads_in_4bit=True, env={}).labels_only_loss is False
    # Padding-free needs the labels-only loss (the standard one would cross row boundaries).
    assert apply_override(SpeedPlan(labels_only_loss=True, padding_free=True, row_attention=True),
                          "labels_only_loss=0") == SpeedPlan()
    # bf16 base weights need autocast's bf16 inputs
    assert apply_override(SpeedPlan(bf16_autocast=True, bf16_base=True), "bf16_autocast=0") == SpeedPlan()
    with pytest.raises(ValueError, match="ARKOR_NB_SPEED: 'compile=1' is not one of"):
        apply_override(SpeedPlan(), "compile=1")


def test_flattened_batch_counts_the_same_tokens_and_labels() -> None:
    import torch

    from arkor_nb.local.data.tokenize import collate
    from arkor_nb.local.training.callback import TokenCounter
    from arkor_nb.local.training.speed import flatten_batch

    feats = [{"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1], "labels": [-100, 6, 7]},
             {"input_ids": [8, 9], "attention_mask": [1, 1], "labels": [8, 9]}]
    padded, packed = TokenCounter(), TokenCounter()
    a = padded.counting(lambda f: collate(f, 0))(feats)
    b = packed.counting(lambda f: flatten_batch(f, 0))(feats)
    assert padded.total == packed.total == 5
    assert b["position_ids"].tolist() == [[0, 1, 2, 0, 1]]
    assert b["shift_labels"].tolist() == [[6, 7, -100, 9, -100]]
    # The Trainer divides by the shifted labels it counts: the same number either way.
    assert int((a["labels"][:, 1:] != -100).sum()) == int((b["shift_labels"] != -100).sum()) == 3
    assert torch.equal(b["input_ids"], torch.tensor([[5, 6, 7, 8, 9]]))


def test_the_seed_is_the_runs_own_and_42_by_default(tmp_path: Path, built_tiny: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """``seed`` draws the LoRA weights and the data order; the held-out split stays put."""
    default, meta, _ = _losses(tmp_path / "default", monkeypatch, "plain")
    assert meta["trainingArguments"]["seed"] == 42
    same, _, _ = _losses(tmp_path / "42", monkeypatch, "plain", seed=42)
    other, meta, _ = _losses(tmp_path / "7", monkeypatch, "plain", seed=7)
    assert meta["trainingArguments"]["seed"] == 7
    assert same == default
    assert other[:6] != default[:6]
    assert len(other) == len(default) == 7  # the same held-out rows give the last loss
