"""Measurement 5: cancel latency.

* abort to the local stream closed: ``trainer.wait(abort_signal=...)``
  follows a paced synthetic job on a real local server; we time
  ``controller.abort()`` until ``wait()`` has raised ``AbortedError``;
* ``run.cancel(remote=False)`` (what the panel's Cancel button calls) until
  ``run.done()`` (``ak.live`` without display: stream closed, ticker
  stopped, final state drawn).
* ``trainer.cancel()`` to the worker stopped: a real training job (built-in
  tiny model, 1 torch thread); ``on_log`` calls ``trainer.cancel()`` at step
  ``CANCEL_AT``; we report the steps run after the request
  (``training.cancelled.step`` minus the step seen) and the time from the
  request to the ``training.cancelled`` event (recorded timestamp) and to
  ``wait()`` returning.

    python -m benchmarks.bench_cancel --quick
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from benchmarks.bench_sse import _ts, raw_completed
from benchmarks.bench_training import DATA, ENV, MAX_LENGTH, bench_home, tiny_model
from benchmarks.common import log, median, mode_parser, save
from benchmarks.local_server import local_server

CANCEL_AT = 5


def _wait_for_events(trainer: Any, count: int) -> threading.Event:
    seen = threading.Event()
    n = [0]

    def listener(item: Any) -> None:
        n[0] += 1
        if n[0] >= count:
            seen.set()

    trainer.subscribe(listener)
    return seen


def stream_close(server: Any) -> dict[str, float]:
    """Abort -> ``trainer.wait()`` raised (the stream is closed), and
    ``run.cancel(remote=False)`` -> ``run.done()`` (the panel's path, final redraw included)."""
    import arkor_nb as ak

    backend = ak.LocalBackend(url=server.url, token=server.token)
    # 1. the Trainer's own stream
    trainer = ak.create_trainer(name="bench-abort", model="arkor-nb/synthetic", max_steps=100_000,
                                backend=backend)
    seen = _wait_for_events(trainer, 20)
    ctrl = ak.AbortController()
    outcome: dict[str, Any] = {}

    def follow() -> None:
        try:
            trainer.wait(abort_signal=ctrl.signal)
        except ak.AbortedError:
            outcome["aborted"] = time.perf_counter()

    th = threading.Thread(target=follow, daemon=True)
    th.start()
    if not seen.wait(60):
        raise RuntimeError("no events from the synthetic job")
    t0 = time.perf_counter()
    ctrl.abort("benchmark")
    th.join(30)
    t_abort = outcome["aborted"] - t0
    trainer.cancel()
    # 2. the panel's cancel path
    trainer = ak.create_trainer(name="bench-cancel", model="arkor-nb/synthetic", max_steps=100_000,
                                backend=backend)
    seen = _wait_for_events(trainer, 20)
    run = ak.live(trainer, display=False)
    if not seen.wait(60):
        raise RuntimeError("no events from the synthetic job")
    t0 = time.perf_counter()
    run.cancel(remote=False)
    while not run.done():
        time.sleep(0.0005)
    t_done = time.perf_counter() - t0
    trainer.cancel()  # tidy up the job on the backend
    return {"stream_closed_ms": t_abort * 1e3, "run_done_ms": t_done * 1e3}


def worker_stop(server: Any, model: str) -> dict[str, Any]:
    import arkor_nb as ak

    box: dict[str, Any] = {}
    holder: dict[str, Any] = {}

    def on_log(ctx: Any) -> None:
        if ctx.loss is not None and ctx.step >= CANCEL_AT and "t" not in box:
            box["step"] = ctx.step
            box["t_wall"] = time.time()
            box["t"] = time.perf_counter()
            holder["trainer"].cancel()

    trainer = ak.create_trainer(
        name="bench-cancel-train", model=model, dataset={"type": "file", "path": str(DATA)},
        lora={"r": 16, "alpha": 16, "max_length": MAX_LENGTH}, max_steps=400, batch_size=8,
        logging_steps=1, backend=ak.LocalBackend(url=server.url, token=server.token),
        callbacks={"on_log": on_log},
    )
    holder["trainer"] = trainer
    result = trainer.wait()
    t_wait = time.perf_counter() - box["t"]
    term = raw_completed(server, trainer.job_id)
    return {
        "status": result.job.status,
        "step_at_request": box["step"],
        "cancelled_step": term.get("step"),
        "extra_steps": (term.get("step") or 0) - box["step"],
        "to_cancelled_event_ms": (_ts(term["timestamp"]) - box["t_wall"]) * 1e3,
        "to_wait_returned_ms": t_wait * 1e3,
    }


def run(mode: str) -> dict[str, Any]:
    reps = 1 if mode == "quick" else 5
    out: dict[str, Any] = {"mode": mode, "reps": reps}
    with local_server(ARKOR_NB_SYNTHETIC_STEP_S="0.01") as server:
        closes = []
        for _ in range(reps):
            closes.append(stream_close(server))
            log(f"cancel: stream closed in {closes[-1]['stream_closed_ms']:.1f} ms")
        out["stream"] = {
            "stream_closed_ms": median(c["stream_closed_ms"] for c in closes),
            "run_done_ms": median(c["run_done_ms"] for c in closes),
            "max_stream_closed_ms": max(c["stream_closed_ms"] for c in closes),
            "runs": closes,
        }
    model = tiny_model(bench_home())
    with local_server(**ENV) as server:
        stops = []
        for _ in range(1 if mode == "quick" else 3):
            stops.append(worker_stop(server, model))
            log(f"cancel: worker stopped {stops[-1]}")
        out["worker"] = {
            "extra_steps_max": max(s["extra_steps"] for s in stops),
            "extra_steps_median": median(s["extra_steps"] for s in stops),
            "to_cancelled_event_ms": median(s["to_cancelled_event_ms"] for s in stops),
            "to_wait_returned_ms": median(s["to_wait_returned_ms"] for s in stops),
            "runs": stops,
        }
    save(f"cancel-{mode}", out)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = mode_parser(__doc__)
    a = ap.parse_args(argv)
    print(json.dumps(run(a.mode or "quick"), indent=1, default=str))


if __name__ == "__main__":
    main()
