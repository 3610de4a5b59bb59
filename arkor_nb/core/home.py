"""The local backend's home folder: shared by the SDK (which finds or starts a
server there) and the server (which writes its runtime file there).

``<home>/server.json`` says where a live server listens; ``<home>/server.log``
is its log. Nothing here talks HTTP or imports the server.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

RUNTIME_FILE = "server.json"
SERVER_LOG = "server.log"


def home_dir() -> Path:
    """``$ARKOR_NB_HOME``, else the platform's user data dir for ``arkor-nb``."""
    env = os.environ.get("ARKOR_NB_HOME")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("arkor-nb"))


def prepare_home(home: Path) -> Path:
    home = Path(home).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    return home


@contextmanager
def flock(path: Path, *, blocking: bool = True) -> Iterator[IO[str] | None]:
    """An exclusive ``flock`` on ``path``; yields None if non-blocking and taken."""
    import fcntl  # here, not at import: POSIX only, and cloud users never get here
    handle = open(path, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield None
            return
        yield handle
    finally:
        handle.close()


def pid_alive(pid: object) -> bool:
    """Whether ``pid`` names a live process other than this one."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def read_runtime(home: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((home / RUNTIME_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def child_env() -> dict[str, str]:
    """Our environment, plus this package's location on PYTHONPATH.

    Children run ``python -m arkor_nb...`` from another working directory, so
    they must find the same ``arkor_nb`` even when it is not pip-installed.
    """
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in parts:
        env["PYTHONPATH"] = os.pathsep.join([root, *parts])
    return env
