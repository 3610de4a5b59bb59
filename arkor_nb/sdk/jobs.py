"""Jobs beyond one Trainer: list, look up, read events, cancel, download adapters.

``ak.jobs()``, ``ak.job(id)``, ``ak.events(id)`` and ``ak.download(id)`` work
the same on both backends (``backend="local" | "cloud" | LocalBackend(...) |
CloudBackend(...)``, as in ``create_trainer``), through the one HTTP layer
(``client.py``). Each has an ``*_async`` twin; the sync form runs the same
coroutine on arkor_nb's private loop, so it also works inside Jupyter.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from arkor_nb.core.contexts import best_of, metrics_of
from arkor_nb.core.errors import CloudApiError, ConfigError, JobNotFoundError
from arkor_nb.core.events import (
    CheckpointSaved,
    TrainingCompleted,
    TrainingEvent,
    parse_event,
)
from arkor_nb.core.format import jobs_text
from arkor_nb.core.redact import redact_config
from arkor_nb.core.status import COMPLETED, JOB_STATUSES
from arkor_nb.core.wire import TrainingJob
from arkor_nb.sdk.arguments import check_job_id
from arkor_nb.sdk.backends import ResolvedApi, make_backend
from arkor_nb.sdk.client import CloudApiClient
from arkor_nb.sdk.download import download_file, safe_relative
from arkor_nb.sdk.stream import describe_backend
from arkor_nb.sdk.sync import run_sync

PAGE_SIZE = 1000  # jobs or events per request when more are asked for
# Files of a Hugging Face Trainer checkpoint that only matter to resume training:
# a downloaded adapter folder leaves them out (they are 2-3x the adapter's size).
TRAINING_STATE_FILES = frozenset({"optimizer.pt", "scheduler.pt", "training_args.bin",
                                  "trainer_state.json", "scaler.pt"})


# ------------------------------------------------------------------ helpers


async def resolve_api(backend: Any) -> tuple[ResolvedApi, str]:
    """The backend's API, as create_trainer resolves it, and words naming it for errors
    ("the local backend at http://...")."""
    resolved = make_backend(backend)
    api = await resolved.resolve()
    return api, describe_backend(resolved.kind, api.base_url)


def not_found(err: CloudApiError, job_id: str, where: str) -> CloudApiError:
    """A 404 about this job becomes JobNotFoundError naming the id; others pass through."""
    if err.status != 404 or isinstance(err, JobNotFoundError):
        return err
    field = err.body.get("field") if isinstance(err.body, dict) else None
    if field in (None, "jobId", "job_id", "adapter.jobId"):
        return JobNotFoundError(job_id, where, body=err.body)
    return err


def _redacted(job: TrainingJob) -> TrainingJob:
    """The job with secrets in its config hidden (the same object when there are none)."""
    config = redact_config(job.config)
    return job if config is job.config else job.model_copy(update={"config": config})


# ------------------------------------------------------------------ listing


class JobList(list[TrainingJob]):
    """A plain ``list`` of :class:`TrainingJob` (newest first) that prints as a text table.

    ``print(ak.jobs())`` gives the table; ``backend`` is where the jobs live.
    (``ak.jobs`` is the notebook's :class:`~arkor_nb.notebook.jobs_table.JobTable`,
    this list plus the HTML and widget tables.)
    """

    backend: Any = "local"

    def __str__(self) -> str:
        return jobs_text(self)

    __repr__ = __str__  # a REPL shows the table too; it is still a list for code

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # IPython's terminal
        printer.text(str(self))


def _check_listing(status: Any, limit: Any) -> None:
    if status is not None and status not in JOB_STATUSES:
        raise ConfigError("status", f"must be one of {', '.join(JOB_STATUSES)} or None, got {status!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError("limit", f"must be a positive integer or None (all jobs), got {limit!r}")


async def jobs_async(status: str | None = None, limit: int | None = 100, *,
                     backend: Any = "local") -> JobList:
    """Jobs on the backend, newest first: at most ``limit`` (None = all), optionally
    only those with ``status``. Pages through the server's ``before=`` cursor."""
    _check_listing(status, limit)
    api, _ = await resolve_api(backend)
    out = JobList()
    out.backend = backend
    seen: set[str] = set()
    before: str | None = None
    async with api.client() as client:
        while limit is None or len(out) < limit:
            want = PAGE_SIZE if limit is None else min(PAGE_SIZE, limit - len(out))
            page = await client.list_jobs(api.scope, status=status, limit=want, before=before)
            new = [j for j in page if j.id not in seen]
            seen.update(j.id for j in new)
            # a backend that ignores ?status= still gets filtered
            out.extend(_redacted(j) for j in new if status is None or j.status == status)
            if len(page) < want or not new:  # last page, or a backend that ignores the cursor
                break
            before = page[-1].id
    if limit is not None:
        del out[limit:]
    return out


