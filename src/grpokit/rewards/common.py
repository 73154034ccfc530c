"""What every reward shares: the callable contract, completion text, dataset-column access."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from grpokit.data.options import ROW_COLUMN  # the row index the data loader adds; reward errors name it
from grpokit.errors import RewardConfigError

# Keyword arguments GRPOTrainer passes to every reward besides the dataset columns.
TRL_REWARD_KWARGS = frozenset(
    {"prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric", "environments"}
)


@runtime_checkable
class RewardFunc(Protocol):
    """TRL's reward contract plus the two attributes grpokit relies on.

    `__name__` becomes TRL's metric name (`rewards/<name>/mean`); `required_columns` lists the dataset
    columns the reward reads, so the data loader can check them before any model is loaded.
    """

    __name__: str
    required_columns: frozenset[str]

    def __call__(self, prompts: list, completions: list, **kwargs: Any) -> list[float | None]: ...


def text_of(completion: Any) -> str:
    """Reduce one completion to its text.

    A completion is a string (standard prompts) or, for conversational prompts, a list of message dicts
    `[{"role": "assistant", "content": ...}]`. A content is a string, None (a message with only tool
    calls) or a list of parts `{"type": "text", "text": ...}`; text parts are concatenated, other parts
    (images) ignored. With several messages (tool use), the assistant messages' texts are joined by
    newlines; tool results are not the model's text and are skipped. A single message dict is accepted.

    Raises:
        TypeError: the completion has none of these shapes.
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Mapping):
        return _content_text(completion.get("content"))
    if isinstance(completion, list) and all(isinstance(message, Mapping) for message in completion):
        texts = [
            _content_text(message.get("content"))
            for message in completion
            if message.get("role", "assistant") == "assistant"
        ]
        return "\n".join(text for text in texts if text)
    raise TypeError(
        f"a completion must be a string or a list of message dicts, got {type(completion).__name__}"
    )


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"] for part in content if isinstance(part, Mapping) and part.get("type") == "text"
        )
    raise TypeError(f"a message content must be a string or a list of parts, got {type(content).__name__}")


def column_values(columns: Mapping[str, Any], column: str, reward_name: str, batch_size: int) -> list:
    """The values of dataset column `column` for the batch, or a clear error when the dataset lacks it.

    Raises:
        RewardConfigError: the column is missing or does not hold one value per completion.
    """
    if column not in columns:
        available = sorted(key for key in columns if key not in TRL_REWARD_KWARGS and key != ROW_COLUMN)
        raise RewardConfigError(
            f'reward "{reward_name}" needs the dataset column "{column}", which the dataset lacks',
            where=f"dataset columns: {available}",
            fix=f'add a "{column}" column to the dataset, or point the reward\'s column parameter at one',
        )
    values = columns[column]
    if not isinstance(values, list) or len(values) != batch_size:
        raise RewardConfigError(
            f'reward "{reward_name}": column "{column}" must hold one value per completion ({batch_size})'
        )
    return values


def shorten(text: str, limit: int = 200) -> str:
    """`text` on one line, cut to `limit` characters with an ellipsis, for error messages."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
