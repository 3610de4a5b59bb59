"""A start that does not grow with the data: time from the worker's spawn to its first step.

The worker process alone (stdio protocol, as the server spawns it), the
built-in tiny model, generated prompt/completion files of 320 (the triage
size), 100,000 and 1,000,000 rows; the lazy data path (the default for large
``.jsonl`` files) vs the eager one (``ARKOR_NB_LAZY_DATA=0``: every row read
and tokenised before step 1), interleaved. Per run: seconds from spawn to
``training.started`` and to the first ``training.log``, the worker's peak RSS
(``peakRssMb`` of ``training.started``). Then cancel during preparation:
``cancel`` sent as soon as the first ``training.phase`` arrives, seconds until
the process has exited with ``training.cancelled``. Also the server-side
check (``validate_config``, up to MAX_ROWS_CHECKED rows) of each file.

    python -m benchmarks.bench_start            # ~4 min (eager 1M capped by --eager-max)
    python -m benchmarks.bench_start --quick    # 100k only, lazy vs eager, ~1.5 min
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.bench_training import ENV, bench_home, tiny_model
from benchmarks.common import PY, REPO, log, median, save


def write_rows(path: Path, n: int) -> Path:
    """``n`` prompt/completion rows (about 100 bytes each), written in well under a second per 1M."""
    if not path.is_file():
        with open(path, "w") as fh:
            fh.writelines(f'{{"prompt": "ticket {i}: my card was declined at checkout", '
                          f'"completion": "category: billing\\npriority: high"}}\n' for i in range(n))
    return path


def _loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def start_run(data: Path, lazy: str, *, cancel_early: bool = False, steps: int = 3,
              timeout: float = 900) -> dict[str, Any]:
    home = bench_home()
    with tempfile.TemporaryDirectory() as tmp:
        spec = {"jobId": "job_start", "jobDir": tmp, "home": str(home), "config": {
            "model": "arkor-nb/tiny", "datasetSource": {"type": "file", "path": str(data)},
            "maxSteps": steps, "batchSize": 8, "loggingSteps": 1, "maxLength": 128}}
        env = {**os.environ, **ENV, "PYTHONPATH": str(REPO), "ARKOR_NB_LAZY_DATA": lazy}
        t0 = time.perf_counter()
        proc = subprocess.Popen([PY, "-m", "arkor_nb.local.training.worker"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                cwd=REPO, env=env)
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(spec) + "\n")
        proc.stdin.flush()
        out: dict[str, Any] = {"rows": None, "lazy": lazy}
        cancel_at = None
        for line in proc.stdout:
            event = json.loads(line)
            now = time.perf_counter() - t0
            kind = event["type"]
            if kind == "training.phase" and cancel_early and cancel_at is None:
                proc.stdin.write("cancel\n")
                proc.stdin.flush()
                cancel_at = now
            elif kind == "training.started":
                meta = event["metadata"]
                out.update(startedSeconds=round(now, 2), peakRssMbAtStart=meta.get("peakRssMb"),
                           rows=meta.get("trainRows"), lazyData=meta.get("lazyData"))
            elif kind == "training.log" and "firstStepSeconds" not in out:
                out["firstStepSeconds"] = round(now, 2)
            elif kind in ("training.completed", "training.failed", "training.cancelled"):
                out["end"] = kind
                if kind == "training.completed":
                    out["peakRssMb"] = event["metrics"].get("peakRssMb")
                break
        proc.stdin.close()
        proc.wait(timeout=timeout)
        if cancel_at is not None:
            out["cancelSeconds"] = round(time.perf_counter() - t0 - cancel_at, 2)
    return out


def server_check(data: Path) -> float:
    from arkor_nb.local.config import validate_config

    t0 = time.perf_counter()
    validate_config({"model": "arkor-nb/tiny", "datasetSource": {"type": "file", "path": str(data)}},
                    home=bench_home())
    return round(time.perf_counter() - t0, 2)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--eager-max", type=int, default=100_000,
                    help="largest file the eager path is timed on (it needs ~65 s per 100k rows)")
    a = ap.parse_args(argv)
    tiny_model(bench_home())
    sizes = (100_000,) if a.quick else (320, 100_000, 1_000_000)
    reps = 1 if a.quick else a.reps
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="arkor-bench-start-") as tmp:
        for n in sizes:
            data = write_rows(Path(tmp) / f"rows-{n}.jsonl", n)
            check = server_check(data)
            log(f"{n} rows: server-side check {check} s")
            for rep in range(reps):
                paths = ["auto", "0"] if n <= a.eager_max else ["auto"]
                for lazy in (paths if rep % 2 == 0 else paths[::-1]):
                    before = _loadavg()
                    r = {"fileRows": n, "rep": rep, "serverCheckSeconds": check,
                         **start_run(data, lazy), "loadavgBefore": before}
                    rows.append(r)
                    log(json.dumps(r))
            before = _loadavg()
            r = {"fileRows": n, "cancelEarly": True, **start_run(data, "auto", cancel_early=True),
                 "loadavgBefore": before}
            rows.append(r)
            log(json.dumps(r))
    summary = {}
    for n in sizes:
        for lazy in ("auto", "0"):
            runs = [r for r in rows if r["fileRows"] == n and r["lazy"] == lazy and not r.get("cancelEarly")]
            if runs:
                summary[f"{n}/{'lazy' if lazy == 'auto' else 'eager'}"] = {
                    "firstStepSeconds": median(r["firstStepSeconds"] for r in runs),
                    "peakRssMb": median(r["peakRssMb"] for r in runs),
                    "serverCheckSeconds": runs[0]["serverCheckSeconds"]}
        cancels = [r for r in rows if r["fileRows"] == n and r.get("cancelEarly")]
        summary[f"{n}/cancelInPreparation"] = {"seconds": cancels[0]["cancelSeconds"],
                                               "end": cancels[0]["end"]}
    out = {"summary": summary, "runs": rows, "loadavgAfter": _loadavg()}
    save("start", out)
    print(json.dumps(summary))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
