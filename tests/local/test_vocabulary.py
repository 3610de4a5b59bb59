"""One vocabulary: each event type name and terminal set is spelled once, in core/events.py."""

from __future__ import annotations

from pathlib import Path

import arkor_nb
from arkor_nb.core.config_keys import CONFIG_KEYS, WIRE_CONFIG_KEYS
from arkor_nb.core.events import EVENT_TYPES, TERMINAL_EVENT_TYPES, TERMINAL_STATUS_OF
from arkor_nb.core.status import TERMINAL_STATUSES

PACKAGE = Path(arkor_nb.__file__).parent


def _quoted_occurrences(word: str) -> list[str]:
    hits = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if f'"{word}"' in line or f"'{word}'" in line:
                hits.append(f"{path.relative_to(PACKAGE)}:{n}")
    return hits


def test_each_event_type_is_spelled_once_in_the_package() -> None:
    assert len(EVENT_TYPES) >= 6
    for name in sorted(EVENT_TYPES):
        hits = _quoted_occurrences(name)
        assert len(hits) == 1 and hits[0].startswith("core/events.py:"), (name, hits)


def test_terminal_sets_agree() -> None:
    assert set(TERMINAL_STATUS_OF) == TERMINAL_EVENT_TYPES <= EVENT_TYPES
    assert set(TERMINAL_STATUS_OF.values()) == TERMINAL_STATUSES


def test_wire_config_keys_match_the_documented_list() -> None:
    documented = (Path(__file__).parents[2] / "docs" / "protocol.md").read_text()
    assert set(WIRE_CONFIG_KEYS) == {"model", "datasetSource", "maxSteps", "numTrainEpochs",
                                     "learningRate", "batchSize", "optim", "lrSchedulerType",
                                     "weightDecay", "warmupSteps", "loggingSteps", "saveSteps",
                                     "evalSteps", "loraR", "loraAlpha", "maxLength", "loadIn4bit",
                                     "trainOnResponsesOnly", "datasetFormat", "datasetSplit",
                                     "dryRun"}
    for key in WIRE_CONFIG_KEYS:
        assert key in documented
    assert CONFIG_KEYS["learning_rate"] == "learningRate"


def test_local_config_extensions_are_documented_and_never_cloud_keys() -> None:
    from arkor_nb.core.config_keys import LOCAL_CONFIG_KEYS

    documented = (Path(__file__).parents[2] / "docs" / "protocol.md").read_text()
    assert set(LOCAL_CONFIG_KEYS.values()) == {"samplePrompts", "sampleMaxTokens", "taskEval"}
    assert not set(LOCAL_CONFIG_KEYS.values()) & set(WIRE_CONFIG_KEYS)
    for key in LOCAL_CONFIG_KEYS.values():
        assert key in documented
    assert "checkpoint.sample" in EVENT_TYPES and "`checkpoint.sample`" in documented
    assert "checkpoint.eval" in EVENT_TYPES and "`checkpoint.eval`" in documented
    assert "`metrics.reported`" in documented  # the record's ctx.report lines (client side)
