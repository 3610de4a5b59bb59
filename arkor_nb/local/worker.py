"""The training worker: ``python -m arkor_nb.local.worker``.

One job per process, so a crash, an OOM or a kill never takes the server
down and cancel is real. It speaks the worker stdio protocol of
``worker_protocol`` (spec in on stdin, typed events out on stdout).

Training is the transformers ``Trainer`` with a peft LoRA adapter on every
linear layer; a ``TrainerCallback`` turns logs, saves and evaluations into
events and stops within one optimizer step when cancel arrives.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from arkor_nb.errors import ConfigError
from arkor_nb.local.worker_protocol import JobSpec, WorkerChannel
from arkor_nb.types import (
    CheckpointSample,
    CheckpointSaved,
    TrainingCancelled,
    TrainingCompleted,
    TrainingFailed,
    TrainingLog,
    TrainingPhase,
    TrainingStarted,
    wire_config,
)

log = logging.getLogger("arkor_nb.worker")

# Wire-keyed defaults, written with the create_trainer keywords (types.CONFIG_KEYS).
DEFAULTS: dict[str, Any] = wire_config({
    "learning_rate": 2e-4,
    "batch_size": 8,
    "optim": "adamw_torch",
    "lr_scheduler_type": "linear",
    "weight_decay": 0.0,
    "warmup_steps": 0,
    "logging_steps": 1,
    "lora.r": 16,
    "lora.alpha": 16.0,
    "lora.max_length": 512,
    "train_on_responses_only": True,
    "num_train_epochs": 1.0,
})
# The built-in tiny model is small enough to need a larger step (measured: 2e-4
# barely moves it in 200 steps, 2e-3 takes the demo loss from 5.6 to 1.7).
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {"arkor-nb/tiny": wire_config({"learning_rate": 2e-3})}
DRY_RUN_ROWS = 16
# Last finished optimizer step, so a crash mid-training can say where it happened.
PROGRESS: dict[str, int] = {}
DRY_RUN_STEPS = 3
SAMPLE_MAX_TOKENS = 64  # like ak.live's sampler


class Cancelled(Exception):
    def __init__(self, step: int = 0) -> None:
        self.step = step
        super().__init__(f"cancelled at step {step}")


# ------------------------------------------------------------------ planning


def _split_rows(rows: list[Any], fraction: float) -> tuple[list[Any], list[Any]]:
    """Deterministic hold-out: shuffle a copy with a fixed seed, take the fraction."""
    order = list(range(len(rows)))
    random.Random(0).shuffle(order)
    n_eval = max(1, round(len(rows) * fraction))
    if n_eval >= len(rows):
        raise ConfigError("datasetSplit", f"holding out {fraction} of {len(rows)} rows leaves nothing "
                          "to train on; use a smaller fraction or more rows")
    held = set(order[:n_eval])
    return [r for i, r in enumerate(rows) if i not in held], [rows[i] for i in sorted(held)]


def load_rows(config: dict[str, Any], home: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Normalised train and eval rows for a validated config."""
    from arkor_nb.local import datasets as ds

    fmt = ds.parse_format(config.get("datasetFormat"))
    source = config["datasetSource"]
    split = config.get("datasetSplit")
    try:
        train_iter = ds.source_rows(source, home, split=split if isinstance(split, str) else None)
    except ds.BlobError as exc:
        raise ConfigError(exc.field, str(exc)) from None
    assert train_iter is not None
    try:
        train = ds.load_normalized(train_iter, fmt)
        eval_iter = ds.source_rows(source, home, eval_part=True)
        evals = ds.load_normalized(eval_iter, fmt) if eval_iter is not None else []
    except ds.RowError as exc:
        raise ConfigError("datasetSource", str(exc)) from None
    if isinstance(split, float):
        train, held = _split_rows(train, split)
        evals = evals + held
    if not train:
        raise ConfigError("datasetSource", "has no training rows")
    return train, evals


