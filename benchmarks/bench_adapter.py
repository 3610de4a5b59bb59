"""Issue 20: time to a good adapter, the local worker vs plain transformers + peft vs TRL.

SmolLM2-135M-Instruct (``arkor-nb/smollm2-135m-instruct``, its dequantized
copy), ``data/triage.jsonl``, LoRA r 16 / alpha 16 all linear, batch 8, max
length 128, lr 1e-3, seed 42, torch on 1 thread, the same number of steps
for each, interleaved (order reversed each rep). The worker runs as the
server spawns it (stdio protocol, its default speed plan); the peers are
``benchmarks.plain_trainer`` and ``benchmarks.trl_trainer``. Per run:

- s/step from each process's own ``train()`` time; tokens/s = steps x batch
  x the mean real (unpadded) tokens of a training row / train seconds;
- MFU = 4 x N x tokens/s over this CPU's matmul peak measured in the same
  run (``torch.matmul`` of 1024 x 1024, 1 thread, float32 and bfloat16):
  N = the base model's parameters (lm_head counted once), 2N forward + 2N
  backward to the activations (the base is frozen; LoRA's own FLOPs left out);
- peak RSS (the worker's ``peakRssMb``; ``wait4`` for the peers);
- held-out accuracy: the adapter each one saved, loaded onto the base in one
  scorer process, greedy replies (batched, left-padded, 24 new tokens) to the
  tickets of ``data/triage_eval.jsonl``, "all three fields right".

    python -m benchmarks.bench_adapter --quick   # 6 steps, 1 rep, 12 tickets: ~4 min
    python -m benchmarks.bench_adapter           # 40 steps, 2 reps, 60 tickets: ~18 min quiet
    python -m benchmarks.bench_adapter --reps 4 --seeds 42,43,44,45   # accuracy over 4 seeds
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.bench_real_model import (
    BATCH,
    CHILD_ENV,
    DATA,
    EVAL,
    LR,
    MAX_LENGTH,
    MODEL_ID,
    run_measured,
)
from benchmarks.bench_training import bench_home
from benchmarks.common import PY, REPO, log, median, save

WHO = ("worker", "plain", "trl", "worker-fp32")
# The worker's float32 paths only (labels-only loss, padding-free, row attention;
# bf16 off): the plain trainer's model within 1e-4 per step, at its own speed.
FP32_SPEED = "bf16_autocast=0"


def _loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def matmul_peak(n: int = 1024, reps: int = 8) -> dict[str, float]:
    """Best-of GFLOP/s of one ``torch.matmul`` on 1 thread, float32 and bfloat16."""
    import torch

    torch.set_num_threads(1)
    out = {}
    for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        a @ b
        best = float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t0)
        out[name] = round(2 * n**3 / best / 1e9, 1)
    return out


def model_facts(folder: str) -> dict[str, float]:
    """Parameters of the base and the mean real tokens of a training row (the worker's encoding)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from arkor_nb.local.data.rows import RowFormat, load_normalized
    from arkor_nb.local.data.sources import iter_file_rows
    from arkor_nb.local.data.tokenize import encode_row

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    params = sum(p.numel() for p in model.parameters())
    rows = load_normalized(iter_file_rows(DATA), RowFormat())
    lengths = [len(e["input_ids"]) for e in (encode_row(r, tok, MAX_LENGTH, True) for r in rows) if e]
    return {"params": params, "meanRowTokens": sum(lengths) / len(lengths)}


def worker_run(steps: int, save_to: Path, seed: int, speed: str | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        spec = {"jobId": "job_bench", "jobDir": tmp, "home": str(bench_home()), "config": {
            "model": MODEL_ID, "datasetSource": {"type": "file", "path": str(DATA)},
            "maxSteps": steps, "batchSize": BATCH, "learningRate": LR, "loggingSteps": 1,
            "loraR": 16, "loraAlpha": 16, "maxLength": MAX_LENGTH, "seed": seed}}
        proc = subprocess.Popen([PY, "-m", "arkor_nb.local.training.worker"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                cwd=REPO, env={**CHILD_ENV, **({"ARKOR_NB_SPEED": speed} if speed else {})})
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(spec) + "\n")
        proc.stdin.flush()
        speed = None
        for line in proc.stdout:
            event = json.loads(line)
            if event["type"] == "training.started":
                speed = event["metadata"].get("speed")
            if event["type"] in ("training.completed", "training.failed", "training.cancelled"):
                proc.stdin.close()
                proc.wait()
                if event["type"] != "training.completed":
                    raise RuntimeError(str(event))
                m = event["metrics"]
                os.replace(Path(tmp) / "adapter", save_to)
                return {"trainSeconds": m["trainSeconds"], "steps": m["steps"],
                        "firstLoss": m.get("firstLoss"), "finalLoss": m.get("finalLoss"),
                        "peakRssMb": m.get("peakRssMb"), "speed": speed}
    raise RuntimeError("the worker ended without a terminal event")


def peer_run(module: str, folder: str, steps: int, save_to: Path, seed: int) -> dict[str, Any]:
    data, rss = run_measured([PY, "-m", module, "--model", folder, "--data", str(DATA),
                              "--steps", str(steps), "--max-length", str(MAX_LENGTH),
                              "--batch", str(BATCH), "--lr", str(LR), "--save", str(save_to),
                              "--seed", str(seed)])
    return {**data, "peakRssMb": round(rss)}


# ------------------------------------------------------------------ scoring (own process)


def score_adapters(folder: str, adapters: list[str], tickets: int) -> dict[str, Any]:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from arkor_nb.demo import held_out_tickets, score_fields

    torch.set_num_threads(1)
    tok = AutoTokenizer.from_pretrained(folder)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    cases = held_out_tickets(EVAL, count=10_000)[:tickets]
    prompts = [tok.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m, _ in cases]
    out = {}
    for adapter in adapters:
        base = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        model = PeftModel.from_pretrained(base, adapter).eval()
        replies: list[str] = []
        for i in range(0, len(prompts), 20):
            enc = tok(prompts[i:i + 20], return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.no_grad():
                gen = model.generate(**enc, max_new_tokens=24, do_sample=False,
                                     pad_token_id=tok.pad_token_id)
            replies += tok.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        right = [score_fields(expected, reply) for (_, expected), reply in zip(cases, replies, strict=True)]
        out[adapter] = {"allThree": sum(all(r.values()) for r in right) / len(right),
                        "tickets": len(right), "sample": replies[0]}
    return out


# ------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--tickets", type=int, default=None)
    ap.add_argument("--seeds", default="42", help="comma-separated: rep i trains all three with "
                    "seed i (cycling), so accuracy is compared per seed and over seeds")
    ap.add_argument("--who", default="worker,plain,trl",
                    help=f"trainers to run, of {','.join(WHO)}")
    ap.add_argument("--out", default=None, help="results/NAME.json (default: adapter, adapter-quick "
                    "or adapter-seeds)")
    ap.add_argument("--score", nargs="+", default=None, help=argparse.SUPPRESS)  # FOLDER ADAPTER...
    a = ap.parse_args(argv)
    if a.score:
        print(json.dumps(score_adapters(a.score[0], a.score[1:], a.tickets or 60)))
        return
    steps = a.steps or (6 if a.quick else 40)
    reps = a.reps or (1 if a.quick else 2)
    tickets = a.tickets or (12 if a.quick else 60)
    from benchmarks.bench_real_model import smollm2_folder

    folder = smollm2_folder(bench_home())
    facts = model_facts(folder)
    peak_before = matmul_peak()
    log(f"matmul peak {peak_before} GFLOP/s, load {_loadavg()}; {facts}")
    seeds = [int(s) for s in a.seeds.split(",")]
    who = tuple(w for w in WHO if w in a.who.split(","))
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in who}
    with tempfile.TemporaryDirectory(prefix="arkor-bench-adapter-") as tmp:
        for rep in range(reps):
            seed = seeds[rep % len(seeds)]
            for name in (who if rep % 2 == 0 else who[::-1]):
                save_to = Path(tmp) / f"{name}-{rep}"
                before = _loadavg()
                if name.startswith("worker"):
                    r = worker_run(steps, save_to, seed, FP32_SPEED if name == "worker-fp32" else None)
                else:
                    r = peer_run(f"benchmarks.{name}_trainer", folder, steps, save_to, seed)
                r.update(adapter=str(save_to), seed=seed, loadavgBefore=before, loadavgAfter=_loadavg())
                runs[name].append(r)
                log(f"rep {rep + 1} {name}: {r['trainSeconds'] / r['steps']:.2f} s/step, "
                    f"peak RSS {r['peakRssMb']} MB, loss {r.get('firstLoss')} -> {r.get('finalLoss')}, "
                    f"seed {seed}, load {before}")
        adapters = [r["adapter"] for name in who for r in runs[name]]
        scored, _ = run_measured([PY, "-m", "benchmarks.bench_adapter", "--tickets", str(tickets),
                                  "--score", folder, *adapters])
    peak_after = matmul_peak()
    peak = {k: max(peak_before[k], peak_after[k]) for k in peak_before}
    summary: dict[str, Any] = {}
    for name in who:
        for r in runs[name]:
            r["allThree"] = scored[r["adapter"]]["allThree"]
            r["sample"] = scored[r["adapter"]]["sample"]
            tps = r["steps"] * BATCH * facts["meanRowTokens"] / r["trainSeconds"]
            r["tokensPerSecond"] = round(tps, 1)
            r["mfuFloat32"] = round(4 * facts["params"] * tps / (peak["float32"] * 1e9), 4)
            r["mfuBfloat16"] = round(4 * facts["params"] * tps / (peak["bfloat16"] * 1e9), 4)
        summary[name] = {key: median(r[key] for r in runs[name]) for key in
                         ("tokensPerSecond", "mfuFloat32", "mfuBfloat16", "peakRssMb", "allThree",
                          "finalLoss")}
        summary[name]["allThreeMean"] = round(sum(r["allThree"] for r in runs[name]) / len(runs[name]), 4)
        summary[name]["allThreeBySeed"] = {str(r["seed"]): r["allThree"] for r in runs[name]}
        summary[name]["s_per_step"] = median(r["trainSeconds"] / r["steps"] for r in runs[name])
    for name in (w for w in who if w != "plain" and "plain" in who):
        summary[name]["speedup_vs_plain"] = round(summary["plain"]["s_per_step"] / summary[name]["s_per_step"], 3)
    pairs = [round(p["trainSeconds"] / w["trainSeconds"], 3)
             for w, p in zip(runs.get("worker", []), runs.get("plain", []), strict=False)]
    out = {"steps": steps, "reps": reps, "seeds": seeds, "who": list(who), "tickets": tickets, "batch": BATCH, "maxLength": MAX_LENGTH,
           "lr": LR, "matmulPeakGflops": peak, "matmulPeakBefore": peak_before,
           "matmulPeakAfter": peak_after, **facts, "workerSpeedupPerRep": pairs,
           "summary": summary, "runs": runs}
    save(a.out or ("adapter-quick" if a.quick else "adapter" if seeds == [42] else "adapter-seeds"), out)
    print(json.dumps({k: v for k, v in out.items() if k != "runs"}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
