"""Prompt lengths in tokens: percentiles for `validate`, and a limit no prompt passes.

TRL 1.16 has no `max_prompt_length`: every prompt is generated from whole, so one very long prompt
takes all the memory (16 prompts of 200 KB grew one process to 16 GB). grpokit counts each prompt's
tokens as GRPOTrainer will see them (a text prompt through the tokenizer, a chat prompt through
the chat template with the generation prompt added) and holds them to `max_prompt_length`; by
default, what fits the model's context together with `max_completion_length`.

A prompt over the limit is an error naming how many there are and the longest row, or, with
`truncate_prompts: true`, is cut to fit, keeping its end (where the question usually is, as TRL
0.x truncated from the left): a text prompt loses its first tokens; a chat prompt loses the start
of its first non-system message (a message cut to nothing is dropped). The count is reported.

Prompts are tokenized in batches of `BATCH_ROWS`, so memory stays bounded by the longest batch. A
large dataset is not tokenized whole: no tokenizer makes more tokens than a text has UTF-8 bytes
(plus a few special tokens), so only the prompts whose byte count could pass the limit are counted
exactly, with an evenly spread sample of `SAMPLE_ROWS` rows for the percentiles.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import datasets

from grpokit.data.conversations import chat_template_flags
from grpokit.data.options import PROMPT_COLUMN, ROW_COLUMN
from grpokit.errors import DataError

logger = logging.getLogger("grpokit.data")

BATCH_ROWS = 256
SAMPLE_ROWS = 20_000  # rows counted for the percentiles (all of them in a smaller dataset)
SPECIAL_TOKEN_ALLOWANCE = 16  # BOS / EOS / a leading space marker: tokens a text may get beyond its bytes
MAX_CUT_ROUNDS = 8  # a cut is re-measured (tokens do not split evenly at a cut); give up after this many


@dataclass(frozen=True)
class PromptLengths:
    """Token counts of one split's prompts, against the limit."""

    count: int  # prompts measured for the percentiles (every one up to SAMPLE_ROWS)
    p50: int
    p90: int
    p99: int
    longest: int
    longest_row: int | None  # its grpokit_row (row in the source file)
    limit: int | None
    truncated: int = 0
    sampled: bool = False  # the percentiles come from a sample of the rows

    def describe(self, split: str) -> str:
        limit = f", limit {self.limit:,}" if self.limit is not None else ", no limit"
        cut = f"; {self.truncated:,} truncated to fit" if self.truncated else ""
        sampled = f" ({self.count:,} sampled rows)" if self.sampled else ""
        return (
            f"{split} prompt tokens{sampled}: p50 {self.p50:,}, p90 {self.p90:,}, p99 {self.p99:,}, "
            f"max {self.longest:,} (row {self.longest_row}){limit}{cut}"
        )


def prompt_token_limit(
    max_prompt_length: int | None, *, max_completion_length: int | None, model_context: int | None, source: str
) -> int | None:
    """The prompt limit: `max_prompt_length`, else the model's context less `max_completion_length`.

    Raises:
        DataError: the completions alone fill the model's context, or the two together overflow it.
    """
    completion = max_completion_length or 0
    if model_context is not None and completion >= model_context:
        raise DataError(
            f"max_completion_length={completion} leaves no room for a prompt in the model's context of {model_context:,} tokens",
            where=source,
            fix=f"set max_completion_length below {model_context:,}",
        )
    if max_prompt_length is not None:
        if model_context is not None and max_prompt_length + completion > model_context:
            raise DataError(
                f"max_prompt_length={max_prompt_length:,} + max_completion_length={completion:,} is more than "
                f"the model's context of {model_context:,} tokens",
                where=source,
                fix=f"lower max_prompt_length to {model_context - completion:,} or less",
            )
        return max_prompt_length
    return None if model_context is None else model_context - completion


def prompt_token_counter(tokenizer, chat_template_kwargs: dict[str, Any] | None = None) -> Callable[[list], list[int]]:
    """A function: prompts -> their token counts, as GRPOTrainer tokenizes them (TRL 1.16 `_tokenize_prompts`)."""
    extra = dict(chat_template_kwargs or {})

    def count(prompts: list) -> list[int]:
        counts = []
        for prompt in prompts:
            if isinstance(prompt, list):
                flags = chat_template_flags(prompt)  # a final assistant turn is a prefill, continued
                ids = tokenizer.apply_chat_template(prompt, tokenize=True, return_dict=True, **flags, **extra)
                counts.append(len(ids["input_ids"]))
            else:
                counts.append(len(tokenizer(text=prompt)["input_ids"]))
        return counts

    return count


