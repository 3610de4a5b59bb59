"""Chat with a base model, a job's final adapter or any of its checkpoints.

One ``InferenceEngine`` per server. A base model is loaded once and wrapped
in a peft model holding every adapter asked for (LRU-bounded), so sampling
ten checkpoints of one run costs ten small adapter loads, not ten models.
Generation is a manual token loop: each step takes the base model's lock,
switches to the stream's adapter and runs one forward pass, so concurrent
streams interleave safely, and a consumer that stops iterating stops the
work at once (nothing keeps generating in a background thread).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arkor_nb.core.errors import ConfigError
from arkor_nb.local.data.rows import ROLES
from arkor_nb.local.model_check import check_model
from arkor_nb.local.training.models import (
    SYNTHETIC_MODEL_ID,
    load_model_and_tokenizer,
    pick_device,
    resolve_model,
)

DEFAULT_MAX_TOKENS = 128
MAX_TOKENS_LIMIT = 4096
MAX_BASES = 2
MAX_ADAPTERS = 16


@dataclass
class _Loaded:
    """A base model (possibly wrapped by peft), its tokenizer and its adapters."""

    model: Any
    tokenizer: Any
    device: str
    cache_kw: str = "past_key_values"  # transformers 5.x renamed it to "cache"
    lock: threading.Lock = field(default_factory=threading.Lock)
    adapters: OrderedDict[str, str] = field(default_factory=OrderedDict)  # name -> dir


class InferenceEngine:
    """Thread-safe, cached model + adapter loading and streaming chat."""

    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self._lock = threading.RLock()
        self._bases: OrderedDict[str, _Loaded] = OrderedDict()

    # ------------------------------------------------------------ targets

    def adapter_dir(self, target: dict[str, Any], job_dir: Callable[[str], Path]) -> Path | None:
        """The adapter folder a target names (None for a base model); ConfigError if missing."""
        kind = target.get("kind")
        if kind == "base":
            return None
        if kind not in ("checkpoint", "final"):
            raise ConfigError("adapter.kind", f"unknown target {kind!r}; use 'base', 'checkpoint' or 'final'")
        job_id = target.get("jobId")
        if not isinstance(job_id, str) or not job_id:
            raise ConfigError("adapter.jobId", "is required: the id of a training job")
        try:
            root = Path(job_dir(job_id))
        except ConfigError:
            raise
        except (KeyError, LookupError, ValueError) as exc:
            raise ConfigError("adapter.jobId", f"unknown job {job_id!r} ({exc})") from None
        if not root.is_dir():
            raise ConfigError("adapter.jobId", f"job {job_id!r} has no files on this server")
        if kind == "final":
            path = root / "adapter"
            if not (path / "adapter_config.json").is_file():
                raise ConfigError("adapter", f"job {job_id!r} has no final adapter (it has not completed); "
                                  "sample a checkpoint instead")
            return path
        step = target.get("step")
        if isinstance(step, bool) or not isinstance(step, int):
            raise ConfigError("adapter.step", "must be the whole-number step of a saved checkpoint")
        path = root / "checkpoints" / f"step-{step}"
        if not (path / "adapter_config.json").is_file():
            steps = sorted(int(p.name[5:]) for p in (root / "checkpoints").glob("step-*")
                           if p.name[5:].isdigit())
            raise ConfigError("adapter.step", f"job {job_id!r} has no checkpoint at step {step}; "
                              f"saved steps: {steps or 'none yet'}")
        return path

    def _base_for(self, target: dict[str, Any], adapter: Path | None) -> str:
        """The model path/id to load for a target."""
        if adapter is None:
            model = target.get("model")
            checked = check_model(model, self.home, field="baseModel")
            if checked == SYNTHETIC_MODEL_ID:
                raise ConfigError("baseModel", f"{SYNTHETIC_MODEL_ID} has no weights to chat with; "
                                  "use 'arkor-nb/tiny' or a real model")
            return resolve_model(checked, self.home)
        meta = adapter.parent.parent / "adapter" / "arkor_nb.json"
        cfg = json.loads((adapter / "adapter_config.json").read_text())
        base = cfg.get("base_model_name_or_path")
        if base and (Path(base).is_dir() or not base.startswith("/")):
            return str(base)
        if meta.is_file():  # base moved (e.g. a new home): fall back to the model id
            return resolve_model(json.loads(meta.read_text())["model"], self.home)
        raise ConfigError("adapter", f"the base model of {adapter} ({base}) is no longer available")

    # ------------------------------------------------------------ loading

    def _load(self, base: str) -> _Loaded:
        with self._lock:
            loaded = self._bases.get(base)
            if loaded is not None:
                self._bases.move_to_end(base)
                return loaded
            import torch

            device = pick_device()
            if device == "cpu":
                torch.set_num_threads(max(1, int(os.environ.get("ARKOR_NB_TORCH_THREADS", "1"))))
            model, tokenizer = load_model_and_tokenizer(base, device)
            model.eval()

            params = inspect.signature(model.forward).parameters
            cache_kw = "cache" if "cache" in params else "past_key_values"
            loaded = _Loaded(model=model, tokenizer=tokenizer, device=device, cache_kw=cache_kw)
            self._bases[base] = loaded
            while len(self._bases) > MAX_BASES:
                self._bases.popitem(last=False)
            return loaded

    def _adapter_name(self, loaded: _Loaded, adapter: Path) -> str:
        """Load (once) and return the peft adapter name for a folder."""
        from peft import PeftModel

        path = str(adapter.resolve())
        name = "a" + hashlib.sha1(path.encode()).hexdigest()[:16]
        with loaded.lock:
            if name in loaded.adapters:
                loaded.adapters.move_to_end(name)
                return name
            if isinstance(loaded.model, PeftModel):
                loaded.model.load_adapter(path, adapter_name=name, is_trainable=False)
            else:
                loaded.model = PeftModel.from_pretrained(loaded.model, path, adapter_name=name,
                                                         is_trainable=False)
            loaded.model.eval()
            loaded.adapters[name] = path
            while len(loaded.adapters) > MAX_ADAPTERS:
                old, _ = loaded.adapters.popitem(last=False)
                loaded.model.delete_adapter(old)
            return name

    # --------------------------------------------------------------- chat

    def stream_chat(
        self,
        *,
        target: dict[str, Any],
        messages: list[dict[str, Any]],
        temperature: float | None = None,
        max_tokens: int | None = None,
        job_dir: Callable[[str], Path],
    ) -> Iterator[str]:
        """Yield the reply as text pieces. Argument errors raise before the first piece."""
        _check_messages(messages)
        if temperature is not None and (isinstance(temperature, bool) or not isinstance(temperature, (int, float))
                                        or not 0 <= temperature <= 5):
            raise ConfigError("temperature", "must be a number between 0 and 5 (0 = greedy)")
        if max_tokens is None:
            max_tokens = DEFAULT_MAX_TOKENS
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 1 <= max_tokens <= MAX_TOKENS_LIMIT:
            raise ConfigError("maxTokens", f"must be a whole number between 1 and {MAX_TOKENS_LIMIT}")
        adapter = self.adapter_dir(target, job_dir)
        loaded = self._load(self._base_for(target, adapter))
        name = self._adapter_name(loaded, adapter) if adapter is not None else None
        return self._generate(loaded, name, messages, temperature or 0.0, max_tokens)

    def chat(self, **kwargs: Any) -> str:
        """The whole reply at once (for non-streaming answers)."""
        return "".join(self.stream_chat(**kwargs))

    def _generate(self, loaded: _Loaded, adapter: str | None, messages: list[dict[str, Any]],
                  temperature: float, max_tokens: int) -> Iterator[str]:
        import torch

        tok = loaded.tokenizer
        ids_in = prompt_ids(tok, messages)
        limit = getattr(loaded.model.config, "max_position_embeddings", None) or 1_000_000
        max_tokens = max(1, min(max_tokens, limit - 1))
        ids_in = ids_in[-(limit - max_tokens):]
        stops = stop_ids(loaded.tokenizer, loaded.model)
        generator = torch.Generator().manual_seed(int.from_bytes(os.urandom(4), "little"))

        def run() -> Iterator[str]:
            ids = torch.tensor([ids_in], device=loaded.device)
            past: Any = None
            out: list[int] = []
            sent = ""
            for _ in range(max_tokens):
                with loaded.lock, torch.no_grad(), _adapter_ctx(loaded, adapter):
                    result = loaded.model(input_ids=ids, use_cache=True, **{loaded.cache_kw: past})
                past = getattr(result, loaded.cache_kw)
                logits = result.logits[0, -1].float().cpu()
                if temperature > 0:
                    probs = torch.softmax(logits / temperature, dim=-1)
                    nxt = int(torch.multinomial(probs, 1, generator=generator))
                else:
                    nxt = int(torch.argmax(logits))
                if nxt in stops:
                    break
                out.append(nxt)
                text = tok.decode(out, skip_special_tokens=True)
                if text.endswith("\ufffd"):
                    continue  # half a multi-byte character: wait for the rest
                if len(text) > len(sent):
                    yield text[len(sent):]
                    sent = text
                ids = torch.tensor([[nxt]], device=loaded.device)

        return run()


def _adapter_ctx(loaded: _Loaded, adapter: str | None) -> Any:
    """Select the stream's adapter (or none) for one forward pass; caller holds the lock."""
    model = loaded.model
    if adapter is not None:
        if model.active_adapter != adapter:
            model.set_adapter(adapter)
        return nullcontext()
    if hasattr(model, "disable_adapter") and loaded.adapters:
        return model.disable_adapter()
    return nullcontext()


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise ConfigError("messages", 'must be a non-empty list like [{"role": "user", "content": "Hi"}]')
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("role") not in ROLES or not isinstance(msg.get("content"), str):
            raise ConfigError("messages", f"message {i} needs a role ({', '.join(sorted(ROLES))}) and "
                              "string content")


