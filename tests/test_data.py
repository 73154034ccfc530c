"""grpokit.data: every supported layout loads the same rows; prompts are shaped and checked."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import datasets
import pandas as pd
import pyarrow as pa
import pydantic
import pytest

from grpokit.data.loading import LoadedData, load_datasets
from grpokit.data.options import ROW_COLUMN, DatasetOptions, template_columns
from grpokit.data.prompts import prepare_dataset
from grpokit.data.readers import load_table
from grpokit.errors import DataError

# Text rows with the unicode a real dataset carries: accents, CJK, emoji, and U+2028, which JSON
# allows raw inside strings but str.splitlines() would treat as a line break.
TEXT_ROWS = [
    {"prompt": "Combien font 2+2 ? Réponds.", "answer": "4"},
    {"prompt": "计算 3+5。", "answer": "8"},
    {"prompt": "Emoji 🤖 and a\u2028separator", "answer": "007"},
]
CHAT_ROWS = [
    {
        "prompt": [
            {"role": "system", "content": "Réponds en français."},
            {"role": "user", "content": "2+2 ?"},
        ],
        "answer": "4",
    },
    {"prompt": [{"role": "user", "content": "计算 3+5 🤖"}], "answer": "8"},
]


def write_json_array(directory: Path, rows: list[dict]) -> Path:
    path = directory / "rows.json"
    path.write_text(json.dumps(rows, ensure_ascii=False, indent=2), encoding="utf-8")
    return path


def write_jsonl(directory: Path, rows: list[dict]) -> Path:
    path = directory / "rows.jsonl"
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def write_sagemaker_channel(directory: Path, rows: list[dict]) -> Path:
    """The AWS sample's layout: <channel>/dataset.json, JSON Lines from Dataset.to_json."""
    channel = directory / "train"
    channel.mkdir()
    datasets.Dataset.from_list(rows).to_json(str(channel / "dataset.json"), orient="records")
    return channel


def write_channel_with_one_jsonl(directory: Path, rows: list[dict]) -> Path:
    channel = directory / "channel"
    channel.mkdir()
    write_jsonl(channel, rows)
    return channel


def write_csv(directory: Path, rows: list[dict]) -> Path:
    path = directory / "rows.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def write_parquet(directory: Path, rows: list[dict]) -> Path:
    path = directory / "rows.parquet"
    datasets.Dataset.from_list(rows).to_parquet(str(path))
    return path


def write_arrow_file(directory: Path, rows: list[dict]) -> Path:
    path = directory / "rows.arrow"
    table = pa.Table.from_pylist(rows)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return path


def write_save_to_disk(directory: Path, rows: list[dict]) -> Path:
    path = directory / "saved"
    datasets.Dataset.from_list(rows).save_to_disk(str(path))
    return path


def write_dataset_dict(directory: Path, rows: list[dict]) -> Path:
    path = directory / "saved_dict"
    other = [{**row, "answer": "not the train split"} for row in rows]
    splits = {"train": datasets.Dataset.from_list(rows), "test": datasets.Dataset.from_list(other)}
    datasets.DatasetDict(splits).save_to_disk(str(path))
    return path


ALL_WRITERS = [
    write_json_array,
    write_jsonl,
    write_sagemaker_channel,
    write_channel_with_one_jsonl,
    write_csv,
    write_parquet,
    write_arrow_file,
    write_save_to_disk,
    write_dataset_dict,
]
LIST_WRITERS = [writer for writer in ALL_WRITERS if writer is not write_csv]  # CSV cannot hold lists


def ids(writer: Callable) -> str:
    return writer.__name__.removeprefix("write_")


# ---------------------------------------------------------------------------------------------
# load_table


@pytest.mark.parametrize("writer", ALL_WRITERS, ids=ids)
def test_every_layout_loads_the_same_text_rows(tmp_path: Path, writer: Callable) -> None:
    table = load_table(writer(tmp_path, TEXT_ROWS))

    assert table.to_list() == TEXT_ROWS
    assert table.cache_files == []  # in memory: nothing written to a cache


@pytest.mark.parametrize("writer", LIST_WRITERS, ids=ids)
def test_chat_prompts_survive_every_layout_that_holds_lists(tmp_path: Path, writer: Callable) -> None:
    table = load_table(writer(tmp_path, CHAT_ROWS))

    assert table.to_list() == CHAT_ROWS


