"""The local backend a test kernel started, read over its own HTTP API (judge from the backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx


class Backend:
    def __init__(self, url: str, token: str) -> None:
        self.http = httpx.Client(
            base_url=url,
            headers={"Authorization": f"Bearer {token}"},
            params={"orgSlug": "local", "projectSlug": "default"},
            timeout=10,
        )

    @classmethod
    def find(cls, home: Path) -> Backend | None:
        from arkor_nb.sdk.local_server import live_server

        info = live_server(home)
        return None if info is None else cls(str(info.url), info.token)

    def job_named(self, name: str) -> dict[str, Any] | None:
        jobs = self.http.get("/v1/jobs").raise_for_status().json()["jobs"]
        matching = [j for j in jobs if j.get("name") == name]
        return matching[0] if matching else None  # newest first

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.http.get(f"/v1/jobs/{job_id}", params={"events": "true", "limit": 10_000})
        return response.raise_for_status().json()

    def status(self, job_id: str) -> str:
        return str(self.job(job_id)["job"]["status"])

    def events(self, job_id: str) -> list[dict[str, Any]]:
        return list(self.job(job_id).get("events") or [])

    def logged_steps(self, job_id: str) -> int:
        return sum(1 for e in self.events(job_id) if e.get("type") == "training.log")

    def cancel(self, job_id: str) -> None:
        self.http.post(f"/v1/jobs/{job_id}/cancel").raise_for_status()
