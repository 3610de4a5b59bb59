"""Runs one display against one synthetic stream in a fresh real ipykernel.

A generated notebook is executed by nbclient (the same machinery that runs
notebooks in CI): cell 1 installs the meter, cell 2 runs the display's
``setup`` (metered separately: imports and first render), cell 3 replays the
stream through ``on_event`` and calls ``finish`` inside the metered window.
The kernel writes its figures to a JSON file; the harness adds what the
display leaves in the saved notebook (outputs + widget state).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

from benchmarks.peers import Display

REPO = Path(__file__).resolve().parent.parent

_METER_CELL = """\
import sys, time, json
from benchmarks.kernel_meter import meter
_m = meter()
"""

_SETUP_CELL = """\
_m.start()
setup({n})
_m.stop()
_m.dump({setup_path!r})
"""

_LOOP_CELL = """\
from benchmarks.events import {events}_events as _gen_fn
_gen = _gen_fn({n}, {seed})
_pace = {pace}
_done = 0
_truncated = False
_m.start()
_deadline = time.perf_counter() + {cap}
for _ev in _gen:
    on_event(_ev)
    _done += 1
    if _pace:
        time.sleep(_pace)
    if time.perf_counter() > _deadline:
        _truncated = _done < {n}
        break
_t_loop = time.perf_counter() - _m.wall0
finish()
_m.stop()
_m.dump({loop_path!r}, done=_done, truncated=_truncated, loop_wall_s=_t_loop)
"""


_DRIVE_CELL = """\
_m.start()
drive({n})
_t_loop = time.perf_counter() - _m.wall0
finish()
_m.stop()
_m.dump({loop_path!r}, done={n}, truncated=False, loop_wall_s=_t_loop)
"""


def build_notebook(display: Display, n: int, pace: float, cap: float, seed: int,
                   setup_path: str, loop_path: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell(_METER_CELL),
        nbformat.v4.new_code_cell(display.code),
        nbformat.v4.new_code_cell(_SETUP_CELL.format(n=n, setup_path=setup_path)),
        nbformat.v4.new_code_cell(
            _DRIVE_CELL.format(n=n, loop_path=loop_path) if display.events == "none" else
            _LOOP_CELL.format(events=display.events, n=n, seed=seed, pace=pace, cap=cap,
                              loop_path=loop_path)
        ),
    ]
    return nb


def run_display(display: Display, n: int, *, pace: float = 0.0, cap: float = 60.0,
                seed: int = 0, keep_dir: Path | None = None) -> dict[str, Any]:
    """Execute one measurement; returns the kernel's figures plus notebook sizes."""
    with tempfile.TemporaryDirectory(prefix="arkor-bench-") as tmp:
        setup_path = os.path.join(tmp, "setup.json")
        loop_path = os.path.join(tmp, "loop.json")
        nb = build_notebook(display, n, pace, cap, seed, setup_path, loop_path)
        blank_bytes = len(nbformat.writes(nb).encode())
        client = NotebookClient(
            nb,
            timeout=max(600, int(cap * 4 + n * pace * 2 + 120)),
            kernel_name="python3",
            resources={"metadata": {"path": str(REPO)}},
            store_widget_state=True,
        )
        t0 = time.perf_counter()
        error = None
        try:
            client.execute()
        except Exception as exc:  # noqa: BLE001 - reported in the row, never hidden
            error = f"{type(exc).__name__}: {str(exc)[-400:]}"
        total_wall = time.perf_counter() - t0
        saved = nbformat.writes(nb).encode()
        widgets = nb.metadata.get("widgets", {})
        out: dict[str, Any] = {
            "display": display.key,
            "n": n,
            "pace_s": pace,
            "seed": seed,
            "error": error,
            "harness_wall_s": total_wall,
            "notebook_added_bytes": len(saved) - blank_bytes,
            "widget_state_bytes": len(json.dumps(widgets).encode()) if widgets else 0,
        }
        for name, path in (("setup", setup_path), ("loop", loop_path)):
            if os.path.exists(path):
                with open(path) as f:
                    out[name] = json.load(f)
        if keep_dir is not None:
            keep_dir.mkdir(parents=True, exist_ok=True)
            (keep_dir / f"{display.key}-{n}-{pace}.ipynb").write_bytes(saved)
        if error is None and "loop" not in out:
            out["error"] = "kernel wrote no figures"
        return out
