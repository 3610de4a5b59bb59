"""The ``arkor-nb`` command: ``run`` a project's trainer, ``serve`` the local backend.

``arkor-nb run path.py`` exits 0 only when the job completed, 1 when it
failed or was cancelled (so a CI step fails with it), 2 for bad input.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__
from .errors import ArkorError, ConfigError

EXIT_OK, EXIT_JOB_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="arkor-nb", description="Interactive fine-tuning.")
    parser.add_argument("--version", action="version", version=f"arkor-nb {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the trainer a Python file exports, to the end")
    run.add_argument("path", help="module exporting `arkor`, `trainer` or `default`")
    serve = sub.add_parser("serve", help="run the local backend server in the foreground")
    serve.add_argument("args", nargs=argparse.REMAINDER, help="see `arkor-nb serve --help`")
    return parser


def _run(path: str) -> int:
    from .runner import run_trainer

    try:
        result = run_trainer(path)
    except ConfigError as exc:
        print(f"arkor-nb: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ArkorError as exc:
        print(f"arkor-nb: {exc}", file=sys.stderr)
        return EXIT_JOB_FAILED
    except KeyboardInterrupt:
        print(
            "arkor-nb: interrupted; the job keeps running on its backend "
            "(cancel it with trainer.cancel() or the notebook panel).",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    return EXIT_OK if result.job.status == "completed" else EXIT_JOB_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        # Everything after `serve` belongs to the server's own parser
        # (argparse.REMAINDER would stop at the first option, e.g. --port).
        from .local.launch import serve_main  # lazy: needs the [local] extra

        return int(serve_main(argv[1:]) or 0)
    args = _parser().parse_args(argv)
    return _run(args.path)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
