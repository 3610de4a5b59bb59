"""The panel against the Arkor cloud protocol (loopback FakeCloud): failures and auth."""

from __future__ import annotations

import re

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
    from arkor_nb.core.errors import JobNotFoundError

    with FakeCloud() as cloud:
        run = live(job_id="job_doesnotexist123", backend=cloud.backend(), display=False)
        with pytest.raises(JobNotFoundError):
            run.result(timeout=30)
        opens = cloud.stream_opens()
    status = run.panel.status_html.value
    assert "job_doesnotexist123" in status and "does not exist" in status
    assert "when the backend is back" not in status  # waiting would not help
    assert opens == []


def test_an_attached_panel_says_connecting_until_the_job_is_loaded() -> None:
    """Never a false "queued": the trainer's stand-in job carries the model's default status."""
    import threading

    with FakeCloud() as cloud:
        cloud.add_job("job_running1", [started(), log(1, 2.0)], status="running", name="attached")
        cloud.get_job_gate = threading.Event()
        run = live(job_id="job_running1", backend=cloud.backend(), display=False)
        cloud.wait_for(lambda: cloud.requests_to("GET", "/v1/jobs/job_running1"))
        # the lookup is in flight: the panel cannot know the status yet
        assert run.state.status == "connecting"
        assert "queued" not in run.panel.status_text()
        cloud.get_job_gate.set()
        result = run.result(timeout=30)  # replay, then event: end
    assert result.job.status == "running"
    assert run.state.status == "running" and run.state.name == "attached"


def test_a_failed_job_lookup_never_shows_queued_and_reconnects_say_why() -> None:
    """The lookup fails (503): the stand-in job is not adopted as "queued"; the reconnect
    line names the attempt, the next delay and the last error (issue 11: never silent)."""
    import threading

    from tests.sdk.fake_cloud import Drop, Gate

    with FakeCloud() as cloud:
        cloud.add_job("job_running2", [], status="running", name="attached")
        cloud.get_job_statuses.extend([503, 503])  # the first lookup and the one at the end
        gate = threading.Event()
        cloud.script(Drop(), job_id="job_running2")
        cloud.script(Gate(gate), job_id="job_running2")
        from arkor_nb import Trainer

        trainer = Trainer.attach("job_running2", backend=cloud.backend(),
                                 reconnect=ReconnectPolicy(initial_delay=1.0, max_delay=1.0))
        run = live(trainer, display=False)
        # the first open drops; while the client waits to reconnect the panel says so
        cloud.wait_for(lambda: run.state.transport is not None)
        assert run.state.status == "connecting"
        run.panel.render()
        text = run.panel.status_text()
        assert "queued" not in text and "job_running2</b>" not in text  # the id is not a name
        # the policy's 1.0 s with its +/-25 % jitter, capped at max_delay
        assert re.search(r"reconnecting \(attempt 1, next in (0\.[789]|1\.0) s, "
                         r"last error: RemoteProtocolError: \w", text), text
        gate.set()
        run.result(timeout=30)  # a silent open, then the default replay and event: end
    assert len(cloud.requests_to("GET", "/v1/jobs/job_running2")) == 2  # both lookups failed
    assert run.state.status == "connecting"  # still unknown, never the stand-in's "queued"
