"""Client-side checks and the snake_case -> camelCase wire config for create_trainer.

Each check raises ConfigError naming the keyword and the fix, so a typo
fails at construction, not minutes later on the server. Only keys the user
set are sent; the backend still validates what it alone can know (does the
dataset file exist, is the model loadable).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any, cast

from pydantic.alias_generators import to_camel

from arkor_nb.core.config_keys import (
    CONFIG_KEYS,
    DATASET_SOURCE_KEYS,
    LORA_OPTIONS,
    TRAINING_OPTIONS,
)
from arkor_nb.core.contexts import Callbacks, ReconnectPolicy
from arkor_nb.core.errors import ConfigError

# dataset type -> its required keys
DATASET_TYPES: dict[str, tuple[str, ...]] = {k: keys[:1] for k, keys in DATASET_SOURCE_KEYS.items()}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def positive_int(field: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(field, f"must be a positive integer, got {value!r}")
    return value


def non_negative_int(field: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(field, f"must be an integer >= 0, got {value!r}")
    return value


def positive_number(field: str, value: Any) -> float:
    if not _is_number(value) or value <= 0:
        raise ConfigError(field, f"must be a number > 0, got {value!r}")
    return cast(float, value)  # int stays int on the wire


def non_negative_number(field: str, value: Any) -> float:
    if not _is_number(value) or value < 0:
        raise ConfigError(field, f"must be a number >= 0, got {value!r}")
    return cast(float, value)


def non_empty_str(field: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(field, f"must be a non-empty string, got {value!r}")
    return utf8(field, value)


def utf8(field: str, value: str) -> str:
    """Text JSON and URLs can carry: a lone surrogate (what bytes that are not UTF-8, e.g. a
    file name or a command-line argument in another encoding, decode to) is refused."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        shown = value if len(value) <= 80 else value[:80] + "..."
        raise ConfigError(field, f"{shown!r} is not valid UTF-8 text ({value[err.start]!r} at "
                                 f"position {err.start}: bytes in another encoding, e.g. a file "
                                 "name or a command-line argument?); pass UTF-8 text") from None
    return value


def split_spec(field: str, value: Any) -> str | float:
    """A split name ("train") or the fraction of rows held out for eval (0 < x < 1)."""
    if _is_number(value) and not isinstance(value, int) and 0 < value < 1:
        return cast(float, value)
    if isinstance(value, str) and value.strip():
        return value
    raise ConfigError(
        field, f'must be a split name such as "train" or a fraction 0 < x < 1, got {value!r}'
    )


def format_spec(field: str, value: Any) -> str | dict[str, str]:
    """A format name, or a column mapping such as {"prompt": "question"}."""
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, Mapping) and value and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        return dict(value)
    raise ConfigError(
        field,
        'must be a format name or a column mapping such as {"prompt": "question", '
        f'"completion": "answer"}}, got {value!r}',
    )


def boolean(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(field, f"must be True or False, got {value!r}")
    return value


# keyword -> check (the wire key comes from types.CONFIG_KEYS)
_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "max_steps": positive_int,
    "num_train_epochs": positive_number,
    "learning_rate": positive_number,
    "batch_size": positive_int,
    "optim": non_empty_str,
    "lr_scheduler_type": non_empty_str,
    "weight_decay": non_negative_number,
    "warmup_steps": non_negative_int,
    "logging_steps": positive_int,
    "save_steps": positive_int,
    "eval_steps": positive_int,
    "dataset_format": format_spec,
    "dataset_split": split_spec,
    "train_on_responses_only": boolean,
    "dry_run": boolean,
}
# keyword -> (wire key, check)
SCALAR_FIELDS: dict[str, tuple[str, Callable[[str, Any], Any]]] = {
    keyword: (CONFIG_KEYS[keyword], _CHECKS[keyword]) for keyword in TRAINING_OPTIONS
}


def dataset_source(dataset: Any, *, absolute_paths: bool) -> dict[str, Any]:
    """Validate ``dataset`` and return the wire ``datasetSource`` (camelCase keys).

    ``absolute_paths`` turns a relative file path into an absolute one: the
    local server runs in its own working directory, so "data/x.jsonl" must
    mean the caller's directory, not the server's.
    """
    if not isinstance(dataset, Mapping):
        raise ConfigError(
            "dataset",
            'must be a dict such as {"type": "file", "path": "data/train.jsonl"}, '
            f"got {type(dataset).__name__}",
        )
    kind = dataset.get("type")
    if kind not in DATASET_TYPES:
        raise ConfigError(
            "dataset.type",
            f"must be one of {sorted(DATASET_TYPES)}, got {kind!r}",
        )
    source: dict[str, Any] = {}
    for key, value in dataset.items():
        if not isinstance(key, str):
            raise ConfigError("dataset", f"keys must be strings, got {key!r}")
        source[to_camel(key) if "_" in key else key] = (
            os.fspath(value) if isinstance(value, os.PathLike) else value
        )
    for required in DATASET_TYPES[kind]:
        value = source.get(required)
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(
                f"dataset.{required}",
                f'a {kind!r} dataset needs a non-empty "{required}" string, got {value!r}',
            )
        source[required] = value
    for key, value in source.items():
        if isinstance(value, str):
            utf8(f"dataset.{key}", value)
    if kind == "file" and absolute_paths:
        for key in DATASET_SOURCE_KEYS["file"]:
            if isinstance(source.get(key), str):
                source[key] = str(Path(source[key]).expanduser().resolve())
    return source


