"""Issue 19 point 11: chat parameters the local backend honours or refuses out loud.

A real server with the real tiny model: one ``max_tokens`` limit with one
message on both routes; ``top_p`` validated and honoured (a nucleus of ~0 is
greedy); tools refused with a 400; ``response_format`` (JSON object / JSON
schema) by constrained decoding, whose replies parse and match the schema;
prompts over the model's context refused at once (a 7 MB prompt costs the
server neither seconds nor memory).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.reliability.harness import SCOPE, LocalServer, report, rss_kb, with_tiny_model

_STATE: dict[str, Any] = {}
TINY = "arkor-nb/tiny"
HI = [{"role": "user", "content": "What is a bug?"}]
SCHEMA = {"type": "object", "additionalProperties": False, "required": ["label", "urgent"],
          "properties": {"label": {"enum": ["bug", "feature", "question"]},
                         "urgent": {"type": "boolean"}}}


@pytest.fixture(scope="module", autouse=True)
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    home = with_tiny_model(tmp_path_factory.mktemp("chat-params") / "home")
    with LocalServer(home) as server:
        _STATE.update(srv=server, client=server.client(timeout=120.0))
        yield server
        _STATE["client"].close()


def client() -> httpx.Client:
    return _STATE["client"]


def openai(**body: Any) -> httpx.Response:
    return client().post("/v1/chat/completions", json={"model": TINY, "messages": HI, **body})


def arkor(**body: Any) -> httpx.Response:
    return client().post("/v1/inference/chat", params=SCOPE,
                         json={"baseModel": TINY, "messages": HI, "stream": False, **body})


def content(r: httpx.Response) -> str:
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["message"]["content"]


def error(r: httpx.Response) -> tuple[str, str]:
    assert r.status_code == 400, (r.status_code, r.text[:300])
    body = r.json()
    if isinstance(body["error"], dict):
        return body["error"]["param"], body["error"]["message"]
    return body["field"], body["error"]


def test_one_max_tokens_limit_and_one_message() -> None:
    messages = set()
    for r in (openai(max_tokens=8192), openai(max_completion_tokens=4097),
              arkor(maxTokens=8192), arkor(maxTokens=0)):
        field, message = error(r)
        assert field in ("max_tokens", "max_completion_tokens", "maxTokens")
        messages.add(message.split(": ", 1)[1].rsplit(", got", 1)[0])
    assert messages == {"must be an integer between 1 and 4096"}, messages
    assert content(openai(max_tokens=4096, temperature=0)) is not None  # the limit itself is fine


@pytest.mark.parametrize("top_p", [-7, 0, 1.5, "0.5", True])
def test_top_p_out_of_range_is_refused(top_p: Any) -> None:
    assert error(openai(top_p=top_p))[0] == "top_p"
    assert error(arkor(topP=top_p))[0] == "topP"


def test_top_p_is_honoured() -> None:
    """A nucleus holding only the likeliest token is greedy whatever the temperature."""
    greedy = content(openai(temperature=0, max_tokens=12))
    for _ in range(3):
        assert content(openai(temperature=2.0, top_p=1e-9, max_tokens=12)) == greedy
        assert content(arkor(temperature=2.0, topP=1e-9, maxTokens=12)) == greedy
    sampled = {content(openai(temperature=2.0, top_p=1.0, max_tokens=12)) for _ in range(4)}
    assert sampled != {greedy}  # without the nucleus, temperature 2 wanders


@pytest.mark.parametrize("body", [
    {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
    {"tool_choice": "required"},
    {"functions": [{"name": "f"}]},
])
def test_tools_are_refused(body: dict[str, Any]) -> None:
    field, message = error(openai(**body))
    assert field == next(iter(body)) and "local backend does not support" in message
    assert content(openai(tools=[], tool_choice="none", max_tokens=2)) is not None


def _matches_schema(value: Any) -> bool:
    return (isinstance(value, dict) and set(value) == {"label", "urgent"}
            and value["label"] in ("bug", "feature", "question")
            and isinstance(value["urgent"], bool))


def test_json_schema_replies_parse_and_match() -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "triage", "schema": SCHEMA}}
    prompts = ["What is a bug?", "Add dark mode please", "hello", "The app crashes on start"]
    for prompt in prompts:
        msgs = [{"role": "user", "content": prompt}]
        for temperature in (0, 1.0):
            text = content(openai(messages=msgs, response_format=fmt, temperature=temperature,
                                  max_tokens=64))
            assert _matches_schema(json.loads(text)), text
    text = content(arkor(responseFormat=fmt, maxTokens=64))
    assert _matches_schema(json.loads(text)), text
    body = {"model": TINY, "messages": HI, "response_format": fmt, "stream": True,
            "max_tokens": 64}
    with client().stream("POST", "/v1/chat/completions", json=body) as r:
        chunks = [json.loads(line[5:]) for line in r.iter_lines()
                  if line.startswith("data:") and line != "data: [DONE]"]
    streamed = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert _matches_schema(json.loads(streamed)), streamed


def test_json_object_replies_are_json_objects() -> None:
    """Free-form JSON from the tiny model: a complete reply parses; one cut short by
    max_tokens is the start of a JSON object (it never wanders into prose)."""
    complete = 0
    for prompt in ("What is a bug?", "Add dark mode please", "hello"):
        text = content(openai(messages=[{"role": "user", "content": prompt}], max_tokens=200,
                              response_format={"type": "json_object"}, temperature=0))
        assert text.startswith("{"), text
        try:
            assert isinstance(json.loads(text), dict)
            complete += 1
        except ValueError:
            assert len(text) > 40, text  # cut by the token budget, not ended early
    report("test_chat_params::json_object", complete=complete, of=3)


def test_bad_response_formats_are_400() -> None:
    for fmt, field in (({"type": "xml"}, "response_format"),
                       ({"type": "json_schema"}, "response_format.json_schema"),
                       ({"type": "json_schema", "json_schema": {"schema": {"type": "nope"}}},
                        "response_format.json_schema"),
                       ("json", "response_format")):
        assert error(openai(response_format=fmt))[0] == field
    synthetic = client().post("/v1/chat/completions", json={
        "model": "arkor-nb/synthetic", "messages": HI, "response_format": {"type": "json_object"}})
    assert error(synthetic)[0] == "response_format"


def test_constrained_decoding_cost_per_reply() -> None:
    """Figures only: the same 32 greedy tokens with and without a schema (interleaved)."""
    fmt = {"type": "json_schema", "json_schema": {"name": "s", "schema": {
        "type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}}}
    free, constrained = [], []
    for _ in range(5):
        for bucket, extra in ((free, {}), (constrained, {"response_format": fmt})):
            started = time.perf_counter()
            content(openai(max_tokens=32, temperature=0, **extra))
            bucket.append(time.perf_counter() - started)
    report("test_chat_params::constrained_cost", free_ms=round(1000 * min(free), 1),
           constrained_ms=round(1000 * min(constrained), 1),
           loadavg=open("/proc/loadavg").read().split()[:3])


def test_prompts_beyond_the_context_are_refused_quickly() -> None:
    srv: LocalServer = _STATE["srv"]
    content(openai(max_tokens=2))  # the model is loaded before measuring
    before = rss_kb(srv.pid)
    huge = "word " * (7 * 1024 * 1024 // 5)  # 7 MB, under the 8 MiB body limit
    started = time.monotonic()
    field, message = error(openai(messages=[{"role": "user", "content": huge}]))
    seconds = time.monotonic() - started
    grown_mb = (rss_kb(srv.pid) - before) / 1024
    assert field == "messages" and "context of 512 tokens" in message, message
    assert seconds < 20 and grown_mb < 300, (seconds, grown_mb)
    # just over the context: counted exactly
    field, message = error(openai(messages=[{"role": "user", "content": "bug " * 600}]))
    assert field == "messages" and "reads at most 512" in message, message
    too_big = client().post("/v1/chat/completions", content=b'{"x": "' + b"a" * (9 << 20) + b'"}',
                            headers={"Content-Type": "application/json"})
    assert too_big.status_code == 413
    report("test_chat_params::huge_prompt", prompt_mb=round(len(huge) / 1e6, 1),
           seconds=round(seconds, 2), rss_growth_mb=round(grown_mb, 1))
