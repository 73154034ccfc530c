"""What each health check reads and when it counts, and the patience logic they share (no torch, no trainer).

`HealthMonitor.observe(logs, step)` takes one trainer log at a time and returns the checks whose state
changed: fired (`warned` / `tripped`, once the condition has held for `patience` readings in a row)
or cleared (`recovered`). `grpokit.trainer.health` acts on those; the thresholds are its options.

Example:
    >>> from grpokit.config.health import HealthOptions
    >>> monitor = HealthMonitor(HealthOptions(truncation={"threshold": 0.5, "patience": 2}))
    >>> monitor.observe({"completions/clipped_ratio": 0.9}, step=1)
    []
    >>> [t.status for t in monitor.observe({"completions/clipped_ratio": 1.0}, step=2)]
    ['warned']
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from grpokit.outputs.health_events import RECOVERED, TRIPPED, WARNED
from grpokit.trainer.health_base import (
    Check,
    Reading,
    ThresholdCheck,
    Transition,
    in_a_row,
    is_eval_log,
    number,
)
from grpokit.trainer.health_patience import scaled_patience
from grpokit.trainer.tool_checks import ToolCallsCheck, ToolFailuresCheck


class NonfiniteCheck(Check):
    name = "nonfinite"
    scales_with_the_run = False  # fires at once
    KEYS = ("loss", "grad_norm")
    bad_key: str | None = None  # the log key (or "gradients") that held the non-finite value

    def read(self, logs):
        values = {key: number(logs.get(key)) for key in self.KEYS if number(logs.get(key)) is not None}
        if not values:
            return None
        bad = next(((key, value) for key, value in values.items() if not math.isfinite(value)), None)
        self.bad_key = bad[0] if bad else None
        return Reading(bad[1] if bad else 0.0, bad is not None)

    def describe(self, reading, streak, logs):
        if self.bad_key == "gradients":
            return "the gradients hold NaN / inf values; this update was not applied"
        return f"{self.bad_key} is {reading.value} (an update with a non-finite gradient is never applied)"

    def fix(self, reading):
        return "lower learning_rate, set max_grad_norm (e.g. 1.0), prefer bf16 to fp16, and check the rewards for inf / NaN"


class ZeroSpreadCheck(ThresholdCheck):
    """TRL's share of zero-spread groups; with dynamic sampling, the share before it dropped groups."""

    name, key = "zero_spread", "frac_reward_zero_std"
    BEFORE_DYNAMIC_SAMPLING = "dynamic_sampling/zero_spread_share"

    def read(self, logs):
        if number(logs.get(self.BEFORE_DYNAMIC_SAMPLING)) is not None:
            logs = {**logs, self.key: logs[self.BEFORE_DYNAMIC_SAMPLING]}
        return super().read(logs)

    def describe(self, reading, streak, logs):
        per_reward = ", ".join(
            f"{key.split('/')[1]} {value:.0%}"
            for key, value in logs.items()
            if key.startswith("rewards/") and key.endswith("/frac_zero_std") and number(value) is not None
        )
        return (
            f"in {reading.value:.0%} of groups every completion got the same reward, {in_a_row(streak)} at or "
            f"above {self.options.threshold:.0%}" + (f" (per reward: {per_reward})" if per_reward else "")
        )

    def fix(self, reading):
        return (
            "such groups have zero advantage and teach nothing (with beta 0 the loss is exactly 0): give partial credit "
            "in the rewards, raise num_generations or temperature, or use prompts the model solves only sometimes"
        )


class TruncationCheck(ThresholdCheck):
    name, key = "truncation", "completions/clipped_ratio"

    def __init__(self, options, max_completion_length: int | None = None) -> None:
        super().__init__(options)
        self.max_completion_length = max_completion_length

    def describe(self, reading, streak, logs):
        limit = f"={self.max_completion_length}" if self.max_completion_length else ""
        return (
            f"{reading.value:.0%} of completions were cut at max_completion_length{limit}, {in_a_row(streak)} at "
            f"or above {self.options.threshold:.0%}"
        )

    def fix(self, reading):
        return "raise max_completion_length, or reward shorter answers (a length reward): a cut completion rarely scores"


