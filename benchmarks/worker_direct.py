"""Training overhead, split: the worker process alone (stdio protocol, no
server, no client) vs plain transformers, interleaved, tiny model.

Separates the worker's own cost (callback, protocol lines) from what the
server and the streaming client take from a 2-core machine.

    python -m benchmarks.worker_direct
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from typing import Any

from benchmarks.bench_training import DATA, ENV, MAX_LENGTH, bench_home, plain_run, tiny_model
from benchmarks.common import PY, REPO, median, save

STEPS = 100


def direct(model: str) -> dict[str, Any]:
    home = bench_home()
    with tempfile.TemporaryDirectory() as tmp:
        spec = {"jobId": "job_direct", "jobDir": tmp, "home": str(home), "config": {
            "model": model, "datasetSource": {"type": "file", "path": str(DATA)},
            "maxSteps": STEPS, "batchSize": 8, "learningRate": 2e-4, "loggingSteps": 1,
            "loraR": 16, "loraAlpha": 16, "maxLength": MAX_LENGTH}}
        proc = subprocess.Popen([PY, "-m", "arkor_nb.local.training.worker"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                cwd=REPO, env={**os.environ, **ENV, "PYTHONPATH": str(REPO)})
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(spec) + "\n")
        proc.stdin.flush()
        for line in proc.stdout:
            event = json.loads(line)
            if event["type"] in ("training.completed", "training.failed", "training.cancelled"):
                proc.stdin.close()
                proc.wait()
                if event["type"] != "training.completed":
                    raise RuntimeError(str(event))
                return dict(event["metrics"])
    raise RuntimeError("the worker ended without a terminal event")


def main() -> None:
    model = tiny_model(bench_home())
    pairs = []
    for _ in range(3):
        w = direct(model)
        p = plain_run(model, STEPS)
        pairs.append({"worker_s": w["trainSeconds"], "plain_s": p["trainSeconds"],
                      "ratio": p["trainSeconds"] / w["trainSeconds"]})
        print(json.dumps(pairs[-1]), file=sys.stderr)
    out = {"steps": STEPS, "pairs": pairs, "ratio_median": median(x["ratio"] for x in pairs)}
    save("worker-direct", out)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
