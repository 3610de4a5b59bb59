"""Every speed path trains the same model as the plain Trainer path (tiny model, fixed seed)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from arkor_nb.local.training.speed import SpeedPlan, apply_override, cpu_has_native_bf16, speed_plan
from tests.local.training_helpers import EVAL, TRAIN, logs, start_worker, started, terminal

# Stated tolerances, per logged step: float32 paths differ only by summation order;
# bf16 autocast rounds every matmul input to 8 bits of mantissa.
FLOAT32_REL = 1e-4
BF16_REL = 2e-2


def _losses_of(tmp_path: Path, speeds: list[str], *, seeds: list[int | None] | None = None,
               **config: Any) -> list[tuple[list[float], dict[str, Any], dict[str, Any]]]:
    """One worker per ``ARKOR_NB_SPEED`` value (and ``seed``), all started at once, each on
    1 thread: per-step losses + the held-out loss, the started metadata, the completed metrics."""
    cfg = {"model": "arkor-nb/tiny", "datasetSource": {"type": "file", "path": str(TRAIN)},
           "maxSteps": 6, "loggingSteps": 1, "batchSize": 4, "datasetSplit": 0.05, "evalSteps": 6,
           **config}
    seeds = seeds or [None] * len(speeds)
    runs = [start_worker({**cfg, **({"seed": seed} if seed is not None else {})},
                         tmp_path / f"job-{i}-{speed.replace('=', '').replace(',', '-')}",
                         env={"ARKOR_NB_SPEED": speed})
            for i, (speed, seed) in enumerate(zip(speeds, seeds, strict=True))]
    out = []
    for run in runs:
        events = run.finish()
        end = terminal(events)
        assert end["type"] == "training.completed", end
        evals = [e["evalLoss"] for e in events if e.get("evalLoss") is not None]
        out.append(([e["loss"] for e in logs(events)] + evals, started(events)["metadata"],
                    end["metrics"]))
    return out


def _close(a: list[float], b: list[float], rel: float) -> None:
    assert len(a) == len(b) == 7, (a, b)  # six steps and the held-out loss
    for x, y in zip(a, b, strict=True):
        assert math.isclose(x, y, rel_tol=rel), (a, b)


@pytest.mark.parametrize("responses_only", [True, False])
def test_float32_speed_paths_match_the_plain_trainer(tmp_path: Path, built_tiny: Path,
                                                      responses_only: bool) -> None:
    cfg = {"trainOnResponsesOnly": responses_only}
    (plain, meta, _), (labels_only, lo_meta, _), (packed, packed_meta, _), (rows, rows_meta, _), \
        (shared, shared_meta, _) = _losses_of(
            tmp_path, ["plain",
                       "labels_only_loss=1,padding_free=0,bf16_autocast=0",
                       "labels_only_loss=1,padding_free=1,bf16_autocast=0,row_attention=0",
                       "labels_only_loss=1,padding_free=1,bf16_autocast=0,row_attention=1,shared_prefix=0",
                       "labels_only_loss=1,padding_free=1,bf16_autocast=0,row_attention=1,shared_prefix=1"],
            **cfg)
    assert meta["speed"] == {"labels_only_loss": False, "padding_free": False,
                             "bf16_autocast": False, "row_attention": False, "shared_prefix": False,
                             "bf16_base": False, "float32_sum": False,
                             "threads": 1}
    assert meta["attention"] == "sdpa"
    assert lo_meta["speed"]["labels_only_loss"] and not lo_meta["speed"]["padding_free"]
    _close(plain, labels_only, FLOAT32_REL)
    # Padding-free: without the prompt mask (responses_only False) a row's first token
    # would be predicted from the row before it if the boundary were not cut.
    assert packed_meta["speed"]["padding_free"] and packed_meta["attention"] == "sdpa"
    _close(plain, packed, FLOAT32_REL)
    # Attention per packed row instead of one masked attention over the flattened batch.
    assert rows_meta["speed"]["row_attention"] and rows_meta["attention"] == "arkor_rows"
    _close(plain, rows, FLOAT32_REL)
    # The rows' common prefix (the chat template's system turn) goes in once.
    assert shared_meta["speed"]["shared_prefix"] and shared_meta["attention"] == "arkor_rows"
    _close(plain, shared, FLOAT32_REL)


def test_bf16_autocast_matches_the_plain_trainer_within_its_tolerance(
        tmp_path: Path, built_tiny: Path) -> None:
    (plain, _, _), (fast, meta, _) = _losses_of(
        tmp_path, ["plain", "labels_only_loss=1,padding_free=1,bf16_autocast=1"])
    assert meta["speed"]["bf16_autocast"] is True
    _close(plain, fast, BF16_REL)
    assert fast != plain  # it did run in bf16


def test_bf16_base_weights_train_exactly_as_autocast_and_generate(
        tmp_path: Path, built_tiny: Path) -> None:
    """Storing the frozen base in bf16 once gives autocast's matmul inputs: identical losses.
    Samples (float32 copies of the bf16 weights) and task evals (autocast) generate on that
    model at each checkpoint."""
    from arkor_nb import TaskEval

    held_out = [json.loads(line) for line in EVAL.read_text().splitlines()[:3]]
    cfg = {"model": "arkor-nb/tiny", "datasetSource": {"type": "file", "path": str(TRAIN)},
           "maxSteps": 6, "loggingSteps": 1, "batchSize": 4, "saveSteps": 3,
           "samplePrompts": ["my parcel is late"], "sampleMaxTokens": 6,
           "taskEval": TaskEval(data=held_out, scorers=["exact", "fields"], max_tokens=8).to_wire()}
    speeds = ("bf16_autocast=1,bf16_base=0", "bf16_autocast=1,bf16_base=1")
    workers = {speed: start_worker(cfg, tmp_path / speed.replace("=", "").replace(",", "-"),
                                   env={"ARKOR_NB_SPEED": speed}) for speed in speeds}
    runs = {}
    for speed, worker in workers.items():
        events = worker.finish()
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
                             row_attention=True, shared_prefix=True, bf16_base=bf16, float32_sum=bf16,
                             threads=1)
    flags = Path("/proc/cpuinfo").read_text()
    assert cpu_has_native_bf16() == (" amx_bf16" in flags or " avx512_bf16" in flags)
    assert speed_plan("cpu", env={"ARKOR_NB_SPEED": "plain", "ARKOR_NB_TORCH_THREADS": "2"}) == \
        SpeedPlan(threads=2)
    assert speed_plan("cpu", loads_in_4bit=True, env={}).labels_only_loss is False
    # Padding-free needs the labels-only loss (the standard one would cross row boundaries).
    assert apply_override(SpeedPlan(labels_only_loss=True, padding_free=True, row_attention=True,
                                    shared_prefix=True), "labels_only_loss=0") == SpeedPlan()
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
    assert padded.take(1) == packed.take(1) == 5
    assert b["position_ids"].tolist() == [[0, 1, 2, 0, 1]]
    assert b["shift_labels"].tolist() == [[6, 7, -100, 9, -100]]
    # The Trainer divides by the shifted labels it counts: the same number either way.
    assert int((a["labels"][:, 1:] != -100).sum()) == int((b["shift_labels"] != -100).sum()) == 3
    assert torch.equal(b["input_ids"], torch.tensor([[5, 6, 7, 8, 9]]))


def test_a_shared_prefix_goes_in_once_and_predicts_nothing() -> None:
    from arkor_nb.local.training.callback import TokenCounter
    from arkor_nb.local.training.speed import flatten_batch, packed_segments, shared_prefix_length

    feats = [{"input_ids": [1, 2, 3, 4, 5], "labels": [-100, -100, -100, 4, 5]},
             {"input_ids": [1, 2, 3, 9], "labels": [-100, -100, -100, 9]},
             {"input_ids": [1, 2, 7, 8], "labels": [-100, -100, -100, 8]}]
    counter = TokenCounter()
    b = counter.counting(lambda f: flatten_batch(f, 0, share_prefix=True))(feats)
    assert counter.take(1) == 13  # the rows' real tokens, not the 9 that went in
    assert b["input_ids"].tolist() == [[1, 2, 3, 4, 5, 3, 9, 7, 8]]
    assert b["position_ids"].tolist() == [[0, 1, 2, 3, 4, 2, 3, 2, 3]]
    # every label each row predicts, once; the prefix predicts nothing
    assert b["shift_labels"].tolist() == [[-100, -100, 4, 5, -100, 9, -100, 8, -100]]
    assert packed_segments(b["position_ids"]) == [(0, 5, 0), (5, 7, 2), (7, 9, 2)]
    # The prefix stops before the token that predicts a row's first label ...
    assert shared_prefix_length([{"input_ids": [1, 2, 3], "labels": [-100, 2, 3]},
                                 {"input_ids": [1, 2, 4], "labels": [-100, -100, 4]}]) == 0
    # ... leaves every row a token of its own, and needs two rows.
    assert shared_prefix_length([{"input_ids": [1, 2], "labels": [-100, -100]},
                                 {"input_ids": [1, 2, 3], "labels": [-100, -100, 3]}]) == 1
    assert shared_prefix_length(feats[:1]) == 0
    # Labels everywhere (not responses only): nothing shared, the plain flattened batch.
    whole = [{"input_ids": f["input_ids"], "labels": f["input_ids"]} for f in feats]
    assert flatten_batch(whole, 0, share_prefix=True)["position_ids"].tolist() == \
        flatten_batch(whole, 0)["position_ids"].tolist()


def test_the_seed_is_the_runs_own_and_42_by_default(tmp_path: Path, built_tiny: Path) -> None:
    """``seed`` draws the LoRA weights and the data order; the held-out split stays put."""
    (default, meta, _), (same, _, _), (other, other_meta, _) = _losses_of(
        tmp_path, ["plain"] * 3, seeds=[None, 42, 7])
    assert meta["trainingArguments"]["seed"] == 42
    assert other_meta["trainingArguments"]["seed"] == 7
    assert same == default
    assert other[:6] != default[:6]
    assert len(other) == len(default) == 7  # the same held-out rows give the last loss


def test_one_row_generates_on_float32_copies_of_the_bf16_base_and_a_batch_under_autocast() -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from arkor_nb.local.training.speed import (
        BF16_GENERATE_MIN_ROWS,
        inference_context,
        prepare_model,
    )

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)
    model = get_peft_model(LlamaForCausalLM(config), LoraConfig(r=4, target_modules="all-linear"))
    plan = SpeedPlan(labels_only_loss=True, padding_free=True, bf16_autocast=True, bf16_base=True)
    prepare_model(model, plan)
    bases = [m.base_layer for m in model.modules() if hasattr(m, "base_layer")]
    stored = [b.weight for b in bases]
    kept = [(b.weight.data, b.weight.data.data_ptr()) for b in bases]
    assert bases and all(w.dtype == torch.bfloat16 for w, _ in kept)
    ids = torch.tensor([[1, 5, 9, 13]])
    with torch.no_grad(), inference_context(plan, "cpu", model, rows=1):
        assert all(b.weight.dtype == torch.float32 for b in bases)
        assert all(torch.equal(b.weight.data, w.float()) for b, (w, _) in zip(bases, kept, strict=True))
        assert not torch.is_autocast_enabled("cpu")
        one_row = model(input_ids=ids).logits
    assert one_row.dtype == torch.float32
    # after: the very bf16 tensors the optimizer's forward uses, in the same Parameters
    assert [b.weight for b in bases] == stored
    assert [(b.weight.data.dtype, b.weight.data.data_ptr()) for b in bases] == \
        [(torch.bfloat16, ptr) for _, ptr in kept]
    # a generation that fails (a cancel, an OOM) still leaves the bf16 weights in place
    with pytest.raises(RuntimeError, match="mid-reply"), inference_context(plan, "cpu", model, rows=1):
        raise RuntimeError("mid-reply")
    assert [b.weight.data.data_ptr() for b in bases] == [ptr for _, ptr in kept]
    with inference_context(plan, "cpu", model, rows=BF16_GENERATE_MIN_ROWS):
        assert torch.is_autocast_enabled("cpu") and bases[0].weight.dtype == torch.bfloat16
    with inference_context(SpeedPlan(), "cpu", model, rows=1):  # nothing in bf16: as is
        assert bases[0].weight.dtype == torch.bfloat16 and not torch.is_autocast_enabled("cpu")


def test_float32_sum_keeps_a_small_lora_update_that_bf16_rounds_away() -> None:
    """Under bf16 autocast peft adds LoRA's update to the base's bf16 output and rounds the
    sum to bf16; ``float32_sum`` adds it in float32 and passes the float32 result on."""
    import torch
    from peft import LoraConfig, get_peft_model

    from arkor_nb.local.training.speed import prepare_model

    def lora_net(plan: SpeedPlan) -> Any:
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(64, 64))
        model = get_peft_model(net, LoraConfig(r=4, lora_alpha=4, target_modules=["0"]))
        for name, p in model.named_parameters():
            if "lora_B" in name:
                torch.nn.init.constant_(p, 1e-4)  # an update far below 1/256 of the output
        return prepare_model(model, plan)

    x = torch.randn(8, 64)
    with torch.no_grad():
        plain = lora_net(SpeedPlan())
        update = plain(x) - plain.get_base_model()[0].base_layer(x)  # float32 throughout
        with torch.autocast("cpu", dtype=torch.bfloat16):
            base = plain.get_base_model()[0].base_layer(x).float()  # the base's bf16 output
            rounded = lora_net(SpeedPlan(bf16_autocast=True))(x)
            summed = lora_net(SpeedPlan(bf16_autocast=True, float32_sum=True))(x)
    assert rounded.dtype == torch.bfloat16 and summed.dtype == torch.float32
    size = update.abs().mean()
    # rounded to bf16 the update is mostly lost; added in float32 it is kept
    assert (rounded.float() - base - update).abs().mean() > 0.5 * size
    assert (summed - base - update).abs().mean() < 0.05 * size
