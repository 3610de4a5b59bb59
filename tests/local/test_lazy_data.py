"""The lazy data path: same rows, same order and same model as the eager one, a start and a
memory that do not grow with the file, and a cancel during preparation that ends the job."""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path
from typing import Any

import pytest

from arkor_nb.local.data.lazy import LazyRows, line_index
from arkor_nb.local.data.tokenize import encode_row
from arkor_nb.local.training.data_plan import load_data
from arkor_nb.local.training.plan import load_rows
from tests.local.training_helpers import TRAIN, logs, run_worker, start_worker, started, terminal


def _qa_file(path: Path, n: int, *, blank_every: int = 0, bom: bool = False) -> Path:
    lines = []
    for i in range(n):
        lines.append(json.dumps({"question": f"ticket {i}: my card was declined", "answer": f"billing {i}"}))
        if blank_every and i % blank_every == 0:
            lines.append("   " if i % 2 else "")
    path.write_text(("\ufeff" if bom else "") + "\n".join(lines) + "\n", encoding="utf-8")
    return path


def _all_rows(rows: Any) -> list[dict[str, Any]]:
    return [rows.row(i) for i in range(len(rows))] if isinstance(rows, LazyRows) else list(rows)


@pytest.mark.parametrize("split", [None, 0.2])
def test_lazy_rows_are_the_eager_rows_in_the_same_order(tmp_path: Path, split: float | None) -> None:
    data = _qa_file(tmp_path / "qa.jsonl", 137, blank_every=10, bom=True)
    config: dict[str, Any] = {"datasetSource": {"type": "file", "path": str(data)},
                              "datasetFormat": {"prompt": "question", "completion": "answer"}}
    if split:
        config["datasetSplit"] = split
    eager_train, eager_eval = load_rows(config, tmp_path)
    lazy = load_data(config, tmp_path, lazy="on")
    assert lazy.lazy and len(lazy.train) == len(eager_train)
    assert _all_rows(lazy.train) == eager_train
    assert _all_rows(lazy.evals) == eager_eval if split else lazy.evals is None
    if split:
        assert len(eager_eval) == round(137 * split) and len(eager_train) + len(eager_eval) == 137
    # The line number of a row is the file's line (blank lines count), as the eager reader says.
    starts, numbers = line_index(data)
    assert len(starts) == 137 and numbers is not None and int(numbers[-1]) == 137 + 14


def test_lazy_dry_run_and_eval_file_match_eager(tmp_path: Path) -> None:
    config = {"datasetSource": {"type": "file", "path": str(TRAIN), "evalPath": str(TRAIN)}, "dryRun": True}
    eager = load_data(config, tmp_path, lazy="off")
    lazy = load_data(config, tmp_path, lazy="on")
    assert len(lazy.train) == 16 and len(lazy.evals) == 8
    assert _all_rows(lazy.train) == eager.train and _all_rows(lazy.evals) == eager.evals