class KlCheck(Check):
    name = "kl"

    def read(self, logs):
        value = number(logs.get("kl"))
        if value is None or not math.isfinite(value):
            return None
        return Reading(value, value > self.options.threshold)

    def describe(self, reading, streak, logs):
        return f"KL to the reference model is {reading.value:.3g}, above {self.options.threshold:g} for {in_a_row(streak)}"

    def fix(self, reading):
        return "lower learning_rate or raise beta; a KL that keeps growing often means a reward exploit: read the sample completions"


class BaselineCheck(Check):
    """Compares `key` with its mean over the first `baseline_logs` readings (of the run, also after a resume)."""

    key = ""
    unit = ""

    def __init__(self, options) -> None:
        super().__init__(options)
        self.first_values: list[float] = []

    @property
    def baseline(self) -> float | None:
        if len(self.first_values) < self.options.baseline_logs:
            return None
        return math.fsum(self.first_values) / len(self.first_values)

    def value_of(self, logs) -> float | None:
        value = number(logs.get(self.key))
        return value if value is not None and math.isfinite(value) else None

    def learn(self, value: float) -> None:
        if self.baseline is None:
            self.first_values.append(value)

    def read(self, logs):
        value = self.value_of(logs)
        if value is None:
            return None
        baseline = self.baseline
        if baseline is None:
            self.learn(value)
            return Reading(value, False)
        return Reading(value, self.out_of_range(value, baseline))

    def out_of_range(self, value: float, baseline: float) -> bool:
        return value < baseline * self.options.collapse_ratio


class LengthCheck(BaselineCheck):
    name, key = "length", "completions/mean_length"

    def out_of_range(self, value, baseline):
        return value < baseline * self.options.collapse_ratio or value > baseline * self.options.explode_ratio

    def describe(self, reading, streak, logs):
        baseline = self.baseline or 0.0
        side, ratio = ("below", self.options.collapse_ratio) if reading.value < baseline else ("above", self.options.explode_ratio)
        return (
            f"mean completion length {reading.value:.1f} tokens is {side} {ratio:g}x its starting {baseline:.1f}, "
            f"{in_a_row(streak)}"
        )

    def fix(self, reading):
        if reading.value < (self.baseline or 0.0):
            return "a reward may favour short or empty answers (check length and format rewards); lower learning_rate"
        return "add a length penalty or lower max_completion_length; long completions that keep growing often repeat themselves"


class EntropyCheck(BaselineCheck):
    name, key = "entropy", "entropy"

    def describe(self, reading, streak, logs):
        return (
            f"token entropy {reading.value:.3g} is below {self.options.collapse_ratio:g}x its starting "
            f"{self.baseline or 0.0:.3g}, {in_a_row(streak)}: the policy has stopped exploring"
        )

    def fix(self, reading):
        return "raise temperature, lower learning_rate, or add a KL term (beta > 0) to keep the policy near the reference"


class RewardHackingCheck(Check):
    """At each evaluation: did the training reward rise since the last one while the eval reward fell?"""

    name = "reward_hacking"
    reads_eval_logs = True
    scales_with_the_run = False  # counts evaluations, not logs

    def __init__(self, options) -> None:
        super().__init__(options)
        self.train_rewards: list[float] = []
        self.history: list[tuple[float, float]] = []  # (mean training reward since the previous eval, eval reward)

    def read(self, logs):
        if not is_eval_log(logs):
            reward = number(logs.get("reward"))
            if reward is not None and math.isfinite(reward):
                self.train_rewards.append(reward)
            return None
        eval_reward = number(logs.get("eval_reward"))
        if eval_reward is None or not math.isfinite(eval_reward) or not self.train_rewards:
            return None
        train_mean = math.fsum(self.train_rewards) / len(self.train_rewards)
        self.train_rewards = []
        previous = self.history[-1] if self.history else None
        self.history.append((train_mean, eval_reward))
        bad = previous is not None and train_mean > previous[0] and eval_reward < previous[1]
        return Reading(eval_reward, bad)

    def describe(self, reading, streak, logs):
        (train_from, eval_from), (train_to, eval_to) = self.history[-streak - 1], self.history[-1]
        return (
            f"the training reward rose while the eval reward fell in {in_a_row(streak, 'evaluation')} (training "
            f"{train_from:.3f} -> {train_to:.3f}, eval {eval_from:.3f} -> {eval_to:.3f})"
        )

    def fix(self, reading):
        return (
            "read the sample completions for ways of scoring without solving the task and tighten the reward; keep the "
            "checkpoint with the best eval reward (metric_for_best_model: eval_reward, load_best_model_at_end: true)"
        )


