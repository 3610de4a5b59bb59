"""ak.sweep on optuna (issue 18.5) with real local training of the tiny model.

Each trial's metric is reported at each checkpoint; the median pruner stops a
trial whose value is below the completed trial's at the same step, and that
job is cancelled ON THE BACKEND (the server says "cancelled") while it still
had steps left. The sweep's best is the best completed trial.
"""

from __future__ import annotations

import io
import json
from typing import Any

import httpx
import optuna
import pytest

import arkor_nb as ak
from arkor_nb.notebook.sweep_view import SweepText
from arkor_nb.sdk.sweep import run_sweep
from tests.local.server_harness import ServerProcess
from tests.local.training_helpers import EVAL, TRAIN

HELD_OUT = [json.loads(line) for line in EVAL.read_text().splitlines()[:4]]
LONG = 400  # steps the pruned trial would run if nobody stopped it


def test_pruned_trial_is_cancelled_on_the_backend_and_best_is_returned(
        server: ServerProcess, backend: ak.LocalBackend) -> None:
    study = optuna.create_study(direction="maximize",
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0))
    for quality, steps in ((0.6, 6), (0.1, LONG), (0.9, 6)):
        study.enqueue_trial({"quality": quality, "steps": steps})

    def build(trial: optuna.Trial) -> ak.Trainer:
        quality = trial.suggest_float("quality", 0.0, 1.0)
        steps = trial.suggest_int("steps", 1, LONG)

        def on_eval(ctx: ak.EvalContext) -> None:
            assert "exact" in ctx.metrics  # driven by the checkpoint.eval events
            ctx.report(score=quality + ctx.step / 1000)

        return ak.create_trainer(
            name=f"trial-{trial.number}", model="arkor-nb/tiny", backend=backend,
            dataset={"type": "file", "path": str(TRAIN)}, max_steps=steps, save_steps=3,
            logging_steps=3, callbacks={"on_eval": on_eval},
            task_eval=ak.TaskEval(data=HELD_OUT, scorers=["exact"], max_tokens=4))

    out = io.StringIO()
    sweep = run_sweep(build, n_trials=3, metric="score", study=study, watch=SweepText("score", "max", out))
    assert sweep.study is study
    assert [j.state for j in sweep.jobs] == ["completed", "pruned", "completed"]
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
                      optuna.trial.TrialState.COMPLETE]

    pruned = sweep.jobs[1]
    assert pruned.pruned_at == 3
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.token}"}) as http:
        job = http.get(f"/v1/jobs/{pruned.job_id}").json()["job"]
    assert job["status"] == "cancelled"  # the backend stopped it, not just the client
    assert pruned.result is not None and pruned.result.job.status == "cancelled"
    assert max(s for s, _ in pruned.result.metrics["score"]) < LONG

    best = sweep.best
    assert best is not None
    assert best.params == {"quality": 0.9, "steps": 6} and best.job_id == sweep.jobs[2].job_id
    assert (best.step, best.value) == (6, pytest.approx(0.906))
    assert study.best_trial.number == 2 and study.best_value == pytest.approx(0.906)
    assert study.best_trial.user_attrs["job_id"] == best.job_id
    text = out.getvalue()
    assert "trial 1 pruned at step 3" in text and "trial 2 completed: best score=0.9060 at step 6" in text


def test_sweep_refuses_bad_arguments_naming_them(backend: ak.LocalBackend) -> None:
    def build(trial: Any) -> Any:
        return "not a trainer"

    with pytest.raises(ak.ConfigError, match="^n_trials"):
        ak.sweep(build, 0, "score", display=False)
    with pytest.raises(ak.ConfigError, match="^mode"):
        ak.sweep(build, 1, "score", mode="best", display=False)
    with pytest.raises(ak.ConfigError, match="^parallel"):
        ak.sweep(build, 1, "score", parallel=99, display=False)
    with pytest.raises(ak.ConfigError, match="^pruner"):
        ak.sweep(build, 1, "score", pruner=optuna.pruners.MedianPruner(),
                 study=optuna.create_study(direction="maximize"), display=False)
    with pytest.raises(ak.ConfigError, match="^build: must return a Trainer"):
        ak.sweep(build, 1, "score", display=False)
