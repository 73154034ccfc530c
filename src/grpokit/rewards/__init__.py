"""Rewards: the built-ins by name, user functions by path, weights and the error policy.

A reward is a plain function with TRL's contract, `fn(prompts, completions, **kwargs) ->
list[float | None]`, carrying `__name__` (TRL's metric name) and `required_columns`. See
docs/rewards.md for the config syntax and each built-in's parameters.

The names below are loaded on first use, so naming one never imports every built-in's libraries.
A `rewards:` entry's schema, `RewardSpec`, belongs to the config (`grpokit.config.rewards`).
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> the module that owns it
_EXPORTS = {
    "REGISTRY": "grpokit.rewards.registry",
    "build_reward": "grpokit.rewards.registry",
    "RewardFunc": "grpokit.rewards.common",
    "text_of": "grpokit.rewards.common",
    "GuardedReward": "grpokit.rewards.policy",
    "RewardSpec": "grpokit.config.rewards",
    "RewardSet": "grpokit.rewards.reward_set",
    "build_rewards": "grpokit.rewards.reward_set",
    "default_reward_specs": "grpokit.config.rewards",
    "run_rewards_on_rows": "grpokit.rewards.reward_set",
}

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


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'grpokit.rewards' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
