"""Issue 20 probe: greedy generation on the training model, float32 vs bf16 base weights, by rows.

Not a peer comparison: one process, SmolLM2-135M-Instruct (the dequantized copy) with LoRA
r 16 all linear as the worker holds it, 1 thread, held-out triage prompts (left-padded),
``max_new_tokens`` forced (``min_new_tokens`` equal), median of 3 per cell, interleaved:

- ``float32``: the model as loaded (the worker's path without bf16);
- ``bf16 base``: ``speed.prepare_model`` with ``bf16_base`` and generation under autocast
  (the worker's batch path);
- ``float32 copies``: the same bf16 model inside ``speed.float32_base`` (the worker's path
  below ``BF16_GENERATE_MIN_ROWS`` rows), the upcast timed with it;
- ``worker plan``: the model prepared with this CPU's default ``speed_plan`` (row attention,
  float32 sum, ...) in the worker's ``inference_context`` for that many rows.

    python -m benchmarks.probe_generate                 # rows 1, 4, 8, 16; 24 tokens
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from contextlib import nullcontext
from typing import Any


def main(argv: list[str] | None = None) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from arkor_nb.local.training.speed import (
        SpeedPlan,
        float32_base,
        inference_context,
        prepare_model,
        speed_plan,
    )
    from benchmarks.bench_real_model import EVAL, smollm2_folder
    from benchmarks.bench_training import bench_home
    from benchmarks.common import save

    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", default="1,4,8,16")
    ap.add_argument("--tokens", type=int, default=24)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    folder = smollm2_folder(bench_home())
    tok = AutoTokenizer.from_pretrained(folder)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    rows = [json.loads(line) for line in EVAL.read_text().splitlines()]
    prompts = [tok.apply_chat_template(r["messages"][:-1], add_generation_prompt=True, tokenize=False)
               for r in rows]

    def model_with(plan: SpeedPlan) -> Any:
        base = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        model = get_peft_model(base, LoraConfig(r=16, lora_alpha=16, target_modules="all-linear",
                                                task_type="CAUSAL_LM")).eval()
        return prepare_model(model, plan)

    fp32, bf16 = model_with(SpeedPlan()), model_with(SpeedPlan(bf16_autocast=True, bf16_base=True))
    plan = speed_plan("cpu")
    worker = model_with(plan)
    paths: dict[str, tuple[Any, Any]] = {
        "float32": (fp32, nullcontext),
        "bf16 base": (bf16, lambda: torch.autocast("cpu", dtype=torch.bfloat16)),
        "float32 copies": (bf16, lambda: float32_base(bf16)),
        "worker plan": (worker, None)}  # this CPU's default plan, as the worker generates
    results: dict[str, dict[str, float]] = {}
    for n in (int(x) for x in a.rows.split(",")):
        enc = tok(prompts[:n], return_tensors="pt", padding=True, add_special_tokens=False)
        times: dict[str, list[float]] = {k: [] for k in paths}
        for _ in range(a.reps):
            for name, (model, context) in paths.items():
                t0 = time.perf_counter()
                ctx = context() if context is not None else inference_context(plan, "cpu", model, n)
                with torch.no_grad(), ctx:
                    model.generate(**enc, max_new_tokens=a.tokens, min_new_tokens=a.tokens,
                                   do_sample=False, pad_token_id=tok.pad_token_id)
                times[name].append(time.perf_counter() - t0)
        results[str(n)] = {k: round(statistics.median(v), 3) for k, v in times.items()}
        print(f"rows {n:2d}: " + ", ".join(f"{k} {v:.2f} s" for k, v in results[str(n)].items()),
              flush=True)
    save("generate", {"tokens": a.tokens, "reps": a.reps, "plan": plan.describe(), "seconds": results})


if __name__ == "__main__":
    main()
