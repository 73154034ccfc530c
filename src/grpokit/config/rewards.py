"""The `rewards:` section of the config: each entry's name, weight, error policy and parameters.

It lives here, away from the registry of built-ins (`grpokit.rewards`), so loading a config (and
reporting a bad one) never imports the rewards' libraries (rouge-score, nltk, math-verify, ...).
`run_reward_specs` resolves the run's list once, at load: the weights go into TRL's GRPOConfig
before its checks run, and `grpokit.rewards.build_rewards` builds the functions from the same list.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from grpokit.config.overrides import Override
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
    reward_weights: list[float] | None = None,
    source: str,
    has_environment: bool = False,
) -> tuple[RewardSpec, ...]:
    """The run's rewards: the `rewards:` list (default: rouge_l, length, format), and `reward_model_name_or_path`.

    With an `environment:` and no `rewards:` list there is no default: the environment's `get_reward()`
    scores the rollouts (TRL adds it, weight 1; `grpokit.rewards.agent` checks that it exists).

    `reward_model_name_or_path` without a `rewards:` list scores with the reward model alone, as the
    AWS sample's accelerate variant (`grpo_advanced.py`) and `trl grpo` do; with a list, it is added
    to it (weight 1.0). `reward_weights` (TRL's field) gives the rewards their weights in that order,
    as TRL reads it; a reward entry's own `weight:` says the same, so only one of the two may be given.

    Raises:
        ConfigError: `rewards:` is an empty list; `reward_weights` has not one weight per reward, or is
            given together with a reward's own `weight:`.
    """
    if rewards is None and (reward_model_name_or_path or has_environment):  # the reward model / environment alone
        specs: list[RewardSpec] = []
    else:
        specs = list(rewards) if rewards is not None else default_reward_specs()
        if not specs:
            raise ConfigError("rewards: is an empty list", where=source, fix="list at least one reward, or remove the key")
    if reward_model_name_or_path:
        specs.append(RewardSpec(name="reward_model", model_name_or_path=reward_model_name_or_path))
    if reward_weights is not None:
        specs = _weighted(specs, reward_weights, source)
    return tuple(specs)


def _weighted(specs: list[RewardSpec], weights: list[float], source: str) -> list[RewardSpec]:
    """`specs` with `reward_weights` as their weights, in order (TRL's meaning of the field)."""
    names = ", ".join(spec.name for spec in specs)
    if len(weights) != len(specs):
        raise ConfigError(
            f"reward_weights has {len(weights)} values for {len(specs)} rewards ({names})",
            where=source,
            fix="give one weight per reward, in the order of rewards: (reward_model_name_or_path last), as TRL does",
        )
    weighted = [spec for spec in specs if "weight" in spec.model_fields_set]
    if weighted:
        raise ConfigError(
            f"reward_weights and the weight: of reward '{weighted[0].name}' are both given",
            where=source,
            fix="give the weights one way: reward_weights (one per reward, in order) or weight: in each rewards: entry",
        )
    return [spec.model_copy(update={"weight": float(weight)}) for spec, weight in zip(specs, weights)]


def reward_model_trust_overrides(specs: tuple[RewardSpec, ...], trust_remote_code: bool) -> list[Override]:
    """`trust_remote_code: true` does not reach a reward model whose entry does not ask for it itself.

    TRL loads a reward model named by a string with `GRPOConfig.trust_remote_code`; grpokit runs a
    checkpoint's own code only where the entry that names it says so (the `trl grpo` keys set it there, as
    TRL would). The difference is said once at load, for each reward model it keeps off.
    """
    if not trust_remote_code:
        return []
    return [
        Override(
            f"trust_remote_code (reward model {spec.params.get('model_name_or_path')})",
            True,
            False,
            "grpokit runs a reward model's own code only when its rewards: entry sets trust_remote_code: true; "
            "the policy model gets it as written",
        )
        for spec in specs
        if spec.name == "reward_model" and not spec.params.get("trust_remote_code")
    ]
