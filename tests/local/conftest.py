"""Fixtures of the local-backend tests: a real server per module, a client, the tiny model.

The helpers they build on live in ``server_harness.py`` (a server process, SSE
frames) and ``training_helpers.py`` (the worker, one shared trained job).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from arkor_nb.local.training.models import ensure_tiny_model
from tests.local.server_harness import ServerProcess
from tests.local.training_helpers import TrainedJob, home, shared_trained_job


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One real server per test module (synthetic steps of 10 ms, pings every 0.3 s)."""
    srv = ServerProcess(tmp_path_factory.mktemp("home")).start()
    yield srv
    srv.stop()


@pytest.fixture()
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


@pytest.fixture()
def built_tiny() -> Path:
    """The built-in base model's folder (built on first use in the session, then cached)."""
    return ensure_tiny_model(home())


@pytest.fixture()
def trained_job() -> TrainedJob:
    """One real 60-step LoRA run on the demo data, shared by the whole session."""
    return shared_trained_job()
