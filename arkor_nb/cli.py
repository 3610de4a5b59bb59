"""The ``arkor-nb`` command: run a trainer, manage jobs, serve the local backend.

Commands: ``run [PATH]``, ``jobs [--metric NAME]``, ``logs JOB [-f]``, ``cancel JOB``,
``download JOB``, ``chat JOB PROMPT``, ``serve``, ``join URL --job ID`` (lend
this host to a multi-node job); every job command takes
``--backend local|cloud``. Exit codes are the same for every command:

- 0: success (``run``/``logs -f``: the job completed)
- 1: the job failed or was cancelled, or the run could not finish (a callback
  raised, the backend could not be reached)
- 2: usage or input error (bad option, unknown job id, missing entry file)
- 130: interrupted (Ctrl-C); the job keeps running, the exact cancel command is printed
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from arkor_nb.core.contexts import StreamNotice
from arkor_nb.core.errors import ArkorError, ConfigError
from arkor_nb.core.events import (
    CheckpointSaved,
    TrainingCancelled,
    TrainingCompleted,
    TrainingFailed,
    TrainingLog,
    TrainingStarted,
)
from arkor_nb.core.format import best_cell, cancel_hint, jobs_text
from arkor_nb.core.format import event_line as format_event
from arkor_nb.core.status import COMPLETED, JOB_STATUSES
from arkor_nb.core.version import __version__
from arkor_nb.local.server.join import join_main
from arkor_nb.local.server.launch import serve_main
from arkor_nb.sdk import chat as chat_api
from arkor_nb.sdk import jobs as jobs_api
from arkor_nb.sdk.runner import default_entry, load_trainer, run_loaded
from arkor_nb.sdk.trainer import Trainer

EXIT_OK, EXIT_JOB_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
CALLBACK_NAMES = ("on_started", "on_log", "on_checkpoint", "on_completed", "on_failed", "on_cancelled")

EPILOG = """exit codes: 0 success; 1 job failed or cancelled (or the run could not finish);
2 usage or input error; 130 interrupted (the job keeps running)"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="arkor-nb", description="Interactive fine-tuning.",
                                     epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"arkor-nb {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text, epilog=EPILOG)

    def with_backend(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--backend", choices=("local", "cloud"), default="local",
                       help="where the job lives (default: local)")
        return p

    run = command("run", "run the trainer a Python file exports, to the end")
    run.add_argument("path", nargs="?", default=None,
                     help="module exporting `arkor`, `trainer` or `default` (default: "
                          "[tool.arkor-nb] entry in pyproject.toml, else trainer.py, "
                          "src/arkor/index.py or src/arkor/trainer.py)")
    jobs = with_backend(command("jobs", "list jobs, newest first"))
    jobs.add_argument("--status", choices=JOB_STATUSES)
    jobs.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    jobs.add_argument("--json", action="store_true", help="print a JSON array (wire form)")
    jobs.add_argument("--metric", metavar="NAME", default=None,
                      help="add a column with each job's best NAME (e.g. fields/all) as value@step, "
                           "from its checkpoint.eval events")
    logs = with_backend(command("logs", "print a job's recorded events as text progress"))
    logs.add_argument("job", help="job id")
    logs.add_argument("-f", "--follow", action="store_true",
                      help="keep following until the job ends; exit code by its final status")
    cancel = with_backend(command("cancel", "ask the backend to stop a job"))
    cancel.add_argument("job", help="job id")
    download = with_backend(command("download", "download a job's adapter as a peft folder"))
    download.add_argument("job", help="job id")
    download.add_argument("--step", type=int, default=None, help="a checkpoint's step (default: final)")
    download.add_argument("-o", "--output", default=None,
                          help="folder to write (default: ./<job id> or ./<job id>-step-<N>)")
    chat = with_backend(command("chat", "ask a job's adapter (or a checkpoint) one prompt"))
    chat.add_argument("job", help="job id")
    chat.add_argument("prompt", help="the user message")
    chat.add_argument("--step", type=int, default=None, help="a checkpoint's step (default: final)")
    chat.add_argument("--max-tokens", type=int, default=None)
    chat.add_argument("--temperature", type=float, default=None, help="0 = greedy (default)")
    sub.add_parser("serve", help="run the local backend server in the foreground "
                                 "(see `arkor-nb serve --help`)")
    sub.add_parser("join", help="run this host's share of a multi-node job "
                                "(see `arkor-nb join --help`)")
    return parser


