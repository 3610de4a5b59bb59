"""Measurement 3: the SSE pipeline, local server -> ``Trainer.wait()``.

Against a raw httpx-sse loop (``connect_sse`` + ``json.loads``) reading the
same stream from the same real local server (synthetic worker), interleaved:

* replay: a finished job's whole log (N events) read from the durable store;
  events/s and the ratio of wall times (Trainer / raw), plus the client
  process's CPU seconds (``time.process_time``, all its threads; the server is
  another process), which a machine shared with other work disturbs less.
  Three readers: raw; ``Trainer.wait()`` with one no-op sync ``on_log``;
  ``Trainer.wait()`` with no callbacks.
* live: a paced job (``ARKOR_NB_SYNTHETIC_STEP_S``) tailed while it runs;
  latency from the event being recorded (its ``timestamp``, set by the store
  when it appends the event, millisecond resolution) to the callback
  (``on_log``) or the raw loop having parsed it.

    python -m benchmarks.bench_sse --quick
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import httpx
from httpx_sse import connect_sse

from benchmarks.common import log, median, mode_parser, percentile, save
from benchmarks.local_server import SCOPE, Server, local_server

LIVE_STEP_S = 0.005


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def raw_read(server: Server, job_id: str) -> dict[str, Any]:
    """The baseline: httpx-sse over a sync httpx client, json.loads each frame."""
    lat: list[float] = []
    count = 0
    stamps: dict[int, float] = {}
    c0 = time.process_time()
    t0 = time.perf_counter()
    with httpx.Client(timeout=httpx.Timeout(60.0), trust_env=False) as client:
        with connect_sse(client, "GET", f"{server.url}/v1/jobs/{job_id}/events/stream",
                         params=SCOPE, headers=server.headers) as source:
            for sse in source.iter_sse():
                if sse.event == "end":
                    break
                if sse.event == "ping" or not sse.data:
                    continue
                data = json.loads(sse.data)
                now = time.time()
                count += 1
                if data.get("type") == "training.log":
                    ts = _ts(data["timestamp"])
                    lat.append(now - ts)
                    stamps[data["step"]] = ts
    return {"events": count, "wall_s": time.perf_counter() - t0, "latency_s": lat,
            "stamps": stamps, "cpu_s": time.process_time() - c0}


def raw_completed(server: Server, job_id: str) -> dict[str, Any]:
    """The job's terminal event, read from its (finished) stream."""
    last: dict[str, Any] = {}
    with httpx.Client(timeout=httpx.Timeout(60.0), trust_env=False) as client:
        with connect_sse(client, "GET", f"{server.url}/v1/jobs/{job_id}/events/stream",
                         params=SCOPE, headers=server.headers) as source:
            for sse in source.iter_sse():
                if sse.event == "end":
                    break
                if sse.data and sse.event not in ("ping",):
                    data = json.loads(sse.data)
                    if data.get("type") in ("training.completed", "training.failed",
                                            "training.cancelled"):
                        last = data
    return last


def trainer_read(server: Server, job_id: str | None, config: dict[str, Any] | None = None,
                 *, with_callback: bool = True) -> dict[str, Any]:
    """``Trainer.wait()`` with a no-op ``on_log`` (recording when it ran), or with
    no callbacks at all (to separate callback dispatch from stream reading)."""
    from arkor_nb import LocalBackend, Trainer, create_trainer

    calls: list[tuple[int, float]] = []

    def on_log(ctx: Any) -> None:
        calls.append((ctx.step, time.time()))

    backend = LocalBackend(url=server.url, token=server.token)
    callbacks = {"on_log": on_log} if with_callback else None
    if job_id is not None:
        trainer = Trainer.attach(job_id, backend=backend, callbacks=callbacks)
    else:
        assert config is not None
        trainer = create_trainer(name="bench-live", backend=backend, callbacks=callbacks,
                                 model=config["model"], max_steps=config["maxSteps"])
    c0 = time.process_time()
    t0 = time.perf_counter()
    result = trainer.wait()
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "calls": calls, "status": result.job.status,
            "job_id": trainer.job_id, "cpu_s": time.process_time() - c0}


