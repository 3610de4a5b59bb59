"""`arkor-nb jobs|logs|cancel|download|chat` and `run` without a path, against the fake cloud.

The job commands run as real subprocesses (``python -m arkor_nb``) with
``--backend cloud`` pointed at the fake cloud through ``ARKOR_CLOUD_API_URL``
(an anonymous token and project are bootstrapped there, as a new user gets).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from arkor_nb import cli
from tests.sdk.fake_cloud import FakeCloud, cancelled, checkpoint, completed, failed, log, started
from tests.sdk.test_jobs_api import ADAPTER_FILES, finished_job

REPO = Path(__file__).resolve().parents[2]


def arkor(cloud: FakeCloud, cwd: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ARKOR_CLOUD_API_URL": cloud.url, "HOME": str(cwd / "home"),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "arkor_nb", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def test_jobs_text_json_and_status(cloud: FakeCloud, tmp_path: Path) -> None:
    finished_job(cloud, "job_a")
    cloud.add_job("job_b", [started()], status="running", name="second")
    out = arkor(cloud, tmp_path, "jobs", "--backend", "cloud")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("NAME") and "job_b" in lines[1] and "job_a" in lines[2]
    out = arkor(cloud, tmp_path, "jobs", "--backend", "cloud", "--json", "--status", "running")
    assert out.returncode == 0, out.stderr
    assert [j["id"] for j in json.loads(out.stdout)] == ["job_b"]
    bad = arkor(cloud, tmp_path, "jobs", "--backend", "cloud", "--status", "done")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_logs_prints_recorded_events_and_follow_exits_by_status(cloud: FakeCloud, tmp_path: Path) -> None:
    cloud.add_job("job_ok", [started(), log(1, 2.0), log(2, 1.5), checkpoint(2), completed()],
                  status="completed")
    cloud.add_job("job_bad", [started(), log(1, 2.0), failed("diverged", step=1)], status="failed")
    cloud.add_job("job_stop", [started(), cancelled(1)], status="cancelled")
    out = arkor(cloud, tmp_path, "logs", "job_ok", "--backend", "cloud")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["started", "step 1  loss 2", "step 2  loss 1.5",
                                       "checkpoint saved at step 2", "completed"]
    follow = arkor(cloud, tmp_path, "logs", "job_ok", "-f", "--backend", "cloud")
    assert follow.returncode == 0 and follow.stdout == out.stdout
    follow = arkor(cloud, tmp_path, "logs", "job_bad", "-f", "--backend", "cloud")
    assert follow.returncode == 1 and follow.stdout.splitlines()[-1] == "failed at step 1: diverged"
    assert arkor(cloud, tmp_path, "logs", "job_stop", "-f", "--backend", "cloud").returncode == 1
    missing = arkor(cloud, tmp_path, "logs", "job_nope", "-f", "--backend", "cloud")
    assert missing.returncode == 2 and "job_nope" in missing.stderr


def test_cancel_download_chat(cloud: FakeCloud, tmp_path: Path) -> None:
    finished_job(cloud, "job_a")
    cloud.add_job("job_r", [started()], status="running")
    out = arkor(cloud, tmp_path, "cancel", "job_r", "--backend", "cloud")
    assert out.returncode == 0, out.stderr
    assert cloud.jobs["job_r"]["status"] == "cancelled" and "job_r" in out.stdout
    assert arkor(cloud, tmp_path, "cancel", "job_x", "--backend", "cloud").returncode == 2

    out = arkor(cloud, tmp_path, "download", "job_a", "--backend", "cloud")
    assert out.returncode == 0, out.stderr
    folder = Path(out.stdout.strip())
    assert folder == Path("job_a") and sorted(p.name for p in (tmp_path / folder).iterdir()) == sorted(ADAPTER_FILES)
    out = arkor(cloud, tmp_path, "download", "job_a", "--step", "2", "-o", str(tmp_path / "s2"),
                "--backend", "cloud")
    assert out.returncode == 0 and (tmp_path / "s2" / "adapter_config.json").is_file()
    bad = arkor(cloud, tmp_path, "download", "job_a", "--step", "3", "--backend", "cloud")
    assert bad.returncode == 2 and "saved checkpoints: 2, 4" in bad.stderr

    cloud.chat_pieces = ["Hi", " there"]
    out = arkor(cloud, tmp_path, "chat", "job_a", "hello?", "--step", "4", "--backend", "cloud")
    assert out.returncode == 0 and out.stdout == "Hi there\n"
    body = cloud.requests_to("POST", "/v1/inference/chat")[-1].body
    assert body["adapter"] == {"kind": "checkpoint", "jobId": "job_a", "step": 4}
    assert body["messages"] == [{"role": "user", "content": "hello?"}]


def test_help_lists_commands_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for name in ("run", "jobs", "logs", "cancel", "download", "chat", "serve"):
        assert name in text
    assert "130 interrupted" in text and "2 usage or input error" in text
    with pytest.raises(SystemExit) as info:
        cli.main(["logs"])
    assert info.value.code == 2


# ------------------------------------------------------------ run, no path

ENTRY = """
import os
import arkor_nb as ak

