"""Issue 20 probe: CPU seconds of one worker-style training step of SmolLM2-135M under candidate paths.

Not a peer comparison: one process, the worker's padding-free batch (8 rows of 50-84
tokens: the same 23 first, as the triage rows' system turn, then random; the last 12 labelled), its labels-only loss under bf16 autocast, the worker's own
``speed.prepare_model``, LoRA r 16 all linear,
AdamW, 1 thread, 8 steps; prints each step's process CPU time (less sensitive to other load
than wall time). ``sum+shared`` is the worker's default plan on a CPU with AMX or AVX512-BF16:

    python -m benchmarks.probe_step autocast    # bf16 autocast alone (the plan before)
    python -m benchmarks.probe_step rows        # + attention per row, not over the flattened batch
    python -m benchmarks.probe_step precast     # + the frozen base weights cast to bf16 once
    python -m benchmarks.probe_step both
    python -m benchmarks.probe_step sum         # + LoRA's sum with the base output in float32
    python -m benchmarks.probe_step sum+shared  # the worker's default plan on such a CPU
    python -m benchmarks.probe_step both+shared  # + the rows' common 23-token prefix once
    python -m benchmarks.probe_step fp32+shared  # the float32 paths (no autocast) + shared prefix
"""

from __future__ import annotations

import sys
import time


def main(mode: str) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from arkor_nb.local.training.speed import (
        SpeedPlan,
        autocast_context,
        flatten,
        labels_only_loss,
        prepare_model,
    )
    from benchmarks.bench_real_model import smollm2_folder
    from benchmarks.bench_training import bench_home

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(smollm2_folder(bench_home()), dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=16, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))
    name = mode
    shared = mode.endswith("+shared")
    mode = mode.removesuffix("+shared")
    full = mode in ("both", "sum")
    plan = SpeedPlan(labels_only_loss=True, padding_free=True, bf16_autocast=mode != "fp32",
                     row_attention=full or mode in ("rows", "fp32"), bf16_base=full or mode == "precast",
                     shared_prefix=shared,
                     float32_sum=mode == "sum")
    model = prepare_model(model, plan)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    g = torch.Generator().manual_seed(1)
    times = []
    system = torch.randint(0, 49000, (23,), generator=g).tolist()  # the triage rows' system turn
    for _ in range(8):
        feats = []
        for _ in range(8):
            n = int(torch.randint(50, 85, (1,), generator=g))
            ids = system + torch.randint(0, 49000, (n - len(system),), generator=g).tolist()
            feats.append({"input_ids": ids, "labels": [-100] * (n - 12) + ids[n - 12:]})
        batch = flatten(feats, share_prefix=plan.shared_prefix)
        t = time.process_time()
        with autocast_context(plan, "cpu"):
            loss = labels_only_loss(model, batch, None)
        loss.backward()
        opt.step()
        opt.zero_grad()
        times.append(time.process_time() - t)
    late = sorted(times[2:])
    print(f"{name}: CPU s/step {[round(x, 3) for x in times]} median of steps 3-8 "
          f"{(late[2] + late[3]) / 2:.3f}, loss after 8 steps {float(loss):.6f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "autocast")
