"""`repetition_penalty` and `overlong_penalty`: negative rewards for degenerate or too long completions."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, validate_call

from grpokit.errors import RewardConfigError
from grpokit.rewards.common import RewardFunc, text_of


def _completion_ids(kwargs: dict[str, Any], reward_name: str, param_hint: str) -> list:
    completion_ids = kwargs.get("completion_ids")
    if completion_ids is None:
        raise RewardConfigError(
            f'reward "{reward_name}" needs completion_ids (token ids) and was called without them',
            fix="GRPOTrainer passes completion_ids during training; when calling the reward yourself, pass "
            f"completion_ids=[...]{param_hint}",
        )
    return completion_ids


@validate_call
def repetition_penalty_reward(
    *,
    ngram_size: Annotated[int, Field(ge=1)] = 3,
    max_penalty: Annotated[float, Field(le=0.0)] = -1.0,
    unit: Literal["words", "tokens"] = "words",
) -> RewardFunc:
    """A penalty in [max_penalty, 0] growing with the share of repeated n-grams in the completion.

        score = (1 - unique n-grams / all n-grams) * max_penalty

    so a completion without a repeated n-gram scores 0.0 and one that repeats a single n-gram
    throughout approaches `max_penalty`. A completion with fewer than `ngram_size` units scores 0.0.
    (As TRL's `get_repetition_penalty_reward`, from "Demystifying Long Chain-of-Thought Reasoning",
    Appendix C.2.)

    Parameters:
        ngram_size: n (default 3).
        max_penalty: the most negative score (<= 0, default -1.0).
        unit: `words` (default: the text lowercased and split on whitespace) or `tokens` (the
            `completion_ids` GRPOTrainer passes).

    Example:
        >>> reward = repetition_penalty_reward(ngram_size=2)
        >>> reward(prompts=["Q"] * 2, completions=["a b c d", "a a a a a"])
        [0.0, -0.75]
    """
    return RepetitionPenalty(ngram_size, max_penalty, unit)


class RepetitionPenalty:
    """The `repetition_penalty` reward. A class, not a closure, so TRL can pickle it into worker processes."""

    __name__ = "repetition_penalty"
    required_columns: frozenset[str] = frozenset()

    def __init__(self, ngram_size: int, max_penalty: float, unit: str) -> None:
        self.ngram_size = ngram_size
        self.max_penalty = max_penalty
        self.unit = unit

    def __call__(self, prompts: list, completions: list, **kwargs: Any) -> list[float]:
        if self.unit == "tokens":
            units = _completion_ids(kwargs, self.__name__, " or use unit: words")
        else:
            units = [text_of(completion).lower().split() for completion in completions]
        return [self.score_units(list(sequence)) for sequence in units]

    def score_units(self, sequence: list) -> float:
        if len(sequence) < self.ngram_size:
            return 0.0
        ngrams = list(zip(*(sequence[i:] for i in range(self.ngram_size))))
        repeated_share = 1.0 - len(set(ngrams)) / len(ngrams)
        return repeated_share * self.max_penalty if repeated_share else 0.0


@validate_call
def overlong_penalty_reward(
    *,
    max_completion_length: Annotated[int, Field(gt=0)],
    cache_length: Annotated[int, Field(ge=0)] = 0,
) -> RewardFunc:
    """DAPO's soft overlong punishment: 0 up to `max - cache` tokens, falling linearly to -1 at `max`.

    With `n` the completion's token count (its `completion_ids`), L = `max_completion_length` and
    C = `cache_length` (DAPO paper, Eq. 13):

        n <= L - C           ->  0.0
        L - C < n <= L       ->  (L - C - n) / C
        n > L                ->  -1.0

    Set `max_completion_length` to the training's `max_completion_length`: GRPOTrainer cuts
    completions there, so a completion that reaches it (was truncated) scores -1.0.

    Parameters:
        max_completion_length: L, in tokens.
        cache_length: C, the soft zone before L (default 0: a hard -1.0 only past L). Less than L.

    Example:
        >>> reward = overlong_penalty_reward(max_completion_length=100, cache_length=20)
        >>> reward(prompts=["Q"] * 3, completions=["", "", ""], completion_ids=[[1] * 80, [1] * 90, [1] * 100])
        [0.0, -0.5, -1.0]
    """
    if cache_length >= max_completion_length:
        raise RewardConfigError(
            f'reward "overlong_penalty": cache_length ({cache_length}) must be less than '
            f"max_completion_length ({max_completion_length})",
            fix="DAPO uses a cache of about a quarter of the maximum, e.g. 4096 of 16384",
        )
    return OverlongPenalty(max_completion_length, cache_length)


class OverlongPenalty:
    """The `overlong_penalty` reward. A class, not a closure, so TRL can pickle it into worker processes."""

    __name__ = "overlong_penalty"
    required_columns: frozenset[str] = frozenset()

    def __init__(self, max_completion_length: int, cache_length: int) -> None:
        self.max_completion_length = max_completion_length
        self.cache_length = cache_length

    def __call__(self, prompts: list, completions: list, **kwargs: Any) -> list[float]:
        return [self.score_length(len(ids)) for ids in _completion_ids(kwargs, self.__name__, "")]

    def score_length(self, n: int) -> float:
        soft_start = self.max_completion_length - self.cache_length
        if n <= soft_start:
            return 0.0
        if n <= self.max_completion_length:
            return (soft_start - n) / self.cache_length
        return -1.0
