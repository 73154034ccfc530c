"""The `dynamic_sampling:` section: train only on groups whose completions got different rewards.

    dynamic_sampling: true               # the switch; the same as {enabled: true}
    dynamic_sampling:
      enabled: true
      max_rounds: 4                      # generation rounds per step at most, the first included

The trainer side is `grpokit.trainer.dynamic_sampling`; this module holds only the options, so the
config schema can name them without loading the trainer.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class DynamicSamplingOptions(BaseModel):
    """Drop zero-spread groups and generate replacements (DAPO's dynamic sampling), off by default."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        False,
        description="Drop the groups whose completions all got the same total reward (they teach nothing) and "
        "generate groups for other prompts in their place, so every optimizer step trains on groups that differ.",
    )
    max_rounds: int = Field(
        4,
        ge=2,
        le=64,
        description="Generation rounds per step at most, the first included. When they are used up, the step "
        "trains on the informative groups found plus zero-spread ones to fill the batch, as plain GRPO would.",
    )

    @model_validator(mode="before")
    @classmethod
    def _a_bare_switch(cls, value: Any) -> Any:
        """`dynamic_sampling: true` (or false) is the switch on its own."""
        return {"enabled": value} if isinstance(value, bool) else value
