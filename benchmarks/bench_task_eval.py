"""Task evals (issue 18): what judging a run costs, and what pruning saves.

1. Eval overhead on a real model (SmolLM2-135M, ``arkor-nb/smollm2-135m-instruct``):
   held-out tickets from data/triage_eval.jsonl scored (``fields``) after every
   checkpoint (every 10 steps), ``max_tokens`` 32. Four runs of the same config,
   interleaved: no eval; the worker's batched eval (left padding, KV cache,
   ``model.generate``); the worker one prompt at a time (``ARKOR_NB_EVAL_BATCH=1``,
   a second server); the client scoring through ``ctx.infer`` (the job started
   without ``taskEval``). Overhead = extra wall time over the no-eval run.
2. A sweep of 6 trials on the tiny model (learning rates fixed, reported
   metric ``1/(1+loss)`` per log): median pruner vs no pruner, total wall and
   the best trial's value.

    python -m benchmarks.bench_task_eval --quick   # 20 steps, 12 tickets, short sweep
    python -m benchmarks.bench_task_eval --full    # 60 steps, 60 tickets, 30-step trials
    python -m benchmarks.bench_task_eval --full --variants none,batched,batched,none --no-sweep
                                                   # the batched eval's overhead alone, ABBA
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

import arkor_nb as ak
from benchmarks.common import PY, REPO, log, mode_parser, save

DATA = REPO / "data"
MODEL = "arkor-nb/smollm2-135m-instruct"
CACHE = Path(os.environ.get("ARKOR_NB_BENCH_CACHE", "/tmp/arkor-bench-task-eval"))


@contextmanager
def server(name: str, **env: str) -> Iterator[ak.LocalBackend]:
    """A real local server in its own home, sharing one models folder across servers."""
    home = CACHE / name
    home.mkdir(parents=True, exist_ok=True)
    (CACHE / "models").mkdir(exist_ok=True)
    if not (home / "models").exists():
        (home / "models").symlink_to(CACHE / "models", target_is_directory=True)
    token = secrets.token_hex(16)
    (home / "server.json").unlink(missing_ok=True)
    child = {**os.environ, "ARKOR_NB_HOME": str(home), "PYTHONPATH": str(REPO),
             "ARKOR_NB_DATA_ROOTS": str(DATA), **env}
    with open(home / "server.log", "wb") as out:
        proc = subprocess.Popen([PY, "-m", "arkor_nb.local.server.serve", "--port", "0", "--home",
                                 str(home), "--token", token], env=child, cwd=REPO, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not (home / "server.json").exists():
            if time.monotonic() > deadline:
                raise TimeoutError("server did not start")
            time.sleep(0.1)
        url = json.loads((home / "server.json").read_text())["url"]
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/v1/jobs", headers={"Authorization": f"Bearer {token}"}, timeout=5,
                          trust_env=False)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield ak.LocalBackend(url=url, token=token)
    finally:
        proc.terminate()
        proc.wait(30)


def overhead_run(backend: ak.LocalBackend, variant: str, steps: int, tickets: int) -> dict[str, Any]:
    task_eval = None if variant == "none" else ak.TaskEval(
        data=DATA / "triage_eval.jsonl", scorers=["fields"], max_tokens=32, limit=tickets)
    trainer = ak.create_trainer(
        name=f"overhead-{variant}", model=MODEL, backend=backend,
        dataset={"type": "file", "path": str(DATA / "triage.jsonl")},
        lora={"r": 16, "alpha": 16, "max_length": 128}, max_steps=steps, batch_size=8,
        learning_rate=1e-3, logging_steps=5, save_steps=10, task_eval=task_eval)
    if variant == "client":  # the job starts without taskEval: the client scores via ctx.infer
        trainer.config.pop("taskEval")
    began = time.monotonic()
    result = trainer.wait()
    wall = time.monotonic() - began
    job = ak.job(result.job.id, backend=backend)  # started_at: training.started (after model setup)
    train_s = (datetime.fromisoformat(job.completed_at.replace("Z", "+00:00"))
               - datetime.fromisoformat(job.started_at.replace("Z", "+00:00"))).total_seconds()
    return {"variant": variant, "status": result.job.status, "wall_s": round(wall, 1),
            "train_wall_s": round(train_s, 1),
            "job": result.job.id, "fields_all_by_step": result.metrics.get("fields/all", [])}


def sweep_runs(backend: ak.LocalBackend, steps: int, pruned: bool) -> dict[str, Any]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=4) if pruned \
        else optuna.pruners.NopPruner()
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for lr in (3e-3, 1e-3, 1e-6, 3e-5, 2e-3, 1e-5):
        study.enqueue_trial({"learning_rate": lr})

    def build(trial: Any) -> ak.Trainer:
        lr = trial.suggest_float("learning_rate", 1e-6, 1e-2, log=True)

        def on_log(ctx: Any) -> None:
            if ctx.loss is not None:
                ctx.report(score=1 / (1 + ctx.loss))

        return ak.create_trainer(name=f"sweep-{lr:.0e}", model="arkor-nb/tiny", backend=backend,
                                 dataset={"type": "file", "path": str(DATA / "triage.jsonl")},
                                 max_steps=steps, logging_steps=2, save_steps=steps,
                                 learning_rate=lr, callbacks={"on_log": on_log})

    began = time.monotonic()
    sweep = ak.sweep(build, n_trials=6, metric="score", study=study, display=False)
    wall = time.monotonic() - began
    best = sweep.best
    return {"pruner": "median" if pruned else "none", "wall_s": round(wall, 1),
            "states": [j.state for j in sweep.jobs],
            "best": None if best is None else {"params": best.params, "step": best.step,
                                               "value": round(best.value, 4)}}


VARIANTS = ("none", "batched", "one-at-a-time", "client")


def main() -> None:
    ap = mode_parser(__doc__)
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help="runs in this order, repeats allowed (none, batched, one-at-a-time, client)")
    ap.add_argument("--no-sweep", action="store_true", help="leave the pruning sweep out")
    args = ap.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown or "none" not in variants:
        ap.error(f"--variants: unknown {unknown}" if unknown else "--variants needs a 'none' run")
    quick = args.mode != "full"
    steps, tickets, sweep_steps = (20, 12, 16) if quick else (60, 60, 30)
    load = Path("/proc/loadavg").read_text().split()[:3]
    log(f"load before: {load}")
    results: dict[str, Any] = {"mode": "quick" if quick else "full", "steps": steps, "tickets": tickets,
                               "load_before": load}
    with server("one-at-a-time", ARKOR_NB_EVAL_BATCH="1") as single, server("batched") as batched:
        runs = []
        for variant in variants:
            log(f"overhead: {variant} (load {Path('/proc/loadavg').read_text().split()[0]})")
            runs.append(overhead_run(single if variant == "one-at-a-time" else batched, variant,
                                     steps, tickets))
            log(f"  {runs[-1]['train_wall_s']} s training, fields/all {runs[-1]['fields_all_by_step']}")
        # training.started -> terminal (model setup left out); the mean of the no-eval runs
        nones = [r["train_wall_s"] for r in runs if r["variant"] == "none"]
        base = sum(nones) / len(nones)
        for run in runs:
            run["overhead_pct"] = round(100 * (run["train_wall_s"] - base) / base, 1)
        results["overhead"] = runs
        results["sweep"] = [] if args.no_sweep else \
            [sweep_runs(batched, sweep_steps, pruned) for pruned in (True, False)]
        for s in results["sweep"]:
            log(f"sweep {s['pruner']}: {s['wall_s']} s, {s['states']}, best {s['best']}")
    results["load_after"] = Path("/proc/loadavg").read_text().split()[:3]
    path = save("task_eval_quick" if quick else "task_eval", results)
    log(f"saved {path}")
    print(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
