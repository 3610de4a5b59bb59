"""The one table of training options: ``create_trainer`` keyword -> wire ``config`` key.

The client's checks, the server's validation and the workers' defaults all
derive their key lists from it.
"""

from __future__ import annotations

from typing import Any

from pydantic.alias_generators import to_camel

TRAINING_OPTIONS: tuple[str, ...] = (
    "max_steps", "num_train_epochs", "learning_rate", "batch_size", "optim",
    "lr_scheduler_type", "weight_decay", "warmup_steps", "logging_steps", "save_steps",
    "eval_steps", "dataset_format", "dataset_split", "train_on_responses_only", "dry_run",
)
LORA_OPTIONS: dict[str, str] = {
    "r": "loraR", "alpha": "loraAlpha", "max_length": "maxLength", "load_in_4bit": "loadIn4bit",
}
# keyword (``lora.<key>`` for lora options) -> wire key
CONFIG_KEYS: dict[str, str] = {
    "model": "model",
    "dataset": "datasetSource",
    **{keyword: to_camel(keyword) for keyword in TRAINING_OPTIONS},
    **{f"lora.{key}": wire for key, wire in LORA_OPTIONS.items()},
}
WIRE_CONFIG_KEYS: tuple[str, ...] = tuple(CONFIG_KEYS.values())
# Local-backend extensions (docs/protocol.md): keyword -> wire key. Only
# ``ak.live`` (samples) and ``create_trainer(task_eval=..., processes=...,
# nodes=..., seed=...)`` add them, and only to a job on the local backend, so the cloud
# never receives them.
LOCAL_CONFIG_KEYS: dict[str, str] = {"sample_prompts": "samplePrompts",
                                     "sample_max_tokens": "sampleMaxTokens",
                                     "task_eval": "taskEval",
                                     "processes": "processes", "nodes": "nodes",
                                     "seed": "seed"}
KEYWORD_OF: dict[str, str] = {wire: keyword for keyword, wire in CONFIG_KEYS.items()}
# dataset type -> its wire keys (the required one first)
DATASET_SOURCE_KEYS: dict[str, tuple[str, ...]] = {
    "file": ("path", "evalPath"),
    "huggingface": ("name", "split", "subset", "evalSplit"),
    "blob": ("url", "token", "format"),
}


def wire_config(options: dict[str, Any]) -> dict[str, Any]:
    """``{keyword: value}`` -> ``{wire key: value}``; KeyError names an unknown keyword."""
    return {CONFIG_KEYS[keyword]: value for keyword, value in options.items()}