def _err(message: str) -> None:
    print(f"arkor-nb: {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------- run


def _failed_callback(trainer: Any, error: BaseException) -> str | None:
    """The name of the user callback whose frame raised ``error``, if one did."""
    codes: dict[Any, str] = {}
    callbacks = getattr(trainer, "callbacks", None)
    for name in CALLBACK_NAMES:
        fn = getattr(callbacks, name, None)
        code = getattr(getattr(fn, "__func__", fn), "__code__", None)
        if code is not None:
            codes[code] = f"{name} ({getattr(fn, '__qualname__', name)})"
    tb = error.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code in codes:
            return codes[tb.tb_frame.f_code]
        tb = tb.tb_next
    return None


def _run(path: str | None) -> int:
    try:
        trainer = load_trainer(default_entry() if path is None else path)
    except ConfigError as exc:
        _err(str(exc))
        return EXIT_USAGE
    kind = getattr(trainer, "backend_kind", "local")
    try:
        result = run_loaded(trainer)
    except KeyboardInterrupt as exc:
        if getattr(exc, "arkor_nb_announced", False):
            pass  # wait() already printed the line (job id, still running, how to stop it)
        elif trainer.job_id is None:
            _err("interrupted before the job was created")
        else:
            _err(f"interrupted; job {trainer.job_id} keeps running on its {kind} backend; "
                 f"{cancel_hint(trainer.job_id, kind)}")
        return EXIT_INTERRUPTED
    except ConfigError as exc:
        _err(str(exc))
        return EXIT_USAGE
    except Exception as exc:
        where = _failed_callback(trainer, exc)
        if where is None and isinstance(exc, ArkorError):
            _err(f"{exc}; job {trainer.job_id} may still be running; "
                 f"{cancel_hint(trainer.job_id, kind)}")
            return EXIT_JOB_FAILED
        if where is None:
            raise
        _err(f"callback {where} raised {type(exc).__name__}: {exc}; job {trainer.job_id} "
             f"keeps running on its {kind} backend; {cancel_hint(trainer.job_id, kind)}")
        return EXIT_JOB_FAILED
    return EXIT_OK if result.job.status == COMPLETED else EXIT_JOB_FAILED


# ---------------------------------------------------------------- jobs


# What ``logs`` prints: the job's own events (not phases, samples or stream notices).
PRINTED = (TrainingStarted, TrainingLog, CheckpointSaved, TrainingCompleted, TrainingFailed,
           TrainingCancelled)


def event_line(event: Any) -> str | None:
    """One recorded event as one line of text progress (None for nothing to say)."""
    return format_event(event, sep="  ") if isinstance(event, PRINTED) else None


def _print_event(event: Any) -> None:
    line = event_line(event)
    if line is not None:
        print(line, flush=True)


def _status_code(status: str) -> int:
    return EXIT_OK if status == COMPLETED else EXIT_JOB_FAILED


def _jobs(args: argparse.Namespace) -> int:
    listed = jobs_api.jobs(status=args.status, limit=args.limit, backend=args.backend)
    best = (jobs_api.best_metrics([j.id for j in listed], args.metric, backend=args.backend)
            if args.metric else {})
    if args.json:
        extra = ({j.id: {"bestMetric": {"name": args.metric, "step": b[0], "value": b[1]}
                         if (b := best[j.id]) else None} for j in listed} if args.metric else {})
        print(json.dumps([{**j.to_wire(), **extra.get(j.id, {})} for j in listed], indent=2))
    elif args.metric:
        print(jobs_text(listed, {f"best {args.metric}": {i: best_cell(b) for i, b in best.items()}}))
    else:
        print(str(listed))
    return EXIT_OK


def _logs(args: argparse.Namespace) -> int:
    if not args.follow:
        for event in jobs_api.events(args.job, backend=args.backend):
            _print_event(event)
        return EXIT_OK
    trainer = Trainer.attach(args.job, backend=args.backend)  # unknown id: JobNotFoundError
    trainer.subscribe(lambda item: None if isinstance(item, StreamNotice) else _print_event(item))
    try:
        result = trainer.wait()
    except KeyboardInterrupt as exc:
        if not getattr(exc, "arkor_nb_announced", False):  # wait() already said it
            _err(f"stopped following; job {args.job} keeps running; {cancel_hint(args.job, args.backend)}")
        return EXIT_INTERRUPTED
    return _status_code(result.job.status)


def _cancel(args: argparse.Namespace) -> int:
    job = jobs_api.cancel_job(args.job, backend=args.backend)
    if job.is_terminal:
        print(f"job {job.id} is {job.status}")
    else:
        print(f"asked the backend to cancel job {job.id} (now {job.status}); "
              f"`arkor-nb logs {job.id} -f` shows when it stops")
    return EXIT_OK


def _download(args: argparse.Namespace) -> int:
    default = args.job if args.step is None else f"{args.job}-step-{args.step}"
    folder = jobs_api.download(args.job, to=args.output or default, step=args.step, backend=args.backend)
    print(folder)
    return EXIT_OK


def _chat(args: argparse.Namespace) -> int:
    sampling = {k: v for k, v in (("max_tokens", args.max_tokens),
                                  ("temperature", args.temperature)) if v is not None}
    for piece in chat_api.chat(args.job, args.prompt, step=args.step, stream=True, backend=args.backend,
                      **sampling):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return EXIT_OK


COMMANDS = {"jobs": _jobs, "logs": _logs, "cancel": _cancel, "download": _download, "chat": _chat}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        # Everything after `serve` belongs to the server's own parser
        # (argparse.REMAINDER would stop at the first option, e.g. --port).

        return int(serve_main(argv[1:]) or 0)
    if argv[:1] == ["join"]:
        return int(join_main(argv[1:]) or 0)
    args = _parser().parse_args(argv)
    if args.command == "run":
        return _run(args.path)
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_INTERRUPTED
    except ConfigError as exc:
        _err(str(exc))
        return EXIT_USAGE
    except ArkorError as exc:
        _err(str(exc))
        return EXIT_JOB_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
