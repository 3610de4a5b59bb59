"""Blob datasets: no stale or borrowed copy, no secret URL in any file or answer.

Issue 19, points 2 and 3. Real local server, real training workers
(``arkor-nb/tiny``), and a real loopback blob host that wants a credential,
answers conditional GETs and counts what it was asked. The rows are not
trainable on purpose: each worker fetches the file, then refuses its rows, so
no training time is spent.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from collections import Counter
from pathlib import Path
from typing import Any

import arkor_nb as ak
from arkor_nb.local.data.blob import download_blob
from tests.reliability.harness import SCOPE, LocalServer, report
from tests.reliability.recording_http import RecordingServer, Reply, Seen


class BlobHost:
    """``/rows.jsonl``: wants ``check(seen)``; ETag revalidation; counts each answer."""

    def __init__(self, server: RecordingServer, check: Any) -> None:
        self.body = b'{"nope": 1}\n'
        self.answers: Counter[int] = Counter()
        self.check = check
        server.routes["/rows.jsonl"] = self.answer

    def answer(self, seen: Seen) -> Reply:
        if not self.check(seen):
            self.answers[401] += 1
            return Reply(401, b"no")
        etag = '"' + hashlib.sha256(self.body).hexdigest()[:16] + '"'
        if seen.headers.get("if-none-match") == etag:
            self.answers[304] += 1
            return Reply(304, b"", {"ETag": etag})
        self.answers[200] += 1
        return Reply(200, self.body, {"ETag": etag})


def _run(backend: ak.LocalBackend, name: str, dataset: dict[str, Any]) -> ak.TrainingResult:
    return ak.create_trainer(name=name, model="arkor-nb/tiny", backend=backend,
                             dataset=dataset).wait()


def test_a_blob_copy_is_keyed_by_its_credential_and_revalidated_every_job(tmp_path: Path) -> None:
    token = "blob-tok-" + os.urandom(8).hex()
    with RecordingServer() as server, LocalServer(tmp_path / "home") as srv:
        host = BlobHost(server, lambda seen: seen.headers.get("authorization") == f"Bearer {token}")
        url = f"{server.url}/rows.jsonl"
        backend = srv.backend()
        first = _run(backend, "first", {"type": "blob", "url": url, "token": token})
        after_first = dict(host.answers)
        none = _run(backend, "no-token", {"type": "blob", "url": url})
        wrong = _run(backend, "wrong-token", {"type": "blob", "url": url, "token": "wrong-" + token})
        same = _run(backend, "unchanged", {"type": "blob", "url": url, "token": token})
        host.body = b'{"changed": 2}\n'
        changed = _run(backend, "changed", {"type": "blob", "url": url, "token": token})
        copies = sorted((tmp_path / "home" / "datasets").glob("blob-*.jsonl"))
    errors = {r.job.name: r.job.error or "" for r in (first, none, wrong, same, changed)}
    assert after_first == {200: 1}
    for name in ("no-token", "wrong-token"):  # asked the host, which refused: no cached copy
        assert "HTTP 401" in errors[name] and "datasetSource.token" in errors[name], errors[name]
    for name in ("first", "unchanged", "changed"):  # fetched (or revalidated), then the rows refused
        assert "HTTP 401" not in errors[name] and "datasetSource" in errors[name], errors[name]
    assert host.answers == {200: 2, 401: 2, 304: 1}
    assert [p.read_bytes() for p in copies] == [b'{"changed": 2}\n']  # one copy, the new file
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in copies)
    report("blob_cache", answers=dict(host.answers), jobs=5,
           cached_copy_served_without_credential=0)


def _every_file(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_secrets_in_a_blob_url_reach_the_worker_and_nothing_else(tmp_path: Path) -> None:
    sig, password = "sig-" + os.urandom(8).hex(), "pw-" + os.urandom(8).hex()
    bad_sig = "badsig-" + os.urandom(8).hex()
    basic = "Basic " + base64.b64encode(f"reader:{password}".encode()).decode()
    home = tmp_path / "home"
    with RecordingServer() as server, LocalServer(home) as srv:
        host = BlobHost(server, lambda seen: seen.query == f"sig={sig}"
                        and seen.headers.get("authorization") == basic)
        base = f"http://reader:{password}@127.0.0.1:{server.port}/rows.jsonl"
        backend = srv.backend()
        ok = _run(backend, "signed", {"type": "blob", "url": f"{base}?sig={sig}"})
        refused = _run(backend, "bad-sig", {"type": "blob", "url": f"{base}?sig={bad_sig}"})
        answers = []
        with srv.client() as c:
            for job in (ok.job, refused.job):
                answers.append(c.get(f"/v1/jobs/{job.id}", params=SCOPE).text)
                answers.append(c.get(f"/v1/jobs/{job.id}", params={**SCOPE, "events": "true"}).text)
                answers.append(c.get(f"/v1/jobs/{job.id}/artifacts/worker.log", params=SCOPE).text)
            answers.append(c.get("/v1/jobs", params=SCOPE).text)
        answers += [json.dumps(ak.job(ok.job.id, backend=backend).config), repr(ok), repr(refused),
                    ok.job.error or "", refused.job.error or ""]
        server_log = srv.log_text()
    assert host.answers[200] == 1 and host.answers[401] == 1  # the worker had the real URL
    assert "HTTP 401" in (refused.job.error or "")
    files = _every_file(home) + [p for p in tmp_path.iterdir() if p.is_file()]
    names = {p.name for p in files}
    assert {"arkor.db", "worker.log"} <= names, names
    secrets = [sig, password, bad_sig]
    leaked = [(str(p), s) for p in files for s in secrets if s.encode() in p.read_bytes()]
    leaked += [("answer", s) for a in answers + [server_log] for s in secrets if s in a]
    logs = [p for p in files if p.name == "worker.log"]
    modes = {oct(stat.S_IMODE(p.stat().st_mode)) for p in logs}
    shown = json.loads(answers[0])["job"]["config"]["datasetSource"]["url"]
    report("blob_url_secrets", files_checked=len(files), answers_checked=len(answers) + 1,
           leaks=len(leaked), worker_log_modes=sorted(modes), stored_url=shown)
    assert leaked == []
    assert modes == {"0o600"}
    assert shown == f"http://***@127.0.0.1:{server.port}/rows.jsonl?***"


def test_a_blob_redirect_to_another_host_drops_the_token(tmp_path: Path) -> None:
    """The worker's fetch follows redirects with httpx, which must not forward
    ``Authorization`` to another origin (checked here, not assumed)."""
    token = "blob-tok-" + os.urandom(8).hex()
    with RecordingServer() as own, RecordingServer() as other:
        own.routes["/rows.jsonl"] = lambda seen: Reply(302, b"", {"Location": f"{other.url}/x"})
        other.routes["/x"] = lambda seen: Reply(200, b'{"a": 1}\n')
        path = download_blob(f"{own.url}/rows.jsonl", tmp_path, token)
        carried = [s for s in other.requests() if token in json.dumps(s.headers)]
        assert own.requests()[0].headers.get("authorization") == f"Bearer {token}"
    assert path.read_bytes() == b'{"a": 1}\n'
    assert len(other.requests()) == 1 and carried == []
