"""Execute the shipped notebooks once per session, in a fresh Binder environment.

The ``binder`` fixture builds that environment once per session
(``binder_env.py``: a fresh venv, ``pip install -r binder/requirements.txt``,
``binder/postBuild``, from a copy of the repository); every notebook runs once,
in that venv's kernel (two at a time, each with its own HOME and local server),
and tests share the executed copies. So a package the
notebooks need and Binder's requirements lack fails the notebooks' tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

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


# Notebooks executed at once. Each gets a HOME of its own (a hard-linked copy of
# the built one, tiny model included), hence its own local server, so two
# notebooks' jobs train side by side instead of queueing on one server.
LANES = 2
# Longest first (seconds measured in a serial run), so the two lanes end together.
LONGEST_FIRST = ["real-model.ipynb", "sweep.ipynb", "programmatic-runs.ipynb",
                 "compare-runs.ipynb", "checkpoint-sampling.ipynb", "quickstart.ipynb",
                 "early-stopping.ipynb"]
# A server's state is not copied: each home starts its own server and job list.
SERVER_STATE = ("server.json", "*.lock", "token", "arkor.db*", "jobs", "server.log")
_RUN_ONE = """
import json, sys
from pathlib import Path
from arkor_nb.demo import execute_notebook
source, target, timeout, env = sys.argv[1:]
print(execute_notebook(Path(source), Path(target), timeout=int(timeout), env=json.loads(env)))
"""


@pytest.fixture(scope="session")
def executed(binder: BinderEnv) -> Iterator[Callable[[str], nbformat.NotebookNode]]:
    """``executed(name)`` is notebooks/<name> run top to bottom (once), in the Binder
    environment's kernel from its copy of the repository.

    The first call starts every notebook, ``LANES`` at a time, each in a fresh
    kernel with its own HOME; a call waits for its own. Each executed copy is
    saved under test-artifacts/notebooks/ for inspection.
    """
    homes: list[Path] = []

    def run(name: str) -> nbformat.NotebookNode:
        home = binder.root / f"home-{Path(name).stem}"
        shutil.copytree(binder.user_home, home, symlinks=True, copy_function=os.link,
                        ignore=shutil.ignore_patterns(*SERVER_STATE))
        homes.append(home)
        env = {**kernel_env(binder), "HOME": str(home)}
        target = ARTIFACTS / name
        # per cell; the real model's training cell also dequantizes its GGUF
        timeout = 800 if name == "real-model.ipynb" else 300
        runner = {**os.environ, "JUPYTER_PATH": str(binder.jupyter_path)}
        proc = subprocess.run([sys.executable, "-c", _RUN_ONE, str(binder.repo / "notebooks" / name),
                               str(target), str(timeout), json.dumps(env)],
                              env=runner, cwd=REPO, capture_output=True, text=True)
        if proc.returncode != 0:
            raise AssertionError(f"{name} did not run to the end:\n{proc.stdout[-3000:]}\n"
                                 f"{proc.stderr[-5000:]}")
        report("notebook::" + name, seconds=round(float(proc.stdout.split()[-1]), 1), lanes=LANES)
        return nbformat.read(target, as_version=4)

    assert sorted(LONGEST_FIRST) == EXECUTED, "list every executed notebook in LONGEST_FIRST"
    with ThreadPoolExecutor(LANES) as pool:
        futures = {name: pool.submit(run, name) for name in LONGEST_FIRST}
        try:
            yield lambda name: futures[name].result()
        finally:
            for future in futures.values():
                future.cancel()
    for home in homes:
        stop_local_server_started_since(None, home / ".local" / "share" / "arkor-nb")
