"""`grpokit rewards`: every configured reward on a few dataset rows, with given or generated completions.

The recipe: load config -> rewards -> the split's first rows -> completions from a file
(`--completions`) or from the config's model (`--generate`) -> each reward's score and the weighted
total per completion, as a table. Nothing is trained and nothing is written.

A completions file is JSON Lines or a JSON array. Each entry is a completion (a string, or a chat
message list) or an object `{"completion": ..., "row": N}`. Entries without `row` belong to the rows
in order (entry i to row i); with `row` (the row's index in the data file, `grpokit_row`), several
completions may share a row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grpokit.config.schema import RunConfig
from grpokit.data.options import ROW_COLUMN
from grpokit.errors import ConfigError, DataError
from grpokit.formatting import fmt
from grpokit.model.generation import completion_token_ids
from grpokit.model.loading import load_model_for_inference, load_tokenizer
from grpokit.pipeline import build_reward_set, generate_for_rows, generation_settings, load_split_rows
from grpokit.rewards.agent import resolve_agent
from grpokit.rewards.common import shorten, text_of
from grpokit.rewards.reward_set import run_rewards_on_rows


@dataclass
class RewardDebugReport:
    reward_names: list[str]
    reward_weights: list[float]
    entries: list[dict[str, Any]]  # per completion: row, completion, scores (per reward), total
    source: str  # where the completions came from


def debug_rewards(
    config: RunConfig,
    *,
    rows: int | None = None,
    completions_file: str | Path | None = None,
    generate: bool = False,
    num_samples: int = 1,
    split: str = "train",
) -> RewardDebugReport:
    """Score completions of the first `rows` rows (4 by default when generating) with every reward.

    Raises:
        ConfigError: both `completions_file` and `generate` (with neither, the completions are generated).
        DataError: the completions file is unreadable, or names rows the split lacks.
        RunError: a reward with `on_error: raise` failed.
    """
    if completions_file is not None and generate:
        raise ConfigError(
            "--completions and --generate together",
            fix="--completions FILE scores your completions; --generate (the default) samples them from the config's model",
        )
    generate = completions_file is None  # no file: generating with the config's model is the obvious default
    reward_set = build_reward_set(config)
    if generate:
        sample = load_split_rows(config, reward_set, split, rows or 4)
        pairs, completion_ids, source = _generated_pairs(config, sample, num_samples, split)
        completions = [completion for _, completion in pairs]
    else:
        entries = read_completions_file(completions_file)
        by_row_key = any(entry["row"] is not None for entry in entries)
        sample = load_split_rows(config, reward_set, split, None if by_row_key else max(len(entries), rows or 0))
        pairs, source = _file_pairs(sample, entries, rows), str(completions_file)
        completions = [completion for _, completion in pairs]
        # Rewards counted in tokens (length, overlong_penalty, ...) read completion_ids, as in training.
        completion_ids = completion_token_ids(load_tokenizer(config.options), completions)
    scored = run_rewards_on_rows(reward_set, [row for row, _ in pairs], completions, completion_ids=completion_ids)
    return RewardDebugReport(
        reward_names=list(reward_set.names),
        reward_weights=list(reward_set.weights),
        entries=[
            {"row": row.get(ROW_COLUMN), "completion": completion, **result}
            for (row, completion), result in zip(pairs, scored, strict=True)
        ],
        source=source,
    )


def read_completions_file(path: str | Path) -> list[dict[str, Any]]:
    """Entries `{"completion": ..., "row": int | None}` from a JSON Lines file (a .json file: a JSON array).

    Raises:
        DataError: missing or unreadable file, or an entry of another shape.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"completions file not found: {path}", fix="pass a JSON Lines file of completions")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".json":
            raw = json.loads(text)
        else:
            raw = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as error:
        raise DataError(f"completions file {path} is not valid JSON: {error}", where=str(path)) from None
    if not isinstance(raw, list) or not raw:
        raise DataError(f"completions file {path} holds no completions", fix="a .json file holds a JSON array")
    return [_entry(value, index, path) for index, value in enumerate(raw)]


def _entry(value: Any, index: int, path: Path) -> dict[str, Any]:
    if isinstance(value, dict) and "completion" in value:
        row = value.get("row")
        if row is not None and not isinstance(row, int):
            raise DataError(f'entry {index} of {path}: "row" must be an integer, got {row!r}', where=str(path))
        completion = value["completion"]
    else:
        row, completion = None, value
    try:
        text_of(completion)
    except TypeError as error:
        raise DataError(
            f"entry {index} of {path} is not a completion: {error}",
            where=str(path),
            fix='write a string, a list of {"role", "content"} messages, or {"completion": ..., "row": N}',
        ) from None
    return {"completion": completion, "row": row}


def _file_pairs(rows: list[dict], entries: list[dict], limit: int | None) -> list[tuple[dict, Any]]:
    by_source_row = {row[ROW_COLUMN]: row for row in rows}
    pairs = []
    for index, entry in enumerate(entries):
        if entry["row"] is not None:
            row = by_source_row.get(entry["row"])
        else:
            row = rows[index] if index < len(rows) else None
        if row is None:
            raise DataError(
                f"completion {index} is for row {index if entry['row'] is None else entry['row']}, "
                f"which the dataset does not have ({len(rows)} rows)",
                fix='give at most one completion per row, or a "row" key naming a row of the data file',
            )
        pairs.append((row, entry["completion"]))
    if limit is not None:
        kept_rows = {row[ROW_COLUMN] for row in rows[:limit]}
        pairs = [pair for pair in pairs if pair[0][ROW_COLUMN] in kept_rows]
    return pairs


def _generated_pairs(config: RunConfig, rows: list[dict], num_samples: int, split: str) -> tuple[list, list, str]:
    """(row, completion) pairs, the generated token ids of each completion, and a description."""
    settings = generation_settings(config, num_samples=num_samples)
    model, tokenizer = load_model_for_inference(config.options.model_id, config.options)
    completions, ids = generate_for_rows(config, resolve_agent(config), model, tokenizer, rows, settings)  # tools as in training
    pairs = [(row, completion) for row, samples in zip(rows, completions, strict=True) for completion in samples]
    completion_ids = [sample_ids for per_row in ids for sample_ids in per_row]
    how = "greedy" if num_samples == 1 else f"{num_samples} samples per row"
    return pairs, completion_ids, f"generated by {config.options.model_id} ({how})"


def scores_table(report: RewardDebugReport):
    """A rich Table: one line per completion, a column per reward (with its weight), the weighted total."""
    from rich.table import Table

    table = Table(title=f"rewards per row ({report.source})")
    table.add_column("row", justify="right")
    table.add_column("completion")
    for name, weight in zip(report.reward_names, report.reward_weights, strict=True):
        table.add_column(f"{name} (x{weight:g})", justify="right")
    table.add_column("total", justify="right")
    for entry in report.entries:
        table.add_row(
            str(entry["row"]),
            shorten(text_of(entry["completion"]), 50),
            *[fmt(entry["scores"].get(name)) for name in report.reward_names],
            fmt(entry["total"]),
        )
    return table
