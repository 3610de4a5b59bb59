"""``ctx.infer``: chat with the checkpoint a ``checkpoint.saved`` event announced.

Bound to ``{"kind": "checkpoint", "jobId", "step"}`` and posted to
``/v1/inference/chat`` through the one HTTP layer (``client``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from arkor_nb.core.errors import ConfigError
from arkor_nb.sdk.chat_transport import SyncChatClient, post_chat
from arkor_nb.sdk.http import ProjectScope


class CheckpointInfer:
    """``ctx.infer``: chat with the checkpoint that was just saved.

    ``infer(messages=[...], temperature=..., max_tokens=..., stream=True)``
    posts ``/v1/inference/chat`` bound to ``{"kind": "checkpoint", "jobId",
    "step"}`` and returns the ``httpx.Response``. With ``stream=True`` (the
    default) the body is not read yet: iterate ``response.iter_lines()``
    (SSE ``data:`` chunks, then ``data: [DONE]``) and close it with
    ``response.close()`` (or ``with contextlib.closing(response): ...``). With ``stream=False`` the
    body is read (``response.json()``). Blocking: arkor_nb runs sync
    callbacks on a worker thread, so call it freely there; from an ``async``
    callback use ``await ctx.infer.aio(...)``.
    """

    def __init__(self, chat: SyncChatClient, scope: ProjectScope, adapter: dict[str, Any]) -> None:
        self._chat = chat
        self._scope = scope
        self.adapter = adapter

    def __call__(
        self,
        messages: Sequence[Mapping[str, Any]] | None = None,
        *,
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: int | None = None,
        stream: bool = True,
        tools: list[Any] | None = None,
        tool_choice: Any = None,
        response_format: Any = None,
        structured_outputs: Any = None,
    ) -> httpx.Response:
        body = self._body(
            messages, temperature, top_p, max_tokens, stream, tools, tool_choice,
            response_format, structured_outputs,
        )
        return self._chat.chat(self._scope, body, stream=bool(stream))

    async def aio(
        self,
        messages: Sequence[Mapping[str, Any]] | None = None,
        *,
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: int | None = None,
        stream: bool = True,
        tools: list[Any] | None = None,
        tool_choice: Any = None,
        response_format: Any = None,
        structured_outputs: Any = None,
    ) -> httpx.Response:
        """Async twin for ``async`` callbacks: ``await ctx.infer.aio(...)``; with
        ``stream=True`` read ``response.aiter_lines()`` then ``await response.aclose()``."""
        body = self._body(
            messages, temperature, top_p, max_tokens, stream, tools, tool_choice,
            response_format, structured_outputs,
        )
        return await post_chat(
            self._chat.base_url, self._chat.token, self._scope, body, stream=bool(stream),
            verify=self._chat.verify,
        )

    def _body(
        self,
        messages: Sequence[Mapping[str, Any]] | None,
        temperature: float | None,
        top_p: float | None,
        max_tokens: int | None,
        stream: bool,
        tools: list[Any] | None,
        tool_choice: Any,
        response_format: Any,
        structured_outputs: Any,
    ) -> dict[str, Any]:
        if messages is None or isinstance(messages, (str, bytes)):
            raise ConfigError("messages", 'pass a list like [{"role": "user", "content": "hi"}]')
        body: dict[str, Any] = {
            "messages": [dict(m) for m in messages],
            "adapter": dict(self.adapter),
            "stream": bool(stream),
        }
        optional = {
            "temperature": temperature,
            "topP": top_p,
            "maxTokens": max_tokens,
            "tools": tools,
            "toolChoice": tool_choice,
            "responseFormat": response_format,
            "structuredOutputs": structured_outputs,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        return body
