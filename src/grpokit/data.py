"""Reading a dataset and shaping it into the prompts TRL's `GRPOTrainer` expects.

Two steps, both pure functions of their inputs:

- `load_table(path)` reads a JSON array, JSON Lines, CSV, Parquet or Arrow file, a directory in the
  AWS SageMaker layout (`<channel>/dataset.json`, JSON Lines as written by `Dataset.to_json`), a
  directory holding a single data file, or a `save_to_disk` directory. Everything is read into
  memory: nothing is written to the Hugging Face cache or next to the data, and nothing is fetched.
- `prepare_dataset(dataset, options)` applies the `dataset:` options of the config (row limit,
  template, system prompt), puts the prompt in the column `prompt` that TRL reads, checks that every
  prompt is text or a chat conversation and that the columns the rewards read exist, and adds the
  `grpokit_row` column (the row's index in the source) that reward errors use to name a row.

Every other column is kept: TRL passes all dataset columns to the reward functions.
"""

from __future__ import annotations

import difflib
import json
import logging
import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import datasets
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from datasets.fingerprint import generate_random_fingerprint
from datasets.table import InMemoryTable
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from grpokit.errors import DataError

logger = logging.getLogger(__name__)

PROMPT_COLUMN = "prompt"  # the column TRL's GRPOTrainer reads prompts from
ROW_COLUMN = "grpokit_row"  # index of the row in the source; reward wrappers use it to name rows
SAGEMAKER_FILE_NAME = "dataset.json"  # the AWS SageMaker GRPO sample's file inside a channel dir
CHAT_ROLES = ("system", "user", "assistant")

DatasetFormat = Literal["auto", "json", "jsonl", "csv", "parquet", "arrow"]
_EXTENSION_FORMATS = {
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".arrow": "arrow",
}
_SUPPORTED_FILES = ".json, .jsonl, .csv, .parquet or .arrow"
_TYPE_NAMES = {
    dict: "JSON object",
    list: "list",
    str: "string",
    bool: "boolean",
    int: "number",
    float: "number",
    type(None): "null",
}
# Column names that usually hold the prompt; offered as a hint when `prompt_column` is missing.
_PROMPT_LIKE_COLUMNS = ("messages", "question", "problem", "instruction", "query", "input", "text")


class DatasetOptions(BaseModel):
    """The `dataset:` section of the config: how rows become prompts."""

    model_config = ConfigDict(extra="forbid")

    prompt_column: str = Field(
        default=PROMPT_COLUMN,
        min_length=1,
        description="Column holding the prompt: text, or a chat conversation (a list of "
        "{role, content} messages). Renamed to `prompt`, the column TRL reads.",
    )
    prompt_template: str | None = Field(
        default=None,
        description="Build the prompt from other columns with Python str.format placeholders, "
        "e.g. 'Question: {question}\\nAnswer:'. The result goes to the column `prompt` "
        "(replacing any column of that name); prompt_column is then not used.",
    )
    system_prompt: str | None = Field(
        default=None,
        description="System message added to every prompt. A text prompt becomes a chat "
        "[system, user]; a chat prompt gets it prepended unless it already has a system message, "
        "which is kept.",
    )
    format: DatasetFormat = Field(
        default="auto",
        description="File format of the dataset paths. 'auto' picks it from the extension, or "
        "the layout of a directory. 'json' and 'jsonl' both accept a JSON array or JSON Lines; "
        "'arrow' is an .arrow file or a datasets save_to_disk directory.",
    )
    max_samples: int | None = Field(
        default=None,
        ge=1,
        description="Keep only the first N rows of each dataset (after shuffle_seed), for quick runs.",
    )
    shuffle_seed: int | None = Field(
        default=None,
        description="Shuffle the rows with this seed before max_samples, to keep a random subset "
        "instead of the first rows. The trainer shuffles every epoch anyway.",
    )

    @field_validator("prompt_template")
    @classmethod
    def _template_names_columns(cls, template: str | None) -> str | None:
        if template is not None and not template_columns(template):
            raise ValueError("prompt_template has no {column} placeholder, e.g. 'Question: {question}'")
        return template

    @model_validator(mode="after")
    def _template_or_column(self) -> DatasetOptions:
        if self.prompt_template is not None and self.prompt_column != PROMPT_COLUMN:
            raise ValueError(
                "set either prompt_template (it writes the column `prompt`) or prompt_column, not both"
            )
        return self


