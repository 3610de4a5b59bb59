"""Issue 19 point 9: an unreachable cloud is ak.CloudApiError naming the URL and what to check.

Two real unreachable addresses: a closed port on 127.0.0.1 (connection
refused) and a host under ``.invalid`` (RFC 2606: never resolves; the lookup
fails locally, without network). Each entry that talks to the cloud raises a
CloudApiError subclass (status 0) whose message names the URL and the settings
to check; ``arkor-nb jobs --backend cloud`` prints one line.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import arkor_nb as ak
from arkor_nb.core.errors import CloudUnreachableError
from arkor_nb.sdk.credentials import ensure_credentials, request_anonymous_token
from tests.reliability.harness import report

REPO = Path(__file__).resolve().parents[2]
CLOUD_MODEL = "unsloth/gemma-4-E4B-it"


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # closed: nothing listens there any more


URLS = {"refused": closed_port_url, "dns": lambda: "http://arkor-nb-test.invalid"}


@pytest.fixture(params=sorted(URLS))
def url(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no stored credentials
    value = URLS[request.param]()
    monkeypatch.setenv("ARKOR_CLOUD_API_URL", value)
    monkeypatch.chdir(tmp_path)  # .arkor/state.json would be written here
    return value


def assert_unreachable(call: Callable[[], object], url: str) -> str:
    started = time.monotonic()
    with pytest.raises(ak.CloudApiError) as info:
        call()
    err = info.value
    assert isinstance(err, CloudUnreachableError), repr(err)
    assert err.status == 0 and err.url == url
    text = str(err)
    assert url in text and "ARKOR_CLOUD_API_URL" in text and "network" in text, text
    assert time.monotonic() - started < 60
    return text


def cloud_trainer(backend: ak.CloudBackend) -> ak.Trainer:
    return ak.create_trainer(name="unreachable", model=CLOUD_MODEL, max_steps=1,
                             dataset={"type": "huggingface", "name": "org/data"},
                             backend=backend)


def test_bootstrap_calls(url: str, tmp_path: Path) -> None:
    assert_unreachable(lambda: request_anonymous_token(url), url)
    path = tmp_path / "creds.json"
    assert_unreachable(lambda: ensure_credentials(url, path), url)
    assert not path.exists()


def test_trainer_start_and_wait(url: str) -> None:
    # credentials are minted on first use: the bootstrap is what fails
    assert_unreachable(cloud_trainer(ak.CloudBackend()).start, url)
    assert_unreachable(cloud_trainer(ak.CloudBackend()).wait, url)
    # everything given: no bootstrap, the job POST is what fails
    full = ak.CloudBackend(base_url=url, token="t", org_slug="o", project_slug="p")
    assert_unreachable(cloud_trainer(full).start, url)
    full = ak.CloudBackend(base_url=url, token="t", org_slug="o", project_slug="p")
    text = assert_unreachable(cloud_trainer(full).wait, url)
    report("test_cloud_unreachable::trainer", url=url, message=text)


def test_jobs_listing(url: str) -> None:
    assert_unreachable(lambda: ak.jobs(backend="cloud"), url)
    full = ak.CloudBackend(base_url=url, token="t", org_slug="o", project_slug="p")
    assert_unreachable(lambda: ak.jobs(backend=full), url)


def test_cli_jobs_prints_one_line(url: str, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "arkor_nb", "jobs", "--backend", "cloud"],
                          capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    err = proc.stderr.strip()
    assert proc.returncode == 1, (proc.returncode, err)
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("arkor-nb: cannot reach ") and url in err, err
    report("test_cloud_unreachable::cli", url=url, exit=proc.returncode, stderr=err)
