"""How the job manager launches, finds and stops a job's processes.

A job with ``processes`` > 1 or ``nodes`` > 1 runs its worker under torchrun
(``python -m torch.distributed.run``): one agent, which starts one worker
process per rank (``distributed.py`` is their side). One node uses
``--standalone``; several nodes use torchrun's static rendezvous on a TCP
store that this server's agent hosts (``--node-rank 0``), so rank 0 (events,
checkpoints, the adapter) always runs here; the other hosts join with
``arkor-nb join`` (``join.py``), which reads ``rendezvous.json`` from the
job's artifacts. (torchrun's c10d rendezvous orders nodes by address and pid,
so rank 0 could land on a joining host.)

torchrun starts each rank in a session of its own, so a process group does
not hold them all. Every process of a job carries ``ARKOR_NB_JOB_ID`` in its
environment instead: :func:`job_processes` finds them (also after a server
restart) and :func:`stop_job` ends them all.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

JOB_ENV = "ARKOR_NB_JOB_ID"
PROCESSES_ENV = "ARKOR_NB_PROCESSES"
RENDEZVOUS_HOST_ENV = "ARKOR_NB_RENDEZVOUS_HOST"
RENDEZVOUS_FILE = "rendezvous.json"
WORKER_MODULE = "arkor_nb.local.training.worker"


def visible_gpus() -> int:
    """CUDA devices this process may use (0 without torch's CUDA)."""
    try:
        import torch  # deferred: only ``processes="auto"`` needs it
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def resolve_processes(value: Any) -> int:
    """``"auto"`` -> one per visible GPU (1 on CPU); a whole number as is."""
    if value == "auto":
        return max(1, visible_gpus())
    return int(value)


def server_default_processes() -> int | str:
    """``arkor-nb serve --processes`` (``ARKOR_NB_PROCESSES``): a job's default."""
    raw = os.environ.get(PROCESSES_ENV, "1").strip()
    return raw if raw == "auto" else max(1, int(raw))


def torchrun_args(*, processes: int, nodes: int, node_rank: int = 0,
                  endpoint: str | None = None, job_id: str = "") -> list[str]:
    """torchrun's options for one node of a job (``endpoint``: ``host:port`` of node 0)."""
    args = ["--nproc-per-node", str(processes), "--max-restarts", "0", "--monitor-interval", "0.5"]
    if nodes == 1:
        return ["--standalone", "--nnodes", "1", *args]
    assert endpoint is not None
    host, _, port = endpoint.rpartition(":")
    return ["--nnodes", str(nodes), "--node-rank", str(node_rank), "--master-addr", host,
            "--master-port", port, "--rdzv-id", job_id or "arkor-nb", *args]


def launch_command(processes: int, nodes: int, *, node_rank: int = 0,
                   endpoint: str | None = None, job_id: str = "") -> list[str]:
    """The full command line for one node: ``python -m torch.distributed.run ... -m worker``."""
    return [sys.executable, "-m", "torch.distributed.run",
            *torchrun_args(processes=processes, nodes=nodes, node_rank=node_rank,
                           endpoint=endpoint, job_id=job_id),
            "-m", WORKER_MODULE]


def free_endpoint(host: str) -> str:
    """``host:port`` with a port free on ``host`` right now (node 0's TCP store binds it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port = sock.getsockname()[1]
    return f"{host}:{port}"


def write_rendezvous(job_dir: Path, job_id: str, *, processes: int, nodes: int,
                     endpoint: str) -> dict[str, Any]:
    """``<job dir>/rendezvous.json``: what a joining host needs (no secret in it)."""
    lines = [shlex.join(["torchrun", *torchrun_args(processes=processes, nodes=nodes,
                                                   node_rank=k, endpoint=endpoint, job_id=job_id),
                         "-m", WORKER_MODULE])
             for k in range(1, nodes)]
    info = {"jobId": job_id, "nodes": nodes, "processesPerNode": processes,
            "endpoint": endpoint, "torchrun": lines}
    path = job_dir / RENDEZVOUS_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(info, handle)
    return info


def join_hint(job_id: str, info: dict[str, Any]) -> str:
    """The phase detail a multi-node job shows while it waits for the other hosts."""
    waiting = info["nodes"] - 1
    return (f"waiting for {waiting} more node{'s' if waiting > 1 else ''} to join at "
            f"{info['endpoint']}: on each other host run `arkor-nb join <server-url> --job "
            f"{job_id} --node-rank K` (K = 1..{waiting}), or the torchrun line in "
            f"{RENDEZVOUS_FILE}")


# ------------------------------------------------------------ finding, stopping


def job_processes(job_id: str) -> list[int]:
    """Pids of this user's live processes started for ``job_id`` (agent and ranks)."""
    marker = f"{JOB_ENV}={job_id}".encode()
    found = []
    for entry in os.scandir("/proc") if os.path.isdir("/proc") else []:
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as handle:
                env = handle.read()
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                state = handle.read().rsplit(b")", 1)[-1].split()[0]
        except OSError:
            continue  # gone, or another user's
        if state != b"Z" and marker in env.split(b"\0"):
            found.append(int(entry.name))
    return found


def signal_job(job_id: str, sig: int) -> list[int]:
    """Send ``sig`` to every process of the job; returns the pids it reached."""
    reached = []
    for pid in job_processes(job_id):
        try:
            os.kill(pid, sig)
            reached.append(pid)
        except OSError:
            pass
    return reached


def stop_job(job_id: str, grace_s: float = 5.0) -> list[int]:
    """SIGTERM every process of the job, SIGKILL what is left after ``grace_s``."""
    first = signal_job(job_id, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while first and job_processes(job_id) and time.monotonic() < deadline:
        time.sleep(0.05)
    signal_job(job_id, signal.SIGKILL)
    return first
