"""Issue 19 point 10: trainer files a user gets wrong, and the TypeScript SDK's layout.

``arkor-nb run`` as a real subprocess against a real local server: a syntax
error is one line and exit 2; a ``trainer`` that is not a Trainer says what it
is; a file exporting two trainers says which one runs. ``run_trainer()`` with
no path finds ``src/arkor/index.py``, then ``src/arkor/trainer.py``, after
``[tool.arkor-nb] entry`` and ``./trainer.py``.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import arkor_nb as ak
from tests.reliability.harness import LocalServer, report

REPO = Path(__file__).resolve().parents[2]
_STATE: dict[str, LocalServer] = {}


@pytest.fixture(scope="module", autouse=True)
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    home = tmp_path_factory.mktemp("trainer-files") / "home"
    with LocalServer(home, env={"ARKOR_NB_SYNTHETIC_STEP_S": "0.001"}) as server:
        _STATE["srv"] = server
        yield server


def trainer_source(name: str, attr: str = "trainer") -> str:
    srv = _STATE["srv"]
    return (f"import arkor_nb as ak\n"
            f"{attr} = ak.create_trainer(name={name!r}, model='arkor-nb/synthetic', max_steps=3,\n"
            f"    backend=ak.LocalBackend(url={srv.url!r}, token={srv.token!r}))\n")


def run_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ARKOR_NB_HOME": str(_STATE["srv"].home), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "arkor_nb", "run", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=120)


def test_syntax_error_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "trainer.py"
    path.write_text("import arkor_nb as ak\ntrainer = ak.create_trainer(name='x',\n")
    proc = run_cli(tmp_path, str(path))
    err = proc.stderr.strip()
    assert proc.returncode == 2, (proc.returncode, err)
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert f"{path}:2" in err and "SyntaxError" in err, err
    (tmp_path / "indent.py").write_text("def f():\nreturn 1\n")
    proc = run_cli(tmp_path, "indent.py")
    assert proc.returncode == 2 and "IndentationError" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    report("test_trainer_files::syntax_error", exit=proc.returncode, stderr=err)


def test_an_export_that_is_not_a_trainer_says_what_it_is(tmp_path: Path) -> None:
    (tmp_path / "trainer.py").write_text('trainer = "not a trainer"\n')
    proc = run_cli(tmp_path)
    err = proc.stderr.strip()
    assert proc.returncode == 2, (proc.returncode, err)
    assert "`trainer` is a str ('not a trainer')" in err, err
    assert "ak.create_trainer(...)" in err and len(err.splitlines()) == 1, err
    (tmp_path / "trainer.py").write_text("x = 1\n")
    err = run_cli(tmp_path).stderr
    assert "none of arkor, trainer, default is defined" in err, err


def test_two_exports_say_which_one_runs(tmp_path: Path) -> None:
    (tmp_path / "both.py").write_text(trainer_source("picked", "trainer")
                                      + trainer_source("ignored", "default").split("\n", 1)[1])
    proc = run_cli(tmp_path, "both.py")
    assert proc.returncode == 0, (proc.returncode, proc.stderr)
    assert "exports `trainer` and `default`; running `trainer`" in proc.stderr, proc.stderr
    job_id = proc.stdout.split("Started job ", 1)[1].split()[0]
    assert _STATE["srv"].job(job_id)["job"]["name"] == "picked"
    report("test_trainer_files::two_exports", stderr=proc.stderr.strip())


@pytest.mark.parametrize("layout, expected", [
    ({"src/arkor/index.py": "index", "src/arkor/trainer.py": "ts-trainer"}, "index"),
    ({"src/arkor/trainer.py": "ts-trainer"}, "ts-trainer"),
    ({"trainer.py": "root", "src/arkor/index.py": "index"}, "root"),
    ({"custom.py": "custom", "src/arkor/index.py": "index", "pyproject.toml": ""}, "custom"),
])
def test_run_trainer_without_a_path_finds_the_ts_sdk_layout(
        layout: dict[str, str], expected: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    for rel, name in layout.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if rel == "pyproject.toml":
            path.write_text('[tool.arkor-nb]\nentry = "custom.py"\n')
        else:
            path.write_text(trainer_source(name))
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    result = ak.run_trainer(out=out)
    assert result.job.status == "completed", out.getvalue()
    assert result.job.name == expected
