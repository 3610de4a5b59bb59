"""arkor_nb: Jupyter-first interactive fine-tuning.

The public API is exactly ``__all__``, imported from the layers below:
``core`` (vocabulary: wire types, statuses, errors, formatting), ``sdk``
(client, stream, trainer, jobs, chat) and ``notebook`` (panel, records,
views). The notebook's widget libraries and the local backend's training
stack are imported only when used.
"""

from __future__ import annotations

from arkor_nb.core.contexts import (
    Callbacks,
    CancelledContext,
    CheckpointContext,
    CompletedContext,
    EvalContext,
    FailedContext,
    LogContext,
    ReconnectPolicy,
    StartedContext,
    StreamNotice,
    TrainingResult,
)
from arkor_nb.core.errors import (
    AbortedError,
    ArkorError,
    CloudApiError,
    ConfigError,
    ReconnectExhaustedError,
    ScopeError,
)
from arkor_nb.core.events import TrainingEvent
from arkor_nb.core.taskeval import TaskEval
from arkor_nb.core.version import __version__
from arkor_nb.core.wire import TrainingJob
from arkor_nb.notebook import LiveRun, compare, live, replay
from arkor_nb.notebook.jobs_table import jobs, jobs_async
from arkor_nb.notebook.playground import playground
from arkor_nb.notebook.sweep_view import sweep
from arkor_nb.sdk.abort import AbortController, AbortSignal
from arkor_nb.sdk.backends import SUPPORTED_MODELS, CloudBackend, LocalBackend
from arkor_nb.sdk.chat import chat, chat_async
from arkor_nb.sdk.create import create_trainer
from arkor_nb.sdk.credentials import (
    ensure_credentials,
    read_credentials,
    request_anonymous_token,
    write_credentials,
)
from arkor_nb.sdk.jobs import (
    download,
    download_async,
    events,
    events_async,
    job,
    job_async,
)
from arkor_nb.sdk.runner import Arkor, create_arkor, run_trainer
from arkor_nb.sdk.state import read_state, write_state
from arkor_nb.sdk.sweep import Sweep
from arkor_nb.sdk.trainer import Trainer

__all__ = [
    "AbortController", "AbortSignal", "AbortedError", "Arkor", "ArkorError", "Callbacks",
    "CancelledContext", "CheckpointContext", "CloudApiError", "CloudBackend",
    "CompletedContext", "ConfigError", "EvalContext", "FailedContext", "LiveRun", "LocalBackend",
    "LogContext", "ReconnectExhaustedError", "ReconnectPolicy", "SUPPORTED_MODELS",
    "ScopeError", "StartedContext", "StreamNotice", "Sweep", "TaskEval", "Trainer", "TrainingEvent",
    "TrainingJob", "TrainingResult", "__version__", "chat", "chat_async", "compare",
    "create_arkor", "create_trainer", "download", "download_async", "ensure_credentials",
    "events", "events_async", "job", "job_async", "jobs", "jobs_async", "live",
    "playground", "read_credentials", "read_state", "replay", "request_anonymous_token",
    "run_trainer", "sweep", "write_credentials", "write_state",
]


def __dir__() -> list[str]:
    return sorted(__all__)
