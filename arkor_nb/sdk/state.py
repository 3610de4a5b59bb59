"""``.arkor/state.json``: which org/project this working directory trains in.

Same file and shape as the TS SDK: ``{"orgSlug", "projectSlug", "projectId"}``.
Anonymous users get a project created (or reused) for them on first use; a
file that belongs to another org is never overwritten, because it may be a
hand-maintained scope for a logged-in account.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from arkor_nb.core.errors import CloudApiError, ScopeError
from arkor_nb.sdk.client import CloudApiClient
from arkor_nb.sdk.credentials import Credentials, atomic_write_json
from arkor_nb.sdk.http import ProjectScope

ProjectState = dict[str, Any]


def state_path(cwd: Path | str | None = None) -> Path:
    return Path(cwd or Path.cwd()) / ".arkor" / "state.json"


def read_state(cwd: Path | str | None = None) -> ProjectState | None:
    """The project scope for ``cwd`` (default: current directory), or None.

    Returns None when the file is absent, unreadable, or lacks the three
    string fields ``orgSlug``, ``projectSlug``, ``projectId``.
    """
    try:
        data = json.loads(state_path(cwd).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    if not all(isinstance(data.get(k), str) for k in ("orgSlug", "projectSlug", "projectId")):
        return None
    state: ProjectState = {k: data[k] for k in ("orgSlug", "projectSlug", "projectId")}
    if isinstance(data.get("anonymousId"), str):
        state["anonymousId"] = data["anonymousId"]
    return state


def write_state(state: ProjectState, cwd: Path | str | None = None) -> None:
    """Write the project scope atomically."""
    missing = [k for k in ("orgSlug", "projectSlug", "projectId") if not isinstance(state.get(k), str)]
    if missing:
        raise ValueError(f"state is missing string field(s) {missing}; expected orgSlug, projectSlug, projectId")
    atomic_write_json(state_path(cwd), state)


def mismatch_message(path: Path, state_org: str, credentials_org: str | None) -> str:
    return (
        f"{path} is scoped to org {state_org!r}, but your anonymous session belongs to "
        f"org {credentials_org!r}. It was left untouched. Either delete {path} to start a "
        "fresh anonymous project, or sign in with the account that owns that org "
        "(`arkor login`, or pass ak.CloudBackend(token=..., org_slug=..., project_slug=...))."
    )


def project_slug_for(cwd: Path) -> str:
    """A project slug derived from the directory name, as the TS SDK does."""
    dashy = re.sub(r"[^a-z0-9-]", "-", (cwd.name or "project").lower()).strip("-")
    return dashy[:40] or "project"


async def ensure_project_state(
    api: CloudApiClient, credentials: Credentials, cwd: Path | str | None = None
) -> ProjectScope:
    """Resolve the scope for ``cwd``, bootstrapping a project for anonymous users.

    Raises ScopeError when the state file belongs to another org (anonymous
    session) or when a logged-in (OAuth) user has no state file.
    """
    directory = Path(cwd or Path.cwd())
    path = state_path(directory)
    existing = read_state(directory)
    anonymous = credentials.get("mode") == "anon"
    if existing is not None:
        if not anonymous or existing["orgSlug"] == credentials.get("orgSlug"):
            return ProjectScope(existing["orgSlug"], existing["projectSlug"])
        raise ScopeError(mismatch_message(path, existing["orgSlug"], credentials.get("orgSlug")))
    if not anonymous or not isinstance(credentials.get("orgSlug"), str):
        raise ScopeError(
            f"No {path} found. Create it with {{\"orgSlug\", \"projectSlug\", \"projectId\"}} "
            "for the project you want, or pass ak.CloudBackend(org_slug=..., project_slug=...)."
        )
    org = credentials["orgSlug"]
    slug = project_slug_for(directory)
    try:
        project = await api.create_project(org, directory.name or "project", slug)
    except CloudApiError as exc:
        if exc.status != 409:
            raise
        found = [p for p in await api.list_projects(org) if p.get("slug") == slug]
        if not found:
            raise
        project = found[0]
    state: ProjectState = {
        "orgSlug": org,
        "projectSlug": str(project.get("slug", slug)),
        "projectId": str(project.get("id", "")),
    }
    write_state(state, directory)
    return ProjectScope(state["orgSlug"], state["projectSlug"])
