"""LiveRun end to end: real Trainer runs against the local server (synthetic worker)."""

from __future__ import annotations

import _thread
import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from arkor_nb import AbortedError, LocalBackend
from arkor_nb.core.contexts import TrainingResult
from arkor_nb.notebook import LiveRun, compare, live, replay
from arkor_nb.notebook.ipython import RunInterrupted
from tests.local.server_harness import ServerProcess, job_status, wait_for


def backend_status(server: ServerProcess, job_id: str) -> str:
    with server.client() as client:
        return job_status(client, job_id)


def test_completed_run_panel_snapshot_and_record(make_trainer: Any, tmp_path: Path) -> None:
    trainer = make_trainer("complete-me", max_steps=200, save_steps=100, eval_steps=50)
    run = live(trainer, display=False)
    panel = run.panel
    # while it streams, the live chart receives the curve
    wait_for(lambda: "<polyline" in panel.svg_chart.value or "<circle" in panel.svg_chart.value,
             30, what="a first plotted point")
    assert not run.done()
    result = run.result(timeout=60)
    assert isinstance(result, TrainingResult) and result.job.status == "completed"
    st = run.state
    assert st.status == "completed" and st.step == 200 and st.max_steps == 200
    assert [c.step for c in st.checkpoints] == [100, 200]
    xs, ys = st.curves()["loss"]
    assert xs == list(range(1, 201)) and ys[-1] == st.loss
    assert len(st.curves()["eval_loss"][0]) == 4  # steps 50, 100, 150, 200
    # final widget state
    assert "<svg" in panel.svg_chart.value and not panel.svg_chart.live
    assert '<span class="arkor-step">200 / 200</span>' in panel.status_html.value
    assert "arkor-badge-completed" in panel.status_html.value
    assert panel.cancel_button.description == "Completed" and panel.cancel_button.disabled
    # snapshot: inline SVG + the final loss, no script
    html = run.snapshot_html()
    assert "<svg" in html and "<script" not in html.lower()
    assert f"{st.loss:.4g}" in html
    # plotly on demand: the same curves, zoomable
    fig = run.figure()
    assert list(fig.data[0].x) == list(range(1, 201)) and fig.data[-1].name == "learning rate"
    # the redraw throttle: at most one redraw per interval (+ the final one)
    assert run.ticks <= st.elapsed() / run.interval + 3
    # record -> replay -> compare, without the backend
    path = run.save(tmp_path / "run.jsonl")
    again = replay(path)
    assert again.state.status == "completed" and again.state.step == 200
    assert again.state.curves()["loss"] == st.curves()["loss"]
    assert again.state.job_id == run.job_id
    assert "<svg" in again.snapshot_html()
    assert "arkor-badge-completed" in again.panel.status_html.value
    both = compare([run, str(path)]).snapshot_html()
    assert both.count("<polyline") >= 4 and "complete-me" in both


def test_cancel_button_with_backend_toggle_cancels_the_job(make_trainer: Any,
                                                           server: ServerProcess) -> None:
    run = live(make_trainer("cancel-remote", max_steps=100_000), display=False)
    panel = run.panel
    wait_for(lambda: run.state.step >= 5, 30, what="training to start")
    assert panel.remote_toggle.value is True  # default on
    panel.cancel_button.click()
    assert panel.cancel_button.description == "Cancelling…" and panel.cancel_button.disabled
    result = run.result(timeout=60)
    assert result.job.status == "cancelled"
    assert backend_status(server, run.job_id) == "cancelled"
    assert run.state.status == "cancelled"
    assert run.state.cancel_state == "remote-ok"
    assert "backend accepted the cancel" in panel.status_html.value
    assert panel.cancel_button.description == "Cancelled"
    assert run.state.step < 100_000
    # the snapshot left in the notebook: the truth (cancelled on the backend), no stream noise
    snap = run.snapshot_html()
    assert "arkor-badge-cancelled" in snap
    assert f"backend accepted the cancel; job {run.job_id} is cancelled" in snap
    assert "<th" in snap and ">stream</th>" not in snap and "local stream aborted" not in snap