@dataclass(frozen=True)
class LoadedData:
    """The prepared datasets for a run, and one line saying what was loaded."""

    train: datasets.Dataset
    test: datasets.Dataset | None
    description: str  # "train: 1,000 rows from data/train.jsonl (jsonl)"


@dataclass(frozen=True)
class _Source:
    """What `load_table` actually reads behind a user's path."""

    file: Path  # a data file, or a save_to_disk directory
    reader: str  # "json", "csv", "parquet", "arrow" or "save_to_disk"


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


def load_table(path: str | Path, *, fmt: str = "auto", what: str = "train dataset") -> datasets.Dataset:
    """Read a dataset file or directory into an in-memory `datasets.Dataset`, rows as stored.

    `path` is a .json file (a JSON array of objects, or JSON Lines), .jsonl, .csv (every cell read
    as text, exactly as written), .parquet or .arrow; or a directory holding `dataset.json` (the
    SageMaker layout), a `save_to_disk` dataset (for a saved DatasetDict, its "train" split), or a
    single data file. `fmt` overrides the detection (see `DatasetOptions.format`); `what` names
    the dataset in messages. Raises `DataError` when the path is missing, the format unsupported,
    the file unreadable (with the line number for JSON), or the dataset has no rows.
    """
    dataset, _ = _load(path, fmt, what)
    return dataset


def prepare_dataset(
    dataset: datasets.Dataset,
    options: DatasetOptions,
    *,
    required_columns: Mapping[str, Iterable[str]] | None = None,
    source: str,
) -> datasets.Dataset:
    """Shape rows into GRPO prompts and check them; returns a new dataset.

    In order: adds `grpokit_row` (index of the row in `dataset`), shuffles with `shuffle_seed`,
    keeps `max_samples` rows, fills `prompt_template` or renames `prompt_column` into `prompt`,
    checks `required_columns` (column -> names of the rewards that read it), checks that every
    prompt is non-empty text or a list of {role, content} messages with role system / user /
    assistant, and applies `system_prompt`. Other columns are kept. `source` names the dataset in
    messages ("train dataset data/train.jsonl"). Raises `DataError` naming the column or row.
    """
    if len(dataset) == 0:
        raise DataError(f"{source} has no rows", where=source, fix="add rows to the dataset")
    dataset = _with_source_rows(dataset)
    dataset = _sample(dataset, options)
    dataset = _with_prompt_column(dataset, options, source)
    _check_required_columns(dataset, required_columns or {}, source)
    _check_prompts(dataset, source)
    if options.system_prompt is not None:
        prompts = [
            _with_system_prompt(prompt, options.system_prompt) for prompt in _values(dataset, PROMPT_COLUMN)
        ]
        dataset = _replace_column(dataset, PROMPT_COLUMN, prompts)
    return dataset


def template_columns(template: str) -> list[str]:
    """The column names a `str.format` template reads, in order, without repeats.

    `"Q: {question} ({meta[source]})"` -> `["question", "meta"]`. Raises `ValueError` for a
    malformed template or a positional placeholder (`{}`, `{0}`).
    """
    columns: list[str] = []
    for _, field_name, _, _ in string.Formatter().parse(template):
        if field_name is None:
            continue
        column = re.split(r"[.\[]", field_name, maxsplit=1)[0]
        if not column or column.isdigit():
            raise ValueError(f"placeholder {{{field_name}}} must name a column, e.g. {{question}}")
        if column not in columns:
            columns.append(column)
    return columns


