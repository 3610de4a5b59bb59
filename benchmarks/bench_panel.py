"""Measurement 1: kernel-side cost of a live training display, per event.

Every display (peers and arkor_nb's panel) runs in its own fresh ipykernel,
executed by nbclient, on the same synthetic stream, interleaved in one run
(the display order rotates each repetition). A peer that is still busy
after ``cap`` seconds is stopped there (its row says how many events it
handled) and is not run at larger N: its cost per event only grows with N.

    python -m benchmarks.bench_panel --quick
    python -m benchmarks.bench_panel --display tqdm --n 1000 --regime tight --reps 3
"""

from __future__ import annotations

import json
from typing import Any

from benchmarks.common import log, median, mode_parser, save
from benchmarks.kernel_harness import run_display
from benchmarks.peers import ALL_DISPLAYS, Display

PACE_S = 0.002
OURS_CAP_S = 900.0  # "realistic step pacing": a few ms between events
REGIMES = {"tight": 0.0, "paced": PACE_S}

PEER_KEYS = [d.key for d in ALL_DISPLAYS if not d.is_ours and not d.is_baseline]
OURS_KEYS = [d.key for d in ALL_DISPLAYS if d.is_ours]
BASE_KEYS = [d.key for d in ALL_DISPLAYS if d.is_baseline]
ALL_KEYS = [d.key for d in ALL_DISPLAYS]
# the end-to-end row replays a recorded job at stream speed: pacing does not apply
PACED_KEYS = [k for k in ALL_KEYS if k != "arkor_e2e"]


def plan(mode: str) -> dict[str, Any]:
    if mode == "quick":
        return {
            "reps": 1,
            "cap": 3.0,
            "cases": [
                # a smoke run: the cheap peers and ours; `--full` has every peer
                ("tight", 1000, ["baseline_wire", "baseline_typed", "tqdm", "plotly_batch100",
                                 "arkor_feed", "arkor_e2e"]),
                ("tight", 10_000, ["arkor_feed", "baseline_typed"]),
            ],
        }
    return {
        "reps": 3,
        "cap": 30.0,
        "cases": [
            # (regime, N, displays[, repetitions]): the long cases run fewer times
            ("tight", 1000, ALL_KEYS),
            ("tight", 10_000, ALL_KEYS),
            ("tight", 100_000, ALL_KEYS, 2),
            ("tight", 1_000_000, ["arkor_feed", "baseline_typed"], 2),
            ("paced", 1000, PACED_KEYS),
            ("paced", 10_000, PACED_KEYS, 1),
        ],
    }


def _per_event_us(run: dict[str, Any]) -> float | None:
    loop = run.get("loop")
    if not loop or not loop.get("done"):
        return None
    return loop["cpu_s"] / loop["done"] * 1e6


def summarize(runs: list[dict[str, Any]], skipped: dict[tuple[str, str, int], str]) -> list[dict[str, Any]]:
    by: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for r in runs:
        by.setdefault((r["display"], r["regime"], r["n"]), []).append(r)
    displays = {d.key: d for d in ALL_DISPLAYS}
    rows = []
    for (key, regime, n), group in by.items():
        ok = [r for r in group if not r.get("error")]
        loops = [r["loop"] for r in ok]
        row: dict[str, Any] = {
            "display": key,
            "label": displays[key].label,
            "ours": displays[key].is_ours,
            "baseline": displays[key].is_baseline,
            "events": displays[key].events,
            "regime": regime,
            "n": n,
            "runs": len(group),
            "errors": [r["error"] for r in group if r.get("error")],
            "done": median(lp["done"] for lp in loops),
            "truncated": any(lp.get("truncated") for lp in loops),
            "cpu_us_per_event": median(_per_event_us(r) for r in ok),
            "wall_s": median(lp["wall_s"] for lp in loops),
            "messages": median(lp["messages"] for lp in loops),
            "msgs_per_s": median(lp["messages"] / lp["wall_s"] for lp in loops if lp["wall_s"]),
            "mb_sent": median(lp["bytes"] / 1e6 for lp in loops),
            "max_msg_kb": median(lp["max_message_bytes"] / 1e3 for lp in loops),
            "peak_rss_mb": median(lp["peak_rss_mb"] for lp in loops),
            "rss_after_mb": median(lp["rss_after_mb"] for lp in loops),
            "rss_growth_mb": median(lp["rss_after_mb"] - lp["rss_before_mb"] for lp in loops),
            "notebook_kb": median(r["notebook_added_bytes"] / 1e3 for r in ok),
            "widget_state_kb": median(r["widget_state_bytes"] / 1e3 for r in ok),
            "setup_cpu_s": median(r["setup"]["cpu_s"] for r in ok if "setup" in r),
            "setup_mb_sent": median(r["setup"]["bytes"] / 1e6 for r in ok if "setup" in r),
            "by_type": loops[0]["by_type"] if loops else {},
        }
        rows.append(row)
    # net of the matching baseline (same event kind, regime, N)
    index = {(r["display"], r["regime"], r["n"]): r for r in rows}
    for row in rows:
        kind = "typed" if row["events"] == "none" else row["events"]
        base = index.get((f"baseline_{kind}", row["regime"], row["n"]))
        if row["events"] == "none" and base:
            # end to end: everything the kernel did is the cost (no generator to subtract)
            row["net_us_per_event"] = row["cpu_us_per_event"]
            row["net_notebook_kb"] = row["notebook_kb"] - base["notebook_kb"]
        elif base and row["cpu_us_per_event"] is not None and base["cpu_us_per_event"] is not None:
            row["net_us_per_event"] = row["cpu_us_per_event"] - base["cpu_us_per_event"]
            row["net_notebook_kb"] = row["notebook_kb"] - base["notebook_kb"]
        else:
            row["net_us_per_event"] = None
            row["net_notebook_kb"] = None
    for (key, regime, n), why in skipped.items():
        if (key, regime, n) not in index:
            rows.append({"display": key, "label": displays[key].label, "regime": regime, "n": n,
                         "ours": displays[key].is_ours, "baseline": displays[key].is_baseline,
                         "skipped": why})
    order = {k: i for i, k in enumerate(ALL_KEYS)}
    rows.sort(key=lambda r: (r["regime"] != "tight", r["n"], order[r["display"]]))
    return rows


