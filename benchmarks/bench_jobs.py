"""Listing 10,000 jobs: ``ak.jobs()`` against the real local server, next to its parts.

    python -m benchmarks.bench_jobs [--jobs 10000] [--reps 5]

A fresh home is seeded with N finished jobs (one SQLite transaction, the same
columns the server writes, a realistic config each), then a real server
(``python -m arkor_nb.local.server.serve``) answers. Measured interleaved, median of
``--reps``:

- ``sqlite``: ``Store.list_jobs(limit=N)`` in this process (the floor);
- ``raw http``: one ``GET /v1/jobs?limit=N`` with httpx + ``json.loads``;
- ``ak.jobs(limit=None)``: the SDK, paging by 1,000 with the ``before=``
  cursor, building N ``TrainingJob`` objects (redacted configs);
- ``ak.jobs()``: the default first page of 100;
- ``deep page``: ``GET /v1/jobs?limit=100&before=<the 9,900th newest>``;
- ``arkor-nb jobs --json``: the CLI as a subprocess (includes Python start-up).

Results go to ``benchmarks/results/jobs.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import PY, REPO, RESULTS, machine, median
from benchmarks.local_server import SCOPE, local_server

CONFIG = {"model": "arkor-nb/synthetic", "datasetSource": {"type": "file", "path": "/data/train.jsonl"},
          "maxSteps": 100, "loggingSteps": 5, "saveSteps": 50, "loraR": 16, "loraAlpha": 16,
          "learningRate": 0.0002}


def seed(home: Path, n: int) -> None:
    from arkor_nb.local.server.store import Store, utc_now

    store = Store(home / "arkor.db")
    now = utc_now()
    with store._write() as conn:  # noqa: SLF001 - one transaction for the fixture
        conn.executemany(
            "INSERT INTO jobs (id, name, status, config, created_at, started_at, completed_at, "
            "step, best_loss) VALUES (?, ?, 'completed', ?, ?, ?, ?, 100, ?)",
            [(f"job_{i:016x}", f"run-{i}", json.dumps(CONFIG), now, now, now, 1.0 + i / n)
             for i in range(n)],
        )
    store.close()


def timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args(argv)

    import arkor_nb as ak
    from arkor_nb.local.server.store import Store

    rows: dict[str, list[float]] = {}
    with local_server() as server:
        seed(server.home, a.jobs)
        store = Store(server.home / "arkor.db")
        backend = ak.LocalBackend(url=server.url, token=server.token)
        deep = store.list_jobs(limit=a.jobs - 100)[-1]["id"]
        env = {"ARKOR_NB_HOME": str(server.home), "ARKOR_NB_TOKEN": server.token,
               "PYTHONPATH": str(REPO)}
        import os

        cases = {
            "sqlite Store.list_jobs": lambda: store.list_jobs(limit=a.jobs),
            "raw http GET + json": lambda: json.loads(httpx.get(
                f"{server.url}/v1/jobs", params={**SCOPE, "limit": a.jobs}, headers=server.headers,
                timeout=60, trust_env=False).content),
            "ak.jobs(limit=None)": lambda: ak.jobs(limit=None, backend=backend),
            "ak.jobs() first 100": lambda: ak.jobs(backend=backend),
            "deep page (limit=100, before=)": lambda: httpx.get(
                f"{server.url}/v1/jobs", params={**SCOPE, "limit": 100, "before": deep},
                headers=server.headers, timeout=60, trust_env=False).raise_for_status(),
            "arkor-nb jobs --json --limit N": lambda: subprocess.run(
                [PY, "-m", "arkor_nb", "jobs", "--json", "--limit", str(a.jobs)],
                env={**os.environ, **env}, capture_output=True, check=True, timeout=120),
        }
        assert len(ak.jobs(limit=None, backend=backend)) == a.jobs
        for _ in range(a.reps):
            for name, fn in cases.items():
                rows.setdefault(name, []).append(timed(fn))
    result = {"jobs": a.jobs, "reps": a.reps, "machine": machine(),
              "median_s": {k: median(v) for k, v in rows.items()}, "runs_s": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "jobs.json").write_text(json.dumps(result, indent=2))
    for name, value in result["median_s"].items():
        print(f"{name:34s} {value * 1000:8.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
