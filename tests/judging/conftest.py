"""A real local server (subprocess) sharing the session's tiny model, for the judging tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import arkor_nb as ak
from tests.local.server_harness import ServerProcess
from tests.local.training_helpers import home


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    from arkor_nb.local.training.models import ensure_tiny_model

    ensure_tiny_model(home())
    srv_home = home() / "judging-server"
    if not srv_home.exists():
        srv_home.mkdir(parents=True)
        (srv_home / "models").symlink_to(home() / "models", target_is_directory=True)
    srv = ServerProcess(srv_home).start()
    yield srv
    srv.stop()


@pytest.fixture()
def backend(server: ServerProcess) -> ak.LocalBackend:
    return ak.LocalBackend(url=server.url, token=server.token)