def test_aws_sagemaker_sample_layout_loads_unchanged(tmp_path: Path) -> None:
    # Mirrors aws-samples/amazon-sagemaker-generativeai grpo/trl/torchrun/fsdp: the notebook maps
    # rows to {question, prompt: [system, user], answer} and writes train/dataset.json with
    # Dataset.to_json(orient="records"); train.py reads <train_dataset_path>/dataset.json.
    system = "\n    Respond in the following format:\n    <think>\n    ...\n    </think>\n    "
    rows = [
        {
            "question": f"What is {a} + {a}?",
            "prompt": [
                {"role": "system", "content": system},
                {"role": "user", "content": f"Numbers are small. What is {a} + {a}?"},
            ],
            "answer": str(2 * a),
        }
        for a in range(4)
    ]
    channel = write_sagemaker_channel(tmp_path, rows)

    loaded = load_datasets(channel, None, DatasetOptions(), required_columns={"answer": {"rouge_l"}})

    assert loaded.train.column_names == ["question", "prompt", "answer", ROW_COLUMN]
    assert loaded.train["prompt"] == [row["prompt"] for row in rows]
    assert loaded.train["answer"] == ["0", "2", "4", "6"]
    assert loaded.test is None
    assert loaded.description == f"train: 4 rows from {channel / 'dataset.json'} (jsonl)"


@pytest.mark.parametrize("name", ["rows.json", "rows.jsonl"])
def test_json_layout_is_detected_from_content_not_extension(tmp_path: Path, name: str) -> None:
    lines = tmp_path / name
    lines.write_text('\n{"prompt": "a"}\r\n\n{"prompt": "b"}', encoding="utf-8")  # blank lines, CRLF
    array = tmp_path / f"array_{name}"
    array.write_text('  \n [{"prompt": "a"}, {"prompt": "b"}]', encoding="utf-8")

    assert load_table(lines)["prompt"] == ["a", "b"]
    assert load_table(array)["prompt"] == ["a", "b"]


def test_json_rows_with_different_keys_keep_every_column(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, [{"prompt": "a"}, {"prompt": "b", "answer": "2"}])

    assert load_table(path).to_list() == [{"prompt": "a", "answer": None}, {"prompt": "b", "answer": "2"}]


