"""The local backend left running on a laptop: who can reach it, drive it, read from it.

Black-box against the real server process: bind address, the token on every
route, Origin and Host checks (cross-site pages, DNS rebinding), path escapes
through artifact downloads and dataset paths, remote code in model dirs, and
the token never leaking into logs, bodies, files, reprs or notebook output.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import arkor_nb as ak
from tests.reliability.harness import SCOPE, LocalServer, free_port, synthetic_config, wait_for

ROUTES = [
    ("GET", "/v1/jobs"),
    ("POST", "/v1/jobs"),
    ("GET", "/v1/jobs/job_x"),
    ("GET", "/v1/jobs/job_x/events/stream"),
    ("POST", "/v1/jobs/job_x/cancel"),
    ("GET", "/v1/jobs/job_x/artifacts/adapter/adapter_config.json"),
    ("POST", "/v1/inference/chat"),
    ("POST", "/v1/chat/completions"),
    ("GET", "/v1/models"),
    ("POST", "/v1/auth/anonymous"),
    ("GET", "/v1/projects"),
    ("POST", "/v1/projects"),
    ("GET", "/no/such/route"),
    ("DELETE", "/v1/jobs/job_x"),
]


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    home = tmp_path_factory.mktemp("sec") / "home"
    with LocalServer(home, env={"ARKOR_NB_SYNTHETIC_STEP_S": "0.001"}) as server:
        yield server


@pytest.fixture(scope="module")
def done_job(srv: LocalServer) -> str:
    job = srv.create_job(synthetic_config(20, saveSteps=10), name="sec")
    wait_for(lambda: srv.job(job["id"])["job"]["status"] == "completed", 60, "job")
    return str(job["id"])


def raw_request(port: int, head: str) -> tuple[int, bytes]:
    """Send exactly these request bytes (no client-side path normalisation)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head.encode("latin-1"))
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in data else b""


# ----------------------------------------------------------------- binding


def test_listens_on_loopback_only(srv: LocalServer) -> None:
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, port = local.split(":")
            if int(port, 16) == srv.port and state == "0A":  # LISTEN
                listening.add(addr)
    assert listening == {"0100007F"}, listening  # 127.0.0.1 and nothing else


