"""Which data path a job takes: every row read and tokenised up front, or rows on demand.

The eager path (``plan.load_rows``) normalises every row before the model is
loaded and tokenises them all before step 1: simple, and it knows the exact
number of rows kept, but its start and memory grow with the file (100,000
rows: 65 s and 1.2 GB before step 1). The lazy path (``lazy.LazyRows``) takes
a large ``.jsonl`` file: one vectorised pass finds the rows, and each row is
read, normalised and tokenised when the ``Trainer`` asks for it. Both hold
out the same rows for ``datasetSplit`` and keep the file's order, so they
train the same model; the difference is where a row cut off at ``maxLength``
is dropped (up front vs where it is met, counted in ``droppedRows`` at the
end) and hence the epoch length when rows drop.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arkor_nb.core.errors import ConfigError
from arkor_nb.local.data.lazy import LazyRows, holdout, line_index
from arkor_nb.local.data.rows import parse_format
from arkor_nb.local.training.plan import DRY_RUN_ROWS, check_holdout, load_rows

# Files with more rows than this take the lazy path ("auto"); ARKOR_NB_LAZY_DATA=1/0 forces it.
LAZY_MIN_ROWS = 20_000
_JSONL = (".jsonl", ".ndjson")


@dataclass
class Data:
    """Training and evaluation rows: normalised lists (eager) or ``LazyRows`` (lazy)."""

    train: Any
    evals: Any
    lazy: bool

    def encoded(self, encode: Any) -> tuple[Any, Any, int | None]:
        """``(train_set, eval_set, dropped)``; ``dropped`` is None while the lazy path reads on."""
        if self.lazy:
            self.train.encode = encode
            if self.evals is not None:
                self.evals.encode = encode
            return self.train, self.evals if self.evals is not None else [], None
        dropped = 0
        sets = []
        for rows in (self.train, self.evals):
            kept = [e for e in (encode(r) for r in rows) if e is not None]
            dropped += len(rows) - len(kept)
            sets.append(kept)
        return sets[0], sets[1], dropped


def lazy_choice(default: str | None = None) -> str:
    """``"auto"`` (by row count), ``"on"`` or ``"off"``: the ``ARKOR_NB_LAZY_DATA`` switch."""
    value = (default or os.environ.get("ARKOR_NB_LAZY_DATA", "auto")).strip().lower()
    return {"1": "on", "true": "on", "on": "on", "0": "off", "false": "off", "off": "off"}.get(value, "auto")


def load_data(config: dict[str, Any], home: Path, cancel: threading.Event | None = None,
              lazy: str | None = None) -> Data:
    """Rows for a validated config by the path ``lazy`` (or the environment) picks."""
    choice = lazy_choice(lazy)
    source = config.get("datasetSource") or {}
    path = Path(source["path"]) if source.get("type") == "file" and source.get("path") else None
    if choice == "off" or path is None or path.suffix.lower() not in _JSONL:
        return _eager(config, home)
    starts, numbers = line_index(path, cancel)
    if choice == "auto" and len(starts) <= LAZY_MIN_ROWS:
        return _eager(config, home)
    fmt = parse_format(config.get("datasetFormat"))
    positions = _all(len(starts))
    split = config.get("datasetSplit")
    held = None
    if isinstance(split, float):
        check_holdout(len(starts), split)
        positions, held_positions = holdout(len(starts), split)
        held = LazyRows(path, starts, numbers, held_positions, fmt)
    train = LazyRows(path, starts, numbers, positions, fmt)
    if not len(train):
        raise ConfigError("datasetSource", "has no training rows")
    evals = held
    eval_path = source.get("evalPath")
    if eval_path:
        e_path = Path(eval_path)
        if e_path.suffix.lower() not in _JSONL:
            raise ConfigError("datasetSource.evalPath", "with a large .jsonl training file the "
                              "evaluation file must be .jsonl too; convert it or use datasetSplit")
        e_starts, e_numbers = line_index(e_path, cancel)
        evals = LazyRows(e_path, e_starts, e_numbers, _all(len(e_starts)), fmt)
        if held is not None:
            raise ConfigError("datasetSplit", "give either datasetSplit or datasetSource.evalPath "
                              "with a large .jsonl file, not both")
    if config.get("dryRun"):
        train = train.head(DRY_RUN_ROWS)
        evals = evals.head(DRY_RUN_ROWS // 2) if evals is not None else None
    return Data(train=train, evals=evals, lazy=True)


def _all(n: int) -> Any:
    import numpy as np

    return np.arange(n, dtype=np.int64)


def _eager(config: dict[str, Any], home: Path) -> Data:
    train, evals = load_rows(config, home)
    if config.get("dryRun"):
        train, evals = train[:DRY_RUN_ROWS], evals[: DRY_RUN_ROWS // 2]
    return Data(train=train, evals=evals, lazy=False)


def collate_for(dataset: Any, collate: Any, pad_id: int) -> Any:
    """The data collator: lazy items that dropped (None) are left out of their batch."""

    def run(features: list[Any]) -> Any:
        kept = [f for f in features if f is not None]
        if not kept:
            kept = [dataset.keep_batch()]
        return collate(kept, pad_id)

    return run


class EpochOrder:
    """The training sampler of the lazy path: the order accelerate's
    ``SeedableRandomSampler`` gives (``randperm`` seeded with seed + epoch), which the
    eager path gets, handed out in chunks. torch's ``RandomSampler`` turns each epoch's
    permutation into a Python list (~36 bytes a row, 36 MB for 1M rows); this holds
    the 8-byte tensor and one chunk's list."""

    CHUNK = 1 << 16

    def __init__(self, rows: int, seed: int) -> None:
        self.rows, self.seed, self.epoch = rows, seed, 0

    def __len__(self) -> int:
        return self.rows

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Any:
        import torch

        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        for chunk in torch.randperm(self.rows, generator=generator).split(self.CHUNK):
            yield from chunk.tolist()
        self.set_epoch(self.epoch + 1)


def lazy_sampling(trainer: Any) -> Any:
    """``trainer`` (a ``transformers.Trainer`` class) with ``EpochOrder`` as its
    training sampler, seeded as accelerate seeds its own (``data_seed`` or torch's seed)."""

    class LazySampling(trainer):  # type: ignore[misc,valid-type]
        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            import torch

            dataset = self.train_dataset if train_dataset is None else train_dataset
            seedable = self.args.accelerator_config.use_seedable_sampler
            if self.args.train_sampling_strategy != "random" or self.args.world_size > 1 or not seedable:
                return super()._get_train_sampler(train_dataset)
            seed = self.args.data_seed if self.args.data_seed is not None else torch.random.initial_seed()
            return EpochOrder(len(dataset), seed)

    return LazySampling
