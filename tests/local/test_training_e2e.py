"""Issue 3 "done when", end to end: the SDK Trainer -> the real local server -> the real worker.

One server (a subprocess, as users get it) on the session home where the tiny
base is already built; real LoRA training of ``arkor-nb/tiny`` on the demo data.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

import arkor_nb as ak
from arkor_nb.core.events import TrainingPhase
from tests.local.server_harness import ServerProcess, all_events, wait_for
from tests.local.training_helpers import (
    EVAL,
    TRAIN,
    home,
    logs,
    terminal,
)

TICKET = json.loads(EVAL.read_text().splitlines()[0])["messages"][:2]


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    from arkor_nb.local.training.models import ensure_tiny_model

    # The server gets a home of its own, sharing the session's model cache so the
    # tiny base is not built twice.
    ensure_tiny_model(home())
    srv_home = home() / "e2e-server"
    srv_home.mkdir(parents=True, exist_ok=True)
    (srv_home / "models").symlink_to(home() / "models", target_is_directory=True)
    srv = ServerProcess(srv_home).start()
    yield srv
    srv.stop()


def backend(srv: ServerProcess) -> ak.LocalBackend:
    return ak.LocalBackend(url=srv.url, token=srv.token)


def test_real_run_completes_and_checkpoint_infer_returns_text(
        server: ServerProcess, built_tiny: Path, tmp_path: Path) -> None:
    seen_logs: list[Any] = []
    samples: dict[int, str] = {}

    def on_checkpoint(ctx: Any) -> None:
        response = ctx.infer(messages=TICKET, max_tokens=16, stream=False)
        assert response.status_code == 200, response.text
        samples[ctx.step] = response.json()["choices"][0]["message"]["content"]

    trainer = ak.create_trainer(
        name="e2e-demo",
        model="arkor-nb/tiny",
        dataset={"type": "file", "path": str(TRAIN)},
        max_steps=40,
        logging_steps=5,
        save_steps=20,
        callbacks={"on_log": seen_logs.append, "on_checkpoint": on_checkpoint},
        backend=backend(server),
    )
    phases: list[Any] = []
    trainer.subscribe(lambda item: phases.append(item) if isinstance(item, TrainingPhase) else None)
    trainer.start()
    result = trainer.wait()
    assert result.job.status == "completed", result
    # the worker says what it does before the first step and after the last (the panel shows it)
    assert [(p.phase, p.detail) for p in phases] == [
        ("preparing", "loading data"), ("preparing", "loading arkor-nb/tiny on cpu"),
        ("saving", "saving the adapter")]
    losses = [c.loss for c in seen_logs if c.loss is not None]
    assert [c.step for c in seen_logs if c.loss is not None] == [1, 5, 10, 15, 20, 25, 30, 35, 40]
    assert losses[-1] < 0.7 * losses[0], losses
    assert sorted(samples) == [20, 40] and all(text.strip() for text in samples.values()), samples
    adapter = [a for a in result.artifacts if a.get("kind") == "adapter"]
    assert adapter and adapter[0]["url"].endswith("/artifacts/adapter")

    # The adapter is downloadable and loads with peft.
    with server.client() as client:
        listing = client.get(adapter[0]["url"])
        assert listing.status_code == 200, listing.text
        files = {f if isinstance(f, str) else f.get("path") for f in listing.json()["files"]}
        assert any("adapter_config.json" in str(f) for f in files), files
        config = client.get(adapter[0]["url"] + "/adapter_config.json").json()
    assert config["peft_type"] == "LORA" and config["r"] == 16

    # The openai client streams a completion from the final adapter.
    oa = openai.OpenAI(base_url=server.url + "/v1", api_key=server.token)
    stream = oa.chat.completions.create(model=f"job:{result.job.id}", messages=TICKET,
                                        max_tokens=16, stream=True)
    pieces = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 1 and "".join(pieces).strip()
    # ...and from a checkpoint, not streaming
    reply = oa.chat.completions.create(model=f"job:{result.job.id}@20", messages=TICKET, max_tokens=8)
    assert reply.choices[0].message.content

    # ak.download gives a standard peft folder: loaded with PeftModel it replies, greedily,
    # exactly what the server's ak.chat replies (final adapter and a checkpoint).
    for step in (None, 20):
        folder = ak.download(result.job.id, to=tmp_path / f"adapter-{step}", step=step,
                             backend=backend(server))
        served = ak.chat(result.job.id, TICKET, step=step, temperature=0, max_tokens=12,
                         backend=backend(server))
        assert served.strip() and peft_greedy_reply(built_tiny, folder, TICKET, 12) == served


def test_live_samples_come_from_the_worker_without_a_chat_request(
        server: ServerProcess, built_tiny: Path) -> None:
    """Issue 12.5: ak.live on the local backend gets each checkpoint's samples as
    checkpoint.sample events (the model in memory), never through /v1/inference/chat."""
    import time

    from arkor_nb.core.events import CheckpointSample, CheckpointSaved

    def chat_requests() -> int:
        return int(httpx.get(server.url + "/healthz").json()["chatRequests"])

    prompt = TICKET[-1]["content"]
    trainer = ak.create_trainer(name="e2e-samples", model="arkor-nb/tiny",
                                dataset={"type": "file", "path": str(TRAIN)}, max_steps=6,
                                logging_steps=1, save_steps=3, backend=backend(server))
    heard: list[tuple[float, Any]] = []
    trainer.subscribe(lambda item: heard.append((time.monotonic(), item))
                      if isinstance(item, (CheckpointSaved, CheckpointSample)) else None)
    chats_before = chat_requests()
    run = ak.live(trainer, display=False, sample_prompts=[prompt])
    result = run.result(timeout=300)
    assert result.job.status == "completed", result
    assert result.job.config["samplePrompts"] == [prompt]  # the local extension reached the job
    assert chat_requests() == chats_before  # no model reload on the server
    kinds = [(type(item).__name__, item.step) for _, item in heard]
    assert kinds == [("CheckpointSaved", 3), ("CheckpointSample", 3),
                     ("CheckpointSaved", 6), ("CheckpointSample", 6)], kinds
    ckpts = run.state.checkpoints
    assert [c.step for c in ckpts] == [3, 6]
    for ck in ckpts:
        assert ck.sample_error is None and ck.samples[prompt], ck.samples
    html = run.panel.checkpoints_html.value
    assert (ckpts[-1].samples[prompt] or "")[:20] in html
    # the same greedy reply the server gives from the saved checkpoint (chat template, stops)
    served = ak.chat(result.job.id, [{"role": "user", "content": prompt}], step=3, temperature=0,
                     max_tokens=64, backend=backend(server))
    assert served == ckpts[0].samples[prompt]


def test_the_first_run_says_it_builds_the_tiny_model(built_tiny: Path, tmp_path: Path) -> None:
    from arkor_nb.local.training.models import TINY_MODEL_ID, preparing_detail

    assert preparing_detail(TINY_MODEL_ID, tmp_path) == "building arkor-nb/tiny (first run only, ~20 s)"
    assert preparing_detail(TINY_MODEL_ID, built_tiny.parent.parent) is None  # built: nothing to say
    assert preparing_detail("some/hub-model", tmp_path) is None


def peft_greedy_reply(base_dir: Path, folder: Path, messages: list[dict[str, str]],
                      max_new_tokens: int) -> str:
    """What plain transformers + peft answer with the downloaded adapter (greedy)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), folder).eval()
    if tokenizer.chat_template:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:
        text = "".join(m["content"] + "\n" for m in messages)
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                             max_new_tokens=max_new_tokens, pad_token_id=tokenizer.eos_token_id)
    return str(tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True))


