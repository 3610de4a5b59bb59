"""``create_trainer``: keyword arguments -> a :class:`~arkor_nb.sdk.trainer.Trainer`.

Checks every keyword (a bad value raises ConfigError naming the field; see
``config`` for the wire config), picks the backend, and sends nothing: the job
is created by ``start()``/``wait()``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from arkor_nb.core.contexts import (
    Callbacks,
    ReconnectPolicy,
)
from arkor_nb.core.errors import (
    ConfigError,
)
from arkor_nb.core.taskeval import TaskEval
from arkor_nb.sdk.abort import AbortSignal
from arkor_nb.sdk.backends import (
    SUPPORTED_MODELS,
    make_backend,
)
from arkor_nb.sdk.config import build_config, non_empty_str, scaling_options, seed_option
from arkor_nb.sdk.judging import check_task_eval
from arkor_nb.sdk.trainer import Trainer


def create_trainer(
    *,
    name: str,
    model: str,
    dataset: Mapping[str, Any] | None = None,
    lora: Mapping[str, Any] | None = None,
    max_steps: int | None = None,
    num_train_epochs: float | None = None,
    learning_rate: float | None = None,
    batch_size: int | None = None,
    optim: str | None = None,
    lr_scheduler_type: str | None = None,
    weight_decay: float | None = None,
    warmup_steps: int | None = None,
    logging_steps: int | None = None,
    save_steps: int | None = None,
    eval_steps: int | None = None,
    dataset_format: str | dict[str, str] | None = None,
    dataset_split: str | float | None = None,
    train_on_responses_only: bool | None = None,
    dry_run: bool | None = None,
    processes: int | str | None = None,
    nodes: int | None = None,
    seed: int | None = None,
    callbacks: Callbacks | Mapping[str, Any] | None = None,
    abort_signal: AbortSignal | None = None,
    backend: Any = "local",
    reconnect: ReconnectPolicy | Mapping[str, Any] | None = None,
    task_eval: TaskEval | None = None,
) -> Trainer:
    """Build a :class:`Trainer`. Nothing is sent until ``start()``/``wait()``.

    ``task_eval=ak.TaskEval(...)`` scores held-out prompts at every checkpoint:
    on the local backend the worker does it with the model in memory (sent as
    ``taskEval``); on the cloud this client does it through ``ctx.infer``.

    Keyword-only; an unknown keyword raises TypeError naming it, a bad value
    raises ConfigError naming the field. See docs/protocol.md for each option.
    """
    resolved_backend = make_backend(backend)
    non_empty_str("name", name)
    non_empty_str("model", model)
    if resolved_backend.kind == "cloud" and model not in SUPPORTED_MODELS:
        raise ConfigError(
            "model",
            f"{model!r} is not available on the Arkor cloud; supported models: "
            f"{', '.join(SUPPORTED_MODELS)} (any Hugging Face model works with backend=\"local\")",
        )
    options = {
        "max_steps": max_steps,
        "num_train_epochs": num_train_epochs,
        "learning_rate": learning_rate,
        "batch_size": batch_size,
        "optim": optim,
        "lr_scheduler_type": lr_scheduler_type,
        "weight_decay": weight_decay,
        "warmup_steps": warmup_steps,
        "logging_steps": logging_steps,
        "save_steps": save_steps,
        "eval_steps": eval_steps,
        "dataset_format": dataset_format,
        "dataset_split": dataset_split,
        "train_on_responses_only": train_on_responses_only,
        "dry_run": dry_run,
    }
    config = build_config(
        model=model,
        dataset=dataset,
        lora=lora,
        options=options,
        absolute_paths=resolved_backend.kind == "local",
    )
    task_eval = check_task_eval(task_eval)
    if task_eval is not None and resolved_backend.kind == "local":
        config["taskEval"] = task_eval.to_wire()
    config.update(scaling_options(processes, nodes, resolved_backend.kind))
    config.update(seed_option(seed, resolved_backend.kind))
    return Trainer(
        name=name,
        config=config,
        callbacks=callbacks,
        abort_signal=abort_signal,
        backend=resolved_backend,
        reconnect=reconnect,
        task_eval=task_eval,
    )