def jobs(status: str | None = None, limit: int | None = 100, *, backend: Any = "local") -> JobList:
    """Sync twin of :func:`jobs_async`."""
    return run_sync(jobs_async(status, limit, backend=backend))


# ------------------------------------------------------------- one job


async def job_async(job_id: str, *, backend: Any = "local") -> TrainingJob:
    """The job with its status and config (secrets redacted); unknown id -> JobNotFoundError."""
    check_job_id(job_id)
    api, where = await resolve_api(backend)
    async with api.client() as client:
        try:
            return _redacted(await client.get_job(api.scope, job_id))
        except CloudApiError as err:
            raise not_found(err, job_id, where) from None


def job(job_id: str, *, backend: Any = "local") -> TrainingJob:
    """Sync twin of :func:`job_async`."""
    return run_sync(job_async(job_id, backend=backend))


async def _job_and_events(client: CloudApiClient, api: ResolvedApi, where: str,
                          job_id: str) -> tuple[TrainingJob, list[TrainingEvent]]:
    """The job and its whole recorded log, page by page (by ``eventId``)."""
    events: list[TrainingEvent] = []
    after: str | None = None
    job: TrainingJob | None = None
    while True:
        try:
            job, page = await client.job_events_page(api.scope, job_id, after=after,
                                                     limit=PAGE_SIZE)
        except CloudApiError as err:
            raise not_found(err, job_id, where) from None
        for raw in page:
            event_id = raw.get("eventId")
            event = parse_event(raw, str(event_id) if event_id is not None else None)
            if event is not None:
                events.append(event)
        last = page[-1].get("eventId") if page else None
        if len(page) < PAGE_SIZE or last is None or str(last) == after:
            break
        after = str(last)
    assert job is not None
    return _redacted(job), events


async def events_async(job_id: str, *, backend: Any = "local") -> list[TrainingEvent]:
    """The job's recorded events, oldest first, as typed objects (no callbacks fire).

    Unknown event types are skipped, as on the stream."""
    check_job_id(job_id)
    api, where = await resolve_api(backend)
    async with api.client() as client:
        _, events = await _job_and_events(client, api, where, job_id)
    return events


def events(job_id: str, *, backend: Any = "local") -> list[TrainingEvent]:
    """Sync twin of :func:`events_async`."""
    return run_sync(events_async(job_id, backend=backend))


async def cancel_job_async(job_id: str, *, backend: Any = "local") -> TrainingJob:
    """Ask the backend to stop the job (a finished job is returned unchanged)."""
    check_job_id(job_id)
    api, where = await resolve_api(backend)
    async with api.client() as client:
        try:
            job = await client.cancel_job(api.scope, job_id)
            return _redacted(job if job is not None else await client.get_job(api.scope, job_id))
        except CloudApiError as err:
            raise not_found(err, job_id, where) from None


def cancel_job(job_id: str, *, backend: Any = "local") -> TrainingJob:
    """Sync twin of :func:`cancel_job_async`."""
    return run_sync(cancel_job_async(job_id, backend=backend))


# ------------------------------------------------------------- metrics


def best_metric(events: list[TrainingEvent], metric: str) -> tuple[int, float] | None:
    """(step, value) of the highest ``metric`` among the job's ``checkpoint.eval`` events
    (the earliest step on a tie); None when no eval scored it."""
    series = metrics_of(events)
    return best_of(series, metric) if series.get(metric) else None


async def best_metrics_async(job_ids: list[str], metric: str, *,
                             backend: Any = "local") -> dict[str, tuple[int, float] | None]:
    """Each job's best ``metric`` (step, value), from its recorded events; one request per job."""
    if not isinstance(metric, str) or not metric.strip():
        raise ConfigError("metric", f"must be a metric name like 'fields/all', got {metric!r}")
    api, where = await resolve_api(backend)
    out: dict[str, tuple[int, float] | None] = {}
    async with api.client() as client:
        for job_id in job_ids:
            _, events = await _job_and_events(client, api, where, check_job_id(job_id))
            out[job_id] = best_metric(events, metric)
    return out


def best_metrics(job_ids: list[str], metric: str, *,
                 backend: Any = "local") -> dict[str, tuple[int, float] | None]:
    """Sync twin of :func:`best_metrics_async`."""
    return run_sync(best_metrics_async(job_ids, metric, backend=backend))


# ------------------------------------------------------------- download


def saved_steps(events: list[TrainingEvent]) -> list[int]:
    return sorted({e.step for e in events if isinstance(e, CheckpointSaved)})


