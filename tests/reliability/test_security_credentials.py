"""The cloud credentials file holds a bearer token: private from its first byte, never torn."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

from arkor_nb.sdk.credentials import read_credentials, write_credentials


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_written_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    path = tmp_path / ".arkor" / "credentials.json"
    old = os.umask(0)
    try:
        write_credentials({"mode": "anon", "token": "secret-a", "orgSlug": "o"}, path)
    finally:
        os.umask(old)
    assert _mode(path) == 0o600
    assert read_credentials(path) == {"mode": "anon", "token": "secret-a", "orgSlug": "o"}


def test_replacing_a_world_readable_file_makes_it_private(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    path.write_text("{}")
    path.chmod(0o644)
    write_credentials({"mode": "anon", "token": "secret-b"}, path)
    assert _mode(path) == 0o600


def test_readers_never_see_a_torn_file_and_no_temp_files_remain(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    write_credentials({"mode": "anon", "token": "t0", "pad": "x" * 50_000}, path)
    stop = threading.Event()
    torn: list[str] = []
    modes: set[int] = set()

    def reader() -> None:
        while not stop.is_set():
            try:
                text = path.read_text()
                modes.add(_mode(path))
            except FileNotFoundError:  # would mean a non-atomic delete-then-write
                torn.append("<missing>")
                continue
            try:
                json.loads(text)
            except ValueError:
                torn.append(text[:80])

    def writer(k: int) -> None:
        for i in range(150):
            write_credentials({"mode": "anon", "token": f"t{k}-{i}", "pad": "x" * 50_000}, path)

    readers = [threading.Thread(target=reader) for _ in range(2)]
    writers = [threading.Thread(target=writer, args=(k,)) for k in range(3)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert torn == []
    assert modes == {0o600}
    assert [p.name for p in tmp_path.iterdir()] == ["credentials.json"]
