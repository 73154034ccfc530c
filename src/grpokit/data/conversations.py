"""Chat conversations whose last turn is the assistant's: a prompt and its reference, or a prefill.

The commonest chat layout stores whole conversations (`messages`: the user's turn, then the
assistant's answer). Trained as prompts, the answer would sit inside the prompt. So when every
conversation of the prompt column ends with an assistant turn, `split_final_assistant_turns` makes
the turns before it the prompt and its text the reference, in the column the rewards read, and
logs one line saying so. Any other prompt that ends with an assistant turn is an error, unless
`dataset.continue_final_message: true` asks for it as a prefill the model continues (TRL's
`continue_final_message`).

Example:
    {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}
    becomes, for a reward reading `answer`:
    {"prompt": [{"role": "user", "content": "2+2?"}], "answer": "4"}
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from grpokit.errors import DataError

logger = logging.getLogger("grpokit.data")

DEFAULT_REFERENCE_COLUMN = "answer"  # the AWS sample's reference column, and every built-in reward's default
CONVERSATION_COLUMN = "messages"  # TRL's conversational column: the prompt when the data has no `prompt`
PREFILL_FIX = "set dataset.continue_final_message: true to have the model continue a final assistant message (a prefill)"


def chat_template_flags(prompt: list[dict]) -> dict[str, bool]:
    """How a chat prompt goes through the chat template, as TRL decides (`maybe_apply_chat_template`):
    a generation prompt after a user (or tool) turn; a final assistant turn is continued."""
    continues = bool(prompt) and prompt[-1].get("role") == "assistant"
    return {"add_generation_prompt": not continues, "continue_final_message": continues}


def ends_with_assistant(prompt: Any) -> bool:
    return isinstance(prompt, list) and bool(prompt) and isinstance(prompt[-1], dict) and prompt[-1].get("role") == "assistant"


def reference_column_for(
    columns: Iterable[str], required_columns: Mapping[str, Iterable[str]], prompt_column: str, source: str
) -> str:
    """The column the final assistant turns go to: the one column the rewards read that the data lacks.

    When the rewards lack none, `answer` (or, if the data has that already, `<prompt column>_reference`).
    Raises `DataError` when the rewards lack several: one turn cannot fill them all.
    """
    columns = set(columns)
    missing = sorted(column for column in required_columns if column not in columns)
    if len(missing) > 1:
        readers = "; ".join(f"{column!r} (read by {', '.join(sorted(required_columns[column]))})" for column in missing)
        raise DataError(
            f"the last turn of each conversation in column {prompt_column!r} is the assistant's, but the rewards "
            f"read {len(missing)} columns {source} lacks: {readers}; that turn can fill only one",
            where=source,
            fix="make the rewards read one reference column (their reference_column), or add the columns to the data",
        )
    if missing:
        return missing[0]
    return DEFAULT_REFERENCE_COLUMN if DEFAULT_REFERENCE_COLUMN not in columns else f"{prompt_column}_reference"


def split_final_assistant_turns(
    prompts: list,
    rows: list[int],
    *,
    continue_final_message: bool,
    prompt_column: str,
    source: str,
) -> tuple[list, list[str]] | None:
    """Prompts without their final assistant turn, and that turn's text; None when there is nothing to split.

    `rows` are the source row numbers (for messages). Nothing is split when no prompt ends with an
    assistant turn, or when `continue_final_message` keeps them as prefills. Raises `DataError` when only
    some conversations end with an assistant turn, or one has no user turn before it.
    """
    endings = [ends_with_assistant(prompt) for prompt in prompts]
    if continue_final_message or not any(endings):
        return None
    if not all(endings):
        with_answer = rows[endings.index(True)]
        without = rows[endings.index(False)]
        raise DataError(
            f"row {with_answer} of {source} ends with an assistant turn, but row {without} does not: a final "
            f"assistant turn is either every conversation's answer (the reference) or a prefill",
            where=f"{source}, row {with_answer} (first row is 0), column {prompt_column!r}",
            fix="end every conversation with the assistant's answer (it becomes the reference the rewards read), "
            f"or remove the final assistant turns; or {PREFILL_FIX}",
        )
    for row, prompt in zip(rows, prompts):
        if not any(message.get("role") == "user" for message in prompt[:-1]):
            raise DataError(
                f"row {row} of {source}: the conversation has no user turn before its final assistant turn, "
                "so nothing is left to prompt with once that turn becomes the reference",
                where=f"{source}, row {row} (first row is 0), column {prompt_column!r}",
                fix=f"add the user's turn before the assistant's answer; or {PREFILL_FIX}",
            )
    return [prompt[:-1] for prompt in prompts], [prompt[-1]["content"] for prompt in prompts]


def log_split(prompt_column: str, reference_column: str, count: int, source: str) -> None:
    logger.info(
        "%s: every conversation in column %r ends with the assistant's turn: the turns before it became the prompt, "
        "its text the reference in column %r (%d rows; set dataset.continue_final_message: true to have the model "
        "continue that turn instead)",
        source, prompt_column, reference_column, count,
    )  # fmt: skip
