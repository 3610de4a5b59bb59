"""The worker's plan: a validated config -> rows, ``TrainingArguments``, LoRA.

Everything that decides *how* a job trains lives here, so a faster path or a
GPU path is one place to change; ``worker`` only carries the plan out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from arkor_nb.core.config_keys import wire_config
from arkor_nb.core.errors import ConfigError
from arkor_nb.local.data.blob import BlobError
from arkor_nb.local.data.lazy import holdout
from arkor_nb.local.data.rows import RowError, load_normalized, parse_format
from arkor_nb.local.data.sources import source_rows

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
DEFAULT_SEED = 42  # config "seed" (the hold-out split does not depend on it)
DRY_RUN_STEPS = 3


def _split_rows(rows: list[Any], fraction: float) -> tuple[list[Any], list[Any]]:
    """Deterministic hold-out (``lazy.holdout``: the lazy data path holds out the same rows)."""
    check_holdout(len(rows), fraction)
    train, held = holdout(len(rows), fraction)
    return [rows[i] for i in train], [rows[i] for i in held]


def check_holdout(n: int, fraction: float) -> None:
    if max(1, round(n * fraction)) >= n:
        raise ConfigError("datasetSplit", f"holding out {fraction} of {n} rows leaves nothing "
                          "to train on; use a smaller fraction or more rows")


def load_rows(config: dict[str, Any], home: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Normalised train and eval rows for a validated config."""
    fmt = parse_format(config.get("datasetFormat"))
    source = config["datasetSource"]
    split = config.get("datasetSplit")
    try:
        train_iter = source_rows(source, home, split=split if isinstance(split, str) else None)
    except BlobError as exc:
        raise ConfigError(exc.field, str(exc)) from None
    assert train_iter is not None
    try:
        train = load_normalized(train_iter, fmt)
        eval_iter = source_rows(source, home, eval_part=True)
        evals = load_normalized(eval_iter, fmt) if eval_iter is not None else []
    except RowError as exc:
        raise ConfigError("datasetSource", str(exc)) from None
    if isinstance(split, float):
        train, held = _split_rows(train, split)
        evals = evals + held
    if not train:
        raise ConfigError("datasetSource", "has no training rows")
    return train, evals


def training_arguments(config: dict[str, Any], job_dir: Path, device: str, has_eval: bool,
                       distributed: bool = False) -> Any:
    """Every config key that shapes the run, mapped onto ``TrainingArguments``.

    ``distributed``: launched by torchrun; ``batchSize`` is per process (the
    global batch is batchSize x processes) and DDP runs over gloo (CPU) or
    nccl (CUDA). Every LoRA weight gets a gradient, so DDP skips its search
    for unused parameters.
    """
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
    ddp: dict[str, Any] = {}
    if distributed:
        ddp = {"ddp_backend": "nccl" if device == "cuda" else "gloo",
               "ddp_find_unused_parameters": False}
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
        fp16=device == "cuda" and not bf16,  # older GPUs: fp16 mixed precision
        gradient_checkpointing=False,
        dataloader_num_workers=0,
        dataloader_pin_memory=device == "cuda",
        remove_unused_columns=False,
        label_names=["labels"],
        # Evaluation needs only the loss: keeping every step's logits costs
        # batch x length x vocab floats (1.5 GB for SmolLM2 on 60 rows).
        prediction_loss_only=True,
        seed=int(config.get("seed", DEFAULT_SEED)),
        **ddp,
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
