"""What a run's judges say: task metrics per checkpoint, the latest examples, the run's health.

Pure Python, no widgets, folded by :class:`~arkor_nb.notebook.progress.RunState`
under its lock (O(1) per event, bounded memory): each metric is a decimated
series (checkpoints are sparse, but ``ctx.report`` may be called per step),
only the latest examples are kept, and the health row holds a few numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from arkor_nb.core.events import CheckpointEval, TrainingLog
from arkor_nb.notebook.series import DecimatedSeries

METRIC_POINTS = 500  # per metric curve
MAX_METRICS = 24  # metric names tracked; more are counted in ``dropped``, not drawn
MAX_EXAMPLES = 8  # examples of the latest eval kept for display
PRIMARY_ORDER = ("fields/all", "exact", "contains", "json")  # the headline metric, by preference


@dataclass
class Health:
    """The latest ``training.log`` health figures (local backend extras)."""

    step: int | None = None
    grad_norm: float | None = None
    tokens_per_second: float | None = None
    rss_mb: float | None = None  # latest
    peak_rss_mb: float | None = None
    gpu_mem_mb: float | None = None  # latest
    peak_gpu_mem_mb: float | None = None

    @property
    def known(self) -> bool:
        return self.step is not None


@dataclass
class EvalTrack:
    """Task metrics (``checkpoint.eval``, reported metrics), examples and health of one run."""

    series: dict[str, DecimatedSeries] = field(default_factory=dict)
    best: dict[str, tuple[int, float]] = field(default_factory=dict)  # name -> (step, value), max
    task: list[str] = field(default_factory=list)  # names that came from checkpoint.eval, in order
    examples: list[dict[str, Any]] = field(default_factory=list)
    examples_step: int | None = None
    n: int = 0  # prompts behind the latest eval
    evals: int = 0  # checkpoint.eval events folded
    dropped: int = 0
    health: Health = field(default_factory=Health)
    version: int = 0  # bumps on any change of the metrics or examples (the chart redraws)
    health_version: int = 0

    def add(self, name: str, step: int, value: Any, *, task: bool = False) -> None:
        """One metric value at ``step`` (non-finite and non-numbers are skipped)."""
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return
        s = self.series.get(name)
        if s is None:
            if len(self.series) >= MAX_METRICS:
                self.dropped += 1
                return
            s = self.series[name] = DecimatedSeries(METRIC_POINTS)
            if task:
                self.task.append(name)
        s.append(step, float(value))
        best = self.best.get(name)
        if best is None or value > best[1]:
            self.best[name] = (step, float(value))
        self.version += 1

    def fold_eval(self, ev: CheckpointEval) -> None:
        for name, value in ev.metrics.items():
            self.add(str(name), ev.step, value, task=True)
        self.n = ev.n
        self.evals += 1
        if ev.examples:
            self.examples = [e for e in ev.examples[:MAX_EXAMPLES] if isinstance(e, dict)]
            self.examples_step = ev.step
        self.version += 1

    def fold_reported(self, step: int, metrics: dict[str, Any]) -> None:
        """Metrics the user reported (``ctx.report``): drawn with the task metrics."""
        for name, value in metrics.items():
            self.add(str(name), step, value)

    def fold_health(self, ev: TrainingLog) -> None:
        if ev.grad_norm is None and ev.tokens_per_second is None and ev.rss_mb is None \
                and ev.gpu_mem_mb is None:
            return
        h = self.health
        h.step = ev.step
        if ev.grad_norm is not None:
            h.grad_norm = ev.grad_norm
        if ev.tokens_per_second is not None:
            h.tokens_per_second = ev.tokens_per_second
        if ev.rss_mb is not None:
            h.rss_mb = ev.rss_mb
            h.peak_rss_mb = max(h.peak_rss_mb or 0.0, ev.rss_mb)
        if ev.gpu_mem_mb is not None:
            h.gpu_mem_mb = ev.gpu_mem_mb
            h.peak_gpu_mem_mb = max(h.peak_gpu_mem_mb or 0.0, ev.gpu_mem_mb)
        self.health_version += 1

    # ------------------------------------------------------------ derived

    @property
    def primary(self) -> str | None:
        """The headline metric: ``fields/all``, else exact, ..., else the first task metric."""
        names = self.task or list(self.series)
        for name in PRIMARY_ORDER:
            if name in names:
                return name
        return names[0] if names else None

    def curves(self) -> dict[str, tuple[list[float], list[float]]]:
        """Copies of every metric series, task metrics first."""
        order = self.task + [n for n in self.series if n not in self.task]
        return {n: (self.series[n].xs(), self.series[n].ys()) for n in order}

    def best_of(self, name: str | None = None) -> tuple[str, int, float] | None:
        """(metric, step, value) of the best point of ``name`` (default: the primary metric)."""
        name = name or self.primary
        if name is None or name not in self.best:
            return None
        step, value = self.best[name]
        return name, step, value
