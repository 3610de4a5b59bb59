"""run_trainer / create_arkor and the `arkor-nb` command (`python -m arkor_nb`)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import arkor_nb as ak
from arkor_nb import cli
from tests.sdk.fake_cloud import FakeCloud, cancelled, completed, failed, log, started

REPO = Path(__file__).resolve().parents[2]

ENTRY = """
import os
import arkor_nb as ak

backend = ak.CloudBackend(
    base_url=os.environ["FAKE_CLOUD_URL"], token="test-token", org_slug="acme", project_slug="proj"
)
{body}
"""


def entry(tmp_path: Path, body: str, name: str = "index.py") -> Path:
    path = tmp_path / name
    path.write_text(ENTRY.format(body=textwrap.dedent(body)))
    return path


def trainer_src(name: str) -> str:
    return (
        f'ak.create_trainer(name="{name}", model=ak.SUPPORTED_MODELS[0], backend=backend, '
        "reconnect=ak.ReconnectPolicy(initial_delay=0.01, max_delay=0.05))"
    )


@pytest.fixture
def cloud_env(cloud: FakeCloud, monkeypatch: pytest.MonkeyPatch) -> FakeCloud:
    monkeypatch.setenv("FAKE_CLOUD_URL", cloud.url)
    return cloud


def test_create_arkor_builds_a_manifest() -> None:
    trainer = ak.create_trainer(name="n", model="m", backend=ak.LocalBackend(url="http://127.0.0.1:9", token="t"))
    manifest = ak.create_arkor(trainer=trainer)
    assert isinstance(manifest, ak.Arkor)
    assert manifest.trainer is trainer and manifest.kind == "arkor"
    with pytest.raises(ak.ConfigError) as info:
        ak.create_arkor(trainer="not a trainer")  # type: ignore[arg-type]
    assert info.value.field == "trainer"


def test_run_trainer_prefers_the_arkor_manifest_and_prints_progress(cloud_env: FakeCloud, tmp_path: Path) -> None:
    path = entry(
        tmp_path,
        f"""
        trainer = {trainer_src("from-trainer")}
        arkor = ak.create_arkor(trainer={trainer_src("from-manifest")})
        default = {trainer_src("from-default")}
        """,
    )
    out = io.StringIO()
    result = ak.run_trainer(path, out=out)
    assert result.job.status == "completed"
    assert result.job.name == "from-manifest"
    lines = out.getvalue().splitlines()
    assert lines == [f"Started job {result.job.id}", f"Job {result.job.id} completed"]


@pytest.mark.parametrize("attr", ["trainer", "default"])
def test_run_trainer_falls_back_to_trainer_then_default(cloud_env: FakeCloud, tmp_path: Path, attr: str) -> None:
    path = entry(tmp_path, f"{attr} = {trainer_src(attr)}\n")
    result = ak.run_trainer(str(path), out=io.StringIO())
    assert result.job.name == attr


def test_run_trainer_explains_a_module_without_a_trainer(tmp_path: Path) -> None:
    path = tmp_path / "empty.py"
    path.write_text("x = 1\n")
    with pytest.raises(ak.ConfigError, match="create_arkor"):
        ak.run_trainer(path)
    with pytest.raises(ak.ConfigError, match="not a file"):
        ak.run_trainer(tmp_path / "missing.py")


def test_cli_exit_codes_follow_the_job_status(cloud_env: FakeCloud, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = entry(tmp_path, f"trainer = {trainer_src('cli')}\n")
    cloud_env.default_events = [started(), log(1, 0.5), completed()]
    assert cli.main(["run", str(path)]) == 0
    assert "completed" in capsys.readouterr().out
    cloud_env.default_events = [started(), failed("diverged")]
    assert cli.main(["run", str(path)]) == 1
    assert "failed: diverged" in capsys.readouterr().out
    cloud_env.default_events = [started(), cancelled(2)]
    assert cli.main(["run", str(path)]) == 1
    assert cli.main(["run", str(tmp_path / "nope.py")]) == 2
    assert "not a file" in capsys.readouterr().err


def test_python_dash_m_arkor_nb_run_fails_the_process_on_a_failed_job(cloud_env: FakeCloud, tmp_path: Path) -> None:
    path = entry(tmp_path, f"arkor = ak.create_arkor(trainer={trainer_src('sub')})\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    cloud_env.default_events = [started(), failed("boom")]
    proc = subprocess.run(
        [sys.executable, "-m", "arkor_nb", "run", str(path)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.startswith("Started job job_")
    assert "failed: boom" in proc.stdout
    cloud_env.default_events = [started(), completed()]
    proc = subprocess.run(
        [sys.executable, "-m", "arkor_nb", "run", str(path)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr


def test_serve_delegates_to_the_local_launcher(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["serve", "--help"])
    assert info.value.code == 0
    assert "arkor-nb serve" in capsys.readouterr().out


def test_console_script_is_declared() -> None:
    text = (REPO / "pyproject.toml").read_text()
    scripts = text.split("[project.scripts]", 1)[1].split("[", 1)[0]
    assert 'arkor-nb = "arkor_nb.cli:main"' in scripts


def test_serve_passes_its_options_to_the_server(tmp_path: Path) -> None:
    """`arkor-nb serve --port 0 --home DIR` starts a real server (options reach it)."""
    import json
    import signal
    import time

    import httpx

    home = tmp_path / "home"
    proc = subprocess.Popen(
        [sys.executable, "-m", "arkor_nb", "serve", "--port", "0", "--home", str(home)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        runtime = home / "server.json"

        def healthy() -> bool:
            if not runtime.exists():
                return False
            url = json.loads(runtime.read_text())["url"]
            try:
                return httpx.get(f"{url}/healthz", timeout=5).status_code == 200
            except httpx.TransportError:
                return False

        while not healthy():  # poll a condition with a deadline
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the server never answered /healthz"
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
