"""``arkor-nb join URL --job ID``: lend this host's processes to a multi-node job.

The server runs node 0 of a job with ``nodes`` > 1 and waits; each other host
runs this command once (``--node-rank`` 1, 2, ...). It reads the job's
``rendezvous.json`` artifact (with the server's token) and runs torchrun with
that endpoint; this host's ranks get the spec, the validated config and the
dataset from rank 0, so it needs this package, torch and the base model, but
neither the data files nor the server's paths. A scheduler (SLURM, Kubernetes)
may instead run the ``torchrun`` line of ``rendezvous.json`` itself.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from typing import Any

from arkor_nb.core.home import child_env
from arkor_nb.local.server.torchrun import JOB_ENV, RENDEZVOUS_FILE, launch_command


def fetch_rendezvous(url: str, job_id: str, token: str, cafile: str | None = None,
                     insecure: bool = False) -> dict[str, Any]:
    """The job's ``rendezvous.json`` from the server; ValueError says what went wrong."""
    context = None
    if url.startswith("https://"):
        context = ssl.create_default_context(cafile=cafile)
        if insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    request = urllib.request.Request(
        f"{url.rstrip('/')}/v1/jobs/{job_id}/artifacts/{RENDEZVOUS_FILE}",
        headers={"Authorization": f"Bearer {token}", "X-Arkor-Client": "arkor-nb-join"})
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as response:  # noqa: S310
            info = json.load(response)
    except urllib.error.HTTPError as err:
        detail = err.read().decode("utf-8", "replace")[:300]
        if err.code == 404:
            raise ValueError(f"job {job_id} has no {RENDEZVOUS_FILE} on {url}: it is not a "
                             f"multi-node job (nodes > 1) or has not started yet ({detail})") from None
        raise ValueError(f"{url} answered {err.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as err:
        raise ValueError(f"cannot reach {url}: {getattr(err, 'reason', err)}") from None
    if not isinstance(info, dict) or not {"nodes", "processesPerNode", "endpoint"} <= set(info):
        raise ValueError(f"{RENDEZVOUS_FILE} of job {job_id} is not what this version expects")
    return info


def join_command(info: dict[str, Any], node_rank: int) -> list[str]:
    nodes = int(info["nodes"])
    if not 1 <= node_rank < nodes:
        raise ValueError(f"--node-rank must be between 1 and {nodes - 1} for this job "
                         f"of {nodes} nodes (node 0 is the server), got {node_rank}")
    return launch_command(int(info["processesPerNode"]), nodes, node_rank=node_rank,
                          endpoint=str(info["endpoint"]), job_id=str(info.get("jobId", "")))


def join_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="arkor-nb join",
        description="Run this host's share of a multi-node job (torchrun, node rank >= 1).")
    parser.add_argument("url", help="the arkor-nb server, e.g. https://gpu-box:8765")
    parser.add_argument("--job", required=True, help="the job id (job_...)")
    parser.add_argument("--token", default=None, help="the server's token (default $ARKOR_NB_TOKEN)")
    parser.add_argument("--node-rank", type=int, default=1,
                        help="this host's node rank, 1..nodes-1 (default 1)")
    parser.add_argument("--cacert", default=None,
                        help="trust this certificate for an https:// server (a self-signed one)")
    parser.add_argument("--print", action="store_true", dest="print_only",
                        help="print the torchrun command instead of running it")
    args = parser.parse_args(argv)
    token = args.token or os.environ.get("ARKOR_NB_TOKEN")
    if not token:
        parser.error("pass --token or set ARKOR_NB_TOKEN (the server's token)")
    try:
        info = fetch_rendezvous(args.url, args.job, token, args.cacert)
        command = join_command(info, args.node_rank)
    except ValueError as err:
        print(f"arkor-nb join: {err}", file=sys.stderr)
        return 2
    if args.print_only:
        print(" ".join(command))
        return 0
    env = child_env()
    env.pop("ARKOR_NB_TOKEN", None)  # the ranks never talk to the server
    # Not the server's marker: a server on this same host must not stop a joiner's agent.
    env[JOB_ENV] = f"{args.job}:node{args.node_rank}"
    print(f"arkor-nb join: node {args.node_rank} of {info['nodes']} for job {args.job} "
          f"at {info['endpoint']}", file=sys.stderr, flush=True)
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, env=env)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGTERM)  # torchrun stops its ranks
        proc.wait()
        return 130
