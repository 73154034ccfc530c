"""Group statistics of GRPO rewards: which groups of completions carry a learning signal.

GRPO scores each completion against the other completions of the same prompt (its group). A group
whose completions all get the same total reward has zero advantage everywhere: it costs a generation
and a backward pass and teaches nothing. `grpokit probe` measures how many such groups a config
produces before a run; dynamic sampling (`grpokit.trainer.dynamic_sampling`) drops them during one;
`zero_spread_fraction` is the per-reward share every training log reports
(`grpokit.trainer.reward_callbacks`).

Totals follow TRL's rule: the weighted sum of the rewards that scored the completion (a reward that
gave None is skipped); a completion no reward scored has no total (None) and is left out of its
group's spread.

Example:
    >>> totals = weighted_totals([[1.0, 0.5], [0.0, None], [None, None]], weights=[1.0, 2.0])
    >>> totals
    [2.0, 0.0, None]
    >>> zero_spread_mask([1.0, 1.0, 0.0, 1.0, 2.0, 2.0], group_size=2)
    [True, False, True]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

SPREAD_TOLERANCE = 1e-6  # totals closer than this count as equal (float noise from weighted sums)


def _present(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


def weighted_totals(scores: Sequence[Sequence[float | None]], weights: Sequence[float]) -> list[float | None]:
    """Each completion's weighted total: `scores[i][k]` is reward k's score of completion i (None or NaN: not scored).

    Raises:
        ValueError: a row has another number of scores than there are weights.
    """
    totals: list[float | None] = []
    for index, row in enumerate(scores):
        if len(row) != len(weights):
            raise ValueError(f"completion {index} has {len(row)} scores for {len(weights)} rewards")
        present = [score * weight for score, weight in zip(row, weights) if _present(score)]
        totals.append(sum(present) if present else None)
    return totals


def group_spreads(values: Sequence[float | None], group_size: int) -> list[float | None]:
    """Max minus min of each consecutive group of `group_size` values (None / NaN skipped; None for an empty group).

    Raises:
        ValueError: `group_size` is below 1 or does not divide the number of values.
    """
    if group_size < 1:
        raise ValueError(f"group_size must be at least 1, got {group_size}")
    if len(values) % group_size:
        raise ValueError(f"{len(values)} values do not split into groups of {group_size}")
    spreads: list[float | None] = []
    for start in range(0, len(values), group_size):
        present = [value for value in values[start : start + group_size] if _present(value)]
        spreads.append(max(present) - min(present) if present else None)
    return spreads


def zero_spread_mask(
    values: Sequence[float | None], group_size: int, *, tolerance: float = SPREAD_TOLERANCE
) -> list[bool]:
    """One flag per group: True when the group's values are all equal (or none is present): no learning signal.

    Raises:
        ValueError: as `group_spreads`.
    """
    return [spread is None or spread <= tolerance for spread in group_spreads(values, group_size)]


def zero_spread_mask_per_reward(
    scores: Sequence[Sequence[float | None]], group_size: int, *, tolerance: float = SPREAD_TOLERANCE
) -> list[bool]:
    """One flag per group: True when every reward on its own gives the group's completions one score.

    This is the zero-spread rule of TRL's `multi_objective_aggregation: normalize_then_sum`, which
    normalizes each reward within its group before summing.
    """
    if not scores:
        return []
    columns = [[row[k] for row in scores] for k in range(len(scores[0]))]
    masks = [zero_spread_mask(column, group_size, tolerance=tolerance) for column in columns]
    return [all(flags) for flags in zip(*masks)]


def zero_spread_fraction(scores: list[float], group_size: int, *, tolerance: float = SPREAD_TOLERANCE) -> float | None:
    """The share of consecutive groups of `group_size` scores whose scores are all equal (NaN = None: skipped).

    A group with no score left is skipped; None when no group has a score. A last, incomplete group is
    ignored.

    Example:
        >>> zero_spread_fraction([1, 1, 0, 1, 2, 2], group_size=2)
        0.6666666666666666
    """
    fractions = []
    for start in range(0, len(scores) - group_size + 1, group_size):
        present = [s for s in scores[start : start + group_size] if s is not None and not math.isnan(s)]
        if present:
            fractions.append(max(present) - min(present) <= tolerance)
    return sum(fractions) / len(fractions) if fractions else None
