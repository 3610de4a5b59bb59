"""Issue 14, client side: a cancelled run reports what it saved, and on_cancelled fires once.

Real local server (synthetic worker, 10 ms steps, a checkpoint every 2 steps).
"""

from __future__ import annotations

import threading

import arkor_nb as ak
from tests.local.server_harness import ServerProcess


def test_cancelled_run_lists_its_checkpoints_and_fires_on_cancelled_once(server: ServerProcess) -> None:
    cancelled: list[ak.CancelledContext] = []
    failed: list[object] = []
    saved = threading.Event()

    def on_checkpoint(ctx: ak.CheckpointContext) -> None:
        if ctx.step >= 6:
            saved.set()

    trainer = ak.create_trainer(
        name="cancel-me", model="arkor-nb/synthetic", max_steps=100_000, logging_steps=1,
        save_steps=2, backend=ak.LocalBackend(url=server.url, token=server.token),
        callbacks={"on_checkpoint": on_checkpoint, "on_cancelled": cancelled.append,
                   "on_failed": failed.append},
    )
    trainer.start()
    out: dict[str, ak.TrainingResult] = {}
    thread = threading.Thread(target=lambda: out.setdefault("result", trainer.wait()), daemon=True)
    thread.start()
    assert saved.wait(60), "no checkpoint at step 6"
    trainer.cancel()
    thread.join(60)
    result = out["result"]
    assert result.job.status == "cancelled" and failed == []
    steps = [a["step"] for a in result.artifacts if a.get("kind") == "checkpoint"]
    assert steps[:3] == [2, 4, 6] and steps == sorted(steps)
    assert all(a.get("url", "").startswith(f"/v1/jobs/{trainer.job_id}/artifacts/") for a in result.artifacts)
    assert len(cancelled) == 1
    assert cancelled[0].artifacts == result.artifacts and cancelled[0].job.status == "cancelled"
    assert cancelled[0].step is not None and cancelled[0].step >= 6

    # attaching afterwards replays the log: the same answer, and on_cancelled once more for it
    again: list[ak.CancelledContext] = []
    replayed = ak.Trainer.attach(trainer.job_id, backend=trainer.backend,
                                 callbacks={"on_cancelled": again.append}).wait()
    assert replayed.artifacts == result.artifacts and len(again) == 1
