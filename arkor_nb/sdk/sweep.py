"""Sweeps on optuna: ``run_sweep(build, n_trials, metric, ...)`` -> :class:`Sweep`.

``build(trial)`` returns a Trainer built from ``trial.suggest_*``. Each value
of ``metric`` the run produces (a ``checkpoint.eval`` metric or a
``ctx.report`` value) is ``trial.report(value, step)``; when
``trial.should_prune()`` says so the job is cancelled on the backend at
once (from the streaming loop, not after the run) and the trial ends as
pruned (``optuna.TrialPruned``). A finished trial's value is the best value
of ``metric`` over its checkpoints. Trials run one after another (or up to
``parallel`` at a time when the backend has the slots).

optuna is an optional extra (``pip install 'arkor-nb[sweep]'``), imported
only when a sweep runs. A :class:`SweepWatch` sees trials start, report and
finish (the notebook's live compare panel is one; ``ak.sweep`` picks it).
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from arkor_nb.core.contexts import MetricsReported, TrainingResult, best_of
from arkor_nb.core.errors import ConfigError
from arkor_nb.core.events import CheckpointEval
from arkor_nb.core.status import COMPLETED, RUNNING
from arkor_nb.sdk.trainer import Trainer

MODES = {"max": "maximize", "min": "minimize"}
PRUNED = "pruned"  # a trial's own end (its job is then cancelled on the backend)


@dataclass
class SweepJob:
    """One trial's run: ``state`` is "running", "completed", "pruned", "failed" or "cancelled"."""

    number: int
    params: dict[str, Any]
    trainer: Trainer
    state: str = RUNNING
    points: list[tuple[int, float]] = field(default_factory=list)  # (step, metric value)
    result: TrainingResult | None = None
    pruned_at: int | None = None

    @property
    def job_id(self) -> str | None:
        return self.trainer.job_id

    def best(self, mode: str) -> tuple[int, float] | None:
        if not self.points:
            return None
        return best_of({"m": self.points}, "m", mode)


@dataclass(frozen=True)
class SweepBest:
    """The best trial: its params, job, the checkpoint step and metric value."""

    params: dict[str, Any]
    job_id: str | None
    step: int
    value: float


@dataclass
class Sweep:
    """``ak.sweep``'s result: ``study`` (the optuna Study), ``best``, ``jobs`` (one per trial)."""

    study: Any
    metric: str
    mode: str
    jobs: list[SweepJob] = field(default_factory=list)

    @property
    def best(self) -> SweepBest | None:
        found = [(j, j.best(self.mode)) for j in self.jobs if j.state == COMPLETED]
        scored = [(j, b) for j, b in found if b is not None]
        if not scored:
            return None
        sign = 1.0 if self.mode == "max" else -1.0
        job, (step, value) = max(scored, key=lambda jb: sign * jb[1][1])
        return SweepBest(params=dict(job.params), job_id=job.job_id, step=step, value=value)

    def __repr__(self) -> str:
        states = [j.state for j in self.jobs]
        counts = ", ".join(f"{states.count(s)} {s}" for s in dict.fromkeys(states))
        return f"<arkor_nb sweep {self.metric} ({self.mode}): {len(self.jobs)} trials ({counts}); best={self.best}>"


class SweepWatch:
    """Hooks for a live view of a sweep; every method is optional (no-ops here)."""

    def bind(self, control: SweepControl) -> None:
        """Called once with the control (``cancel_all``) before the first trial."""

    def trial_started(self, job: SweepJob) -> None: ...

    def trial_reported(self, job: SweepJob) -> None: ...

    def trial_finished(self, job: SweepJob) -> None: ...

    def run(self, job: SweepJob) -> TrainingResult:
        """Run one trial's job to its end (a view may show its live panel meanwhile)."""
        return job.trainer.wait()

    def done(self, sweep: Sweep) -> None:
        """The study is over (also after an error or a cancel)."""


class SweepControl:
    """Stops a sweep: no new trials, and the running jobs cancelled on the backend."""

    def __init__(self, study: Any) -> None:
        self.study = study
        self.stopped = False
        self.running: list[SweepJob] = []
        self._lock = threading.Lock()

    def cancel_all(self) -> None:
        self.stopped = True
        self.study.stop()
        with self._lock:
            running = list(self.running)
        for job in running:
            job.trainer.cancel()


def _optuna() -> Any:
    try:
        import optuna  # optional heavy dependency: only a sweep needs it
    except ImportError:
        raise ConfigError("sweep", "needs optuna: pip install 'arkor-nb[sweep]'") from None
    return optuna