def run(mode: str) -> dict[str, Any]:
    n = 10_000 if mode == "quick" else 100_000
    n_live = 300 if mode == "quick" else 2000
    reps = 2 if mode == "quick" else 5
    out: dict[str, Any] = {"mode": mode, "n_replay": n, "n_live": n_live, "live_step_s": LIVE_STEP_S,
                           "reps": reps}
    cfg = {"model": "arkor-nb/synthetic", "maxSteps": n}
    with local_server(ARKOR_NB_SYNTHETIC_STEP_S="0") as server:
        log(f"sse: recording a {n:,}-step synthetic job")
        t0 = time.perf_counter()
        job_id = server.create_job("bench-replay", cfg)
        server.wait_terminal(job_id)
        out["record_wall_s"] = time.perf_counter() - t0
        raw_runs, tr_runs, bare_runs = [], [], []
        for rep in range(reps):
            order = ["raw", "trainer", "bare"]
            order = order[rep % 3:] + order[: rep % 3]
            for who in order:
                if who == "raw":
                    r = raw_read(server, job_id)
                    raw_runs.append({"events": r["events"], "wall_s": r["wall_s"],
                                     "cpu_s": r["cpu_s"]})
                else:
                    r = trainer_read(server, job_id, with_callback=who == "trainer")
                    (tr_runs if who == "trainer" else bare_runs).append(
                        {"calls": len(r["calls"]), "wall_s": r["wall_s"], "status": r["status"],
                         "cpu_s": r["cpu_s"]})
                log(f"sse replay rep {rep + 1}: {who} {r['wall_s']:.2f} s")
        events = raw_runs[0]["events"]
        out["replay"] = {
            "events": events,
            "raw_wall_s": median(x["wall_s"] for x in raw_runs),
            "trainer_wall_s": median(x["wall_s"] for x in tr_runs),
            "bare_wall_s": median(x["wall_s"] for x in bare_runs),
            "trainer_callbacks": tr_runs[0]["calls"],
            "runs": {"raw": raw_runs, "trainer": tr_runs, "bare": bare_runs},
        }
        rp = out["replay"]
        rp["raw_events_per_s"] = events / rp["raw_wall_s"]
        rp["trainer_events_per_s"] = events / rp["trainer_wall_s"]
        rp["bare_events_per_s"] = events / rp["bare_wall_s"]
        rp["ratio"] = rp["trainer_wall_s"] / rp["raw_wall_s"]
        rp["bare_ratio"] = rp["bare_wall_s"] / rp["raw_wall_s"]
        for who, runs in (("raw", raw_runs), ("trainer", tr_runs), ("bare", bare_runs)):
            rp[f"{who}_cpu_s"] = median(x["cpu_s"] for x in runs)
            rp[f"{who}_events_per_cpu_s"] = events / rp[f"{who}_cpu_s"]
        rp["cpu_ratio"] = rp["trainer_cpu_s"] / rp["raw_cpu_s"]
        rp["bare_cpu_ratio"] = rp["bare_cpu_s"] / rp["raw_cpu_s"]
    live_cfg = {"model": "arkor-nb/synthetic", "maxSteps": n_live}
    with local_server(ARKOR_NB_SYNTHETIC_STEP_S=str(LIVE_STEP_S)) as server:
        raw_lat: list[float] = []
        tr_lat: list[float] = []
        live_reps = 1 if mode == "quick" else 3
        for rep in range(live_reps):
            order = ("raw", "trainer") if rep % 2 == 0 else ("trainer", "raw")
            for who in order:
                if who == "raw":
                    jid = server.create_job("bench-live-raw", live_cfg)
                    r = raw_read(server, jid)
                    raw_lat += r["latency_s"]
                else:
                    r = trainer_read(server, None, live_cfg)
                    stamps = raw_read(server, r["job_id"])["stamps"]
                    tr_lat += [t - stamps[s] for s, t in r["calls"] if s in stamps]
                log(f"sse live rep {rep + 1}: {who} done")
        out["live"] = {
            "raw_p50_ms": percentile(raw_lat, 50) * 1e3,
            "raw_p99_ms": percentile(raw_lat, 99) * 1e3,
            "trainer_p50_ms": percentile(tr_lat, 50) * 1e3,
            "trainer_p99_ms": percentile(tr_lat, 99) * 1e3,
            "trainer_max_ms": max(tr_lat) * 1e3,
            "samples": {"raw": len(raw_lat), "trainer": len(tr_lat)},
        }
    save(f"sse-{mode}", out)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = mode_parser(__doc__)
    a = ap.parse_args(argv)
    out = run(a.mode or "quick")
    print(json.dumps({k: v for k, v in out.items()}, indent=1, default=str)[:4000])


if __name__ == "__main__":
    main()
