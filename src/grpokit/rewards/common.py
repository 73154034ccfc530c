"""What every reward shares: the callable contract, completion text, dataset-column access."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from grpokit.data.messages import text_of  # noqa: F401 -- re-exported: every reward reads completions through it
from grpokit.data.options import ROW_COLUMN  # the row index the data loader adds; reward errors name it
from grpokit.errors import RewardConfigError, closest_key

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


def check_parameter_names(reward: str, params: Iterable[str], valid: Sequence[str], *, otherwise: str = "remove it") -> None:
    """The one unknown-parameter check, for built-in and user rewards alike: every key of `params` is in `valid`.

    Raises:
        RewardConfigError: naming the first unknown key, the valid ones, and the closest ("did you mean"),
            else `otherwise`.
    """
    for key in params:
        if key not in valid:
            close = closest_key(key, list(valid))
            raise RewardConfigError(
                f'reward "{reward}" has no parameter "{key}"',
                where=f"valid parameters of {reward}: {', '.join(valid)}",
                fix=f'did you mean "{close}"?' if close else f'"{key}": {otherwise}',
            )


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