def run(mode: str, *, only: list[str] | None = None, ns: list[int] | None = None,
        regimes: list[str] | None = None, reps: int | None = None,
        cap: float | None = None) -> dict[str, Any]:
    p = plan(mode)
    reps = reps or p["reps"]
    cap = cap or p["cap"]
    cases = p["cases"]
    if only or ns or regimes:
        # a targeted run (the command a table row names)
        cases = [(rg, n, only or ALL_KEYS) for rg in (regimes or ["tight"]) for n in (ns or [1000])]
        for _, _, keys in cases:
            for k in list(keys):
                for base in BASE_KEYS:
                    if base.endswith(_display(k).events) and base not in keys:
                        keys.append(base)
    runs: list[dict[str, Any]] = []
    skipped: dict[tuple[str, str, int], str] = {}
    truncated_at: dict[tuple[str, str], int] = {}
    for rep in range(reps):
        for case in cases:
            regime, n, keys = case[:3]
            if rep >= (case[3] if len(case) > 3 else reps):
                continue
            rotated = keys[rep % len(keys):] + keys[: rep % len(keys)]
            for key in rotated:
                if (key, regime) in truncated_at and truncated_at[(key, regime)] < n:
                    skipped[(key, regime, n)] = (
                        f"not run: stopped after {cap:.0f} s at N={truncated_at[(key, regime)]:,}"
                    )
                    continue
                disp = _display(key)
                log(f"panel rep {rep + 1}/{reps} {regime} N={n:,} {key}")
                # the cap is for peers that would take hours; ours and the baselines run to N
                own_cap = cap if not (disp.is_ours or disp.is_baseline) else max(cap, OURS_CAP_S)
                r = run_display(disp, n, pace=REGIMES[regime], cap=own_cap, seed=rep)
                r["regime"] = regime
                r["rep"] = rep
                runs.append(r)
                if r.get("error"):
                    log(f"  error: {r['error']}")
                elif r["loop"].get("truncated"):
                    truncated_at[(key, regime)] = min(truncated_at.get((key, regime), n), n)
                    log(f"  truncated after {r['loop']['done']:,} events")
                else:
                    log(f"  {_per_event_us(r):.1f} us/event, {r['loop']['messages']} msgs")
    rows = summarize(runs, skipped)
    payload = {"mode": mode, "reps": reps, "cap_s": cap, "pace_s": PACE_S, "rows": rows,
               "runs": runs}
    name = f"panel-{mode}" if not (only or ns or regimes) else "panel-targeted"
    save(name, payload)
    return payload


def _display(key: str) -> Display:
    for d in ALL_DISPLAYS:
        if d.key == key:
            return d
    raise SystemExit(f"--display: unknown display {key!r}; choose from {', '.join(ALL_KEYS)}")


def main(argv: list[str] | None = None) -> None:
    ap = mode_parser(__doc__)
    ap.add_argument("--display", help=f"comma-separated: {', '.join(ALL_KEYS)}")
    ap.add_argument("--n", help="comma-separated event counts", default=None)
    ap.add_argument("--regime", help="tight,paced", default=None)
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--cap", type=float, default=None, help="seconds per display before stopping it")
    a = ap.parse_args(argv)
    payload = run(
        a.mode or "quick",
        only=a.display.split(",") if a.display else None,
        ns=[int(x) for x in a.n.split(",")] if a.n else None,
        regimes=a.regime.split(",") if a.regime else None,
        reps=a.reps,
        cap=a.cap,
    )
    for row in payload["rows"]:
        print(json.dumps({k: v for k, v in row.items() if k != "by_type"}))


if __name__ == "__main__":
    main()