def test_lazy_encoding_drops_the_same_rows(tmp_path: Path, built_tiny: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(built_tiny)
    rows = [{"prompt": "short question", "completion": "yes"},
            {"prompt": "a very long question " * 40, "completion": "cut off"}] * 5
    data = tmp_path / "mixed.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = {"datasetSource": {"type": "file", "path": str(data)}}

    def encode(row: dict[str, Any]) -> Any:
        return encode_row(row, tokenizer, 48, True)

    eager_train, _, eager_dropped = load_data(config, tmp_path, lazy="off").encoded(encode)
    lazy_train, _, unknown = load_data(config, tmp_path, lazy="on").encoded(encode)
    assert unknown is None and eager_dropped == 5 and len(eager_train) == 5
    items = list(lazy_train)
    assert [i for i in items if i is not None] == eager_train
    assert lazy_train.dropped == 5
    list(lazy_train)  # a second epoch counts each dropped row once
    assert lazy_train.dropped == 5
    assert lazy_train.keep_batch() == eager_train[0]


def test_lazy_sampler_keeps_accelerates_order_without_a_list_of_the_epoch() -> None:
    import tracemalloc

    import torch
    from accelerate.data_loader import SeedableRandomSampler

    from arkor_nb.local.training.data_plan import EpochOrder

    rows = 2 * EpochOrder.CHUNK + 3  # the last chunk is a short one
    ours, theirs = EpochOrder(rows, seed=7), SeedableRandomSampler(range(rows), data_seed=7)
    for epoch in range(3):  # as Trainer drives them: set_epoch, then one pass
        ours.set_epoch(epoch)
        theirs.set_epoch(epoch)
        assert list(ours) == list(theirs), epoch
    assert len(set(EpochOrder(rows, seed=7))) == rows == len(ours)

    def peak(sampler: Any) -> int:
        tracemalloc.start()
        for _ in sampler:
            pass
        top = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return top

    torch.manual_seed(0)
    million = 1_000_000
    mine, torchs = peak(EpochOrder(million, seed=1)), peak(SeedableRandomSampler(range(million), data_seed=1))
    assert mine * 4 < torchs, (mine, torchs)  # one 65,536-row chunk, not the 1M-row list


def test_index_stops_when_cancelled(tmp_path: Path) -> None:
    from arkor_nb.local.data.lazy import IndexCancelled

    cancel = threading.Event()
    cancel.set()
    with pytest.raises(IndexCancelled):
        line_index(TRAIN, cancel)


def test_lazy_and_eager_workers_train_the_same_model(tmp_path: Path, built_tiny: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    config = {"model": "arkor-nb/tiny", "datasetSource": {"type": "file", "path": str(TRAIN)},
              "datasetSplit": 0.1, "maxSteps": 6, "loggingSteps": 1, "batchSize": 4}
    runs = {}
    for lazy in ("0", "1"):
        monkeypatch.setenv("ARKOR_NB_LAZY_DATA", lazy)
        events = run_worker(config, tmp_path / f"job-{lazy}")
        assert terminal(events)["type"] == "training.completed", events[-1]
        meta = started(events)["metadata"]
        assert meta["lazyData"] is (lazy == "1")
        assert (meta["trainRows"], meta["evalRows"]) == (288, 32)
        runs[lazy] = [e["loss"] for e in logs(events)]
    assert len(runs["0"]) == 6
    # Same rows, same order, same batches: the losses agree to float rounding.
    for a, b in zip(runs["0"], runs["1"], strict=True):
        assert math.isclose(a, b, rel_tol=1e-6), (runs["0"], runs["1"])


def test_lazy_epoch_length_and_dropped_rows(tmp_path: Path, built_tiny: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [{"prompt": f"question {i}", "completion": "an answer"} for i in range(37)]
    rows[5] = rows[20] = {"prompt": "a very long question " * 40, "completion": "cut off"}
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setenv("ARKOR_NB_LAZY_DATA", "1")
    events = run_worker({"model": "arkor-nb/tiny", "datasetSource": {"type": "file", "path": str(data)},
                         "numTrainEpochs": 2, "batchSize": 8, "maxLength": 32, "loggingSteps": 1},
                        tmp_path / "job")
    end = terminal(events)
    assert end["type"] == "training.completed", end
    assert started(events)["metadata"]["trainRows"] == 37
    # One epoch is the file's rows over the batch size; the cut-off rows are counted once.
    assert end["metrics"]["steps"] == 2 * math.ceil(37 / 8)
    assert end["metrics"]["droppedRows"] == 2


def test_bad_row_met_on_the_lazy_path_fails_with_its_line(tmp_path: Path, built_tiny: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    data = _qa_file(tmp_path / "qa.jsonl", 1_100)
    lines = data.read_text().splitlines()
    lines[1_049] = '{"question": "no answer column"}'  # past the rows the worker re-checks
    data.write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("ARKOR_NB_LAZY_DATA", "1")
    config = {"model": "arkor-nb/tiny", "datasetSource": {"type": "file", "path": str(data)},
              "datasetFormat": {"prompt": "question", "completion": "answer"}, "batchSize": 64}
    events = run_worker(config, tmp_path / "job")
    end = terminal(events)
    assert end["type"] == "training.failed", end
    assert end["error"].startswith("datasetSource: line 1050: missing column(s) ['answer']"), end


def _million_rows(path: Path) -> Path:
    with open(path, "w") as fh:
        fh.writelines(f'{{"prompt": "ticket {i}: my card was declined", "completion": "billing"}}\n'
                      for i in range(1_000_000))
    return path


@pytest.fixture(scope="module")
def million(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _million_rows(tmp_path_factory.mktemp("million") / "rows.jsonl")


def test_a_million_rows_stream_with_bounded_memory(tmp_path: Path, built_tiny: Path, million: Path) -> None:
    config = {"model": "arkor-nb/tiny", "datasetSource": {"type": "file", "path": str(million)},
              "datasetSplit": 0.001, "maxSteps": 2, "batchSize": 8, "loggingSteps": 1}
    events = run_worker(config, tmp_path / "job")
    end = terminal(events)
    assert end["type"] == "training.completed", end
    meta = started(events)["metadata"]
    assert meta["lazyData"] is True and meta["trainRows"] == 999_000 and meta["evalRows"] == 1_000
    assert [e["step"] for e in logs(events)] == [1, 2]
    # Reading every row up front takes ~1.2 GB per 100,000 rows; streaming keeps the tiny
    # model's worker near its ~550 MB of a 320-row run (row offsets: 8 bytes a row).
    assert meta["peakRssMb"] < 800 and end["metrics"]["peakRssMb"] < 800, (meta, end["metrics"])


def test_cancel_during_preparation_ends_the_job_as_cancelled(tmp_path: Path, built_tiny: Path,
                                                            million: Path) -> None:
    config = {"model": "arkor-nb/tiny", "datasetSource": {"type": "file", "path": str(million)},
              "maxSteps": 5}
    run = start_worker(config, tmp_path / "job")
    run.wait_for(lambda e: e["type"] == "training.phase")
    run.send("cancel")
    events = run.finish(timeout=60)
    end = terminal(events)
    assert end == {**end, "type": "training.cancelled", "step": 0}
    assert not any(e["type"] == "training.log" for e in events)
    assert run.proc.returncode == 0
