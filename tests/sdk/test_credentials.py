"""Credentials, base-URL precedence, project scope and the cloud bootstrap."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

import arkor_nb as ak
from arkor_nb.sdk.credentials import credentials_path, default_cloud_url
from arkor_nb.sdk.state import state_path
from tests.sdk.fake_cloud import SUPPORTED_MODEL, FakeCloud


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("ARKOR_CLOUD_API_URL", raising=False)
    return home


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "My Project_1"
    path.mkdir()
    return path


def test_write_and_read_credentials_atomically_with_mode_0600(isolated_home: Path) -> None:
    creds = {"mode": "anon", "token": "tok", "anonymousId": "a", "arkorCloudApiUrl": "http://x", "orgSlug": "o"}
    ak.write_credentials(creds)
    path = isolated_home / ".arkor" / "credentials.json"
    assert path == credentials_path()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ak.read_credentials() == creds
    ak.write_credentials({**creds, "token": "tok2"})
    assert ak.read_credentials()["token"] == "tok2"
    assert sorted(p.name for p in path.parent.iterdir()) == ["credentials.json"]  # no temp files left


def test_read_credentials_is_none_for_missing_or_corrupt_files(isolated_home: Path) -> None:
    assert ak.read_credentials() is None
    path = credentials_path()
    path.parent.mkdir(parents=True)
    path.write_text("{ half a json")
    assert ak.read_credentials() is None
    path.write_text("[1, 2]")
    assert ak.read_credentials() is None


def test_base_url_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    stamped = {"mode": "anon", "arkorCloudApiUrl": "http://stamped.example/"}
    assert default_cloud_url(None) == "https://api.arkor.ai"
    assert default_cloud_url(stamped) == "http://stamped.example"
    monkeypatch.setenv("ARKOR_CLOUD_API_URL", "http://env.example//")
    assert default_cloud_url(stamped) == "http://env.example"


def test_ensure_credentials_mints_an_anonymous_token_once(cloud: FakeCloud, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARKOR_CLOUD_API_URL", cloud.url)
    creds = ak.ensure_credentials()
    assert creds["mode"] == "anon"
    assert creds["token"].startswith("anon-token-")
    assert creds["orgSlug"] == "anon-org"
    assert creds["arkorCloudApiUrl"] == cloud.url
    assert ak.read_credentials() == creds
    assert stat.S_IMODE(credentials_path().stat().st_mode) == 0o600
    assert ak.ensure_credentials() == creds
    minted = cloud.requests_to("POST", "/v1/auth/anonymous")
    assert len(minted) == 1
    assert minted[0].body == {"kind": "cli"}
    assert minted[0].headers["x-arkor-client"].startswith("arkor-nb/")


def test_request_anonymous_token_rejected_is_a_cloud_api_error(cloud: FakeCloud) -> None:
    cloud.anonymous_enabled = False
    with pytest.raises(ak.CloudApiError) as info:
        ak.request_anonymous_token(cloud.url)
    assert info.value.status == 403
    assert info.value.message == "anonymous access is disabled"
    assert ak.request_anonymous_token.__name__ == "request_anonymous_token"


def test_state_round_trip_and_validation(workdir: Path) -> None:
    assert ak.read_state(workdir) is None
    ak.write_state({"orgSlug": "o", "projectSlug": "p", "projectId": "prj_1"}, workdir)
    assert ak.read_state(workdir) == {"orgSlug": "o", "projectSlug": "p", "projectId": "prj_1"}
    assert json.loads(state_path(workdir).read_text())["projectId"] == "prj_1"
    state_path(workdir).write_text('{"orgSlug": "o"}')
    assert ak.read_state(workdir) is None
    with pytest.raises(ValueError, match="projectId"):
        ak.write_state({"orgSlug": "o", "projectSlug": "p"}, workdir)


def cloud_trainer(backend: ak.CloudBackend) -> ak.Trainer:
    return ak.create_trainer(name="n", model=SUPPORTED_MODEL, backend=backend)


def test_anonymous_bootstrap_creates_the_project_and_state(
    cloud: FakeCloud, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARKOR_CLOUD_API_URL", cloud.url)
    trainer = cloud_trainer(ak.CloudBackend(cwd=workdir))
    job_id = trainer.start()
    state = ak.read_state(workdir)
    assert state is not None
    assert state["orgSlug"] == "anon-org" and state["projectSlug"] == "my-project-1"
    assert state["projectId"].startswith("prj_")
    post = cloud.requests_to("POST", "/v1/jobs")[0]
    assert post.query == {"orgSlug": "anon-org", "projectSlug": "my-project-1"}
    assert post.headers["authorization"] == f"Bearer {ak.read_credentials()['token']}"
    assert cloud.jobs[job_id]["projectSlug"] == "my-project-1"
    # a second trainer reuses credentials and state: no new bootstrap calls
    cloud_trainer(ak.CloudBackend(cwd=workdir)).start()
    assert len(cloud.requests_to("POST", "/v1/auth/anonymous")) == 1
    assert len(cloud.requests_to("POST", "/v1/projects")) == 1


def test_bootstrap_reuses_an_existing_project_on_conflict(
    cloud: FakeCloud, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARKOR_CLOUD_API_URL", cloud.url)
    cloud.projects["anon-org"] = [{"id": "prj_old", "slug": "my-project-1", "name": "old"}]
    cloud_trainer(ak.CloudBackend(cwd=workdir)).start()
    assert ak.read_state(workdir) == {"orgSlug": "anon-org", "projectSlug": "my-project-1", "projectId": "prj_old"}
    assert len(cloud.requests_to("GET", "/v1/projects")) == 1


def test_state_of_another_org_is_never_overwritten(
    cloud: FakeCloud, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARKOR_CLOUD_API_URL", cloud.url)
    other = {"orgSlug": "someone-else", "projectSlug": "theirs", "projectId": "prj_9"}
    ak.write_state(other, workdir)
    before = state_path(workdir).read_bytes()
    with pytest.raises(ak.ScopeError) as info:
        cloud_trainer(ak.CloudBackend(cwd=workdir)).start()
    message = str(info.value)
    assert "someone-else" in message and "anon-org" in message
    assert f"delete {state_path(workdir)}" in message  # recovery 1
    assert "arkor login" in message and "org_slug=" in message  # recovery 2
    assert state_path(workdir).read_bytes() == before
    assert cloud.requests_to("POST", "/v1/jobs") == []


def test_oauth_credentials_use_any_state_but_never_bootstrap(
    cloud: FakeCloud, workdir: Path
) -> None:
    ak.write_credentials({"mode": "oauth", "accessToken": cloud.token, "arkorCloudApiUrl": cloud.url})
    with pytest.raises(ak.ScopeError, match="org_slug"):
        cloud_trainer(ak.CloudBackend(cwd=workdir)).start()
    ak.write_state({"orgSlug": "acme", "projectSlug": "proj", "projectId": "prj_1"}, workdir)
    job_id = cloud_trainer(ak.CloudBackend(cwd=workdir)).start()
    assert cloud.jobs[job_id]["orgSlug"] == "acme"
    assert cloud.requests_to("POST", "/v1/projects") == []


def test_stamped_url_is_used_when_no_env_is_set(cloud: FakeCloud, workdir: Path) -> None:
    ak.write_credentials(
        {"mode": "anon", "token": cloud.token, "anonymousId": "a", "arkorCloudApiUrl": cloud.url, "orgSlug": "acme"}
    )
    ak.write_state({"orgSlug": "acme", "projectSlug": "proj", "projectId": "prj_1"}, workdir)
    trainer = cloud_trainer(ak.CloudBackend(cwd=workdir))
    assert trainer.wait().job.status == "completed"
    assert cloud.requests_to("POST", "/v1/auth/anonymous") == []


def test_all_four_parts_set_means_no_bootstrap_and_no_files(cloud: FakeCloud, isolated_home: Path, workdir: Path) -> None:
    trainer = cloud_trainer(cloud.backend(cwd=workdir))
    assert trainer.wait().job.status == "completed"
    paths = {r.path for r in cloud.requests}
    assert "/v1/auth/anonymous" not in paths and "/v1/projects" not in paths
    assert not (isolated_home / ".arkor").exists()
    assert not (workdir / ".arkor").exists()


def test_explicit_token_without_scope_or_credentials_is_a_scope_error(cloud: FakeCloud, workdir: Path) -> None:
    backend = ak.CloudBackend(base_url=cloud.url, token=cloud.token, cwd=workdir)
    with pytest.raises(ak.ScopeError, match="org_slug"):
        cloud_trainer(backend).start()
    assert cloud.requests == []
    assert os.listdir(workdir) == []
