"""The baseline for measurement 4: plain transformers ``Trainer`` + peft LoRA.

What a user writes without arkor_nb: same model directory, same encoded rows
(the same tokenisation, so the data is identical), same LoRA config, same
seed and hyperparameters as the local worker's ``TrainingArguments``, no
callbacks of ours, no server. Prints one JSON line with the train() time.

    python -m benchmarks.plain_trainer --model DIR --data data/triage.jsonl --steps 50
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
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    from arkor_nb.local.data.rows import RowFormat, load_normalized
    from arkor_nb.local.data.sources import iter_file_rows
    from arkor_nb.local.data.tokenize import collate, encode_row

    tokenizer = AutoTokenizer.from_pretrained(a.model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32)
    rows = load_normalized(iter_file_rows(Path(a.data)), RowFormat())
    encoded = [encode_row(r, tokenizer, a.max_length, True) for r in rows]
    train = [e for e in encoded if e is not None]
    set_seed(a.seed)  # before the LoRA weights are drawn, as the worker does
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=16.0, lora_dropout=0.0,
                                             target_modules="all-linear", task_type="CAUSAL_LM"))
    pad_id = tokenizer.pad_token_id
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out, max_steps=a.steps, num_train_epochs=1.0, learning_rate=a.lr,
            per_device_train_batch_size=a.batch, per_device_eval_batch_size=a.batch,
            optim="adamw_torch", lr_scheduler_type="linear", weight_decay=0.0, warmup_steps=0,
            logging_strategy="steps", logging_steps=1, logging_first_step=True,
            save_strategy="no", eval_strategy="no", report_to="none", disable_tqdm=True,
            use_cpu=True, bf16=False, fp16=False, gradient_checkpointing=False,
            dataloader_num_workers=0, dataloader_pin_memory=False, remove_unused_columns=False,
            label_names=["labels"], seed=a.seed,
        )
        trainer = Trainer(model=model, args=args, train_dataset=_List(train),
                          data_collator=lambda feats: collate(feats, pad_id),
                          processing_class=tokenizer)
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


class _List:
    def __init__(self, rows: list[dict[str, list[int]]]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        return self.rows[i]


if __name__ == "__main__":
    main()