def test_local_only_cancel_keeps_the_job_and_attach_replays_it(make_trainer: Any,
                                                               server: ServerProcess) -> None:
    run = live(make_trainer("cancel-local", max_steps=100_000), display=False)
    wait_for(lambda: run.state.step >= 20, 30, what="training to start")
    run.panel.remote_toggle.value = False
    run.panel.cancel_button.click()
    with pytest.raises(AbortedError):
        run.result(timeout=30)
    assert run.panel.cancel_button.description == "Stopped"
    assert "keeps running on the backend" in run.panel.status_html.value
    assert backend_status(server, run.job_id) == "running"
    seen = run.state.step
    # the snapshot says the job was detached and still runs, without a "stream" row
    snap = run.snapshot_html()
    assert "arkor-badge-detached" in snap and "the job keeps running on the backend" in snap
    assert "cancelled" not in snap
    assert ">stream</th>" not in snap and "local stream aborted" not in snap

    # reattach from "another notebook": history replays from the start, then goes on live
    again = live(job_id=run.job_id, backend=LocalBackend(url=server.url, token=server.token),
                 display=False)
    wait_for(lambda: again.state.step > seen, 30, what="the attached stream to pass the old step")
    assert again.state.curves()["loss"][0][:3] == [1, 2, 3]
    # the reattached panel: the job's name (once), its max steps, time from the job's creation
    assert again.state.name == "cancel-local" and again.state.max_steps == 100_000
    assert again.panel.status_text().count("cancel-local") == 1
    assert again.state.elapsed() >= run.state.elapsed()  # not restarted at the reattach
    with again.state.lock:
        first_log = next(e for e in again.state.log if getattr(e.item, "step", None) == 1)
        origin = again.state.origin
    with run.state.lock:
        first_seen = next(e for e in run.state.log if getattr(e.item, "step", None) == 1)
    # replayed history keeps its own times: step 1 sits where it sat for the first panel
    assert abs((first_log.wall - origin) - (first_seen.wall - run.state.origin)) < 0.5
    again.cancel(remote=True)
    assert again.result(timeout=60).job.status == "cancelled"
    assert backend_status(server, run.job_id) == "cancelled"


def test_interrupt_during_result_cancels_and_says_so_in_one_line(make_trainer: Any,
                                                                 server: ServerProcess) -> None:
    run = live(make_trainer("interrupt-me", max_steps=100_000), display=False)
    panel = run.panel
    wait_for(lambda: run.state.step >= 5, 30, what="training to start")
    seen_blocking: list[bool] = []

    def interrupt() -> None:
        wait_for(lambda: panel.blocking, 10, what="result() to block")
        seen_blocking.append("arkor-blocking" in panel.status_text())
        _thread.interrupt_main()  # what the kernel's stop button does

    threading.Thread(target=interrupt, daemon=True).start()
    with pytest.raises(KeyboardInterrupt) as info:
        run.result(timeout=60)
    assert seen_blocking == [True]  # the panel said clicks wait while result() blocks
    assert isinstance(info.value, RunInterrupted)
    # IPython prints _render_traceback_ instead of a traceback: one true line
    assert info.value._render_traceback_() == [
        f"interrupted: job {run.job_id} cancelled on the backend at step {run.state.step}"]
    assert backend_status(server, run.job_id) == "cancelled"
    assert run.result(timeout=60).job.status == "cancelled"


def test_interrupt_with_the_toggle_off_detaches_and_says_the_job_still_runs(
        make_trainer: Any, server: ServerProcess) -> None:
    run = live(make_trainer("interrupt-detach", max_steps=100_000), display=False)
    panel = run.panel
    wait_for(lambda: run.state.step >= 5, 30, what="training to start")
    panel.remote_toggle.value = False

    def interrupt() -> None:
        wait_for(lambda: panel.blocking, 10, what="result() to block")
        _thread.interrupt_main()

    threading.Thread(target=interrupt, daemon=True).start()
    with pytest.raises(RunInterrupted) as info:
        run.result(timeout=60)
    line = str(info.value)
    assert line.startswith(f"interrupted: detached, job {run.job_id} still running on the backend")
    assert f"stop it with: arkor-nb cancel {run.job_id}" in line
    assert backend_status(server, run.job_id) == "running"
    again = live(job_id=run.job_id, backend=LocalBackend(url=server.url, token=server.token),
                 display=False)
    again.cancel(remote=True)
    assert again.result(timeout=60).job.status == "cancelled"


async def test_a_click_while_a_cell_awaits_the_run_cancels_it(make_trainer: Any,
                                                             server: ServerProcess) -> None:
    """``await run`` yields to the loop: a click handled on that loop stops the run."""
    run = live(make_trainer("await-click", max_steps=100_000), display=False)
    panel = run.panel
    loop = asyncio.get_running_loop()

    def click_when_training() -> None:  # the kernel delivers a click as a callback on its loop
        if run.state.step >= 5:
            panel.cancel_button.click()
        else:
            loop.call_later(0.05, click_when_training)

    loop.call_soon(click_when_training)
    result = await run
    assert result.job.status == "cancelled"
    assert backend_status(server, run.job_id) == "cancelled"


