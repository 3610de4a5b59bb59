"""Issue 19 point 8: arguments that cannot travel are arkor_nb errors naming them.

Against a real local server (so a check that is missing would reach it): a NUL
or a lone surrogate in a job id, a lone surrogate in a message, NaN and
infinities as sampling numbers, and the CLI given arguments that are not UTF-8
(exit 2, one line on stderr, no traceback).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import arkor_nb as ak
from arkor_nb.sdk.jobs import cancel_job
from tests.reliability.harness import LocalServer, report, synthetic_config

REPO = Path(__file__).resolve().parents[2]
_STATE: dict[str, Any] = {}


@pytest.fixture(scope="module", autouse=True)
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    home = tmp_path_factory.mktemp("client-input") / "home"
    with LocalServer(home) as server:
        _STATE["srv"] = server
        _STATE["job"] = server.create_job(synthetic_config(3))["id"]
        yield server


def backend() -> ak.LocalBackend:
    return _STATE["srv"].backend()


BAD_IDS = ["job_x\x00", "job_\ud800", "job_\udcff", "job_a?b=1", "job_a#b", "job\n1", "j" * 300]


@pytest.mark.parametrize("job_id", BAD_IDS)
def test_bad_job_ids_are_config_errors_on_every_entry(job_id: str, tmp_path: Path) -> None:
    calls = [
        lambda: ak.job(job_id, backend=backend()),
        lambda: ak.events(job_id, backend=backend()),
        lambda: cancel_job(job_id, backend=backend()),
        lambda: ak.download(job_id, to=tmp_path / "out", backend=backend()),
        lambda: ak.chat(job_id, "hi", backend=backend()),
        lambda: ak.Trainer.attach(job_id, backend=backend()),
    ]
    for call in calls:
        with pytest.raises(ak.ConfigError) as info:
            call()
        assert info.value.field == "job_id", info.value
        assert "job_id" in str(info.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("messages, field", [
    ("\udfff", "messages"),
    ("hi \udcff there", "messages"),
    ([{"role": "user", "content": "ok"}, {"role": "user", "content": "\ud800"}],
     "messages[1].content"),
    ([{"role": "us\udcffer", "content": "ok"}], "messages[0].role"),
    ([{"role": "user", "content": None}], "messages[0].content"),
])
def test_messages_that_are_not_text_are_config_errors(messages: Any, field: str) -> None:
    job_id = _STATE["job"]
    with pytest.raises(ak.ConfigError) as info:
        ak.chat(job_id, messages, backend=backend())
    assert info.value.field == field, info.value
    with pytest.raises(ak.ConfigError):
        ak.chat_async(job_id, messages, backend=backend())


@pytest.mark.parametrize("sampling, field", [
    ({"temperature": float("nan")}, "temperature"),
    ({"temperature": float("inf")}, "temperature"),
    ({"top_p": float("nan")}, "top_p"),
    ({"max_tokens": 1.5}, "max_tokens"),
    ({"max_tokens": float("nan")}, "max_tokens"),
    ({"temperature": "hot"}, "temperature"),
])
def test_sampling_numbers_that_json_cannot_carry_are_config_errors(
        sampling: dict[str, Any], field: str) -> None:
    with pytest.raises(ak.ConfigError) as info:
        ak.chat(_STATE["job"], "hi", backend=backend(), **sampling)
    assert info.value.field == field, info.value


def test_a_good_chat_still_works_after_the_checks() -> None:
    srv: LocalServer = _STATE["srv"]
    job_id = _STATE["job"]
    import time

    deadline = time.monotonic() + 60
    while srv.job(job_id)["job"]["status"] != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    reply = ak.chat(job_id, "héllo ✓", backend=backend(), temperature=0.5, max_tokens=8)
    assert isinstance(reply, str) and reply


def _cli(*args: bytes) -> subprocess.CompletedProcess[bytes]:
    srv: LocalServer = _STATE["srv"]
    env = {**os.environ, "ARKOR_NB_HOME": str(srv.home), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "arkor_nb", *args], capture_output=True,
                          env=env, timeout=120, cwd=srv.home.parent)


@pytest.mark.parametrize("args", [
    (b"logs", b"job_\xff\xfe"),
    (b"logs", b"-f", b"job_\xff"),
    (b"download", b"job_\xe9t\xe9"),
    (b"cancel", b"job_\x80"),
    (b"chat", b"job_\xff", b"hi"),
    (b"chat", b"JOB", b"caf\xe9 in latin-1"),
])
def test_cli_arguments_that_are_not_utf8_exit_2_with_one_line(args: tuple[bytes, ...]) -> None:
    args = tuple(_STATE["job"].encode() if a == b"JOB" else a for a in args)
    proc = _cli(*args)
    err = proc.stderr.decode("utf-8", "replace").strip()
    assert proc.returncode == 2, (proc.returncode, err)
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    assert err.startswith("arkor-nb: ")
    assert ("job_id" in err) or ("messages" in err), err
    report("test_client_input::cli_non_utf8", args=[a.decode("latin-1") for a in args],
           exit=proc.returncode, stderr=err[:160])
