"""Run the benchmarks and update the results tables in ``benchmarks/README.md``.

    python -m benchmarks.run --quick   # `make bench-quick`, under 3 minutes
    python -m benchmarks.run --full    # `make bench`: every measurement (about an hour)

``--only panel,sse`` runs a subset. Quick mode skips the browser and the demo
(each needs a minute or more on its own) and runs the rest small.
"""

from __future__ import annotations

import argparse
import os
import time
import traceback

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from benchmarks import (  # noqa: E402
    bench_browser,
    bench_cancel,
    bench_demo,
    bench_panel,
    bench_sse,
    bench_training,
    report,
)
from benchmarks.common import log  # noqa: E402

STEPS = {
    "panel": lambda mode: bench_panel.run(mode),
    "sse": bench_sse.run,
    "cancel": bench_cancel.run,
    "training": bench_training.run,
    "browser": bench_browser.run_and_measure,
    "demo": bench_demo.run,
}
QUICK = ["sse", "panel", "cancel", "training"]
FULL = ["sse", "panel", "cancel", "training", "browser", "demo"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_const", dest="mode", const="quick")
    g.add_argument("--full", action="store_const", dest="mode", const="full")
    ap.add_argument("--only", help=f"comma-separated subset of {', '.join(STEPS)}")
    a = ap.parse_args(argv)
    mode = a.mode or "quick"
    names = a.only.split(",") if a.only else (QUICK if mode == "quick" else FULL)
    failed = []
    t0 = time.perf_counter()
    for name in names:
        if name not in STEPS:
            ap.error(f"--only: unknown benchmark {name!r}; choose from {', '.join(STEPS)}")
        t = time.perf_counter()
        log(f"== {name} ({mode})")
        try:
            STEPS[name](mode)
        except Exception:  # one broken benchmark must not hide the others' figures
            traceback.print_exc()
            failed.append(name)
        log(f"== {name} took {time.perf_counter() - t:.0f} s")
    report.update_readme()
    log(f"all done in {time.perf_counter() - t0:.0f} s; tables in {report.README}"
        + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