def test_cancel_over_http_ends_cancelled_within_one_step(server: ServerProcess) -> None:
    steps: list[int] = []
    trainer = ak.create_trainer(
        name="e2e-cancel", model="arkor-nb/tiny", dataset={"type": "file", "path": str(TRAIN)},
        max_steps=5000, logging_steps=1,
        callbacks={"on_log": lambda ctx: steps.append(ctx.step)}, backend=backend(server),
    )
    job_id = trainer.start()
    outcome: dict[str, Any] = {}
    waiter = threading.Thread(target=lambda: outcome.setdefault("result", trainer.wait()), daemon=True)
    waiter.start()
    wait_for(lambda: len(steps) >= 3, timeout=120, what="three logged steps")
    seen = steps[-1]
    cancelled = trainer.cancel()
    assert cancelled is not None and cancelled.id == job_id
    waiter.join(timeout=60)
    assert outcome["result"].job.status == "cancelled"
    with server.client() as client:
        events = all_events(client, job_id)
    end = terminal(events)
    assert end["type"] == "training.cancelled"
    assert seen <= end["step"] <= seen + 2, (seen, end["step"])
    assert max(e["step"] for e in logs(events)) <= end["step"]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_steps": 10**12}, "maxSteps"),
        ({"dataset": {"type": "file", "path": "data/missing.jsonl"}}, "datasetSource.path"),
        ({"dataset": {"type": "file", "path": "BAD_ROWS"}}, "line 2"),
        ({"model": "./no-such-model-dir"}, "model"),
        ({"lora": {"r": 10**6}}, "loraR"),
    ],
)
def test_bad_config_is_a_400_naming_the_field(server: ServerProcess, kwargs: dict[str, Any], field: str,
                                             tmp_path: Path) -> None:
    if kwargs.get("dataset", {}).get("path") == "BAD_ROWS":
        bad = tmp_path / "bad.jsonl"
        bad.write_text(TRAIN.read_text().splitlines()[0] + "\n{\"prompt\": \"no completion\"}\n")
        kwargs = {"dataset": {"type": "file", "path": str(bad)}}
    args: dict[str, Any] = {"name": "bad", "model": "arkor-nb/tiny",
                            "dataset": {"type": "file", "path": str(TRAIN)}, **kwargs}
    trainer = ak.create_trainer(backend=backend(server), **args)
    with pytest.raises(ak.CloudApiError) as info:
        trainer.start()
    assert info.value.status == 400
    assert field in info.value.message
    with server.client() as client, contextlib.suppress(httpx.HTTPError):
        names = [j["name"] for j in client.get("/v1/jobs").json()["jobs"]]
    assert "bad" not in names  # nothing half-created
