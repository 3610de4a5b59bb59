"""A data directory that really runs out of space, or really is read-only.

As root (CI runs ``make test`` as root): a size-limited tmpfs mounted just for
the test, filled with a file until ``ENOSPC``; read-only by remounting it.
Otherwise: the same faults from the kernel by other means, a file-size limit
(``RLIMIT_FSIZE``, writes fail with ``EFBIG``) on the server process, and
``chmod a-w`` (which binds a non-root user).
"""

from __future__ import annotations

import errno
import os
import resource
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def _can_mount() -> bool:
    # ARKOR_NB_REL_NO_MOUNT=1 exercises the non-root fallback on a root machine.
    return os.geteuid() == 0 and os.environ.get("ARKOR_NB_REL_NO_MOUNT") != "1"


class SmallDisk:
    def __init__(self, root: Path, mounted: bool) -> None:
        self.root = root
        self.mounted = mounted
        self.filler = root / "filler.bin"
        self.limited_pid: int | None = None

    @property
    def kind(self) -> str:
        return "tmpfs" if self.mounted else "rlimit"

    def server_preexec(self) -> Callable[[], None] | None:
        """For the non-root fallback: let the server start with room to spare (64 MiB)."""
        if self.mounted:
            return None
        return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 20, resource.RLIM_INFINITY))

    def fill(self, server_pid: int) -> None:
        """No space left from now on."""
        if self.mounted:
            try:
                fh = open(self.filler, "wb")
            except OSError as err:
                if err.errno != errno.ENOSPC:
                    raise
                return  # the server's own writes already filled the disk
            with fh:
                try:
                    while True:
                        fh.write(b"\0" * (1 << 16))
                        fh.flush()
                except OSError:
                    pass
            return
        # Every file the server grows past its current size now fails with EFBIG.
        resource.prlimit(server_pid, resource.RLIMIT_FSIZE, (1, resource.RLIM_INFINITY))
        self.limited_pid = server_pid

    def free(self) -> None:
        if self.mounted:
            self.filler.unlink(missing_ok=True)
        elif self.limited_pid is not None:
            resource.prlimit(
                self.limited_pid,
                resource.RLIMIT_FSIZE,
                (resource.RLIM_INFINITY, resource.RLIM_INFINITY),
            )

    def set_readonly(self, readonly: bool) -> None:
        if self.mounted:
            opts = "remount,ro" if readonly else "remount,rw"
            subprocess.run(["mount", "-o", opts, str(self.root)], check=True)
            return
        for dirpath, dirnames, filenames in os.walk(self.root):
            for name in [*dirnames, *filenames, "."]:
                p = Path(dirpath) / name
                mode = p.stat().st_mode
                p.chmod(mode & ~0o222 if readonly else mode | 0o200)


@contextmanager
def small_disk(size_mb: int = 8) -> Iterator[SmallDisk]:
    root = Path(tempfile.mkdtemp(prefix="arkor-small-disk-"))
    mounted = False
    if _can_mount():
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0700", "tmpfs", str(root)],
            capture_output=True,
        )
        mounted = proc.returncode == 0
    disk = SmallDisk(root, mounted)
    try:
        yield disk
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(root)], capture_output=True)
        try:
            root.rmdir()
        except OSError:
            pass