# ---------------------------------------------------------------------------------------------
# Loading


def _load_and_prepare(
    path: str | Path,
    options: DatasetOptions,
    required_columns: Mapping[str, Iterable[str]] | None,
    *,
    split: str,
) -> tuple[datasets.Dataset, str]:
    what = f"{split} dataset"
    raw, source = _load(path, options.format, what)
    prepared = prepare_dataset(
        raw, options, required_columns=required_columns, source=f"{what} {source.file}"
    )
    rows = f"{len(prepared):,}" if len(prepared) == len(raw) else f"{len(prepared):,} of {len(raw):,}"
    return prepared, f"{split}: {rows} rows from {source.file} ({_format_label(source)})"


def _load(path: str | Path, fmt: str, what: str) -> tuple[datasets.Dataset, _Source]:
    source = _resolve_source(path, fmt, what)
    readers = {
        "json": _read_json,
        "csv": _read_csv,
        "parquet": _read_parquet,
        "arrow": _read_arrow_file,
        "save_to_disk": _read_saved,
    }
    dataset = readers[source.reader](source.file, what)
    if len(dataset) == 0:
        raise DataError(
            f"{what} {source.file} has no rows",
            where=str(source.file),
            fix="add rows to the file, or point the dataset path at another file",
        )
    return dataset, source


def _resolve_source(path: str | Path, fmt: str, what: str) -> _Source:
    if fmt not in _EXTENSION_FORMATS.values() and fmt != "auto":
        raise DataError(
            f"unknown dataset format {fmt!r}",
            where="dataset.format",
            fix="use one of auto, json, jsonl, csv, parquet, arrow",
        )
    if str(path).startswith(("s3://", "hf://", "http://", "https://")):
        raise DataError(
            f"{what} path {path} is not a local path",
            where=str(path),
            fix="grpokit reads local files only: download the data first (on SageMaker, pass it as "
            "an input channel and use /opt/ml/input/data/<channel>/)",
        )
    file = Path(path).expanduser()
    if file.is_dir():
        return _resolve_directory(file, fmt, what)
    if not file.is_file():
        raise _missing_path_error(file, what)
    return _Source(file, _reader_for_file(file, fmt, what))


def _resolve_directory(directory: Path, fmt: str, what: str) -> _Source:
    if (directory / SAGEMAKER_FILE_NAME).is_file() and fmt in ("auto", "json", "jsonl"):
        return _Source(directory / SAGEMAKER_FILE_NAME, "json")
    if (directory / "state.json").is_file() or (directory / "dataset_dict.json").is_file():
        return _Source(directory, "save_to_disk")
    data_files = [
        entry
        for entry in sorted(directory.iterdir())
        if entry.is_file() and not entry.name.startswith(".") and _format_matches(entry, fmt)
    ]
    if len(data_files) == 1:
        return _Source(data_files[0], _reader_for_file(data_files[0], fmt, what))
    listing = ", ".join(entry.name for entry in sorted(directory.iterdir())[:12]) or "nothing"
    problem = "several data files" if data_files else "no data file"
    raise DataError(
        f"{what} directory {directory} holds {problem}",
        where=f"{directory} (holds: {listing})",
        fix=f"point the path at one file, or use a directory holding {SAGEMAKER_FILE_NAME}, a "
        f"datasets save_to_disk dataset, or a single {_SUPPORTED_FILES} file",
    )


def _format_matches(file: Path, fmt: str) -> bool:
    detected = _EXTENSION_FORMATS.get(file.suffix.lower())
    if fmt == "auto":
        return detected is not None
    return _reader_for_format(detected or "") == _reader_for_format(fmt)


