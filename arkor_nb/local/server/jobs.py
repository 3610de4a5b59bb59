"""Job scheduler: a FIFO queue, one worker subprocess per running job.

``JobManager`` creates jobs (secrets kept in memory, ``***`` in the store),
starts queued ones up to ``max_running``, cancels, and settles each run's
end. A running worker is a ``WorkerRun`` (``worker_process.py``: its command,
stdio and exit words); per run one thread reads its stdout, and each chunk's
events are appended to the store in one transaction (durable first) and then
wake the SSE subscribers; another keeps the tail of stderr. The server adds
``jobId``, ``timestamp`` and each artifact's ``url``. A worker that exits
without a terminal event ends its job ``failed`` with the exit code or signal
and the last stderr lines; jobs left ``running`` by a server that died are
marked ``failed`` when the next server starts.
"""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from arkor_nb.core.events import (
    TERMINAL_EVENT_MODELS,
    TrainingCancelled,
    TrainingEvent,
    TrainingFailed,
    TrainingPhase,
)
from arkor_nb.core.home import child_env
from arkor_nb.core.redact import REDACTED
from arkor_nb.core.status import PREPARING, QUEUED, RUNNING
from arkor_nb.local.server.store import Store
from arkor_nb.local.server.torchrun import (
    JOB_ENV,
    RENDEZVOUS_HOST_ENV,
    free_endpoint,
    join_hint,
    resolve_processes,
    server_default_processes,
    stop_job,
    write_rendezvous,
)
from arkor_nb.local.server.worker_process import (
    WorkerRun,
    describe_exit,
    worker_command,
)
from arkor_nb.local.training.models import SYNTHETIC_MODEL_ID
from arkor_nb.local.training.worker_protocol import JobSpec, split_secrets

log = logging.getLogger("arkor_nb.local")

_EXIT_GRACE_S = 30.0


def new_job_id() -> str:
    return "job_" + secrets.token_hex(8)


