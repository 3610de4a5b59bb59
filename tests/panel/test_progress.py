"""The pure run model: folding events, decimation bounds, derived figures."""

from __future__ import annotations

import json
import math
import sys
from typing import Any

from arkor_nb.core.contexts import StreamNotice
from arkor_nb.core.errors import ReconnectExhaustedError
from arkor_nb.core.events import (
    CheckpointSaved,
    TrainingCancelled,
    TrainingFailed,
    TrainingLog,
    TrainingStarted,
)
from arkor_nb.notebook.progress import LOG_RING, MAX_POINTS, RunState
from arkor_nb.notebook.series import DecimatedSeries, ema, thin
from tests.panel.conftest import synthetic_events


def test_series_keeps_every_point_until_full() -> None:
    s = DecimatedSeries(100)
    for i in range(80):
        s.append(i, float(i))
    assert s.xs() == list(range(80))
    assert s.ys() == [float(i) for i in range(80)]


def test_series_stays_bounded_with_recent_points_exact_and_first_kept() -> None:
    s = DecimatedSeries(2000)
    n = 1_000_000
    for i in range(n):
        s.append(i, float(i) * 0.5)
    xs, ys = s.xs(), s.ys()
    assert len(xs) <= 2000
    assert len(xs) >= 1000  # decimation keeps a useful number of points
    assert s.count == n
    assert xs[0] == 0  # the start of the run stays on the chart
    assert xs == sorted(xs) and len(set(xs)) == len(xs)
    assert all(y == x * 0.5 for x, y in zip(xs, ys, strict=True))  # points, not averages
    tail = 500
    assert xs[-tail:] == list(range(n - tail, n))  # the newest points exactly as logged
    # old part is evenly strided
    head = xs[: len(xs) - tail]
    gaps = {b - a for a, b in zip(head, head[1:], strict=False)}
    assert gaps == {s.stride}


def test_series_skips_non_finite_values() -> None:
    s = DecimatedSeries(100)
    s.append(1, float("nan"))
    s.append(2, float("inf"))
    s.append(3, 1.0)
    assert s.xs() == [3]


def test_thin_keeps_last_point_and_bound() -> None:
    xs = list(range(5001))
    tx, ty = thin(xs, [float(x) for x in xs], 1000)
    assert len(tx) <= 1000 and tx[-1] == 5000


def test_ema_smooths_and_zero_weight_is_the_raw_curve() -> None:
    xs = list(range(0, 300, 3))
    ys = [math.sin(x / 10) + (x % 7) / 10 for x in xs]
    full = ema(xs, ys, 0.8)
    assert len(full) == len(ys) and ema(xs, ys, 0.0) == ys
    # smoothing reduces the jitter
    def jitter(v: list[float]) -> float:
        return sum(abs(b - a) for a, b in zip(v, v[1:], strict=False))
    assert jitter(full) < jitter(ys)


def test_fold_tracks_status_metrics_best_and_eta() -> None:
    now = [100.0]
    st = RunState(name="r", clock=lambda: now[0], max_steps=None)
    st.fold(TrainingStarted(metadata={"maxSteps": 200}), now=100.0)
    assert st.status == "running" and st.max_steps == 200
    st.fold(TrainingLog(step=10, loss=2.0, learning_rate=1e-4, epoch=0.1, samples_per_second=5.0),
            now=101.0)
    st.fold(TrainingLog(step=20, loss=1.0, eval_loss=1.2), now=102.0)
    st.fold(TrainingLog(step=30, loss=1.5), now=103.0)
    assert st.step == 30 and st.loss == 1.5 and st.eval_loss == 1.2
    assert (st.best_loss, st.best_step) == (1.0, 20)
    assert st.learning_rate == 1e-4 and st.samples_per_second == 5.0 and st.epoch == 0.1
    # 20 steps in 2 s -> 10 steps/s; 170 left -> 17 s
    now[0] = 103.0
    assert st.eta() == 17.0
    assert st.progress() == 30 / 200
    st.fold(CheckpointSaved(step=30), now=103.5)
    assert [c.step for c in st.checkpoints] == [30]
    st.fold(TrainingCancelled(step=31), now=104.0)
    assert st.status == "cancelled" and st.terminal and st.eta() is None
    now[0] = 500.0
    assert st.elapsed() == 4.0  # the clock stops at the terminal event


def test_failure_and_transport_errors_are_kept_with_their_text() -> None:
    st = RunState()
    st.fold(TrainingFailed(error="CUDA out of memory at step 5", step=5))
    assert st.status == "failed" and st.error == "CUDA out of memory at step 5"
    assert st.log[-1].level == "error"
    st2 = RunState()
    st2.fold(StreamNotice("reconnecting", attempt=2, delay=1.5))
    assert st2.transport == "stream closed by the backend; reconnecting (attempt 2, next in 1.5 s)"
    st2.fold(StreamNotice("error", error=ReconnectExhaustedError(3, OSError("refused"))))
    assert st2.transport_level == "error"
    assert "ak.live(job_id=...)" in st2.transport  # says how to recover


def test_state_memory_is_bounded_after_a_million_events() -> None:
    st = RunState()
    st.fold(TrainingStarted(metadata={"maxSteps": 1_000_000}))
    # one event object, mutated: a million folds without building a million models
    ev = TrainingLog(step=0, loss=1.0, learning_rate=1e-4)
    for step in range(1, 1_000_001):
        ev.step = step
        ev.loss = 2.0 / (1 + step / 100)
        ev.eval_loss = 1.0 if step % 50 == 0 else None
        st.fold(ev)
    for ev2 in synthetic_events(10, job_id="tail"):
        if isinstance(ev2, TrainingLog):
            continue
        st.fold(ev2)
    curves = st.curves()
    assert len(curves["loss"][0]) <= MAX_POINTS
    assert len(curves["eval_loss"][0]) <= MAX_POINTS
    assert len(curves["learning_rate"][0]) <= MAX_POINTS
    assert len(st.log) == LOG_RING
    assert st.n_events == 1_000_003
    assert st.status == "completed" and st.step == 1_000_000
    assert curves["loss"][0][-1] == 1_000_000
    assert st.best_step == 1_000_000


def test_recorder_loses_nothing_while_flushed_concurrently(tmp_path: Any) -> None:
    """The streaming thread adds while the ticker flushes: every event reaches the file."""
    import threading

    from arkor_nb.notebook.record import Recorder

    rec = Recorder({"name": "race"})
    n = 50_000
    done = threading.Event()

    def flusher() -> None:
        while not done.is_set():
            rec.flush()

    events = [TrainingLog.model_construct(job_id="j", timestamp="", event_id=str(step),
                                          type="training.log", step=step, loss=1.0)
              for step in range(1, n + 1)]
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: expose any race
    try:
        thread = threading.Thread(target=flusher)
        thread.start()
        for event in events:
            rec.add(event)
        done.set()
        thread.join()
    finally:
        sys.setswitchinterval(previous)
    path = rec.save(tmp_path / "run.jsonl")
    lines = path.read_text().splitlines()[1:]
    assert len(lines) == n
    assert [json.loads(line)["step"] for line in lines] == list(range(1, n + 1))
    rec.close()
