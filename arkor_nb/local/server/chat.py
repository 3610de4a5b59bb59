"""Chat endpoints: ``/v1/inference/chat`` (Arkor) and ``/v1/chat/completions`` (OpenAI).

Both parse a request into a *target* (base model, checkpoint or final
adapter) plus messages, pull text pieces from the inference engine on a
worker thread, and answer in OpenAI's shapes: ``chat.completion`` JSON, or
an SSE stream of ``chat.completion.chunk`` deltas ending in ``data: [DONE]``.
Targets of ``arkor-nb/synthetic`` jobs are answered by the synthetic
responder (no model load), so stream/panel tests never need torch.
"""

from __future__ import annotations

import importlib.util
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response, StreamingResponse

from arkor_nb.core.errors import ConfigError
from arkor_nb.core.status import COMPLETED
from arkor_nb.local.server.sse import SSE_HEADERS
from arkor_nb.local.server.store import Store
from arkor_nb.local.training.inference import InferenceEngine
from arkor_nb.local.training.models import SYNTHETIC_MODEL_ID
from arkor_nb.local.training.synthetic_worker import synthetic_reply

Target = dict[str, Any]
INFERENCE_STACK = ("torch", "transformers", "peft")  # what InferenceEngine imports when it loads
_DONE = object()