def prompt_ids(tokenizer: Any, messages: list[dict[str, Any]]) -> list[int]:
    msgs = [{"role": m["role"], "content": m["content"]} for m in messages]
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    else:
        text = "".join(m["content"] + "\n" for m in msgs)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def stop_ids(tokenizer: Any, model: Any) -> set[int]:
    """Token ids that end a reply (the tokenizer's and the model's end-of-sequence)."""
    stops: set[int] = set()
    for value in (tokenizer.eos_token_id,
                  getattr(getattr(model, "generation_config", None), "eos_token_id", None)):
        if isinstance(value, int):
            stops.add(value)
        elif isinstance(value, list):
            stops.update(v for v in value if isinstance(v, int))
    return stops


def greedy_reply(model: Any, tokenizer: Any, prompt: str, *, max_tokens: int, device: Any) -> str:
    """One greedy chat reply from a model already in memory (the worker's checkpoint samples).

    Same chat template and stop tokens as the server's chat. The model is put
    in eval mode for the reply and back in its previous mode after, and greedy
    decoding draws no random numbers, so training goes on exactly as without it.
    """
    import torch

    ids_in = prompt_ids(tokenizer, [{"role": "user", "content": prompt}])
    limit = getattr(model.config, "max_position_embeddings", None) or 1_000_000
    max_tokens = max(1, min(max_tokens, limit - 1))
    ids = torch.tensor([ids_in[-(limit - max_tokens):]], device=device)
    stops = stop_ids(tokenizer, model)
    params = inspect.signature(model.get_base_model().forward if hasattr(model, "get_base_model")
                               else model.forward).parameters
    cache_kw = "cache" if "cache" in params else "past_key_values"
    was_training = model.training
    model.eval()
    out: list[int] = []
    past: Any = None
    try:
        with torch.no_grad():
            for _ in range(max_tokens):
                result = model(input_ids=ids, use_cache=True, **{cache_kw: past})
                past = getattr(result, cache_kw)
                nxt = int(torch.argmax(result.logits[0, -1]))
                if nxt in stops:
                    break
                out.append(nxt)
                ids = torch.tensor([[nxt]], device=device)
    finally:
        model.train(was_training)
    return tokenizer.decode(out, skip_special_tokens=True)
