"""One entry of the config's `rewards:` list, as the config schema reads it.

It lives on its own, away from the registry of built-ins, so loading a config (and reporting a bad
one) never imports the rewards' libraries (rouge-score, nltk, math-verify, ...).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


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
