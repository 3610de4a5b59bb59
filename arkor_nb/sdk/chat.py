"""``ak.chat()``: talk to a job's final adapter, one of its checkpoints, or a base model.

Posts to ``/v1/inference/chat`` (the same route ``ctx.infer`` uses) through
``client.py``; the reply is the text, or with ``stream=True`` an iterator of
text chunks as the server sends them. Works on both backends.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import closing
from typing import Any

from arkor_nb.core.errors import ArkorError, CloudApiError, ConfigError, RemoteConfigError
from arkor_nb.sdk.arguments import check_job_id, check_messages, check_number
from arkor_nb.sdk.backends import ResolvedApi
from arkor_nb.sdk.chat_transport import SyncChatClient, post_chat
from arkor_nb.sdk.jobs import not_found, resolve_api
from arkor_nb.sdk.sync import run_sync

# Sampling keywords ak.chat accepts, and their wire names.
SAMPLING = {"temperature": "temperature", "max_tokens": "maxTokens", "top_p": "topP"}


def chat_body(job_id: str | None, messages: Any, *, step: int | None, model: str | None,
              stream: bool, sampling: Mapping[str, Any]) -> dict[str, Any]:
    """The ``/v1/inference/chat`` body, or ConfigError naming the bad argument."""
    if (job_id is None) == (model is None):
        raise ConfigError("job_id", "pass a job id (its fine-tuned adapter) or model= (a base "
                                    "model), exactly one of them")
    body: dict[str, Any] = {"messages": check_messages(messages), "stream": bool(stream)}
    if model is not None:
        if not isinstance(model, str) or not model:
            raise ConfigError("model", f"must be a base model id, got {model!r}")
        if step is not None:
            raise ConfigError("step", "a checkpoint step needs a job id, not model=")
        body["baseModel"] = model
    else:
        check_job_id(job_id)
        if step is None:
            body["adapter"] = {"kind": "final", "jobId": job_id}
        elif isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ConfigError("step", f"must be a checkpoint's step (an integer >= 0), got {step!r}")
        else:
            body["adapter"] = {"kind": "checkpoint", "jobId": job_id, "step": step}
    for key, value in sampling.items():
        if key not in SAMPLING:
            raise ConfigError(key, f"is not a sampling option; use {', '.join(SAMPLING)}")
        if value is not None:
            body[SAMPLING[key]] = check_number(key, value, integer=key == "max_tokens")
    return body


def _raise_for(err: CloudApiError, body: dict[str, Any], where: str) -> CloudApiError:
    adapter = body.get("adapter")
    if adapter is None:
        return err
    field = err.body.get("field") if isinstance(err.body, dict) else None
    if err.status == 404 and field in ("adapter.step", "step"):
        return RemoteConfigError(err.status, "step", err.message, body=err.body)
    return not_found(err, adapter["jobId"], where)


def delta_text(line: str) -> str | None:
    """The text of one SSE line of an OpenAI-style chunk stream ("" for none; None at [DONE])."""
    if not line.startswith("data:"):
        return ""
    data = line[5:].strip()
    if data == "[DONE]":
        return None
    try:
        chunk = json.loads(data)
    except ValueError:
        return ""  # an unparseable frame is skipped, as on the event stream
    if not isinstance(chunk, dict):
        return ""
    if "error" in chunk:
        error = chunk["error"]
        message = error.get("message") if isinstance(error, dict) else error
        raise ArkorError(f"the backend stopped the reply: {message}")
    try:
        content = chunk["choices"][0]["delta"].get("content")
    except (KeyError, IndexError, TypeError, AttributeError):
        return ""
    return content if isinstance(content, str) else ""


def reply_text(data: Any) -> str:
    try:
        content = data["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise CloudApiError(200, f"the chat reply has no choices[0].message.content: "
                                 f"{str(data)[:200]}") from None
    return content if isinstance(content, str) else ""


# ---------------------------------------------------------------- sync


def _chunks(client: SyncChatClient, response: Any) -> Iterator[str]:
    with closing(client), closing(response):
        for line in response.iter_lines():
            text = delta_text(line)
            if text is None:
                return
            if text:
                yield text


def chat(job_id: str | None = None, messages: Any = None, *, step: int | None = None,
         model: str | None = None, stream: bool = False, backend: Any = "local",
         **sampling: Any) -> Any:
    """Reply of the job's final adapter (or checkpoint ``step``; or base ``model=``).

    ``messages`` is a prompt string or ``[{"role", "content"}, ...]``; sampling
    options: ``temperature`` (0 = greedy), ``max_tokens``, ``top_p``. Returns the
    reply text, or with ``stream=True`` an iterator of text chunks.
    """
    body = chat_body(job_id, messages, step=step, model=model, stream=stream, sampling=sampling)
    api, where = run_sync(resolve_api(backend))
    client = SyncChatClient(api.base_url, api.token, verify=api.verify)
    try:
        response = client.chat(api.scope, body, stream=stream)
    except CloudApiError as err:
        client.close()
        raise _raise_for(err, body, where) from None
    except BaseException:
        client.close()
        raise
    if stream:
        return _chunks(client, response)
    with closing(client):
        return reply_text(response.json())


# --------------------------------------------------------------- async


async def _achunks(response: Any) -> AsyncIterator[str]:
    try:
        async for line in response.aiter_lines():
            text = delta_text(line)
            if text is None:
                return
            if text:
                yield text
    finally:
        await response.aclose()


async def _post(api: ResolvedApi, where: str, body: dict[str, Any], stream: bool) -> Any:
    try:
        return await post_chat(api.base_url, api.token, api.scope, body, stream=stream,
                               verify=api.verify)
    except CloudApiError as err:
        raise _raise_for(err, body, where) from None


class _AsyncChat:
    """What :func:`chat_async` returns: ``await`` it (the text, or with
    ``stream=True`` an async iterator of chunks), or with ``stream=True``
    iterate it directly: ``async for piece in ak.chat_async(..., stream=True)``."""

    def __init__(self, body: dict[str, Any], backend: Any) -> None:
        self._body = body
        self._backend = backend

    async def _run(self) -> Any:
        api, where = await resolve_api(self._backend)
        response = await _post(api, where, self._body, self._body["stream"])
        if self._body["stream"]:
            return _achunks(response)
        return reply_text(response.json())

    def __await__(self) -> Any:
        return self._run().__await__()

    async def __aiter__(self) -> AsyncIterator[str]:
        if not self._body["stream"]:
            raise ConfigError("stream", "iterate ak.chat_async(..., stream=True); without "
                                        "stream=True, `await` it for the text")
        async for piece in await self._run():
            yield piece


def chat_async(job_id: str | None = None, messages: Any = None, *, step: int | None = None,
               model: str | None = None, stream: bool = False, backend: Any = "local",
               **sampling: Any) -> Any:
    """Async twin of :func:`chat`: ``await ak.chat_async(...)`` for the text; with
    ``stream=True``, ``async for piece in ak.chat_async(...)`` (or iterate what
    ``await`` returns). Argument errors raise at once, before any request."""
    body = chat_body(job_id, messages, step=step, model=model, stream=stream, sampling=sampling)
    return _AsyncChat(body, backend)
