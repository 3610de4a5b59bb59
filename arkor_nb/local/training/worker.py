"""The training worker: ``python -m arkor_nb.local.training.worker``.

One job per process, so a crash, an OOM or a kill never takes the server
down and cancel is real. It speaks the worker stdio protocol of
``worker_protocol`` (spec in on stdin, typed events out on stdout).

Training is the transformers ``Trainer`` with a peft LoRA adapter on every
linear layer, as ``plan`` lays it out; ``callback`` turns logs, saves and
evaluations into events and stops within one optimizer step when cancel
arrives; ``sampler`` answers ``samplePrompts`` at each checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from arkor_nb.core.errors import ConfigError
from arkor_nb.core.events import (
    TrainingCancelled,
    TrainingCompleted,
    TrainingFailed,
    TrainingPhase,
    TrainingStarted,
)
from arkor_nb.local.training.callback import PROGRESS, make_callback
from arkor_nb.local.training.distributed import (
    RankAbort,
    Ranks,
    cancel_relay,
    describe_failure,
)
from arkor_nb.local.training.plan import (
    DEFAULTS,
    DRY_RUN_ROWS,
    describe_arguments,
    describe_lora,
    load_rows,
    lora_config,
    training_arguments,
)
from arkor_nb.local.training.sampler import make_sampler
from arkor_nb.local.training.worker_protocol import JobSpec, WorkerChannel

log = logging.getLogger("arkor_nb.worker")


class Cancelled(Exception):
    def __init__(self, step: int = 0) -> None:
        self.step = step
        super().__init__(f"cancelled at step {step}")


# ------------------------------------------------------------------ the run


def run_job(spec: JobSpec | None, proto: WorkerChannel, requested: threading.Event,
            ranks: Ranks | None = None) -> None:
    """Validate, load, train, save; emits every event including the terminal one.

    ``requested`` is set when the server asks to cancel (on rank 0). With
    several ranks only rank 0 has ``spec``: it validates and reads the data and
    shares both (see ``distributed``); the others train on what they get.
    """
    from arkor_nb.local.config import validate_config

    ranks = ranks or Ranks()
    # What the run obeys: set on every rank at once (one process: the request itself).
    cancel = requested if not ranks.distributed else threading.Event()
    config, job_dir, home = ranks.share(*_attempt(lambda: _validated(spec, validate_config)))
    if not ranks.main:  # on another host the server's paths may not exist
        home = _local_home(home)
        job_dir = job_dir if job_dir.parent.is_dir() else Path(tempfile.mkdtemp(prefix="arkor-nb-"))
    job_dir.mkdir(parents=True, exist_ok=True)

    def checkpoint_cancel(step: int = 0) -> None:
        if ranks.sync_flag(requested, cancel):
            raise Cancelled(step)

    import torch

    from arkor_nb.local.data.tokenize import collate, encode_row
    from arkor_nb.local.training.models import (
        load_model_and_tokenizer,
        pick_device,
        preparing_detail,
        resolve_model,
    )

    device = pick_device()  # under torchrun "cuda" is this rank's GPU (Ranks.start)
    threads = int(os.environ.get("ARKOR_NB_TORCH_THREADS", "1"))
    if device == "cpu":
        torch.set_num_threads(max(1, threads))
    checkpoint_cancel()
    t0 = time.perf_counter()
    # Data first: a bad or unreachable dataset fails before a model is built or loaded.
    proto.emit(TrainingPhase(phase="preparing", detail="loading data"))
    train_rows, eval_rows = ranks.share(*_attempt(lambda: load_rows(config, home)))
    if config.get("dryRun"):
        train_rows, eval_rows = train_rows[:DRY_RUN_ROWS], eval_rows[: DRY_RUN_ROWS // 2]
    checkpoint_cancel()
    building = preparing_detail(config["model"], home)
    if building is not None:
        proto.emit(TrainingPhase(phase="preparing", detail=building))
    if ranks.main:  # first, alone: a model built into the cache is built once per host
        model_path = ranks.share(*_attempt(lambda: resolve_model(config["model"], home)))
    else:
        ranks.share()
        model_path = resolve_model(config["model"], home)
    checkpoint_cancel()

    proto.emit(TrainingPhase(phase="preparing", detail=f"loading {config['model']} on {device}"))
    model, tokenizer = load_model_and_tokenizer(
        model_path, device, load_in_4bit=bool(config.get("loadIn4bit"))
    )
    limit = int(config.get("maxLength", DEFAULTS["maxLength"]))
    model_limit = getattr(model.config, "max_position_embeddings", None)
    if isinstance(model_limit, int) and model_limit > 0:
        limit = min(limit, model_limit)
    responses_only = bool(config.get("trainOnResponsesOnly", DEFAULTS["trainOnResponsesOnly"]))

    def encode(rows: list[dict[str, Any]]) -> tuple[list[dict[str, list[int]]], int]:
        encoded = [encode_row(r, tokenizer, limit, responses_only) for r in rows]
        kept = [e for e in encoded if e is not None]
        return kept, len(encoded) - len(kept)

    train_set, dropped = encode(train_rows)
    eval_set, eval_dropped = encode(eval_rows)
    if not train_set:
        raise ConfigError("maxLength", f"every row is cut off before its answer at {limit} tokens; "
                          "raise maxLength")
    checkpoint_cancel()

    from peft import get_peft_model, prepare_model_for_kbit_training
    from transformers import Trainer, set_seed

    has_eval = bool(eval_set)
    args = training_arguments(config, job_dir, device, has_eval, ranks.distributed)
    # Seed before the LoRA weights are drawn (Trainer seeds only later), so one
    # config gives one run: the same losses every time.
    set_seed(args.seed)
    if config.get("loadIn4bit"):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    model = get_peft_model(model, lora_config(config))
    sampler = make_sampler(proto, config, tokenizer, device, requested) if ranks.main else None
    callback = make_callback(proto, cancel, job_dir,
                             args.per_device_train_batch_size * ranks.world_size, sampler)
    relay = [cancel_relay(ranks, requested, cancel)] if ranks.distributed else []
    pad_id = tokenizer.pad_token_id
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=_ListDataset(train_set),
        eval_dataset=_ListDataset(eval_set) if has_eval else None,
        data_collator=lambda feats: collate(feats, pad_id),
        processing_class=tokenizer,
        callbacks=[*relay, callback],
    )
    checkpoint_cancel()
    proto.emit(TrainingStarted(metadata={
        "model": config["model"],
        "modelPath": model_path,
        "device": device,
        "torchThreads": torch.get_num_threads(),
        "processes": ranks.world_size,
        "nodes": ranks.nodes,
        "dryRun": bool(config.get("dryRun")),
        "trainOnResponsesOnly": responses_only,
        "maxLength": limit,
        "datasetFormat": config.get("datasetFormat"),
        "datasetSplit": config.get("datasetSplit"),
        "loadIn4bit": bool(config.get("loadIn4bit")),
        "trainRows": len(train_set),
        "evalRows": len(eval_set),
        "droppedRows": dropped + eval_dropped,
        "setupSeconds": round(time.perf_counter() - t0, 2),
        "trainingArguments": describe_arguments(args),
        "lora": describe_lora(model),
    }))

    started = time.perf_counter()
    trainer.train()
    step = trainer.state.global_step
    checkpoint_cancel(step)
    train_seconds = time.perf_counter() - started
    if has_eval and callback.eval_step != step:
        trainer.evaluate()  # the last word on held-out loss, as a training.log with evalLoss
    if not ranks.main:
        return  # rank 0 saves the adapter and reports
    proto.emit(TrainingPhase(phase="saving", detail="saving the adapter"))
    adapter_dir = job_dir / "adapter"
    model.save_pretrained(adapter_dir)
    tokenizer.save_pretrained(adapter_dir)
    (adapter_dir / "arkor_nb.json").write_text(json.dumps({"model": config["model"], "step": step}))
    losses = callback.losses
    metrics = {
        "steps": step,
        "trainLoss": callback.summary.get("train_loss"),
        "firstLoss": losses[0][1] if losses else None,
        "finalLoss": losses[-1][1] if losses else None,
        "evalLoss": callback.eval_loss,
        "trainSeconds": round(train_seconds, 3),
        "secondsPerStep": round(train_seconds / step, 4) if step else None,
        "samplesPerSecond": callback.summary.get("train_samples_per_second"),
    }
    artifacts = [{"kind": "adapter", "path": "adapter"}, *callback.checkpoints]
    shutil.rmtree(job_dir / "hf", ignore_errors=True)
    proto.emit(TrainingCompleted(metrics=metrics, artifacts=artifacts))


def _attempt(step: Any) -> tuple[Any, BaseException | None]:
    """``(step(), None)``, or ``(None, error)``: what :meth:`Ranks.share` takes on rank 0."""
    try:
        return step(), None
    except Exception as exc:  # noqa: BLE001 - shared with the other ranks, then raised
        return None, exc


def _validated(spec: JobSpec | None, validate: Any) -> tuple[dict[str, Any], Any, Any]:
    assert spec is not None
    return validate(spec.full_config(), home=spec.home), spec.job_dir, spec.home


def _local_home(server_home: Any) -> Any:
    """A rank on another host uses its own home (``ARKOR_NB_HOME``) unless it shares the server's."""
    from arkor_nb.core.home import home_dir

    return Path(server_home) if Path(server_home).is_dir() else home_dir()