@dataclass
class CheckState:
    streak: int = 0
    status: str = "ok"  # ok | warned | tripped
    seen: bool = False


@dataclass
class HealthMonitor:
    """The checks of a `HealthOptions` and their states; feed it logs, it says what changed."""

    options: Any
    max_completion_length: int | None = None
    checks: list[Check] = field(init=False)
    states: dict[str, CheckState] = field(init=False)

    def __post_init__(self) -> None:
        options = self.options
        checks: list[Check] = [
            NonfiniteCheck(options.nonfinite),
            ZeroSpreadCheck(options.zero_spread),
            TruncationCheck(options.truncation, self.max_completion_length),
            LengthCheck(options.length),
            EntropyCheck(options.entropy),
            KlCheck(options.kl),
            RewardHackingCheck(options.reward_hacking),
            ToolFailuresCheck(options.tool_failures),
            ToolCallsCheck(options.tool_calls),
        ]
        self.checks = [check for check in checks if check.action != "off"]
        self.states = {check.name: CheckState() for check in self.checks}

    def observe(self, logs: dict[str, Any], step: int) -> list[Transition]:
        """Run every check on one trainer log; returns the checks that fired or cleared."""
        evaluating = is_eval_log(logs)
        transitions = []
        for check in self.checks:
            if evaluating and not check.reads_eval_logs:
                continue
            transition = self._update(check, check.read(logs), logs)
            if transition is not None:
                transitions.append(transition)
        return transitions

    def observe_nonfinite_gradients(self, step: int) -> list[Transition]:
        """The gradient check before the optimizer step found NaN / inf."""
        check = next((c for c in self.checks if isinstance(c, NonfiniteCheck)), None)
        if check is None:
            return []
        check.bad_key = "gradients"
        transition = self._update(check, Reading(math.nan, True), {})
        return [transition] if transition is not None else []

    def fit_to_run(self, logs: int | None) -> None:
        """Shrink each default `patience` (one the config did not set) to fit a run of `logs` logs."""
        for check in self.checks:
            explicit = "patience" in getattr(check.options, "model_fields_set", set())
            if check.scales_with_the_run and not explicit and hasattr(check.options, "patience"):
                check.patience_for_run = scaled_patience(check.options.patience, logs)

    def statuses(self) -> dict[str, str]:
        """Each check that has read something: ok, warned or tripped."""
        return {name: state.status for name, state in self.states.items() if state.seen}

    def seed_baselines(self, lines: list[dict[str, Any]]) -> None:
        """Learn the baselines from a resumed run's first training lines of metrics.jsonl."""
        for check in self.checks:
            if isinstance(check, (BaselineCheck, ToolCallsCheck)):
                for line in lines:
                    value = check.value_of(line) if not is_eval_log(line) else None
                    if value is not None:
                        check.learn(value)

    def _update(self, check: Check, reading: Reading | None, logs: dict[str, Any]) -> Transition | None:
        if reading is None:
            return None
        state = self.states[check.name]
        state.seen = True
        value = reading.value if math.isfinite(reading.value) else None
        if not reading.bad:
            state.streak = 0
            if state.status == WARNED:
                state.status = "ok"
                return Transition(check.name, RECOVERED, f"back in range ({value:.3g})" if value is not None else "back in range", value, "")
            return None
        state.streak += 1
        if state.streak < check.patience or state.status != "ok":
            return None
        state.status = TRIPPED if check.action == "stop" else WARNED
        return Transition(check.name, state.status, check.describe(reading, state.streak, logs), value, check.fix(reading))