def test_csv_cells_are_read_as_written_text(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text('prompt,answer,note\n"Say ""hi"", twice",007,\n', encoding="utf-8")

    assert load_table(path).to_list() == [{"prompt": 'Say "hi", twice', "answer": "007", "note": ""}]


def test_format_option_reads_a_file_with_another_extension(tmp_path: Path) -> None:
    path = tmp_path / "rows.txt"
    path.write_text('{"prompt": "a"}\n', encoding="utf-8")

    assert load_table(path, fmt="jsonl")["prompt"] == ["a"]


def test_load_leaves_no_files_next_to_a_saved_dataset(tmp_path: Path) -> None:
    saved = write_save_to_disk(tmp_path, TEXT_ROWS)
    before = sorted(path.name for path in saved.iterdir())

    prepared = prepare_dataset(
        load_table(saved), DatasetOptions(system_prompt="Be brief.", shuffle_seed=1), source="train"
    )

    assert sorted(path.name for path in saved.iterdir()) == before
    assert prepared.cache_files == []


# ---------------------------------------------------------------------------------------------
# load_table errors


def test_missing_file_is_a_data_error_with_a_close_name(tmp_path: Path) -> None:
    write_jsonl(tmp_path, TEXT_ROWS)

    with pytest.raises(DataError) as caught:
        load_table(tmp_path / "rows.jsnl")

    assert "train dataset not found" in caught.value.what
    assert "rows.jsonl" in caught.value.fix


@pytest.mark.parametrize(("name", "content"), [("e.jsonl", ""), ("e.json", "  \n\n"), ("e.csv", "")])
def test_empty_file_is_a_data_error(tmp_path: Path, name: str, content: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")

    with pytest.raises(DataError, match="is empty"):
        load_table(path)


@pytest.mark.parametrize(("name", "content"), [("a.json", " [ ] "), ("h.csv", "prompt,answer\n")])
def test_file_without_rows_is_a_data_error(tmp_path: Path, name: str, content: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")

    with pytest.raises(DataError, match="has no rows"):
        load_table(path, what="test dataset")


def test_bad_json_line_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"prompt": "a"}\n\n{"prompt": "b",}\n', encoding="utf-8")

    with pytest.raises(DataError) as caught:
        load_table(path)

    assert "line 3" in caught.value.what
    assert caught.value.where == f"{path}, line 3"


def test_bad_json_array_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "rows.json"
    path.write_text('[\n  {"prompt": "a"},\n  {"prompt": }\n]', encoding="utf-8")

    with pytest.raises(DataError, match="line 3"):
        load_table(path)


def test_json_line_that_is_not_an_object_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"prompt": "a"}\n["b"]\n', encoding="utf-8")

    with pytest.raises(DataError, match="line 2 is a list"):
        load_table(path)


def test_column_with_mixed_types_is_named(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, [{"prompt": "a", "answer": 4}, {"prompt": "b", "answer": "eight"}])

    with pytest.raises(DataError, match="column 'answer' mixes value types"):
        load_table(path)


def test_unsupported_extension_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "rows.xlsx"
    path.write_bytes(b"PK")

    with pytest.raises(DataError, match="unsupported extension '.xlsx'") as caught:
        load_table(path)
    assert "dataset.format" in caught.value.fix


def test_directory_with_several_data_files_is_a_data_error(tmp_path: Path) -> None:
    write_jsonl(tmp_path, TEXT_ROWS)
    write_csv(tmp_path, TEXT_ROWS)

    with pytest.raises(DataError, match="several data files") as caught:
        load_table(tmp_path)
    assert "rows.csv" in caught.value.where and "rows.jsonl" in caught.value.where


def test_dataset_dict_without_train_split_lists_its_splits(tmp_path: Path) -> None:
    path = tmp_path / "saved"
    rows = datasets.Dataset.from_list(TEXT_ROWS)
    datasets.DatasetDict({"validation": rows, "test": rows}).save_to_disk(str(path))

    with pytest.raises(DataError, match=r"splits: validation, test"):
        load_table(path)


def test_remote_path_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a local path"):
        load_table("s3://bucket/train/dataset.json")


# ---------------------------------------------------------------------------------------------
# prepare_dataset


def prepare(rows: list[dict], required: dict | None = None, **options) -> datasets.Dataset:
    return prepare_dataset(
        datasets.Dataset.from_list(rows),
        DatasetOptions(**options),
        required_columns=required,
        source="train dataset rows.jsonl",
    )


def test_prepared_rows_keep_every_column_and_get_their_source_index() -> None:
    prepared = prepare(TEXT_ROWS)

    assert prepared.column_names == ["prompt", "answer", ROW_COLUMN]
    assert prepared[ROW_COLUMN] == [0, 1, 2]
    assert prepared["prompt"] == [row["prompt"] for row in TEXT_ROWS]


def test_max_samples_keeps_the_first_rows() -> None:
    prepared = prepare(TEXT_ROWS, max_samples=2)

    assert prepared[ROW_COLUMN] == [0, 1]
    assert prepared["answer"] == ["4", "8"]


def test_shuffle_seed_keeps_each_row_with_its_source_index() -> None:
    rows = [{"prompt": f"p{index}", "answer": str(index)} for index in range(20)]

    prepared = prepare(rows, shuffle_seed=3, max_samples=5)

    assert len(prepared) == 5
    assert prepared[ROW_COLUMN] != [0, 1, 2, 3, 4]
    assert all(row["prompt"] == f"p{row[ROW_COLUMN]}" for row in prepared)


def test_prompt_column_is_renamed_to_prompt_replacing_an_existing_one() -> None:
    rows = [{"question": "2+2?", "prompt": "old", "answer": "4"}]

    prepared = prepare(rows, prompt_column="question")

    assert prepared.to_list() == [{"prompt": "2+2?", "answer": "4", ROW_COLUMN: 0}]


def test_missing_prompt_column_suggests_the_closest_name() -> None:
    with pytest.raises(DataError, match="no prompt column 'questoin'") as caught:
        prepare([{"question": "2+2?", "answer": "4"}], prompt_column="questoin")

    assert "Did you mean 'question'?" in caught.value.fix
    assert "dataset.prompt_column" in caught.value.fix and "dataset.prompt_template" in caught.value.fix
    assert "columns: question, answer" in caught.value.where


def test_missing_default_prompt_column_points_at_a_likely_column() -> None:
    with pytest.raises(DataError, match="no prompt column 'prompt'") as caught:
        prepare([{"problem": "2+2?", "answer": "4"}])

    assert "'problem'" in caught.value.fix


def test_missing_required_column_names_the_reward() -> None:
    with pytest.raises(DataError) as caught:
        prepare(TEXT_ROWS, required={"solution": {"accuracy", "rouge_l"}, "answer": {"length"}})

    assert "'solution' (read by reward accuracy, rouge_l)" in caught.value.what
    assert "columns: prompt, answer" in caught.value.where
    assert ROW_COLUMN not in caught.value.where


@pytest.mark.parametrize(
    ("prompt", "problem"),
    [
        (7, "the prompt is a number"),
        ("   ", "the prompt is an empty string"),
        (None, "the prompt is empty (null)"),
        ([{"role": "robot", "content": "hi"}], "chat message 0 has role 'robot'"),
        ([{"role": "user", "content": None}], "chat message 0 has no text content"),
    ],
)
def test_bad_prompt_names_the_source_row(prompt: object, problem: str) -> None:
    good = {"role": "user", "content": "fine"}
    fine = [good] if isinstance(prompt, list) else ("fine" if isinstance(prompt, str) else None)
    rows = [{"prompt": fine}, {"prompt": fine}, {"prompt": prompt}]
    if not isinstance(prompt, (str, list)):  # a column of one type: every row is bad from row 0
        rows = [{"prompt": prompt}] * 3

    with pytest.raises(DataError) as caught:
        prepare(rows)

    bad_row = 0 if not isinstance(prompt, (str, list)) else 2
    assert caught.value.what.startswith(f"row {bad_row} of train dataset rows.jsonl: {problem}")


def test_prompt_template_fills_prompt_and_keeps_the_columns() -> None:
    rows = [{"question": "2+2?", "level": 1}, {"question": "计算 3+5", "level": 2}]

    prepared = prepare(rows, prompt_template="Q ({level}): {question}\nA:")

    assert prepared["prompt"] == ["Q (1): 2+2?\nA:", "Q (2): 计算 3+5\nA:"]
    assert prepared.column_names == ["prompt", "question", "level", ROW_COLUMN]


def test_prompt_template_with_a_missing_column_lists_the_columns() -> None:
    with pytest.raises(DataError, match="reads column 'questoin'") as caught:
        prepare([{"question": "2+2?", "answer": "4"}], prompt_template="Q: {questoin}")

    assert "columns: question, answer" in caught.value.where
    assert "Did you mean 'question'?" in caught.value.fix


def test_prompt_template_with_a_null_value_names_the_row() -> None:
    with pytest.raises(DataError, match="row 1 .* no value in column 'question'"):
        prepare([{"question": "2+2?"}, {"question": None}], prompt_template="Q: {question}")


@pytest.mark.parametrize(
    "options",
    [
        {"prompt_template": "no placeholder"},
        {"prompt_template": "Q: {}"},
        {"prompt_template": "Q: {question"},
        {"prompt_template": "Q: {question}", "prompt_column": "question"},
        {"max_samples": 0},
        {"format": "xlsx"},
        {"prompt_colum": "question"},
    ],
)
def test_invalid_options_are_rejected(options: dict) -> None:
    with pytest.raises(pydantic.ValidationError):
        DatasetOptions(**options)


def test_template_columns_reads_root_names_in_order() -> None:
    assert template_columns("{b} {a.x} {b} {c[0]:>4}") == ["b", "a", "c"]


def test_system_prompt_turns_text_into_a_chat() -> None:
    prepared = prepare([{"prompt": "2+2?"}], system_prompt="Réponds brièvement.")

    assert prepared["prompt"] == [
        [{"role": "system", "content": "Réponds brièvement."}, {"role": "user", "content": "2+2?"}]
    ]


def test_system_prompt_is_prepended_to_chats_that_have_none_and_never_replaces_one() -> None:
    own_system = [{"role": "system", "content": "Row's own."}, {"role": "user", "content": "a"}]
    no_system = [{"role": "user", "content": "b"}, {"role": "assistant", "content": "Let me think"}]

    prepared = prepare([{"prompt": own_system}, {"prompt": no_system}], system_prompt="Config's.", continue_final_message=True)

    assert prepared["prompt"] == [own_system, [{"role": "system", "content": "Config's."}, *no_system]]


# ---------------------------------------------------------------------------------------------
# load_datasets


def test_load_datasets_prepares_train_and_test_and_describes_them(tmp_path: Path) -> None:
    train_dir, test_dir = tmp_path / "train", tmp_path / "test"
    train_dir.mkdir(), test_dir.mkdir()
    train = write_jsonl(train_dir, TEXT_ROWS)
    test = write_parquet(test_dir, TEXT_ROWS[:2])

    loaded = load_datasets(train, test, DatasetOptions(max_samples=2), required_columns={"answer": {"acc"}})

    assert isinstance(loaded, LoadedData)
    assert loaded.train[ROW_COLUMN] == [0, 1] and loaded.test[ROW_COLUMN] == [0, 1]
    assert loaded.description == (
        f"train: 2 of 3 rows from {train} (jsonl); test: 2 rows from {test} (parquet)"
    )


def test_load_datasets_checks_required_columns_on_the_test_set(tmp_path: Path) -> None:
    train = write_jsonl(tmp_path, TEXT_ROWS)
    test = write_json_array(tmp_path, [{"prompt": "2+2?"}])

    with pytest.raises(DataError, match="test dataset .* lacks column 'answer'"):
        load_datasets(train, test, DatasetOptions(), required_columns={"answer": {"acc"}})