def bound_prompt_lengths(
    dataset: datasets.Dataset,
    tokenizer,
    *,
    limit: int | None,
    truncate: bool,
    source: str,
    chat_template_kwargs: dict[str, Any] | None = None,
) -> tuple[datasets.Dataset, PromptLengths]:
    """Measure every prompt; return the dataset (prompts cut to `limit` when `truncate`) and the lengths.

    Raises:
        DataError: prompts longer than `limit` (their number and the longest row), unless `truncate`;
            or a chat prompt whose template alone is longer than `limit`.
    """
    count = prompt_token_counter(tokenizer, chat_template_kwargs)
    prompts = dataset[PROMPT_COLUMN][:]
    rows = dataset[ROW_COLUMN][:] if ROW_COLUMN in dataset.column_names else list(range(len(dataset)))
    sample = _sample_indices(len(prompts))
    bound = _upper_bound(count)
    measured = sorted(set(sample) | {i for i in range(len(prompts)) if limit is not None and bound(prompts[i]) > limit})
    lengths: dict[int, int] = {}
    for start in range(0, len(measured), BATCH_ROWS):
        batch = measured[start : start + BATCH_ROWS]
        lengths.update(zip(batch, count([prompts[i] for i in batch])))
    over = [i for i in measured if limit is not None and lengths[i] > limit]
    if over and not truncate:
        longest = max(over, key=lambda i: lengths[i])
        raise DataError(
            f"{len(over):,} of {len(prompts):,} prompts are longer than the prompt limit of {limit:,} tokens "
            f"(longest: row {rows[longest]}, {lengths[longest]:,} tokens)",
            where=source,
            fix="shorten those prompts, set truncate_prompts: true to cut them (their start is dropped), "
            "or raise max_prompt_length if the model's context allows",
        )
    for i in over:
        prompts[i] = _cut_to_fit(prompts[i], limit, tokenizer, count, source=source, row=rows[i])
        lengths[i] = count([prompts[i]])[0]
    if over:
        logger.warning("%s: truncated %d prompt(s) to %d tokens (truncate_prompts: true)", source, len(over), limit)
        dataset = _with_prompts(dataset, prompts)
    sampled = [lengths[i] for i in sample]
    longest = max(measured, key=lambda i: lengths[i]) if measured else None
    return dataset, _summary(sampled, longest, lengths, rows, limit, truncated=len(over), is_sample=len(sample) < len(prompts))


def _sample_indices(size: int) -> list[int]:
    if size <= SAMPLE_ROWS:
        return list(range(size))
    return sorted({round(i * (size - 1) / (SAMPLE_ROWS - 1)) for i in range(SAMPLE_ROWS)})


def _upper_bound(count: Callable[[list], list[int]]) -> Callable[[Any], int]:
    """prompt -> a token count it cannot exceed: its UTF-8 bytes, plus the chat template's own tokens."""
    overhead: dict[tuple, int] = {}

    def bound(prompt) -> int:
        if not isinstance(prompt, list):
            return len(str(prompt).encode("utf-8")) + SPECIAL_TOKEN_ALLOWANCE
        roles = tuple(str(message.get("role")) for message in prompt)
        if roles not in overhead:  # the template's tokens around empty messages
            overhead[roles] = count([[{"role": role, "content": ""} for role in roles]])[0]
        content = sum(len(str(message.get("content", "")).encode("utf-8")) for message in prompt)
        return content + overhead[roles] + SPECIAL_TOKEN_ALLOWANCE * len(roles)

    return bound


def _summary(
    sampled: list[int],
    longest: int | None,
    lengths: dict[int, int],
    rows: list[int],
    limit: int | None,
    *,
    truncated: int,
    is_sample: bool,
) -> PromptLengths:
    ordered = sorted(sampled)

    def percentile(p: float) -> int:  # nearest rank
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] if ordered else 0

    return PromptLengths(
        count=len(sampled),
        p50=percentile(50),
        p90=percentile(90),
        p99=percentile(99),
        longest=lengths[longest] if longest is not None else 0,
        longest_row=rows[longest] if longest is not None else None,
        limit=limit,
        truncated=truncated,
        sampled=is_sample,
    )


def _cut_to_fit(prompt, limit: int, tokenizer, count, *, source: str, row: int):
    for _ in range(MAX_CUT_ROUNDS):
        excess = count([prompt])[0] - limit
        if excess <= 0:
            return prompt
        prompt = _cut_chat(prompt, excess, tokenizer, source, row) if isinstance(prompt, list) else _cut_start(prompt, excess, tokenizer)
    if count([prompt])[0] > limit:
        raise DataError(f"row {row}'s prompt could not be cut to {limit:,} tokens", where=source, fix="shorten it in the data")
    return prompt


def _cut_start(text: str, tokens: int, tokenizer) -> str:
    """`text` without its first `tokens` tokens (at least one character shorter)."""
    ids = tokenizer(text=text, add_special_tokens=False)["input_ids"]
    kept = tokenizer.decode(ids[tokens:], skip_special_tokens=False)
    return kept if len(kept) < len(text) else text[1:]


def _cut_chat(messages: list[dict], tokens: int, tokenizer, source: str, row: int) -> list[dict]:
    """The conversation with `tokens` tokens cut from the start of its first non-system message."""
    messages = [dict(message) for message in messages]
    for index, message in enumerate(messages):
        content = message.get("content")
        if message.get("role") == "system" or not isinstance(content, str) or not content:
            continue
        cut = _cut_start(content, tokens, tokenizer)
        if cut.strip() or index == len(messages) - 1:
            message["content"] = cut
            return messages
        return messages[:index] + messages[index + 1 :]  # cut to nothing: drop it
    raise DataError(
        f"row {row}'s chat prompt is longer than the limit and has no message text left to cut",
        where=source,
        fix="shorten its system prompt, or raise max_prompt_length",
    )


def _with_prompts(dataset: datasets.Dataset, prompts: list) -> datasets.Dataset:
    from datasets.fingerprint import generate_random_fingerprint

    others = [column for column in dataset.column_names if column != PROMPT_COLUMN]
    replaced = dataset.remove_columns(PROMPT_COLUMN).add_column(
        PROMPT_COLUMN, prompts, new_fingerprint=generate_random_fingerprint()
    )
    return replaced.select_columns([PROMPT_COLUMN, *others])
