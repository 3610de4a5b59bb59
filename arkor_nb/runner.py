"""run_trainer(path) and the project manifest create_arkor(), as in the TS SDK.

A project's entry file (``src/arkor/index.py`` by convention) exports
``arkor = ak.create_arkor(trainer=...)``, or a ``trainer``, or ``default``;
``run_trainer`` loads it, starts the job, streams it to the end and prints
the outcome so a CI step can gate on it.
"""

from __future__ import annotations

import importlib.util
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO

from .errors import ConfigError
from .trainer import Trainer
from .types import TrainingResult


@dataclass(frozen=True)
class Arkor:
    """The project manifest: the roles a project defines (today: its trainer)."""

    trainer: Trainer | None = None
    kind: Literal["arkor"] = "arkor"


def create_arkor(*, trainer: Trainer | None = None) -> Arkor:
    """Build the manifest that ``run_trainer`` / ``arkor-nb run`` discover."""
    if trainer is not None and not isinstance(trainer, Trainer):
        raise ConfigError("trainer", f"must be a Trainer from ak.create_trainer(...), got {trainer!r}")
    return Arkor(trainer=trainer)


def _trainer_from(value: Any) -> Trainer | None:
    if isinstance(value, Arkor):
        return value.trainer
    if isinstance(value, Trainer):
        return value
    return None


def load_module(path: str | Path) -> Any:
    """Execute a Python file as a fresh module (its directory importable)."""
    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise ConfigError("path", f"{path} is not a file; pass the module that exports your trainer")
    name = f"_arkor_entry_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise ConfigError("path", f"{path} is not a Python module (expected a .py file)")
    module = importlib.util.module_from_spec(spec)
    added = str(file.parent) not in sys.path
    if added:
        sys.path.insert(0, str(file.parent))
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(name, None)
        if added and str(file.parent) in sys.path:
            sys.path.remove(str(file.parent))
    return module


def load_trainer(path: str | Path) -> Trainer:
    """The trainer a module exports: ``arkor`` manifest, then ``trainer``, then ``default``."""
    module = load_module(path)
    for attr in ("arkor", "trainer", "default"):
        trainer = _trainer_from(getattr(module, attr, None))
        if trainer is not None:
            return trainer
    raise ConfigError(
        "path",
        f"{path} exports no trainer: define `arkor = ak.create_arkor(trainer=...)`, "
        "`trainer = ak.create_trainer(...)` or `default = ...` at module level",
    )


def run_trainer(path: str | Path, *, out: TextIO | None = None) -> TrainingResult:
    """Load the trainer from ``path``, start it, wait for the end, print the outcome."""
    stream = out if out is not None else sys.stdout
    trainer = load_trainer(path)
    job_id = trainer.start()
    print(f"Started job {job_id}", file=stream, flush=True)
    result = trainer.wait()
    line = f"Job {job_id} {result.job.status}"
    if result.job.status == "failed" and result.job.error:
        line += f": {result.job.error}"
    print(line, file=stream, flush=True)
    return result
