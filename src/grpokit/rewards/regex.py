"""`regex`: a fixed score when the completion matches a regular expression."""

from __future__ import annotations

import functools
import operator
import re
from typing import Any, Literal

from pydantic import validate_call

from grpokit.errors import RewardConfigError
from grpokit.rewards.common import RewardFunc, text_of

RegexFlag = Literal["IGNORECASE", "MULTILINE", "DOTALL", "VERBOSE", "ASCII"]


@validate_call
def regex_reward(
    *,
    pattern: str,
    mode: Literal["search", "match", "fullmatch"] = "search",
    flags: list[RegexFlag] = [],  # noqa: B006 -- validate_call copies defaults; never mutated
    score: float = 1.0,
    no_match_score: float = 0.0,
) -> RewardFunc:
    """`score` when the completion's text matches `pattern`, else `no_match_score`.

    Uses Python's `re`: `search` finds the pattern anywhere, `match` at the start, `fullmatch` on the
    whole text. The pattern is compiled when the reward is built, so a bad pattern is reported before
    any model loads.

    Parameters:
        pattern: the regular expression (in YAML, single-quote it so backslashes stay as written).
        mode: `search` (default), `match` or `fullmatch`.
        flags: any of `IGNORECASE`, `MULTILINE`, `DOTALL`, `VERBOSE`, `ASCII`.
        score: the score of a matching completion (may be negative: a penalty for a pattern).
        no_match_score: the score of a completion that does not match.

    Example:
        >>> reward = regex_reward(pattern=r"\\d+", mode="fullmatch", score=1.0)
        >>> reward(prompts=["Q"] * 3, completions=["46", "46 apples", ""])
        [1.0, 0.0, 0.0]
    """
    combined = functools.reduce(operator.or_, (getattr(re, flag) for flag in flags), re.NOFLAG)
    try:
        compiled = re.compile(pattern, combined)
    except re.error as error:
        raise RewardConfigError(
            f'reward "regex": pattern {pattern!r} is not a valid regular expression: {error}',
            fix="fix the pattern; in YAML put it in single quotes so backslashes are kept",
        ) from None
    return Regex(compiled, mode, score, no_match_score)


class Regex:
    """The `regex` reward. A class, not a closure, so TRL can pickle it into worker processes."""

    __name__ = "regex"
    required_columns: frozenset[str] = frozenset()

    def __init__(self, compiled: re.Pattern, mode: str, score: float, no_match_score: float) -> None:
        self.compiled = compiled
        self.mode = mode
        self.score = score
        self.no_match_score = no_match_score

    def __call__(self, prompts: list, completions: list, **kwargs: Any) -> list[float]:
        matcher = getattr(self.compiled, self.mode)
        return [
            self.score if matcher(text_of(completion)) is not None else self.no_match_score
            for completion in completions
        ]