class JobManager:
    """Owns the queue and the worker processes of one server."""

    def __init__(
        self,
        store: Store,
        home: Path,
        notify: Callable[[str], None],
        *,
        max_running: int = 1,
        cancel_grace_s: float = 30.0,
    ) -> None:
        self.store = store
        self.home = Path(home)
        self.notify = notify
        self.max_running = max(1, max_running)
        self.cancel_grace_s = cancel_grace_s
        self._runs: dict[str, WorkerRun] = {}
        self._secrets: dict[str, dict[str, str]] = {}  # job id -> secrets, until it starts
        self._lock = threading.RLock()
        self._closed = False
        self._retry_wake = threading.Event()  # set at shutdown: stops retry loops at once
        self.default_processes = server_default_processes()  # arkor-nb serve --processes
        self.rendezvous_host = os.environ.get(RENDEZVOUS_HOST_ENV, "127.0.0.1")

    def job_dir(self, job_id: str) -> Path:
        return self.home / "jobs" / job_id

    # -------------------------------------------------------------- lifecycle

    def recover(self) -> list[str]:
        """Fail the jobs a dead server left ``running``; returns their ids."""
        interrupted = self.store.job_ids_with_status(RUNNING)
        for job_id in interrupted:
            step = self.store.last_step(job_id)
            at = f" at step {step}" if step is not None else ""
            reason = (
                f"the arkor-nb local server stopped while this job was running{at} "
                "(it was killed or crashed), so training was interrupted; "
                "start the job again to retrain"
            )
            self._fail(job_id, reason, step)
            if stop_job(job_id):  # ranks a killed server left behind
                log.warning("job %s: stopped the processes a dead server left", job_id)
            log.warning("job %s was interrupted by a server stop; marked failed", job_id)
        return interrupted

    def _fail(self, job_id: str, reason: str, step: int | None = None) -> None:
        """End a job ``failed``: its terminal event and status in one transaction."""
        self.store.append(job_id, [TrainingFailed(error=reason, step=step)])
        self.notify(job_id)

    def start(self) -> None:
        """Recover, then start queued jobs (including ones queued before a restart)."""
        self.recover()
        self._schedule()

    def shutdown(self, timeout: float = 10.0) -> None:
        """Ask every worker to cancel, wait up to ``timeout``, then kill the rest."""
        with self._lock:
            self._closed = True
            self._retry_wake.set()
            runs = list(self._runs.values())
        for run in runs:
            # Say why in the log first: the worker's own "cancelled" would misstate it.
            if not run.terminal_seen:
                at = f" at step {run.last_step}" if run.last_step is not None else ""
                reason = (f"the arkor-nb local server was shut down while this job was "
                          f"running{at}; start the job again to retrain")
                try:
                    self._fail(run.job_id, reason, run.last_step)
                    run.terminal_seen = True
                except Exception:
                    log.exception("job %s: could not record the shutdown", run.job_id)
            run.send_cancel()
        deadline_each = timeout / max(1, len(runs))
        for run in runs:
            try:
                run.proc.wait(timeout=deadline_each)
            except subprocess.TimeoutExpired:
                run.proc.kill()
            stop_job(run.job_id, grace_s=1.0)  # every rank, not only the pid we started

    # ------------------------------------------------------------------- jobs

    def create(self, name: str, config: dict[str, Any]) -> dict[str, Any]:
        """Queue a job. Secrets in ``config`` stay in memory only: the store gets ``***``."""
        job_id = new_job_id()
        config = self._with_processes(config)
        stored, secrets = split_secrets(config, REDACTED)
        with self._lock:
            if secrets:
                self._secrets[job_id] = secrets
            self.store.create_job(job_id, name, stored)
        self._schedule()
        job = self.store.get_job(job_id)
        assert job is not None
        return job

    def _with_processes(self, config: dict[str, Any]) -> dict[str, Any]:
        """The job's effective process count in its config (``"auto"`` and the server's
        default resolved), so the job record says how many processes run."""
        if config.get("model") == SYNTHETIC_MODEL_ID:
            return config
        processes = resolve_processes(config.get("processes", self.default_processes))
        if processes == 1 and "processes" not in config:
            return config
        return {**config, "processes": processes}

    def cancel(self, job_id: str) -> dict[str, Any] | None:
        """Queued: cancelled at once. Running: ask the worker. Terminal: unchanged."""
        with self._lock:
            job = self.store.get_job(job_id)
            if job is None:
                return None
            if job["status"] == QUEUED:
                self._secrets.pop(job_id, None)
                self.store.append(job_id, [TrainingCancelled()])
                self.notify(job_id)
            elif job["status"] == RUNNING:
                run = self._runs.get(job_id)
                if run is not None and not run.cancel_requested:
                    run.cancel_requested = True
                    run.send_cancel()
                    timer = threading.Timer(self.cancel_grace_s, run.force_stop)
                    timer.daemon = True
                    timer.start()
        return self.store.get_job(job_id)

    def busy(self) -> bool:
        """Whether any job is running or waiting to run."""
        return bool(self._runs) or bool(self.store.job_ids_with_status(QUEUED))

    def worker_pid(self, job_id: str) -> int | None:
        run = self._runs.get(job_id)
        return None if run is None else run.proc.pid

    # -------------------------------------------------------------- scheduling

    def _schedule(self) -> None:
        with self._lock:
            if self._closed:
                return
            while len(self._runs) < self.max_running:
                queued = self.store.job_ids_with_status(QUEUED)
                if not queued:
                    return
                job_id = queued[0]
                if not self.store.mark_running(job_id):
                    continue
                if self._secrets_lost(job_id):
                    continue
                try:
                    self._spawn(job_id)
                except OSError as err:
                    self._fail(job_id, f"could not start the training worker: {err}")

    def _secrets_lost(self, job_id: str) -> bool:
        """A job queued before a restart whose secret (e.g. a dataset token) died with it."""
        job = self.store.get_job(job_id)
        assert job is not None
        _, needed = split_secrets(job["config"], REDACTED)
        if not needed or job_id in self._secrets:
            return False
        self._fail(job_id, "this job needs a secret (the dataset token, or the password or "
                   "signed query of its dataset URL) that the local server kept only in memory, "
                   "and the server restarted before the job started; secrets are never "
                   "written to disk, so submit the job again")
        return True

    def _spawn(self, job_id: str) -> None:
        job = self.store.get_job(job_id)
        assert job is not None
        job_dir = self.job_dir(job_id)
        job_dir.mkdir(parents=True, exist_ok=True)
        env = child_env()
        env.pop("ARKOR_NB_TOKEN", None)  # a worker never needs the server's token
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        env["PYTHONUNBUFFERED"] = "1"
        env[JOB_ENV] = job_id  # how stop_job finds every rank (torchrun gives each a session)
        endpoint = self._rendezvous(job_id, job["config"], job_dir)
        proc = subprocess.Popen(
            worker_command(job["config"], endpoint, job_id),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,  # cwd is the server's: data roots and relative paths mean the same there
            start_new_session=True,
        )
        (job_dir / "worker.pid").write_text(str(proc.pid))
        run = WorkerRun(job_id=job_id, proc=proc, job_dir=job_dir)
        self._runs[job_id] = run
        spec = JobSpec(job_id=job_id, config=job["config"], job_dir=job_dir, home=self.home,
                       secrets=self._secrets.pop(job_id, {}))
        run.write(spec.to_line())
        run.start_stderr_reader()
        threading.Thread(target=self._follow, args=(run,), daemon=True,
                         name=f"worker-{job_id}").start()
        log.info("job %s started (worker pid %d)", job_id, proc.pid)

    def _rendezvous(self, job_id: str, config: dict[str, Any], job_dir: Path) -> str | None:
        """A multi-node job: node 0's endpoint, written for the joiners and shown in its log."""
        nodes = int(config.get("nodes", 1))
        if nodes == 1 or config.get("model") == SYNTHETIC_MODEL_ID:
            return None
        endpoint = free_endpoint(self.rendezvous_host)
        info = write_rendezvous(job_dir, job_id, processes=int(config.get("processes", 1)),
                                nodes=nodes, endpoint=endpoint)
        self.store.append(job_id, [TrainingPhase(phase=PREPARING, detail=join_hint(job_id, info))])
        self.notify(job_id)
        return endpoint

    # ------------------------------------------------------------ worker output

    def _follow(self, run: WorkerRun) -> None:
        """Record the worker's events until its stdout ends, then settle the job's end."""
        failure: str | None = None
        try:
            run.read_events(lambda batch: self._record(run, batch))
        except Exception as err:  # never leave a job running because recording broke
            log.exception("job %s: recording the worker's output failed", run.job_id)
            failure = (f"the local server could not record this job's events ({err}); "
                       "training was stopped")
            run.proc.kill()
        finally:
            self._settle(run, failure)

    def _record(self, run: WorkerRun, batch: list[TrainingEvent]) -> None:
        self.store.append(run.job_id, batch)
        run.terminal_seen = isinstance(batch[-1], TERMINAL_EVENT_MODELS)
        self.notify(run.job_id)

    def _settle(self, run: WorkerRun, failure: str | None = None) -> None:
        """Record how the run ended (unless the worker did), then free its slot."""
        try:  # stdout is closed: a worker that lingers after that is stuck, not training
            returncode = run.proc.wait(timeout=_EXIT_GRACE_S)
        except subprocess.TimeoutExpired:
            log.warning("job %s: worker closed stdout but did not exit; killing it", run.job_id)
            run.proc.kill()
            returncode = run.proc.wait()
        if stop_job(run.job_id, grace_s=2.0):  # e.g. a rank whose agent was killed
            log.warning("job %s: stopped processes left after its worker exited", run.job_id)
        run.close_stdin()
        try:
            if not run.terminal_seen:
                self._record_end(run, returncode, failure)
        except Exception:
            log.exception("job %s: could not record how it ended; retrying", run.job_id)
            self._retry_record_end(run, returncode, failure)
        log.info("job %s worker exited (%s)", run.job_id, returncode)
        with self._lock:
            self._runs.pop(run.job_id, None)
        try:
            self._schedule()
        except Exception:
            log.exception("could not start the next queued job")

    def _retry_record_end(self, run: WorkerRun, returncode: int, failure: str | None) -> None:
        """Keep trying to write a job's end (e.g. the disk was full) in the background.

        Until it is written the job would claim ``running`` with nothing running
        and its streams would never end; once space is back it ends ``failed``
        with the reason. (A server stop leaves it to ``recover()`` at next start.)
        """
        def retry() -> None:
            delay = 0.25
            while not self._closed:
                self._retry_wake.wait(delay)
                try:
                    self._record_end(run, returncode, failure)
                    log.info("job %s: its end was recorded after a retry", run.job_id)
                    return
                except Exception:
                    delay = min(delay * 2, 5.0)

        threading.Thread(target=retry, daemon=True, name=f"record-end-{run.job_id}").start()

    def _record_end(self, run: WorkerRun, returncode: int, failure: str | None) -> None:
        if failure is None and run.cancel_requested:
            self.store.append(run.job_id, [TrainingCancelled(step=run.last_step)])
            self.notify(run.job_id)
            return
        if failure is None:
            if run.stderr_thread is not None:  # let it drain the last lines
                run.stderr_thread.join(timeout=2.0)
            failure = describe_exit(returncode, list(run.stderr_tail))
        self._fail(run.job_id, failure, run.last_step)
