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
import re
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
from arkor_nb.local.training.inference import MAX_TOKENS_LIMIT, TEMPERATURE_MAX, InferenceEngine
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
            integer: bool = False, low_open: bool = False) -> Any:
    value = body.get(key)
    if value is None:
        return None
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    in_range = ok_type and (low < value if low_open else low <= value) and value <= high
    if isinstance(value, bool) or not in_range:
        kind = "an integer" if integer else "a number"
        lower = f"above {low:g} and at most" if low_open else f"between {low:g} and"
        raise ConfigError(key, f"must be {kind} {lower} {high:g}, got {value!r}")
    return value


def _refuse_unsupported(body: dict[str, Any]) -> None:
    """OpenAI fields the local backend cannot honour: a 400 rather than a silent no."""
    for key in ("tools", "tool_choice", "functions", "function_call", "parallel_tool_calls"):
        value = body.get(key)
        if value is None or value == [] or (key == "tool_choice" and value == "none"):
            continue
        raise ConfigError(key, "the local backend does not support tool calling; leave out "
                               "tools/tool_choice, or use the Arkor cloud")
    n = body.get("n")
    if n is not None and (isinstance(n, bool) or n != 1):
        raise ConfigError("n", f"the local backend returns one choice per request; send n=1 "
                               f"(or leave it out), got {n!r}")


def _response_format(body: dict[str, Any], key: str) -> dict[str, Any] | None:
    """``{"type": "text" | "json_object" | "json_schema", "json_schema"?: {schema}}``."""
    value = body.get(key)
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        spec = value.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise ConfigError(f"{key}.json_schema", 'must be {"name": ..., "schema": {a JSON '
                                                    'schema object}}')
        return {"type": "json_schema", "schema": schema}
    raise ConfigError(key, 'must be {"type": "text"}, {"type": "json_object"} or {"type": '
                           '"json_schema", "json_schema": {"name": ..., "schema": {...}}}')


def _options(body: dict[str, Any], stream: Any, max_tokens: Any, *, top_p: str,
             response_format: str) -> dict[str, Any]:
    if not isinstance(stream, bool):
        raise ConfigError("stream", "must be true or false")
    return {
        "messages": _messages(body.get("messages")),
        "temperature": _number(body, "temperature", low=0, high=TEMPERATURE_MAX),
        "top_p": _number(body, top_p, low=0, high=1, low_open=True),
        "max_tokens": max_tokens,
        "response_format": _response_format(body, response_format),
        "stream": stream,
    }


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
    max_tokens = _number(body, "maxTokens", low=1, high=MAX_TOKENS_LIMIT, integer=True)
    return target, _options(body, body.get("stream", True), max_tokens, top_p="topP",
                            response_format="responseFormat")


_STEP = re.compile(r"[0-9]{1,18}")  # ASCII digits only: "²".isdigit() is True


def model_target(model: Any) -> Target:
    """``job:<id>`` (final adapter), ``job:<id>@<step>`` (a checkpoint) or a base model id."""
    usage = "'job:<id>' (a job's final adapter), 'job:<id>@<step>' (a checkpoint) or a base model id"
    if not isinstance(model, str) or not model.strip():
        raise ConfigError("model", f"must be {usage}")
    if not model.isprintable():
        raise ConfigError("model", f"{model!r} has control characters; send {usage}")
    if not model.startswith("job:"):
        return {"kind": "base", "model": model}
    job_id, sep, step_text = model[4:].partition("@")
    if not job_id:
        raise ConfigError("model", f"{model!r} names no job: send {usage}")
    if not sep:
        return {"kind": "final", "jobId": job_id}
    if not _STEP.fullmatch(step_text):
        raise ConfigError("model", f"{model!r}: the part after @ must be a checkpoint step in "
                                   "ASCII digits, e.g. job:<id>@20")
    return {"kind": "checkpoint", "jobId": job_id, "step": int(step_text)}


def parse_openai_body(body: dict[str, Any]) -> tuple[Target, dict[str, Any], str]:
    """OpenAI body -> (target, options, model name). ``job:<id>[@<step>]`` or a base id."""
    target = model_target(body.get("model"))
    _refuse_unsupported(body)
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = _number(body, key, low=1, high=MAX_TOKENS_LIMIT, integer=True)
    options = _options(body, body.get("stream", False), max_tokens, top_p="top_p",
                       response_format="response_format")
    return target, options, body["model"]


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
        synthetic = target["kind"] == "base" and target["model"] == SYNTHETIC_MODEL_ID
        if options.get("response_format") and (synthetic or self._synthetic_job(target)):
            raise ConfigError("response_format", f"{SYNTHETIC_MODEL_ID} only echoes canned text "
                                                 "and cannot follow a response format; use a "
                                                 "job trained on a real model")
        if synthetic:
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
            top_p=options.get("top_p"),
            max_tokens=options["max_tokens"],
            response_format=options.get("response_format"),
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