def _messages(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise ConfigError("messages", "must be a non-empty list of {role, content} objects")
    for i, msg in enumerate(value):
        if not isinstance(msg, dict) or not isinstance(msg.get("role"), str):
            raise ConfigError(f"messages[{i}]", "must be an object with a string 'role'")
        content = msg.get("content")
        if not isinstance(content, (str, list)) and content is not None:
            raise ConfigError(f"messages[{i}].content", "must be a string")
    return value


def _number(body: dict[str, Any], key: str, *, low: float, high: float,
            integer: bool = False) -> Any:
    value = body.get(key)
    if value is None:
        return None
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or not (low <= value <= high):
        kind = "an integer" if integer else "a number"
        raise ConfigError(key, f"must be {kind} between {low:g} and {high:g}")
    return value


def _target_from_adapter(adapter: Any) -> Target:
    if not isinstance(adapter, dict):
        raise ConfigError("adapter", "must be {kind: 'checkpoint', jobId, step} "
                                     "or {kind: 'final', jobId}")
    kind = adapter.get("kind")
    job_id = adapter.get("jobId")
    if not isinstance(job_id, str) or not job_id:
        raise ConfigError("adapter.jobId", "must be the id of a local job")
    if kind == "final":
        return {"kind": "final", "jobId": job_id}
    if kind == "checkpoint":
        step = adapter.get("step")
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ConfigError("adapter.step", "must be the step of a saved checkpoint")
        return {"kind": "checkpoint", "jobId": job_id, "step": step}
    raise ConfigError("adapter.kind", "must be 'checkpoint' or 'final'")


def parse_inference_body(body: dict[str, Any]) -> tuple[Target, dict[str, Any]]:
    """``/v1/inference/chat`` body -> (target, generation options)."""
    if body.get("adapter") is not None:
        target = _target_from_adapter(body["adapter"])
    elif isinstance(body.get("baseModel"), str) and body["baseModel"]:
        target = {"kind": "base", "model": body["baseModel"]}
    else:
        raise ConfigError("adapter", "send an adapter ({kind: 'checkpoint', jobId, step} or "
                                     "{kind: 'final', jobId}) or a baseModel id")
    stream = body.get("stream", True)
    if not isinstance(stream, bool):
        raise ConfigError("stream", "must be true or false")
    options = {
        "messages": _messages(body.get("messages")),
        "temperature": _number(body, "temperature", low=0, high=5),
        "max_tokens": _number(body, "maxTokens", low=1, high=8192, integer=True),
        "stream": stream,
    }
    return target, options


def parse_openai_body(body: dict[str, Any]) -> tuple[Target, dict[str, Any], str]:
    """OpenAI body -> (target, options, model name). ``job:<id>[@<step>]`` or a base id."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ConfigError("model", "must be 'job:<id>', 'job:<id>@<step>' or a base model id")
    if model.startswith("job:"):
        ref = model[4:]
        job_id, sep, step_text = ref.partition("@")
        if sep:
            if not step_text.isdigit():
                raise ConfigError("model", f"'{model}': the part after @ must be a step number")
            target: Target = {"kind": "checkpoint", "jobId": job_id, "step": int(step_text)}
        else:
            target = {"kind": "final", "jobId": job_id}
    else:
        target = {"kind": "base", "model": model}
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise ConfigError("stream", "must be true or false")
    max_tokens = _number(body, "max_completion_tokens", low=1, high=8192, integer=True)
    if max_tokens is None:
        max_tokens = _number(body, "max_tokens", low=1, high=8192, integer=True)
    options = {
        "messages": _messages(body.get("messages")),
        "temperature": _number(body, "temperature", low=0, high=5),
        "max_tokens": max_tokens,
        "stream": stream,
    }
    return target, options, model


class EngineUnavailable(RuntimeError):
    """The inference engine (or torch/transformers) cannot be imported: a 503."""


class Responder:
    """Routes a target to the synthetic responder or to C's ``InferenceEngine``."""

    def __init__(self, store: Store, home: Path, job_dir: Callable[[str], Path]) -> None:
        self.store = store
        self.home = home
        self._job_dir = job_dir
        self._engine: Any = None
        self._engine_lock = threading.Lock()

    def job_dir(self, job_id: str) -> Path:
        if self.store.get_job(job_id) is None:
            raise ConfigError("adapter.jobId", f"no local job {job_id!r}; list jobs with GET /v1/jobs")
        return self._job_dir(job_id)

    def _engine_instance(self) -> Any:
        with self._engine_lock:
            if self._engine is None:
                missing = [m for m in INFERENCE_STACK if importlib.util.find_spec(m) is None]
                if missing:
                    raise EngineUnavailable(
                        f"local inference is not available (no module {', '.join(missing)}); "
                        "install the local extra: pip install 'arkor-nb[local]'"
                    )
                self._engine = InferenceEngine(self.home)
            return self._engine

    def _synthetic_job(self, target: Target) -> dict[str, Any] | None:
        if target["kind"] == "base":
            return None
        job = self.store.get_job(target["jobId"])
        if job is None:
            raise ConfigError("adapter.jobId",
                              f"no local job {target['jobId']!r}; list jobs with GET /v1/jobs")
        return job if job["config"].get("model") == SYNTHETIC_MODEL_ID else None

    def pieces(self, target: Target, options: dict[str, Any]) -> Iterator[str]:
        """Text pieces (blocking; call on a worker thread). Raises ConfigError for bad targets."""
        if target["kind"] == "base" and target["model"] == SYNTHETIC_MODEL_ID:
            return synthetic_reply(options["messages"], label="base",
                                   max_tokens=options["max_tokens"])
        job = self._synthetic_job(target)
        if job is not None:
            job_dir = self._job_dir(job["id"])
            if target["kind"] == "checkpoint":
                if not (job_dir / "checkpoints" / f"step-{target['step']}").is_dir():
                    raise ConfigError("adapter.step", f"job {job['id']} has no checkpoint at step "
                                                      f"{target['step']}; use a step from a "
                                                      "checkpoint.saved event")
                label = f"step {target['step']}"
            else:
                if job["status"] != COMPLETED:
                    raise ConfigError("adapter", f"job {job['id']} is {job['status']}, so it has no "
                                                 "final adapter yet; use a checkpoint step")
                label = "final"
            return synthetic_reply(options["messages"], label=label,
                                   max_tokens=options["max_tokens"])
        return iter(self._engine_instance().stream_chat(
            target=target,
            messages=options["messages"],
            temperature=options["temperature"],
            max_tokens=options["max_tokens"],
            job_dir=self.job_dir,
        ))


def _first(iterator: Iterator[str]) -> Any:
    return next(iterator, _DONE)


async def respond(responder: Responder, target: Target, options: dict[str, Any],
                  model: str) -> Response:
    """Run the engine and answer in OpenAI form (streaming or not)."""

    def start() -> tuple[Iterator[str], Any]:
        it = responder.pieces(target, options)
        return it, _first(it)

    iterator, first = await run_in_threadpool(start)  # ConfigError surfaces here, as a 4xx
    completion_id = "chatcmpl-" + secrets.token_hex(12)
    created = int(time.time())
    if not options["stream"]:
        def collect() -> str:
            parts = [] if first is _DONE else [first]
            parts.extend(iterator)
            return "".join(parts)

        text = await run_in_threadpool(collect)
        return JSONResponse({
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
                "logprobs": None,
            }],
        })

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        body = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        }
        return f"data: {json.dumps(body, separators=(',', ':'))}\n\n"

    def frames() -> Iterator[str]:
        yield chunk({"role": "assistant", "content": ""})
        try:
            if first is not _DONE:
                yield chunk({"content": first})
            for piece in iterator:
                yield chunk({"content": piece})
        except Exception as err:  # the stream has started: report in-band, then end
            yield f"data: {json.dumps({'error': {'message': str(err)}})}\n\n"
        else:
            yield chunk({}, "stop")
        yield "data: [DONE]\n\n"

    return StreamingResponse(frames(), media_type="text/event-stream", headers=SSE_HEADERS)
