"""The `dataset_mixture:` section: several datasets mixed into one training set, loaded as TRL loads them.

This is what `trl grpo`'s `datasets:` (with `streaming` and `test_split_size`, TRL's
`DatasetMixtureConfig`) maps onto:

```yaml
dataset_mixture:
  datasets:                     # each one as datasets.load_dataset takes it (TRL's DatasetConfig)
    - {path: json, data_files: data/math.jsonl, columns: [prompt, answer], fraction: 0.7}
    - {path: trl-lib/DeepMath-103K, split: train, columns: [prompt, answer], fraction: 0.3}
  test_split_size: 0.1          # hold out this share (or this many rows) as the test split; null: none
```

Loading calls TRL's own `get_dataset` with TRL's own `DatasetMixtureConfig`: every dataset is read with
`datasets.load_dataset` (a Hub id with `HF_TOKEN` for a gated one, a builder such as `json` with
`data_files`, or a local folder), its `columns` kept, the `fraction`s applied as TRL applies them
(target shares, no dataset oversampled), then concatenated and split. Relative paths start in the
directory grpokit runs in, as in TRL. Streaming is not offered: grpokit reads the data into memory.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from grpokit.errors import DataError


class MixtureDataset(BaseModel):
    """One dataset of a mixture: TRL's `DatasetConfig`, the arguments of `datasets.load_dataset`."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(min_length=1, description="A Hub dataset id, a builder (json, csv, parquet) or a local folder.")
    name: str | None = Field(None, description="The dataset's configuration.")
    data_dir: str | None = Field(None, description="The data directory within the dataset.")
    data_files: str | list[str] | dict[str, str] | None = Field(None, description="The data file(s) to read.")
    split: str = Field("train", min_length=1, description="The split to take.")
    columns: list[str] | None = Field(None, description="Keep these columns only. None: all.")
    fraction: float | None = Field(
        None, gt=0, description="Target share of the mixture (set for all datasets or none); None: the whole dataset."
    )


class DatasetMixtureOptions(BaseModel):
    """The `dataset_mixture:` section (TRL: `datasets`, `test_split_size`)."""

    model_config = ConfigDict(extra="forbid")

    datasets: list[MixtureDataset] = Field(min_length=1, description="The datasets to mix, in order.")
    test_split_size: int | float | None = Field(  # an int is a number of rows, as datasets' train_test_split reads it
        None, gt=0, description="The test split: a share (below 1) or a number of rows. None: no test split."
    )


def describe(options: DatasetMixtureOptions) -> str:
    """How the mixture is named in messages: `dataset_mixture (json, trl-lib/DeepMath-103K)`."""
    return f"dataset_mixture ({', '.join(entry.path for entry in options.datasets)})"


def load_mixture_splits(options: DatasetMixtureOptions):
    """(train, test or None) `datasets.Dataset`s of the mixture, loaded by TRL's `get_dataset`.

    Raises:
        DataError: a dataset cannot be found or read, or TRL rejects the mixture (fractions set for some only).
    """
    from trl import DatasetMixtureConfig, get_dataset
    from trl.scripts.utils import DatasetConfig

    config = DatasetMixtureConfig(
        datasets=[DatasetConfig(**entry.model_dump()) for entry in options.datasets],
        streaming=False,
        test_split_size=options.test_split_size,
    )
    try:
        loaded = get_dataset(config)
    except (FileNotFoundError, ValueError, OSError, ConnectionError, KeyError) as error:
        raise DataError(
            f"{describe(options)}: {type(error).__name__}: {error}",
            where="dataset_mixture.datasets",
            fix="give each dataset as datasets.load_dataset takes it (a Hub id, or a builder such as json with "
            "data_files); gated datasets need HF_TOKEN, and HF_DATASETS_OFFLINE=1 allows only what is cached",
        ) from None
    return loaded["train"], loaded.get("test")


def load_mixture_datasets(options: DatasetMixtureOptions, dataset_options, *, required_columns=None):
    """The run's `LoadedData` from a `dataset_mixture:` section, shaped and checked as `data.loading` does.

    Raises `DataError` as `load_mixture_splits` and `prepare_dataset` do.
    """
    from grpokit.data.loading import LoadedData
    from grpokit.data.prompts import prepare_dataset

    train_raw, test_raw = load_mixture_splits(options)
    lines, prepared = [], {}
    for split, raw in (("train", train_raw), ("test", test_raw)):
        if raw is None:
            continue
        source = f"{describe(options)}[{split}]"
        prepared[split] = prepare_dataset(raw, dataset_options, required_columns=required_columns, source=source)
        lines.append(f"{split}: {len(prepared[split]):,} rows from {source}")
    return LoadedData(train=prepared["train"], test=prepared.get("test"), description="; ".join(lines))