def training_arguments(config: dict[str, Any], job_dir: Path, device: str, has_eval: bool) -> Any:
    """Every config key that shapes the run, mapped onto ``TrainingArguments``."""
    import torch
    from transformers import TrainingArguments

    c = {**DEFAULTS, **MODEL_DEFAULTS.get(config.get("model", ""), {}), **config}
    dry = bool(c.get("dryRun"))
    max_steps = c.get("maxSteps", -1)
    save_steps, eval_steps = c.get("saveSteps"), c.get("evalSteps")
    logging_steps = c["loggingSteps"]
    if dry:  # short, but every stage still runs: log, checkpoint, eval, final adapter
        max_steps = min(max_steps, DRY_RUN_STEPS) if max_steps > 0 else DRY_RUN_STEPS
        save_steps = min(save_steps or max_steps - 1 or 1, max_steps)
        eval_steps = min(eval_steps or max_steps - 1 or 1, max_steps) if has_eval else None
        logging_steps = 1
    bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
    return TrainingArguments(
        output_dir=str(job_dir / "hf"),
        max_steps=max_steps,
        num_train_epochs=float(c["numTrainEpochs"]),
        learning_rate=float(c["learningRate"]),
        per_device_train_batch_size=int(c["batchSize"]),
        per_device_eval_batch_size=int(c["batchSize"]),
        optim=c["optim"],
        lr_scheduler_type=c["lrSchedulerType"],
        weight_decay=float(c["weightDecay"]),
        warmup_steps=int(c["warmupSteps"]),
        logging_strategy="steps",
        logging_steps=int(logging_steps),
        logging_first_step=True,
        save_strategy="steps" if save_steps else "no",
        save_steps=int(save_steps) if save_steps else 500,
        save_only_model=True,
        eval_strategy="steps" if (eval_steps and has_eval) else "no",
        eval_steps=int(eval_steps) if (eval_steps and has_eval) else None,
        report_to="none",
        # Report a diverged loss as it is: the default filter logs NaN/inf
        # steps as the window's average (0.0 with logging every step).
        logging_nan_inf_filter=False,
        disable_tqdm=True,
        use_cpu=device == "cpu",
        bf16=bf16,
        fp16=False,
        gradient_checkpointing=False,
        dataloader_num_workers=0,
        dataloader_pin_memory=device == "cuda",
        remove_unused_columns=False,
        label_names=["labels"],
        seed=42,
    )


def lora_config(config: dict[str, Any]) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=int(config.get("loraR", DEFAULTS["loraR"])),
        lora_alpha=float(config.get("loraAlpha", DEFAULTS["loraAlpha"])),
        lora_dropout=0.0,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )


_ARG_FIELDS = (
    "max_steps", "num_train_epochs", "learning_rate", "per_device_train_batch_size", "optim",
    "lr_scheduler_type", "weight_decay", "warmup_steps", "logging_steps", "save_strategy",
    "save_steps", "eval_strategy", "eval_steps", "bf16", "fp16", "gradient_checkpointing",
    "use_cpu", "seed",
)


def describe_arguments(args: Any) -> dict[str, Any]:
    """The effective TrainingArguments (read back from the object, enums as strings)."""
    out: dict[str, Any] = {}
    for name in _ARG_FIELDS:
        value = getattr(args, name)
        out[name] = getattr(value, "value", value)
    return out


def describe_lora(model: Any) -> dict[str, Any]:
    cfg = model.peft_config["default"]
    return {
        "r": cfg.r,
        "lora_alpha": cfg.lora_alpha,
        "target_modules": sorted({str(m).rsplit(".", 1)[-1] for m in cfg.target_modules}),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }


# ------------------------------------------------------------------ callback


def make_callback(proto: WorkerChannel, cancel: threading.Event, job_dir: Path, batch: int,
                  sample: Any = None) -> Any:
    """``sample(model, step)``, when given, runs right after each ``checkpoint.saved``."""
    from transformers import TrainerCallback

    class EventCallback(TrainerCallback):
        """Trainer hooks -> protocol events; cancel -> stop after this step."""

        def __init__(self) -> None:
            self.last_time = time.perf_counter()
            self.last_step = 0
            self.losses: list[tuple[int, float]] = []
            self.checkpoints: list[dict[str, Any]] = []
            self.summary: dict[str, Any] = {}
            self.eval_loss: float | None = None
            self.eval_step: int | None = None

        def _check(self, control: Any) -> Any:
            if cancel.is_set():
                control.should_training_stop = True
            return control

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.last_time = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
            PROGRESS["step"] = state.global_step
            return self._check(control)

        def on_substep_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
            return self._check(control)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
                   **kw: Any) -> None:
            logs = logs or {}
            if "train_loss" in logs or "train_runtime" in logs:
                self.summary = dict(logs)
                return
            if "loss" not in logs:
                return  # eval metrics are reported by on_evaluate
            now = time.perf_counter()
            steps = max(0, state.global_step - self.last_step)
            rate = steps * batch * args.gradient_accumulation_steps / max(now - self.last_time, 1e-9)
            self.last_time, self.last_step = now, state.global_step
            loss = float(logs["loss"])
            if not math.isfinite(loss):
                # A diverged run cannot recover: say so and stop, instead of
                # spending the remaining steps on NaN weights.
                proto.emit(TrainingFailed(
                    error=(f"loss became {loss} at step {state.global_step}: training "
                           f"diverged; lower learningRate (now {args.learning_rate:g})"),
                    step=state.global_step,
                ))
                control.should_training_stop = True
                return
            self.losses.append((state.global_step, loss))
            proto.emit(TrainingLog(
                step=state.global_step,
                loss=loss,
                learning_rate=logs.get("learning_rate"),
                epoch=logs.get("epoch", state.epoch),
                samples_per_second=round(rate, 3) if steps else None,
            ))

        def on_evaluate(self, args: Any, state: Any, control: Any,
                        metrics: dict[str, Any] | None = None, **kw: Any) -> None:
            metrics = metrics or {}
            if "eval_loss" not in metrics:
                return
            self.eval_loss = float(metrics["eval_loss"])
            self.eval_step = state.global_step
            proto.emit(TrainingLog(
                step=state.global_step,
                eval_loss=self.eval_loss,
                epoch=state.epoch,
                samples_per_second=metrics.get("eval_samples_per_second"),
            ))

        def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            step = state.global_step
            src = Path(args.output_dir) / f"checkpoint-{step}"
            rel = f"checkpoints/step-{step}"
            dest = job_dir / rel
            if not src.is_dir():
                return
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(src, dest)
            artifact = {"kind": "checkpoint", "step": step, "path": rel}
            self.checkpoints.append(artifact)
            proto.emit(CheckpointSaved(step=step, artifacts=[artifact]))
            if sample is not None and not cancel.is_set():
                sample(kw["model"], step)

    return EventCallback()


