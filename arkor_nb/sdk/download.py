"""Artifact downloads: credentials only for the backend's own origin, files
written without following a link arkor_nb did not make.

Whether a URL gets the bearer token is decided by the parsed URL (scheme,
host and port, compared case-insensitively with the backend's base URL), never
by a string prefix: ``HTTP://other/``, ``Https://other/``, another port and
``http://own-host@other/`` are all another origin. Such URLs (a signed
storage link, say) are fetched **without** credentials; schemes other than
http and https are refused. Redirects are followed here, one hop at a time,
and each hop is judged the same way, so the token never follows a redirect to
another host.

A file lands in the destination through a temporary file created with
``O_CREAT | O_EXCL | O_NOFOLLOW`` and renamed over its final name; every
folder below the destination is opened with ``O_NOFOLLOW``. A symlink
planted in the destination (a folder, ``x.part``, or the final name itself)
is never written through: a folder link is an error, a file link is replaced.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

import httpx

from arkor_nb.core.errors import CloudApiError, ConfigError, error_from_body
from arkor_nb.sdk.client import CloudApiClient
from arkor_nb.sdk.http import ProjectScope, tls_verify

MAX_REDIRECTS = 5
MAX_NAME_BYTES = 255  # one path component (Linux NAME_MAX)
MAX_PATH_BYTES = 4096  # a whole relative path (Linux PATH_MAX)
_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin(url: httpx.URL) -> tuple[str, str, int | None]:
    """``(scheme, host, port)`` with the scheme and host lower-cased and the default port filled in."""
    scheme = url.scheme.lower()
    return scheme, url.host.lower(), url.port or _DEFAULT_PORTS.get(scheme)


def same_origin(url: httpx.URL, base: httpx.URL) -> bool:
    """Whether ``url`` is the backend's own origin (and carries no ``user@``)."""
    return not url.userinfo and origin(url) == origin(base)


def safe_relative(name: object, what: str) -> list[str]:
    """The parts of a file name a backend gave; CloudApiError for anything unsafe."""
    def refuse(why: str) -> CloudApiError:
        shown = repr(name)[:120]
        return CloudApiError(200, f"the backend gave {what} an unsafe file name {shown} ({why}); "
                                  "nothing was written for it: check the backend")
    if not isinstance(name, str) or not name.strip("/"):
        raise refuse("not a non-empty string")
    if "\x00" in name:
        raise refuse("it contains a NUL byte")
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        raise refuse("it is not valid UTF-8") from None
    if len(encoded) > MAX_PATH_BYTES:
        raise refuse(f"longer than {MAX_PATH_BYTES} bytes")
    if name.startswith("/") or "\\" in name:
        raise refuse("an absolute path or a backslash")
    parts = name.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise refuse("an empty, '.' or '..' path part")
        if len(part.encode("utf-8")) > MAX_NAME_BYTES:
            raise refuse(f"a part longer than {MAX_NAME_BYTES} bytes")
    return parts


def _open_folder(root: Path, parts: list[str]) -> int:
    """A descriptor of ``root/parts...``, creating folders, never following a link below ``root``."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # root: the user's choice
    here = root
    try:
        for part in parts:
            here = here / part
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o777, dir_fd=fd)
            try:
                child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                dir_fd=fd)
            except OSError:
                raise ConfigError("to", f"{here} is a symbolic link or a file, not a folder; "
                                        "arkor_nb never writes through a link it did not make: "
                                        "remove it or download into an empty folder") from None
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


class _Sink:
    """One file being written: ``.<name>.<random>.part`` (exclusive, no-follow), renamed at the end."""

    def __init__(self, root: Path, parts: list[str]) -> None:
        self.root, self.name = root, parts[-1]
        self.dir_fd = _open_folder(root, parts[:-1])
        self.temp = f".{self.name[:200]}.{secrets.token_hex(6)}.part"
        try:
            self.fd = os.open(self.temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                              | os.O_CLOEXEC, 0o644, dir_fd=self.dir_fd)
        except BaseException:
            os.close(self.dir_fd)
            raise
        self.size = 0

    def write(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:
            view = view[os.write(self.fd, view):]
        self.size += len(chunk)

    def commit(self) -> None:
        os.close(self.fd)
        self.fd = -1
        try:
            os.replace(self.temp, self.name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
        except IsADirectoryError:
            raise ConfigError("to", f"{self.root / self.name} is a folder; remove it or download "
                                    "into an empty folder") from None

    def discard(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
        with contextlib.suppress(OSError):
            os.unlink(self.temp, dir_fd=self.dir_fd)

    def close(self) -> None:
        os.close(self.dir_fd)


async def download_file(api: CloudApiClient, scope: ProjectScope, url: str, root: Path,
                        parts: list[str]) -> int:
    """Stream ``url`` (absolute, or an API path of ``api``) to ``root/parts...``;
    returns the bytes written. Only ``api``'s own origin gets its token."""
    http, params = api.http, scope.params()
    base = httpx.URL(api.base_url)
    try:
        target = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        raise CloudApiError(200, f"the backend gave an invalid artifact URL {url[:200]!r}") from None
    if target.is_relative_url and not target.host:
        request_params, target = params, base.copy_with(raw_path=base.raw_path.rstrip(b"/")
                                                        + b"/" + target.raw_path.lstrip(b"/"))
    else:
        request_params = None
    sink = _Sink(root, parts)
    try:
        async with httpx.AsyncClient(timeout=api.timeout, verify=tls_verify()) as anonymous:
            for _ in range(MAX_REDIRECTS + 1):
                if origin(target)[0] not in _DEFAULT_PORTS or not target.host:
                    raise CloudApiError(200, f"refusing to download an artifact from "
                                             f"{_shown(target)}: only http and https URLs are fetched")
                client = http if same_origin(target, base) else anonymous
                async with client.stream("GET", target, params=request_params) as response:
                    if response.is_redirect and "location" in response.headers:
                        target = response.url.join(response.headers["location"])
                        request_params = None
                        continue
                    if not response.is_success:
                        raise error_from_body(response.status_code, await response.aread())
                    async for chunk in response.aiter_bytes():
                        sink.write(chunk)
                    sink.commit()
                    return sink.size
            raise CloudApiError(200, f"the artifact URL {_shown(httpx.URL(url))} redirected more "
                                     f"than {MAX_REDIRECTS} times")
    except BaseException:
        sink.discard()
        raise
    finally:
        sink.close()


def _shown(url: httpx.URL) -> str:
    """A URL for a message: scheme, host, port and path, no user info or query."""
    return str(url.copy_with(userinfo=b"", query=None, fragment=None))[:200]
