"""Figures derived from a run's folded state: elapsed time, step rate, ETA, progress, curves.

``RunState`` (``progress.py``) folds stream items into scalars and series;
the views ask it, when they render, for figures computed from those: how long
the job has run (counted from its creation, setup included), how fast it
steps, when it will finish, how far along it is, and copies of its curves.
Nothing here runs on the streaming thread's hot path except ``StepRate.mark``
(two assignments per ``training.log``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from arkor_nb.core.status import COMPLETED, TERMINAL_STATUSES
from arkor_nb.notebook.series import DecimatedSeries


class StepRate:
    """The observed training-step rate: from the first ``training.log`` to the latest."""

    __slots__ = ("_t0", "_s0", "_t", "_s")

    def __init__(self) -> None:
        self._t0: float | None = None
        self._s0 = 0
        self._t: float | None = None
        self._s = 0

    def mark(self, t: float, step: int) -> None:
        if self._t0 is None:
            self._t0, self._s0 = t, step
        self._t, self._s = t, step

    def per_second(self) -> float | None:
        if self._t0 is None or self._t is None:
            return None
        dt = self._t - self._t0
        ds = self._s - self._s0
        if dt <= 0 or ds <= 0:
            return None
        return ds / dt


class RunFigures:
    """The derived figures of ``RunState`` (a mixin: it reads the fields declared here)."""

    lock: threading.RLock
    clock: Callable[[], float]
    status: str
    created: float
    job_created: float | None
    ended: float | None
    step: int
    max_steps: int | None
    epoch: float | None
    num_epochs: float | None
    rate: StepRate
    loss_series: DecimatedSeries
    eval_series: DecimatedSeries
    lr_series: DecimatedSeries

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def origin(self) -> float:
        """Time zero of elapsed and of event-log times: the job's creation when known.

        (Or this view's start, when that came first: our own "creating the job" note.)
        """
        return self.created if self.job_created is None else min(self.job_created, self.created)

    def elapsed(self, now: float | None = None) -> float:
        """Seconds since the job was created (setup included), until it ended."""
        start = self.origin
        end = self.ended if self.ended is not None else (self.clock() if now is None else now)
        return max(0.0, end - start)

    def steps_per_second(self) -> float | None:
        return self.rate.per_second()

    def eta(self) -> float | None:
        """Seconds left, from the observed training-step rate; None when unknown or stopped."""
        if self.terminal or self.ended is not None or not self.max_steps:
            return None
        rate = self.steps_per_second()
        if not rate:
            return None
        return max(0.0, (self.max_steps - self.step) / rate)

    def progress(self) -> float | None:
        """Done fraction in [0, 1]: steps of ``max_steps``, else epochs; None when unknown."""
        if self.max_steps:
            done = 1.0 if self.status == COMPLETED else self.step / self.max_steps
            return min(1.0, max(0.0, done))
        if self.num_epochs and self.epoch is not None:
            return min(1.0, max(0.0, self.epoch / self.num_epochs))
        return None

    def curves(self) -> dict[str, tuple[list[float], list[float]]]:
        """Copies of the decimated series (call under ``lock`` or accept a torn read)."""
        with self.lock:
            return {
                "loss": (self.loss_series.xs(), self.loss_series.ys()),
                "eval_loss": (self.eval_series.xs(), self.eval_series.ys()),
                "learning_rate": (self.lr_series.xs(), self.lr_series.ys()),
            }
