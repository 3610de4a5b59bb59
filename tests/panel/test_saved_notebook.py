"""What a run leaves in a saved notebook: executed by nbclient in a real kernel.

nbclient records every widget's state (closed ones too) and applies
``update_display`` from the streaming thread, like a saved Jupyter session
with widget state. The cell must end with the static snapshot (inline SVG +
the final loss), as the only output of the panel's cell, and the panel must
leave well under 100 kB behind.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest

from arkor_nb.demo import execute_notebook
from tests.local.server_harness import ServerProcess

REPO = Path(__file__).resolve().parents[2]
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


@pytest.mark.slow
def test_saved_notebook_keeps_snapshot_and_stays_small(server: ServerProcess, tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("import arkor_nb as ak"),
        nbformat.v4.new_code_cell(
            "import arkor_nb as ak\n"
            f"backend = ak.LocalBackend(url={server.url!r}, token={server.token!r})\n"
            "trainer = ak.create_trainer(name='saved-run', model='arkor-nb/synthetic', max_steps=150,\n"
            "                            logging_steps=1, eval_steps=50, save_steps=50, backend=backend)\n"
            "run = ak.live(trainer)"),
        nbformat.v4.new_code_cell("result = await run\nprint(result.job.status, run.state.loss)"),
    ]
    source = tmp_path / "saved.ipynb"
    nbformat.write(nb, source)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    target = tmp_path / "saved-out.ipynb"
    execute_notebook(source, target, timeout=120, env=env)

    saved = nbformat.read(target, as_version=4)
    status_line = saved.cells[2].outputs[0]["text"]
    assert status_line.startswith("completed ")
    final_loss = float(status_line.split()[1])
    outputs = saved.cells[1].outputs
    # one output: the live panel while it ran, replaced by the snapshot at the end
    # (from the streaming thread): no widget reference left, no stale text line
    assert len(outputs) == 1, outputs
    assert WIDGET_VIEW not in outputs[0]["data"]
    snapshot = outputs[0]["data"]["text/html"]
    assert "arkor-snapshot" in snapshot and "<svg" in snapshot and "<script" not in snapshot
    assert f"{final_loss:.4g}" in snapshot
    assert "arkor-badge-completed" in snapshot
    assert outputs[0]["data"]["text/plain"].startswith("[completed] step 150/150")

    state = saved.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    largest = max((len(json.dumps(s)) for s in state.values()), default=0)
    assert largest < 10_000  # the closed panel's widgets were emptied before closing
    panel_bytes = target.stat().st_size - len(json.dumps(nb))  # what running the cells added
    print(f"saved notebook: {panel_bytes} bytes added, widget state {len(json.dumps(state))}, "
          f"snapshot {len(snapshot)}, {len(state)} widget models")
    assert panel_bytes < 100_000, panel_bytes
