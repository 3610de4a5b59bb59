"""validate_config: every bad input gives one ConfigError naming the field and the fix."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from arkor_nb.core.errors import ConfigError
from arkor_nb.local.config import (
    KNOWN_KEYS,
    OPTIMIZERS,
    SCHEDULERS,
    validate_config,
)
from tests.local.training_helpers import EVAL, TRAIN


@pytest.fixture()
def home(tmp_path: Path) -> Path:
    return Path(os.environ["ARKOR_NB_HOME"])


def base(**overrides: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {"model": "arkor-nb/tiny", "datasetSource": {"type": "file", "path": str(TRAIN)}}
    cfg.update(overrides)
    return cfg


def error(config: Any, home: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        validate_config(config, home=home)
    return info.value


def test_valid_config_is_normalised(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(TRAIN.parent.parent)
    out = validate_config(base(datasetSource={"type": "file", "path": "data/triage.jsonl",
                                              "evalPath": "data/triage_eval.jsonl"},
                               maxSteps=200.0, learningRate=2e-3, evalSteps=50), home=home)
    assert out["datasetSource"]["path"] == str(TRAIN)
    assert out["datasetSource"]["evalPath"] == str(EVAL)
    assert out["maxSteps"] == 200 and isinstance(out["maxSteps"], int)
    assert out["evalSteps"] == 50


def test_every_key_accepted_at_its_bounds(home: Path) -> None:
    cfg = base(maxSteps=1, numTrainEpochs=0.5, learningRate=1.0, batchSize=1, optim="adamw_torch",
               lrSchedulerType="cosine", weightDecay=0, warmupSteps=0, loggingSteps=1, saveSteps=1,
               evalSteps=1, loraR=1, loraAlpha=0.5, maxLength=8, loadIn4bit=False,
               trainOnResponsesOnly=True, datasetFormat="messages", datasetSplit=0.1, dryRun=True,
               samplePrompts=["x"] * 16, sampleMaxTokens=4096, processes=1024, nodes=1, seed=2**32 - 1,
               taskEval={"rows": [{"prompt": "q", "completion": "a"}], "scorers": ["exact"],
                         "maxTokens": 4096, "allExamples": True})
    assert set(cfg) == set(KNOWN_KEYS)
    assert validate_config(cfg, home=home)["loraR"] == 1


BAD_SCALARS = [
    ({"processes": 0}, "processes"),
    ({"processes": "two"}, "processes"),
    ({"processes": 1.5}, "processes"),
    ({"nodes": 0}, "nodes"),
    ({"seed": -1}, "seed"),
    ({"seed": 2**32}, "seed"),
    ({"seed": "42"}, "seed"),
    ({"seed": True}, "seed"),
    ({"maxSteps": 10**12}, "maxSteps"),
    ({"maxSteps": 0}, "maxSteps"),
    ({"maxSteps": -5}, "maxSteps"),
    ({"maxSteps": "100"}, "maxSteps"),
    ({"maxSteps": True}, "maxSteps"),
    ({"maxSteps": 2.5}, "maxSteps"),
    ({"numTrainEpochs": 0}, "numTrainEpochs"),
    ({"numTrainEpochs": float("nan")}, "numTrainEpochs"),
    ({"learningRate": -1e-4}, "learningRate"),
    ({"learningRate": 0}, "learningRate"),
    ({"learningRate": 5}, "learningRate"),
    ({"batchSize": 0}, "batchSize"),
    ({"batchSize": 10**9}, "batchSize"),
    ({"optim": "adamw_magic"}, "optim"),
    ({"optim": "paged_adamw_8bit"}, "optim"),  # needs bitsandbytes, absent here
    ({"lrSchedulerType": "zigzag"}, "lrSchedulerType"),
    ({"weightDecay": -0.1}, "weightDecay"),
    ({"warmupSteps": -1}, "warmupSteps"),
    ({"loggingSteps": 0}, "loggingSteps"),
    ({"saveSteps": 0}, "saveSteps"),
    ({"evalSteps": 0, "datasetSplit": 0.1}, "evalSteps"),
    ({"loraR": 0}, "loraR"),
    ({"loraR": 10**7}, "loraR"),
    ({"loraAlpha": 0}, "loraAlpha"),
    ({"maxLength": 2}, "maxLength"),
    ({"loadIn4bit": "yes"}, "loadIn4bit"),
    ({"loadIn4bit": True}, "loadIn4bit"),  # no bitsandbytes / GPU on this machine
    ({"trainOnResponsesOnly": 1}, "trainOnResponsesOnly"),
    ({"dryRun": "true"}, "dryRun"),
    ({"datasetFormat": "yaml"}, "datasetFormat"),
    ({"datasetFormat": {"prompt": ""}}, "datasetFormat"),
    ({"datasetFormat": {"question": "q"}}, "datasetFormat"),
    ({"datasetSplit": 1.5}, "datasetSplit"),
    ({"datasetSplit": "train"}, "datasetSplit"),  # a split name on a file source
    ({"evalSteps": 10}, "evalSteps"),  # no evaluation data
    ({"maxStep": 10}, "maxStep"),  # typo of a key
]


@pytest.mark.parametrize(("overrides", "field"), BAD_SCALARS, ids=[f for _, f in BAD_SCALARS])
def test_bad_values_name_the_field(overrides: dict[str, Any], field: str, home: Path) -> None:
    err = error(base(**overrides), home)
    assert err.field == field
    assert str(err).startswith(f"{field}: ")
    assert len(str(err)) > len(field) + 12  # says what to do, not just "invalid"


def test_4bit_message_says_how_to_fix(home: Path) -> None:
    err = error(base(loadIn4bit=True), home)
    assert "bitsandbytes" in str(err) and "GPU" in str(err) and "loadIn4bit to false" in str(err)


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ("not a dict", "config"),
        ({"datasetSource": {"type": "file", "path": str(TRAIN)}}, "model"),
        (base(model=""), "model"),
        (base(model=123), "model"),
        (base(model="./no/such/model"), "model"),
        (base(model="a/b/c"), "model"),
        (base(model="someone/not-cached-model"), "model"),  # offline, not in the HF cache
        ({"model": "arkor-nb/tiny"}, "datasetSource"),
        (base(datasetSource="data/triage.jsonl"), "datasetSource"),
        (base(datasetSource={"type": "s3", "path": "x"}), "datasetSource.type"),
        (base(datasetSource={"type": "file"}), "datasetSource.path"),
        (base(datasetSource={"type": "file", "path": "/nope/missing.jsonl"}), "datasetSource.path"),
        (base(datasetSource={"type": "file", "path": str(TRAIN), "evalPath": "/nope.jsonl"}),
         "datasetSource.evalPath"),
        (base(datasetSource={"type": "file", "path": str(TRAIN), "pth": "x"}), "datasetSource.pth"),
        (base(datasetSource={"type": "huggingface"}), "datasetSource.name"),
        (base(datasetSource={"type": "huggingface", "name": ""}), "datasetSource.name"),
        (base(datasetSource={"type": "blob", "url": "ftp://x/y.jsonl"}), "datasetSource.url"),
        (base(datasetSource={"type": "blob", "url": "https://x/y.jsonl", "token": 5}), "datasetSource.token"),
    ],
)
def test_bad_model_and_source(config: Any, field: str, home: Path) -> None:
    assert error(config, home).field == field


def test_offline_hub_id_message(home: Path) -> None:
    msg = str(error(base(model="someone/not-cached-model"), home))
    assert "offline" in msg and "hf download someone/not-cached-model" in msg and "arkor-nb/tiny" in msg
    assert ".gguf" in msg and "arkor-nb/smollm2-135m-instruct" in msg


def test_local_model_dir_checks(tmp_path: Path, home: Path) -> None:
    empty = tmp_path / "empty-model"
    empty.mkdir()
    assert "config.json" in str(error(base(model=str(empty)), home))
    remote = tmp_path / "remote-code"
    remote.mkdir()
    (remote / "config.json").write_text(json.dumps({"model_type": "x", "auto_map": {"AutoModel": "m.M"}}))
    err = error(base(model=str(remote)), home)
    assert err.field == "model" and "trust_remote_code" in str(err)
    ok = tmp_path / "ok-model"
    ok.mkdir()
    (ok / "config.json").write_text(json.dumps({"model_type": "llama"}))
    assert validate_config(base(model=str(ok)), home=home)["model"] == str(ok.resolve())


def test_synthetic_model_needs_no_dataset_and_loads_nothing(home: Path) -> None:
    out = validate_config({"model": "arkor-nb/synthetic", "maxSteps": 50, "evalSteps": 5}, home=home)
    assert out == {"model": "arkor-nb/synthetic", "maxSteps": 50, "evalSteps": 5}
    assert error({"model": "arkor-nb/synthetic", "maxSteps": 0}, home).field == "maxSteps"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_bad_rows_are_reported_with_line_numbers(tmp_path: Path, home: Path) -> None:
    good = json.dumps({"prompt": "a", "completion": "b"})
    data = write(tmp_path / "d.jsonl", "\n".join([
        good, "{not json", good, json.dumps({"prompt": "only"}), "",
        json.dumps({"messages": [{"role": "user", "content": "hi"}]}),
        json.dumps({"messages": [{"role": "wizard", "content": "x"}, {"role": "assistant", "content": "y"}]}),
    ]) + "\n")
    err = error(base(datasetSource={"type": "file", "path": str(data)}), home)
    assert err.field == "datasetSource.path"
    msg = str(err)
    assert "line 2: not valid JSON" in msg
    assert "line 4: no recognised columns" in msg
    assert "line 6: has no assistant message" in msg
    assert "line 7: message 0 has role 'wizard'" in msg
    assert "line 1" not in msg and "line 3" not in msg


def test_unrecognised_columns_suggest_datasetFormat(tmp_path: Path, home: Path) -> None:
    data = write(tmp_path / "qa.jsonl", json.dumps({"question": "q", "answer": "a"}) + "\n")
    msg = str(error(base(datasetSource={"type": "file", "path": str(data)}), home))
    assert "datasetFormat" in msg and "question" in msg
    out = validate_config(base(datasetSource={"type": "file", "path": str(data)},
                               datasetFormat={"prompt": "question", "completion": "answer"}), home=home)
    assert out["datasetFormat"] == {"prompt": "question", "completion": "answer"}


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_other_file_formats(tmp_path: Path, home: Path, fmt: str) -> None:
    rows = [{"instruction": "Sum", "input": "1 2", "output": "3"}, {"instruction": "Hi", "input": "", "output": "Hello"}]
    path = tmp_path / f"d.{fmt}"
    if fmt == "csv":
        path.write_text("instruction,input,output\nSum,1 2,3\nHi,,Hello\n")
    elif fmt == "json":
        path.write_text(json.dumps(rows))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    assert validate_config(base(datasetSource={"type": "file", "path": str(path)}), home=home)
    bad = tmp_path / f"bad.{fmt}"
    if fmt == "csv":
        bad.write_text("title,body\nx,y\n")
        where = "line 2"
    elif fmt == "json":
        bad.write_text(json.dumps([rows[0], {"title": "x"}]))
        where = "row 2"
    else:
        pq.write_table(pa.Table.from_pylist([{"title": "x"}]), bad)
        where = "row 1"
    assert where in str(error(base(datasetSource={"type": "file", "path": str(bad)}), home))


def test_unsupported_and_empty_files(tmp_path: Path, home: Path) -> None:
    assert "unsupported file type" in str(error(
        base(datasetSource={"type": "file", "path": str(write(tmp_path / "d.txt", "x"))}), home))
    assert "no rows" in str(error(
        base(datasetSource={"type": "file", "path": str(write(tmp_path / "e.jsonl", "\n"))}), home))
    assert error(base(datasetSource={"type": "file", "path": str(tmp_path)}), home).field == "datasetSource.path"


def test_paths_may_not_escape_the_allowed_roots(tmp_path: Path, home: Path) -> None:
    # A symlink inside an allowed folder pointing outside it is judged by its target.
    link = tmp_path / "innocent.jsonl"
    link.symlink_to("/etc/passwd")
    err = error(base(datasetSource={"type": "file", "path": str(link)}), home)
    assert err.field == "datasetSource.path" and "outside the allowed data folders" in str(err)
    err = error(base(datasetSource={"type": "file", "path": "/etc/../etc/hostname"}), home)
    assert "outside the allowed data folders" in str(err)
    # ...and a symlink to a file inside the roots is fine.
    inside = tmp_path / "alias.jsonl"
    inside.symlink_to(TRAIN)
    assert validate_config(base(datasetSource={"type": "file", "path": str(inside)}), home=home)


def test_extra_roots_from_the_environment(tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARKOR_NB_DATA_ROOTS", "/etc")
    # Now /etc is allowed: the next complaint is about the file type, not the folder.
    assert "unsupported file type" in str(error(base(datasetSource={"type": "file", "path": "/etc/hostname"}), home))


def test_optimizer_and_scheduler_names_exist_in_transformers() -> None:
    from transformers.trainer_utils import SchedulerType
    from transformers.training_args import OptimizerNames

    assert OPTIMIZERS <= {o.value for o in OptimizerNames}
    assert SCHEDULERS <= {s.value for s in SchedulerType}
