"""The public API is pinned: adding, removing or renaming a name must be deliberate."""

from __future__ import annotations

import importlib
from pathlib import Path

import arkor_nb

EXPECTED = [
    "AbortController",
    "AbortSignal",
    "AbortedError",
    "Arkor",
    "ArkorError",
    "Callbacks",
    "CancelledContext",
    "CheckpointContext",
    "CloudApiError",
    "CloudBackend",
    "CompletedContext",
    "ConfigError",
    "EvalContext",
    "FailedContext",
    "LiveRun",
    "LocalBackend",
    "LogContext",
    "ReconnectExhaustedError",
    "ReconnectPolicy",
    "SUPPORTED_MODELS",
    "ScopeError",
    "StartedContext",
    "StreamNotice",
    "Sweep",
    "TaskEval",
    "Trainer",
    "TrainingEvent",
    "TrainingJob",
    "TrainingResult",
    "__version__",
    "chat",
    "chat_async",
    "compare",
    "create_arkor",
    "create_trainer",
    "download",
    "download_async",
    "ensure_credentials",
    "events",
    "events_async",
    "job",
    "job_async",
    "jobs",
    "jobs_async",
    "live",
    "playground",
    "read_credentials",
    "read_state",
    "replay",
    "request_anonymous_token",
    "run_trainer",
    "sweep",
    "write_credentials",
    "write_state",
]

def test_all_is_pinned() -> None:
    assert sorted(arkor_nb.__all__) == sorted(EXPECTED)
    assert dir(arkor_nb) == sorted(arkor_nb.__all__)


def test_every_name_resolves() -> None:
    module = importlib.reload(arkor_nb)
    for name in EXPECTED:
        value = getattr(module, name)
        assert value is not None, name
    assert isinstance(module.__version__, str)
    assert module.SUPPORTED_MODELS == ("unsloth/gemma-4-E4B-it",)
    try:
        module.not_a_name  # noqa: B018
    except AttributeError as exc:
        assert "not_a_name" in str(exc)
    else:
        raise AssertionError("unknown attribute did not raise")


def test_import_is_light() -> None:
    """`import arkor_nb` must not pull in torch/transformers or the notebook stack."""
    import subprocess
    import sys

    code = (
        "import sys, arkor_nb; arkor_nb.create_trainer; "
        "print(','.join(m for m in ('torch', 'transformers', 'ipywidgets', 'plotly') if m in sys.modules))"
    )
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == ""
