"""Row normalisation and tokenisation: which tokens the model learns from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from arkor_nb.local.data.rows import RowFormat, load_normalized, normalize_row
from arkor_nb.local.data.sources import source_rows
from arkor_nb.local.data.tokenize import collate, encode_row
from tests.local.training_helpers import TRAIN


@pytest.fixture()
def tokenizer(built_tiny: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(built_tiny)


def learned(tokenizer: Any, enc: dict[str, list[int]]) -> str:
    return tokenizer.decode([t for t, lab in zip(enc["input_ids"], enc["labels"], strict=True) if lab != -100])


def test_responses_only_labels_cover_exactly_the_reply(tokenizer: Any) -> None:
    row = normalize_row(json.loads(TRAIN.read_text().splitlines()[0]), "line 1")
    reply = row["messages"][-1]["content"]
    enc = encode_row(row, tokenizer, 512, responses_only=True)
    assert enc is not None
    assert learned(tokenizer, enc) == reply + "<|im_end|>\n"
    full = encode_row(row, tokenizer, 512, responses_only=False)
    assert full is not None and full["labels"] == full["input_ids"]


def test_multi_turn_chat_learns_every_assistant_turn(tokenizer: Any) -> None:
    row = normalize_row({"messages": [
        {"role": "user", "content": "a"}, {"role": "assistant", "content": "first"},
        {"role": "user", "content": "b"}, {"role": "assistant", "content": "second"}]}, "row 1")
    enc = encode_row(row, tokenizer, 512, responses_only=True)
    assert enc is not None
    assert learned(tokenizer, enc) == "first<|im_end|>\nsecond<|im_end|>\n"


def test_other_shapes(tokenizer: Any) -> None:
    pc = normalize_row({"prompt": "2+2?", "completion": "4", "system": "math"}, "row 1")
    enc = encode_row(pc, tokenizer, 512, responses_only=True)
    assert enc is not None and learned(tokenizer, enc) == "4<|im_end|>\n"
    alpaca = normalize_row({"instruction": "Add", "input": "2 2", "output": "4"}, "row 2")
    assert alpaca == {"prompt": "Add\n\n2 2", "completion": "4"}
    text = normalize_row({"text": "hello world"}, "row 3")
    enc = encode_row(text, tokenizer, 512, responses_only=True)
    assert enc is not None and learned(tokenizer, enc) == "hello world<|im_end|>"
    share = normalize_row({"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]}, "r")
    assert share == {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}


def test_template_free_tokenizer_still_masks_the_prompt(tokenizer: Any) -> None:
    tokenizer.chat_template = None  # like a plain base model's tokenizer
    enc = encode_row({"prompt": "Q: sky?", "completion": "blue"}, tokenizer, 512, responses_only=True)
    assert enc is not None and learned(tokenizer, enc) == "blue<|im_end|>"


def test_truncation_that_cuts_the_reply_drops_the_row(tokenizer: Any) -> None:
    row = normalize_row({"prompt": "long " * 50, "completion": "x"}, "row 1")
    assert encode_row(row, tokenizer, 16, responses_only=True) is None
    assert encode_row(row, tokenizer, 16, responses_only=False) is not None


def test_collate_pads_without_learning_padding(tokenizer: Any) -> None:
    a = {"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1], "labels": [-100, 6, 7]}
    b = {"input_ids": [8], "attention_mask": [1], "labels": [8]}
    batch = collate([a, b], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]


def test_blob_source_is_fetched_again_for_each_use(tmp_path: Path) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    hits: list[str] = []
    body = TRAIN.read_bytes()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            hits.append(self.headers.get("Authorization", ""))
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/triage.jsonl"
        source = {"type": "blob", "url": url, "token": "s3cret"}
        rows = load_normalized(source_rows(source, tmp_path), RowFormat())
        again = load_normalized(source_rows(source, tmp_path), RowFormat())
    finally:
        server.shutdown()
    assert len(rows) == len(again) == len(TRAIN.read_text().splitlines())
    # Revalidated on every use (issue 19.2): this host sends no ETag/Last-Modified,
    # so the file is fetched again, with the same token each time.
    assert hits == ["Bearer s3cret", "Bearer s3cret"]


def test_huggingface_source_with_splits(tmp_path: Path) -> None:
    """A `datasets` repo layout on disk (train/test files) loads offline like a hub dataset."""
    from arkor_nb.local.training.plan import load_rows

    repo = tmp_path / "triage-ds"
    (repo / "data").mkdir(parents=True)
    lines = TRAIN.read_text().splitlines()
    (repo / "data" / "train.jsonl").write_text("\n".join(lines[:30]) + "\n")
    (repo / "data" / "test.jsonl").write_text("\n".join(lines[30:40]) + "\n")
    source = {"type": "huggingface", "name": str(repo), "split": "train", "evalSplit": "test"}
    train, evals = load_rows({"datasetSource": source}, tmp_path)
    assert (len(train), len(evals)) == (30, 10)
    assert train[0] == normalize_row(json.loads(lines[0]), "line 1")
    # datasetSplit names the split to train on; a fraction holds rows out instead
    train, evals = load_rows({"datasetSource": {"type": "huggingface", "name": str(repo)},
                              "datasetSplit": "test"}, tmp_path)
    assert (len(train), len(evals)) == (10, 0)
    train, evals = load_rows({"datasetSource": {"type": "huggingface", "name": str(repo)},
                              "datasetSplit": 0.1}, tmp_path)
    assert (len(train), len(evals)) == (27, 3)


def test_shipped_demo_data_is_what_the_script_generates() -> None:
    import subprocess
    import sys

    from tests.local.training_helpers import REPO

    check = subprocess.run([sys.executable, "scripts/make_triage_data.py", "--check"], cwd=REPO,
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    rows = [json.loads(line) for line in TRAIN.read_text().splitlines()]
    assert len(rows) == 320
    replies = {r["messages"][-1]["content"].split("\n")[0] for r in rows}
    assert replies == {f"category: {c}" for c in ("billing", "technical", "account", "shipping", "feature")}
