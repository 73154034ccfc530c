"""Rewards: the built-ins by name, user functions by path, weights and the error policy.

A reward is a plain function with TRL's contract, `fn(prompts, completions, **kwargs) ->
list[float | None]`, carrying `__name__` (TRL's metric name) and `required_columns`. See
docs/rewards.md for the config syntax and each built-in's parameters.
"""

from grpokit.rewards.common import RewardFunc, text_of
from grpokit.rewards.policy import GuardedReward
from grpokit.rewards.registry import REGISTRY, build_reward
from grpokit.rewards.reward_set import (
    RewardSet,
    RewardSpec,
    build_rewards,
    default_reward_specs,
    run_rewards_on_rows,
)

__all__ = [
    "REGISTRY",
    "GuardedReward",
    "RewardFunc",
    "RewardSet",
    "RewardSpec",
    "build_reward",
    "build_rewards",
    "default_reward_specs",
    "run_rewards_on_rows",
    "text_of",
]
