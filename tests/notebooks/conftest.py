"""Execute the shipped notebooks once per session, in a fresh Binder environment.

The ``binder`` fixture builds that environment once per session
(``binder_env.py``: a fresh venv, ``pip install -r binder/requirements.txt``,
``binder/postBuild``, from a copy of the repository); every notebook runs once,
in that venv's kernel, and tests share the executed copies. So a package the
notebooks need and Binder's requirements lack fails the notebooks' tests.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import nbformat
import pytest

from arkor_nb.demo import execute_notebook
from tests.browser.lab import stop_local_server_started_since
from tests.notebooks.binder_env import BinderEnv, build_binder_env
from tests.reliability.harness import report

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
ARTIFACTS = REPO / "test-artifacts" / "notebooks"
# The cloud notebook needs the Arkor cloud: test_cloud_notebook.py runs it unchanged
# against the loopback fake cloud instead of the local backend.
NOT_EXECUTED = {"arkor-cloud.ipynb"}
EXECUTED = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb") if p.name not in NOT_EXECUTED)


def kernel_env(binder: BinderEnv) -> dict[str, str]:
    """The kernels' environment: the Binder venv and HOME, the copy's data folder.

    The venv is active and nothing of the suite's is on the module path, so
    arkor_nb is the venv's install of the repository copy, and its local
    backend lives in the user data dir where postBuild built the model. The
    local server only reads dataset files under its working directory, the
    user's home, its own home and the temp dir (plus ARKOR_NB_DATA_ROOTS); the
    copy's data/ folder is listed explicitly, as a user whose checkout lives
    outside their home would do.
    """
    env = binder.env()
    env.pop("PIP_CACHE_DIR")
    roots = [str(binder.repo / "data"), env.get("ARKOR_NB_DATA_ROOTS", "")]
    env["ARKOR_NB_DATA_ROOTS"] = os.pathsep.join(r for r in roots if r)
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    # real-model.ipynb's parameters: a short run (its full run takes ~12 min on 2 cores).
    env["ARKOR_NB_REAL_MODEL_STEPS"] = "4"
    env["ARKOR_NB_REAL_MODEL_TICKETS"] = "2"
    return env


@pytest.fixture(scope="session")
def binder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BinderEnv]:
    """The Binder environment, built once per session; its venv is deleted at the end.

    The local server its kernels start (detached, by design) is stopped too.
    """
    env = build_binder_env(tmp_path_factory.mktemp("binder"))
    with open("/proc/loadavg") as fh:
        load = fh.read().split()[:3]
    report("binder_env::build", **env.timings, loadavg=load)
    yield env
    stop_local_server_started_since(None, env.home)
    shutil.rmtree(env.venv, ignore_errors=True)


@pytest.fixture(scope="session")
def executed(binder: BinderEnv) -> Callable[[str], nbformat.NotebookNode]:
    """``executed(name)`` runs notebooks/<name> top to bottom (once), in the Binder
    environment's kernel from its copy of the repository, and returns the result.

    Each executed copy is saved under test-artifacts/notebooks/ for inspection.
    """
    cache: dict[str, nbformat.NotebookNode] = {}

    def run(name: str) -> nbformat.NotebookNode:
        if name not in cache:
            target = ARTIFACTS / name
            # per cell; the real model's training cell also dequantizes its GGUF
            timeout = 800 if name == "real-model.ipynb" else 300
            with binder.kernel():
                execute_notebook(binder.repo / "notebooks" / name, target, timeout=timeout,
                                 env=kernel_env(binder))
            cache[name] = nbformat.read(target, as_version=4)
        return cache[name]

    return run
