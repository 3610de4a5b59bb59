"""A fresh Binder environment, built as repo2docker builds one (issue 19 point 12).

repo2docker reads ``binder/``: it copies the repository, makes a Python
environment at ``runtime.txt``'s version, runs ``pip install -r
binder/requirements.txt``, then ``binder/postBuild`` from the repository root.
``build_binder_env`` does the same in a folder of its own: a copy of the
repository (what a clone holds: no venv, caches or build outputs), a fresh venv
(nothing from the suite's venv), pip, postBuild. The notebooks then run in that
venv's kernel (``BinderEnv.kernel``), so a package the notebooks need and
``requirements.txt`` lacks fails them.

What differs from Binder, and why:

- The PyTorch CPU index (the ``--extra-index-url`` line) cannot be reached from
  this machine, whose pip is configured with find-links ``/opt/wheels`` (which
  holds the CPU torch wheel) and local package indexes (``pip config list``).
  So that line is dropped and ``torch==X+cpu`` becomes ``torch==X``: the same
  version, from the indexes this machine's pip is configured with.
- ``--no-compile``: no bytecode is written at install time (Python compiles
  what it imports on first use); this changes no installed file's content.
- pip's own cache is used (``PIP_CACHE_DIR``, else the user's ``~/.cache/pip``:
  the suite moves HOME to a temp dir), so a later build downloads nothing again.
- Binder's base environment already holds Jupyter; a bare venv holds nothing,
  so this is stricter: what the notebooks need must come from requirements.txt.

The environment has a HOME of its own and no ``ARKOR_NB_HOME``, as on Binder:
postBuild builds the built-in model in the user data dir
(``~/.local/share/arkor-nb``) and the notebooks' local backend finds it there;
the real model's GGUF file is dequantized there too, by the venv's own
``gguf`` (a models cache shared with the suite would hide a missing ``gguf``).
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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Bounds for each build step (a hung pip fails the build, never the suite's clock).
VENV_TIMEOUT_S = 120
PIP_TIMEOUT_S = 1200
POSTBUILD_TIMEOUT_S = 600
BUILD_TIMEOUT_S = VENV_TIMEOUT_S + PIP_TIMEOUT_S + POSTBUILD_TIMEOUT_S
# What a clone of the repository does not hold (.gitignore, plus .git and .hypothesis).
NOT_CLONED = {".git", ".venv", "venv", "__pycache__", ".pytest_cache", ".ruff_cache", "build",
              "dist", ".arkor", "test-artifacts", ".ipynb_checkpoints", ".mypy_cache",
              ".import_linter_cache", ".hypothesis"}


def binder_requirements(text: str) -> str:
    """binder/requirements.txt as this machine's pip can install it (see the module doc)."""
    lines = [re.sub(r"^torch==([^+;\s]+)\+cpu\b", r"torch==\1", line)
             for line in text.splitlines() if not line.startswith("--extra-index-url")]
    return "\n".join(lines) + "\n"


def pip_cache_dir() -> str:
    """pip's cache: $PIP_CACHE_DIR, else the real user's (the suite moves HOME)."""
    return os.environ.get("PIP_CACHE_DIR") or str(
        Path(pwd.getpwuid(os.getuid()).pw_dir) / ".cache" / "pip")


def _not_cloned(folder: str, names: list[str]) -> set[str]:
    top_level = Path(folder) == REPO
    return {n for n in names
            if n in NOT_CLONED or n.endswith(".egg-info") or (top_level and n == "demo")}


@dataclass
class BinderEnv:
    """A built Binder environment: the repository copy, its venv and its home."""

    root: Path
    timings: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)  # each build step's stdout

    @property
    def repo(self) -> Path:
        return self.root / "repo"

    @property
    def venv(self) -> Path:
        return self.root / "venv"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def user_home(self) -> Path:
        return self.root / "home"

    @property
    def home(self) -> Path:
        """arkor-nb's home: the user data dir platformdirs gives on Linux."""
        return self.user_home / ".local" / "share" / "arkor-nb"

    @property
    def jupyter_path(self) -> Path:
        return self.root / "jupyter"

    def env(self) -> dict[str, str]:
        """This process's environment with the venv active, nothing of the suite's on the
        module path (``python`` and ``pip`` are the venv's, arkor_nb is its install of the
        copy) and the environment's own HOME."""
        env = {k: v for k, v in os.environ.items() if k not in (
            "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "ARKOR_NB_HOME", "XDG_DATA_HOME")}
        env["PATH"] = os.pathsep.join([str(self.venv / "bin"), env.get("PATH", "")])
        env["VIRTUAL_ENV"] = str(self.venv)
        env["HOME"] = str(self.user_home)
        env["PIP_CACHE_DIR"] = pip_cache_dir()
        return env

    @contextmanager
    def kernel(self) -> Iterator[None]:
        """Inside, the kernel named ``python3`` is the venv's python.

        Jupyter looks kernelspecs up in ``$JUPYTER_PATH`` first, when a kernel
        is started, so ``execute_notebook`` (kernel ``python3``) runs here.
        """
        before = os.environ.get("JUPYTER_PATH")
        os.environ["JUPYTER_PATH"] = str(self.jupyter_path)
        try:
            yield
        finally:
            if before is None:
                os.environ.pop("JUPYTER_PATH", None)
            else:
                os.environ["JUPYTER_PATH"] = before

    def run(self, cmd: list[str], *, timeout: float, step: str) -> None:
        """Run one build step in the copy with the venv active; a failure names the step
        and ends with the end of its output."""
        began = time.monotonic()
        try:
            proc = subprocess.run(cmd, cwd=self.repo, env=self.env(), capture_output=True,
                                  text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"Binder build step {step!r} ran over {timeout:.0f} s: "
                                 f"{cmd}\n{exc.stdout!s:.3000}\n{exc.stderr!s:.3000}") from exc
        self.timings[f"{step}_s"] = round(time.monotonic() - began, 1)
        self.outputs[step] = proc.stdout
        if proc.returncode != 0:
            raise AssertionError(f"Binder build step {step!r} failed (exit {proc.returncode}): "
                                 f"{cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def build_binder_env(root: Path, source: Path = REPO) -> BinderEnv:
    """Copy ``source`` under ``root`` and build its Binder environment there."""
    env = BinderEnv(root)
    began = time.monotonic()
    shutil.copytree(source, env.repo, ignore=_not_cloned)
    env.user_home.mkdir()
    runtime = (env.repo / "binder" / "runtime.txt").read_text().strip()
    wanted = runtime.removeprefix("python-")
    assert f"{sys.version_info.major}.{sys.version_info.minor}" == wanted, (
        f"binder/runtime.txt asks for Python {wanted}; this test runs on "
        f"{sys.version_info.major}.{sys.version_info.minor}")
    env.run([sys.executable, "-m", "venv", str(env.venv)], timeout=VENV_TIMEOUT_S, step="venv")
    requirements = env.root / "requirements.txt"
    requirements.write_text(binder_requirements(
        (env.repo / "binder" / "requirements.txt").read_text()))
    env.run([str(env.python), "-m", "pip", "install", "-q", "--progress-bar", "off",
             "--no-compile", "-r", str(requirements)], timeout=PIP_TIMEOUT_S, step="pip_install")
    env.run(["bash", "binder/postBuild"], timeout=POSTBUILD_TIMEOUT_S, step="postbuild")
    kernels = env.jupyter_path / "kernels" / "python3"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [str(env.python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (Binder venv)", "language": "python"}))
    env.timings["build_s"] = round(time.monotonic() - began, 1)
    return env
