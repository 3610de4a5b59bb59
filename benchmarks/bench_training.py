"""Measurement 4: training overhead of the local worker vs plain transformers.

Interleaved runs (worker, plain, plain, worker, ...) with the same model
directory, data, seed and hyperparameters, torch on 1 thread in both. The
worker run is the real thing: local server + worker subprocess + a client
streaming every event through ``Trainer.wait()``; its steps/s come from the
worker's own ``trainer.train()`` timing (``metrics.trainSeconds``), the
plain run's from the same call in ``benchmarks.plain_trainer``. Two
configs: the built-in tiny model and a larger random-init Llama (hidden 512,
8 layers), where each step is longer.

    python -m benchmarks.bench_training --quick
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from benchmarks.common import PY, REPO, log, median, mode_parser, save
from benchmarks.local_server import local_server

DATA = REPO / "data" / "triage.jsonl"
MAX_LENGTH = 128
ENV = {"OMP_WAIT_POLICY": "PASSIVE", "ARKOR_NB_TORCH_THREADS": "1", "OMP_NUM_THREADS": "1",
       "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def bench_home() -> Path:
    home = Path(os.environ.get("ARKOR_NB_BENCH_HOME", Path.home() / ".cache" / "arkor-nb-bench"))
    home.mkdir(parents=True, exist_ok=True)
    return home


def tiny_model(home: Path) -> str:
    from arkor_nb.local.training.models import TINY_MODEL_ID, resolve_model

    return resolve_model(TINY_MODEL_ID, home)


def larger_model(home: Path) -> str:
    """Random-init Llama, hidden 512, 8 layers, the tiny model's tokenizer (built once)."""
    dest = home / "models" / "bench-h512-l8"
    if (dest / "config.json").is_file():
        return str(dest)
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tiny_model(home))
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=512, intermediate_size=2048,
                      num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=8,
                      max_position_embeddings=512, tie_word_embeddings=True,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model = LlamaForCausalLM(cfg)
    tmp = dest.with_name(dest.name + ".tmp")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.rename(dest)
    return str(dest)


def worker_run(server: Any, model: str, steps: int) -> dict[str, Any]:
    from arkor_nb import LocalBackend, create_trainer
    from benchmarks.bench_sse import raw_completed

    trainer = create_trainer(
        name="bench-train", model=model, dataset={"type": "file", "path": str(DATA)},
        lora={"r": 16, "alpha": 16, "max_length": MAX_LENGTH}, max_steps=steps, batch_size=8,
        learning_rate=2e-4, logging_steps=1,
        backend=LocalBackend(url=server.url, token=server.token),
        callbacks={"on_log": lambda ctx: None},
    )
    t0 = time.perf_counter()
    result = trainer.wait()
    wall = time.perf_counter() - t0
    if result.job.status != "completed":
        raise RuntimeError(f"worker run ended {result.job.status}: {result.job.error}")
    metrics = raw_completed(server, trainer.job_id)["metrics"]
    return {"trainSeconds": metrics["trainSeconds"], "steps": metrics["steps"],
            "finalLoss": metrics.get("finalLoss"), "end_to_end_s": wall}


def plain_run(model: str, steps: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    out = subprocess.run(
        [PY, "-m", "benchmarks.plain_trainer", "--model", model, "--data", str(DATA),
         "--steps", str(steps), "--max-length", str(MAX_LENGTH)],
        cwd=REPO, env={**os.environ, **ENV, "PYTHONPATH": str(REPO)}, capture_output=True,
        text=True, timeout=3600,
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    data = json.loads(out.stdout.strip().splitlines()[-1])
    data["end_to_end_s"] = time.perf_counter() - t0
    return dict(data)


def run(mode: str) -> dict[str, Any]:
    home = bench_home()
    configs = [("tiny (hidden 128, 2 layers)", tiny_model(home), 20 if mode == "quick" else 100)]
    if mode != "quick":
        configs.append(("larger (hidden 512, 8 layers)", larger_model(home), 20))
    reps = 1 if mode == "quick" else 2
    results = []
    with local_server(**ENV) as server:
        if mode != "quick":
            # warm-up: the first worker start pays imports and page cache; not counted
            log("training: warm-up worker run")
            worker_run(server, configs[0][1], 3)
        for label, model, steps in configs:
            w_runs: list[dict[str, Any]] = []
            p_runs: list[dict[str, Any]] = []
            for rep in range(reps):
                order = ("worker", "plain") if rep % 2 == 0 else ("plain", "worker")
                for who in order:
                    r = worker_run(server, model, steps) if who == "worker" else plain_run(model, steps)
                    (w_runs if who == "worker" else p_runs).append(r)
                    log(f"training {label} rep {rep + 1} {who}: {r['steps']} steps in "
                        f"{r['trainSeconds']:.2f} s")
            w = median(r["steps"] / r["trainSeconds"] for r in w_runs)
            p = median(r["steps"] / r["trainSeconds"] for r in p_runs)
            results.append({
                "config": label, "steps": steps, "reps": reps,
                "worker_steps_per_s": w, "plain_steps_per_s": p,
                "ratio": (w / p) if w and p else None,
                "worker_s_per_step": 1 / w if w else None, "plain_s_per_step": 1 / p if p else None,
                "worker_final_loss": median(r.get("finalLoss") for r in w_runs),
                "plain_final_loss": median(r.get("finalLoss") for r in p_runs),
                "worker_end_to_end_s": median(r["end_to_end_s"] for r in w_runs),
                "plain_end_to_end_s": median(r["end_to_end_s"] for r in p_runs),
                "runs": {"worker": w_runs, "plain": p_runs},
            })
    out = {"mode": mode, "results": results}
    save(f"training-{mode}", out)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = mode_parser(__doc__)
    a = ap.parse_args(argv)
    out = run(a.mode or "quick")
    for r in out["results"]:
        print(json.dumps({k: v for k, v in r.items() if k != "runs"}))


if __name__ == "__main__":
    main()
