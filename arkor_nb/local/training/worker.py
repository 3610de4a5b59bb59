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

import functools
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
from arkor_nb.core.home import home_dir
from arkor_nb.core.status import PREPARING, SAVING
from arkor_nb.local.config import validate_config
from arkor_nb.local.data.lazy import IndexCancelled
from arkor_nb.local.data.rows import RowError
from arkor_nb.local.data.tokenize import collate, encode_row
from arkor_nb.local.training.callback import PROGRESS, TokenCounter, make_callback, peak_rss_mb
from arkor_nb.local.training.data_plan import collate_for, lazy_sampling, load_data
from arkor_nb.local.training.distributed import (
    RankAbort,
    Ranks,
    cancel_relay,
    describe_failure,
)
from arkor_nb.local.training.evals import eval_batch_rows, make_evaluator
from arkor_nb.local.training.models import (
    load_model_and_tokenizer,
    pick_device,
    preparing_detail,
    resolve_model,
)
from arkor_nb.local.training.plan import (
    DEFAULTS,
    describe_arguments,
    describe_lora,
    lora_config,
    training_arguments,
)
from arkor_nb.local.training.sampler import make_sampler
from arkor_nb.local.training.speed import (
    apply_override,
    flatten_batch,
    inference_context,
    prepare_model,
    speed_plan,
    trainer_class,
)
from arkor_nb.local.training.worker_protocol import JobSpec, WorkerChannel

log = logging.getLogger("arkor_nb.worker")
# Rows the worker re-checks before loading anything (the server checked up to MAX_ROWS_CHECKED).
WORKER_ROWS_CHECKED = 1_000
# Set once training starts; before that a cancel ends the process at once.
TRAINING = threading.Event()


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

    device = pick_device()  # under torchrun "cuda" is this rank's GPU (Ranks.start)
    speed = speed_plan(device, loads_in_4bit=bool(config.get("loadIn4bit")))
    if ranks.distributed:  # the labels-only loss calls the decoder past the DDP wrapper
        speed = apply_override(speed, "labels_only_loss=0,padding_free=0")
    if device == "cpu":
        torch.set_num_threads(speed.threads)
    checkpoint_cancel()
    t0 = time.perf_counter()
    # Data first: a bad or unreachable dataset fails before a model is built or loaded.
    proto.emit(TrainingPhase(phase=PREPARING, detail="loading data"))
    try:  # several ranks: the rows themselves travel (eager), so no rank needs the files
        data = ranks.share(*_attempt(lambda: load_data(
            config, home, requested, lazy="off" if ranks.distributed else None)))
    except IndexCancelled:
        raise Cancelled(0) from None
    checkpoint_cancel()
    building = preparing_detail(config["model"], home)
    if building is not None:
        proto.emit(TrainingPhase(phase=PREPARING, detail=building))
    if ranks.main:  # first, alone: a model built into the cache is built once per host
        model_path = ranks.share(*_attempt(lambda: resolve_model(config["model"], home)))
    else:
        ranks.share()
        model_path = resolve_model(config["model"], home)
    checkpoint_cancel()

    # A GGUF model loads from its dequantized copy: after the first run that is all it does.
    cached = building is None and Path(model_path).name.startswith("gguf-")
    what = f"cached weights of {config['model']}" if cached else config["model"]
    proto.emit(TrainingPhase(phase=PREPARING, detail=f"loading {what} on {device}"))
    model, tokenizer = load_model_and_tokenizer(
        model_path, device, load_in_4bit=bool(config.get("loadIn4bit"))
    )
    limit = int(config.get("maxLength", DEFAULTS["maxLength"]))
    model_limit = getattr(model.config, "max_position_embeddings", None)
    if isinstance(model_limit, int) and model_limit > 0:
        limit = min(limit, model_limit)
    responses_only = bool(config.get("trainOnResponsesOnly", DEFAULTS["trainOnResponsesOnly"]))

    def encode(row: dict[str, Any]) -> dict[str, list[int]] | None:
        return encode_row(row, tokenizer, limit, responses_only)

    train_set, eval_set, dropped = data.encoded(encode)
    if not data.lazy and not train_set:
        raise ConfigError("maxLength", f"every row is cut off before its answer at {limit} tokens; "
                          "raise maxLength")
    checkpoint_cancel()

    from peft import get_peft_model, prepare_model_for_kbit_training
    from transformers import set_seed

    has_eval = bool(eval_set)
    args = training_arguments(config, job_dir, device, has_eval, ranks.distributed)
    # Seed before the LoRA weights are drawn (Trainer seeds only later), so one
    # config gives one run: the same losses every time.
    set_seed(args.seed)
    if config.get("loadIn4bit"):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    model = prepare_model(get_peft_model(model, lora_config(config)), speed)
    # Rank 0 alone samples and evaluates (the others have no stdout, nothing to add).
    sample = make_sampler(proto, config, tokenizer, device, requested) if ranks.main else None
    evaluate = (make_evaluator(proto, config, tokenizer, device, requested, limit=limit)
                if ranks.main else None)
    evaluated: list[int] = []
    eval_rows = eval_batch_rows(config)

    def after_save(saved_model: Any, step: int) -> None:
        if sample is not None:
            with inference_context(speed, device, saved_model, rows=1):  # one prompt at a time
                sample(saved_model, step)
        if evaluate is not None and not requested.is_set():
            with inference_context(speed, device, saved_model, rows=eval_rows):
                evaluate(saved_model, step)
            evaluated.append(step)

    tokens = TokenCounter(across=ranks.total)
    callback = make_callback(proto, cancel, job_dir,
                             args.per_device_train_batch_size * ranks.world_size,
                             after_save, tokens=tokens)
    relay = [cancel_relay(ranks, requested, cancel)] if ranks.distributed else []
    pad_id = tokenizer.pad_token_id
    batch_of = (functools.partial(flatten_batch, share_prefix=speed.shared_prefix)
                if speed.padding_free else collate)
    trainer_type = trainer_class(speed, device)
    trainer = (lazy_sampling(trainer_type) if data.lazy else trainer_type)(
        model=model,
        args=args,
        train_dataset=train_set if data.lazy else _ListDataset(train_set),
        eval_dataset=(eval_set if data.lazy else _ListDataset(eval_set)) if has_eval else None,
        data_collator=collate_for(train_set, tokens.counting(batch_of), pad_id),
        processing_class=tokenizer,
        callbacks=[*relay, callback],
    )
    checkpoint_cancel()
    TRAINING.set()  # from here a cancel stops after the current optimizer step
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
        "taskEvalRows": len(config["taskEval"]["rows"]) if config.get("taskEval") else 0,
        "evalRows": len(eval_set),
        # Lazy data: rows cut off at maxLength are counted where they are met (completed metrics).
        "droppedRows": dropped,
        "lazyData": data.lazy,
        "speed": speed.describe(),
        "attention": getattr(model.get_base_model().config, "_attn_implementation", None),
        "setupSeconds": round(time.perf_counter() - t0, 2),
        "peakRssMb": peak_rss_mb(),
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
    if evaluate is not None and step not in evaluated:
        with inference_context(speed, device, model, rows=eval_rows):
            evaluate(model, step)  # task metrics of the final weights
        if requested.is_set():
            raise Cancelled(step)
    proto.emit(TrainingPhase(phase=SAVING, detail="saving the adapter"))
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
        "droppedRows": (train_set.dropped + (eval_set.dropped if has_eval else 0)
                        if data.lazy else dropped),
        "peakRssMb": peak_rss_mb(),
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
    # The server checked the rows before the job was created; the first few again are enough.
    config = validate(spec.full_config(), home=spec.home, max_rows_checked=WORKER_ROWS_CHECKED)
    return config, spec.job_dir, spec.home


