"""Task evals in the worker: score held-out prompts with the model in memory (``taskEval``).

After each checkpoint and at the end, every held-out prompt is answered
greedily, in batches (left padding, KV cache, ``model.generate``), with the
model's chat template, and scored with the same functions as the client
(``core.scorers``); one ``checkpoint.eval`` event carries the metrics.

The eval must not change the run: greedy decoding draws no random numbers,
but the torch, python and numpy RNG states are saved and restored anyway,
gradients are off and the model goes back to its training mode after, so
losses are identical with and without task evals.
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from arkor_nb.core.events import CheckpointEval
from arkor_nb.core.scorers import mean_scores, score_reply
from arkor_nb.core.taskeval import EXAMPLES_SHOWN, eval_pairs
from arkor_nb.local.training.inference import prompt_ids, stop_ids
from arkor_nb.local.training.worker_protocol import WorkerChannel

EVAL_BATCH = 16  # prompts per generate call; ARKOR_NB_EVAL_BATCH overrides (benchmarks: 1)


@contextmanager
def rng_untouched(device: str) -> Iterator[None]:
    """Whatever runs inside leaves torch (CPU and CUDA), python and numpy RNG states as found."""
    import numpy as np
    import torch

    py_state = random.getstate()
    np_state = np.random.get_state()
    torch_state = torch.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.set_rng_state(torch_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)


def generate_batch(model: Any, tokenizer: Any, prompts: list[list[int]], *, max_tokens: int,
                   device: Any) -> list[str]:
    """Greedy replies to token-id prompts in one left-padded ``generate`` call."""
    import torch

    stops = sorted(stop_ids(tokenizer, model))
    pad = tokenizer.pad_token_id
    if pad is None:
        pad = stops[0] if stops else 0
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt):] = torch.tensor(prompt, dtype=torch.long)
        mask[row, width - len(prompt):] = 1
    out = model.generate(
        input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_tokens,
        do_sample=False, num_beams=1, use_cache=True, pad_token_id=pad,
        eos_token_id=stops or None, temperature=None, top_p=None, top_k=None,
    )
    replies = []
    for row in out[:, width:].tolist():
        tokens = []
        for token in row:
            if token in stops:
                break
            tokens.append(token)
        replies.append(tokenizer.decode(tokens, skip_special_tokens=True))
    return replies


def answer_all(model: Any, tokenizer: Any, prompts: list[list[int]], *, max_tokens: int, device: Any,
               batch: int = EVAL_BATCH, cancel: threading.Event | None = None) -> list[str] | None:
    """Every prompt's greedy reply (None when cancelled between batches), RNG and mode untouched."""
    import torch

    was_training = model.training
    model.eval()
    replies: list[str] = []
    try:
        with rng_untouched(str(device)), torch.no_grad():
            for start in range(0, len(prompts), batch):
                if cancel is not None and cancel.is_set():
                    return None
                replies += generate_batch(model, tokenizer, prompts[start:start + batch],
                                          max_tokens=max_tokens, device=device)
    finally:
        model.train(was_training)
    return replies


def eval_batch() -> int:
    """Prompts per ``generate`` call (``ARKOR_NB_EVAL_BATCH`` overrides)."""
    return max(1, int(os.environ.get("ARKOR_NB_EVAL_BATCH", EVAL_BATCH)))


def eval_batch_rows(config: dict[str, Any]) -> int:
    """Rows of the job's widest eval batch (0 without ``taskEval``)."""
    spec = config.get("taskEval")
    return min(eval_batch(), len(spec["rows"])) if spec else 0


def make_evaluator(proto: WorkerChannel, config: dict[str, Any], tokenizer: Any, device: str,
                   cancel: threading.Event, *, limit: int) -> Any:
    """``evaluate(model, step)`` for the job's ``taskEval`` (None without one)."""
    spec = config.get("taskEval")
    if not spec:
        return None
    pairs = eval_pairs(spec["rows"], "taskEval.rows")
    scorers = list(spec["scorers"])
    max_tokens = int(spec["maxTokens"])
    shown = len(pairs) if spec.get("allExamples") else EXAMPLES_SHOWN
    room = max(1, limit - max_tokens)
    prompts = [prompt_ids(tokenizer, pair.messages)[-room:] for pair in pairs]

    batch = eval_batch()

    def evaluate(model: Any, step: int) -> None:
        replies = answer_all(model, tokenizer, prompts, max_tokens=max_tokens, device=device,
                             batch=batch, cancel=cancel)
        if replies is None:
            return
        per_reply = [score_reply(scorers, pair.expected, reply) for pair, reply in zip(pairs, replies, strict=True)]
        examples = [{"prompt": pair.prompt, "expected": pair.expected, "reply": reply, "scores": scores}
                    for pair, reply, scores in zip(pairs[:shown], replies, per_reply, strict=False)]
        proto.emit(CheckpointEval(step=step, metrics=mean_scores(per_reply), n=len(pairs),
                                  examples=examples))

    return evaluate
