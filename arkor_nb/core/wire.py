"""The base of every JSON body, and the job record.

Wire models are pydantic v2 with camelCase aliases (the Arkor wire format);
Python code reads them in snake_case.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from arkor_nb.core.status import QUEUED, TERMINAL_STATUSES


class WireModel(BaseModel):
    """Base for every JSON body: camelCase on the wire, snake_case in Python.

    Unknown fields are kept (``extra="allow"``) so a newer server never breaks
    an older client.
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready camelCase dict (nulls left out), as the wire carries it."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class TrainingJob(WireModel):
    id: str
    name: str = ""
    status: str = QUEUED  # a JobStatus; kept as str so new statuses never fail parsing
    config: dict[str, Any] = Field(default_factory=dict)
    created_at: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    error: str | None = None
    org_slug: str | None = None
    project_slug: str | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES
