"""Measurement 8: a real pretrained model, SmolLM2-135M-Instruct from its GGUF file, on this CPU.

Three parts, each its own command (they take minutes on 2 cores):

- ``load``: the first load of the GGUF (dequantize + save the plain copy),
  a cached load (hash + ``from_pretrained`` of the copy; in a fresh process,
  and once more in the same process, without transformers' lazy imports),
  and transformers' own GGUF load (what every load would cost without the
  cache). Each in a fresh process; top-level imports excluded; peak RSS per
  process.
- ``speed``: seconds per optimizer step and peak RSS of the local worker (the
  real server + worker subprocess + a client streaming every event) vs plain
  transformers ``Trainer`` + peft vs TRL ``SFTTrainer``, same model folder,
  data, LoRA (r 16, alpha 16, all linear), seed, batch, max length and
  learning rate, torch on 1 thread, interleaved. Steps/s from each process's
  own ``train()`` wall time; peak RSS from the kernel (``wait4`` for the
  peers, ``VmHWM`` of the worker process).
- ``accuracy``: fine-tune through the public API against the real local
  backend, then score the base model and checkpoints on the 60 held-out
  tickets of ``data/triage_eval.jsonl`` (greedy, the model's chat template,
  through ``/v1/chat/completions``): per field, and all three right.

    python -m benchmarks.bench_real_model --part load
    python -m benchmarks.bench_real_model --part speed --steps 20 --reps 2
    python -m benchmarks.bench_real_model --part accuracy --steps 80 --every 20

Every result records the load average before and after: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.bench_training import ENV, bench_home
from benchmarks.common import PY, REPO, log, median, save
from benchmarks.local_server import local_server

DATA = REPO / "data" / "triage.jsonl"
EVAL = REPO / "data" / "triage_eval.jsonl"
MODEL_ID = "arkor-nb/smollm2-135m-instruct"
MAX_LENGTH = 128
BATCH = 8
LR = 1e-3
CHILD_ENV = {**os.environ, **ENV, "PYTHONPATH": str(REPO)}


def smollm2_folder(home: Path) -> str:
    """The dequantized plain copy (built on first use, shared by every part)."""
    from arkor_nb.local.training.models import resolve_model

    return resolve_model(MODEL_ID, home)


def _loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_measured(cmd: list[str], timeout: float = 3600) -> tuple[dict[str, Any], float]:
    """Run a child that prints one JSON line last; return it and the child's peak RSS (MB)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, cwd=REPO, env=CHILD_ENV, stdout=out, stderr=err, text=True)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"{cmd[2:4]} failed: {err.read()[-3000:]}")
        lines = [line for line in out.read().splitlines() if line.startswith("{")]
    return json.loads(lines[-1]), usage.ru_maxrss / 1024


# ------------------------------------------------------------------ load

LOAD_CODE = r"""
import json, sys, time, resource
from pathlib import Path
import torch
torch.set_num_threads(1)
from transformers import AutoModelForCausalLM, AutoTokenizer
from arkor_nb.local.training.models import load_model_and_tokenizer, resolve_model, smollm2_gguf
kind, home = sys.argv[1], Path(sys.argv[2])
t0 = time.perf_counter()
if kind == "transformers-gguf":
    path = smollm2_gguf()
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
else:
    folder = resolve_model("arkor-nb/smollm2-135m-instruct", home)
    built = time.perf_counter() - t0
    model, tok = load_model_and_tokenizer(folder, "cpu")
seconds = time.perf_counter() - t0
again = None
if kind == "cached":  # the same load once more in this process: transformers' lazy imports paid
    t1 = time.perf_counter()
    resolve_model("arkor-nb/smollm2-135m-instruct", home)
    model, tok = load_model_and_tokenizer(folder, "cpu")
    again = time.perf_counter() - t1
print(json.dumps({"seconds": seconds, "againInProcessSeconds": again,
                  "resolveSeconds": None if kind == "transformers-gguf" else built}))
"""


def part_load(reps: int) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for rep in range(reps):
        with tempfile.TemporaryDirectory(prefix="arkor-bench-gguf-") as tmp:
            for kind in ("first", "cached", "transformers-gguf"):
                before = _loadavg()
                data, rss = run_measured([PY, "-c", LOAD_CODE, kind, tmp])
                rows.append({"kind": kind, "rep": rep, **data, "peakRssMb": round(rss),
                             "loadavgBefore": before, "loadavgAfter": _loadavg()})
                log(f"load {kind}: {data['seconds']:.1f} s, peak RSS {rss:.0f} MB, load {before}")
    summary = {kind: {"seconds": median(r["seconds"] for r in rows if r["kind"] == kind),
                      "peakRssMb": median(r["peakRssMb"] for r in rows if r["kind"] == kind)}
               for kind in ("first", "cached", "transformers-gguf")}
    out = {"part": "load", "reps": reps, "summary": summary, "runs": rows}
    save("real-model-load", out)
    return out


