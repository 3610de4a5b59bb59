"""Synthetic training worker: the stdio protocol without a model.

Used when ``config.model == "arkor-nb/synthetic"``. It emits the same event
sequence a real run does (started, paced logs with a falling loss, eval logs
at ``evalSteps``, checkpoints at ``saveSteps`` written to disk, one terminal
event) through the same server, store and stream code, so panel, stream and
load tests run in milliseconds per step and without torch.

Pace: ``ARKOR_NB_SYNTHETIC_STEP_S`` seconds per step (default 0.01; 0 = as
fast as possible). ``cancel`` on stdin (or EOF: the server went away) stops
the run after the current step with ``training.cancelled``.
``ARKOR_NB_SYNTHETIC_FAIL_AT_STEP=N`` makes the run end with
``training.failed`` at step N (to exercise failure paths).
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from arkor_nb.core.events import (
    CheckpointSample,
    CheckpointSaved,
    TrainingCancelled,
    TrainingCompleted,
    TrainingEvent,
    TrainingFailed,
    TrainingLog,
    TrainingStarted,
)
from arkor_nb.local.training.worker_protocol import JobSpec, WorkerChannel

DEFAULT_STEP_S = 0.01
DEFAULT_MAX_STEPS = 100


def _int(config: dict[str, Any], key: str, default: int | None) -> int | None:
    value = config.get(key)
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def _save(job_dir: Path, rel: str, step: int, config: dict[str, Any]) -> None:
    target = job_dir / rel
    target.mkdir(parents=True, exist_ok=True)
    meta = {"synthetic": True, "step": step, "base_model_name_or_path": config.get("model"),
            "r": config.get("loraR", 16), "lora_alpha": config.get("loraAlpha", 16)}
    (target / "adapter_config.json").write_text(json.dumps(meta))


def run(spec: JobSpec, emit: Callable[[TrainingEvent], None], cancel: threading.Event) -> int:
    config = spec.full_config()
    job_dir = spec.job_dir
    epochs = config.get("numTrainEpochs")
    default_steps = int(float(epochs) * 20) if isinstance(epochs, (int, float)) else DEFAULT_MAX_STEPS
    max_steps = max(1, _int(config, "maxSteps", default_steps) or default_steps)
    if config.get("dryRun"):
        max_steps = min(max_steps, 3)
    logging_steps = max(1, _int(config, "loggingSteps", 1) or 1)
    save_steps = _int(config, "saveSteps", None)
    eval_steps = _int(config, "evalSteps", None)
    lr = float(config.get("learningRate", 2e-4))
    warmup = _int(config, "warmupSteps", 0) or 0
    batch = _int(config, "batchSize", 8) or 8
    step_s = float(os.environ.get("ARKOR_NB_SYNTHETIC_STEP_S", DEFAULT_STEP_S))
    fail_env = os.environ.get("ARKOR_NB_SYNTHETIC_FAIL_AT_STEP")
    fail_at = int(fail_env) if fail_env and fail_env.isdigit() else None
    rng = random.Random(spec.job_id)

    def loss_at(step: int) -> float:
        return round(0.4 + 2.2 * math.exp(-4.0 * step / max_steps) + rng.uniform(-0.03, 0.03), 6)

    emit(TrainingStarted(metadata={
        "model": config.get("model"), "synthetic": True, "maxSteps": max_steps, "device": "cpu",
    }))
    started = time.monotonic()
    losses: list[float] = []
    step = 0
    while step < max_steps:
        if cancel.is_set():
            emit(TrainingCancelled(step=step))
            return 0
        if step_s > 0:
            cancel.wait(step_s)
        step += 1
        if fail_at is not None and step >= fail_at:
            emit(TrainingFailed(
                step=step, error=f"synthetic failure at step {step} (ARKOR_NB_SYNTHETIC_FAIL_AT_STEP)"))
            return 0
        loss = loss_at(step)
        losses.append(loss)
        if len(losses) > 1000:
            del losses[:-1000]
        if step % logging_steps == 0 or step == max_steps:
            scale = step / warmup if warmup and step < warmup else 1.0 - step / (max_steps + 1)
            elapsed = max(time.monotonic() - started, 1e-9)
            emit(TrainingLog(step=step, loss=loss, learning_rate=lr * scale,
                             epoch=round(step / max_steps, 6),
                             samples_per_second=round(step * batch / elapsed, 3)))
        if eval_steps and step % eval_steps == 0:
            emit(TrainingLog(step=step, eval_loss=round(loss + 0.1, 6)))
        if save_steps and step % save_steps == 0:
            rel = f"checkpoints/step-{step}"
            _save(job_dir, rel, step, config)
            emit(CheckpointSaved(step=step,
                                 artifacts=[{"kind": "checkpoint", "step": step, "path": rel}]))
            for prompt in config.get("samplePrompts") or []:  # like the real worker's samples
                reply = synthetic_reply([{"role": "user", "content": prompt}], label=f"step {step}",
                                        max_tokens=_int(config, "sampleMaxTokens", 64))
                emit(CheckpointSample(step=step, prompt=prompt, reply="".join(reply)))
    _save(job_dir, "adapter", step, config)
    runtime = time.monotonic() - started
    emit(TrainingCompleted(
        metrics={"trainLoss": round(sum(losses) / len(losses), 6), "steps": step,
                 "finalLoss": losses[-1], "runtimeSeconds": round(runtime, 3)},
        artifacts=[{"kind": "adapter", "path": "adapter"}]))
    return 0


def synthetic_reply(messages: list[dict[str, Any]], *, label: str,
                    max_tokens: int | None = None) -> Iterator[str]:
    """Deterministic streamed text for synthetic models (word pieces)."""
    last = next((m.get("content") for m in reversed(messages) if m.get("role") == "user"), "")
    prompt = last if isinstance(last, str) else json.dumps(last)
    words = f"[synthetic {label}] reply to: {prompt[:200]}".split(" ")
    if max_tokens is not None:
        words = words[:max_tokens]
    for i, word in enumerate(words):
        yield word if i == 0 else " " + word


def main() -> int:
    channel = WorkerChannel()
    try:
        spec = channel.read_spec()
    except (ValueError, EOFError) as exc:
        channel.emit(TrainingFailed(error=f"bad job spec: {exc}"))
        return 2
    cancel = threading.Event()
    channel.watch_cancel(cancel)
    try:
        return run(spec, channel.emit, cancel)
    except BrokenPipeError:  # the server is gone; nobody to report to
        return 1


if __name__ == "__main__":
    sys.exit(main())
