"""The `health:` section of the config: each health check's threshold and action, and the hang watchdog.

The checks themselves run in `grpokit.trainer.health` and `grpokit.trainer.watchdog`; this module
holds only their options, so the config schema names them without loading the training loop.
See docs/health.md.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Action = Literal["warn", "stop", "off"]
ACTION_HELP = "'warn': log it and go on; 'stop': also save a checkpoint and stop (exit code 3); 'off'."


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class NonfiniteOptions(_Section):
    action: Action = Field("stop", description="NaN / inf loss or gradient norm (that update is never applied). " + ACTION_HELP)


class ZeroSpreadOptions(_Section):
    action: Action = Field("stop", description="Most groups' completions all got the same reward. " + ACTION_HELP)
    threshold: float = Field(0.95, gt=0, le=1, description="Share of zero-spread groups (frac_reward_zero_std; with dynamic sampling, before it drops groups) that counts.")
    patience: int = Field(50, ge=1, description="Logs in a row at or above threshold before the check fires. Left unset, it shrinks to a quarter of a short run's logs (at least 3).")


class TruncationOptions(_Section):
    action: Action = Field("warn", description="Many completions cut at max_completion_length. " + ACTION_HELP)
    threshold: float = Field(0.5, gt=0, le=1, description="Share of cut completions (completions/clipped_ratio) that counts.")
    patience: int = Field(20, ge=1, description="Logs in a row at or above threshold before the check fires. Left unset, it shrinks to a quarter of a short run's logs (at least 3).")


class LengthOptions(_Section):
    action: Action = Field("warn", description="Mean completion length collapsing or exploding. " + ACTION_HELP)
    collapse_ratio: float = Field(0.25, gt=0, lt=1, description="Counts below this times the starting mean length.")
    explode_ratio: float = Field(4.0, gt=1, description="Counts above this times the starting mean length.")
    baseline_logs: int = Field(5, ge=1, description="The starting mean length is the mean over this many first logs.")
    patience: int = Field(20, ge=1, description="Logs in a row outside the range before the check fires. Left unset, it shrinks to a quarter of a short run's logs (at least 3).")


class EntropyOptions(_Section):
    action: Action = Field("warn", description="Token entropy collapsing: the policy stops exploring. " + ACTION_HELP)
    collapse_ratio: float = Field(0.1, gt=0, lt=1, description="Counts below this times the starting entropy.")
    baseline_logs: int = Field(5, ge=1, description="The starting entropy is the mean over this many first logs.")
    patience: int = Field(20, ge=1, description="Logs in a row below the limit before the check fires. Left unset, it shrinks to a quarter of a short run's logs (at least 3).")


class KlOptions(_Section):
    action: Action = Field("warn", description="KL to the reference model blowing up (logged when beta > 0). " + ACTION_HELP)
    threshold: float = Field(1.0, gt=0, description="KL (TRL's per-token estimate) above which a log counts.")
    patience: int = Field(10, ge=1, description="Logs in a row above threshold before the check fires. Left unset, it shrinks to a quarter of a short run's logs (at least 3).")


class RewardHackingOptions(_Section):
    action: Action = Field("warn", description="Training reward rising while eval reward falls (needs an eval set). " + ACTION_HELP)
    patience: int = Field(3, ge=1, description="Evaluations in a row with eval reward down and training reward up.")


class ToolFailuresOptions(_Section):
    action: Action = Field("warn", description="Many of the agent's tool calls fail (the tool raised, was unknown, or the call was malformed). " + ACTION_HELP)
    threshold: float = Field(0.5, gt=0, le=1, description="Share of failed tool calls (tools/failure_share) that counts; logs with no call are not read.")
    patience: int = Field(10, ge=1, description="Logs in a row at or above threshold before the check fires. Left unset, it shrinks to a quarter of a short run's logs (at least 3).")


class ToolCallsOptions(_Section):
    action: Action = Field("warn", description="The policy stops calling its tools after having called them. " + ACTION_HELP)
    stopped_below: float = Field(0.01, ge=0, lt=1, description="Tool calls per completion (tools/calls_per_completion) at or below this count as none, once an earlier log was above it.")
    patience: int = Field(10, ge=1, description="Logs in a row at or below stopped_below before the check fires. Left unset, it shrinks to a quarter of a short run's logs (at least 3).")


class HangOptions(_Section):
    """`health.hang`: the hang watchdog (see `grpokit.trainer.watchdog`)."""

    action: Literal["stop", "warn", "off"] = Field(
        "stop", description="When no step completes in time: 'stop' dumps every rank's stacks and exits with code 4; "
        "'warn' dumps and logs, and keeps waiting; 'off'."
    )
    timeout_s: float | None = Field(
        None, gt=0, description="Seconds without a completed step before the watchdog fires. None: step_time_factor "
        "x the slowest step so far, at least min_timeout_s."
    )
    step_time_factor: float = Field(10.0, gt=1, description="With timeout_s None: the allowance in multiples of the slowest step seen.")
    min_timeout_s: float = Field(600.0, gt=0, description="With timeout_s None: the allowance is never shorter than this.")
    first_step_timeout_s: float = Field(
        1800.0, gt=0, description="The allowance before the first step of a (re)start completes, and while a "
        "checkpoint is saved or an evaluation runs."
    )


class HealthOptions(_Section):
    """The `health:` section: each check's threshold and action, and the hang watchdog (see docs/health.md)."""

    nonfinite: NonfiniteOptions = Field(default_factory=NonfiniteOptions, description="NaN / inf loss or gradients.")
    zero_spread: ZeroSpreadOptions = Field(default_factory=ZeroSpreadOptions, description="Groups with no reward spread.")
    truncation: TruncationOptions = Field(default_factory=TruncationOptions, description="Completions cut at the limit.")
    length: LengthOptions = Field(default_factory=LengthOptions, description="Completion length collapse / explosion.")
    entropy: EntropyOptions = Field(default_factory=EntropyOptions, description="Entropy collapse.")
    kl: KlOptions = Field(default_factory=KlOptions, description="KL blow-up.")
    reward_hacking: RewardHackingOptions = Field(default_factory=RewardHackingOptions, description="Reward hacking.")
    tool_failures: ToolFailuresOptions = Field(default_factory=ToolFailuresOptions, description="Tool calls failing.")
    tool_calls: ToolCallsOptions = Field(default_factory=ToolCallsOptions, description="The policy stopping calling its tools.")
    hang: HangOptions = Field(default_factory=HangOptions, description="The hang watchdog.")
