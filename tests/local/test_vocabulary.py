"""One vocabulary: each event type name and terminal set is spelled once, in core/events.py;
each job status and view state once, in core/status.py."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import arkor_nb
from arkor_nb.core.config_keys import CONFIG_KEYS, WIRE_CONFIG_KEYS
from arkor_nb.core.events import EVENT_TYPES, TERMINAL_EVENT_TYPES, TERMINAL_STATUS_OF
from arkor_nb.core.status import (
    JOB_STATUSES,
    TERMINAL_STATUSES,
    VIEW_STATES,
    JobStatus,
    ViewState,
)

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


def _string_literals(words: set[str], vocabulary: Path) -> list[str]:
    """Every string constant of the package equal to one of ``words`` (outside ``vocabulary``).

    A whole constant: ``"queued"`` or ``'running'`` anywhere (a comparison, a dict key, a
    default, an annotation), not the word inside a longer text or a docstring."""
    hits = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == vocabulary:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in words:
                hits.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {node.value!r}")
    return hits


def test_each_status_is_spelled_once_in_the_package() -> None:
    """Job statuses and the panel's view states are the enums' members everywhere else."""
    words = set(JOB_STATUSES) | set(VIEW_STATES)
    assert len(words) == len(JOB_STATUSES) + len(VIEW_STATES) == 10
    assert _string_literals(words, PACKAGE / "core" / "status.py") == []


def test_the_literal_check_sees_a_literal() -> None:
    """The scan above would catch a stray status (it is not vacuous)."""
    hits = _string_literals({"queued"}, PACKAGE / "core" / "nothing.py")
    assert any(h.startswith("core/status.py:") for h in hits)


def test_statuses_are_plain_strings_on_the_wire() -> None:
    from arkor_nb.core.wire import TrainingJob

    assert JobStatus.QUEUED == "queued" and "completed" in TERMINAL_STATUSES
    assert f"{JobStatus.FAILED}" == str(JobStatus.FAILED) == "failed"
    assert json.dumps({"status": JobStatus.CANCELLED}) == '{"status": "cancelled"}'
    assert not set(JobStatus) & set(ViewState)
    job = TrainingJob(id="job_1", name="n", status="paused")  # an unknown status still parses
    assert job.status == "paused" and not job.is_terminal
    assert TrainingJob(id="job_1", name="n", status=JobStatus.COMPLETED).to_wire()["status"] == "completed"


def test_terminal_sets_agree() -> None:
    assert set(TERMINAL_STATUS_OF) == TERMINAL_EVENT_TYPES <= EVENT_TYPES
    assert set(TERMINAL_STATUS_OF.values()) == TERMINAL_STATUSES
    assert all(isinstance(s, JobStatus) for s in TERMINAL_STATUS_OF.values())


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
    assert set(LOCAL_CONFIG_KEYS.values()) == {"samplePrompts", "sampleMaxTokens", "taskEval",
                                               "processes", "nodes", "seed"}
    assert not set(LOCAL_CONFIG_KEYS.values()) & set(WIRE_CONFIG_KEYS)
    for key in LOCAL_CONFIG_KEYS.values():
        assert key in documented
    assert "checkpoint.sample" in EVENT_TYPES and "`checkpoint.sample`" in documented
    assert "checkpoint.eval" in EVENT_TYPES and "`checkpoint.eval`" in documented
    assert "`metrics.reported`" in documented  # the record's ctx.report lines (client side)
