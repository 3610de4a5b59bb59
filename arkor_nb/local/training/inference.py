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
from arkor_nb.local.training.structured import json_constraint

DEFAULT_MAX_TOKENS = 128
MAX_TOKENS_LIMIT = 4096  # the one limit: the chat routes check against it too
TEMPERATURE_MAX = 5.0
# Below this, logits / temperature overflows float32 (1e-38 gave "probability
# tensor contains inf"); such a temperature is greedy in all but name.
GREEDY_BELOW = 1e-6
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
    name: str = ""
    cache: dict[str, Any] = field(default_factory=dict)  # per-model helpers (token trie, ...)


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
            loaded = _Loaded(model=model, tokenizer=tokenizer, device=device, cache_kw=cache_kw,
                             name=base)
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
        top_p: float | None = None,
        response_format: dict[str, Any] | None = None,
    ) -> Iterator[str]:
        """Yield the reply as text pieces. Argument errors raise before the first piece."""
        _check_messages(messages)
        temperature, top_p, max_tokens = check_sampling(temperature, top_p, max_tokens)
        adapter = self.adapter_dir(target, job_dir)
        loaded = self._load(self._base_for(target, adapter))
        name = self._adapter_name(loaded, adapter) if adapter is not None else None
        return self._generate(loaded, name, messages, temperature, top_p, max_tokens,
                              response_format)

    def chat(self, **kwargs: Any) -> str:
        """The whole reply at once (for non-streaming answers)."""
        return "".join(self.stream_chat(**kwargs))

    def _generate(self, loaded: _Loaded, adapter: str | None, messages: list[dict[str, Any]],
                  temperature: float, top_p: float, max_tokens: int,
                  response_format: dict[str, Any] | None) -> Iterator[str]:
        import torch

        tok = loaded.tokenizer
        ids_in = _capped_prompt_ids(loaded, messages)
        limit = context_length(loaded.model)
        max_tokens = max(1, min(max_tokens, limit - len(ids_in)))
        stops = stop_ids(loaded.tokenizer, loaded.model)
        vocab = int(loaded.model.get_output_embeddings().weight.shape[0])
        constraint = json_constraint(response_format, tok, vocab, stops, loaded.cache)
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
                if constraint is not None:
                    logits = constraint.mask(logits)
                nxt = _pick(logits, temperature, top_p, generator)
                if nxt in stops:
                    break
                out.append(nxt)
                more = constraint.advance(nxt) if constraint is not None else True
                text = tok.decode(out, skip_special_tokens=True)
                if not text.endswith("\ufffd") and len(text) > len(sent):
                    # (a trailing U+FFFD is half a multi-byte character: wait for the rest)
                    yield text[len(sent):]
                    sent = text
                if not more:
                    break
                ids = torch.tensor([[nxt]], device=loaded.device)

        return run()


def check_sampling(temperature: Any, top_p: Any, max_tokens: Any) -> tuple[float, float, int]:
    """(temperature, top_p, max_tokens) with defaults, or ConfigError naming the bad one."""
    def number(value: Any) -> bool:
        return not isinstance(value, bool) and isinstance(value, (int, float))

    if temperature is not None and not (number(temperature) and 0 <= temperature <= TEMPERATURE_MAX):
        raise ConfigError("temperature", f"must be a number between 0 and {TEMPERATURE_MAX:g} "
                                         f"(0 = greedy), got {temperature!r}")
    if top_p is not None and not (number(top_p) and 0 < top_p <= 1):
        raise ConfigError("top_p", f"must be a number above 0 and at most 1, got {top_p!r}")
    if max_tokens is None:
        max_tokens = DEFAULT_MAX_TOKENS
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 1 <= max_tokens <= MAX_TOKENS_LIMIT:
        raise ConfigError("maxTokens", f"must be an integer between 1 and {MAX_TOKENS_LIMIT}, "
                                       f"got {max_tokens!r}")
    return float(temperature or 0.0), float(1.0 if top_p is None else top_p), max_tokens


def _pick(logits: Any, temperature: float, top_p: float, generator: Any) -> int:
    """The next token: greedy below GREEDY_BELOW, else sampled (nucleus when top_p < 1)."""
    import torch

    if temperature < GREEDY_BELOW:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits.double() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < top_p  # the smallest nucleus
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_probs[keep])
    if not torch.isfinite(probs).all() or float(probs.sum()) <= 0:
        return int(torch.argmax(logits))
    return int(torch.multinomial(probs, 1, generator=generator))


def context_length(model: Any) -> int:
    """How many tokens (prompt + reply) the model reads."""
    return int(getattr(model.config, "max_position_embeddings", None) or 1_000_000)


def _capped_prompt_ids(loaded: _Loaded, messages: list[dict[str, Any]]) -> list[int]:
    """The prompt's tokens, or ConfigError when they (and one reply token) exceed the context.

    A prompt far too long is refused before tokenizing (no token covers more
    characters than the longest vocabulary entry), so a 7 MB prompt costs
    neither time nor memory."""
    limit = context_length(loaded.model)
    chars = sum(len(m["content"]) for m in messages)
    if "max_token_chars" not in loaded.cache:
        vocab = loaded.tokenizer.get_vocab()
        loaded.cache["max_token_chars"] = max((len(t) for t in vocab), default=1) or 1
    at_least = chars // loaded.cache["max_token_chars"]
    if at_least >= limit:
        raise ConfigError("messages", f"the messages ({chars:,} characters, at least {at_least:,} "
                                      f"tokens) do not fit {loaded.name}'s context of {limit:,} "
                                      "tokens; send a shorter prompt")
    ids = prompt_ids(loaded.tokenizer, messages)
    if len(ids) >= limit:
        raise ConfigError("messages", f"the prompt is {len(ids):,} tokens, and "
                                      f"{loaded.name} reads at most {limit:,} (prompt and reply "
                                      "together); send a shorter prompt")
    return ids


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
