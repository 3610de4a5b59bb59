"""Measurement 9 (issue 21): one job on several processes (torchrun DDP) vs one process.

The same global batch (8 rows a step) three ways, on the real local server
(one fresh server per run, interleaved, order alternating by rep):

* ``1p x 2t``: one process, 2 torch threads, batch 8;
* ``2p x 1t``: two processes (torchrun, gloo on CPU / nccl on CUDA), 1 thread
  each, batch 4 per process;
* ``1p x 1t, b4``: one process, 1 thread, batch 4: the per-rank work of
  ``2p x 1t`` without the all-reduce, so ``2p x 1t`` minus this is the DDP
  overhead per step (gradient all-reduce, the per-step cancel broadcast,
  waiting for the slower rank).

s/step is rank 0's own ``trainer.train()`` time over its steps
(``training.completed.metrics.secondsPerStep``); the final loss is the last
``training.log`` loss (the mean over ranks). Then the cancel of a two-process
job: from ``POST /cancel`` to every process of the job gone (torchrun agent and
ranks, found by ``ARKOR_NB_JOB_ID`` in /proc) and to ``training.cancelled``.

    python -m benchmarks.bench_distributed --quick --model tiny,smollm2 --device cpu

``--device cuda`` runs the same rows on GPUs (one per process); this
machine has none, so the GPU rows are left for a GPU machine. Load average is
recorded before and after each run.
"""

from __future__ import annotations

import os
import time
from typing import Any

import httpx

from benchmarks.bench_training import DATA, ENV, MAX_LENGTH, bench_home
from benchmarks.common import log, median, mode_parser, save
from benchmarks.local_server import SCOPE, local_server

MODELS = {"tiny": "arkor-nb/tiny", "smollm2": "arkor-nb/smollm2-135m-instruct"}
GLOBAL_BATCH = 8
# name -> (processes, torch threads per process, batch per process)
SHAPES = {"1p x 2t": (1, 2, GLOBAL_BATCH), "2p x 1t": (2, 1, GLOBAL_BATCH // 2),
          "1p x 1t, b4": (1, 1, GLOBAL_BATCH // 2)}


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _device_env(device: str) -> dict[str, str]:
    return {"CUDA_VISIBLE_DEVICES": ""} if device == "cpu" else {}


def _shared_models(home: Any) -> None:
    """Point a fresh server home at the bench home's built models (no rebuild per run)."""
    if not (home / "models").exists():
        (home / "models").symlink_to(bench_home() / "models", target_is_directory=True)


def one_run(model: str, shape: str, steps: int, device: str) -> dict[str, Any]:
    processes, threads, batch = SHAPES[shape]
    env = {**ENV, **_device_env(device), "ARKOR_NB_TORCH_THREADS": str(threads),
           "OMP_NUM_THREADS": str(threads)}
    load_before = _load()
    with local_server(**env) as server:
        _shared_models(server.home)
        config = {"model": MODELS[model], "datasetSource": {"type": "file", "path": str(DATA)},
                  "maxSteps": steps, "batchSize": batch, "maxLength": MAX_LENGTH,
                  "learningRate": 1e-3, "processes": processes}
        job_id = server.create_job(f"bench-dist-{shape}", config)
        job = server.wait_terminal(job_id, timeout=3600)
        events = _events(server, job_id)
    if job["status"] != "completed":
        raise RuntimeError(f"{model} {shape}: job {job['status']}: {job.get('error')}")
    done = events[-1]["metrics"]
    started = next(e for e in events if e["type"] == "training.started")["metadata"]
    losses = [e["loss"] for e in events if e["type"] == "training.log" and "loss" in e]
    return {"model": model, "shape": shape, "processes": started["processes"],
            "torch_threads": started["torchThreads"], "batch_per_process": batch,
            "s_per_step": done["secondsPerStep"], "steps": done["steps"],
            "final_loss": losses[-1], "setup_s": started["setupSeconds"],
            "load_before": load_before, "load_after": _load()}


def _events(server: Any, job_id: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{server.url}/v1/jobs/{job_id}", params={**SCOPE, "events": "1", "limit": 10_000},
                  headers=server.headers, timeout=60, trust_env=False)
    r.raise_for_status()
    return list(r.json()["events"])


def cancel_run(device: str) -> dict[str, Any]:
    """Cancel a two-process tiny job after its first log; time until every process exited."""
    from arkor_nb.local.server.torchrun import job_processes

    env = {**ENV, **_device_env(device)}
    load_before = _load()
    with local_server(**env) as server:
        _shared_models(server.home)
        job_id = server.create_job("bench-dist-cancel", {
            "model": MODELS["tiny"], "datasetSource": {"type": "file", "path": str(DATA)},
            "maxSteps": 100_000, "batchSize": 2, "processes": 2})
        deadline = time.monotonic() + 600
        while not any(e["type"] == "training.log" for e in _events(server, job_id)):
            if time.monotonic() > deadline:
                raise RuntimeError("no training.log from the two-process job")
            time.sleep(0.05)
        pids = job_processes(job_id)
        t0 = time.perf_counter()
        httpx.post(f"{server.url}/v1/jobs/{job_id}/cancel", params=SCOPE, headers=server.headers,
                   timeout=30, trust_env=False).raise_for_status()
        recorded = None
        while job_processes(job_id) or recorded is None:
            if recorded is None and server.job(job_id)["status"] == "cancelled":
                recorded = time.perf_counter() - t0
            if time.perf_counter() - t0 > 120:
                raise RuntimeError("the job's processes did not exit in 120 s")
            time.sleep(0.01)
        gone = time.perf_counter() - t0
    return {"processes_seen": len(pids), "to_cancelled_s": round(recorded, 3),
            "to_every_process_gone_s": round(gone, 3), "load_before": load_before,
            "load_after": _load()}


def main() -> None:
    ap = mode_parser(__doc__)
    ap.add_argument("--model", default="tiny", help="comma list of: " + ", ".join(MODELS))
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--reps", type=int, default=None)
    args = ap.parse_args()
    quick = args.mode != "full"
    reps = args.reps or (1 if quick else 3)
    runs: list[dict[str, Any]] = []
    from arkor_nb.local.training.models import resolve_model

    for model in args.model.split(","):
        resolve_model(MODELS[model], bench_home())  # built once, outside the timings
        steps = (20 if quick else 100) if model == "tiny" else (3 if quick else 10)
        for rep in range(reps):
            order = list(SHAPES) if rep % 2 == 0 else list(reversed(SHAPES))
            for shape in order:
                log(f"{model} {shape} rep {rep + 1}/{reps} ({steps} steps)")
                runs.append({**one_run(model, shape, steps, args.device), "rep": rep})
                log(f"  {runs[-1]}")
    cancels = [cancel_run(args.device) for _ in range(reps)]
    log(f"cancel: {cancels}")
    summary = []
    for model in args.model.split(","):
        row: dict[str, Any] = {"model": model}
        for shape in SHAPES:
            mine = [r for r in runs if r["model"] == model and r["shape"] == shape]
            row[shape] = {"s_per_step": median(r["s_per_step"] for r in mine),
                          "final_loss": median(r["final_loss"] for r in mine)}
        ddp = row["2p x 1t"]["s_per_step"] - row["1p x 1t, b4"]["s_per_step"]
        row["ddp_overhead_s_per_step"] = round(ddp, 4)
        summary.append(row)
        log(f"summary {row}")
    save(f"distributed-{args.device}-{'quick' if quick else 'full'}",
         {"runs": runs, "cancel": cancels, "summary": summary, "device": args.device})


if __name__ == "__main__":
    main()