async def test_cancelling_the_cell_task_acts_as_cancel_with_one_line(make_trainer: Any,
                                                                    server: ServerProcess) -> None:
    """ipykernel cancels the cell's task on interrupt; ``await run`` then cancels the job."""
    run = live(make_trainer("await-interrupt", max_steps=100_000), display=False)

    async def run_cell_async() -> Any:  # named like IPython's cell runner, whose task is cancelled
        try:
            return await run
        except BaseException as exc:  # IPython's run_code catches everything and shows it
            return exc

    task = asyncio.ensure_future(run_cell_async())
    while run.state.step < 5:
        await asyncio.sleep(0.05)  # polling our own run's progress from the test loop
    task.cancel()
    shown = await task
    assert isinstance(shown, RunInterrupted)
    assert shown._render_traceback_() == [
        f"interrupted: job {run.job_id} cancelled on the backend at step {run.state.step}"]
    assert backend_status(server, run.job_id) == "cancelled"


async def test_await_run_in_an_async_cell(make_trainer: Any) -> None:
    run = live(make_trainer("awaited", max_steps=30), display=False)
    result = await run
    assert result.job.status == "completed" and run.state.step == 30


def chat_requests(server: ServerProcess) -> int:
    with server.client() as client:
        return int(client.get("/healthz").json()["chatRequests"])


def test_sample_prompts_show_replies_beside_each_checkpoint(make_trainer: Any, server: ServerProcess,
                                                             tmp_path: Path) -> None:
    calls: list[int] = []
    trainer = make_trainer("sampled", max_steps=60, save_steps=20,
                           callbacks={"on_checkpoint": lambda ctx: calls.append(ctx.step)})
    before = trainer.callbacks
    chats = chat_requests(server)
    run = live(trainer, display=False, sample_prompts=["Say hi", "2+2?"])
    assert trainer.callbacks is before  # sampling listens; the user's callbacks are untouched
    run.result(timeout=60)
    # a job live() starts on the local backend: the worker samples, no chat request
    assert chat_requests(server) == chats
    assert trainer.config["samplePrompts"] == ["Say hi", "2+2?"]
    assert calls == [20, 40, 60]  # the user's own callback still ran, in order
    ckpts = run.state.checkpoints
    assert [c.step for c in ckpts] == [20, 40, 60]
    for ck in ckpts:
        assert ck.sample_error is None
        assert set(ck.samples) == {"Say hi", "2+2?"}
        assert all(reply for reply in ck.samples.values())
    html = run.panel.checkpoints_html.value
    reply = ckpts[-1].samples["Say hi"]
    assert reply is not None and reply[:20] in html
    assert trainer.callbacks is before
    # the replies are events: a saved run replays with them, and so does a reattached panel
    again = replay(run.save(tmp_path / "sampled.jsonl"))
    assert [c.samples for c in again.state.checkpoints] == [c.samples for c in ckpts]
    attached = live(job_id=run.job_id, backend=LocalBackend(url=server.url, token=server.token),
                    display=False)
    attached.result(timeout=60)
    assert [c.samples for c in attached.state.checkpoints] == [c.samples for c in ckpts]
    assert chat_requests(server) == chats


def test_attached_job_samples_through_ctx_infer(make_trainer: Any, server: ServerProcess) -> None:
    """A job started without samples (here: attached after it ran) keeps the ctx.infer path."""
    trainer = make_trainer("sampled-later", max_steps=20, save_steps=10)
    trainer.start()
    trainer.wait()
    assert "samplePrompts" not in trainer.config
    chats = chat_requests(server)
    run = live(job_id=trainer.job_id, backend=LocalBackend(url=server.url, token=server.token),
               display=False, sample_prompts=["Say hi"])
    run.result(timeout=60)
    assert chat_requests(server) == chats + 2  # one ctx.infer per checkpoint
    assert [c.samples for c in run.state.checkpoints] == [
        {"Say hi": f"[synthetic step {s}] reply to: Say hi"} for s in (10, 20)]


def test_text_progress_outside_jupyter_does_not_flood(make_trainer: Any, tmp_path: Path) -> None:
    import io

    out = io.StringIO()
    run = LiveRun(make_trainer("texty", max_steps=300, save_steps=100), display=True,
                  text_stream=out).start()
    run.result(timeout=60)
    lines = out.getvalue().splitlines()
    assert lines[-1].startswith("[completed] step 300/300 (100%)")
    assert sum("checkpoint saved" in line for line in lines) == 3
    # 300 events in a few seconds: at most one progress line per 10 s (+ the final one)
    assert len(lines) <= 3 + 1 + run.state.elapsed() / 10 + 1


