"""Fixtures for the notebook panel tests: a real local server with the synthetic worker.

One server per test module (starting one costs about a second); the
synthetic worker runs ``STEP_S`` seconds per step, so a run's length is set
by ``max_steps`` alone: short runs complete, long runs are there to be
cancelled.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from arkor_nb import LocalBackend, create_trainer
from arkor_nb.core.events import CheckpointSaved, TrainingCompleted, TrainingLog, TrainingStarted
from tests.local.server_harness import SYNTHETIC, ServerProcess, wait_for

STEP_S = 0.01

__all__ = ["wait_for", "SYNTHETIC", "synthetic_events"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    home: Path = tmp_path_factory.mktemp("nb-home")
    proc = ServerProcess(home, step_s=STEP_S, ping_s=0.5).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def make_trainer(server: ServerProcess) -> Callable[..., Any]:
    def make(name: str = "nb-test", **kw: Any) -> Any:
        kw.setdefault("max_steps", 40)
        kw.setdefault("logging_steps", 1)
        return create_trainer(name=name, model=SYNTHETIC,
                              backend=LocalBackend(url=server.url, token=server.token), **kw)

    return make


def synthetic_events(n: int, *, eval_every: int = 50, job_id: str = "job_x",
                     checkpoint_every: int = 0, complete: bool = True) -> Iterator[Any]:
    """A started event, ``n`` log events (falling loss), optional checkpoints, a completion."""
    yield TrainingStarted(job_id=job_id, event_id="0", metadata={"maxSteps": n})
    for step in range(1, n + 1):
        # model_construct: the same typed event without re-validating our own numbers (fast)
        yield TrainingLog.model_construct(
            job_id=job_id, timestamp="", event_id=str(step), type="training.log", step=step,
            loss=2.0 / (1 + step / 100),
            eval_loss=(1.5 / (1 + step / 100) if step % eval_every == 0 else None),
            learning_rate=1e-4 * (1 - step / (n + 1)), epoch=step / 100, samples_per_second=8.0)
        if checkpoint_every and step % checkpoint_every == 0:
            yield CheckpointSaved(job_id=job_id, event_id=f"c{step}", step=step)
    if complete:
        yield TrainingCompleted(job_id=job_id, event_id=str(n + 1), metrics={"train_loss": 0.5})
