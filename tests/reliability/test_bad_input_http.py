"""Bad input over real HTTP: whatever a client sends, a clear 4xx naming the field, never a 500.

Hypothesis drives ``POST /v1/jobs`` with arbitrary JSON configs; fixed cases
cover absurd values, oversized and malformed bodies, and absurd query params.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings

from tests.reliability.harness import SCOPE, LocalServer
from tests.reliability.test_config_props import configs, json_values

_SERVER: dict[str, Any] = {}


@pytest.fixture(scope="module", autouse=True)
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    home = tmp_path_factory.mktemp("bad") / "home"
    with LocalServer(home, env={"ARKOR_NB_SYNTHETIC_STEP_S": "0.001"}) as server:
        _SERVER["client"] = server.client()
        _SERVER["srv"] = server
        yield server
        _SERVER["client"].close()


def post_job(body: Any, *, raw: bytes | None = None) -> httpx.Response:
    c: httpx.Client = _SERVER["client"]
    if raw is not None:
        return c.post(
            "/v1/jobs", params=SCOPE, content=raw, headers={"Content-Type": "application/json"}
        )
    # json.dumps, not httpx's json=: NaN/Infinity go out as JavaScript-style literals,
    # which some clients send and Python's json.loads on the server accepts.
    return c.post(
        "/v1/jobs",
        params=SCOPE,
        content=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )


def assert_clear_4xx(r: httpx.Response, field: str | None = None) -> dict[str, Any]:
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    body = r.json()
    assert isinstance(body.get("error"), str) and len(body["error"]) > 10
    if field is not None:
        assert body.get("field") == field, body
    return body


def _cancel_if_created(r: httpx.Response) -> None:
    if r.status_code == 200:
        job_id = r.json()["job"]["id"]
        _SERVER["client"].post(f"/v1/jobs/{job_id}/cancel", params=SCOPE)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(config=configs | json_values)
def test_any_config_gets_200_or_a_4xx_naming_the_field(config: Any) -> None:
    r = post_job({"name": "prop", "config": config})
    assert r.status_code != 500 and r.status_code < 500, (config, r.status_code, r.text[:300])
    if r.status_code == 200:
        _cancel_if_created(r)
        return
    body = assert_clear_4xx(r)
    assert isinstance(body.get("field"), str), body


@pytest.mark.parametrize(
    "key,value",
    [
        ("maxSteps", 10**12),
        ("maxSteps", -1),
        ("maxSteps", "100"),
        ("batchSize", 0),
        ("loraR", 0),
        ("loraAlpha", -5),
        ("learningRate", 1e9),
        ("learningRate", 0),
        ("maxLength", 2**40),
        ("warmupSteps", 10**15),
        ("optim", "x" * 100_000),
        ("optim", ["adamw_torch"]),
        ("lrSchedulerType", {"name": "cosine"}),
        ("model", "x" * 200_000),
        ("model", "/" + "a" * 5000),
        ("model", "bad\x00id"),
        ("datasetSource", {"type": "file", "path": "p" * 5000 + ".jsonl"}),
        ("datasetSource", {"type": "file", "path": "a\x00b.jsonl"}),
        ("datasetSplit", 7),
        ("loadIn4bit", "yes"),
    ],
)
def test_absurd_values_get_a_4xx_naming_the_field(key: str, value: Any) -> None:
    config = {"model": "arkor-nb/synthetic", key: value}
    r = post_job({"name": "absurd", "config": config})
    body = assert_clear_4xx(r)
    assert body.get("field", "").split(".")[0] == key, body


def test_huge_name_and_oversized_bodies() -> None:
    assert_clear_4xx(
        post_job({"name": "n" * 100_000, "config": {"model": "arkor-nb/synthetic"}}), "name"
    )
    big = {"name": "big", "config": {"model": "arkor-nb/synthetic", "pad": "x" * (4 << 20)}}
    r = post_job(big)
    assert r.status_code == 413 and r.json()["field"] == "body"


def test_oversized_chunked_body_without_content_length_is_413(srv: LocalServer) -> None:
    """A body streamed without Content-Length must hit the same cap (no memory blow-up)."""

    def chunks() -> Iterator[bytes]:
        yield b'{"name": "chunked", "config": {"model": "arkor-nb/synthetic", "pad": "'
        for _ in range(64):
            yield b"x" * (1 << 18)  # 16 MiB in all
        yield b'"}}'

    r = _SERVER["client"].post("/v1/jobs", params=SCOPE, content=chunks())
    assert r.status_code == 413 and r.json()["field"] == "body"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b"[]",
        b"null",
        b'"config"',
        b"\xff\xfe\x00",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"name": "x", "config": ' + b'{"a":' * 5000 + b"1" + b"}" * 5000 + b"}",
    ],
)
def test_malformed_bodies_are_400(raw: bytes) -> None:
    assert_clear_4xx(post_job(None, raw=raw))


@pytest.mark.parametrize(
    "params", [{"limit": "10" * 30}, {"limit": "-1"}, {"limit": "abc"}, {"limit": "0"}]
)
def test_absurd_query_params_are_400(params: dict[str, str]) -> None:
    r = _SERVER["client"].get("/v1/jobs", params={**SCOPE, **params})
    assert_clear_4xx(r, "limit")


def test_garbage_last_event_id_is_harmless(srv: LocalServer) -> None:
    job = srv.create_job({"model": "arkor-nb/synthetic", "maxSteps": 3})
    for value in ["-5", "abc", "9" * 40, "1e9", ""]:
        with (
            srv.client() as c,
            c.stream(
                "GET",
                f"/v1/jobs/{job['id']}/events/stream",
                params=SCOPE,
                headers={"Last-Event-ID": value},
            ) as r,
        ):
            assert r.status_code == 200
            text = "".join(r.iter_text())
        assert "event: end" in text


def test_header_flood_and_slow_garbage_do_not_kill_the_server(srv: LocalServer) -> None:
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(b"GET /v1/jobs HTTP/1.1\r\n" + b"X-Junk: " + b"a" * 200_000 + b"\r\n\r\n")
        try:
            s.recv(1024)
        except OSError:
            pass
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256))
        )  # a TLS hello
        try:
            s.recv(1024)
        except OSError:
            pass
    assert httpx.get(srv.url + "/healthz").json()["status"] == "ok"
    r = _SERVER["client"].get("/v1/jobs", params=SCOPE)
    assert r.status_code == 200 and isinstance(r.json()["jobs"], list)
    json.dumps(r.json())


@pytest.mark.parametrize(
    "kwargs,names",
    [
        ({"max_steps": 10**12}, ("max_steps", "maxSteps")),
        ({"batch_size": 0}, ("batch_size", "batchSize")),
        ({"lora": {"r": 0}}, ("lora", "loraR")),
        ({"learning_rate": float("nan")}, ("learning_rate", "learningRate")),
        ({"name": "n" * 100_000}, ("name",)),
        ({"model": "m" * 200_000}, ("model",)),
    ],
)
def test_absurd_trainer_arguments_fail_clearly_through_the_sdk(
    srv: LocalServer, kwargs: dict[str, Any], names: tuple[str, ...]
) -> None:
    import arkor_nb as ak

    args: dict[str, Any] = {"name": "sdk-absurd", "model": "arkor-nb/synthetic", "max_steps": 5}
    args.update(kwargs)
    with pytest.raises((ak.ConfigError, ak.CloudApiError)) as info:
        ak.create_trainer(**args, backend=srv.backend()).start()
    err = info.value
    if isinstance(err, ak.CloudApiError):
        assert 400 <= err.status < 500
    text = str(err)
    assert any(n in text for n in names), text
    assert len(text) < 2_000, "the error echoes the whole absurd value back"
