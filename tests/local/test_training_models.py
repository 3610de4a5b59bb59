"""The built-in tiny model: built once, saved and reloaded like any hub model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from arkor_nb.local.training.models import (
    CHAT_TEMPLATE,
    SYNTHETIC_MODEL_ID,
    TINY_MODEL_ID,
    resolve_model,
    tiny_model_dir,
)
from tests.local.training_helpers import REPO, home, worker_env


def test_tiny_model_reloads_through_from_pretrained(built_tiny: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert resolve_model(TINY_MODEL_ID, home()) == str(built_tiny) == str(tiny_model_dir(home()))
    stats = json.loads((built_tiny / "arkor_nb_tiny.json").read_text())
    assert stats["parameters"] < 2_000_000
    assert stats["pretrainLossEnd"] < stats["pretrainLossStart"] - 1.5  # really pretrained
    model = AutoModelForCausalLM.from_pretrained(built_tiny)
    tokenizer = AutoTokenizer.from_pretrained(built_tiny)
    assert model.config.model_type == "llama"
    assert tokenizer.chat_template == CHAT_TEMPLATE
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                         add_generation_prompt=True)
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.decode(ids) == text  # byte-level BPE round-trips
    out = model.generate(torch.tensor([ids]), max_new_tokens=8, do_sample=False)
    assert out.shape[1] > len(ids)


def test_resolve_model_other_ids(tmp_path: Path) -> None:
    assert resolve_model("HuggingFaceTB/SmolLM2-135M", home()) == "HuggingFaceTB/SmolLM2-135M"
    assert resolve_model(str(tmp_path), home()) == str(tmp_path.resolve())
    with pytest.raises(ValueError, match="no weights"):
        resolve_model(SYNTHETIC_MODEL_ID, home())


def test_two_processes_build_it_once(tmp_path: Path) -> None:
    code = ("import logging, sys; logging.basicConfig(level=logging.INFO, stream=sys.stderr)\n"
            "from pathlib import Path; from arkor_nb.local.training.models import ensure_tiny_model\n"
            f"print(ensure_tiny_model(Path({str(tmp_path)!r})))")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=worker_env(), cwd=REPO) for _ in range(2)]
    results = [p.communicate(timeout=240) for p in procs]
    assert all(p.returncode == 0 for p in procs), results
    paths = {out.strip() for out, _ in results}
    assert paths == {str(tiny_model_dir(tmp_path))}
    builds = sum(err.count("built arkor-nb/tiny") for _, err in results)
    assert builds == 1, [err[-500:] for _, err in results]
    assert not list((tmp_path / "models").glob(".build-*"))  # no half-built leftovers