# ------------------------------------------------------------------ speed


def _poll_hwm(pid_file: Path, stop: threading.Event, seen: dict[str, float]) -> None:
    """Peak RSS of the worker process: its kernel-kept high-water mark, read until it exits."""
    while not stop.is_set():
        try:
            pid = int(pid_file.read_text())
            with open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        seen["mb"] = max(seen.get("mb", 0.0), int(line.split()[1]) / 1024)
        except (OSError, ValueError):
            pass
        stop.wait(0.2)


def worker_run(server: Any, model: str, steps: int) -> dict[str, Any]:
    from arkor_nb import LocalBackend, create_trainer
    from benchmarks.bench_sse import raw_completed

    trainer = create_trainer(
        name="bench-real", model=model, dataset={"type": "file", "path": str(DATA)},
        lora={"r": 16, "alpha": 16, "max_length": MAX_LENGTH}, max_steps=steps, batch_size=BATCH,
        learning_rate=LR, logging_steps=1,
        backend=LocalBackend(url=server.url, token=server.token),
        callbacks={"on_log": lambda ctx: None},
    )
    job_id = trainer.start()
    stop, seen = threading.Event(), {}
    poller = threading.Thread(target=_poll_hwm,
                              args=(server.home / "jobs" / job_id / "worker.pid", stop, seen))
    poller.start()
    try:
        result = trainer.wait()
    finally:
        stop.set()
        poller.join()
    if result.job.status != "completed":
        raise RuntimeError(f"worker run ended {result.job.status}: {result.job.error}")
    metrics = raw_completed(server, job_id)["metrics"]
    return {"trainSeconds": metrics["trainSeconds"], "steps": metrics["steps"],
            "firstLoss": metrics.get("firstLoss"), "finalLoss": metrics.get("finalLoss"),
            "peakRssMb": round(seen.get("mb", 0.0))}


def peer_run(module: str, model: str, steps: int) -> dict[str, Any]:
    data, rss = run_measured([PY, "-m", module, "--model", model, "--data", str(DATA),
                              "--steps", str(steps), "--max-length", str(MAX_LENGTH),
                              "--batch", str(BATCH), "--lr", str(LR)])
    return {**data, "peakRssMb": round(rss)}


def part_speed(steps: int, reps: int) -> dict[str, Any]:
    model = smollm2_folder(bench_home())
    who = ("worker", "plain", "trl")
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in who}
    with local_server(**ENV) as server:
        for rep in range(reps):
            order = who if rep % 2 == 0 else tuple(reversed(who))
            for name in order:
                before = _loadavg()
                if name == "worker":
                    r = worker_run(server, model, steps)
                else:
                    module = "benchmarks.plain_trainer" if name == "plain" else "benchmarks.trl_trainer"
                    r = peer_run(module, model, steps)
                r.update(loadavgBefore=before, loadavgAfter=_loadavg())
                runs[name].append(r)
                log(f"speed rep {rep + 1} {name}: {r['steps']} steps in {r['trainSeconds']:.1f} s "
                    f"({r['trainSeconds'] / r['steps']:.2f} s/step), peak RSS {r['peakRssMb']} MB, "
                    f"loss {r.get('firstLoss')} -> {r.get('finalLoss')}, load {before}")
    summary: dict[str, Any] = {}
    for name in who:
        sps = median(r["steps"] / r["trainSeconds"] for r in runs[name])
        summary[name] = {"s_per_step": 1 / sps if sps else None, "steps_per_s": sps,
                         "peakRssMb": median(r["peakRssMb"] for r in runs[name]),
                         "finalLoss": median(r.get("finalLoss") for r in runs[name])}
    for name in ("worker", "trl"):
        summary[name]["ratio_vs_plain"] = summary[name]["steps_per_s"] / summary["plain"]["steps_per_s"]
    out = {"part": "speed", "steps": steps, "reps": reps, "batch": BATCH, "maxLength": MAX_LENGTH,
           "lr": LR, "summary": summary, "runs": runs}
    save("real-model-speed", out)
    return out


