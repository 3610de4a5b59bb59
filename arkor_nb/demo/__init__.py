"""`make demo`: from a fresh clone to a fine-tuned model, a report and an executed notebook.

Why one script: a newcomer judges the toolkit by this single command. It uses
only the public API a user would (``create_trainer``, ``live``, the local
backend's inference route), prints where everything went, and writes a
report that opens offline. ``python -m arkor_nb.demo --help`` lists options.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from arkor_nb.core.home import home_dir
from arkor_nb.core.status import COMPLETED
from arkor_nb.core.taskeval import TaskEval
from arkor_nb.demo.report import ReportData, Sample, render_report
from arkor_nb.local.training.models import resolve_model
from arkor_nb.notebook import live
from arkor_nb.sdk.create import create_trainer
from arkor_nb.sdk.local_server import ensure_server

DATASET = Path("data/triage.jsonl")
EVAL_DATASET = Path("data/triage_eval.jsonl")
QUICKSTART = Path("notebooks/quickstart.ipynb")
RUN_NAME = "triage-demo"
MODEL = "arkor-nb/tiny"
# The tiny model needs a larger step than a pretrained one (measured on this data).
LEARNING_RATES = {MODEL: 3e-3}
REAL_MODEL_LR = 1e-3


def _say(text: str = "") -> None:
    print(text, flush=True)


def held_out_tickets(path: Path, count: int = 2) -> list[tuple[list[dict[str, str]], str]]:
    """The first ``count`` held-out conversations: (messages up to the last user turn, expected reply)."""
    tickets: list[tuple[list[dict[str, str]], str]] = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            messages = json.loads(line)["messages"]
            last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
            expected = next(
                (m["content"] for m in messages[last_user + 1 :] if m["role"] == "assistant"), ""
            )
            tickets.append((messages[: last_user + 1], expected))
            if len(tickets) == count:
                break
    return tickets


TRIAGE_FIELDS = ("category", "priority", "team")


def triage_fields(text: str) -> dict[str, str]:
    """``{"category": ..., "priority": ..., "team": ...}`` read from ``key: value`` lines."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip().lower()
        if sep and key in TRIAGE_FIELDS and key not in out:
            out[key] = value.strip().lower()
    return out


def score_fields(expected: str, reply: str) -> dict[str, bool]:
    """Per triage field: did the reply give the expected value?"""
    want, got = triage_fields(expected), triage_fields(reply)
    return {field: field in got and got[field] == want.get(field) for field in TRIAGE_FIELDS}


def fields_right(expected: str, reply: str) -> str:
    """How many ``key: value`` lines of the expected triage the reply got exactly right."""
    want = [line.strip() for line in expected.splitlines() if ":" in line]
    got = {line.strip() for line in reply.splitlines()}
    return f"{sum(line in got for line in want)}/{len(want)}"


class _Recorder:
    """Collects the curve from ``on_log`` callbacks (train and eval losses arrive separately)."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.eval_steps: list[int] = []
        self.eval_losses: list[float] = []
        self.learning_rates: list[float] = []

    def on_log(self, ctx: Any) -> None:
        if ctx.loss is not None:
            self.steps.append(ctx.step)
            self.losses.append(float(ctx.loss))
            if ctx.learning_rate is not None:
                self.learning_rates.append(float(ctx.learning_rate))
        if ctx.eval_loss is not None:
            self.eval_steps.append(ctx.step)
            self.eval_losses.append(float(ctx.eval_loss))


def say_eval(ctx: Any) -> None:
    """``on_eval``: one line per checkpoint with its held-out score (the worker's task eval)."""
    fields = ", ".join(f"{name[7:]} {value:.0%}" for name, value in sorted(ctx.metrics.items())
                       if name.startswith("fields/") and name != "fields/all")
    _say(f"  held-out  step {ctx.step}: all fields right {ctx.metrics.get('fields/all', 0.0):.0%} "
         f"of {ctx.n} tickets ({fields})")


def _chat(url: str, token: str, model: str, messages: list[dict[str, str]]) -> str:
    """One greedy completion from the local backend's OpenAI-compatible endpoint."""
    import httpx

    response = httpx.post(
        f"{url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {token}"},
        json={"model": model, "messages": messages, "temperature": 0, "max_tokens": 40},
        timeout=120,
    )
    response.raise_for_status()
    return str(response.json()["choices"][0]["message"]["content"]).strip()


