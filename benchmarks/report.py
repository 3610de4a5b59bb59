"""Render ``benchmarks/results/*.json`` as the Markdown tables in ``README.md``.

Each table row names the command that reproduces it. The README's prose
(targets, notes) is hand-written; only the block between the markers
``<!-- results:begin -->`` and ``<!-- results:end -->`` is generated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, load

README = Path(__file__).resolve().parent / "README.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def _f(v: Any, fmt: str = "{:,.1f}", none: str = "–") -> str:
    if v is None:
        return none
    try:
        return fmt.format(v)
    except (TypeError, ValueError):
        return str(v)


def _pick(name: str) -> tuple[dict[str, Any] | None, str]:
    for mode in ("full", "quick"):
        data = load(f"{name}-{mode}")
        if data is not None:
            return data, mode
    return None, ""


def _machine(data: dict[str, Any]) -> str:
    m = data.get("machine", {})
    load = m.get("load_avg") or []
    return (f"{m.get('when', '?')}, {m.get('cores', '?')} cores ({m.get('cpu', '?')}), "
            f"{m.get('mem_gb', '?')} GB, Python {m.get('python', '?')}, git {m.get('git', '?')}, "
            f"load average at the end {', '.join(f'{x:.1f}' for x in load)}")


def _merged_panel() -> tuple[dict[str, Any] | None, str]:
    """The panel run, with rows re-measured by a targeted run (same command as
    the row names) replacing the ones they cover."""
    data, mode = _pick("panel")
    extra = load("panel-targeted")
    if data is None or extra is None:
        return data, mode
    keys = {(r["display"], r["regime"], r["n"]) for r in extra["rows"]}
    rows = [r for r in data["rows"] if (r["display"], r["regime"], r["n"]) not in keys]
    order = {(r["display"], r["regime"], r["n"]): i for i, r in enumerate(data["rows"])}
    rows += [dict(r, targeted=True) for r in extra["rows"]]
    rows.sort(key=lambda r: order.get((r["display"], r["regime"], r["n"]), 10**6))
    return {**data, "rows": rows, "targeted_machine": extra.get("machine")}, mode


def _rss_after(data: dict[str, Any], row: dict[str, Any]) -> float | None:
    """Kernel RSS (VmRSS) after the loop, median over the row's runs."""
    if row.get("rss_after_mb") is not None:
        return float(row["rss_after_mb"])
    vals = sorted(r["loop"]["rss_after_mb"] for r in data.get("runs", [])
                  if r.get("display") == row["display"] and r.get("regime") == row["regime"]
                  and r.get("n") == row["n"] and "loop" in r)
    return vals[len(vals) // 2] if vals else None


def panel_table() -> list[str]:
    data, mode = _merged_panel()
    if data is None:
        return ["_panel: not measured yet (`python -m benchmarks.bench_panel --full`)_", ""]
    out = [f"### 1. Panel cost per event, kernel side ({mode} run: `python -m benchmarks.run --{mode}`)",
           "",
           f"Measured {_machine(data)}. Median of up to {data['reps']} interleaved runs (\"runs\" column), each in a fresh "
           f"ipykernel executed by nbclient; a display still busy after {data['cap_s']:.0f} s is "
           f"stopped (\"done\" < N). Paced = {data['pace_s'] * 1e3:.0f} ms sleep between events. "
           "CPU is the kernel process (all threads) per event, net of the matching no-display "
           "baseline; messages and bytes are counted in the kernel's Session.send (iopub + comm).",
           "",
           "| display | regime | N | runs | done | CPU µs/event (net) | msgs | msgs/s | MB sent | largest msg kB | RSS after MB | notebook kB (of it widget state) | command |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in data["rows"]:
        name = f"**{r['label']}**" if r.get("ours") else r["label"]
        if r.get("targeted"):
            name += " †"
        cmd = (f"`python -m benchmarks.bench_panel --display {r['display']} --n {r['n']} "
               f"--regime {r['regime']} --reps 3`")
        if r.get("skipped"):
            out.append(f"| {name} | {r['regime']} | {r['n']:,} | 0 | – | {r['skipped']} | | | | | | | {cmd} |")
            continue
        if r.get("baseline"):
            us = f"{_f(r['cpu_us_per_event'])} (baseline)"
        else:
            us = _f(r.get("net_us_per_event"))
        err = f" ({len(r['errors'])} errors)" if r.get("errors") else ""
        nb = (f"{_f(r.get('net_notebook_kb'), '{:,.0f}')} ({_f(r.get('widget_state_kb'), '{:,.0f}')})"
              if not r.get("baseline") else "–")
        out.append(
            f"| {name}{err} | {r['regime']} | {r['n']:,} | {r['runs']} | {_f(r['done'], '{:,.0f}')} | {us} | "
            f"{_f(r['messages'], '{:,.0f}')} | {_f(r['msgs_per_s'], '{:,.0f}')} | "
            f"{_f(r['mb_sent'], '{:,.2f}')} | {_f(r['max_msg_kb'], '{:,.1f}')} | "
            f"{_f(_rss_after(data, r), '{:,.0f}')} | {nb} | {cmd} |")
    if data.get("targeted_machine"):
        out.append(f"† re-measured by the row's own command (interleaved with its baseline), "
                   f"{_machine({'machine': data['targeted_machine']})}.")
    out.append("")
    return out


def sse_table() -> list[str]:
    data, mode = _pick("sse")
    if data is None:
        return ["_SSE: not measured yet_", ""]
    rp, lv = data["replay"], data["live"]
    cmd = f"`python -m benchmarks.bench_sse --{mode}`"
    return [
        f"### 3. SSE pipeline ({mode} run)", "",
        f"Measured {_machine(data)}. Replay: a finished {rp['events']:,}-event synthetic job read "
        f"from the local server, median of {data['reps']} interleaved reads. Live: "
        f"{data['n_live']:,}-step jobs paced at {data['live_step_s'] * 1e3:.0f} ms/step, latency "
        "= callback time - the event's recorded timestamp (ms resolution).", "",
        "| reader | events/s (replay) | wall s | time vs raw | p50 latency ms (live) | p99 ms | command |",
        "|---|---:|---:|---:|---:|---:|---|",
        f"| raw httpx-sse loop (`connect_sse` + `json.loads`) | {_f(rp['raw_events_per_s'], '{:,.0f}')} | "
        f"{_f(rp['raw_wall_s'], '{:.2f}')} | 1.00x | {_f(lv['raw_p50_ms'])} | {_f(lv['raw_p99_ms'])} | {cmd} |",
        f"| **`Trainer.wait()`, no-op `on_log`** | {_f(rp['trainer_events_per_s'], '{:,.0f}')} | "
        f"{_f(rp['trainer_wall_s'], '{:.2f}')} | {_f(rp['ratio'], '{:.2f}x')} | {_f(lv['trainer_p50_ms'])} | "
        f"{_f(lv['trainer_p99_ms'])} | {cmd} |",
        f"| **`Trainer.wait()`, no callbacks** | {_f(rp.get('bare_events_per_s'), '{:,.0f}')} | "
        f"{_f(rp.get('bare_wall_s'), '{:.2f}')} | {_f(rp.get('bare_ratio'), '{:.2f}x')} | | | {cmd} |",
        "",
    ]


def training_table() -> list[str]:
    data, mode = _pick("training")
    if data is None:
        return ["_training: not measured yet_", ""]
    out = [f"### 4. Training overhead ({mode} run)", "",
           f"Measured {_machine(data)}. Steps/s from `trainer.train()` wall time in each process, "
           "median of interleaved runs; torch 1 thread in both.", "",
           "| config | steps | local worker s/step | plain transformers s/step | worker / plain steps/s | final loss worker / plain | command |",
           "|---|---:|---:|---:|---:|---:|---|"]
    for r in data["results"]:
        out.append(
            f"| {r['config']} | {r['steps']} x {r['reps']} | {_f(r['worker_s_per_step'], '{:.3f}')} | "
            f"{_f(r['plain_s_per_step'], '{:.3f}')} | **{_f(r['ratio'], '{:.3f}x')}** | "
            f"{_f(r['worker_final_loss'], '{:.3f}')} / {_f(r['plain_final_loss'], '{:.3f}')} | "
            f"`python -m benchmarks.bench_training --{mode}` |")
    out.append("")
    return out


def cancel_table() -> list[str]:
    data, mode = _pick("cancel")
    if data is None:
        return ["_cancel: not measured yet_", ""]
    s, w = data["stream"], data["worker"]
    cmd = f"`python -m benchmarks.bench_cancel --{mode}`"
    return [
        f"### 5. Cancel latency ({mode} run)", "", f"Measured {_machine(data)}.", "",
        "| measure | median | worst | target | command |", "|---|---:|---:|---:|---|",
        f"| abort signal -> local stream closed (`trainer.wait()` raised `AbortedError`) | {_f(s['stream_closed_ms'])} ms | "
        f"{_f(s['max_stream_closed_ms'])} ms | ≤ 100 ms | {cmd} |",
        f"| `run.cancel()` (the Cancel button's call) -> `run.done()` (stream closed, final state drawn) | {_f(s['run_done_ms'])} ms | | ≤ 100 ms | {cmd} |",
        f"| `trainer.cancel()` -> worker stopped, extra optimizer steps | {_f(w['extra_steps_median'], '{:.0f}')} | "
        f"{_f(w['extra_steps_max'], '{:.0f}')} | ≤ 1 step | {cmd} |",
        f"| `trainer.cancel()` -> `training.cancelled` recorded | {_f(w['to_cancelled_event_ms'])} ms | | | {cmd} |",
        f"| `trainer.cancel()` -> `wait()` returned | {_f(w['to_wait_returned_ms'])} ms | | | {cmd} |",
        "",
    ]


def browser_table() -> list[str]:
    data, mode = _pick("browser")
    if data is None:
        return ["_time to panel: not measured yet (`python -m benchmarks.bench_browser --full`)_", ""]
    cmd = f"`python -m benchmarks.bench_browser --{mode}`"
    out = [f"### 2. Time to panel in JupyterLab + Chromium ({mode} run)", "",
           f"Measured {_machine(data)}. JupyterLab start {data['lab_start_s']:.1f} s, notebook open to "
           f"kernel idle {data['open_to_kernel_idle_s']:.1f} s (not counted).", "",
           "| run | `ak.live()` -> panel in DOM | `ak.live()` -> first point | first event after `ak.live()` | first point after first event | chart that drew it | plotly element / plot div appeared | command |",
           "|---|---:|---:|---:|---:|---|---|---|"]
    for r in data["rows"]:
        out.append(f"| {r['run']} | {_f(r['to_panel_s'], '{:.2f} s')} | {_f(r['to_first_point_s'], '{:.2f} s')} | "
                   f"{_f(r['first_event_after_live_s'], '{:.2f} s')} | {_f(r['point_after_first_event_s'], '{:.2f} s')} | "
                   f"{r.get('first_point_chart') or '–'} | "
                   f"{_f(r.get('plotly_element_s'), '{:.2f} s', 'never')} / {_f(r.get('plotly_div_s'), '{:.2f} s', 'never')} | {cmd} |")
    out.append("")
    return out


def demo_table() -> list[str]:
    data, mode = _pick("demo")
    if data is None:
        return ["_demo: not measured yet (`python -m benchmarks.bench_demo --full`)_", ""]
    cmd = "`python -m benchmarks.bench_demo --full`"
    out = [f"### 6. Demo time ({mode} run)", "", f"Measured {_machine(data)}.", "",
           "| run | `python -m arkor_nb.demo` wall | training part | notebook part | status | command |",
           "|---|---:|---:|---:|---|---|"]
    for label in ("cold", "warm"):
        r = data.get(label)
        if r:
            out.append(f"| {label} home | {_f(r['wall_s'], '{:.1f} s')} | {_f(r['train_s'], '{:.1f} s')} | "
                       f"{_f(r['notebook_s'], '{:.1f} s')} | {r['status']} (rc {r['rc']}) | {cmd} |")
    out.append("")
    return out


def render() -> str:
    lines: list[str] = []
    for part in (panel_table, browser_table, sse_table, training_table, cancel_table, demo_table):
        lines += part()
    return "\n".join(lines)


def update_readme() -> None:
    text = README.read_text() if README.exists() else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    README.write_text(f"{head}{BEGIN}\n{render()}\n{END}{tail}")


if __name__ == "__main__":
    RESULTS.mkdir(exist_ok=True)
    update_readme()
    print(README)
