"""arkor_nb: Jupyter-first interactive fine-tuning.

The public API is exactly ``__all__``. Names are imported lazily so
``import arkor_nb`` stays fast and the notebook/local extras are only
imported when used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

_EXPORTS: dict[str, str] = {
    # trainer
    "create_trainer": "trainer",
    "Trainer": "trainer",
    # backends
    "LocalBackend": "backends",
    "CloudBackend": "backends",
    "SUPPORTED_MODELS": "backends",
    # runner / manifest
    "run_trainer": "runner",
    "create_arkor": "runner",
    "Arkor": "runner",
    # credentials and scope
    "read_credentials": "credentials",
    "write_credentials": "credentials",
    "ensure_credentials": "credentials",
    "request_anonymous_token": "credentials",
    "read_state": "state",
    "write_state": "state",
    # abort
    "AbortController": "abort",
    "AbortSignal": "abort",
    # errors
    "ArkorError": "errors",
    "CloudApiError": "errors",
    "AbortedError": "errors",
    "ReconnectExhaustedError": "errors",
    "ConfigError": "errors",
    "ScopeError": "errors",
    # types
    "Callbacks": "types",
    "ReconnectPolicy": "types",
    "TrainingResult": "types",
    "TrainingJob": "types",
    "StartedContext": "types",
    "LogContext": "types",
    "CheckpointContext": "types",
    "CompletedContext": "types",
    "CancelledContext": "types",
    "FailedContext": "types",
    "TrainingEvent": "types",
    "StreamNotice": "types",
    # jobs beyond one trainer
    "jobs": "jobs_api",
    "jobs_async": "jobs_api",
    "job": "jobs_api",
    "job_async": "jobs_api",
    "events": "jobs_api",
    "events_async": "jobs_api",
    "download": "jobs_api",
    "download_async": "jobs_api",
    "chat": "chat_api",
    "chat_async": "chat_api",
    "playground": "notebook.playground",
    # notebook
    "live": "notebook",
    "replay": "notebook",
    "compare": "notebook",
    "LiveRun": "notebook",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'arkor_nb' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"arkor_nb.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .abort import AbortController, AbortSignal
    from .backends import SUPPORTED_MODELS, CloudBackend, LocalBackend
    from .chat_api import chat, chat_async
    from .credentials import (
        ensure_credentials,
        read_credentials,
        request_anonymous_token,
        write_credentials,
    )
    from .errors import (
        AbortedError,
        ArkorError,
        CloudApiError,
        ConfigError,
        ReconnectExhaustedError,
        ScopeError,
    )
    from .jobs_api import (
        download,
        download_async,
        events,
        events_async,
        job,
        job_async,
        jobs,
        jobs_async,
    )
    from .notebook import LiveRun, compare, live, replay
    from .notebook.playground import playground
    from .runner import Arkor, create_arkor, run_trainer
    from .state import read_state, write_state
    from .trainer import Trainer, create_trainer
    from .types import (
        Callbacks,
        CancelledContext,
        CheckpointContext,
        CompletedContext,
        FailedContext,
        LogContext,
        ReconnectPolicy,
        StartedContext,
        StreamNotice,
        TrainingEvent,
        TrainingJob,
        TrainingResult,
    )
