"""Checkpoint samples for the panel: ask each new checkpoint the ``sample_prompts``.

A job ``ak.live`` starts on the local backend gets its replies from the
worker instead (``checkpoint.sample`` events, no model reload); this sampler
then only marks the checkpoint "sampling…" until they arrive.

Fed by the trainer's listener with the :class:`~arkor_nb.core.contexts.CheckpointContext`
items it hears (their ``infer`` posts to the backend), so the user's own
``callbacks`` are never touched. One worker thread: samples are answered in
checkpoint order, off the streaming loop, and a slow sample never delays an
event.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from arkor_nb.notebook.progress import RunState


class Sampler:
    def __init__(self, state: RunState, prompts: list[str], *, max_tokens: int,
                 on_change: Callable[[], None]) -> None:
        self.state = state
        self.prompts = prompts
        self.max_tokens = max_tokens
        self.on_change = on_change  # a reply arrived: redraw (also after the run ended)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="arkor-nb-sampler")

    def mark_pending(self, step: int) -> None:
        """Show "sampling…" for a checkpoint whose replies are still to come."""
        for prompt in self.prompts:
            self.state.set_sample(step, prompt, None)

    def queue(self, ctx: Any) -> None:
        """Listener side (streaming loop): mark the step "sampling…" and hand it to the thread."""
        self.mark_pending(ctx.step)
        self._pool.submit(self._sample, ctx)

    def shutdown(self, *, cancelled: bool) -> None:
        """Finish the pending samples (the snapshot shows them), or drop them after a Cancel."""
        self._pool.shutdown(wait=not cancelled, cancel_futures=cancelled)

    def _sample(self, ctx: Any) -> None:
        for prompt in self.prompts:
            try:
                response = ctx.infer(messages=[{"role": "user", "content": prompt}],
                                     max_tokens=self.max_tokens, stream=False)
                if response.status_code >= 400:
                    raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
                reply = response.json()["choices"][0]["message"]["content"] or ""
                self.state.set_sample(ctx.step, prompt, str(reply))
            except Exception as exc:
                self.state.set_sample(ctx.step, prompt, None, error=f"{type(exc).__name__}: {exc}")
                self.state.note(f"sampling step {ctx.step} failed: {exc}", "warn")
                break
        self.on_change()
