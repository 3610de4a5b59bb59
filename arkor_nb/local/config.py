"""Validate a job's wire config before anything is created.

``validate_config`` is the one gate between a user's request and the worker:
every key of the protocol is type- and range-checked, the dataset is read and
its rows checked (bad rows reported with line numbers), and the model is
checked to exist. Each failure is one ``ConfigError(field, message)`` that
names the field and the fix, so the server can answer 400 without leaving
anything half-created. It is cheap: nothing heavy is imported unless a check
needs it.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

from arkor_nb.core.config_keys import (
    DATASET_SOURCE_KEYS,
    KEYWORD_OF,
    LOCAL_CONFIG_KEYS,
    WIRE_CONFIG_KEYS,
)
from arkor_nb.core.errors import ConfigError
from arkor_nb.core.taskeval import check_wire_task_eval
from arkor_nb.local.data.rows import FILE_FORMATS, RowFormat, check_rows, parse_format
from arkor_nb.local.data.sources import iter_file_rows
from arkor_nb.local.model_check import check_model
from arkor_nb.local.sandbox import resolve_data_path
from arkor_nb.local.training.models import SYNTHETIC_MODEL_ID

MAX_STEPS = 1_000_000
KNOWN_KEYS = WIRE_CONFIG_KEYS + tuple(LOCAL_CONFIG_KEYS.values())
MAX_SAMPLE_PROMPTS = 16
MAX_PROCESSES = 1024
# Optimizers that work with plain torch (checked against transformers' OptimizerNames in tests).
OPTIMIZERS = frozenset({
    "adamw_torch", "adamw_torch_fused", "adafactor", "sgd", "adagrad", "rmsprop",
    "ademamix", "stable_adamw", "schedule_free_adamw", "schedule_free_sgd", "schedule_free_radam",
})
BNB_OPTIMIZERS = frozenset({"adamw_bnb_8bit", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit"})
SCHEDULERS = frozenset({
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
    "inverse_sqrt", "cosine_with_min_lr", "warmup_stable_decay",
})
DATASET_TYPES = tuple(DATASET_SOURCE_KEYS)
_SOURCE_KEYS = {kind: {"type", *keys} for kind, keys in DATASET_SOURCE_KEYS.items()}
MAX_ROWS_CHECKED = 200_000


def validate_config(config: dict[str, Any], *, home: Path,
                    max_rows_checked: int = MAX_ROWS_CHECKED) -> dict[str, Any]:
    """Check a wire config; return it normalised (dataset paths absolute, model id stripped).

    A refusal names the wire key and, where it differs, the Python keyword the
    user typed (``learningRate`` -> ``learning_rate=``). ``max_rows_checked``
    caps the file rows read (the worker, re-checking what the server checked,
    reads only the first few, so its start does not grow with the file).
    """
    try:
        return _validate(config, home, max_rows_checked)
    except ConfigError as err:
        hint = python_keyword(err.field)
        if hint is None:
            raise
        message = str(err).removeprefix(f"{err.field}: ")
        raise ConfigError(err.field, f"{message} (set with {hint} in create_trainer)") from None


def python_keyword(field: str) -> str | None:
    """How a user sets a wire field from Python: ``learning_rate=``, ``lora={"r": ...}``."""
    head, _, rest = field.partition(".")
    keyword = KEYWORD_OF.get(head)
    if keyword is None or keyword == head:
        return None
    if keyword.startswith("lora."):
        return f'lora={{"{keyword[5:]}": ...}}'
    if rest:
        return f'{keyword}={{"{rest}": ...}}'
    return f"{keyword}="


def _validate(config: dict[str, Any], home: Path, max_rows: int) -> dict[str, Any]:
    if not isinstance(config, dict):
        raise ConfigError("config", "must be a JSON object of training settings")
    unknown = sorted(set(config) - set(KNOWN_KEYS))
    if unknown:
        raise ConfigError(unknown[0], f"unknown config key; known keys are {', '.join(KNOWN_KEYS)}")
    out = {k: v for k, v in config.items() if v is not None}

    model = check_model(out.get("model"), Path(home))
    out["model"] = model
    synthetic = model == SYNTHETIC_MODEL_ID

    _int(out, "maxSteps", 1, MAX_STEPS)
    _num(out, "numTrainEpochs", 0, 10_000, open_low=True)
    _num(out, "learningRate", 0, 1, open_low=True)
    _int(out, "batchSize", 1, 4096)
    _choice(out, "optim", OPTIMIZERS | BNB_OPTIMIZERS)
    if out.get("optim") in BNB_OPTIMIZERS and importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError("optim", f"{out['optim']!r} needs bitsandbytes (pip install bitsandbytes); "
                          "use 'adamw_torch' on this machine")
    _choice(out, "lrSchedulerType", SCHEDULERS)
    _num(out, "weightDecay", 0, 10)
    _int(out, "warmupSteps", 0, MAX_STEPS)
    _int(out, "loggingSteps", 1, MAX_STEPS)
    _int(out, "saveSteps", 1, MAX_STEPS)
    _int(out, "evalSteps", 1, MAX_STEPS)
    _int(out, "loraR", 1, 4096)
    _num(out, "loraAlpha", 0, 1_000_000, open_low=True)
    _int(out, "maxLength", 8, 1_048_576)
    for key in ("loadIn4bit", "trainOnResponsesOnly", "dryRun"):
        if key in out and not isinstance(out[key], bool):
            raise ConfigError(key, f"must be true or false, got {out[key]!r}")
    if out.get("loadIn4bit") and not synthetic:
        _check_4bit()
    _sample_prompts(out)
    if "taskEval" in out:
        out["taskEval"] = check_wire_task_eval(out["taskEval"])
    _processes(out)
    _int(out, "seed", 0, 2**32 - 1)

    try:
        fmt = parse_format(out.get("datasetFormat"))
    except ValueError as exc:
        raise ConfigError("datasetFormat", str(exc)) from None
    split = out.get("datasetSplit")
    if split is not None:
        if isinstance(split, bool) or not isinstance(split, (int, float, str)):
            raise ConfigError("datasetSplit", "must be an eval fraction like 0.1 or a split name like 'train'")
        if isinstance(split, (int, float)) and not 0 < split < 1:
            raise ConfigError("datasetSplit", f"an eval fraction must be between 0 and 1 (exclusive), got {split}")
        if isinstance(split, str) and not split.strip():
            raise ConfigError("datasetSplit", "must not be empty")

    source = out.get("datasetSource")
    if source is None:
        if not synthetic:
            raise ConfigError("datasetSource", 'is required, e.g. {"type": "file", "path": "data/triage.jsonl"}')
    else:
        out["datasetSource"] = _dataset(source, fmt, split, Path(home), check_rows=not synthetic,
                                         max_rows=max_rows)
    if isinstance(split, str) and source is not None and out["datasetSource"]["type"] != "huggingface":
        raise ConfigError("datasetSplit", "a split name only applies to huggingface datasets; "
                          "use a fraction like 0.1 to hold out evaluation rows from a file")
    if "evalSteps" in out and not _has_eval_data(out):
        raise ConfigError("evalSteps", "needs evaluation data: set datasetSplit to a fraction like 0.1, "
                          "or datasetSource.evalPath (file) / evalSplit (huggingface)")
    return out


def _sample_prompts(cfg: dict[str, Any]) -> None:
    """samplePrompts / sampleMaxTokens: the local extension ak.live(sample_prompts=...) sets."""
    prompts = cfg.get("samplePrompts")
    if prompts is not None and (not isinstance(prompts, list) or not prompts
                                or len(prompts) > MAX_SAMPLE_PROMPTS
                                or not all(isinstance(p, str) and p.strip() for p in prompts)):
        raise ConfigError("samplePrompts", f"must be a list of 1 to {MAX_SAMPLE_PROMPTS} non-empty "
                          'strings, e.g. ["Hello!"] (set with sample_prompts= in ak.live)')
    _int(cfg, "sampleMaxTokens", 1, 4096)


def _processes(cfg: dict[str, Any]) -> None:
    """processes / nodes: torch.distributed on several processes (and hosts)."""
    if cfg.get("processes") != "auto":
        if isinstance(cfg.get("processes"), str):
            raise ConfigError("processes", f"must be a whole number of at least 1 or \"auto\" "
                              f"(one per GPU), got {cfg['processes']!r} (set with processes= "
                              "in create_trainer)")
        _int(cfg, "processes", 1, MAX_PROCESSES)
    _int(cfg, "nodes", 1, MAX_PROCESSES)


# ----------------------------------------------------------------- scalars


def _int(cfg: dict[str, Any], key: str, low: int, high: int) -> None:
    if key not in cfg:
        return
    value = cfg[key]
    if isinstance(value, float) and value.is_integer():
        value = cfg[key] = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(key, f"must be a whole number between {low} and {high:,}, got {value!r}")
    if not low <= value <= high:
        raise ConfigError(key, f"must be between {low} and {high:,}, got {value:,}")


def _num(cfg: dict[str, Any], key: str, low: float, high: float, *, open_low: bool = False) -> None:
    if key not in cfg:
        return
    value = cfg[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(key, f"must be a number, got {value!r}")
    if (value <= low if open_low else value < low) or value > high:
        bound = f"greater than {low}" if open_low else f"at least {low}"
        raise ConfigError(key, f"must be {bound} and at most {high:g}, got {value!r}")
    cfg[key] = float(value)


def _choice(cfg: dict[str, Any], key: str, allowed: frozenset[str]) -> None:
    if key in cfg and (not isinstance(cfg[key], str) or cfg[key] not in allowed):
        raise ConfigError(key, f"unknown value {cfg[key]!r}; use one of {', '.join(sorted(allowed))}")


def _check_4bit() -> None:
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError("loadIn4bit", "4-bit loading needs bitsandbytes and a CUDA GPU; "
                          "install bitsandbytes on a GPU machine or set loadIn4bit to false")
    import torch

    if not torch.cuda.is_available():
        raise ConfigError("loadIn4bit", "4-bit loading needs a CUDA GPU and none is available; "
                          "set loadIn4bit to false")


# ----------------------------------------------------------------- dataset


def _dataset(source: Any, fmt: RowFormat, split: Any, home: Path, *, check_rows: bool,
             max_rows: int = MAX_ROWS_CHECKED) -> dict[str, Any]:
    field = "datasetSource"
    if not isinstance(source, dict):
        raise ConfigError(field, 'must be an object like {"type": "file", "path": "data/triage.jsonl"}')
    kind = source.get("type")
    if kind not in DATASET_TYPES:
        raise ConfigError(f"{field}.type", f"unknown dataset type {kind!r}; use one of {', '.join(DATASET_TYPES)}")
    extra = sorted(set(source) - _SOURCE_KEYS[kind])
    if extra:
        raise ConfigError(f"{field}.{extra[0]}", f"unknown key for a {kind} dataset; "
                          f"known keys are {', '.join(sorted(_SOURCE_KEYS[kind]))}")
    out = dict(source)
    if kind == "file":
        out["path"] = str(resolve_data_path(source.get("path"), f"{field}.path", home))
        if source.get("evalPath") is not None:
            out["evalPath"] = str(resolve_data_path(source["evalPath"], f"{field}.evalPath", home))
        if check_rows:
            _check_file_rows(Path(out["path"]), fmt, f"{field}.path", max_rows)
            if out.get("evalPath"):
                _check_file_rows(Path(out["evalPath"]), fmt, f"{field}.evalPath", max_rows)
    elif kind == "huggingface":
        for key in ("name", "split", "subset", "evalSplit"):
            if key in source and (not isinstance(source[key], str) or not source[key].strip()):
                raise ConfigError(f"{field}.{key}", "must be a non-empty string")
        if "name" not in source:
            raise ConfigError(f"{field}.name", "is required: the dataset id on the Hugging Face hub")
    else:
        url = source.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigError(f"{field}.url", "must be an http(s) URL")
        if "token" in source and not isinstance(source["token"], str):
            raise ConfigError(f"{field}.token", "must be a string")
        if "format" in source and source["format"] not in set(FILE_FORMATS.values()):
            raise ConfigError(f"{field}.format", f"use one of {sorted(set(FILE_FORMATS.values()))}")
    return out


def _check_file_rows(path: Path, fmt: RowFormat, field: str, max_rows: int) -> None:
    def limited() -> Any:
        for i, item in enumerate(iter_file_rows(path)):
            if i >= max_rows:
                return
            yield item

    try:
        good, errors = check_rows(limited(), fmt)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise ConfigError(field, f"cannot read {path.name}: {exc}") from None
    if errors:
        raise ConfigError(field, f"{path.name} has rows that cannot be used: " + "; ".join(errors))
    if good == 0:
        raise ConfigError(field, f"{path.name} has no rows; add training examples")


def _has_eval_data(cfg: dict[str, Any]) -> bool:
    source = cfg.get("datasetSource") or {}
    if cfg.get("model") == SYNTHETIC_MODEL_ID:
        return True
    if isinstance(cfg.get("datasetSplit"), float):
        return True
    return bool(source.get("evalPath") or source.get("evalSplit"))
