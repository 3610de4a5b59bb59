"""Checkpoint samples: greedy replies to ``samplePrompts`` from the model in memory."""

from __future__ import annotations

import threading
from typing import Any

from arkor_nb.core.events import CheckpointSample
from arkor_nb.local.training.inference import greedy_reply
from arkor_nb.local.training.worker_protocol import WorkerChannel

SAMPLE_MAX_TOKENS = 64  # like ak.live's sampler


def make_sampler(proto: WorkerChannel, config: dict[str, Any], tokenizer: Any, device: str,
                 cancel: threading.Event) -> Any:
    """The checkpoint sampler for ``samplePrompts`` (None without them).

    Replies come from the model in memory (no reload, no server round trip),
    one ``checkpoint.sample`` event per prompt.
    """
    prompts = config.get("samplePrompts")
    if not prompts:
        return None

    max_tokens = int(config.get("sampleMaxTokens", SAMPLE_MAX_TOKENS))

    def sample(model: Any, step: int) -> None:
        for prompt in prompts:
            if cancel.is_set():
                return  # a cancel waits for one reply at most
            reply = greedy_reply(model, tokenizer, prompt, max_tokens=max_tokens, device=device)
            proto.emit(CheckpointSample(step=step, prompt=prompt, reply=reply))

    return sample
