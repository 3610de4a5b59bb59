"""Structured replies: ``response_format`` JSON object / JSON schema, by constrained decoding.

Uses llguidance (the ``structured`` extra): the schema is compiled to a
grammar once per request, and before each token the grammar's bitmask of
allowed tokens is applied to the logits, so a finished reply always parses
and matches the schema (a reply cut short by ``max_tokens`` is a prefix of
one). Whitespace between JSON tokens is not allowed: small models otherwise
fill their budget with newlines.
"""

from __future__ import annotations

from typing import Any

from arkor_nb.core.errors import ConfigError

INSTALL = "pip install 'arkor-nb[structured]'"


def _llguidance() -> Any:
    try:
        import llguidance
        import llguidance.hf
        import llguidance.torch
    except ImportError as err:
        raise ConfigError("response_format", f"structured replies need llguidance ({err}); "
                                             f"install it with `{INSTALL}`") from None
    return llguidance


class JsonConstraint:
    """Masks logits to the tokens a JSON reply (of one schema) may continue with."""

    def __init__(self, response_format: dict[str, Any], tokenizer: Any, vocab_size: int,
                 stops: set[int], cache: dict[str, Any]) -> None:
        import torch

        llg = _llguidance()
        key = f"lltok:{vocab_size}"
        if key not in cache:  # the tokenizer's trie: built once per loaded model
            eos = sorted(stops) or None
            cache[key] = llg.hf.from_tokenizer(tokenizer, n_vocab=vocab_size, eos_token=eos)
        lltok = cache[key]
        schema = response_format.get("schema") or {"type": "object"}
        try:
            grammar = llg.LLMatcher.grammar_from_json_schema(
                schema, overrides={"whitespace_flexible": False})
        except ValueError as err:
            raise ConfigError("response_format.json_schema", f"is not a usable JSON schema "
                                                             f"({err})") from None
        self._matcher = llg.LLMatcher(lltok, grammar)
        if self._matcher.is_error():
            raise ConfigError("response_format.json_schema",
                              f"cannot be followed: {self._matcher.get_error()}")
        self._torch = torch
        self._fill = llg.torch.fill_next_token_bitmask
        self._bitmask = llg.torch.allocate_token_bitmask(1, vocab_size)
        self._vocab = vocab_size
        self._bits = torch.arange(32, dtype=torch.int32)

    def mask(self, logits: Any) -> Any:
        """``logits`` (1-D, float) with every token the grammar forbids set to -inf."""
        torch = self._torch
        self._fill(self._matcher, self._bitmask, 0)
        allowed = ((self._bitmask[0].unsqueeze(-1) >> self._bits) & 1).bool().flatten()
        allowed = allowed[: logits.shape[-1]]
        if allowed.shape[0] < logits.shape[-1]:
            allowed = torch.cat([allowed, allowed.new_zeros(logits.shape[-1] - allowed.shape[0])])
        return logits.masked_fill(~allowed, float("-inf"))

    def advance(self, token: int) -> bool:
        """Feed the chosen token; False once the reply is complete (or the grammar is stuck)."""
        self._matcher.consume_token(token)
        return not (self._matcher.is_stopped() or self._matcher.is_error())


def json_constraint(response_format: dict[str, Any] | None, tokenizer: Any, vocab_size: int,
                    stops: set[int], cache: dict[str, Any]) -> JsonConstraint | None:
    """The constraint for a parsed ``response_format`` (None: free text)."""
    if not response_format or response_format.get("type") not in ("json_object", "json_schema"):
        return None
    return JsonConstraint(response_format, tokenizer, vocab_size, stops, cache)
