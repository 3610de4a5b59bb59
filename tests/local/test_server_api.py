"""Every route of the local server, its auth/Host/Origin guards and its error bodies."""

from __future__ import annotations

import re
import stat

import httpx
import openai

from tests.local.server_harness import (
    SYNTHETIC,
    ServerProcess,
    all_events,
    create_job,
    wait_status,
)

# ------------------------------------------------------------------ guards


def test_healthz_needs_no_token(server: ServerProcess) -> None:
    response = httpx.get(server.url + "/healthz", trust_env=False)
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_every_other_route_needs_the_bearer_token(server: ServerProcess) -> None:
    routes = [("GET", "/v1/jobs"), ("POST", "/v1/jobs"), ("GET", "/v1/jobs/job_x"),
              ("GET", "/v1/jobs/job_x/events/stream"), ("POST", "/v1/jobs/job_x/cancel"),
              ("GET", "/v1/jobs/job_x/artifacts/adapter"), ("POST", "/v1/inference/chat"),
              ("POST", "/v1/chat/completions"), ("GET", "/v1/models"), ("GET", "/v1/projects")]
    bad_headers: list[dict[str, str]] = [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Bearer {server.token}x"},
        {"Authorization": f"Basic {server.token}"},
    ]
    with httpx.Client(base_url=server.url, trust_env=False) as anon:
        for method, path in routes:
            for headers in bad_headers:
                response = anon.request(method, path, headers=headers)
                assert response.status_code == 401, (method, path, headers)
                assert response.headers["www-authenticate"] == "Bearer"
                body = response.json()
                assert body["field"] == "authorization"
                assert server.token not in response.text


def test_token_file_is_private(server: ServerProcess) -> None:
    mode = stat.S_IMODE((server.home / "token").stat().st_mode)
    assert mode == 0o600
    assert server.token not in (server.home / "test-server.log").read_text()


def test_host_header_must_be_our_loopback_address(server: ServerProcess) -> None:
    with server.client() as c:
        for host in ("evil.example", f"evil.example:{server.port}", "127.0.0.1:1", "localhost"):
            response = c.get("/v1/jobs", headers={"Host": host})
            assert response.status_code == 403, host
            assert response.json()["field"] == "host"
        # DNS rebinding also cannot reach the open route.
        assert c.get("/healthz", headers={"Host": "evil.example"}).status_code == 403
        assert c.get("/v1/jobs", headers={"Host": f"localhost:{server.port}"}).status_code == 200


def test_cross_site_browser_requests_are_rejected(server: ServerProcess) -> None:
    with server.client() as c:
        for headers in ({"Origin": "https://evil.example"}, {"Origin": "null"},
                        {"Origin": "http://localhost:8888"},
                        {"Sec-Fetch-Site": "cross-site"}):
            response = c.post("/v1/jobs", json={"name": "x", "config": {"model": SYNTHETIC}},
                              headers=headers)
            assert response.status_code == 403, headers
            assert response.json()["field"] == "origin"
        same = c.get("/v1/jobs", headers={"Origin": f"http://127.0.0.1:{server.port}"})
        assert same.status_code == 200
    # Nothing was created by the rejected POSTs.
    with server.client() as c:
        assert all(j["name"] != "x" for j in c.get("/v1/jobs").json()["jobs"])


# -------------------------------------------------------------------- jobs


