"""LocalBackend: explicit URL, reuse-only mode, and auto-launch of the real local server."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

import arkor_nb as ak
from tests.sdk.fake_cloud import FakeCloud


def test_local_backend_with_url_and_token_uses_the_local_scope(cloud: FakeCloud, fast) -> None:
    backend = ak.LocalBackend(url=cloud.url + "/", token=cloud.token)
    trainer = ak.create_trainer(name="n", model="arkor-nb/tiny", backend=backend, reconnect=fast)
    assert trainer.wait().job.status == "completed"
    assert cloud.requests
    assert all(r.query == {"orgSlug": "local", "projectSlug": "default"} for r in cloud.requests)


def test_local_backend_without_autostart_needs_a_running_server(tmp_path: Path) -> None:
    trainer = ak.create_trainer(
        name="n", model="arkor-nb/tiny", backend=ak.LocalBackend(home=tmp_path, autostart=False)
    )
    with pytest.raises(ak.ConfigError, match="arkor-nb serve") as info:
        trainer.start()
    assert info.value.field == "backend"


@pytest.fixture
def local_home(tmp_path: Path) -> Iterator[Path]:
    """A private home; the server the test launches there is stopped by its pid."""
    home = tmp_path / "home"
    yield home
    from arkor_nb.sdk.local_server import live_server

    info = live_server(home)
    if info is not None:
        os.kill(info.pid, signal.SIGTERM)


def test_local_backend_launches_the_server_and_cancel_stops_the_job(local_home: Path, fast) -> None:
    """End to end with the real embedded server and its synthetic worker."""
    holder: list[ak.Trainer] = []
    cancels: list[ak.TrainingJob | None] = []

    def on_log(ctx: ak.LogContext) -> None:
        if ctx.step == 3 and not cancels:
            cancels.append(holder[0].cancel())

    trainer = ak.create_trainer(
        name="synthetic",
        model="arkor-nb/synthetic",
        max_steps=100_000,
        logging_steps=1,
        backend=ak.LocalBackend(home=local_home),
        reconnect=fast,
        callbacks={"on_log": on_log},
    )
    holder.append(trainer)
    result = trainer.wait()
    assert result.job.status == "cancelled"
    assert cancels and cancels[0] is not None and cancels[0].id == trainer.job_id
    # a second trainer on the same home reuses the running server
    again = ak.create_trainer(
        name="again", model="arkor-nb/synthetic", max_steps=3, backend=ak.LocalBackend(home=local_home)
    )
    assert again.wait().job.status == "completed"
    reuse = ak.LocalBackend(home=local_home, autostart=False)
    assert ak.create_trainer(name="x", model="arkor-nb/synthetic", max_steps=1, backend=reuse).start()
    # the server's own validation surfaces as a ConfigError naming the field
    bad = ak.create_trainer(
        name="bad",
        model="arkor-nb/tiny",
        dataset={"type": "file", "path": str(local_home / "missing.jsonl")},
        backend=reuse,
    )
    with pytest.raises(ak.ConfigError) as info:
        bad.start()
    assert info.value.field == "datasetSource.path"
    assert "missing.jsonl" in str(info.value)
