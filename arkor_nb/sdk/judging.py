"""Judging a run in the client: task metrics, ``ctx.report`` and ``result.metrics``.

One :class:`Judge` per trainer. It folds every ``checkpoint.eval`` and every
``ctx.report(...)`` into one metric series (``result.metrics``); adds the
scores of client-side callable scorers to the worker's events; and, when the
backend does not evaluate (the cloud, or a job started without
``taskEval``), evaluates each checkpoint itself through ``ctx.infer`` and
produces the same ``checkpoint.eval`` shape.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from arkor_nb.core.contexts import MetricSeries, MetricsReported, add_metrics
from arkor_nb.core.errors import CloudApiError, ConfigError
from arkor_nb.core.events import CheckpointEval
from arkor_nb.core.scorers import mean_scores, score_callable, score_reply, scorer_name
from arkor_nb.core.taskeval import TaskEval


def check_task_eval(task_eval: Any) -> TaskEval | None:
    if task_eval is None or isinstance(task_eval, TaskEval):
        return task_eval
    raise ConfigError("task_eval", "must be ak.TaskEval(data=..., scorers=[...]), "
                                   f"got {type(task_eval).__name__}")


class Judge:
    """A trainer's metrics: folded events, pending reports and client-side evals."""

    def __init__(self, task_eval: TaskEval | None) -> None:
        self.task_eval = task_eval
        self.series: MetricSeries = {}
        self.step = 0  # the last step seen; ctx.report of a context without a step uses it
        self._pending: list[MetricsReported] = []
        self._lock = threading.Lock()

    # ------------------------------------------------------------- steps

    def saw_step(self, step: int | None) -> None:
        if step is not None and step > self.step:
            self.step = step

    def client_evaluates(self, config: Mapping[str, Any] | None) -> bool:
        """True when this client must score checkpoints itself (no ``taskEval`` sent)."""
        return self.task_eval is not None and "taskEval" not in (config or {})

    # ----------------------------------------------------------- reports

    def reporter(self, step: int | None, job_id: str) -> Callable[[dict[str, float]], None]:
        """The ``ctx.report`` sink of one context: records at its step."""

        def report(metrics: dict[str, float]) -> None:
            at = self.step if step is None else step
            item = MetricsReported(job_id=job_id, timestamp=_now(), step=at, metrics=metrics)
            with self._lock:
                add_metrics(self.series, at, metrics)
                self._pending.append(item)

        return report

    def take_reported(self) -> list[MetricsReported]:
        """Reports made since the last call (told to listeners after the callbacks)."""
        with self._lock:
            items, self._pending = self._pending, []
        return items

    # ------------------------------------------------------------- evals

    def complete(self, event: CheckpointEval) -> CheckpointEval:
        """Fold a ``checkpoint.eval`` into the series, after scoring callables on its examples."""
        callables = self.task_eval.callables if self.task_eval is not None else []
        if callables and event.examples:
            examples = []
            for ex in event.examples:
                scores = dict(ex.get("scores") or {})
                for fn in callables:
                    scores.update(score_callable(fn, str(ex.get("expected", "")), str(ex.get("reply", ""))))
                examples.append({**ex, "scores": scores})
            extra = mean_scores([{k: ex["scores"][k] for k in map(scorer_name, callables)} for ex in examples])
            event = event.model_copy(update={"metrics": {**event.metrics, **extra},
                                             "examples": examples})
        self.saw_step(event.step)
        with self._lock:
            add_metrics(self.series, event.step, event.metrics)
        return event

    def evaluate(self, infer: Callable[..., Any], step: int, job_id: str) -> CheckpointEval:
        """Score the checkpoint ``infer`` is bound to (blocking; call from a thread)."""
        spec = self.task_eval
        assert spec is not None
        per_reply = []
        examples = []
        for pair in spec.pairs:
            reply = _reply_text(infer(messages=pair.messages, temperature=0.0,
                                      max_tokens=spec.max_tokens, stream=False))
            scores = score_reply(spec.builtin_scorers, pair.expected, reply)
            per_reply.append(scores)
            examples.append({"prompt": pair.prompt, "expected": pair.expected,
                             "reply": reply, "scores": scores})
        event = CheckpointEval(job_id=job_id, timestamp=_now(), step=step,
                               metrics=mean_scores(per_reply), n=len(spec.pairs), examples=examples)
        return self.complete(event)


def _reply_text(response: Any) -> str:
    """The text of a non-streamed ``/v1/inference/chat`` answer."""
    try:
        body = response.json()
        choice = body["choices"][0]
        content = (choice.get("message") or {}).get("content", choice.get("text"))
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        raise CloudApiError(200, "the chat answer has no choices[0].message.content") from None
    finally:
        close = getattr(response, "close", None)
        if close is not None:
            close()
    return str(content or "")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
