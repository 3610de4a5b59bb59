"""The transformers ``TrainerCallback`` that turns a run into protocol events.

Logs, evaluations and saves become ``training.log`` / ``checkpoint.saved``
events; a cancel stops the run after the current optimizer step.
"""

from __future__ import annotations

import math
import os
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from arkor_nb.core.events import CheckpointSaved, TrainingFailed, TrainingLog
from arkor_nb.local.training.worker_protocol import WorkerChannel

# Last finished optimizer step, so a crash mid-training can say where it happened.
PROGRESS: dict[str, int] = {}


class TokenCounter:
    """Counts the real (unpadded) tokens of each batch the collator hands to training.

    A count is taken per batch trained on, not per batch collated: the data loader
    collates a batch ahead of the step that uses it. ``across`` sums a count over
    the job's processes (``Ranks.total``): with several ranks each collator sees its
    own shard of the global batch, and the job's throughput is the sum."""

    def __init__(self, across: Callable[[int], int] | None = None) -> None:
        self.batches: deque[int] = deque()
        self.across = across

    def counting(self, collate: Any) -> Any:
        """``collate`` that also counts each batch's unpadded tokens (it sees the rows
        that are trained on: wrap the collator inside ``collate_for``, after the dropped
        lazy rows are left out)."""

        def run(features: list[Any], *rest: Any) -> Any:
            # the rows' own lengths: neither padding nor a prefix the rows share counts less
            self.batches.append(sum(len(f["input_ids"]) for f in features))
            return collate(features, *rest)

        return run

    def take(self, batches: int) -> int:
        """The job's tokens in the next ``batches`` batches collated (every rank calls
        it at the same point when ``across`` is set)."""
        count = sum(self.batches.popleft() for _ in range(min(batches, len(self.batches))))
        return self.across(count) if self.across is not None else count

    def drop(self) -> None:
        """Forget the batches counted so far (evaluation's); no collective."""
        self.batches.clear()


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (the kernel's high-water mark), in MiB
    (Linux reports KiB, macOS bytes)."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 1024), 1)


def gpu_mem_mb() -> float | None:
    """Peak CUDA memory allocated by this process in MiB (None without CUDA)."""
    import torch

    if not torch.cuda.is_available():
        return None
    return round(torch.cuda.max_memory_allocated() / 2**20, 1)


def make_callback(proto: WorkerChannel, cancel: threading.Event, job_dir: Path, batch: int,
                  sample: Any = None, *, tokens: TokenCounter | None = None) -> Any:
    """``sample(model, step)``, when given, runs right after each ``checkpoint.saved``
    (checkpoint samples and task evals); ``tokens`` feeds ``tokensPerSecond``."""
    from transformers import TrainerCallback

    class EventCallback(TrainerCallback):
        """Trainer hooks -> protocol events; cancel -> stop after this step."""

        def __init__(self) -> None:
            self.last_time = time.perf_counter()
            self.last_step = 0
            self.losses: list[tuple[int, float]] = []
            self.checkpoints: list[dict[str, Any]] = []
            self.summary: dict[str, Any] = {}
            self.eval_loss: float | None = None
            self.eval_step: int | None = None

        def _check(self, control: Any) -> Any:
            if cancel.is_set():
                control.should_training_stop = True
            return control

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.last_time = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
            PROGRESS["step"] = state.global_step
            return self._check(control)

        def on_substep_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
            return self._check(control)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
                   **kw: Any) -> None:
            logs = logs or {}
            if "train_loss" in logs or "train_runtime" in logs:
                self.summary = dict(logs)
                return
            if "loss" not in logs:
                return  # eval metrics are reported by on_evaluate
            now = time.perf_counter()
            steps = max(0, state.global_step - self.last_step)
            elapsed = max(now - self.last_time, 1e-9)
            rate = steps * batch * args.gradient_accumulation_steps / elapsed
            # on every rank: a collective
            seen = tokens.take(steps * args.gradient_accumulation_steps) if tokens is not None else 0
            token_rate = seen / elapsed if tokens is not None and steps else None
            self.last_time, self.last_step = now, state.global_step
            loss = float(logs["loss"])
            if not math.isfinite(loss):
                # A diverged run cannot recover: say so and stop, instead of
                # spending the remaining steps on NaN weights.
                proto.emit(TrainingFailed(
                    error=(f"loss became {loss} at step {state.global_step}: training "
                           f"diverged; lower learningRate (now {args.learning_rate:g})"),
                    step=state.global_step,
                ))
                control.should_training_stop = True
                return
            self.losses.append((state.global_step, loss))
            proto.emit(TrainingLog(
                step=state.global_step,
                loss=loss,
                learning_rate=logs.get("learning_rate"),
                epoch=logs.get("epoch", state.epoch),
                samples_per_second=round(rate, 3) if steps else None,
                grad_norm=_finite(logs.get("grad_norm")),
                tokens_per_second=round(token_rate, 1) if token_rate is not None else None,
                rss_mb=peak_rss_mb(),
                gpu_mem_mb=gpu_mem_mb(),
            ))

        def on_evaluate(self, args: Any, state: Any, control: Any,
                        metrics: dict[str, Any] | None = None, **kw: Any) -> None:
            if tokens is not None:
                tokens.drop()  # eval batches are not training throughput
            metrics = metrics or {}
            if "eval_loss" not in metrics:
                return
            self.eval_loss = float(metrics["eval_loss"])
            self.eval_step = state.global_step
            proto.emit(TrainingLog(
                step=state.global_step,
                eval_loss=self.eval_loss,
                epoch=state.epoch,
                samples_per_second=metrics.get("eval_samples_per_second"),
            ))

        def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if not state.is_world_process_zero:
                return  # several processes: rank 0 alone saves, samples and reports
            step = state.global_step
            src = Path(args.output_dir) / f"checkpoint-{step}"
            rel = f"checkpoints/step-{step}"
            dest = job_dir / rel
            if not src.is_dir():
                return
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(src, dest)
            artifact = {"kind": "checkpoint", "step": step, "path": rel}
            self.checkpoints.append(artifact)
            proto.emit(CheckpointSaved(step=step, artifacts=[artifact]))
            if sample is not None and not cancel.is_set():
                sample(kw["model"], step)

    return EventCallback()


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
