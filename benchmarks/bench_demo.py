"""Measurement 6: demo time (``make demo`` = ``python -m arkor_nb.demo``).

Runs the demo module exactly as ``make demo`` does after its install stamp
(the pip part with a warm cache is a no-op check), twice in a fresh
``ARKOR_NB_HOME``: cold (first run builds and pretrains the built-in tiny
model) and warm (model cached). Reports total wall time and the training
part the demo prints ("finished job ... in X s"). The server the demo
starts is stopped afterwards.

    python -m benchmarks.bench_demo --full
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import PY, REPO, log, mode_parser, save


def demo_once(home: Path, out: Path, *, notebook: bool) -> dict[str, Any]:
    env = {**os.environ, "ARKOR_NB_HOME": str(home), "PYTHONPATH": str(REPO),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [PY, "-m", "arkor_nb.demo", "--out", str(out)] + ([] if notebook else ["--no-notebook"])
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - t0
    text = proc.stdout + proc.stderr
    m = re.search(r"finished\s+job \S+: (\w+) in ([0-9.]+) s", text)
    nb = re.search(r"done in ([0-9.]+) s", text)
    return {"rc": proc.returncode, "wall_s": wall, "status": m.group(1) if m else None,
            "train_s": float(m.group(2)) if m else None,
            "notebook_s": float(nb.group(1)) if nb else None,
            "tail": text[-1500:] if proc.returncode else ""}


def stop_server(home: Path) -> None:
    try:
        pid = json.loads((home / "server.json").read_text())["pid"]
        os.kill(int(pid), signal.SIGTERM)
    except (OSError, ValueError, KeyError):
        pass


def run(mode: str) -> dict[str, Any]:
    out: dict[str, Any] = {"mode": mode}
    with tempfile.TemporaryDirectory(prefix="arkor-bench-demo-") as tmp:
        home = Path(tmp) / "home"
        try:
            for label in ("cold", "warm"):
                log(f"demo: {label} run")
                out[label] = demo_once(home, Path(tmp) / f"out-{label}", notebook=True)
                log(f"demo: {label} {out[label]['wall_s']:.1f} s (training {out[label]['train_s']})")
        finally:
            stop_server(home)
    save(f"demo-{mode}", out)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = mode_parser(__doc__)
    a = ap.parse_args(argv)
    print(json.dumps(run(a.mode or "full"), indent=1, default=str))


if __name__ == "__main__":
    main()
