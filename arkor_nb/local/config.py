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
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from arkor_nb.errors import ConfigError
from arkor_nb.local import datasets as ds
from arkor_nb.local.models import BUILTIN_MODELS, SYNTHETIC_MODEL_ID
from arkor_nb.types import DATASET_SOURCE_KEYS, KEYWORD_OF, LOCAL_CONFIG_KEYS, WIRE_CONFIG_KEYS

MAX_STEPS = 1_000_000
KNOWN_KEYS = WIRE_CONFIG_KEYS + tuple(LOCAL_CONFIG_KEYS.values())
MAX_SAMPLE_PROMPTS = 16
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


# Never implicit data roots, even when the server runs in them (a server
# started from "/" inherits it as its working directory): the filesystem root
# and the system's own folders. ARKOR_NB_DATA_ROOTS may still list any folder
# but the root.
_ROOT = Path("/")
SYSTEM_DIRS = frozenset(Path(p) for p in (
    "/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc",
    "/run", "/sbin", "/sys", "/usr", "/var",
))


def _is_system(path: Path) -> bool:
    """The root, a system folder, or inside one (the temp dir excepted)."""
    temp = Path(tempfile.gettempdir()).resolve()
    if path == temp or path.is_relative_to(temp):
        return False
    return path in SYSTEM_DIRS or any(d != _ROOT and path.is_relative_to(d) for d in SYSTEM_DIRS)


def allowed_roots(home: Path) -> list[Path]:
    """Directories a dataset file may live in (after resolving symlinks).

    The working directory, the user's home, the arkor-nb home and the temp dir,
    unless one of them is the filesystem root or a system folder; plus any
    listed in ``ARKOR_NB_DATA_ROOTS`` (os.pathsep separated; any folder but
    the root).
    """
    implicit = [Path.cwd(), Path.home(), Path(home), Path(tempfile.gettempdir())]
    roots = [r for r in (p.expanduser().resolve() for p in implicit) if not _is_system(r)]
    extra = os.environ.get("ARKOR_NB_DATA_ROOTS", "")
    explicit = (Path(p).expanduser().resolve() for p in extra.split(os.pathsep) if p)
    roots += [r for r in explicit if r != _ROOT]
    return roots


def validate_config(config: dict[str, Any], *, home: Path) -> dict[str, Any]:
    """Check a wire config; return it normalised (dataset paths absolute, model id stripped).

    A refusal names the wire key and, where it differs, the Python keyword the
    user typed (``learningRate`` -> ``learning_rate=``).
    """
    try:
        return _validate(config, home)
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


def _validate(config: dict[str, Any], home: Path) -> dict[str, Any]:
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

    try:
        fmt = ds.parse_format(out.get("datasetFormat"))
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
        out["datasetSource"] = _dataset(source, fmt, split, Path(home), check_rows=not synthetic)
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


# ------------------------------------------------------------------- model


LOCAL_MODEL_HINT = ("a local folder saved with save_pretrained, a .gguf file, "
                    "'arkor-nb/smollm2-135m-instruct' or 'arkor-nb/tiny'")


def check_model(model: Any, home: Path, *, field: str = "model") -> str:
    """A usable model id: built-in, a local folder or .gguf file, or a (cached) hub id."""
    from arkor_nb.local import gguf_cache
    from arkor_nb.local.models import SMOLLM2_MODEL_ID, smollm2_gguf

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


# ----------------------------------------------------------------- dataset


def resolve_data_path(path: Any, field: str, home: Path) -> Path:
    """An existing, readable dataset file inside the allowed roots (symlinks resolved)."""
    if not isinstance(path, str) or not path.strip():
        raise ConfigError(field, "must be a file path like 'data/triage.jsonl'")
    raw = Path(path).expanduser()
    relative = not raw.is_absolute()
    if relative:
        raw = Path.cwd() / raw
    try:
        real = raw.resolve(strict=True)
    except (FileNotFoundError, RuntimeError):
        where = (f"a relative path sent over HTTP is resolved against the server's working "
                 f"directory {Path.cwd()}; send an absolute path" if relative else
                 "arkor_nb resolves a relative path against the folder your Python process "
                 "runs in, os.getcwd(), before sending it")
        raise ConfigError(field, f"file not found: {raw}; check the path ({where})") from None
    except (OSError, ValueError) as exc:  # name too long, NUL byte, ...
        raise ConfigError(field, f"cannot use {path[:80]!r} as a dataset file ({exc}); "
                          "pass a path like 'data/triage.jsonl'") from None
    roots = allowed_roots(home)
    if not any(real == r or real.is_relative_to(r) for r in roots):
        why = " (a system folder, never a data folder by itself)" if _is_system(real) else ""
        fix = "copy the file under your home or working directory"
        if real.parent != _ROOT:
            fix += (", or add its folder to ARKOR_NB_DATA_ROOTS where the server starts "
                    f"(ARKOR_NB_DATA_ROOTS={real.parent})")
        allowed = ", ".join(map(str, roots)) or "none"
        raise ConfigError(field, f"{path!r} resolves to {real}, outside the allowed data "
                          f"folders{why} (allowed: {allowed}); {fix}")
    if not real.is_file():
        raise ConfigError(field, f"{path!r} is not a regular file")
    if ds.file_format(real) is None:
        raise ConfigError(field, f"unsupported file type {real.suffix!r}; use one of "
                          f"{', '.join(sorted(ds.FILE_FORMATS))}")
    if not os.access(real, os.R_OK):
        raise ConfigError(field, f"{path!r} is not readable; check its permissions")
    return real


def _dataset(source: Any, fmt: ds.RowFormat, split: Any, home: Path, *, check_rows: bool) -> dict[str, Any]:
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
            _check_file_rows(Path(out["path"]), fmt, f"{field}.path")
            if out.get("evalPath"):
                _check_file_rows(Path(out["evalPath"]), fmt, f"{field}.evalPath")
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
        if "format" in source and source["format"] not in set(ds.FILE_FORMATS.values()):
            raise ConfigError(f"{field}.format", f"use one of {sorted(set(ds.FILE_FORMATS.values()))}")
    return out


def _check_file_rows(path: Path, fmt: ds.RowFormat, field: str) -> None:
    def limited() -> Any:
        for i, item in enumerate(ds.iter_file_rows(path)):
            if i >= MAX_ROWS_CHECKED:
                return
            yield item

    try:
        good, errors = ds.check_rows(limited(), fmt)
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
