"""Every speed path trains the same model as the plain Trainer path (tiny model, fixed seed)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from arkor_nb.local.training.speed import SpeedPlan, apply_override, cpu_has_native_bf16, speed_plan
from tests.local.training_helpers import TRAIN, logs, run_worker, started, terminal

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
                             "bf16_autocast": False, "threads": 1}
    labels_only, meta, _ = _losses(tmp_path, monkeypatch, "labels_only_loss=1,padding_free=0,"
                                   "bf16_autocast=0", **cfg)
    assert meta["speed"]["labels_only_loss"] and not meta["speed"]["padding_free"]
    _close(plain, labels_only, FLOAT32_REL)
    # Padding-free: without the prompt mask (responses_only False) a row's first token
    # would be predicted from the row before it if the boundary were not cut.
    packed, meta, packed_metrics = _losses(tmp_path, monkeypatch, "labels_only_loss=1,padding_free=1,"
                                           "bf16_autocast=0", **cfg)
    assert meta["speed"]["padding_free"]
    _close(plain, packed, FLOAT32_REL)


def test_bf16_autocast_matches_the_plain_trainer_within_its_tolerance(
        tmp_path: Path, built_tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plain, _, _ = _losses(tmp_path, monkeypatch, "plain")
    fast, meta, _ = _losses(tmp_path, monkeypatch, "labels_only_loss=1,padding_free=1,bf16_autocast=1")
    assert meta["speed"]["bf16_autocast"] is True
    _close(plain, fast, BF16_REL)
    assert fast != plain  # it did run in bf16


def test_the_plan_takes_every_path_this_cpu_supports_and_overrides_turn_them_off() -> None:
    plan = speed_plan("cpu", env={})
    assert plan == SpeedPlan(labels_only_loss=True, padding_free=True,
                             bf16_autocast=cpu_has_native_bf16(), threads=1)
    flags = Path("/proc/cpuinfo").read_text()
    assert cpu_has_native_bf16() == (" amx_bf16" in flags or " avx512_bf16" in flags)
    assert speed_plan("cpu", env={"ARKOR_NB_SPEED": "plain", "ARKOR_NB_TORCH_THREADS": "2"}) == \
        SpeedPlan(threads=2)
    assert speed_plan("cpu", loads_in_4bit=True, env={}).labels_only_loss is False
    # Padding-free needs the labels-only loss (the standard one would cross row boundaries).
    assert apply_override(SpeedPlan(labels_only_loss=True, padding_free=True), "labels_only_loss=0") == \
        SpeedPlan()
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