def test_bad_arguments_name_the_field(make_trainer: Any) -> None:
    from arkor_nb.core.errors import ConfigError

    with pytest.raises(ConfigError, match="trainer"):
        live()
    with pytest.raises(ConfigError, match="sample_prompts"):
        live(make_trainer(), sample_prompts="hello", display=False)  # type: ignore[arg-type]


def test_start_failure_is_shown_in_the_panel(server: ServerProcess) -> None:
    from arkor_nb import create_trainer

    trainer = create_trainer(name="bad", model="arkor-nb/synthetic", max_steps=10,
                             backend=LocalBackend(url=server.url, token="wrong-token"))
    run = live(trainer, display=False)
    with pytest.raises(Exception) as info:
        run.result(timeout=30)
    assert getattr(info.value, "status", None) == 401
    assert "refused the token" in run.panel.status_html.value


def test_a_live_run_sends_few_small_messages(make_trainer: Any) -> None:
    """The throttle in behaviour terms: <= 10 comm messages per second of run, each <= 50 kB."""
    import time

    from tests.panel.comms import recording

    with recording() as wire:
        run = live(make_trainer("quiet", max_steps=400, eval_steps=50), display=False)
        assert run.panel is not None  # built (its widgets opened) as in a notebook
        opened = sum(m.size for m in wire.sent if m.msg_type == "comm_open")
        mark = len(wire.sent)
        started = time.monotonic()
        run.result(timeout=60)
        elapsed = time.monotonic() - started
        sent = wire.updates(mark)
    assert run.state.step == 400
    finish_messages = 12  # final chart and texts, button and toggle states
    assert len(sent) <= 10 * elapsed + finish_messages, (len(sent), elapsed)
    assert max(m.size for m in sent) <= 50_000
    assert opened <= 200_000, opened  # a new panel (all its widgets) is cheap to open


def test_a_config_the_backend_rejects_is_shown_with_its_field(make_trainer: Any,
                                                             tmp_path: Path) -> None:
    from arkor_nb.core.errors import ArkorError

    bad = tmp_path / "missing.jsonl"  # never written
    try:
        trainer = make_trainer("bad-data", dataset={"type": "file", "path": str(bad)})
    except ArkorError as exc:  # rejected before any panel exists: also one clear error
        pytest.fail(f"expected the server to reject it, got a client-side error: {exc}")
    run = live(trainer, display=False)
    with pytest.raises(ArkorError) as info:
        run.result(timeout=30)
    status = run.panel.status_html.value
    assert "could not start the job" in status
    assert str(info.value).split(": ", 1)[-1][:40] in status.replace("&#x27;", "'").replace("&quot;", '"')
    assert run.panel.cancel_button.description == "Stopped"


def test_a_queued_run_names_the_job_ahead_and_can_cancel_it(make_trainer: Any,
                                                             server: ServerProcess) -> None:
    ahead = live(make_trainer("slot-holder", max_steps=100_000), display=False)
    wait_for(lambda: ahead.state.step >= 3, 30, what="the first run to train")
    ahead.cancel(remote=False)  # stop watching: the job keeps the backend's one slot
    waiting = live(make_trainer("behind", max_steps=100_000), display=False)
    panel = waiting.panel
    wait_for(lambda: waiting.state.ahead, 30, what="the queued panel to learn who is ahead")
    assert waiting.state.status == "queued"
    (job,) = waiting.state.ahead
    assert job["id"] == ahead.job_id and job["name"] == "slot-holder" and job["max_steps"] == 100_000
    assert job["step"] >= 3
    panel.render()
    assert f"held by <b>slot-holder</b> <code>{ahead.job_id}</code> at step" in panel.status_html.value
    assert "waiting for the first step" in panel.svg_chart.value
    assert panel.cancel_ahead_button.layout.display == ""
    panel.cancel_ahead_button.click()  # only a flag: the queue thread does the HTTP
    wait_for(lambda: backend_status(server, ahead.job_id) == "cancelled", 30,
             what="the job ahead to be cancelled")
    wait_for(lambda: waiting.state.status == "running", 30, what="the queued run to start")
    panel.render()
    assert panel.cancel_ahead_button.layout.display == "none"
    assert "arkor-queue" not in panel.status_html.value
    waiting.cancel(remote=True)
    assert waiting.result(timeout=60).job.status == "cancelled"
