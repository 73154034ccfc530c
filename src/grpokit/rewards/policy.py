"""The error policy around every reward TRL calls: name the failing row, raise or score 0.0 and count."""

from __future__ import annotations

import inspect
import logging
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from grpokit.errors import GrpokitError, RunError
from grpokit.rewards.common import ROW_COLUMN, RewardFunc, shorten, text_of

logger = logging.getLogger("grpokit.rewards")

OnError = Literal["raise", "zero"]


class GuardedReward:
    """What TRL receives for one configured reward.

    It removes the `grpokit_row` column before calling the reward, checks the output (one score per
    completion, each a finite real number or None: NaN and inf are failures, like an exception), and applies `on_error` when the reward raises: the batch
    is re-run item by item to find the failing rows, then `raise` raises `RunError` naming the reward
    and the first failing row (prompt and completion shortened), chained to the original exception;
    `zero` scores each failing item 0.0, counts it and logs one warning per reward (when every item
    passes alone, `raise` reports the batch failure and `zero` keeps the item scores). A `GrpokitError`
    from the reward (a missing column, say) is a configuration problem and always propagates.
    """

    def __init__(self, reward: RewardFunc, name: str, on_error: OnError) -> None:
        self.reward = reward
        self.__name__ = name
        self.on_error = on_error
        self.required_columns = reward.required_columns
        self.failures = 0

    def __call__(self, prompts: list, completions: list, **kwargs: Any) -> list[float | None]:
        rows = kwargs.pop(ROW_COLUMN, None)
        batch = _Batch(prompts, completions, kwargs, rows)
        try:
            scores = self.reward(prompts=prompts, completions=completions, **kwargs)
        except GrpokitError:
            raise
        except Exception as batch_error:  # noqa: BLE001 -- any failure is re-run item by item, then reported
            return self._score_one_by_one(batch, batch_error)
        scores = self._as_list(scores, batch.size)
        return [self._checked_score(score, batch, i) for i, score in enumerate(scores)]

    def _score_one_by_one(self, batch: _Batch, batch_error: Exception) -> list[float | None]:
        outcomes = []
        for i in range(batch.size):
            try:
                outcomes.append(self.reward(**batch.item_kwargs(i)))
            except GrpokitError:
                raise
            except Exception as error:  # noqa: BLE001 -- raised with context or counted by _fail
                outcomes.append(error)
        return self._item_scores(batch, batch_error, outcomes)

    def _item_scores(self, batch: _Batch, batch_error: Exception, outcomes: list[Any]) -> list[float | None]:
        """The scores of a batch re-run item by item: `outcomes` holds each item's scores, or what it raised."""
        scores = []
        for i, outcome in enumerate(outcomes):
            if isinstance(outcome, Exception):
                scores.append(self._fail(batch, i, outcome))
            else:
                scores.append(self._checked_score(self._as_list(outcome, 1)[0], batch, i))
        if self.on_error == "raise":
            # _fail raised for any failing item, so every item passes alone: only whole batches fail.
            raise RunError(
                f'reward "{self.__name__}" raised {type(batch_error).__name__}: {batch_error} on a batch '
                f"of {batch.size} ({batch.rows_label()}), though each item alone scores",
                fix="make the reward handle lists of any length",
            ) from batch_error
        return scores

    def _checked_score(self, score: Any, batch: _Batch, i: int) -> float | None:
        if score is None:
            return None
        if isinstance(score, numbers.Real) and math.isfinite(score):
            return float(score)
        # NaN is no score: TRL would silently read it as "not applicable" (None); inf would swamp the group.
        return self._fail(
            batch, i, TypeError(f"returned {score!r} ({type(score).__name__}), not a finite number (return None for 'not applicable')")
        )

    def _fail(self, batch: _Batch, i: int, error: Exception) -> float:
        if self.on_error == "raise":
            raise RunError(
                f'reward "{self.__name__}" failed on {batch.row_label(i)}: {type(error).__name__}: {error}',
                where=f'prompt "{batch.prompt_text(i)}", completion "{batch.completion_text(i)}"',
                fix="fix the reward function, or set `on_error: zero` on this reward to score failures 0.0",
            ) from error
        self.failures += 1
        if self.failures == 1:
            logger.warning(
                'reward "%s" failed on %s: %s: %s. Scoring it 0.0 (on_error: zero); later failures of '
                "this reward are counted, not logged.",
                self.__name__,
                batch.row_label(i),
                type(error).__name__,
                error,
            )
        return 0.0

    def _as_list(self, scores: Any, expected: int) -> list:
        if hasattr(scores, "tolist"):  # a NumPy array or a tensor
            scores = scores.tolist()
        if not isinstance(scores, list | tuple) or len(scores) != expected:
            got = f"{len(scores)} scores" if isinstance(scores, list | tuple) else type(scores).__name__
            raise RunError(
                f'reward "{self.__name__}" returned {got} for {expected} completions',
                fix="a reward returns a list with one float (or None) per completion",
            )
        return list(scores)


