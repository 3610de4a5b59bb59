"""Issue 19 point 7: inputs that used to end in a 500 get a 4xx naming the field.

A real server process on 127.0.0.1 with the real built-in tiny model (copied
into the server's home so it is not rebuilt): a CSV cell over Python's default
131,072-character field limit, temperatures so small that ``logits / t``
overflows, and ``model`` specs with non-ASCII digits.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.reliability.harness import SCOPE, LocalServer, report, with_tiny_model

_STATE: dict[str, Any] = {}


@pytest.fixture(scope="module", autouse=True)
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    root = tmp_path_factory.mktemp("no500")
    home = root / "home"
    with_tiny_model(home)
    data = root / "data"
    data.mkdir()
    with LocalServer(home, env={"ARKOR_NB_DATA_ROOTS": str(data)}) as server:
        _STATE.update(srv=server, data=data, client=server.client(timeout=120.0))
        yield server
        _STATE["client"].close()


def client() -> httpx.Client:
    return _STATE["client"]


def assert_4xx(r: httpx.Response, field: str, *words: str) -> str:
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:400])
    body = r.json()
    message = body["error"] if isinstance(body["error"], str) else body["error"]["message"]
    field_got = body.get("field") if "field" in body else body["error"].get("param")
    assert field_got == field, body
    for word in words:
        assert word in message, (word, message)
    return message


def test_csv_cell_over_the_default_field_limit_is_read(tmp_path: Path) -> None:
    """A 200,000-character cell (Python's csv stops at 131,072) is a normal row."""
    path: Path = _STATE["data"] / "long.csv"
    long_answer = "x" * 200_000
    path.write_text(f"prompt,completion\nhello,{long_answer}\nhi,there\n", encoding="utf-8")
    r = client().post("/v1/jobs", params=SCOPE, json={"name": "csv", "config": {
        "model": "arkor-nb/tiny", "maxSteps": 1, "dryRun": True,
        "datasetSource": {"type": "file", "path": str(path)}}})
    assert r.status_code in (200, 201), (r.status_code, r.text[:400])
    report("test_no_500::csv_long_cell", cell_chars=len(long_answer), status=r.status_code)


def test_csv_cell_beyond_any_limit_is_a_400_naming_the_row() -> None:
    """A cell over the raised limit (64 MiB) is refused naming the file and the line."""
    path: Path = _STATE["data"] / "huge.csv"
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("prompt,completion\nhi,there\nhello,")
        fh.write("y" * (64 * 1024 * 1024 + 10))
        fh.write("\n")
    r = client().post("/v1/jobs", params=SCOPE, json={"name": "csv", "config": {
        "model": "arkor-nb/tiny", "maxSteps": 1,
        "datasetSource": {"type": "file", "path": str(path)}}})
    message = assert_4xx(r, "datasetSource.path", "huge.csv", "line 3")
    report("test_no_500::csv_huge_cell", status=r.status_code, message=message[:160])


@pytest.mark.parametrize("temperature", [1e-38, 1e-45, 5e-324, 1e-7])
@pytest.mark.parametrize("stream", [False, True])
def test_tiny_temperatures_are_greedy(temperature: float, stream: bool) -> None:
    messages = [{"role": "user", "content": "What is a bug?"}]
    greedy = client().post("/v1/chat/completions", json={
        "model": "arkor-nb/tiny", "messages": messages, "temperature": 0, "max_tokens": 8})
    assert greedy.status_code == 200, greedy.text
    expected = greedy.json()["choices"][0]["message"]["content"]
    body = {"model": "arkor-nb/tiny", "messages": messages, "temperature": temperature,
            "max_tokens": 8, "stream": stream}
    if not stream:
        r = client().post("/v1/chat/completions", json=body)
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == expected
        return
    text = ""
    with client().stream("POST", "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200
        lines = [line for line in r.iter_lines() if line.startswith("data:")]
    assert lines[-1] == "data: [DONE]"
    assert not any('"error"' in line for line in lines), lines
    for line in lines[:-1]:
        delta = json.loads(line[5:])["choices"][0]["delta"]
        text += delta.get("content") or ""
    assert text == expected


@pytest.mark.parametrize("model", ["job:abc@²", "job:abc@٣", "job:abc@１２", "job:@3", "job:",
                                   "job:abc@-1", "job:abc@1e3", "job:abc@"])
def test_bad_job_model_specs_are_a_400_naming_model(model: str) -> None:
    r = client().post("/v1/chat/completions", json={
        "model": model, "messages": [{"role": "user", "content": "hi"}]})
    assert_4xx(r, "model", model)


def test_arkor_route_checkpoint_step_and_job_id_shapes() -> None:
    for adapter, field in (({"kind": "checkpoint", "jobId": "job_x", "step": float("inf")}, "adapter.step"),
                           ({"kind": "checkpoint", "jobId": "job_x", "step": "3"}, "adapter.step"),
                           ({"kind": "final", "jobId": "job_\x00x"}, "adapter.jobId"),
                           ({"kind": "final", "jobId": "a" * 5000}, "adapter.jobId")):
        body = json.dumps({"adapter": adapter, "stream": False,
                           "messages": [{"role": "user", "content": "hi"}]})  # inf -> Infinity
        r = client().post("/v1/inference/chat", params=SCOPE, content=body.encode(),
                          headers={"Content-Type": "application/json"})
        assert_4xx(r, field)


def test_a_day_of_bad_chat_bodies_never_500s() -> None:
    """Odd shapes on both chat routes: every answer is a 4xx with a field (timed)."""
    bad: list[tuple[str, dict[str, Any]]] = [
        ("/v1/chat/completions", {"model": "arkor-nb/tiny", "messages": [{"role": "user",
                                                                       "content": ["x"]}]}),
        ("/v1/chat/completions", {"model": "arkor-nb/tiny", "messages": [{"role": "robot",
                                                                       "content": "x"}]}),
        ("/v1/chat/completions", {"model": "arkor-nb/tiny", "messages": [{"role": "user",
                                                                       "content": "x"}],
                                  "max_tokens": 10**30}),
        ("/v1/chat/completions", {"model": "arkor-nb/tiny", "messages": [{"role": "user",
                                                                       "content": "x"}],
                                  "n": 3}),
        ("/v1/chat/completions", {"model": 7, "messages": []}),
        ("/v1/chat/completions", {"model": "\x00", "messages": [{"role": "user",
                                                                 "content": "x"}]}),
    ]
    started = time.monotonic()
    for route, body in bad:
        r = client().post(route, params=SCOPE, json=body)
        assert 400 <= r.status_code < 500, (route, body, r.status_code, r.text[:300])
    report("test_no_500::bad_chat_bodies", cases=len(bad), seconds=round(time.monotonic() - started, 2))
