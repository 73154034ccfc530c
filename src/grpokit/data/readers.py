"""Reading a dataset file or directory into an in-memory `datasets.Dataset`, rows as stored.

`load_table(path)` reads a JSON array, JSON Lines, CSV, Parquet or Arrow file, a directory in the
AWS SageMaker layout (`<channel>/dataset.json`, JSON Lines as written by `Dataset.to_json`), a
directory holding a single data file, or a `save_to_disk` directory. Everything is read into
memory: nothing is written to the Hugging Face cache or next to the data, and nothing is fetched.
Every reader turns its library's errors into a `DataError` naming the file (and the line, for JSON).
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path

import datasets
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from datasets.table import InMemoryTable

from grpokit.errors import DataError

SAGEMAKER_FILE_NAME = "dataset.json"  # the AWS SageMaker GRPO sample's file inside a channel dir
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


@dataclass(frozen=True)
class Source:
    """What `load_table` actually reads behind a user's path."""

    file: Path  # a data file, or a save_to_disk directory
    reader: str  # "json", "csv", "parquet", "arrow" or "save_to_disk"


def load_table(path: str | Path, *, fmt: str = "auto", what: str = "train dataset") -> datasets.Dataset:
    """Read a dataset file or directory into an in-memory `datasets.Dataset`, rows as stored.

    `path` is a .json file (a JSON array of objects, or JSON Lines), .jsonl, .csv (every cell read
    as text, exactly as written), .parquet or .arrow; or a directory holding `dataset.json` (the
    SageMaker layout), a `save_to_disk` dataset (for a saved DatasetDict, its "train" split), or a
    single data file. `fmt` overrides the detection (see `DatasetOptions.format`); `what` names
    the dataset in messages. Raises `DataError` when the path is missing, the format unsupported,
    the file unreadable (with the line number for JSON), or the dataset has no rows.
    """
    dataset, _ = read_source(path, fmt, what)
    return dataset


def read_source(path: str | Path, fmt: str, what: str) -> tuple[datasets.Dataset, Source]:
    """`load_table`, also returning what was read behind the path (the file and its reader)."""
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


def _resolve_source(path: str | Path, fmt: str, what: str) -> Source:
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
    return Source(file, _reader_for_file(file, fmt, what))


def _resolve_directory(directory: Path, fmt: str, what: str) -> Source:
    if (directory / SAGEMAKER_FILE_NAME).is_file() and fmt in ("auto", "json", "jsonl"):
        return Source(directory / SAGEMAKER_FILE_NAME, "json")
    if (directory / "state.json").is_file() or (directory / "dataset_dict.json").is_file():
        return Source(directory, "save_to_disk")
    data_files = [
        entry
        for entry in sorted(directory.iterdir())
        if entry.is_file() and not entry.name.startswith(".") and _format_matches(entry, fmt)
    ]
    if len(data_files) == 1:
        return Source(data_files[0], _reader_for_file(data_files[0], fmt, what))
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
        fix += did_you_mean(file.name, siblings)
    elif len(file.parts) == 2 and not file.suffix:  # looks like a Hub id, "openai/gsm8k"
        fix += " grpokit does not download Hub datasets: save one with load_dataset(...).save_to_disk(dir)."
    if file.as_posix().startswith("/opt/ml/"):  # the AWS sample's args.yaml names the job's paths
        fix = (
            f"{file} is a path inside a SageMaker training job, where a channel is mounted: give the data's own "
            "place (a local folder, or for `grpokit launch sagemaker` an s3:// URI); `grpokit convert aws-sample "
            "args.yaml -o grpokit.yaml` does so (docs/migrating.md, 'Container paths')"
        )
    return DataError(f"{what} not found: {file}", where=str(file.absolute()), fix=fix)


def format_label(source: Source) -> str:
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
                f"{what} {file}: item {index} of the JSON array is a {value_type_name(row)}, not an object",
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
                f"{what} {file}: line {line_number} is a {value_type_name(row)}, not a JSON object",
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


def did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


def _first_character(file: Path) -> str:
    """The first non-whitespace character of a text file, or "" for a blank file."""
    with file.open(encoding="utf-8-sig", errors="replace") as handle:
        while chunk := handle.read(4096):
            if stripped := chunk.lstrip():
                return stripped[0]
    return ""


def value_type_name(value: object) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)