# ------------------------------------------------------------------ accuracy


def eval_tickets() -> list[tuple[list[dict[str, str]], str]]:
    from arkor_nb.demo import held_out_tickets

    return held_out_tickets(EVAL, count=10_000)


def score(server: Any, model: str, tickets: list[tuple[list[dict[str, str]], str]]) -> dict[str, Any]:
    """Greedy replies through /v1/chat/completions, scored per field."""
    import httpx

    from arkor_nb.demo import score_fields

    t0 = time.perf_counter()
    per_field: dict[str, int] = {}
    all_right = 0
    samples = []
    for messages, expected in tickets:
        r = httpx.post(f"{server.url}/v1/chat/completions", headers=server.headers, trust_env=False,
                       json={"model": model, "messages": messages, "temperature": 0,
                             "max_tokens": 24}, timeout=600)
        r.raise_for_status()
        reply = r.json()["choices"][0]["message"]["content"]
        right = score_fields(expected, reply)
        for field, ok in right.items():
            per_field[field] = per_field.get(field, 0) + int(ok)
        all_right += int(all(right.values()))
        if len(samples) < 3:
            samples.append({"expected": expected, "reply": reply})
    n = len(tickets)
    return {"model": model, "tickets": n, "perField": {k: v / n for k, v in per_field.items()},
            "allThree": all_right / n, "seconds": round(time.perf_counter() - t0, 1),
            "samples": samples}


def part_accuracy(steps: int, every: int, limit: int | None) -> dict[str, Any]:
    from arkor_nb import LocalBackend, create_trainer

    home = bench_home()
    smollm2_folder(home)  # the shared cache: the server below links to it
    tickets = eval_tickets()[:limit]
    rows: list[dict[str, Any]] = []
    with local_server(**ENV) as server:
        (server.home / "models").symlink_to(home / "models", target_is_directory=True)
        before = _loadavg()
        base = score(server, MODEL_ID, tickets)
        rows.append({"step": 0, **base, "loadavgBefore": before, "loadavgAfter": _loadavg()})
        log(f"accuracy base: {base['perField']} all three {base['allThree']:.2f} "
            f"({base['seconds']} s), load {before}")
        losses: list[tuple[int, float]] = []
        trainer = create_trainer(
            name="bench-real-accuracy", model=MODEL_ID, dataset={"type": "file", "path": str(DATA)},
            lora={"r": 16, "alpha": 16, "max_length": MAX_LENGTH}, max_steps=steps,
            batch_size=BATCH, learning_rate=LR, logging_steps=5, save_steps=every,
            backend=LocalBackend(url=server.url, token=server.token),
            callbacks={"on_log": lambda ctx: ctx.loss is not None and losses.append((ctx.step, ctx.loss))},
        )
        t0 = time.perf_counter()
        before = _loadavg()
        result = trainer.wait()
        train_wall = time.perf_counter() - t0
        if result.job.status != "completed":
            raise RuntimeError(f"training ended {result.job.status}: {result.job.error}")
        log(f"accuracy: trained {steps} steps in {train_wall:.0f} s, losses {losses[:1]} -> {losses[-1:]}")
        job_id = trainer.job_id
        for step in range(every, steps + 1, every):
            target = f"job:{job_id}" if step == steps else f"job:{job_id}@{step}"
            b = _loadavg()
            row = score(server, target, tickets)
            rows.append({"step": step, **row, "loadavgBefore": b, "loadavgAfter": _loadavg()})
            log(f"accuracy step {step}: {row['perField']} all three {row['allThree']:.2f} "
                f"({row['seconds']} s), load {b}")
    out = {"part": "accuracy", "steps": steps, "every": every, "batch": BATCH, "lr": LR,
           "maxLength": MAX_LENGTH, "trainWallSeconds": round(train_wall, 1),
           "trainLoadavgBefore": before, "losses": losses, "rows": rows}
    save("real-model-accuracy", out)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=("load", "speed", "accuracy"), required=True)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--every", type=int, default=20, help="accuracy: score a checkpoint every N steps")
    ap.add_argument("--limit", type=int, default=None, help="accuracy: score only the first N tickets")
    a = ap.parse_args(argv)
    if a.part == "load":
        out = part_load(a.reps)
    elif a.part == "speed":
        out = part_speed(a.steps, a.reps)
    else:
        out = part_accuracy(a.steps, a.every, a.limit)
    print(json.dumps({k: v for k, v in out.items() if k not in ("runs",)}, default=str))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
