"""The chat route, ``POST /v1/inference/chat``: a pooled sync client and one async call.

``ctx.infer`` (``infer.py``), the panel's checkpoint samples and ``ak.chat``
(``chat.py``) all post through here. Errors map as for every request
(``http.raise_for_status_*``).
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from typing import Any

import httpx

from arkor_nb.sdk.http import (
    ProjectScope,
    Verify,
    auth_headers,
    raise_for_status_async,
    raise_for_status_sync,
    tls_verify,
)


class SyncChatClient:
    """Blocking client for ``POST /v1/inference/chat`` (checkpoint sampling).

    Sync on purpose: ``ctx.infer(...)`` is called from user callbacks, which
    arkor_nb runs on worker threads, and the streaming ``httpx.Response`` it
    returns must outlive the callback's event-loop turn. One pooled
    ``httpx.Client`` per trainer, created on first use; thread-safe.
    """

    def __init__(self, base_url: str, token: str | None, *, timeout: float = 300.0,
                 verify: Verify = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.verify = verify
        self.timeout = timeout
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(
                    base_url=self.base_url, headers=auth_headers(self.token), timeout=self.timeout,
                    verify=tls_verify(self.verify)
                )
            return self._client

    def chat(self, scope: ProjectScope, body: dict[str, Any], *, stream: bool) -> httpx.Response:
        """POST the chat body. With ``stream=True`` the body is not read yet:
        iterate ``response.iter_lines()`` and call ``response.close()``
        (or use ``contextlib.closing``) when done. Raises CloudApiError on non-2xx."""
        http = self._http()
        headers = {"Accept": "text/event-stream"} if stream else {}
        request = http.build_request(
            "POST", "/v1/inference/chat", params=scope.params(), json=body, headers=headers
        )
        response = http.send(request, stream=stream)
        raise_for_status_sync(response)
        return response

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


class _ClientOwnedStream(httpx.AsyncByteStream):
    """A response body that also closes the one-off client that fetched it."""

    def __init__(self, inner: httpx.AsyncByteStream, client: httpx.AsyncClient) -> None:
        self._inner = inner
        self._client = client

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            await self._client.aclose()


async def post_chat(
    base_url: str,
    token: str | None,
    scope: ProjectScope,
    body: dict[str, Any],
    *,
    stream: bool,
    timeout: float = 300.0,
    verify: Verify = None,
) -> httpx.Response:
    """Async twin of :meth:`SyncChatClient.chat` on the caller's event loop.

    With ``stream=True`` iterate ``response.aiter_lines()`` and ``await
    response.aclose()`` when done (that also closes the connection pool).
    """
    client = httpx.AsyncClient(
        base_url=base_url.rstrip("/"), headers=auth_headers(token), timeout=timeout, verify=tls_verify(verify)
    )
    try:
        request = client.build_request(
            "POST",
            "/v1/inference/chat",
            params=scope.params(),
            json=body,
            headers={"Accept": "text/event-stream"} if stream else {},
        )
        response = await client.send(request, stream=stream)
        await raise_for_status_async(response)
    except BaseException:
        await client.aclose()
        raise
    if not stream:
        await client.aclose()
        return response
    assert isinstance(response.stream, httpx.AsyncByteStream)
    response.stream = _ClientOwnedStream(response.stream, client)
    return response
