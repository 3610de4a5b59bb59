"""Checkpoint samples: time from ``checkpoint.saved`` to the reply in the panel's state.

Two runs of ``arkor-nb/tiny`` on one local server, each sampling one prompt at
each checkpoint while training goes on:

* ``worker``: ``ak.live(trainer, sample_prompts=...)`` on a trainer it starts:
  the worker answers with the model in memory (``checkpoint.sample`` events);
* ``ctx.infer``: the same, on a trainer already started, so ``ak.live`` falls
  back to one ``/v1/inference/chat`` per checkpoint (the server loads the model
  and the checkpoint's adapter while the worker trains: the old path).

``python -m benchmarks.bench_samples [--steps 40 --save 10]``
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from typing import Any

import arkor_nb as ak
from arkor_nb.core.events import CheckpointSaved
from benchmarks.common import REPO, log, machine, median, save
from benchmarks.local_server import local_server

PROMPT = "My card was declined."


def one_run(server: Any, mode: str, steps: int, save_every: int) -> dict[str, Any]:
    trainer = ak.create_trainer(
        name=f"bench-samples-{mode}", model="arkor-nb/tiny",
        dataset={"type": "file", "path": str(REPO / "data" / "triage.jsonl")},
        max_steps=steps, logging_steps=5, save_steps=save_every,
        backend=ak.LocalBackend(url=server.url, token=server.token))
    saved_at: dict[int, float] = {}
    trainer.subscribe(lambda item: saved_at.setdefault(item.step, time.monotonic())
                      if isinstance(item, CheckpointSaved) else None)
    if mode == "ctx.infer":
        trainer.start()  # already started: live() samples through ctx.infer
    run = ak.live(trainer, display=False, sample_prompts=[PROMPT])
    shown_at: dict[int, float] = {}
    done = threading.Event()

    def watch() -> None:  # the moment each reply lands in the panel's state (10 ms polls)
        while not done.is_set():
            for ck in list(run.state.checkpoints):
                if ck.samples.get(PROMPT) and ck.step not in shown_at:
                    shown_at[ck.step] = time.monotonic()
            time.sleep(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    run.result(timeout=900)
    ended = time.monotonic()
    time.sleep(0.05)
    done.set()
    watcher.join()
    lags = {s: round(shown_at[s] - saved_at[s], 3) for s in saved_at if s in shown_at}
    after_end = sum(1 for s in shown_at if shown_at[s] > ended)
    return {"mode": mode, "lags": lags, "median": median(lags.values()),
            "shownAfterRunEnded": after_end, "checkpoints": len(saved_at)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--save", type=int, default=10)
    args = parser.parse_args()
    with local_server() as server:
        one_run(server, "worker", 2, 2)  # builds arkor-nb/tiny once, outside the timings
        rows = [one_run(server, mode, args.steps, args.save) for mode in ("ctx.infer", "worker")]
    for row in rows:
        log(json.dumps(row))
    save("samples", {"machine": machine(), "rows": rows})


if __name__ == "__main__":
    main()