def _reader_for_file(file: Path, fmt: str, what: str) -> str:
    if fmt != "auto":
        return _reader_for_format(fmt)
    detected = _EXTENSION_FORMATS.get(file.suffix.lower())
    if detected is None:
        raise DataError(
            f"{what} {file} has an unsupported extension {file.suffix or '(none)'!r}",
            where=str(file),
            fix=f"use a {_SUPPORTED_FILES} file, or set dataset.format (e.g. jsonl) to read it anyway",
        )
    return _reader_for_format(detected)


def _reader_for_format(fmt: str) -> str:
    return "json" if fmt in ("json", "jsonl") else fmt


def _missing_path_error(file: Path, what: str) -> DataError:
    fix = f"check the path (a relative path starts from the current directory {Path.cwd()})."
    if file.parent.is_dir():
        siblings = [entry.name for entry in file.parent.iterdir()]
        fix += _did_you_mean(file.name, siblings)
    elif len(file.parts) == 2 and not file.suffix:  # looks like a Hub id, "openai/gsm8k"
        fix += " grpokit does not download Hub datasets: save one with load_dataset(...).save_to_disk(dir)."
    return DataError(f"{what} not found: {file}", where=str(file.absolute()), fix=fix)


def _format_label(source: _Source) -> str:
    if source.reader == "json":
        return "json" if _first_character(source.file) == "[" else "jsonl"
    return source.reader


# ---------------------------------------------------------------------------------------------
# Readers: each returns an in-memory Dataset and turns its library's errors into DataError


def _read_json(file: Path, what: str) -> datasets.Dataset:
    """A JSON array of objects when the first non-space character is `[`, else JSON Lines."""
    text = _read_text(file, what)
    if not text.strip():
        raise DataError(f"{what} {file} is empty", where=str(file), fix="add rows to the file")
    rows = (
        _parse_json_array(text, file, what)
        if text.lstrip()[0] == "["
        else _parse_json_lines(text, file, what)
    )
    return _dataset_from_rows(rows, file, what)


def _read_text(file: Path, what: str) -> str:
    try:
        return file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataError(
            f"{what} {file} is not UTF-8 text (byte {error.start})",
            where=str(file),
            fix="save the file as UTF-8",
        ) from None


def _parse_json_array(text: str, file: Path, what: str) -> list[dict]:
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(
            f"{what} {file} is not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})",
            where=f"{file}, line {error.lineno}",
            fix="fix the JSON at that line",
        ) from None
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise DataError(
                f"{what} {file}: item {index} of the JSON array is a {_type_name(row)}, not an object",
                where=f"{file}, item {index}",
                fix='write one object per row: [{"prompt": "..."}, ...]',
            )
    return rows


def _parse_json_lines(text: str, file: Path, what: str) -> list[dict]:
    rows = []
    # Split on "\n" only: str.splitlines would also split inside strings holding U+2028 and kin.
    for line_number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise _bad_json_line(text, file, what, line_number, error) from None
        if not isinstance(row, dict):
            raise DataError(
                f"{what} {file}: line {line_number} is a {_type_name(row)}, not a JSON object",
                where=f"{file}, line {line_number}",
                fix='write one object per line: {"prompt": "..."}',
            )
        rows.append(row)
    return rows


def _bad_json_line(
    text: str, file: Path, what: str, line_number: int, error: json.JSONDecodeError
) -> DataError:
    fix = "fix that line; a JSON Lines file holds one complete JSON object per line"
    if text.lstrip().startswith("{"):
        try:
            whole = json.loads(text)
        except json.JSONDecodeError:
            whole = None
        if isinstance(whole, dict):
            fix = "the file holds one JSON object; write a JSON array of row objects or JSON Lines"
    return DataError(
        f"{what} {file} has invalid JSON on line {line_number}: {error.msg} (column {error.colno})",
        where=f"{file}, line {line_number}",
        fix=fix,
    )


