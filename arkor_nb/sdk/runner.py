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

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO

from arkor_nb.core.contexts import TrainingResult
from arkor_nb.core.errors import ConfigError
from arkor_nb.core.status import FAILED
from arkor_nb.sdk.trainer import Trainer


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
    except SyntaxError as err:  # (IndentationError too): bad input, not a crash
        where = f"{err.filename or file}:{err.lineno}" if err.lineno else str(file)
        raise ConfigError("path", f"{where}: {type(err).__name__}: {err.msg}; fix the file "
                                  "and run it again") from None
    finally:
        sys.modules.pop(name, None)
        if added and str(file.parent) in sys.path:
            sys.path.remove(str(file.parent))
    return module


EXPORTS = ("arkor", "trainer", "default")  # looked up in this order


def load_trainer(path: str | Path, *, out: TextIO | None = None) -> Trainer:
    """The trainer a module exports: ``arkor`` manifest, then ``trainer``, then ``default``.

    When it exports more than one, a line on ``out`` (default stderr) says which
    one runs; one that is not a Trainer is named with what it is instead."""
    module = load_module(path)
    found = {attr: getattr(module, attr) for attr in EXPORTS if hasattr(module, attr)}
    usable = {attr: t for attr, t in ((a, _trainer_from(v)) for a, v in found.items())
              if t is not None}
    if usable:
        attr, trainer = next(iter(usable.items()))
        others = [a for a in found if a != attr]
        if others:
            ignored = ", ".join(f"`{a}`" for a in others)
            print(f"arkor-nb: {path} exports `{attr}` and {ignored}; running `{attr}` "
                  f"(the order is {', '.join(EXPORTS)})", file=out or sys.stderr, flush=True)
        return trainer
    expected = ("define `arkor = ak.create_arkor(trainer=...)`, `trainer = ak.create_trainer(...)` "
                "or `default = ...` at module level")
    if found:
        what = "; ".join(f"`{a}` is {_describe(v)}" for a, v in found.items())
        raise ConfigError("path", f"{path} exports no trainer: {what}, not a Trainer from "
                                  f"ak.create_trainer(...) or an ak.create_arkor(...) manifest "
                                  f"with one; {expected}")
    raise ConfigError("path", f"{path} exports no trainer (none of {', '.join(EXPORTS)} is "
                              f"defined); {expected}")


def _describe(value: Any) -> str:
    if isinstance(value, Arkor):
        return "an ak.create_arkor() manifest without a trainer"
    text = repr(value)
    return f"a {type(value).__name__} ({text[:60]}{'...' if len(text) > 60 else ''})"


# After [tool.arkor-nb] entry: ours, then the TypeScript SDK's layout, so a ported project runs.
FALLBACK_ENTRIES = ("trainer.py", "src/arkor/index.py", "src/arkor/trainer.py")


def default_entry(cwd: str | Path | None = None) -> Path:
    """The project's entry file: ``[tool.arkor-nb] entry`` in ``pyproject.toml``,
    else the first of ``trainer.py``, ``src/arkor/index.py``, ``src/arkor/trainer.py``,
    all in ``cwd`` (default: the working directory)."""
    root = Path(cwd) if cwd is not None else Path.cwd()
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        try:
            data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise ConfigError("entry", f"{pyproject} is not valid TOML ({err}); fix it or pass "
                                       "the entry file's path") from None
        tool = data.get("tool", {}).get("arkor-nb", {})
        entry = tool.get("entry") if isinstance(tool, dict) else None
        if entry is not None:
            if not isinstance(entry, str) or not entry:
                raise ConfigError("entry", f"[tool.arkor-nb] entry in {pyproject} must be a path "
                                           f'string like "trainer.py", got {entry!r}')
            path = root / entry
            if not path.is_file():
                raise ConfigError("entry", f"[tool.arkor-nb] entry = {entry!r} in {pyproject} "
                                           f"is not a file ({path} does not exist)")
            return path
    for fallback in FALLBACK_ENTRIES:
        if (root / fallback).is_file():
            return root / fallback
    raise ConfigError(
        "entry",
        f"no entry to run in {root}: set `entry = \"path/to/file.py\"` under [tool.arkor-nb] "
        f"in {pyproject}, or create {root / FALLBACK_ENTRIES[0]} (or "
        f"{' or '.join(FALLBACK_ENTRIES[1:])}, the TypeScript SDK's layout), or pass the file's path",
    )


def run_trainer(path: str | Path | None = None, *, out: TextIO | None = None) -> TrainingResult:
    """Load the trainer from ``path``, start it, wait for the end, print the outcome.

    Without ``path``, runs the project's default entry (see :func:`default_entry`).
    """
    trainer = load_trainer(default_entry() if path is None else path)
    return run_loaded(trainer, out=out)


def run_loaded(trainer: Trainer, *, out: TextIO | None = None) -> TrainingResult:
    """Start a loaded trainer, wait for the end, print the outcome (``arkor-nb run`` too)."""
    stream = out if out is not None else sys.stdout
    job_id = trainer.start()
    print(f"Started job {job_id}", file=stream, flush=True)
    result = trainer.wait()
    line = f"Job {job_id} {result.job.status}"
    if result.job.status == FAILED and result.job.error:
        line += f": {result.job.error}"
    print(line, file=stream, flush=True)
    return result