def _serve(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "arkor_nb.local.server.serve", "--home", str(home), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize("extra", [[], ["--allow-remote"], ["--token", "t" * 32]])
def test_refuses_non_loopback_without_flag_and_token(tmp_path: Path, extra: list[str]) -> None:
    proc = _serve(tmp_path / "home", "--host", "0.0.0.0", "--port", "0", *extra)
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode not in (0, None)
    assert "--allow-remote" in out and "--token" in out
    assert not (tmp_path / "home" / "server.json").exists()


def test_non_loopback_with_flag_and_token_still_requires_the_token(tmp_path: Path) -> None:
    token = "explicit-remote-token-" + "x" * 16
    port = free_port()
    proc = _serve(
        tmp_path / "home",
        "--host",
        "0.0.0.0",
        "--port",
        str(port),
        "--allow-remote",
        "--token",
        token,
        "--insecure-http",  # plain HTTP off loopback is refused without it (tests/local/test_remote_tls.py)
    )
    try:
        wait_for(lambda: _ok(f"http://127.0.0.1:{port}/healthz"), 60, "remote-enabled server")
        assert httpx.get(f"http://127.0.0.1:{port}/v1/jobs", params=SCOPE).status_code == 401
        r = httpx.get(
            f"http://127.0.0.1:{port}/v1/jobs",
            params=SCOPE,
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 200
        runtime = (tmp_path / "home" / "server.json").read_text()
        assert token not in runtime
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0]
    assert token not in out


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


# ------------------------------------------------------------------- token


def test_token_file_is_private(srv: LocalServer) -> None:
    assert (srv.home / "token").stat().st_mode & 0o777 == 0o600
    assert len(srv.token) >= 32


@pytest.mark.parametrize("method,path", ROUTES)
def test_every_route_but_healthz_needs_the_token(srv: LocalServer, method: str, path: str) -> None:
    t = srv.token
    bad_headers = [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": f"Bearer {t[:-1]}"},
        {"Authorization": f"Bearer {t}x"},
        {"Authorization": f"Bearer {t.upper() if t.upper() != t else t.lower()}"},
        {"Authorization": f"Basic {t}"},
        {"Authorization": t},
        {"X-Arkor-Token": t},
    ]
    for headers in bad_headers:
        r = httpx.request(method, srv.url + path, params=SCOPE, headers=headers, json={})
        assert r.status_code == 401, (method, path, headers, r.status_code)
        assert t not in r.text
    assert httpx.get(srv.url + "/healthz").status_code == 200


def test_token_never_leaks(srv: LocalServer, done_job: str, tmp_path: Path) -> None:
    t = srv.token
    with srv.client() as c:
        bodies = [
            c.get("/v1/jobs", params=SCOPE).text,
            c.get(f"/v1/jobs/{done_job}", params={**SCOPE, "events": "true"}).text,
            c.post("/v1/jobs", params=SCOPE, json={"name": "bad", "config": {"model": 5}}).text,
            c.post("/v1/auth/anonymous", json={}).text,
            c.get(f"/v1/jobs/{done_job}/artifacts/", params=SCOPE).text,
        ]
    # Every file the server and its workers wrote, except the token file itself.
    files = [
        p
        for p in srv.home.rglob("*")
        if p.is_file() and p.name != "token" and p.suffix not in (".db", ".db-wal", ".db-shm")
    ]
    leaks = [str(p) for p in files if t in p.read_text(errors="replace")]
    leaks += [f"body {i}" for i, b in enumerate(bodies) if t in b]
    leaks += ["server log"] if t in srv.log_text() else []
    # Client-side objects a notebook would print.
    backend = ak.LocalBackend(url=srv.url, token=t)
    trainer = ak.Trainer.attach(done_job, backend=backend)
    run = ak.live(trainer, display=False)
    run.result(timeout=60)
    record = run.save(tmp_path / "rec.jsonl").read_text()
    try:
        ak.Trainer.attach(done_job, backend=ak.LocalBackend(url=srv.url, token=t + "wrong")).wait()
    except ak.CloudApiError as err:
        err_text = f"{err!s} {err!r} {err.body!r}"
    shown = {
        "repr(backend)": repr(backend),
        "repr(trainer)": repr(trainer),
        "repr(run)": repr(run),
        "snapshot": run.snapshot_html(),
        "record": record,
        "error": err_text,
    }
    leaks += [k for k, v in shown.items() if t in v or (t + "wrong") in v]
    assert leaks == []


def test_workers_do_not_get_the_token_in_their_environment(srv: LocalServer) -> None:
    job = srv.create_job(synthetic_config(100_000), name="env")
    pid_file = srv.home / "jobs" / job["id"] / "worker.pid"
    pid = int(wait_for(lambda: pid_file.exists() and pid_file.read_text(), 30, "worker"))
    try:
        environ = wait_for(lambda: Path(f"/proc/{pid}/environ").read_bytes(), 10, "environ")
        assert srv.token.encode() not in environ
    finally:
        with srv.client() as c:
            c.post(f"/v1/jobs/{job['id']}/cancel", params=SCOPE)
        wait_for(lambda: srv.job(job["id"])["job"]["status"] == "cancelled", 60, "cancel")


# ----------------------------------------------------- browsers and rebinding


@pytest.mark.parametrize(
    "headers,allowed",
    [
        ({"Origin": "http://evil.example"}, False),
        ({"Origin": "null"}, False),
        ({"Origin": "http://127.0.0.1:1"}, False),
        ({"Origin": "https://127.0.0.1.evil.example"}, False),
        ({"Sec-Fetch-Site": "cross-site"}, False),
        ({"Sec-Fetch-Site": "same-site"}, False),
        ({"Host": "evil.example"}, False),
        ({"Host": "evil.example:{port}"}, False),
        ({"Host": "127.0.0.1:1"}, False),
        ({"Host": "localhost.evil.example:{port}"}, False),
        ({"Origin": "http://127.0.0.1:{port}"}, True),
        ({"Origin": "http://localhost:{port}"}, True),
        ({"Host": "localhost:{port}"}, True),
        ({"Sec-Fetch-Site": "none"}, True),
        ({}, True),
    ],
)
def test_origin_and_host_checks(srv: LocalServer, headers: dict[str, str], allowed: bool) -> None:
    h = {k: v.format(port=srv.port) for k, v in headers.items()}
    h["Authorization"] = f"Bearer {srv.token}"  # even a page that knew the token is stopped
    for method, path in [("GET", "/v1/jobs"), ("POST", "/v1/jobs")]:
        r = httpx.request(
            method,
            srv.url + path,
            params=SCOPE,
            headers=h,
            json={"name": "x", "config": {"model": 1}},
        )
        if allowed:
            assert r.status_code in (200, 400), (h, r.status_code, r.text)
        else:
            assert r.status_code == 403, (h, r.status_code, r.text)
            assert r.json()["field"] in ("origin", "host")


# ------------------------------------------------------------- path escapes


def test_artifact_downloads_cannot_escape_the_job_dir(srv: LocalServer, done_job: str) -> None:
    job_dir = srv.home / "jobs" / done_job
    (job_dir / "escape-token").symlink_to(srv.home / "token")
    (job_dir / "escape-dir").symlink_to(srv.home)
    auth = f"Authorization: Bearer {srv.token}\r\nHost: 127.0.0.1:{srv.port}\r\n"
    base = f"/v1/jobs/{done_job}/artifacts/"
    probes = [
        "../../token",
        "..%2f..%2ftoken",
        "%2e%2e/%2e%2e/token",
        "%2e%2e%2f%2e%2e%2ftoken",
        "..\\..\\token",
        "%2fetc%2fpasswd",
        "/etc/passwd",
        "escape-token",
        "escape-dir/token",
        "escape-dir/",
        "checkpoints/../../../token",
    ]
    secret = srv.token.encode()
    for probe in probes:
        status, body = raw_request(
            srv.port, f"GET {base}{probe} HTTP/1.1\r\n{auth}Connection: close\r\n\r\n"
        )
        assert status in (400, 403, 404), (probe, status)
        assert secret not in body and b"root:" not in body, probe
    # the directory listing does not offer the escaping links either
    with srv.client() as c:
        listing = c.get(base, params=SCOPE).json()
        ok = c.get(f"{base}checkpoints/step-10/adapter_config.json", params=SCOPE)
    assert not any("escape" in f["path"] for f in listing["files"])
    assert ok.status_code == 200  # a real artifact still downloads


def test_dataset_paths_cannot_escape_the_data_roots(srv: LocalServer, tmp_path: Path) -> None:
    link = tmp_path / "innocent.jsonl"
    link.symlink_to("/etc/passwd")
    cases = ["/etc/passwd", "../../../../../../etc/passwd", str(link), "~/../../../../etc/passwd"]
    with srv.client() as c:
        for path in cases:
            config = {"model": "arkor-nb/tiny", "datasetSource": {"type": "file", "path": path}}
            r = c.post("/v1/jobs", params=SCOPE, json={"name": "esc", "config": config})
            assert r.status_code == 400, (path, r.status_code, r.text)
            assert r.json()["field"] == "datasetSource.path"
            assert "root:" not in r.text


def test_model_dirs_with_remote_code_are_refused_and_never_run(
    srv: LocalServer, tmp_path: Path
) -> None:
    model = tmp_path / "evil-model"
    model.mkdir()
    marker = tmp_path / "PWNED"
    (model / "config.json").write_text(
        json.dumps(
            {
                "model_type": "evil",
                "architectures": ["EvilForCausalLM"],
                "auto_map": {
                    "AutoConfig": "configuration_evil.EvilConfig",
                    "AutoModelForCausalLM": "modeling_evil.EvilForCausalLM",
                },
            }
        )
    )
    payload = f"open({str(marker)!r}, 'w').write('ran')\n"
    (model / "configuration_evil.py").write_text(payload)
    (model / "modeling_evil.py").write_text(payload)
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"prompt": "a", "completion": "b"}) + "\n")
    with srv.client() as c:
        r = c.post(
            "/v1/jobs",
            params=SCOPE,
            json={
                "name": "evil",
                "config": {
                    "model": str(model),
                    "datasetSource": {"type": "file", "path": str(data)},
                    "maxSteps": 1,
                },
            },
        )
    assert r.status_code == 400 and r.json()["field"] == "model", r.text
    assert "trust_remote_code" in r.json()["error"]
    assert not marker.exists()
    # and nothing in the package turns remote code on
    src = Path(ak.__file__).parent
    hits = [str(p) for p in src.rglob("*.py") if "trust_remote_code=True" in p.read_text()]
    assert hits == []


