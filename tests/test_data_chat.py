"""Chat datasets: conversations that end with the assistant's answer, prefills, and every layout docs/data.md shows."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import datasets
import pytest
import yaml
from typer.testing import CliRunner

from grpokit.cli import app
from grpokit.config import load_config
from grpokit.data.options import ROW_COLUMN, DatasetOptions
from grpokit.data.prompt_lengths import prompt_token_counter
from grpokit.data.prompts import prepare_dataset
from grpokit.errors import DataError
from grpokit.model.loading import load_tokenizer
from grpokit.pipeline import build_reward_set, load_run_data

ROOT = Path(__file__).resolve().parents[1]
SOURCE = "train dataset rows.jsonl"
USER = {"role": "user", "content": "What is 12 + 30?"}
SYSTEM = {"role": "system", "content": "Answer with a number."}


def assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


def prepare(rows: list[dict], required: dict | None = None, **options) -> datasets.Dataset:
    return prepare_dataset(
        datasets.Dataset.from_list(rows), DatasetOptions(**options), required_columns=required, source=SOURCE
    )


def rows_of(dataset: datasets.Dataset) -> list[dict]:
    return [{key: value for key, value in row.items() if key != ROW_COLUMN} for row in dataset.to_list()]


# ----------------------------------------------------------------------------- the split


def test_messages_ending_with_the_answer_become_prompt_and_reference_with_one_line(caplog):
    caplog.set_level(logging.INFO, logger="grpokit.data")
    rows = [{"messages": [SYSTEM, USER, assistant("42")]}, {"messages": [USER, assistant("The answer is 42.")]}]

    prepared = prepare(rows, required={"answer": {"rouge_l"}})

    assert rows_of(prepared) == [
        {"prompt": [SYSTEM, USER], "answer": "42"},
        {"prompt": [USER], "answer": "The answer is 42."},
    ]
    lines = [record.getMessage() for record in caplog.records if "ends with the assistant's turn" in record.getMessage()]
    assert len(lines) == 1
    assert "column 'messages'" in lines[0] and "reference in column 'answer'" in lines[0] and "2 rows" in lines[0]
    assert "dataset.continue_final_message: true" in lines[0]


def test_the_reference_goes_to_the_column_the_rewards_read():
    rows = [{"conversation": [USER, assistant("42")], "answer": "unused"}]

    prepared = prepare(rows, required={"solution": {"match"}}, prompt_column="conversation")

    assert rows_of(prepared) == [{"prompt": [USER], "answer": "unused", "solution": "42"}]


def test_without_a_reward_reading_a_reference_it_goes_to_answer_or_beside_it():
    assert rows_of(prepare([{"messages": [USER, assistant("42")]}]))[0]["answer"] == "42"
    kept = rows_of(prepare([{"messages": [USER, assistant("42")], "answer": "forty-two"}], required={"answer": {"x"}}))
    assert kept == [{"prompt": [USER], "answer": "forty-two", "messages_reference": "42"}]


def test_a_system_prompt_applies_to_the_prompt_left_after_the_split():
    prepared = prepare([{"messages": [USER, assistant("42")]}], system_prompt="Think first.")
    assert prepared["prompt"][0] == [{"role": "system", "content": "Think first."}, USER]


def test_only_some_conversations_ending_with_the_assistant_is_an_error_naming_both_rows():
    rows = [{"prompt": [USER]}, {"prompt": [USER]}, {"prompt": [USER, assistant("42")]}]

    with pytest.raises(DataError) as caught:
        prepare(rows)

    error = caught.value
    assert error.what.startswith(f"row 2 of {SOURCE} ends with an assistant turn, but row 0 does not")
    assert error.where == f"{SOURCE}, row 2 (first row is 0), column 'prompt'"
    assert "dataset.continue_final_message: true" in error.fix and "remove the final assistant turns" in error.fix


def test_an_answer_with_no_user_turn_before_it_is_an_error():
    with pytest.raises(DataError, match="row 0 of .* no user turn before its final assistant turn") as caught:
        prepare([{"prompt": [SYSTEM, assistant("42")]}])
    assert "add the user's turn" in caught.value.fix


def test_rewards_reading_two_missing_columns_cannot_both_be_filled():
    with pytest.raises(DataError, match="the rewards read 2 columns .* lacks: 'answer' .*'solution'") as caught:
        prepare([{"messages": [USER, assistant("42")]}], required={"answer": {"a"}, "solution": {"b"}})
    assert "reference_column" in caught.value.fix


def test_continue_final_message_keeps_a_prefill_and_it_is_counted_as_trl_continues_it():
    rows = [{"prompt": [USER, assistant("The answer is")], "answer": "42"}]

    prepared = prepare(rows, continue_final_message=True)

    assert prepared["prompt"][0] == [USER, assistant("The answer is")]
    tokenizer = load_tokenizer(load_config(data={"model_id": "builtin:tiny", "train_dataset_path": "x"}).options)
    continued = tokenizer.apply_chat_template(prepared["prompt"][0], continue_final_message=True, tokenize=True, return_dict=True)
    assert prompt_token_counter(tokenizer)(prepared["prompt"]) == [len(continued["input_ids"])]


def test_a_missing_prompt_column_with_a_chat_column_suggests_it_not_a_template():
    with pytest.raises(DataError) as caught:
        prepare([{"dialogue": [USER, assistant("42")], "id": "a"}])
    assert "set dataset.prompt_column: dialogue (a chat conversation)" in caught.value.fix
    assert "prompt_template" not in caught.value.fix


def test_validate_on_a_messages_dataset_suggests_no_template_and_says_what_it_did(tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"messages": [USER, assistant(str(n))]}) + "\n" for n in range(4)))
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({
        "model_id": "builtin:tiny", "train_dataset_path": str(data), "rewards": [{"name": "rouge_l", "reference_column": "answer"}],
        "per_device_train_batch_size": 4, "num_generations": 4, "max_steps": 1,
    }))  # fmt: skip

    result = CliRunner().invoke(app, ["validate", str(config), "--no-trial-step"])

    output = " ".join((result.stdout + result.stderr).split())
    assert result.exit_code == 0, output[-2000:]
    assert "Question: {messages}" not in output
    assert "the turns before it became the prompt, its text the reference in column 'answer'" in output


# ----------------------------------------------------------------------------- docs/data.md, every layout

LAYOUT = re.compile(r"<!-- layout: (?P<name>[^>]+?) file=(?P<file>\S+) -->\n(?P<body>.*?)(?=<!-- layout:|\n## )", re.DOTALL)
FENCE = re.compile(r"```(?P<lang>json|yaml)\n(?P<text>.*?)```", re.DOTALL)


def documented_layouts() -> list[tuple[str, str, str, str, str]]:
    """(name, file, row, config, result) for every layout docs/data.md shows."""
    text = (ROOT / "docs" / "data.md").read_text(encoding="utf-8")
    layouts = []
    for match in LAYOUT.finditer(text):
        blocks = [block["text"] for block in FENCE.finditer(match["body"])]
        assert len(blocks) == 3, f"layout {match['name']!r}: a row, a config and the result"
        layouts.append((match["name"], match["file"], *blocks))
    return layouts


def test_docs_show_every_layout():
    names = {layout[0] for layout in documented_layouts()}
    assert names == {
        "plain prompt", "prompt in another column", "template", "system prompt", "chat prompt",
        "messages ending with the answer", "prefill", "dataset.json",
    }  # fmt: skip


@pytest.mark.parametrize("layout", documented_layouts(), ids=lambda layout: layout[0])
def test_every_documented_layout_gives_the_prompt_docs_show(layout, tmp_path):
    _, file, row, config_text, result = layout
    path = tmp_path / file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(json.loads(row)) + "\n", encoding="utf-8")
    where = path.parent if file.endswith("dataset.json") else path  # the AWS layout: its channel directory
    config = load_config(data={"model_id": "builtin:tiny", **(yaml.safe_load(config_text) or {}), "train_dataset_path": str(where)})
    data = load_run_data(config, build_reward_set(config))
    assert rows_of(data.train) == [json.loads(result)]
