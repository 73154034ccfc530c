"""The `load_dataset:` section: a dataset named as `datasets.load_dataset` takes it, a Hub id or a local folder.

This is what TRL's `dataset_name`, `dataset_config`, `dataset_train_split` and `dataset_test_split`
(a `trl grpo` config) map onto:

```yaml
load_dataset:
  path: trl-lib/tldr          # a Hub id, or a local folder (relative to the directory grpokit runs in)
  name: null                  # the dataset's configuration (TRL: dataset_config)
  train_split: train
  test_split: test            # used when the dataset has it; null: no test split
```

A folder written by `save_to_disk` is read with `datasets.load_from_disk` (`load_dataset` refuses
those); anything else goes to `datasets.load_dataset(path, name=name)`, which reads a Hub dataset
(with `HF_TOKEN` for a gated one) or a local folder of data files. Every library error becomes one
`DataError` naming the path, and a missing split names the splits the dataset has.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from grpokit.errors import DataError


class LoadDatasetOptions(BaseModel):
    """The `load_dataset:` section: a dataset read through `datasets.load_dataset`."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(
        min_length=1,
        description="A Hugging Face Hub dataset id or a local folder, as datasets.load_dataset takes it "
        "(a save_to_disk folder too). TRL: dataset_name.",
    )
    name: str | None = Field(None, description="The dataset's configuration (load_dataset's name). TRL: dataset_config.")
    train_split: str = Field("train", min_length=1, description="The split to train on. TRL: dataset_train_split.")
    test_split: str | None = Field(
        "test",
        description="The evaluation split, used when the dataset has one (an error only when set to a split other "
        "than 'test' that is missing). None: no test split. TRL: dataset_test_split.",
    )


def _is_saved_to_disk(path: Path) -> bool:
    return path.is_dir() and ((path / "state.json").is_file() or (path / "dataset_dict.json").is_file())


def load_dataset_splits(options: LoadDatasetOptions):
    """The (train, test or None) `datasets.Dataset`s the section names.

    Raises:
        DataError: the dataset cannot be found or read, or has no such train split (or an explicitly
            named test split is missing); the message lists the splits it has.
    """
    import datasets

    local = Path(options.path).expanduser()
    try:
        if _is_saved_to_disk(local):
            loaded = datasets.load_from_disk(str(local), keep_in_memory=True)
        else:
            loaded = datasets.load_dataset(options.path, name=options.name)
    except (FileNotFoundError, ValueError, OSError, ConnectionError) as error:
        raise DataError(
            f"load_dataset: could not load {options.path!r}: {type(error).__name__}: {error}",
            where="load_dataset.path",
            fix="give a local folder (data files or a save_to_disk folder) or a Hub dataset id; gated datasets "
            "need HF_TOKEN, and HF_DATASETS_OFFLINE=1 allows only what is cached",
        ) from None
    if isinstance(loaded, datasets.Dataset):  # a save_to_disk of one split: it is the train split
        return loaded, None
    splits = list(loaded)
    if options.train_split not in loaded:
        raise DataError(
            f"load_dataset: {options.path!r} has no split {options.train_split!r} (splits: {', '.join(splits)})",
            where="load_dataset.train_split",
            fix=f"set load_dataset.train_split (TRL: dataset_train_split) to one of {', '.join(splits)}",
        )
    test = None
    if options.test_split is not None:
        if options.test_split in loaded:
            test = loaded[options.test_split]
        elif options.test_split != "test":
            raise DataError(
                f"load_dataset: {options.path!r} has no split {options.test_split!r} (splits: {', '.join(splits)})",
                where="load_dataset.test_split",
                fix=f"set load_dataset.test_split to one of {', '.join(splits)}, or null for no test split",
            )
    return loaded[options.train_split], test


def describe(options: LoadDatasetOptions, split: str) -> str:
    """How a split is named in messages: `load_dataset trl-lib/tldr[train]`."""
    config = f" ({options.name})" if options.name else ""
    return f"load_dataset {options.path}{config}[{split}]"


def load_hub_datasets(options: LoadDatasetOptions, dataset_options, *, required_columns=None):
    """The run's `LoadedData` from a `load_dataset:` section, shaped and checked as `data.loading` does.

    Raises `DataError` as `load_dataset_splits` and `prepare_dataset` do.
    """
    from grpokit.data.loading import LoadedData
    from grpokit.data.prompts import prepare_dataset

    train_raw, test_raw = load_dataset_splits(options)
    lines, prepared = [], {}
    for split_name, split, raw in (("train", options.train_split, train_raw), ("test", options.test_split, test_raw)):
        if raw is None:
            continue
        source = describe(options, split)
        prepared[split_name] = prepare_dataset(raw, dataset_options, required_columns=required_columns, source=source)
        lines.append(f"{split_name}: {len(prepared[split_name]):,} rows from {source}")
    return LoadedData(train=prepared["train"], test=prepared.get("test"), description="; ".join(lines))


def load_hub_split(options: LoadDatasetOptions, dataset_options, split: str, *, required_columns=None):
    """One prepared split (`train` or `test`) of a `load_dataset:` section. Raises `DataError` when it is missing."""
    loaded = load_hub_datasets(options, dataset_options, required_columns=required_columns)
    dataset = loaded.train if split == "train" else loaded.test
    if dataset is None:
        raise DataError(
            f"load_dataset: {options.path!r} has no test split to evaluate on",
            where="load_dataset.test_split",
            fix="set load_dataset.test_split to a split the dataset has, or pass --split train",
        )
    return dataset