def test_token_comparison_is_constant_time() -> None:
    """Timing cannot be measured reliably on a shared CI box; the comparison itself is pinned."""
    import inspect

    from arkor_nb.local.server.security import SecurityPolicy

    src = inspect.getsource(SecurityPolicy.token_ok)
    assert "hmac.compare_digest" in src and "==" not in src.replace("!=", "")
    policy = SecurityPolicy(token="s" * 40)
    assert policy.token_ok("Bearer " + "s" * 40)
    assert not policy.token_ok("Bearer " + "s" * 39) and not policy.token_ok(None)
    assert "s" * 40 not in repr(policy)


def test_cached_hub_models_with_remote_code_are_refused(srv: LocalServer, tmp_path: Path) -> None:
    """A hub id already in the local HF cache whose config asks for custom code."""
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = Path(os.environ["HF_HOME"]) / "hub" / "models--evil-org--remote-code-model"
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    marker = tmp_path / "PWNED"
    (snapshot / "config.json").write_text(
        json.dumps(
            {"model_type": "evil", "auto_map": {"AutoConfig": "configuration_evil.EvilConfig"}}
        )
    )
    (snapshot / "configuration_evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"prompt": "a", "completion": "b"}) + "\n")
    with srv.client() as c:
        r = c.post(
            "/v1/jobs",
            params=SCOPE,
            json={
                "name": "evil-hub",
                "config": {
                    "model": "evil-org/remote-code-model",
                    "datasetSource": {"type": "file", "path": str(data)},
                    "maxSteps": 1,
                },
            },
        )
    assert r.status_code == 400 and r.json()["field"] == "model", r.text
    assert "trust_remote_code" in r.json()["error"]
    assert not marker.exists()
