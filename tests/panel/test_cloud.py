"""The panel against the Arkor cloud protocol (loopback FakeCloud): failures and auth."""

from __future__ import annotations

import pytest

from arkor_nb import CloudApiError, ReconnectPolicy, create_trainer
from arkor_nb.notebook import live
from tests.sdk.fake_cloud import SUPPORTED_MODEL, FakeCloud, failed, log, started


def test_backend_failure_is_shown_prominently() -> None:
    with FakeCloud() as cloud:
        cloud.default_events = [started(), log(1, 2.0), log(2, 1.5),
                                failed("CUDA out of memory (tried to allocate 2.00 GiB)", step=2)]
        trainer = create_trainer(name="oom", model=SUPPORTED_MODEL, max_steps=10,
                                 backend=cloud.backend())
        run = live(trainer, display=False)
        result = run.result(timeout=30)
    assert result.job.status == "failed"
    panel = run.panel
    assert "Training failed: CUDA out of memory (tried to allocate 2.00 GiB)" in panel.status_html.value
    assert "arkor-badge-failed" in panel.status_html.value
    assert panel.cancel_button.description == "Failed"
    assert "CUDA out of memory" in run.snapshot_html()
    assert run.state.curves()["loss"] == ([1, 2], [2.0, 1.5])


def test_auth_failure_on_stream_open_says_how_to_fix() -> None:
    with FakeCloud() as cloud:
        cloud.default_events = [started(), log(1, 2.0)]
        cloud.fail_opens(401)
        trainer = create_trainer(name="auth", model=SUPPORTED_MODEL, max_steps=10,
                                 backend=cloud.backend(),
                                 reconnect=ReconnectPolicy(initial_delay=0.01, max_delay=0.05))
        run = live(trainer, display=False)
        with pytest.raises(CloudApiError) as info:
            run.result(timeout=30)
    assert info.value.status == 401
    status = run.panel.status_html.value
    assert "arkor-transport" in status and "ARKOR_TOKEN" in status
    assert run.panel.cancel_button.disabled
    assert run.panel.cancel_button.description == "Stopped"


def test_an_unknown_job_id_ends_the_panel_at_once_with_the_id() -> None:
    """Issue 11: ak.live(job_id=...) for a job that does not exist used to retry a 404 forever."""
    from arkor_nb.errors import JobNotFoundError

    with FakeCloud() as cloud:
        run = live(job_id="job_doesnotexist123", backend=cloud.backend(), display=False)
        with pytest.raises(JobNotFoundError):
            run.result(timeout=30)
        opens = cloud.stream_opens()
    status = run.panel.status_html.value
    assert "job_doesnotexist123" in status and "does not exist" in status
    assert "when the backend is back" not in status  # waiting would not help
    assert opens == []
