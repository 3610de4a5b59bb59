"""Which files a job may read: the data-folder sandbox.

A dataset path is resolved (symlinks included) and must land inside an
allowed root: the working directory, the user's home, the arkor-nb home or
the temp dir (never the filesystem root or a system folder), plus any listed
in ``ARKOR_NB_DATA_ROOTS``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from arkor_nb.core.errors import ConfigError
from arkor_nb.local.data.rows import FILE_FORMATS
from arkor_nb.local.data.sources import file_format

# Never implicit data roots, even when the server runs in them (a server
# started from "/" inherits it as its working directory): the filesystem root
# and the system's own folders. ARKOR_NB_DATA_ROOTS may still list any folder
# but the root.
_ROOT = Path("/")
SYSTEM_DIRS = frozenset(Path(p) for p in (
    "/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc",
    "/run", "/sbin", "/sys", "/usr", "/var",
))


def _is_system(path: Path) -> bool:
    """The root, a system folder, or inside one (the temp dir excepted)."""
    temp = Path(tempfile.gettempdir()).resolve()
    if path == temp or path.is_relative_to(temp):
        return False
    return path in SYSTEM_DIRS or any(d != _ROOT and path.is_relative_to(d) for d in SYSTEM_DIRS)


def allowed_roots(home: Path) -> list[Path]:
    """Directories a dataset file may live in (after resolving symlinks).

    The working directory, the user's home, the arkor-nb home and the temp dir,
    unless one of them is the filesystem root or a system folder; plus any
    listed in ``ARKOR_NB_DATA_ROOTS`` (os.pathsep separated; any folder but
    the root).
    """
    implicit = [Path.cwd(), Path.home(), Path(home), Path(tempfile.gettempdir())]
    roots = [r for r in (p.expanduser().resolve() for p in implicit) if not _is_system(r)]
    extra = os.environ.get("ARKOR_NB_DATA_ROOTS", "")
    explicit = (Path(p).expanduser().resolve() for p in extra.split(os.pathsep) if p)
    roots += [r for r in explicit if r != _ROOT]
    return roots


def resolve_data_path(path: Any, field: str, home: Path) -> Path:
    """An existing, readable dataset file inside the allowed roots (symlinks resolved)."""
    if not isinstance(path, str) or not path.strip():
        raise ConfigError(field, "must be a file path like 'data/triage.jsonl'")
    raw = Path(path).expanduser()
    relative = not raw.is_absolute()
    if relative:
        raw = Path.cwd() / raw
    try:
        real = raw.resolve(strict=True)
    except (FileNotFoundError, RuntimeError):
        where = (f"a relative path sent over HTTP is resolved against the server's working "
                 f"directory {Path.cwd()}; send an absolute path" if relative else
                 "arkor_nb resolves a relative path against the folder your Python process "
                 "runs in, os.getcwd(), before sending it")
        raise ConfigError(field, f"file not found: {raw}; check the path ({where})") from None
    except (OSError, ValueError) as exc:  # name too long, NUL byte, ...
        raise ConfigError(field, f"cannot use {path[:80]!r} as a dataset file ({exc}); "
                          "pass a path like 'data/triage.jsonl'") from None
    roots = allowed_roots(home)
    if not any(real == r or real.is_relative_to(r) for r in roots):
        why = " (a system folder, never a data folder by itself)" if _is_system(real) else ""
        fix = "copy the file under your home or working directory"
        if real.parent != _ROOT:
            fix += (", or add its folder to ARKOR_NB_DATA_ROOTS where the server starts "
                    f"(ARKOR_NB_DATA_ROOTS={real.parent})")
        allowed = ", ".join(map(str, roots)) or "none"
        raise ConfigError(field, f"{path!r} resolves to {real}, outside the allowed data "
                          f"folders{why} (allowed: {allowed}); {fix}")
    if not real.is_file():
        raise ConfigError(field, f"{path!r} is not a regular file")
    if file_format(real) is None:
        raise ConfigError(field, f"unsupported file type {real.suffix!r}; use one of "
                          f"{', '.join(sorted(FILE_FORMATS))}")
    if not os.access(real, os.R_OK):
        raise ConfigError(field, f"{path!r} is not readable; check its permissions")
    return real