def _max_parallel() -> int:
    try:
        return max(1, int(os.environ.get("ARKOR_NB_MAX_JOBS", "1")))
    except ValueError:
        return 1


def run_sweep(build: Callable[[Any], Trainer], n_trials: int, metric: str, mode: str = "max",
              pruner: Any = None, study: Any = None, *, parallel: int = 1,
              watch: SweepWatch | None = None) -> Sweep:
    """Run an optuna study over ``build``; see the module docstring."""
    optuna = _optuna()
    if not callable(build):
        raise ConfigError("build", "must be a function build(trial) -> ak.create_trainer(...)")
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise ConfigError("n_trials", f"must be a whole number >= 1, got {n_trials!r}")
    if not isinstance(metric, str) or not metric:
        raise ConfigError("metric", 'must name a task metric or a ctx.report value, e.g. "fields/all"')
    if mode not in MODES:
        raise ConfigError("mode", f'must be "max" or "min", got {mode!r}')
    if isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1:
        raise ConfigError("parallel", f"must be a whole number >= 1, got {parallel!r}")
    if parallel > _max_parallel():
        raise ConfigError("parallel", f"{parallel} trials at once needs ARKOR_NB_MAX_JOBS >= {parallel} "
                                      f"(the local backend's job slots; now {_max_parallel()})")
    if study is None:
        study = optuna.create_study(direction=MODES[mode],
                                    pruner=pruner if pruner is not None else optuna.pruners.NopPruner())
    else:
        if pruner is not None:
            raise ConfigError("pruner", "give the pruner to your study (optuna.create_study(pruner=...)), "
                                        "not to ak.sweep, when you pass study=")
        if study.direction.name.lower() != MODES[mode]:
            raise ConfigError("mode", f"the study {study.direction.name.lower()}s but mode={mode!r}")
    watch = watch or SweepWatch()
    sweep = Sweep(study=study, metric=metric, mode=mode)
    control = SweepControl(study)
    watch.bind(control)
    lock = threading.Lock()

    def objective(trial: Any) -> float:
        if control.stopped:
            study.stop()
            raise optuna.TrialPruned("the sweep was cancelled")
        trainer = build(trial)
        if not isinstance(trainer, Trainer):
            raise ConfigError("build", f"must return a Trainer (ak.create_trainer(...)), got {trainer!r}")
        job = SweepJob(number=trial.number, params=dict(trial.params), trainer=trainer)
        with lock:
            sweep.jobs.append(job)
        prune = threading.Event()
        cancels: list[Any] = []  # keep the cancel task referenced until it is done

        def listen(item: Any) -> None:
            if not isinstance(item, (CheckpointEval, MetricsReported)) or metric not in item.metrics:
                return
            value = float(item.metrics[metric])
            job.points.append((item.step, value))
            trial.report(value, item.step)
            watch.trial_reported(job)
            if not prune.is_set() and trial.should_prune():
                prune.set()
                job.pruned_at = item.step
                # On the streaming loop: ask the backend now, without waiting here.
                cancels.append(asyncio.get_running_loop().create_task(trainer.cancel_async()))

        trainer.subscribe(listen)
        with control._lock:
            control.running.append(job)
        trial.set_user_attr("job_id", trainer.start())
        watch.trial_started(job)
        try:
            job.result = watch.run(job)
        finally:
            with control._lock:
                control.running.remove(job)
        status = job.result.job.status
        if prune.is_set():
            job.state = PRUNED
        elif status == COMPLETED:
            job.state = COMPLETED
        else:
            job.state = status
        watch.trial_finished(job)
        if job.state == PRUNED:
            raise optuna.TrialPruned(f"pruned at step {job.pruned_at}; job {job.job_id} cancelled")
        if job.state != COMPLETED:
            if control.stopped:
                raise optuna.TrialPruned("the sweep was cancelled")
            return math.nan  # optuna records a failed trial; the sweep goes on
        best = job.best(mode)
        if best is None:
            recorded = ", ".join(sorted(job.result.metrics)) or "none"
            raise ConfigError("metric", f"trial {trial.number} (job {job.job_id}) recorded no "
                                        f"{metric!r}; recorded metrics: {recorded}")
        trial.set_user_attr("step", best[0])
        return best[1]

    try:
        study.optimize(objective, n_trials=n_trials, n_jobs=parallel, catch=())
    finally:
        watch.done(sweep)
    return sweep