def _artifact_for(job: TrainingJob, events: list[TrainingEvent], step: int | None) -> dict[str, Any]:
    """The artifact record (``{kind, path, url?}``) of the final adapter or of ``step``."""
    records: list[dict[str, Any]] = []
    for event in events:
        if isinstance(event, (CheckpointSaved, TrainingCompleted)):
            records.extend(a for a in event.artifacts or [] if isinstance(a, dict))
    steps = saved_steps(events)
    listed = ", ".join(map(str, steps)) or "none"
    if step is None:
        for record in reversed(records):
            if record.get("kind") == "adapter":
                return record
        if job.status != COMPLETED:
            raise ConfigError("step", f"job {job.id} is {job.status}, so it has no final adapter; "
                                      f"pass step= one of its saved checkpoints ({listed})")
        return {"kind": "adapter", "path": "adapter"}
    for record in reversed(records):
        if record.get("kind") == "checkpoint" and record.get("step") == step:
            return record
    if step in steps:
        return {"kind": "checkpoint", "step": step, "path": f"checkpoints/step-{step}"}
    raise ConfigError("step", f"job {job.id} has no checkpoint at step {step}; "
                              f"saved checkpoints: {listed}")


async def download_async(job_id: str, to: str | os.PathLike[str] = "adapter", step: int | None = None,
                         *, backend: Any = "local") -> Path:
    """Download the job's final adapter (or checkpoint ``step``) into folder ``to``.

    The folder is a standard peft adapter (``adapter_config.json`` +
    ``adapter_model.safetensors`` + tokenizer files): load it with
    ``PeftModel.from_pretrained(base_model, folder)``. Files that only matter
    to resume training (optimizer, scheduler, RNG state) are left out.
    Returns the folder's path.
    """
    check_job_id(job_id)
    if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 0):
        raise ConfigError("step", f"must be a checkpoint's step (an integer >= 0) or None, got {step!r}")
    dest = Path(to).expanduser()
    if dest.exists() and not dest.is_dir():
        raise ConfigError("to", f"{dest} is a file; pass a folder to download the adapter into")
    api, where = await resolve_api(backend)
    async with api.client() as client:
        job, events = await _job_and_events(client, api, where, job_id)
        record = _artifact_for(job, events, step)
        path = str(record.get("path") or "").strip("/")
        if not path:
            raise CloudApiError(200, f"the backend gave artifact {record!r} of job {job_id} no path")
        try:
            listing = await client.list_artifact(api.scope, job_id, path)
        except CloudApiError as err:
            if err.status == 404:
                raise ConfigError("step", f"job {job_id}'s artifact {path!r} is gone from the "
                                          f"backend ({err.message})") from None
            raise
        dest.mkdir(parents=True, exist_ok=True)
        if listing is None:  # a single file
            url = str(record.get("url") or f"/v1/jobs/{job_id}/artifacts/{path}")
            name = safe_relative(path, f"job {job_id}'s artifact")[-1]
            await download_file(client, api.scope, url, dest, [name])
            return dest
        wanted: list[tuple[list[str], str]] = []
        for item in listing["files"]:
            if not isinstance(item, dict):
                raise CloudApiError(200, f"the backend listed {item!r:.100} in job {job_id}'s "
                                         f"artifact {path!r}; expected {{path, size, url}} objects")
            parts = safe_relative(_relative(item.get("path"), path), f"job {job_id}'s artifact")
            if parts[-1] in TRAINING_STATE_FILES or _rng_state(parts[-1]):
                continue
            url = item.get("url") or f"/v1/jobs/{job_id}/artifacts/{item['path']}"
            wanted.append((parts, str(url)))
        for parts, url in wanted:
            await download_file(client, api.scope, url, dest, parts)
    if not (dest / "adapter_config.json").is_file():
        raise CloudApiError(200, f"job {job_id}'s artifact {path!r} has no adapter_config.json, "
                                 f"so {dest} is not a peft adapter folder")
    return dest


def _relative(file_path: object, root: str) -> object:
    """``adapter/x.json`` under root ``adapter`` -> ``x.json`` (anything else as given)."""
    if isinstance(file_path, str) and file_path.startswith(root + "/"):
        return file_path[len(root) + 1:]
    return file_path


def _rng_state(name: str) -> bool:
    return name.startswith("rng_state") and name.endswith(".pth")


def download(job_id: str, to: str | os.PathLike[str] = "adapter", step: int | None = None,
             *, backend: Any = "local") -> Path:
    """Sync twin of :func:`download_async`."""
    return run_sync(download_async(job_id, to, step, backend=backend))
