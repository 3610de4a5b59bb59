"""Rows -> token ids with the model's chat template, and batches of them."""

from __future__ import annotations

from typing import Any


def _render(tokenizer: Any, messages: list[dict[str, str]], *, gen_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen_prompt)


def row_text_and_spans(row: dict[str, Any], tokenizer: Any) -> tuple[str, list[tuple[int, int]]]:
    """The training text of a row and the character spans of what the model should say.

    Spans come from rendering the conversation prefix by prefix, so any chat
    template works (no ``{% generation %}`` tags needed).
    """
    eos = tokenizer.eos_token or ""
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if "text" in row:
        text = row["text"] + eos
        return text, [(0, len(text))]
    if "messages" in row:
        messages = row["messages"]
    else:
        messages = [{"role": "user", "content": row["prompt"]},
                    {"role": "assistant", "content": row["completion"]}]
        if row.get("system"):
            messages.insert(0, {"role": "system", "content": row["system"]})
    if not has_template:
        text, spans = "", []
        for msg in messages:
            piece = msg["content"] + ("" if msg["role"] != "assistant" else eos) + "\n"
            if msg["role"] == "assistant":
                spans.append((len(text), len(text) + len(piece) - 1))
            text += piece
        return text, spans
    full = _render(tokenizer, messages)
    spans = []
    for i, msg in enumerate(messages):
        if msg["role"] != "assistant":
            continue
        start = len(_render(tokenizer, messages[:i], gen_prompt=True)) if i else 0
        end = len(_render(tokenizer, messages[: i + 1]))
        if full.startswith(_render(tokenizer, messages[: i + 1])):
            spans.append((start, end))
    return full, spans


def encode_row(
    row: dict[str, Any], tokenizer: Any, max_length: int, responses_only: bool
) -> dict[str, list[int]] | None:
    """Token ids + labels (-100 outside assistant spans when ``responses_only``).

    Returns None when truncation leaves nothing to learn from.
    """
    text, spans = row_text_and_spans(row, tokenizer)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = list(enc["input_ids"])[:max_length]
    offsets = list(enc["offset_mapping"])[:max_length]
    if responses_only:
        labels = [
            tid if any(s <= start < e for s, e in spans) else -100
            for tid, (start, _end) in zip(ids, offsets, strict=True)
        ]
    else:
        labels = list(ids)
    if all(label == -100 for label in labels):
        return None
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}


def collate(features: list[dict[str, list[int]]], pad_id: int) -> dict[str, Any]:
    """Right-pad a batch (labels with -100, so padding never counts in the loss)."""
    import torch

    width = max(len(f["input_ids"]) for f in features)
    out: dict[str, list[list[int]]] = {"input_ids": [], "attention_mask": [], "labels": []}
    for f in features:
        pad = width - len(f["input_ids"])
        out["input_ids"].append(f["input_ids"] + [pad_id] * pad)
        out["attention_mask"].append(f["attention_mask"] + [0] * pad)
        out["labels"].append(f["labels"] + [-100] * pad)
    return {k: torch.tensor(v) for k, v in out.items()}
