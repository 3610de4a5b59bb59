"""Downloads never hand the bearer token to another host and never write through a planted link.

A hostile backend (a real loopback HTTP server speaking the job protocol)
lists artifact files whose URLs point at a second loopback server on another
port; that server records every header it is sent. Issue 19, points 1 and 4.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import arkor_nb as ak
from arkor_nb.sdk.download import same_origin
from tests.reliability.harness import report
from tests.reliability.recording_http import RecordingServer, Reply, Seen

TOKEN = "tok-" + "s3cr3t" * 6
JOB = "job_hostile0001"
CONFIG = b'{"r": 8}'


def _job_reply(artifacts: list[dict[str, Any]]) -> Reply:
    job = {"id": JOB, "name": "x", "status": "completed", "config": {}}
    events = [{"type": "training.completed", "jobId": JOB, "timestamp": "2026-01-01T00:00:00Z",
               "metrics": {}, "artifacts": artifacts, "eventId": "1"}]
    return Reply.json({"job": job, "events": events})


class Hostile:
    """The backend (own origin) and the foreign host, both recording."""

    def __init__(self, own: RecordingServer, foreign: RecordingServer) -> None:
        self.own, self.foreign = own, foreign
        foreign.routes["/stolen/adapter_config.json"] = lambda seen: Reply(200, CONFIG)
        foreign.routes["/stolen/adapter.gguf"] = lambda seen: Reply(200, b"GGUF")
        own.routes[f"/v1/jobs/{JOB}/artifacts/adapter/adapter_config.json"] = (
            lambda seen: Reply(200, CONFIG, {"Content-Type": "application/octet-stream"}))
        self.set_files([])

    def set_files(self, files: list[Any], single: dict[str, Any] | None = None) -> None:
        self.own.routes[f"/v1/jobs/{JOB}"] = lambda seen: _job_reply([single] if single else [])
        self.own.routes[f"/v1/jobs/{JOB}/artifacts/adapter"] = (
            lambda seen: Reply.json({"path": "adapter", "files": files}))
        self.own.routes[f"/v1/jobs/{JOB}/artifacts/adapter.gguf"] = (
            lambda seen: Reply(200, b"", {"Content-Type": "application/octet-stream"}))

    def backends(self) -> list[Any]:
        return [ak.LocalBackend(url=self.own.url, token=TOKEN),
                ak.CloudBackend(base_url=self.own.url, token=TOKEN, org_slug="o", project_slug="p")]


@pytest.fixture()
def hostile() -> Iterator[Hostile]:
    with RecordingServer() as own, RecordingServer() as foreign:
        yield Hostile(own, foreign)


def _carried_token(seen: list[Seen]) -> int:
    return sum(1 for s in seen if any(TOKEN in v for v in s.headers.values()))


def _foreign_urls(own: int, port: int) -> list[str]:
    return [f"HTTP://127.0.0.1:{port}/stolen/adapter_config.json",
            f"hTTp://127.0.0.1:{port}/stolen/adapter_config.json",
            f"http://127.0.0.1:{port}/stolen/adapter_config.json",  # same host, another port
            f"http://127.0.0.1:{own}@127.0.0.1:{port}/stolen/adapter_config.json"]  # userinfo trick


def test_folder_and_single_file_urls_on_another_origin_never_get_the_token(
        hostile: Hostile, tmp_path: Path) -> None:
    urls = _foreign_urls(hostile.own.port, hostile.foreign.port)
    downloads = 0
    for b, backend in enumerate(hostile.backends()):
        for i, url in enumerate(urls):
            hostile.set_files([{"path": "adapter/adapter_config.json", "size": 8, "url": url}])
            out = ak.download(JOB, tmp_path / f"folder-{b}-{i}", backend=backend)
            assert (out / "adapter_config.json").read_bytes() == CONFIG
            single_url = url.replace("adapter_config.json", "adapter.gguf")
            hostile.set_files([], single={"kind": "adapter", "path": "adapter.gguf", "url": single_url})
            out = ak.download(JOB, tmp_path / f"single-{b}-{i}", backend=backend)
            assert (out / "adapter.gguf").read_bytes() == b"GGUF"
            downloads += 2
    foreign = hostile.foreign.requests()
    assert len(foreign) == downloads  # every file really came from the foreign host
    assert _carried_token(foreign) == 0
    assert all("authorization" not in s.headers or "Bearer" not in s.headers["authorization"]
               for s in foreign)
    assert _carried_token(hostile.own.requests()) == len(hostile.own.requests())  # own origin: yes
    report("download_foreign_origin", foreign_requests=len(foreign),
           carried_token=_carried_token(foreign), backends=2, url_forms=len(urls))


def test_a_redirect_from_the_own_origin_to_another_host_drops_the_token(
        hostile: Hostile, tmp_path: Path) -> None:
    target = f"{hostile.foreign.url}/stolen/adapter_config.json"
    hostile.own.routes[f"/v1/jobs/{JOB}/artifacts/adapter/adapter_config.json"] = (
        lambda seen: Reply(302, b"", {"Location": target}))
    hostile.set_files([{"path": "adapter/adapter_config.json", "size": 8}])  # a relative API path
    for b, backend in enumerate(hostile.backends()):
        out = ak.download(JOB, tmp_path / f"r{b}", backend=backend)
        assert (out / "adapter_config.json").read_bytes() == CONFIG
    redirected = hostile.own.requests(f"/v1/jobs/{JOB}/artifacts/adapter/adapter_config.json")
    assert len(redirected) == 2 and _carried_token(redirected) == 2
    foreign = hostile.foreign.requests()
    assert len(foreign) == 2 and _carried_token(foreign) == 0
    report("download_redirect", foreign_requests=len(foreign), carried_token=_carried_token(foreign))


@pytest.mark.parametrize(("url", "own"), [
    ("http://127.0.0.1:8000/x", True), ("HTTP://127.0.0.1:8000/x", True),
    ("http://127.0.0.1:8001/x", False), ("https://127.0.0.1:8000/x", False),
    ("http://127.0.0.1:8000@evil.example/x", False), ("http://u:p@127.0.0.1:8000/x", False),
    ("http://localhost:8000/x", False),
])
def test_same_origin_is_decided_on_the_parsed_url(url: str, own: bool) -> None:
    import httpx

    assert same_origin(httpx.URL(url), httpx.URL("http://127.0.0.1:8000")) is own
    assert same_origin(httpx.URL(url.replace("http", "Https", 1)),
                       httpx.URL("https://127.0.0.1:8000")) is (own and url.startswith("http:"))


# ------------------------------------------------------------- point 4: links


def test_a_folder_link_in_the_destination_is_refused(hostile: Hostile, tmp_path: Path) -> None:
    hostile.own.routes[f"/v1/jobs/{JOB}/artifacts/adapter/sub/x.bin"] = lambda seen: Reply(200, b"X")
    hostile.set_files([{"path": "adapter/adapter_config.json", "size": 8},
                       {"path": "adapter/sub/x.bin", "size": 1}])
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "sub").symlink_to(outside)
    with pytest.raises(ak.ConfigError) as err:
        ak.download(JOB, dest, backend=hostile.backends()[0])
    assert err.value.field == "to" and "symbolic link" in str(err.value)
    assert list(outside.iterdir()) == []


def test_planted_part_and_final_links_never_overwrite_their_target(
        hostile: Hostile, tmp_path: Path) -> None:
    hostile.set_files([{"path": "adapter/adapter_config.json", "size": 8}])
    victims = []
    for planted in ("adapter_config.json.part", "adapter_config.json"):
        victim = tmp_path / f"victim-{planted}"
        victim.write_text("precious")
        dest = tmp_path / f"dest-{planted}"
        dest.mkdir()
        (dest / planted).symlink_to(victim)
        ak.download(JOB, dest, backend=hostile.backends()[0])
        assert victim.read_text() == "precious"
        final = dest / "adapter_config.json"
        assert not final.is_symlink() and final.read_bytes() == CONFIG
        assert [p.name for p in dest.iterdir() if p.name.endswith(".part")] in (
            [], ["adapter_config.json.part"])  # the planted link stays, nothing of ours is left
        victims.append(victim.read_text())
    report("download_links", victims_overwritten=sum(v != "precious" for v in victims), tries=2)


@pytest.mark.parametrize("entry", [
    "adapter/adapter_config.json", {"path": "adapter/a\x00b"}, {"path": "adapter/" + "n" * 300},
    {"path": "adapter/../../escape"}, {"path": "../escape"}, {"path": "/etc/escape"}, {"path": 7},
])
def test_unsafe_listing_entries_are_refused_with_a_clear_error(
        hostile: Hostile, tmp_path: Path, entry: Any) -> None:
    hostile.set_files([{"path": "adapter/adapter_config.json", "size": 8}, entry])
    dest = tmp_path / "a" / "dest"
    with pytest.raises(ak.CloudApiError) as err:
        ak.download(JOB, dest, backend=hostile.backends()[0])
    text = str(err.value)
    assert JOB in text and ("unsafe file name" in text or "expected {path, size, url}" in text)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written == []  # refused before any file was fetched
