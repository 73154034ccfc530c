"""Shaping a loaded dataset into the prompts TRL's `GRPOTrainer` expects, and checking them.

`prepare_dataset(dataset, options)` applies the `dataset:` options of the config (row limit,
template, system prompt), puts the prompt in the column `prompt` that TRL reads, checks that every
prompt is text or a chat conversation and that the columns the rewards read exist, and adds the
`grpokit_row` column (the row's index in the source) that reward errors use to name a row. Every
other column is kept: TRL passes all dataset columns to the reward functions.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import datasets
from datasets.fingerprint import generate_random_fingerprint

from grpokit.data.conversations import (
    CONVERSATION_COLUMN,
    log_split,
    reference_column_for,
    split_final_assistant_turns,
)
from grpokit.data.options import PROMPT_COLUMN, ROW_COLUMN, DatasetOptions, template_columns
from grpokit.data.readers import did_you_mean, value_type_name
from grpokit.errors import DataError

logger = logging.getLogger("grpokit.data")

CHAT_ROLES = ("system", "user", "assistant")
# Column names that usually hold the prompt; offered as a hint when `prompt_column` is missing.
_PROMPT_LIKE_COLUMNS = ("messages", "question", "problem", "instruction", "query", "input", "text")


def prepare_dataset(
    dataset: datasets.Dataset,
    options: DatasetOptions,
    *,
    required_columns: Mapping[str, Iterable[str]] | None = None,
    source: str,
) -> datasets.Dataset:
    """Shape rows into GRPO prompts and check them; returns a new dataset.

    In order: adds `grpokit_row` (index of the row in `dataset`), shuffles with `shuffle_seed`,
    keeps `max_samples` rows, fills `prompt_template` or renames `prompt_column` (or, when the
    data has no `prompt` column, `messages`) into `prompt`, checks that every prompt is non-empty
    text or a list of {role, content} messages with role system / user / assistant, splits
    conversations that end with the assistant's answer into prompt and reference
    (`data.conversations`), checks `required_columns` (column -> names of the rewards that read
    it), and applies `system_prompt`. Other columns are kept. `source` names the dataset in
    messages ("train dataset data/train.jsonl"). Raises `DataError` naming the column or row.
    """
    if len(dataset) == 0:
        raise DataError(f"{source} has no rows", where=source, fix="add rows to the dataset")
    dataset = _with_source_rows(dataset)
    dataset = _sample(dataset, options)
    prompt_column = _prompt_source_column(dataset, options)
    dataset = _with_prompt_column(dataset, options, prompt_column, source)
    _check_prompts(dataset, source)
    dataset = _with_final_assistant_turns_split(dataset, options, required_columns or {}, prompt_column, source)
    _check_required_columns(dataset, required_columns or {}, source)
    if options.system_prompt is not None:
        prompts = [
            _with_system_prompt(prompt, options.system_prompt) for prompt in _values(dataset, PROMPT_COLUMN)
        ]
        dataset = _replace_column(dataset, PROMPT_COLUMN, prompts)
    return dataset


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


def _prompt_source_column(dataset: datasets.Dataset, options: DatasetOptions) -> str:
    """The column the prompts come from: `prompt_column`, or TRL's conversational `messages` when the
    data has no `prompt` column and the config names none."""
    columns = dataset.column_names
    unnamed = options.prompt_template is None and options.prompt_column == PROMPT_COLUMN
    if unnamed and PROMPT_COLUMN not in columns and CONVERSATION_COLUMN in columns:
        return CONVERSATION_COLUMN
    return options.prompt_column


def _with_prompt_column(dataset: datasets.Dataset, options: DatasetOptions, column: str, source: str) -> datasets.Dataset:
    if options.prompt_template is not None:
        prompts = _fill_template(dataset, options.prompt_template, source)
        _warn_if_replacing_prompt(dataset, "prompt_template", source)
        return _replace_column(dataset, PROMPT_COLUMN, prompts)
    if column not in dataset.column_names:
        raise _missing_prompt_column_error(dataset, column, source)
    if column == PROMPT_COLUMN:
        return dataset
    if column != options.prompt_column:
        logger.info("%s has no column 'prompt': the prompts are column %r (dataset.prompt_column)", source, column)
    _warn_if_replacing_prompt(dataset, f"prompt_column={column!r}", source)
    if PROMPT_COLUMN in dataset.column_names:
        dataset = dataset.remove_columns(PROMPT_COLUMN)
    return dataset.rename_column(column, PROMPT_COLUMN)


def _warn_if_replacing_prompt(dataset: datasets.Dataset, option: str, source: str) -> None:
    if PROMPT_COLUMN in dataset.column_names:
        logger.warning("%s: %s replaces the existing column 'prompt'", source, option)


def _missing_prompt_column_error(dataset: datasets.Dataset, column: str, source: str) -> DataError:
    columns = _user_columns(dataset)
    first_values = dataset[0]
    chats = [name for name in columns if _is_chat(first_values.get(name))]
    texts = [name for name in columns if isinstance(first_values.get(name), str)]
    hint = did_you_mean(column, columns)
    if not hint:
        likely = next((name for name in (*chats, *_PROMPT_LIKE_COLUMNS) if name in columns), None)
        hint = f" The prompt may be in {likely!r}." if likely else ""
    if chats:  # a conversation is a prompt as it is: a template would paste its Python repr into text
        fix = f"set dataset.prompt_column: {chats[0]} (a chat conversation)"
    else:
        example = next((name for name in _PROMPT_LIKE_COLUMNS if name in texts), texts[0] if texts else columns[0])
        fix = (
            "set dataset.prompt_column to the column holding the prompt, or build the prompt from "
            f"columns with dataset.prompt_template, e.g. 'Question: {{{example}}}'"
        )
    return DataError(
        f"{source} has no prompt column {column!r}",
        where=f"{source} (columns: {', '.join(columns)})",
        fix=f"{fix}.{hint}",
    )


def _is_chat(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(m, dict) and "role" in m for m in value)


def _with_final_assistant_turns_split(
    dataset: datasets.Dataset,
    options: DatasetOptions,
    required_columns: Mapping[str, Iterable[str]],
    prompt_column: str,
    source: str,
) -> datasets.Dataset:
    """Conversations ending with the assistant's answer: the turns before it as the prompt, the answer as the
    reference (`data.conversations`)."""
    split = split_final_assistant_turns(
        _values(dataset, PROMPT_COLUMN),
        _values(dataset, ROW_COLUMN),
        continue_final_message=options.continue_final_message,
        prompt_column=prompt_column,
        source=source,
    )
    if split is None:
        return dataset
    prompts, references = split
    reference_column = reference_column_for(dataset.column_names, required_columns, prompt_column, source)
    log_split(prompt_column, reference_column, len(prompts), source)
    return _replace_column(_replace_column(dataset, PROMPT_COLUMN, prompts), reference_column, references)


def _fill_template(dataset: datasets.Dataset, template: str, source: str) -> list[str]:
    columns = template_columns(template)
    missing = [column for column in columns if column not in dataset.column_names]
    if missing:
        available = _user_columns(dataset)
        raise DataError(
            f"dataset.prompt_template reads column {missing[0]!r}, which {source} does not have",
            where=f"{source} (columns: {', '.join(available)})",
            fix=f"use the column names of the data in the template.{did_you_mean(missing[0], available)}",
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
        f"has.{did_you_mean(first, available)}",
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
        return f"the prompt is a {value_type_name(prompt)}, not text or a list of chat messages"
    if not prompt:
        return "the prompt is an empty list of chat messages"
    for index, message in enumerate(prompt):
        if not isinstance(message, dict):
            return f"chat message {index} is a {value_type_name(message)}, not a {{role, content}} object"
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