def test_create_list_get_job(client: httpx.Client) -> None:
    job = create_job(client, name="support-bot", maxSteps=5)
    assert re.fullmatch(r"job_[0-9a-f]{16}", job["id"])
    assert job["name"] == "support-bot"
    assert job["status"] in ("queued", "running")
    assert job["config"] == {"model": SYNTHETIC, "maxSteps": 5}
    assert job["createdAt"].endswith("Z")
    done = wait_status(client, job["id"], "completed")
    assert done["startedAt"] and done["completedAt"] and done["error"] is None
    listed = client.get("/v1/jobs").json()["jobs"]
    assert listed[0]["id"] == job["id"]  # newest first
    assert client.get("/v1/jobs", params={"status": "completed"}).json()["jobs"][0]["id"] == job["id"]
    body = client.get(f"/v1/jobs/{job['id']}").json()
    assert body["job"]["status"] == "completed" and "events" not in body
    events = all_events(client, job["id"])
    assert [e["type"] for e in events][0] == "training.started"
    assert [e["step"] for e in events if e["type"] == "training.log"] == [1, 2, 3, 4, 5]
    assert events[-1]["type"] == "training.completed"
    assert all(e["jobId"] == job["id"] and e["timestamp"] for e in events)
    ids = [int(e["eventId"]) for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    page = client.get(f"/v1/jobs/{job['id']}", params={"events": "1", "after": ids[2], "limit": 2})
    assert [int(e["eventId"]) for e in page.json()["events"]] == ids[3:5]


def test_bad_config_is_a_400_naming_the_field(client: httpx.Client) -> None:
    before = len(client.get("/v1/jobs", params={"limit": 10000}).json()["jobs"])
    cases = [
        ({"model": SYNTHETIC, "maxSteps": -3}, "maxSteps"),
        ({"model": SYNTHETIC, "maxSteps": "ten"}, "maxSteps"),
        ({"model": SYNTHETIC, "batchSize": 0}, "batchSize"),
        ({"model": SYNTHETIC, "loraR": 0}, "loraR"),
        ({"model": 42}, "model"),
        ({"model": SYNTHETIC, "datasetSource": {"type": "ftp"}}, "datasetSource"),
    ]
    for config, field in cases:
        response = client.post("/v1/jobs", json={"name": "bad", "config": config})
        assert response.status_code == 400, (config, response.text)
        body = response.json()
        assert body["field"].startswith(field), (config, body)
        assert field in body["error"]
    assert client.post("/v1/jobs", json={"name": "bad"}).json()["field"] == "config"
    assert client.post("/v1/jobs", json={"config": {"model": SYNTHETIC}, "name": 3}).status_code == 400
    not_json = client.post("/v1/jobs", content=b"{nope", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 400 and not_json.json()["field"] == "body"
    huge = client.post("/v1/jobs", content=b"x" * (9 * 1024 * 1024))
    assert huge.status_code == 413 and huge.json()["field"] == "body"
    long_name = client.post("/v1/jobs", json={"name": "n" * (2 * 1024 * 1024),
                                              "config": {"model": SYNTHETIC}})
    assert long_name.status_code == 413
    nested = client.post("/v1/jobs", content=b"[" * 100_000 + b"]" * 100_000)
    assert nested.status_code == 400 and nested.json()["field"] == "body"
    # Nothing half-created.
    assert len(client.get("/v1/jobs", params={"limit": 10000}).json()["jobs"]) == before


def test_unknown_job_and_route_are_json_404s(client: httpx.Client) -> None:
    for method, path in [("GET", "/v1/jobs/job_nope"), ("POST", "/v1/jobs/job_nope/cancel"),
                         ("GET", "/v1/jobs/job_nope/events/stream"),
                         ("GET", "/v1/jobs/job_nope/artifacts/adapter"), ("GET", "/v1/nothing")]:
        response = client.request(method, path)
        assert response.status_code == 404, path
        assert response.json()["error"]
    assert client.delete("/v1/jobs").status_code == 405


# --------------------------------------------------------------- artifacts


def test_artifacts_download_list_and_cannot_escape(server: ServerProcess, client: httpx.Client) -> None:
    job = create_job(client, maxSteps=4, saveSteps=2)
    wait_status(client, job["id"], "completed")
    saved = [e for e in all_events(client, job["id"]) if e["type"] == "checkpoint.saved"]
    assert [e["step"] for e in saved] == [2, 4]
    artifact = saved[0]["artifacts"][0]
    assert artifact["url"] == f"/v1/jobs/{job['id']}/artifacts/checkpoints/step-2"
    listing = client.get(artifact["url"]).json()
    assert [f["path"] for f in listing["files"]] == ["checkpoints/step-2/adapter_config.json"]
    on_disk = (server.home / "jobs" / job["id"] / "checkpoints/step-2/adapter_config.json").read_bytes()
    download = client.get(listing["files"][0]["url"])
    assert download.status_code == 200 and download.content == on_disk
    completed = all_events(client, job["id"])[-1]
    assert completed["artifacts"][0]["url"] == f"/v1/jobs/{job['id']}/artifacts/adapter"
    # Escapes: dot-dot (encoded so the client keeps it) and a symlink out of the job dir.
    escape = client.get(f"/v1/jobs/{job['id']}/artifacts/..%2F..%2Ftoken")
    assert escape.status_code == 404 and server.token not in escape.text
    (server.home / "jobs" / job["id"] / "leak").symlink_to(server.home / "token")
    leak = client.get(f"/v1/jobs/{job['id']}/artifacts/leak")
    assert leak.status_code == 404 and server.token not in leak.text


# -------------------------------------------------------------------- chat


def test_inference_chat_streams_deltas_from_a_checkpoint(client: httpx.Client) -> None:
    job = create_job(client, maxSteps=4, saveSteps=2)
    wait_status(client, job["id"], "completed")
    body = {"messages": [{"role": "user", "content": "refund please"}],
            "adapter": {"kind": "checkpoint", "jobId": job["id"], "step": 2}}
    with client.stream("POST", "/v1/inference/chat", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    import json

    chunks = [json.loads(line) for line in lines[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert "step 2" in text and "refund please" in text
    plain = client.post("/v1/inference/chat", json={**body, "stream": False}).json()
    assert plain["choices"][0]["message"]["content"] == text
    missing = client.post("/v1/inference/chat", json={
        **body, "adapter": {"kind": "checkpoint", "jobId": job["id"], "step": 3}})
    assert missing.status_code == 404 and missing.json()["field"] == "adapter.step"
    unknown = client.post("/v1/inference/chat", json={
        **body, "adapter": {"kind": "final", "jobId": "job_nope"}})
    assert unknown.status_code == 404 and unknown.json()["field"] == "adapter.jobId"
    bad = client.post("/v1/inference/chat", json={"messages": "hi", "adapter": body["adapter"]})
    assert bad.status_code == 400 and bad.json()["field"] == "messages"


def test_openai_client_talks_to_a_job(server: ServerProcess, client: httpx.Client) -> None:
    job = create_job(client, maxSteps=4, saveSteps=2)
    wait_status(client, job["id"], "completed")
    oa = openai.OpenAI(base_url=server.url + "/v1", api_key=server.token,
                       http_client=httpx.Client(trust_env=False))
    messages = [{"role": "user", "content": "where is my order"}]
    final = oa.chat.completions.create(model=f"job:{job['id']}", messages=messages)  # type: ignore[arg-type]
    assert final.choices[0].message.content == "[synthetic final] reply to: where is my order"
    stream = oa.chat.completions.create(model=f"job:{job['id']}@4", messages=messages,  # type: ignore[arg-type]
                                        stream=True, max_tokens=3)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream)
    assert text == "[synthetic step 4]"  # 3 word pieces
    models = [m.id for m in oa.models.list()]
    assert f"job:{job['id']}" in models
    try:
        oa.chat.completions.create(model="job:job_nope", messages=messages)  # type: ignore[arg-type]
    except openai.NotFoundError as err:
        assert "job_nope" in str(err)
    else:
        raise AssertionError("unknown job should be a 404")


def test_cloud_bootstrap_routes_answer_locally(client: httpx.Client) -> None:
    projects = client.get("/v1/projects").json()["projects"]
    assert projects[0]["slug"] == "default" and projects[0]["orgSlug"] == "local"
    assert client.post("/v1/projects", json={"name": "x"}).json()["project"]["slug"] == "default"
    anonymous = client.post("/v1/auth/anonymous")
    assert anonymous.json()["orgSlug"] == "local"
    assert client.headers["authorization"].split()[1] not in anonymous.text