def _dataset_from_rows(rows: list[dict], file: Path, what: str) -> datasets.Dataset:
    # Columns are the union of the rows' keys (Dataset.from_list keeps only the first row's keys).
    names = list(dict.fromkeys(name for row in rows for name in row))
    columns = {name: [row.get(name) for row in rows] for name in names}
    try:
        return datasets.Dataset.from_dict(columns)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as error:
        column = next((name for name in names if not _is_one_type(columns[name])), None)
        culprit = f"column {column!r} mixes value types" if column else "the rows do not form a table"
        raise DataError(
            f"{what} {file}: {culprit} ({error})",
            where=f"{file}, column {column}" if column else str(file),
            fix="give each column one type in every row (e.g. 'answer' always a string)",
        ) from None


def _is_one_type(values: list) -> bool:
    try:
        pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
        return False
    return True


def _read_csv(file: Path, what: str) -> datasets.Dataset:
    # Every cell is read as text, exactly as written: CSV has no types, and guessing turns the
    # answer "007" into 7 and "" into NaN. JSON Lines or Parquet keep numbers and lists.
    try:
        frame = pd.read_csv(file, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise DataError(f"{what} {file} is empty", where=str(file), fix="add a header and rows") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as error:
        raise DataError(
            f"{what} {file} is not a readable CSV file: {error}",
            where=str(file),
            fix="check quoting and the number of fields on that line (the first line is the header)",
        ) from None
    return datasets.Dataset.from_pandas(frame, preserve_index=False)


def _read_parquet(file: Path, what: str) -> datasets.Dataset:
    try:
        table = pq.read_table(file)
    except (pa.ArrowException, OSError) as error:
        raise DataError(
            f"{what} {file} is not a readable Parquet file: {error}",
            where=str(file),
            fix="write it again with pandas.DataFrame.to_parquet or Dataset.to_parquet",
        ) from None
    return datasets.Dataset(InMemoryTable(table))


def _read_arrow_file(file: Path, what: str) -> datasets.Dataset:
    # datasets writes the Arrow streaming format; pyarrow's own files use the file format.
    for open_reader in (pa.ipc.open_stream, pa.ipc.open_file):
        try:
            with pa.memory_map(str(file)) as source:
                return datasets.Dataset(InMemoryTable(open_reader(source).read_all()))
        except (pa.ArrowException, OSError):
            continue
    raise DataError(
        f"{what} {file} is not a readable Arrow file",
        where=str(file),
        fix="for a dataset written with save_to_disk, point the path at its directory",
    )


def _read_saved(directory: Path, what: str) -> datasets.Dataset:
    try:
        loaded = datasets.load_from_disk(str(directory), keep_in_memory=True)
    except (FileNotFoundError, ValueError, OSError, pa.ArrowException) as error:
        raise DataError(
            f"{what} {directory} is not a readable save_to_disk dataset: {error}",
            where=str(directory),
            fix="write it again with Dataset.save_to_disk",
        ) from None
    if isinstance(loaded, datasets.Dataset):
        return loaded
    if "train" in loaded:
        return loaded["train"]
    splits = ", ".join(loaded)
    raise DataError(
        f"{what} {directory} is a DatasetDict without a 'train' split (splits: {splits})",
        where=str(directory),
        fix=f"point the path at one split's directory, e.g. {directory / next(iter(loaded))}",
    )


# ---------------------------------------------------------------------------------------------
# Shaping prompts


def _with_source_rows(dataset: datasets.Dataset) -> datasets.Dataset:
    if ROW_COLUMN in dataset.column_names:  # a dataset prepared before: number it again
        dataset = dataset.remove_columns(ROW_COLUMN)
    return _add_column(dataset, ROW_COLUMN, list(range(len(dataset))))


def _sample(dataset: datasets.Dataset, options: DatasetOptions) -> datasets.Dataset:
    if options.shuffle_seed is not None:
        dataset = dataset.shuffle(seed=options.shuffle_seed, keep_in_memory=True)
    if options.max_samples is not None and options.max_samples < len(dataset):
        dataset = dataset.select(range(options.max_samples), keep_in_memory=True)
    if options.shuffle_seed is not None:
        dataset = dataset.flatten_indices(keep_in_memory=True)
    return dataset


def _with_prompt_column(dataset: datasets.Dataset, options: DatasetOptions, source: str) -> datasets.Dataset:
    if options.prompt_template is not None:
        prompts = _fill_template(dataset, options.prompt_template, source)
        _warn_if_replacing_prompt(dataset, "prompt_template", source)
        return _replace_column(dataset, PROMPT_COLUMN, prompts)
    column = options.prompt_column
    if column not in dataset.column_names:
        raise _missing_prompt_column_error(dataset, column, source)
    if column == PROMPT_COLUMN:
        return dataset
    _warn_if_replacing_prompt(dataset, f"prompt_column={column!r}", source)
    if PROMPT_COLUMN in dataset.column_names:
        dataset = dataset.remove_columns(PROMPT_COLUMN)
    return dataset.rename_column(column, PROMPT_COLUMN)


def _warn_if_replacing_prompt(dataset: datasets.Dataset, option: str, source: str) -> None:
    if PROMPT_COLUMN in dataset.column_names:
        logger.warning("%s: %s replaces the existing column 'prompt'", source, option)


def _missing_prompt_column_error(dataset: datasets.Dataset, column: str, source: str) -> DataError:
    columns = _user_columns(dataset)
    hint = _did_you_mean(column, columns)
    if not hint:
        likely = next((name for name in _PROMPT_LIKE_COLUMNS if name in columns), None)
        hint = f" The prompt may be in {likely!r}." if likely else ""
    return DataError(
        f"{source} has no prompt column {column!r}",
        where=f"{source} (columns: {', '.join(columns)})",
        fix="set dataset.prompt_column to the column holding the prompt, or build the prompt from "
        f"columns with dataset.prompt_template, e.g. 'Question: {{{columns[0]}}}'.{hint}",
    )


def _fill_template(dataset: datasets.Dataset, template: str, source: str) -> list[str]:
    columns = template_columns(template)
    missing = [column for column in columns if column not in dataset.column_names]
    if missing:
        available = _user_columns(dataset)
        raise DataError(
            f"dataset.prompt_template reads column {missing[0]!r}, which {source} does not have",
            where=f"{source} (columns: {', '.join(available)})",
            fix=f"use the column names of the data in the template.{_did_you_mean(missing[0], available)}",
        )
    source_rows = _values(dataset, ROW_COLUMN)
    column_values = {column: _values(dataset, column) for column in columns}
    prompts = []
    for position in range(len(dataset)):
        values = {column: column_values[column][position] for column in columns}
        empty = next((column for column in columns if values[column] is None), None)
        if empty is not None:
            raise DataError(
                f"row {source_rows[position]} of {source} has no value in column {empty!r}, "
                "which dataset.prompt_template reads",
                where=f"{source}, row {source_rows[position]} (first row is 0)",
                fix="fill the value or remove the row",
            )
        prompts.append(_format_row(template, values, source, source_rows[position]))
    return prompts


def _format_row(template: str, values: dict, source: str, row: int) -> str:
    try:
        return template.format(**values)
    except (KeyError, IndexError, AttributeError, ValueError, TypeError) as error:
        raise DataError(
            f"dataset.prompt_template cannot be filled from row {row} of {source}: {error!r}",
            where=f"{source}, row {row} (first row is 0)",
            fix="check the placeholders and format specs against the row's values",
        ) from None


def _with_system_prompt(prompt: str | list[dict], system_prompt: str) -> list[dict]:
    system_message = {"role": "system", "content": system_prompt}
    if isinstance(prompt, str):
        return [system_message, {"role": "user", "content": prompt}]
    if any(message["role"] == "system" for message in prompt):
        return prompt  # the row's own system message wins over the config's
    return [system_message, *prompt]


def _replace_column(dataset: datasets.Dataset, name: str, values: list) -> datasets.Dataset:
    others = [column for column in dataset.column_names if column != name]
    if name in dataset.column_names:
        dataset = dataset.remove_columns(name)
    return _add_column(dataset, name, values).select_columns([name, *others])


def _add_column(dataset: datasets.Dataset, name: str, values: list) -> datasets.Dataset:
    # A random fingerprint: the default one hashes every value, which doubles the time to prepare a
    # large dataset, and fingerprints only name cache files, which grpokit never writes.
    return dataset.add_column(name, values, new_fingerprint=generate_random_fingerprint())


# ---------------------------------------------------------------------------------------------
# Checks


def _check_required_columns(
    dataset: datasets.Dataset, required_columns: Mapping[str, Iterable[str]], source: str
) -> None:
    missing = {
        column: sorted(rewards)
        for column, rewards in required_columns.items()
        if column not in dataset.column_names
    }
    if not missing:
        return
    available = _user_columns(dataset)
    needs = "; ".join(
        f"{column!r} (read by reward {', '.join(rewards)})" for column, rewards in sorted(missing.items())
    )
    first = min(missing)
    raise DataError(
        f"{source} lacks column{'s' if len(missing) > 1 else ''} {needs}",
        where=f"{source} (columns: {', '.join(available)})",
        fix="add the column to the data, or change the reward's settings to read a column the data "
        f"has.{_did_you_mean(first, available)}",
    )


def _check_prompts(dataset: datasets.Dataset, source: str) -> None:
    problems = [
        (row, problem)
        for row, prompt in zip(_values(dataset, ROW_COLUMN), _values(dataset, PROMPT_COLUMN))
        if (problem := _prompt_problem(prompt)) is not None
    ]
    if not problems:
        return
    row, problem = problems[0]
    others = len(problems) - 1
    more = f" (and {others} more row{'s' if others > 1 else ''})" if others else ""
    raise DataError(
        f"row {row} of {source}: {problem}{more}",
        where=f"{source}, row {row} (first row is 0), column 'prompt'",
        fix="each prompt must be non-empty text or a list of chat messages "
        '[{"role": "system" | "user" | "assistant", "content": "..."}]',
    )


def _prompt_problem(prompt: object) -> str | None:
    """Why `prompt` cannot be a GRPO prompt, or None when it can."""
    if prompt is None:
        return "the prompt is empty (null)"
    if isinstance(prompt, str):
        return None if prompt.strip() else "the prompt is an empty string"
    if not isinstance(prompt, list):
        return f"the prompt is a {_type_name(prompt)}, not text or a list of chat messages"
    if not prompt:
        return "the prompt is an empty list of chat messages"
    for index, message in enumerate(prompt):
        if not isinstance(message, dict):
            return f"chat message {index} is a {_type_name(message)}, not a {{role, content}} object"
        if message.get("role") not in CHAT_ROLES:
            return (
                f"chat message {index} has role {message.get('role')!r}, not one of {', '.join(CHAT_ROLES)}"
            )
        if not isinstance(message.get("content"), str):
            return f"chat message {index} has no text content"
    return None


def _values(dataset: datasets.Dataset, column: str) -> list:
    # One read of the whole column: iterating a datasets Column formats one row at a time.
    return dataset[column][:]


def _user_columns(dataset: datasets.Dataset) -> list[str]:
    return [column for column in dataset.column_names if column != ROW_COLUMN]


def _did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


def _first_character(file: Path) -> str:
    """The first non-whitespace character of a text file, or "" for a blank file."""
    with file.open(encoding="utf-8-sig", errors="replace") as handle:
        while chunk := handle.read(4096):
            if stripped := chunk.lstrip():
                return stripped[0]
    return ""


def _type_name(value: object) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)
