"""The TRL peer for measurement 8: ``trl.SFTTrainer`` with the local worker's settings.

Same model folder, rows, LoRA config, seed and hyperparameters as
``benchmarks.plain_trainer``; the data goes in as conversational
prompt/completion pairs so TRL applies the model's chat template itself and
trains on the assistant turn only (``completion_only_loss``), as the worker
does. Two TRL defaults are turned off because they are GPU settings that make
a CPU run ~10x slower (measured): bf16 and gradient checkpointing. Prints one
JSON line with the ``train()`` time.

    python -m benchmarks.trl_trainer --model DIR --data data/triage.jsonl --steps 20
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--save", default=None, help="save the trained adapter to this folder")
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
    from trl import SFTConfig, SFTTrainer

    from arkor_nb.local.data.rows import RowFormat, load_normalized
    from arkor_nb.local.data.sources import iter_file_rows

    tokenizer = AutoTokenizer.from_pretrained(a.model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)
    rows = load_normalized(iter_file_rows(Path(a.data)), RowFormat())
    pairs = [{"prompt": r["messages"][:-1], "completion": r["messages"][-1:]} for r in rows]
    with tempfile.TemporaryDirectory() as out:
        args = SFTConfig(
            output_dir=out, max_steps=a.steps, num_train_epochs=1.0, learning_rate=a.lr,
            per_device_train_batch_size=a.batch, optim="adamw_torch", lr_scheduler_type="linear",
            weight_decay=0.0, warmup_steps=0, logging_strategy="steps", logging_steps=1,
            logging_first_step=True, save_strategy="no", eval_strategy="no", report_to="none",
            disable_tqdm=True, use_cpu=True, bf16=False, fp16=False,
            gradient_checkpointing=False, dataloader_num_workers=0, dataloader_pin_memory=False,
            seed=a.seed, max_length=a.max_length, packing=False, completion_only_loss=True,
        )
        set_seed(a.seed)  # before the LoRA weights are drawn, as the worker does
        trainer = SFTTrainer(
            model=model, args=args, train_dataset=Dataset.from_list(pairs),
            processing_class=tokenizer,
            peft_config=LoraConfig(r=16, lora_alpha=16.0, lora_dropout=0.0,
                                   target_modules="all-linear", task_type="CAUSAL_LM"),
        )
        t0 = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t0
        if a.save:
            trainer.model.save_pretrained(a.save)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    print(json.dumps({"trainSeconds": seconds, "steps": trainer.state.global_step,
                      "firstLoss": losses[0] if losses else None,
                      "finalLoss": losses[-1] if losses else None}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
