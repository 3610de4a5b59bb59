"""The one synthetic training-log stream every panel benchmark replays.

Deterministic (seeded) so every peer sees exactly the same events: a step,
a decaying noisy loss, an eval loss every 50 steps, a cosine learning rate,
the epoch and samples/s. ``wire_events`` yields the camelCase dicts the
server sends; ``typed_events`` yields the parsed ``TrainingLog`` objects the
Trainer hands to its listeners (so arkor_nb rows do not pay for parsing,
which the SSE benchmark measures separately).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from typing import Any

EVAL_EVERY = 50
STEPS_PER_EPOCH = 1000
JOB_ID = "job_bench"


def wire_events(n: int, seed: int = 0) -> Iterator[dict[str, Any]]:
    """Yield ``n`` ``training.log`` events as wire dicts (camelCase)."""
    rng = random.Random(seed)
    scale = max(n / 4.0, 1.0)
    for step in range(1, n + 1):
        base = 0.3 + 2.2 * math.exp(-step / scale)
        event: dict[str, Any] = {
            "type": "training.log",
            "jobId": JOB_ID,
            "timestamp": "2026-01-01T00:00:00Z",
            "step": step,
            "loss": round(base + rng.gauss(0.0, 0.05), 5),
            "learningRate": 2e-4 * 0.5 * (1 + math.cos(math.pi * step / n)),
            "epoch": round(step / STEPS_PER_EPOCH, 4),
            "samplesPerSecond": round(80 + rng.random() * 4, 2),
        }
        if step % EVAL_EVERY == 0:
            event["evalLoss"] = round(base + 0.05 + rng.gauss(0.0, 0.02), 5)
        yield event


def typed_events(n: int, seed: int = 0) -> Iterator[Any]:
    """The same stream as parsed ``arkor_nb.core.events`` events with ``event_id`` set.

    The import happens here, not at the first ``next()``, so it stays out of
    the measured loop.
    """
    from arkor_nb.core.events import parse_event

    def gen() -> Iterator[Any]:
        for i, data in enumerate(wire_events(n, seed), start=1):
            yield parse_event(data, str(i))

    return gen()