class _ListDataset:
    """A list of encoded rows as a map-style dataset (what Trainer's sampler needs)."""

    def __init__(self, rows: list[dict[str, list[int]]]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        return self.rows[i]


def main() -> int:
    ranks = Ranks.from_env()
    proto = WorkerChannel(silent=not ranks.main)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s %(name)s rank {ranks.rank} %(levelname)s %(message)s")
    requested = threading.Event()
    spec: JobSpec | None = None
    try:
        ranks.start()
    except Exception as exc:  # noqa: BLE001 - e.g. a rendezvous that never completed
        proto.emit(TrainingFailed(error=f"could not join the job's process group: {exc}"))
        return 1
    if ranks.main:  # the other ranks never read stdin: rank 0 shares what it says
        try:
            spec = proto.read_spec()
        except (ValueError, EOFError) as exc:
            proto.emit(TrainingFailed(error=f"bad job spec: {exc}"))
            if not ranks.distributed:
                return 2
        proto.watch_cancel(requested)
    try:
        run_job(spec, proto, requested, ranks)
        return 0
    except Cancelled as exc:
        proto.emit(TrainingCancelled(step=exc.step))
        return 0
    except RankAbort:
        return 0  # rank 0 failed a shared step and reports it
    except ConfigError as exc:
        proto.emit(TrainingFailed(error=str(exc)))
        return 1
    except BaseException as exc:  # noqa: BLE001 - the job must end with a terminal event
        traceback.print_exc()
        proto.emit(TrainingFailed(error=describe_failure(ranks, exc), step=PROGRESS.get("step")))
        return 1
    finally:
        ranks.finish()


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
