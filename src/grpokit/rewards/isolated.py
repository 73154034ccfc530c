"""`isolated`: run another reward in worker processes, with a hard timeout and optional parallelism."""

from __future__ import annotations

import logging
import math
import multiprocessing
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, validate_call

from grpokit.errors import RewardConfigError
from grpokit.rewards.common import RewardFunc

logger = logging.getLogger("grpokit.rewards")

# Seconds the workers may take to start and import the reward before the first batch; not part of `timeout`.
STARTUP_TIMEOUT = 300.0

# The reward each worker process built in `_build_in_worker`.
_worker_reward: RewardFunc | None = None


def make_isolated_factory(build_reward: Callable[..., RewardFunc]) -> Callable[..., RewardFunc]:
    """The `isolated` reward's factory, given the function that builds any reward by name.

    The registry passes its own `build_reward`, so this module never imports the registry that lists it.
    The function travels to the worker processes by reference (it must be a module-level function).
    """

    @validate_call
    def isolated_reward(
        *,
        reward: Annotated[str, Field(min_length=1)],
        params: dict[str, Any] = {},  # noqa: B006 -- validate_call copies defaults; never mutated
        timeout: Annotated[float, Field(gt=0)] | None = 60.0,
        workers: Annotated[int, Field(ge=1)] = 1,
    ) -> RewardFunc:
        """Run `reward` (any reward name: a built-in or your function) in `workers` separate processes.

        For rewards that may hang (your code, a solver, a sandbox) or that are slow and CPU-bound. The
        batch is split into `workers` contiguous chunks scored in parallel; the scores come back in order.
        When the batch is not scored within `timeout` seconds, the worker processes are killed (a thread
        could not be), the call raises `TimeoutError`, and `on_error` applies as for any failure: `raise`
        stops the run naming the row; `zero` re-scores item by item in fresh workers so only the items that
        hang score 0.0 (each costing up to `timeout`). The metric name is the wrapped reward's.

        Workers are started with `spawn` (safe next to CUDA and threads), on the first call, and each builds
        the reward once from its name and `params`, so the reward's module must be importable in a fresh
        process: a built-in, an installed module, or a file path (relative paths start at the directory
        grpokit runs in; give an absolute path or a module name when the config lives elsewhere). Worker
        start-up is not counted in `timeout`. Scores of TRL's extras: `completion_ids` and `trainer_state`
        reach the workers; `log_extra` and `log_metric` (bound to the trainer) do not.

        Parameters:
            reward: the reward to run: a built-in name or 'module:function' / 'path/file.py:function'.
            params: that reward's own parameters.
            timeout: seconds for one batch (None: no limit).
            workers: worker processes (default 1). More helps only a CPU-bound reward on a machine with
                spare cores.

        Example:
            >>> reward = isolated_reward(reward="./my_rewards.py:run_tests", timeout=30, workers=4)
            >>> reward(prompts=["Write f"], completions=["def f(): return 1"])
            [1.0]
        """
        if reward == "isolated":
            raise RewardConfigError('reward "isolated" cannot wrap itself', fix="name another reward in `reward:`")
        built = build_reward(reward, **params)  # reports a bad name or parameter now, in the parent
        return Isolated(
            build_reward, reward, dict(params), str(Path.cwd()), timeout, workers, built.__name__, built.required_columns
        )

    return isolated_reward


def _build_in_worker(build_reward: Callable[..., RewardFunc], reward: str, params: dict[str, Any], working_dir: str) -> None:
    import os

    global _worker_reward
    os.chdir(working_dir)
    _worker_reward = build_reward(reward, **params)


def _score_in_worker(prompts: list, completions: list, kwargs: dict[str, Any]) -> list:
    assert _worker_reward is not None  # set by the pool initializer
    scores = _worker_reward(prompts=prompts, completions=completions, **kwargs)
    return scores.tolist() if hasattr(scores, "tolist") else list(scores)


def _ready() -> bool:
    return _worker_reward is not None


class Isolated:
    """The `isolated` reward. Picklable: the worker pool is dropped and restarted on first use."""

    def __init__(
        self,
        build_reward: Callable[..., RewardFunc],
        reward: str,
        params: dict[str, Any],
        working_dir: str,
        timeout: float | None,
        workers: int,
        name: str,
        required_columns: frozenset[str],
    ) -> None:
        self.build_reward = build_reward
        self.reward = reward
        self.params = params
        self.working_dir = working_dir
        self.timeout = timeout
        self.workers = workers
        self.__name__ = name
        self.required_columns = required_columns
        self.pool = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "pool": None}

    def __call__(self, prompts: list, completions: list, **kwargs: Any) -> list:
        pool = self.started_pool()
        chunks = _chunks(len(completions), self.workers)
        picklable = {key: value for key, value in kwargs.items() if not callable(value) and key != "environments"}
        pending = [
            pool.apply_async(_score_in_worker, (prompts[chunk], completions[chunk], _slice(picklable, chunk, len(completions))))
            for chunk in chunks
        ]
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        scores: list = []
        for result in pending:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                scores.extend(result.get(remaining))
            except multiprocessing.TimeoutError:
                self.stop()
                raise TimeoutError(
                    f'reward "{self.__name__}" did not finish {len(completions)} completions within '
                    f"{self.timeout:g} s; its worker processes were stopped"
                ) from None
        return scores

    def started_pool(self):
        if self.pool is None:
            context = multiprocessing.get_context("spawn")
            self.pool = context.Pool(
                self.workers, initializer=_build_in_worker, initargs=(self.build_reward, self.reward, self.params, self.working_dir)
            )
            try:
                self.pool.apply_async(_ready).get(STARTUP_TIMEOUT)
            except multiprocessing.TimeoutError:
                self.stop()
                raise RewardConfigError(
                    f'reward "isolated" ({self.reward}): the worker processes did not start within {STARTUP_TIMEOUT:g} s',
                    fix="check that the reward imports quickly in a fresh Python process",
                ) from None
        return self.pool

    def stop(self) -> None:
        """Kill the worker processes (a hung reward included); the next call starts new ones."""
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
            self.pool = None

    def __del__(self) -> None:
        pool = self.__dict__.get("pool")
        if pool is not None:
            pool.terminate()


def _chunks(size: int, workers: int) -> list[slice]:
    step = max(1, math.ceil(size / workers))
    return [slice(start, min(start + step, size)) for start in range(0, size, step)]


def _slice(kwargs: dict[str, Any], chunk: slice, size: int) -> dict[str, Any]:
    return {key: value[chunk] if isinstance(value, list) and len(value) == size else value for key, value in kwargs.items()}
