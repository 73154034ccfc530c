"""The data stage of a run: the train (and test) dataset loaded, shaped into prompts and checked."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import datasets

from grpokit.data.options import DatasetOptions
from grpokit.data.prompts import prepare_dataset
from grpokit.data.readers import format_label, read_source


@dataclass(frozen=True)
class LoadedData:
    """The prepared datasets for a run, and one line saying what was loaded."""

    train: datasets.Dataset | None  # None only when an environment makes its own tasks (TRL's placeholder rows)
    test: datasets.Dataset | None
    description: str  # "train: 1,000 rows from data/train.jsonl (jsonl)"


def load_datasets(
    train_path: str | Path,
    test_path: str | Path | None,
    options: DatasetOptions,
    *,
    required_columns: Mapping[str, Iterable[str]] | None = None,
) -> LoadedData:
    """Load and prepare the train dataset and, when `test_path` is given, the test dataset.

    Both use the same `options` and `required_columns` (TRL computes rewards on the test set too).
    Raises `DataError` as `load_table` and `prepare_dataset` do.
    """
    train, train_line = _load_and_prepare(train_path, options, required_columns, split="train")
    if test_path is None:
        return LoadedData(train=train, test=None, description=train_line)
    test, test_line = _load_and_prepare(test_path, options, required_columns, split="test")
    return LoadedData(train=train, test=test, description=f"{train_line}; {test_line}")


def _load_and_prepare(
    path: str | Path,
    options: DatasetOptions,
    required_columns: Mapping[str, Iterable[str]] | None,
    *,
    split: str,
) -> tuple[datasets.Dataset, str]:
    what = f"{split} dataset"
    raw, source = read_source(path, options.format, what)
    prepared = prepare_dataset(
        raw, options, required_columns=required_columns, source=f"{what} {source.file}"
    )
    rows = f"{len(prepared):,}" if len(prepared) == len(raw) else f"{len(prepared):,} of {len(raw):,}"
    return prepared, f"{split}: {rows} rows from {source.file} ({format_label(source)})"

