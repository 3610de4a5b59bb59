"""Kernel restart while a run continues: a fresh process reattaches and sees everything.

Two real Python processes play the notebook kernel before and after the
restart. The first follows the run with ``ak.live`` and is SIGKILLed mid-run
(what "Restart kernel" does); the job keeps training on the local server. The
second calls ``ak.live(job_id=...)`` and must end up with the whole history,
from the first event, in its panel state and its saved record.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.reliability.harness import LocalServer, report, wait_for

KERNEL_1 = textwrap.dedent(
    """
    import sys, time
    import arkor_nb as ak
    url, token, out = sys.argv[1], sys.argv[2], sys.argv[3]
    trainer = ak.create_trainer(name="survives-restart", model="arkor-nb/synthetic",
                                max_steps=800, logging_steps=1,
                                backend=ak.LocalBackend(url=url, token=token))
    run = ak.live(trainer, display=False)
    seen = []
    trainer.subscribe(seen.append)
    while trainer.job_id is None or len(seen) < 100:
        time.sleep(0.01)
    open(out, "w").write(trainer.job_id)
    run.result()  # killed while blocked here, like a cell waiting on the run
    """
)

KERNEL_2 = textwrap.dedent(
    """
    import json, sys
    import arkor_nb as ak
    url, token, job_id, record = sys.argv[1:5]
    run = ak.live(job_id=job_id, backend=ak.LocalBackend(url=url, token=token), display=False)
    result = run.result(timeout=120)
    run.save(record)
    print(json.dumps({"status": result.job.status, "step": run.state.step,
                      "snapshot_has_svg": "<svg" in run.snapshot_html()}))
    """
)


def test_kernel_restart_then_live_job_id_shows_the_whole_history(tmp_path: Path) -> None:
    env = {"ARKOR_NB_SYNTHETIC_STEP_S": "0.003"}
    with LocalServer(tmp_path / "home", env=env) as srv:
        id_file = tmp_path / "job_id"
        child_env = {**os.environ, "PYTHONPATH": str(Path.cwd())}
        k1 = subprocess.Popen(
            [sys.executable, "-c", KERNEL_1, srv.url, srv.token, str(id_file)],
            env=child_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        job_id = wait_for(
            lambda: id_file.exists() and id_file.read_text(), 60, "kernel 1 to start the job"
        )
        k1.send_signal(signal.SIGKILL)  # the kernel dies; the job must not
        k1.wait(timeout=10)
        running = srv.job(job_id)["job"]["status"]
        record = tmp_path / "record.jsonl"
        k2 = subprocess.run(
            [sys.executable, "-c", KERNEL_2, srv.url, srv.token, job_id, str(record)],
            env=child_env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert k2.returncode == 0, k2.stdout + k2.stderr
        outcome = json.loads(k2.stdout.strip().splitlines()[-1])
        stored = srv.stored_events(job_id)
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    events = lines[1:]
    report(
        "kernel_restart_reattach",
        status_when_kernel_died=running,
        events_stored=len(stored),
        events_in_reattached_record=len(events),
        final_status=outcome["status"],
        panel_step=outcome["step"],
    )
    assert running == "running", "killing the kernel must not stop the job"
    assert outcome["status"] == "completed" and outcome["step"] == 800
    assert outcome["snapshot_has_svg"]
    assert lines[0]["type"] == "arkor.run" and lines[0]["jobId"] == job_id
    assert [int(e["id"]) for e in events] == [int(e["id"]) for e in stored]
    assert events[0]["type"] == "training.started"
    assert [e["step"] for e in events if e["type"] == "training.log"] == list(range(1, 801))
