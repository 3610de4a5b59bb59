"""Property tests over job-config validation and dataset rows (C's ``validate_config``).

The contract: whatever JSON a client sends as ``config``, validation either
accepts it or raises one ``ConfigError`` naming the offending field, never
anything else (anything else would be a 500 at the server). A dataset with bad
rows is refused with the line number of each bad row.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arkor_nb.core.errors import ConfigError
from arkor_nb.local.config import KNOWN_KEYS, validate_config

HOME = Path(tempfile.mkdtemp(prefix="arkor-rel-home-"))
DATA_DIR = Path(tempfile.mkdtemp(prefix="arkor-rel-data-"))  # the temp dir is an allowed root
MODELS = ["arkor-nb/synthetic", "arkor-nb/tiny"]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=40)
    | st.text(min_size=300, max_size=6000)  # huge strings
    | st.sampled_from(
        ["", " ", "\x00", "../../etc/passwd", "/", "~", "a/b/c", "adamw_torch", "cosine"]
    )
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
source_values = st.fixed_dictionaries(
    {"type": st.sampled_from(["file", "huggingface", "blob", "s3", ""]) | json_values},
    optional={
        "path": json_values,
        "evalPath": json_values,
        "name": json_values,
        "split": json_values,
        "url": json_values,
        "token": json_values,
        "format": json_values,
        "extra": json_values,
    },
)
configs = st.dictionaries(
    st.sampled_from(KNOWN_KEYS) | st.text(max_size=12),
    json_values,
    max_size=6,
).flatmap(
    lambda d: st.fixed_dictionaries(
        {
            "model": st.sampled_from(MODELS) | json_values,
            "datasetSource": source_values | json_values,
        }
    ).map(lambda base: {**d, **base})
)
SETTINGS = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(config=configs | json_values)
def test_validation_raises_only_config_error_naming_a_field(config: Any) -> None:
    try:
        out = validate_config(config, home=HOME)
    except ConfigError as err:
        assert isinstance(err.field, str)
        top = err.field.split(".", 1)[0]
        keys = set(config) if isinstance(config, dict) else set()
        assert err.field in keys or top in keys or top in ("config", *KNOWN_KEYS), err.field
        assert str(err).startswith(f"{err.field}: ") and len(str(err)) > len(err.field) + 10
        return
    assert isinstance(out, dict) and isinstance(config, dict)
    assert set(out) <= set(KNOWN_KEYS)


@settings(max_examples=100, deadline=None)
@given(
    key=st.sampled_from(
        ["maxSteps", "batchSize", "loraR", "loggingSteps", "saveSteps", "maxLength"]
    ),
    value=st.sampled_from([0, -1, 10**12, 2**63, 1.5, "10", True, None, float("inf")]),
)
def test_absurd_values_name_their_field(key: str, value: Any) -> None:
    config = {"model": "arkor-nb/synthetic", key: value}
    try:
        validate_config(config, home=HOME)
    except ConfigError as err:
        assert err.field == key
    else:
        assert value is None  # None means "unset"; everything else here is absurd


# ---------------------------------------------------------------- dataset rows

# A prompt or answer needs some text: a whitespace-only one is a bad row (teaches nothing).
some_text = st.text(min_size=1, max_size=30).filter(str.strip)
good_rows = st.one_of(
    st.builds(
        lambda p, c: {"prompt": p, "completion": c},
        some_text,
        some_text,
    ),
    st.builds(
        lambda u, a: {
            "messages": [{"role": "user", "content": u}, {"role": "assistant", "content": a}]
        },
        some_text,
        some_text,
    ),
)
bad_lines = st.one_of(
    st.sampled_from(['{"prompt": "unterminated', "not json at all", "[1, 2", '{"a":}']),
    st.one_of(
        st.integers(), st.text(max_size=10), st.lists(st.integers(), max_size=3), st.none()
    ).map(json.dumps),
    st.dictionaries(st.sampled_from(["foo", "bar", "question"]), st.integers(), max_size=2).map(
        json.dumps
    ),
    st.builds(
        lambda p: json.dumps({"prompt": p, "completion": 5}), st.text(min_size=1, max_size=10)
    ),
    st.just(json.dumps({"messages": [{"role": "user", "content": "only a question"}]})),
    st.builds(
        lambda p, blank: json.dumps({"prompt": p, "completion": blank}),
        some_text,
        st.sampled_from(["", " ", "\t\n"]),
    ),
)
lines = st.lists(
    st.one_of(
        good_rows.map(lambda r: ("good", json.dumps(r))),
        bad_lines.map(lambda s: ("bad", s)),
        st.just(("blank", "")),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=200, deadline=None)
@given(rows=lines)
def test_bad_dataset_rows_are_reported_with_their_line_numbers(rows: list[tuple[str, str]]) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", dir=DATA_DIR, delete=False) as fh:
        fh.write("\n".join(text for _, text in rows) + "\n")
        path = fh.name
    bad = [i for i, (kind, _) in enumerate(rows, start=1) if kind == "bad"]
    good = [i for i, (kind, _) in enumerate(rows, start=1) if kind == "good"]
    config = {"model": "arkor-nb/tiny", "datasetSource": {"type": "file", "path": path}}
    try:
        validate_config(config, home=HOME)
    except ConfigError as err:
        assert err.field == "datasetSource.path"
        named = [int(n) for n in re.findall(r"line (\d+)", str(err))]
        if bad:
            assert named[: min(len(bad), 5)] == bad[:5], (str(err), bad)
        else:
            assert not good and "no rows" in str(err)
    else:
        assert not bad and good
    finally:
        Path(path).unlink()