backend = ak.CloudBackend(base_url=os.environ["ARKOR_CLOUD_API_URL"], token="test-token",
                          org_slug="acme", project_slug="proj")
{body}
"""


def write_entry(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(ENTRY.format(body=textwrap.dedent(body)))
    return path


def trainer_src(name: str, callbacks: str = "None") -> str:
    return (f'ak.create_trainer(name="{name}", model=ak.SUPPORTED_MODELS[0], backend=backend, '
            f"callbacks={callbacks})")


def test_run_without_a_path_uses_pyproject_entry_then_trainer_py(cloud: FakeCloud, tmp_path: Path) -> None:
    write_entry(tmp_path / "trainer.py", f"trainer = {trainer_src('from-trainer-py')}")
    out = arkor(cloud, tmp_path, "run")
    assert out.returncode == 0, out.stderr
    assert cloud.jobs[out.stdout.split()[2]]["name"] == "from-trainer-py"
    write_entry(tmp_path / "src" / "train.py", f"trainer = {trainer_src('from-pyproject')}")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n\n[tool.arkor-nb]\n'
                                             'entry = "src/train.py"\n')
    out = arkor(cloud, tmp_path, "run")
    assert out.returncode == 0, out.stderr
    assert cloud.jobs[out.stdout.split()[2]]["name"] == "from-pyproject"


def test_run_without_an_entry_names_both_places(cloud: FakeCloud, tmp_path: Path) -> None:
    out = arkor(cloud, tmp_path, "run")
    assert out.returncode == 2
    assert "[tool.arkor-nb]" in out.stderr and "pyproject.toml" in out.stderr
    assert str(tmp_path / "trainer.py") in out.stderr
    (tmp_path / "pyproject.toml").write_text('[tool.arkor-nb]\nentry = "nope.py"\n')
    out = arkor(cloud, tmp_path, "run")
    assert out.returncode == 2 and "'nope.py'" in out.stderr and "is not a file" in out.stderr


def test_run_trainer_python_api_without_a_path(cloud: FakeCloud, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    import arkor_nb as ak

    monkeypatch.setenv("ARKOR_CLOUD_API_URL", cloud.url)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ak.ConfigError) as err:
        ak.run_trainer()
    assert "pyproject.toml" in str(err.value) and "trainer.py" in str(err.value)
    write_entry(tmp_path / "trainer.py", f"trainer = {trainer_src('api-default')}")
    result = ak.run_trainer(out=io.StringIO())
    assert result.job.status == "completed" and result.job.name == "api-default"


def test_a_raising_callback_under_run_prints_one_line_with_the_cancel_command(
        cloud: FakeCloud, tmp_path: Path) -> None:
    cloud.default_events = [started(), log(1, 0.5), log(2, 0.4), completed()]
    write_entry(tmp_path / "trainer.py", """
        def alert(ctx):
            raise RuntimeError(f"loss too high at step {ctx.step}")

        trainer = """ + trainer_src("cb", '{"on_log": alert}'))
    out = arkor(cloud, tmp_path, "run")
    assert out.returncode == 1
    job_id = out.stdout.split()[2]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "on_log (alert)" in lines[0] and "RuntimeError: loss too high at step 1" in lines[0]
    assert "keeps running" in lines[0]
    assert lines[0].endswith(f"arkor-nb cancel {job_id} --backend cloud")


def test_jobs_metric_column_shows_each_jobs_best_value_at_step(cloud: FakeCloud, tmp_path: Path) -> None:
    def evaluated(step: int, value: float) -> dict[str, object]:
        return {"type": "checkpoint.eval", "step": step, "metrics": {"fields/all": value}, "n": 60}

    cloud.add_job("job_a", [started(), checkpoint(10), evaluated(10, 0.4), checkpoint(20),
                            evaluated(20, 0.92), evaluated(30, 0.9), completed()],
                  status="completed", name="first")
    cloud.add_job("job_b", [started(), log(1, 2.0)], status="running", name="no-evals")
    out = arkor(cloud, tmp_path, "jobs", "--backend", "cloud", "--metric", "fields/all")
    assert out.returncode == 0, out.stderr
    head, *rows = out.stdout.splitlines()
    assert head.split()[-2:] == ["BEST", "FIELDS/ALL"]
    by_id = {r.split()[1]: r for r in rows}
    assert by_id["job_a"].endswith("0.92@20") and "@" not in by_id["job_b"]  # no eval: empty cell
    out = arkor(cloud, tmp_path, "jobs", "--backend", "cloud", "--metric", "fields/all", "--json")
    listed = {j["id"]: j for j in json.loads(out.stdout)}
    assert listed["job_a"]["bestMetric"] == {"name": "fields/all", "step": 20, "value": 0.92}
    assert listed["job_b"]["bestMetric"] is None