def make_sampler(proto: WorkerChannel, config: dict[str, Any], tokenizer: Any, device: str,
                 cancel: threading.Event) -> Any:
    """The checkpoint sampler for ``samplePrompts`` (None without them).

    Replies come from the model in memory (no reload, no server round trip),
    one ``checkpoint.sample`` event per prompt.
    """
    prompts = config.get("samplePrompts")
    if not prompts:
        return None
    from arkor_nb.local.inference import greedy_reply

    max_tokens = int(config.get("sampleMaxTokens", SAMPLE_MAX_TOKENS))

    def sample(model: Any, step: int) -> None:
        for prompt in prompts:
            if cancel.is_set():
                return  # a cancel waits for one reply at most
            reply = greedy_reply(model, tokenizer, prompt, max_tokens=max_tokens, device=device)
            proto.emit(CheckpointSample(step=step, prompt=prompt, reply=reply))

    return sample


# ------------------------------------------------------------------ the run


def run_job(spec: JobSpec, proto: WorkerChannel, cancel: threading.Event) -> None:
    """Validate, load, train, save; emits every event including the terminal one."""
    from arkor_nb.local.config import validate_config

    home = spec.home
    job_dir = spec.job_dir
    job_dir.mkdir(parents=True, exist_ok=True)
    config = validate_config(spec.full_config(), home=home)

    def checkpoint_cancel(step: int = 0) -> None:
        if cancel.is_set():
            raise Cancelled(step)

    import torch

    from arkor_nb.local import datasets as ds
    from arkor_nb.local.models import (
        load_model_and_tokenizer,
        pick_device,
        preparing_detail,
        resolve_model,
    )

    device = pick_device()
    threads = int(os.environ.get("ARKOR_NB_TORCH_THREADS", "1"))
    if device == "cpu":
        torch.set_num_threads(max(1, threads))
    checkpoint_cancel()
    t0 = time.perf_counter()
    # Data first: a bad or unreachable dataset fails before a model is built or loaded.
    proto.emit(TrainingPhase(phase="preparing", detail="loading data"))
    train_rows, eval_rows = load_rows(config, home)
    if config.get("dryRun"):
        train_rows, eval_rows = train_rows[:DRY_RUN_ROWS], eval_rows[: DRY_RUN_ROWS // 2]
    checkpoint_cancel()
    building = preparing_detail(config["model"], home)
    if building is not None:
        proto.emit(TrainingPhase(phase="preparing", detail=building))
    model_path = resolve_model(config["model"], home)
    checkpoint_cancel()

    proto.emit(TrainingPhase(phase="preparing", detail=f"loading {config['model']} on {device}"))
    model, tokenizer = load_model_and_tokenizer(
        model_path, device, load_in_4bit=bool(config.get("loadIn4bit"))
    )
    limit = int(config.get("maxLength", DEFAULTS["maxLength"]))
    model_limit = getattr(model.config, "max_position_embeddings", None)
    if isinstance(model_limit, int) and model_limit > 0:
        limit = min(limit, model_limit)
    responses_only = bool(config.get("trainOnResponsesOnly", DEFAULTS["trainOnResponsesOnly"]))

    def encode(rows: list[dict[str, Any]]) -> tuple[list[dict[str, list[int]]], int]:
        encoded = [ds.encode_row(r, tokenizer, limit, responses_only) for r in rows]
        kept = [e for e in encoded if e is not None]
        return kept, len(encoded) - len(kept)

    train_set, dropped = encode(train_rows)
    eval_set, eval_dropped = encode(eval_rows)
    if not train_set:
        raise ConfigError("maxLength", f"every row is cut off before its answer at {limit} tokens; "
                          "raise maxLength")
    checkpoint_cancel()

    from peft import get_peft_model, prepare_model_for_kbit_training
    from transformers import Trainer, set_seed

    has_eval = bool(eval_set)
    args = training_arguments(config, job_dir, device, has_eval)
    # Seed before the LoRA weights are drawn (Trainer seeds only later), so one
    # config gives one run: the same losses every time.
    set_seed(args.seed)
    if config.get("loadIn4bit"):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    model = get_peft_model(model, lora_config(config))
    callback = make_callback(proto, cancel, job_dir, args.per_device_train_batch_size,
                             make_sampler(proto, config, tokenizer, device, cancel))
    pad_id = tokenizer.pad_token_id
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=_ListDataset(train_set),
        eval_dataset=_ListDataset(eval_set) if has_eval else None,
        data_collator=lambda feats: ds.collate(feats, pad_id),
        processing_class=tokenizer,
        callbacks=[callback],
    )
    checkpoint_cancel()
    proto.emit(TrainingStarted(metadata={
        "model": config["model"],
        "modelPath": model_path,
        "device": device,
        "torchThreads": torch.get_num_threads(),
        "dryRun": bool(config.get("dryRun")),
        "trainOnResponsesOnly": responses_only,
        "maxLength": limit,
        "datasetFormat": config.get("datasetFormat"),
        "datasetSplit": config.get("datasetSplit"),
        "loadIn4bit": bool(config.get("loadIn4bit")),
        "trainRows": len(train_set),
        "evalRows": len(eval_set),
        "droppedRows": dropped + eval_dropped,
        "setupSeconds": round(time.perf_counter() - t0, 2),
        "trainingArguments": describe_arguments(args),
        "lora": describe_lora(model),
    }))

    started = time.perf_counter()
    trainer.train()
    step = trainer.state.global_step
    if cancel.is_set():
        raise Cancelled(step)
    train_seconds = time.perf_counter() - started
    if has_eval and callback.eval_step != step:
        trainer.evaluate()  # the last word on held-out loss, as a training.log with evalLoss
    proto.emit(TrainingPhase(phase="saving", detail="saving the adapter"))
    adapter_dir = job_dir / "adapter"
    model.save_pretrained(adapter_dir)
    tokenizer.save_pretrained(adapter_dir)
    (adapter_dir / "arkor_nb.json").write_text(json.dumps({"model": config["model"], "step": step}))
    losses = callback.losses
    metrics = {
        "steps": step,
        "trainLoss": callback.summary.get("train_loss"),
        "firstLoss": losses[0][1] if losses else None,
        "finalLoss": losses[-1][1] if losses else None,
        "evalLoss": callback.eval_loss,
        "trainSeconds": round(train_seconds, 3),
        "secondsPerStep": round(train_seconds / step, 4) if step else None,
        "samplesPerSecond": callback.summary.get("train_samples_per_second"),
    }
    artifacts = [{"kind": "adapter", "path": "adapter"}, *callback.checkpoints]
    shutil.rmtree(job_dir / "hf", ignore_errors=True)
    proto.emit(TrainingCompleted(metrics=metrics, artifacts=artifacts))


class _ListDataset:
    """A list of encoded rows as a map-style dataset (what Trainer's sampler needs)."""

    def __init__(self, rows: list[dict[str, list[int]]]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        return self.rows[i]


def main() -> int:
    proto = WorkerChannel()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cancel = threading.Event()
    try:
        spec = proto.read_spec()
    except (ValueError, EOFError) as exc:
        proto.emit(TrainingFailed(error=f"bad job spec: {exc}"))
        return 2
    proto.watch_cancel(cancel)
    try:
        run_job(spec, proto, cancel)
        return 0
    except Cancelled as exc:
        proto.emit(TrainingCancelled(step=exc.step))
        return 0
    except ConfigError as exc:
        proto.emit(TrainingFailed(error=str(exc)))
        return 1
    except BaseException as exc:  # noqa: BLE001 - the job must end with a terminal event
        traceback.print_exc()
        proto.emit(TrainingFailed(error=f"{type(exc).__name__}: {exc}", step=PROGRESS.get("step")))
        return 1


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
