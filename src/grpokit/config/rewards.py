"""The `rewards:` section of the config: each entry's name, weight, error policy and parameters.

It lives here, away from the registry of built-ins (`grpokit.rewards`), so loading a config (and
reporting a bad one) never imports the rewards' libraries (rouge-score, nltk, math-verify, ...).
`run_reward_specs` resolves the run's list once, at load: the weights go into TRL's GRPOConfig
before its checks run, and `grpokit.rewards.build_rewards` builds the functions from the same list.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from grpokit.errors import ConfigError


class RewardSpec(BaseModel):
    """One entry of the config's `rewards:` list; every key besides these three is a reward parameter.

    A bare string is short for `{name: <string>}`. Parameters are checked when the reward is built.
    """

    model_config = ConfigDict(extra="allow")

    name: str = Field(
        min_length=1,
        description="a built-in reward (rouge_l, length, format), or a user function: "
        "'package.module:function' or 'path/to/file.py:function' (relative to the config file)",
    )
    weight: float = Field(
        default=1.0, allow_inf_nan=False, description="multiplies this reward in the sum GRPO optimises"
    )
    on_error: Literal["raise", "zero"] = Field(
        default="raise",
        description="when the reward raises: stop the run naming the dataset row (raise), or score the "
        "item 0.0, count it and warn once (zero)",
    )

    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @property
    def params(self) -> dict[str, Any]:
        """The reward's own parameters: the entry's keys other than name, weight and on_error."""
        return dict(self.model_extra or {})


def default_reward_specs() -> list[RewardSpec]:
    """The AWS GRPO sample's three rewards, each weight 1.0: rouge_l, length, format."""
    return [RewardSpec(name="rouge_l"), RewardSpec(name="length"), RewardSpec(name="format")]


def run_reward_specs(
    rewards: list[RewardSpec] | None,
    reward_model_name_or_path: str | None,
    *,
    source: str,
    has_environment: bool = False,
) -> tuple[RewardSpec, ...]:
    """The run's rewards: the `rewards:` list (default: rouge_l, length, format), and `reward_model_name_or_path`.

    With an `environment:` and no `rewards:` list there is no default: the environment's `get_reward()`
    scores the rollouts (TRL adds it, weight 1; `grpokit.rewards.agent` checks that it exists).

    `reward_model_name_or_path` without a `rewards:` list scores with the reward model alone, as the
    AWS sample's accelerate variant (`grpo_advanced.py`) and `trl grpo` do; with a list, it is added
    to it (weight 1.0).

    Raises:
        ConfigError: `rewards:` is an empty list.
    """
    if rewards is None and (reward_model_name_or_path or has_environment):  # the reward model / environment alone
        specs: list[RewardSpec] = []
    else:
        specs = list(rewards) if rewards is not None else default_reward_specs()
        if not specs:
            raise ConfigError("rewards: is an empty list", where=source, fix="list at least one reward, or remove the key")
    if reward_model_name_or_path:
        specs.append(RewardSpec(name="reward_model", model_name_or_path=reward_model_name_or_path))
    return tuple(specs)