def execute_notebook(
    source: Path, target: Path, timeout: int = 600, env: dict[str, str] | None = None
) -> float:
    """Run a notebook top to bottom in a fresh kernel (cwd = its folder) and save it.

    ``env`` is the kernel's whole environment (default: this process's).
    """
    import nbformat
    from nbclient import NotebookClient

    started = time.monotonic()
    nb = nbformat.read(source, as_version=4)
    NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(source.parent.resolve())}},
    ).execute(
        env=dict(os.environ) if env is None else env,
        # The kernel's own stderr is only transport warnings; cell errors still raise.
        stderr=subprocess.DEVNULL,
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, target)
    return time.monotonic() - started


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m arkor_nb.demo", description=__doc__)
    parser.add_argument("--steps", type=int, default=120, help="training steps (default 120)")
    parser.add_argument(
        "--model", default=MODEL,
        help=f"model to fine-tune (default {MODEL}; e.g. arkor-nb/smollm2-135m-instruct)",
    )
    parser.add_argument("--out", type=Path, default=Path("demo"), help="output folder")
    parser.add_argument(
        "--no-notebook", action="store_true", help="skip executing notebooks/quickstart.ipynb"
    )
    parser.add_argument(
        "--prepare-only",
        action="store_true",
        help="only build the built-in tiny model (used by binder/postBuild)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # The local backend reads dataset files only under allowed folders; list this
    # checkout's data/ so the demo works wherever the clone lives.
    roots = [str(DATASET.parent.resolve()), os.environ.get("ARKOR_NB_DATA_ROOTS", "")]
    os.environ["ARKOR_NB_DATA_ROOTS"] = os.pathsep.join(r for r in roots if r)
    began = time.monotonic()

    if args.prepare_only:
        # resolve_model imports torch only now, after OMP_WAIT_POLICY is set
        _say(f"built-in model ready at {resolve_model(args.model, home_dir())}")
        return 0

    for path in (DATASET, EVAL_DATASET):
        if not path.is_file():
            _say(f"error: {path} not found. Run `make demo` from the repository root.")
            return 2

    model = args.model
    _say(f"arkor-nb demo: fine-tune {model} on support-ticket triage, on this CPU")
    server = ensure_server()
    _say(f"  backend   local server {server.url} (pid {server.pid}), data in {home_dir()}")

    recorder = _Recorder()
    trainer = create_trainer(
        name=RUN_NAME,
        model=model,
        dataset={
            "type": "file",
            "path": str(DATASET.resolve()),
            "eval_path": str(EVAL_DATASET.resolve()),
        },
        lora={"r": 16, "alpha": 32},
        max_steps=args.steps,
        learning_rate=LEARNING_RATES.get(model, REAL_MODEL_LR),
        batch_size=8,
        logging_steps=1,
        eval_steps=max(1, args.steps // 4),
        save_steps=max(1, args.steps // 2),
        callbacks={"on_log": recorder.on_log, "on_eval": say_eval},
        backend="local",
        # scored by the worker after each checkpoint and at the end, model in memory
        task_eval=TaskEval(data=EVAL_DATASET, scorers=["fields"], max_tokens=24),
    )
    first = "builds the model, ~20 s" if model == MODEL else "prepares the model"
    _say(f"  training  {model}, {args.steps} steps (first run also {first})")
    train_began = time.monotonic()
    run = live(trainer)
    result = run.result()
    train_s = time.monotonic() - train_began
    status = result.job.status
    _say(f"  finished  job {result.job.id}: {status} in {train_s:.1f} s")
    if status != COMPLETED:
        _say(f"error: the run ended {status}: {result.job.error or 'see the log above'}")
        return 1

    samples: list[Sample] = []
    _say("  sampling  two held-out tickets, base model vs fine-tuned adapter")
    for messages, expected in held_out_tickets(EVAL_DATASET):
        base = _chat(server.url, server.token, model, messages)
        tuned = _chat(server.url, server.token, f"job:{result.job.id}", messages)
        score = fields_right(expected, tuned)
        samples.append(
            Sample(
                messages[-1]["content"],
                expected,
                {"base model": base, "fine-tuned": tuned, "fields right": score},
            )
        )
        _say(f"    ticket      {messages[-1]['content'][:80]}")
        _say(f"    expected    {' | '.join(expected.splitlines())}")
        _say(f"    base model  {' | '.join(base.splitlines())[:80]}")
        _say(f"    fine-tuned  {' | '.join(tuned.splitlines())[:80]}   ({score} fields right)")

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    run.save(out / "run.jsonl")
    notebook_target = out / QUICKSTART.name
    links = {"run record (every event, JSONL)": "run.jsonl"}
    if not args.no_notebook:
        links["executed quickstart notebook"] = notebook_target.name
    report = out / "report.html"
    report.write_text(
        render_report(
            ReportData(
                name=RUN_NAME,
                job_id=result.job.id,
                status=status,
                model=model,
                dataset=str(DATASET),
                steps=recorder.steps,
                losses=recorder.losses,
                eval_steps=recorder.eval_steps,
                eval_losses=recorder.eval_losses,
                learning_rates=recorder.learning_rates,
                duration_s=train_s,
                config=trainer.config,
                samples=samples,
                links=links,
                metrics={name: [(int(x), y) for x, y in zip(xs, ys, strict=True)]
                         for name, (xs, ys) in run.state.evals.curves().items()},
            )
        ),
        encoding="utf-8",
    )
    if not args.no_notebook:
        _say(f"  notebook  executing {QUICKSTART} in a fresh kernel ...")
        nb_s = execute_notebook(QUICKSTART, notebook_target)
        _say(f"            done in {nb_s:.1f} s")
    _say()
    _say(f"Done in {time.monotonic() - began:.0f} s. Everything is under {out.resolve()}:")
    _say(f"  report    {report.resolve()}   (open in a browser; works offline)")
    if not args.no_notebook:
        _say(f"  notebook  {notebook_target.resolve()}")
    _say(f"  record    {(out / 'run.jsonl').resolve()}   (ak.replay('{out / 'run.jsonl'}'))")
    _say(f"  adapter   job {result.job.id} on the local backend ({home_dir()})")
    _say(
        f"The local backend keeps running in the background (pid {server.pid}) so notebooks "
        f"reuse it and its jobs; stop it with `kill {server.pid}`."
    )
    _say("Next: `make lab` opens JupyterLab on notebooks/ (start with quickstart.ipynb).")
    return 0

