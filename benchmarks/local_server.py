"""Start a throwaway arkor_nb local server for a benchmark, and stop it.

The server is the real one (``python -m arkor_nb.local.server.serve``) in its own
home directory; the environment lets a benchmark pick the synthetic
worker's pace (``ARKOR_NB_SYNTHETIC_STEP_S``).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import PY, REPO

SCOPE = {"orgSlug": "local", "projectSlug": "default"}


@dataclass
class Server:
    url: str
    token: str
    home: Path
    proc: subprocess.Popen[bytes]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def create_job(self, name: str, config: dict[str, Any]) -> str:
        r = httpx.post(f"{self.url}/v1/jobs", params=SCOPE, headers=self.headers,
                       json={"name": name, "config": config}, timeout=30, trust_env=False)
        r.raise_for_status()
        return str(r.json()["job"]["id"])

    def job(self, job_id: str) -> dict[str, Any]:
        r = httpx.get(f"{self.url}/v1/jobs/{job_id}", params=SCOPE, headers=self.headers,
                      timeout=30, trust_env=False)
        r.raise_for_status()
        return dict(r.json()["job"])

    def wait_terminal(self, job_id: str, timeout: float = 600) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if job["status"] in ("completed", "failed", "cancelled"):
                return job
            time.sleep(0.05)
        raise TimeoutError(f"job {job_id} not terminal after {timeout} s")


@contextmanager
def local_server(**env: str) -> Iterator[Server]:
    with tempfile.TemporaryDirectory(prefix="arkor-bench-home-") as tmp:
        home = Path(tmp)
        token = secrets.token_hex(16)
        child_env = {**os.environ, "ARKOR_NB_HOME": str(home), "PYTHONPATH": str(REPO), **env}
        log = open(home / "bench-server.log", "wb")
        proc = subprocess.Popen(
            [PY, "-m", "arkor_nb.local.server.serve", "--port", "0", "--home", str(home),
             "--token", token],
            env=child_env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            url = None
            while time.monotonic() < deadline:
                try:
                    url = json.loads((home / "server.json").read_text())["url"]
                    if httpx.get(url + "/healthz", timeout=2, trust_env=False).status_code == 200:
                        break
                except (OSError, ValueError, KeyError, httpx.HTTPError):
                    pass
                if proc.poll() is not None:
                    raise RuntimeError(f"server exited: {(home / 'bench-server.log').read_text()[-2000:]}")
                time.sleep(0.05)
            else:
                raise RuntimeError("local server did not become healthy in 60 s")
            assert url is not None
            yield Server(url=url, token=token, home=home, proc=proc)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            log.close()
