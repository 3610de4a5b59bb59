"""Execute the shipped notebooks once per session; tests share the executed copies."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import nbformat
import pytest

from arkor_nb.demo import execute_notebook
from arkor_nb.sdk.local_server import live_server
from tests.browser.lab import e2e_home, stop_local_server_started_since

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
ARTIFACTS = REPO / "test-artifacts" / "notebooks"
# The cloud notebook needs the Arkor cloud: test_cloud_notebook.py runs it unchanged
# against the loopback fake cloud instead of the local backend.
NOT_EXECUTED = {"arkor-cloud.ipynb"}
EXECUTED = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb") if p.name not in NOT_EXECUTED)


def kernel_env() -> dict[str, str]:
    """The kernels' environment: a backend home of their own, plus the repo's data folder.

    The local server only reads dataset files under its working directory, the
    user's home, its own home and the temp dir (plus ARKOR_NB_DATA_ROOTS). The
    suite moves HOME to a temp dir and a kernel started in notebooks/ starts the
    server there, so the shipped data/ folder is listed explicitly, as a user
    whose checkout lives outside their home would do.
    """
    env = dict(os.environ)
    env["ARKOR_NB_HOME"] = str(e2e_home())
    roots = [str(REPO / "data"), env.get("ARKOR_NB_DATA_ROOTS", "")]
    env["ARKOR_NB_DATA_ROOTS"] = os.pathsep.join(r for r in roots if r)
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    # real-model.ipynb's parameters: a short run (its full run takes ~12 min on 2 cores).
    env["ARKOR_NB_REAL_MODEL_STEPS"] = "4"
    env["ARKOR_NB_REAL_MODEL_TICKETS"] = "2"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


@pytest.fixture(scope="session")
def executed() -> Iterator[Callable[[str], nbformat.NotebookNode]]:
    """``executed(name)`` runs notebooks/<name> top to bottom (once) and returns the result.

    Each executed copy is saved under test-artifacts/notebooks/ for inspection.
    The local server a notebook kernel starts (detached, by design) is stopped
    at the end unless it was already running.
    """
    cache: dict[str, nbformat.NotebookNode] = {}
    home = e2e_home()
    before = live_server(home)

    def run(name: str) -> nbformat.NotebookNode:
        if name not in cache:
            target = ARTIFACTS / name
            # per cell; the real model's training cell may also dequantize its GGUF
            timeout = 800 if name == "real-model.ipynb" else 300
            execute_notebook(NOTEBOOKS / name, target, timeout=timeout, env=kernel_env())
            cache[name] = nbformat.read(target, as_version=4)
        return cache[name]

    yield run
    stop_local_server_started_since(before, home)
