"""Which models a job may load: built-in, local folders and .gguf files, hub ids.

A model that would run remote code is refused; a hub id is checked against
the local cache first and against the hub only when it is online.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from arkor_nb.core.errors import ConfigError
from arkor_nb.local.training import gguf_cache
from arkor_nb.local.training.models import BUILTIN_MODELS, SMOLLM2_MODEL_ID, smollm2_gguf

LOCAL_MODEL_HINT = ("a local folder saved with save_pretrained, a .gguf file, "
                    "'arkor-nb/smollm2-135m-instruct' or 'arkor-nb/tiny'")


def check_model(model: Any, home: Path, *, field: str = "model") -> str:
    """A usable model id: built-in, a local folder or .gguf file, or a (cached) hub id."""
    if not isinstance(model, str) or not model.strip():
        raise ConfigError(field, f"is required: a Hugging Face model id, {LOCAL_MODEL_HINT}")
    model = model.strip()
    if model == SMOLLM2_MODEL_ID:
        gguf_cache.check_gguf(smollm2_gguf(field), field)
        return model
    if model in BUILTIN_MODELS:
        return model
    if len(model) > 1024 or "\x00" in model:
        raise ConfigError("model", "is not a usable model id or directory (too long, or contains a "
                          f"NUL byte); pass a Hugging Face id, {LOCAL_MODEL_HINT}")
    path = Path(model).expanduser()
    looks_local = (model.startswith((".", "/", "~")) or (os.sep != "/" and os.sep in model)
                   or model.lower().endswith(".gguf"))
    try:
        exists = path.exists()
    except OSError as exc:  # e.g. a path component longer than the filesystem allows
        raise ConfigError("model", f"cannot use {model[:80]!r} as a local model directory "
                          f"({exc.strerror}); check the path") from None
    if exists or looks_local:
        if not path.exists():
            raise ConfigError(field, f"local model path {model!r} does not exist; check the path, "
                              f"or use a Hugging Face id, {LOCAL_MODEL_HINT}")
        gguf_file = gguf_cache.find_gguf(path, field)
        if gguf_file is not None:
            gguf_cache.check_gguf(gguf_file, field)
            return str(path.resolve())
        if not path.is_dir():
            raise ConfigError(field, f"local model path {model!r} is neither a folder nor a .gguf "
                              "file; point it at a folder saved with save_pretrained "
                              "(config.json + weights) or at a .gguf file")
        cfg_file = path / "config.json"
        if not cfg_file.is_file():
            raise ConfigError(field, f"{model!r} has no config.json and no .gguf file; save the "
                              "model with save_pretrained, or point at a .gguf file")
        _check_no_remote_code(cfg_file, model, field)
        return str(path.resolve())
    if model.count("/") > 1 or " " in model:
        raise ConfigError(field, f"{model!r} is neither a local directory nor a Hugging Face id "
                          "like 'HuggingFaceTB/SmolLM2-135M'")
    try:
        cached = _hf_cached_config(model)
    except ValueError:  # huggingface_hub's HFValidationError: not a valid repo id
        raise ConfigError("model", f"{model[:80]!r} is not a valid Hugging Face id (like "
                          f"'HuggingFaceTB/SmolLM2-135M'), {LOCAL_MODEL_HINT}") from None
    if cached is not None:
        _check_no_remote_code(cached, model, field)
        return model
    if os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True") or os.environ.get("TRANSFORMERS_OFFLINE") in ("1", "true"):
        raise ConfigError(field, f"{model!r} is not in the local Hugging Face cache and the hub is "
                          "offline (HF_HUB_OFFLINE); download it first while online "
                          f"(hf download {model}), or use {LOCAL_MODEL_HINT}")
    _check_on_hub(model, field)
    return model


def _check_on_hub(model: str, field: str) -> None:
    """Ask the hub whether ``model`` exists, telling "no such id" from "no network"."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        HfApi().model_info(model, timeout=10)
    except GatedRepoError:
        raise ConfigError(field, f"{model!r} is gated on the Hugging Face hub; accept its terms "
                          "on the model page and log in (hf auth login)") from None
    except RepositoryNotFoundError:
        raise ConfigError(field, f"{model!r} does not exist on the Hugging Face hub (or is "
                          f"private); check the id, or use {LOCAL_MODEL_HINT}") from None
    except Exception as exc:  # noqa: BLE001 - anything else: the hub could not be asked
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status is not None and status < 500:
            raise ConfigError(field, f"the Hugging Face hub refused to look up {model!r} (HTTP "
                              f"{status}); check the id and your token, or use "
                              f"{LOCAL_MODEL_HINT}") from None
        raise ConfigError(field, f"cannot reach the Hugging Face hub to fetch {model!r} "
                          f"({type(exc).__name__}): the network is missing, not the id. "
                          "To work offline, use a local folder saved with save_pretrained, "
                          "a .gguf file, 'arkor-nb/smollm2-135m-instruct', or set "
                          "HF_HUB_OFFLINE=1 with the model already in the Hugging Face cache "
                          f"(hf download {model} while online)") from None


def _hf_cached_config(model: str) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover
        return None
    found = try_to_load_from_cache(model, "config.json")
    return Path(found) if isinstance(found, str) else None


def _check_no_remote_code(cfg_file: Path, model: str, field: str = "model") -> None:
    try:
        data = json.loads(cfg_file.read_text())
    except (OSError, json.JSONDecodeError):
        raise ConfigError(field, f"{model!r} has an unreadable config.json") from None
    if "auto_map" in data:
        raise ConfigError(field, f"{model!r} needs custom code (trust_remote_code), which the local "
                          "backend never runs; pick a model supported by transformers itself")
