"""The real training worker through its stdio protocol: train, checkpoint, cancel, config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.local.training_helpers import (
    EVAL,
    TRAIN,
    TrainedJob,
    logs,
    run_worker,
    start_worker,
    started,
    terminal,
)


def test_lora_run_completes_with_falling_loss(trained_job: TrainedJob) -> None:
    events = trained_job.events
    assert started(events)["type"] == "training.started"
    end = terminal(events)
    assert end["type"] == "training.completed", end
    losses = logs(events)
    assert [e["step"] for e in losses] == [1, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60]
    first, last = losses[0]["loss"], losses[-1]["loss"]
    assert last < 0.6 * first, (first, last)
    for e in losses:
        assert e["learningRate"] > 0 and e["epoch"] > 0 and e["samplesPerSecond"] > 0
    evals = [e for e in events if e.get("evalLoss") is not None]
    assert [e["step"] for e in evals] == [30, 60]
    assert evals[1]["evalLoss"] < evals[0]["evalLoss"]
    saved = [e for e in events if e["type"] == "checkpoint.saved"]
    assert [e["step"] for e in saved] == [30, 60]
    for e in saved:
        (artifact,) = e["artifacts"]
        assert artifact == {"kind": "checkpoint", "step": e["step"], "path": f"checkpoints/step-{e['step']}"}
        assert (trained_job.job_dir / artifact["path"] / "adapter_model.safetensors").is_file()
    assert {"kind": "adapter", "path": "adapter"} in end["artifacts"]
    assert end["metrics"]["steps"] == 60
    assert end["metrics"]["finalLoss"] == last
    assert not (trained_job.job_dir / "hf").exists()  # trainer scratch space is cleaned up


def test_adapter_loads_with_peft_and_changes_the_model(trained_job: TrainedJob, built_tiny: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(trained_job.job_dir / "adapter")
    base = AutoModelForCausalLM.from_pretrained(built_tiny)
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "My card was declined."}], add_generation_prompt=True, return_dict=True
    )["input_ids"]
    x = torch.tensor([ids])
    with torch.no_grad():
        before = base(input_ids=x).logits
        tuned = PeftModel.from_pretrained(base, str(trained_job.job_dir / "adapter"))
        after = tuned(input_ids=x).logits
    assert tuned.peft_config["default"].r == 16
    assert not torch.allclose(before, after)


def test_cancel_stops_within_one_step(tmp_path: Path, built_tiny: Path) -> None:
    config = {"model": "arkor-nb/tiny", "datasetSource": {"type": "file", "path": str(TRAIN)},
              "maxSteps": 5000, "loggingSteps": 1}
    run = start_worker(config, tmp_path / "job")
    seen = run.wait_for(lambda e: e["type"] == "training.log" and e["step"] >= 3)
    run.send("cancel")
    events = run.finish(timeout=60)
    end = terminal(events)
    assert end["type"] == "training.cancelled", end
    # The step running when "cancel" arrived finishes; at most one more may start
    # while the line is in flight.
    assert seen["step"] <= end["step"] <= seen["step"] + 2, (seen["step"], end["step"])
    assert max(e["step"] for e in logs(events)) <= end["step"]
    assert run.proc.returncode == 0
    assert not (tmp_path / "job" / "adapter").exists()


def test_stdin_eof_means_cancel(tmp_path: Path, built_tiny: Path) -> None:
    config = {"model": "arkor-nb/tiny", "datasetSource": {"type": "file", "path": str(TRAIN)},
              "maxSteps": 5000}
    run = start_worker(config, tmp_path / "job")
    run.wait_for(lambda e: e["type"] == "training.log")
    run.close_stdin()
    end = terminal(run.finish(timeout=60))
    assert end["type"] == "training.cancelled"
    assert end["step"] < 5000


def test_every_config_key_reaches_the_trainer(tmp_path: Path, built_tiny: Path) -> None:
    # Renamed columns exercise datasetFormat; datasetSplit holds out eval rows.
    data = tmp_path / "qa.jsonl"
    rows = [json.loads(line)["messages"] for line in TRAIN.read_text().splitlines()[:60]]
    data.write_text("".join(json.dumps({"question": m[1]["content"], "answer": m[2]["content"]}) + "\n"
                            for m in rows))
    config = {
        "model": "arkor-nb/tiny",
        "datasetSource": {"type": "file", "path": str(data)},
        "datasetFormat": {"prompt": "question", "completion": "answer"},
        "datasetSplit": 0.2,
        "maxSteps": 4, "numTrainEpochs": 3, "learningRate": 1e-3, "batchSize": 4, "optim": "sgd",
        "lrSchedulerType": "cosine", "weightDecay": 0.05, "warmupSteps": 2, "loggingSteps": 2,
        "saveSteps": 4, "evalSteps": 2, "loraR": 4, "loraAlpha": 8, "maxLength": 64,
        "loadIn4bit": False, "trainOnResponsesOnly": False, "dryRun": False,
    }
    events = run_worker(config, tmp_path / "job")
    assert terminal(events)["type"] == "training.completed", events[-1]
    meta = started(events)["metadata"]
    args = meta["trainingArguments"]
    assert args["max_steps"] == 4 and args["num_train_epochs"] == 3
    assert args["learning_rate"] == 1e-3 and args["per_device_train_batch_size"] == 4
    assert args["optim"] == "sgd" and args["lr_scheduler_type"] == "cosine"
    assert args["weight_decay"] == 0.05 and args["warmup_steps"] == 2
    assert args["logging_steps"] == 2 and args["save_steps"] == 4 and args["eval_steps"] == 2
    assert args["eval_strategy"] == "steps" and args["save_strategy"] == "steps"
    assert args["use_cpu"] is True and args["bf16"] is False and args["gradient_checkpointing"] is False
    assert meta["lora"]["r"] == 4 and meta["lora"]["lora_alpha"] == 8
    assert set(meta["lora"]["target_modules"]) >= {"q_proj", "k_proj", "v_proj", "o_proj",
                                                  "gate_proj", "up_proj", "down_proj"}
    assert meta["maxLength"] == 64 and meta["trainOnResponsesOnly"] is False
    assert meta["loadIn4bit"] is False and meta["dryRun"] is False
    assert meta["trainRows"] == 48 and meta["evalRows"] == 12  # 20% of 60 held out
    assert meta["torchThreads"] == 1 and meta["device"] == "cpu"
    assert [e["step"] for e in logs(events)] == [1, 2, 4]
    # warmup: the first step runs below the configured rate
    assert logs(events)[0]["learningRate"] < 1e-3
    assert [e["step"] for e in events if e.get("evalLoss") is not None] == [2, 4]
    assert [e["step"] for e in events if e["type"] == "checkpoint.saved"] == [4]


def test_dry_run_is_short_but_exercises_every_stage(tmp_path: Path, built_tiny: Path) -> None:
    config = {"model": "arkor-nb/tiny", "dryRun": True, "maxSteps": 500,
              "datasetSource": {"type": "file", "path": str(TRAIN), "evalPath": str(EVAL)}}
    events = run_worker(config, tmp_path / "job")
    end = terminal(events)
    assert end["type"] == "training.completed", end
    meta = started(events)["metadata"]
    assert meta["dryRun"] is True and meta["trainingArguments"]["max_steps"] == 3
    assert meta["trainRows"] == 16 and meta["evalRows"] == 8
    assert [e["step"] for e in logs(events)] == [1, 2, 3]
    assert any(e.get("evalLoss") is not None for e in events)
    # transformers also saves at the last step when a save interval is set
    assert [e["step"] for e in events if e["type"] == "checkpoint.saved"] == [2, 3]
    assert (tmp_path / "job" / "adapter" / "adapter_config.json").is_file()


def test_bad_config_fails_with_the_field_named(tmp_path: Path) -> None:
    run = start_worker({"model": "arkor-nb/tiny", "datasetSource": {"type": "file", "path": str(TRAIN)},
                        "batchSize": 0}, tmp_path / "job")
    events = run.finish(timeout=60)
    end = terminal(events)
    assert end["type"] == "training.failed"
    assert end["error"].startswith("batchSize:")
    assert run.proc.returncode == 1


def test_stdout_carries_only_protocol_lines(trained_job: TrainedJob) -> None:
    # every line parsed as JSON (the runner would have raised otherwise) and has a known type
    types = {e["type"] for e in trained_job.events}
    assert types <= {"training.phase", "training.started", "training.log", "checkpoint.saved",
                     "training.completed"}


def test_a_diverged_loss_fails_the_job_with_the_step_and_the_fix(tmp_path: Path, built_tiny: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # A learning rate this absurd sends the tiny model's loss to inf/NaN within a
    # few steps; the run must end failed, not keep logging a filtered 0.0. (Under
    # bf16 autocast the same run stays finite for 200 steps: float32 here.)
    monkeypatch.setenv("ARKOR_NB_SPEED", "bf16_autocast=0")
    config = {"model": "arkor-nb/tiny", "datasetSource": {"type": "file", "path": str(TRAIN)},
              "maxSteps": 200, "loggingSteps": 1, "learningRate": 1.0}
    events = run_worker(config, tmp_path / "job")
    end = terminal(events)
    assert end["type"] == "training.failed", end
    assert "diverged" in end["error"] and "learningRate" in end["error"]
    assert end["step"] < 200
    assert all(e["loss"] not in (0.0, None) for e in logs(events)), logs(events)