def _local_home(server_home: Any) -> Any:
    """A rank on another host uses its own home (``ARKOR_NB_HOME``) unless it shares the server's."""
    return Path(server_home) if Path(server_home).is_dir() else home_dir()


class _ListDataset:
    """A list of encoded rows as a map-style dataset (what Trainer's sampler needs)."""

    def __init__(self, rows: list[dict[str, list[int]]]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        return self.rows[i]


def _end_early_on_cancel(proto: WorkerChannel, cancel: threading.Event, code: int = 0) -> None:
    """A cancel before training starts ends the process at once.

    Preparation (imports, reading data, building or loading the model) has
    long steps that cannot check a flag; nothing it leaves behind needs a
    clean stop (model caches are written to a temporary name and renamed).
    """

    def run() -> None:
        cancel.wait()
        if not TRAINING.is_set():
            proto.emit(TrainingCancelled(step=0))
            os._exit(code)

    threading.Thread(target=run, name="arkor-early-cancel", daemon=True).start()


def main() -> int:
    ranks = Ranks.from_env()
    proto = WorkerChannel(silent=not ranks.main)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s %(name)s rank {ranks.rank} %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # its INFO line shows whole URLs
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
        # Several ranks: exit 1, so torchrun stops the others at once (the job is cancelled).
        _end_early_on_cancel(proto, requested, 1 if ranks.distributed else 0)
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
    except RowError as exc:  # a bad row met on the lazy path, past the rows checked up front
        proto.emit(TrainingFailed(error=f"datasetSource: {exc}; fix or remove the row",
                                  step=PROGRESS.get("step")))
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
