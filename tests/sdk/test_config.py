"""create_trainer arguments: exact wire keys, unknown keywords, bad values, cloud models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import arkor_nb as ak
from arkor_nb.sdk.backends import LocalBackend


def local(**kwargs: Any) -> ak.Trainer:
    """A local-backend trainer pointed at an explicit URL, so nothing is launched."""
    kwargs.setdefault("name", "n")
    kwargs.setdefault("model", "arkor-nb/tiny")
    return ak.create_trainer(backend=LocalBackend(url="http://127.0.0.1:9", token="t"), **kwargs)


def test_every_option_maps_to_its_camel_case_wire_key(tmp_path: Path) -> None:
    data = tmp_path / "train.jsonl"
    trainer = local(
        dataset={"type": "file", "path": str(data)},
        lora={"r": 16, "alpha": 32, "max_length": 512, "load_in_4bit": False},
        max_steps=100,
        num_train_epochs=2,
        learning_rate=2e-4,
        batch_size=4,
        optim="adamw_torch",
        lr_scheduler_type="cosine",
        weight_decay=0.0,
        warmup_steps=0,
        logging_steps=1,
        save_steps=10,
        eval_steps=5,
        dataset_format="chat",
        dataset_split="train",
        train_on_responses_only=True,
        dry_run=False,
    )
    assert trainer.config == {
        "model": "arkor-nb/tiny",
        "datasetSource": {"type": "file", "path": str(data)},
        "loraR": 16,
        "loraAlpha": 32,
        "maxLength": 512,
        "loadIn4bit": False,
        "maxSteps": 100,
        "numTrainEpochs": 2,
        "learningRate": 2e-4,
        "batchSize": 4,
        "optim": "adamw_torch",
        "lrSchedulerType": "cosine",
        "weightDecay": 0.0,
        "warmupSteps": 0,
        "loggingSteps": 1,
        "saveSteps": 10,
        "evalSteps": 5,
        "trainOnResponsesOnly": True,
        "datasetFormat": "chat",
        "datasetSplit": "train",
        "dryRun": False,
    }


def test_only_set_keys_are_sent() -> None:
    assert local().config == {"model": "arkor-nb/tiny"}
    assert local(max_steps=3).config == {"model": "arkor-nb/tiny", "maxSteps": 3}
    assert local(lora={"r": 4}).config == {"model": "arkor-nb/tiny", "loraR": 4}


def test_dataset_sources_are_camel_cased_and_local_paths_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    trainer = local(dataset={"type": "file", "path": "data/train.jsonl"})
    assert trainer.config["datasetSource"] == {"type": "file", "path": str(tmp_path / "data" / "train.jsonl")}
    hf = local(dataset={"type": "huggingface", "name": "org/ds", "split": "train", "subset": "en", "data_dir": "x"})
    assert hf.config["datasetSource"] == {
        "type": "huggingface", "name": "org/ds", "split": "train", "subset": "en", "dataDir": "x"
    }
    cloud = ak.create_trainer(
        name="n",
        model=ak.SUPPORTED_MODELS[0],
        dataset={"type": "blob", "url": "https://example.invalid/x.jsonl", "token": "s"},
        backend=ak.CloudBackend(base_url="http://127.0.0.1:9", token="t", org_slug="o", project_slug="p"),
    )
    assert cloud.config["datasetSource"] == {"type": "blob", "url": "https://example.invalid/x.jsonl", "token": "s"}
    assert cloud.backend_kind == "cloud" and local().backend_kind == "local"


def test_unknown_keyword_is_a_type_error_naming_it() -> None:
    with pytest.raises(TypeError, match="max_step"):
        local(max_step=10)
    with pytest.raises(TypeError, match="learningRate"):
        local(learningRate=1e-4)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": ""}, "name"),
        ({"model": 3}, "model"),
        ({"max_steps": 0}, "max_steps"),
        ({"max_steps": 2.5}, "max_steps"),
        ({"max_steps": True}, "max_steps"),
        ({"learning_rate": -1.0}, "learning_rate"),
        ({"learning_rate": float("nan")}, "learning_rate"),
        ({"batch_size": "4"}, "batch_size"),
        ({"warmup_steps": -1}, "warmup_steps"),
        ({"weight_decay": -0.1}, "weight_decay"),
        ({"dry_run": "yes"}, "dry_run"),
        ({"optim": ""}, "optim"),
        ({"lora": {"rank": 8}}, "lora.rank"),
        ({"lora": {"r": 0}}, "lora.r"),
        ({"lora": {"load_in_4bit": 1}}, "lora.load_in_4bit"),
        ({"lora": [16, 16]}, "lora"),
        ({"dataset": "data.jsonl"}, "dataset"),
        ({"dataset": {"type": "csv", "path": "x"}}, "dataset.type"),
        ({"dataset": {"type": "file"}}, "dataset.path"),
        ({"dataset": {"type": "huggingface", "name": ""}}, "dataset.name"),
        ({"dataset": {"type": "blob"}}, "dataset.url"),
        ({"callbacks": {"on_loss": print}}, "callbacks.on_loss"),
        ({"callbacks": {"on_log": "print"}}, "callbacks.on_log"),
        ({"callbacks": [print]}, "callbacks"),
        ({"abort_signal": object()}, "abort_signal"),
        ({"reconnect": {"initial_delay": -1}}, "reconnect"),
        ({"reconnect": 5}, "reconnect"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**32}, "seed"),
        ({"seed": 4.0}, "seed"),
        ({"seed": False}, "seed"),
    ],
)
def test_bad_values_raise_config_error_naming_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ak.ConfigError) as info:
        local(**kwargs)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


def test_seed_is_a_local_option_sent_only_when_set() -> None:
    assert local(seed=7).config["seed"] == 7
    assert local(seed=0).config["seed"] == 0
    assert "seed" not in local().config
    with pytest.raises(ak.ConfigError) as info:
        ak.create_trainer(name="n", model=ak.SUPPORTED_MODELS[0], backend="cloud", seed=7)
    assert info.value.field == "seed" and "local-backend option" in str(info.value)


def test_bad_backend_is_named() -> None:
    with pytest.raises(ak.ConfigError) as info:
        ak.create_trainer(name="n", model="m", backend="gpu-cluster")
    assert info.value.field == "backend" and "gpu-cluster" in str(info.value)


def test_cloud_backend_checks_the_model_and_lists_supported_ones() -> None:
    with pytest.raises(ak.ConfigError) as info:
        ak.create_trainer(name="n", model="gpt2", backend="cloud")
    assert info.value.field == "model"
    for model in ak.SUPPORTED_MODELS:
        assert model in str(info.value)
    assert ak.create_trainer(name="n", model=ak.SUPPORTED_MODELS[0], backend="cloud").backend_kind == "cloud"
    # any model is fine locally
    assert local(model="gpt2").config["model"] == "gpt2"


def test_callbacks_accept_a_dict_or_callbacks_and_reconnect_a_dict() -> None:
    def fn(ctx: object) -> None:
        return None

    assert local(callbacks={"on_log": fn}).callbacks.on_log is fn
    assert local(callbacks=ak.Callbacks(on_failed=fn)).callbacks.on_failed is fn
    policy = local(reconnect={"initial_delay": 0.5, "max_delay": 2.0, "max_attempts": 3}).reconnect
    assert policy == ak.ReconnectPolicy(initial_delay=0.5, max_delay=2.0, max_attempts=3)
    assert local().reconnect == ak.ReconnectPolicy(initial_delay=1.0, max_delay=60.0, max_attempts=None)


def test_backend_constructors_reject_half_configured_parts() -> None:
    with pytest.raises(ak.ConfigError, match="token"):
        ak.LocalBackend(url="http://127.0.0.1:1")
    with pytest.raises(ak.ConfigError, match="project_slug"):
        ak.CloudBackend(org_slug="o")
    with pytest.raises(ak.ConfigError, match="keepalive"):
        ak.CloudBackend(keepalive=0)


def test_eval_fraction_and_column_mapping_reach_the_wire(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    trainer = local(
        dataset={"type": "file", "path": Path("train.jsonl"), "eval_path": "eval.jsonl"},
        dataset_split=0.1,
        dataset_format={"prompt": "question", "completion": "answer"},
    )
    assert trainer.config["datasetSplit"] == 0.1
    assert trainer.config["datasetFormat"] == {"prompt": "question", "completion": "answer"}
    assert trainer.config["datasetSource"] == {
        "type": "file",
        "path": str(tmp_path / "train.jsonl"),
        "evalPath": str(tmp_path / "eval.jsonl"),
    }


@pytest.mark.parametrize("split", [0, 1, 1.5, -0.1, "", True])
def test_bad_dataset_split_names_the_field(split: Any) -> None:
    with pytest.raises(ak.ConfigError) as info:
        local(dataset_split=split)
    assert info.value.field == "dataset_split"


@pytest.mark.parametrize("fmt", [{}, {"prompt": 3}, 5])
def test_bad_dataset_format_names_the_field(fmt: Any) -> None:
    with pytest.raises(ak.ConfigError) as info:
        local(dataset_format=fmt)
    assert info.value.field == "dataset_format"
