"""The configured rewards: `rewards:` entries in, the functions and weights TRL takes out."""

from __future__ import annotations

import asyncio
import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grpokit.config.rewards import RewardSpec
from grpokit.errors import DataError, RewardConfigError
from grpokit.rewards.common import ROW_COLUMN
from grpokit.rewards.policy import GuardedReward, guard_reward
from grpokit.rewards.registry import resolve_reward


@dataclass
class RewardSet:
    """Built rewards in config order, ready for `GRPOTrainer(reward_funcs=funcs)` and `reward_weights`.

    `names` are unique (a repeated reward gets `_2`, `_3`, ...) and are TRL's metric names.
    `required_columns` maps each dataset column to the names of the rewards that read it.
    """

    funcs: list[GuardedReward]
    weights: list[float]
    names: list[str]
    required_columns: dict[str, set[str]] = field(default_factory=dict)

    def failure_counts(self) -> dict[str, int]:
        """Items scored 0.0 by `on_error: zero`, per reward name, since the rewards were built."""
        return {func.__name__: func.failures for func in self.funcs}


def build_rewards(specs: Sequence[RewardSpec], *, base_dir: Path | None = None) -> RewardSet:
    """Build every configured reward and wrap it in its error policy.

    Args:
        specs: the config's `rewards:` entries.
        base_dir: where relative reward file paths start (the config file's directory); default the
            current directory.

    Raises:
        RewardConfigError: an entry cannot be built; `where` names the entry (`rewards[i]`).
    """
    if not specs:
        raise RewardConfigError("no rewards configured", fix="add at least one entry under `rewards:`")
    funcs: list[GuardedReward] = []
    required: dict[str, set[str]] = {}
    for index, spec in enumerate(specs):
        try:
            reward = resolve_reward(spec.name, spec.params, base_dir=base_dir)
        except RewardConfigError as error:
            where = f"rewards[{index}] (name: {spec.name})" + (f"; {error.where}" if error.where else "")
            raise RewardConfigError(error.what, where=where, fix=error.fix) from error.__cause__
        name = _unique_name(reward.__name__, [func.__name__ for func in funcs])
        funcs.append(guard_reward(reward, name, spec.on_error))
        for column in reward.required_columns:
            required.setdefault(column, set()).add(name)
    return RewardSet(
        funcs=funcs,
        weights=[spec.weight for spec in specs],
        names=[func.__name__ for func in funcs],
        required_columns=required,
    )


def _unique_name(name: str, taken: list[str]) -> str:
    candidate, suffix = name, 2
    while candidate in taken:
        candidate, suffix = f"{name}_{suffix}", suffix + 1
    return candidate


def run_rewards_on_rows(
    reward_set: RewardSet,
    rows: list[dict[str, Any]],
    completions: list,
    *,
    completion_ids: list[list[int]] | None = None,
) -> list[dict[str, Any]]:
    """Score `completions` (one per row) with every reward, as GRPOTrainer would.

    Each reward is called once with the rows' prompts, the completions and every other column of the
    rows (including `grpokit_row` when present, so failures name the row). The total follows TRL: the
    weighted sum of the scores that are not None, or None when every score is None.

    Returns:
        One dict per row: `{"scores": {reward name: score or None}, "total": float or None}`.

    Raises:
        DataError: the rows and completions differ in number, or a row has no "prompt".
        RunError: a reward with `on_error: raise` failed.
    """
    if not rows and not completions:
        return []
    if len(rows) != len(completions):
        raise DataError(f"{len(rows)} rows but {len(completions)} completions; give one completion per row")
    for index, row in enumerate(rows):
        if "prompt" not in row:
            raise DataError(f'row {row.get(ROW_COLUMN, index)} has no "prompt" column')
    columns = {key: [row.get(key) for row in rows] for key in rows[0] if key not in ("prompt", "completion")}
    extras = {} if completion_ids is None else {"completion_ids": completion_ids}
    prompts = [row["prompt"] for row in rows]
    per_reward = [
        _awaited(func(prompts=prompts, completions=completions, **columns, **extras)) for func in reward_set.funcs
    ]
    results = []
    for i in range(len(rows)):
        scores = {name: scores_of_reward[i] for name, scores_of_reward in zip(reward_set.names, per_reward)}
        results.append(
            {"scores": scores, "total": _weighted_total(list(scores.values()), reward_set.weights)}
        )
    return results


def _awaited(result: Any) -> Any:
    """An async reward's scores (run to completion here, outside TRL's event loop), or a sync one's as they are."""
    return asyncio.run(result) if inspect.iscoroutine(result) else result


def _weighted_total(scores: list[float | None], weights: list[float]) -> float | None:
    present = [(score, weight) for score, weight in zip(scores, weights) if score is not None]
    if not present:
        return None
    return math.fsum(score * weight for score, weight in present)