class AsyncGuardedReward(GuardedReward):
    """`GuardedReward` around an async reward: TRL awaits it on its event loop, concurrently with the other async ones.

    The same policy: a failing batch is re-run item by item (awaited one after another), then `raise`
    or `zero` as for a sync reward, with the same failure counts.
    """

    async def __call__(self, prompts: list, completions: list, **kwargs: Any) -> list[float | None]:
        rows = kwargs.pop(ROW_COLUMN, None)
        batch = _Batch(prompts, completions, kwargs, rows)
        try:
            scores = await self.reward(prompts=prompts, completions=completions, **kwargs)
        except GrpokitError:
            raise
        except Exception as batch_error:  # noqa: BLE001 -- any failure is re-run item by item, then reported
            outcomes = []
            for i in range(batch.size):
                try:
                    outcomes.append(await self.reward(**batch.item_kwargs(i)))
                except GrpokitError:
                    raise
                except Exception as error:  # noqa: BLE001 -- raised with context or counted by _fail
                    outcomes.append(error)
            return self._item_scores(batch, batch_error, outcomes)
        scores = self._as_list(scores, batch.size)
        return [self._checked_score(score, batch, i) for i, score in enumerate(scores)]


def guard_reward(reward: RewardFunc, name: str, on_error: OnError) -> GuardedReward:
    """`reward` wrapped in its error policy: an `AsyncGuardedReward` when calling it returns a coroutine."""
    return AsyncGuardedReward(reward, name, on_error) if is_async_reward(reward) else GuardedReward(reward, name, on_error)


def is_async_reward(reward: Any) -> bool:
    """Whether calling `reward` returns a coroutine (a coroutine function, or an instance with an async `__call__`)."""
    return inspect.iscoroutinefunction(reward) or inspect.iscoroutinefunction(getattr(type(reward), "__call__", None))  # noqa: B004 -- the class's own __call__, not whether the instance is callable


def _no_op(*args: Any, **kwargs: Any) -> None:
    """Stands in for TRL's log_extra / log_metric when items are re-run one by one."""


@dataclass
class _Batch:
    """One reward call's inputs, sliceable into single items."""

    prompts: list
    completions: list
    kwargs: dict[str, Any]
    rows: list[int] | None

    @property
    def size(self) -> int:
        return len(self.completions)

    def item_kwargs(self, i: int) -> dict[str, Any]:
        # Per-completion lists (columns, completion_ids) are sliced; TRL's extras are passed as they are,
        # except the loggers: a re-run must not log a second time.
        item = {
            key: [value[i]] if isinstance(value, list) and len(value) == self.size else value
            for key, value in self.kwargs.items()
        }
        item.update({key: _no_op for key in ("log_extra", "log_metric") if key in item})
        return {"prompts": [self.prompts[i]], "completions": [self.completions[i]], **item}

    def row_label(self, i: int) -> str:
        if self.rows is None:
            return f"item {i} of the batch (no {ROW_COLUMN} column to name the dataset row)"
        return f"dataset row {self.rows[i]}"

    def rows_label(self) -> str:
        return "no dataset row numbers" if self.rows is None else f"dataset rows {sorted(set(self.rows))}"

    def prompt_text(self, i: int) -> str:
        prompt = self.prompts[i]
        if isinstance(prompt, list) and prompt and isinstance(prompt[-1], Mapping):
            prompt = text_of([{"content": prompt[-1].get("content")}])  # the last message
        return shorten(str(prompt))

    def completion_text(self, i: int) -> str:
        try:
            return shorten(text_of(self.completions[i]))
        except TypeError:
            return shorten(repr(self.completions[i]))
