"""`length`: how close the completion's length is to a target."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, validate_call

from grpokit.errors import RewardConfigError
from grpokit.rewards.common import RewardFunc, text_of


@validate_call
def length_reward(
    *,
    target_length: Annotated[int, Field(gt=0)] = 512,
    unit: Literal["chars", "tokens"] = "chars",
    tolerance: Annotated[int, Field(ge=0)] = 0,
    penalize_longer: bool = True,
    offset: Annotated[int, Field(ge=0)] = 0,
) -> RewardFunc:
    """1.0 for a completion of `target_length`, falling linearly to 0.0, in [0, 1].

    With `n` the completion's length plus `offset` and `d` its distance to the target,

        d = |n - target_length|                   (penalize_longer: true)
        d = max(0, target_length - n)             (penalize_longer: false: only too short is penalised)
        score = max(0, 1 - max(0, d - tolerance) / target_length)

    so a completion within `tolerance` of the target scores 1.0, an empty one 0.0 (with tolerance 0),
    and one twice the target or longer 0.0.

    Parameters:
        target_length: the length that scores 1.0 (default 512, as in the AWS sample).
        unit: `chars` counts the Unicode code points of the completion's text; `tokens` counts the
            `completion_ids` GRPOTrainer passes to rewards (no tokenizer needed; outside training the
            caller must pass them).
        tolerance: distance from the target that still scores 1.0.
        penalize_longer: false gives the AWS sample's one-sided shape: only too short is penalised.
        offset: added to every length before scoring (default 0). The AWS sample's `reward_len`
            counted `len(text) + 1`.

    The AWS sample's `reward_len` returned `min(len(text) + 1, 512) / 512`: one-sided (a long
    completion is never penalised) and 1/512 for an empty one. `penalize_longer: false, offset: 1`
    (with the default target 512, unit chars, tolerance 0) is exactly that, which is what
    `grpokit convert aws-sample` writes. The default (two-sided) is grpokit's own choice: a
    one-sided length reward pushes every completion to at least the target length.

    Example:
        >>> reward = length_reward(target_length=10)
        >>> reward(prompts=["Q"] * 3, completions=["x" * 10, "x" * 5, "x" * 15])
        [1.0, 0.5, 0.5]
        >>> sample = length_reward(target_length=512, penalize_longer=False, offset=1)
        >>> sample(prompts=["Q"] * 3, completions=["", "x" * 255, "x" * 600])
        [0.001953125, 0.5, 1.0]
    """
    return Length(target_length, unit, tolerance, penalize_longer, offset)


class Length:
    """The `length` reward. A class, not a closure, so TRL can pickle it into worker processes."""

    __name__ = "length"
    required_columns: frozenset[str] = frozenset()

    def __init__(self, target_length: int, unit: str, tolerance: int, penalize_longer: bool, offset: int = 0) -> None:
        self.target_length = target_length
        self.unit = unit
        self.tolerance = tolerance
        self.penalize_longer = penalize_longer
        self.offset = offset

    def __call__(self, prompts: list, completions: list, **kwargs: Any) -> list[float]:
        return [self.score_length(n + self.offset) for n in self.lengths(completions, kwargs.get("completion_ids"))]

    def lengths(self, completions: list, completion_ids: list | None) -> list[int]:
        if self.unit == "chars":
            return [len(text_of(completion)) for completion in completions]
        if completion_ids is None:
            raise RewardConfigError(
                'reward "length" has unit: tokens but was called without completion_ids',
                fix="GRPOTrainer passes completion_ids during training; when calling the reward yourself, "
                "pass completion_ids=[...] or use unit: chars",
            )
        return [len(ids) for ids in completion_ids]

    def score_length(self, n: int) -> float:
        distance = abs(n - self.target_length) if self.penalize_longer else max(0, self.target_length - n)
        return max(0.0, 1.0 - max(0, distance - self.tolerance) / self.target_length)