def lora_config(lora: Any) -> dict[str, Any]:
    if not isinstance(lora, Mapping):
        raise ConfigError("lora", 'must be a dict such as {"r": 16, "alpha": 16}')
    wire: dict[str, Any] = {}
    for key, value in lora.items():
        if key not in LORA_OPTIONS:
            raise ConfigError(
                f"lora.{key}", f"unknown LoRA option; allowed keys are {sorted(LORA_OPTIONS)}"
            )
        field = f"lora.{key}"
        if key in ("r", "max_length"):
            positive_int(field, value)
        elif key == "alpha":
            positive_number(field, value)
        else:
            boolean(field, value)
        wire[LORA_OPTIONS[key]] = value
    return wire


def build_config(
    *,
    model: Any,
    dataset: Any,
    lora: Any,
    options: Mapping[str, Any],
    absolute_paths: bool,
) -> dict[str, Any]:
    """The camelCase wire config with exactly the keys the user set."""
    config: dict[str, Any] = {CONFIG_KEYS["model"]: non_empty_str("model", model)}
    if dataset is not None:
        config[CONFIG_KEYS["dataset"]] = dataset_source(dataset, absolute_paths=absolute_paths)
    if lora is not None:
        config.update(lora_config(lora))
    for keyword, value in options.items():
        if value is None:
            continue
        wire_key, check = SCALAR_FIELDS[keyword]
        config[wire_key] = check(keyword, value)
    return config


def make_callbacks(callbacks: Any) -> Callbacks:
    if callbacks is None:
        return Callbacks()
    if isinstance(callbacks, Callbacks):
        items = {f.name: getattr(callbacks, f.name) for f in fields(Callbacks)}
    elif isinstance(callbacks, Mapping):
        items = dict(callbacks)
        allowed = {f.name for f in fields(Callbacks)}
        for key in items:
            if key not in allowed:
                raise ConfigError(
                    f"callbacks.{key}", f"unknown callback; allowed names are {sorted(allowed)}"
                )
    else:
        raise ConfigError(
            "callbacks", 'must be a dict like {"on_log": fn} or ak.Callbacks(on_log=fn)'
        )
    for key, value in items.items():
        if value is not None and not callable(value):
            raise ConfigError(f"callbacks.{key}", f"must be callable, got {value!r}")
    return Callbacks(**items)


def make_reconnect(reconnect: Any) -> ReconnectPolicy:
    if reconnect is None:
        return ReconnectPolicy()
    if isinstance(reconnect, ReconnectPolicy):
        return reconnect
    if isinstance(reconnect, Mapping):
        try:
            return ReconnectPolicy(**reconnect)
        except (TypeError, ValueError) as exc:
            raise ConfigError("reconnect", str(exc)) from None
    raise ConfigError("reconnect", "must be ak.ReconnectPolicy(...) or a dict of its fields")


def scaling_options(processes: Any, nodes: Any, backend_kind: str) -> dict[str, Any]:
    """``processes`` / ``nodes``: local-backend keys (torch.distributed); never sent to the cloud."""
    out: dict[str, Any] = {}
    if processes is not None:
        out["processes"] = processes if processes == "auto" else _processes("processes", processes)
    if nodes is not None:
        out["nodes"] = positive_int("nodes", nodes)
    if out and backend_kind != "local":
        raise ConfigError(next(iter(out)), "is a local-backend option (torch.distributed on your "
                          "own machines); the Arkor cloud picks its own GPUs, so leave it out")
    return out


def seed_option(seed: Any, backend_kind: str) -> dict[str, Any]:
    """``seed``: the local worker's random seed (LoRA init, data order); default 42."""
    if seed is None:
        return {}
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ConfigError("seed", f"must be a whole number from 0 to 2**32 - 1, got {seed!r}")
    if backend_kind != "local":
        raise ConfigError("seed", "is a local-backend option; the Arkor cloud picks its own seed, "
                          "so leave it out")
    return {"seed": seed}


def _processes(field: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(field, f'must be a whole number of at least 1 or "auto" (one per GPU), '
                          f"got {value!r}")
    return value
