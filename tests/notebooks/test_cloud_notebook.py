"""arkor-cloud.ipynb, executed against the loopback fake cloud instead of the real one.

The notebook is not run against the Arkor cloud in CI (no network, no account).
Pointing ``ARKOR_CLOUD_API_URL`` at FakeCloud (a real HTTP server speaking the
cloud protocol) runs every one of its cells unchanged: anonymous credentials,
project bootstrap, job creation, the live panel over SSE, and the explicit
``CloudBackend`` built from what the first run stored. Its kernel is the fresh
Binder environment's, as for every other notebook (conftest.py).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import nbformat
import pytest

from arkor_nb.demo import execute_notebook
from tests.notebooks.binder_env import BUILD_TIMEOUT_S, BinderEnv
from tests.notebooks.conftest import kernel_env
from tests.sdk.fake_cloud import FakeCloud, completed, log, started

pytestmark = pytest.mark.slow


@pytest.mark.timeout(BUILD_TIMEOUT_S + 300)  # it may be the first to build the Binder env
def test_cloud_notebook_runs_unchanged_against_the_fake_cloud(
        tmp_path: Path, binder: BinderEnv) -> None:
    home, workdir = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    workdir.mkdir()
    source = workdir / "arkor-cloud.ipynb"
    shutil.copyfile(binder.repo / "notebooks" / "arkor-cloud.ipynb", source)
    with FakeCloud() as cloud:
        cloud.default_events = [
            started(),
            *(log(step, 2.0 / step, learningRate=1e-4) for step in range(1, 21)),
            completed(),
        ]
        env = {**kernel_env(binder), "HOME": str(home), "ARKOR_CLOUD_API_URL": cloud.url}
        env.pop("ARKOR_CLOUD_TOKEN", None)
        with binder.kernel():
            execute_notebook(source, workdir / "executed.ipynb", timeout=120, env=env)

        anonymous = cloud.requests_to("POST", "/v1/auth/anonymous")
        project_calls = cloud.requests_to("GET", "/v1/projects") + cloud.requests_to(
            "POST", "/v1/projects"
        )
        jobs = cloud.requests_to("POST", "/v1/jobs")
    nb = nbformat.read(workdir / "executed.ipynb", as_version=4)
    text = "\n".join(
        out.get("text", "") or str(out.get("data", {}).get("text/plain", ""))
        for cell in nb.cells
        for out in cell.get("outputs", [])
    )
    assert len(anonymous) == 1, "credentials were minted once, then reused"
    assert len(jobs) == 2 and jobs[0].body["config"]["model"] == "unsloth/gemma-4-E4B-it"
    assert all(job.query.get("orgSlug") == cloud.anon_org for job in jobs)
    # The pinned backend (token + org + project given) made no bootstrap calls of its own.
    assert [r for r in project_calls if r.at > jobs[0].at] == []
    assert re.search(r"job_\d+ completed", text)
    credentials = home / ".arkor" / "credentials.json"
    assert credentials.is_file() and oct(credentials.stat().st_mode & 0o777) == "0o600"
    assert (workdir / ".arkor" / "state.json").is_file()
    assert "credentials: None" in text, "the first cell ran before any cloud call"
    assert re.search(r"CloudBackend\(.*org_slug='anon-org'.*\) completed", text), text
    assert os.environ.get("ARKOR_CLOUD_API_URL") != cloud.url, "the test process is untouched"
