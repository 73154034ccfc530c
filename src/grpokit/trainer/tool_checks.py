"""The health checks of an agent's tool use (no torch): many failed tool calls, and a policy that stops calling.

Both read the tool metrics as `grpokit.outputs.tool_metrics` names them, and run in the
`HealthMonitor` beside the other checks, with the same warn / stop actions and patience
(options: `health.tool_failures`, `health.tool_calls`). A run without tools logs neither metric, so
neither check ever reads anything there.

Example:
    >>> from grpokit.config.health import ToolCallsOptions
    >>> check = ToolCallsCheck(ToolCallsOptions())
    >>> [check.read({"tools/calls_per_completion": v}).bad for v in (0.0, 0.5, 0.0)]
    [False, False, True]
"""

from __future__ import annotations

import math

from grpokit.outputs.tool_metrics import CALLS_PER_COMPLETION, FAILURE_SHARE
from grpokit.trainer.health_base import Check, Reading, ThresholdCheck, in_a_row, number


class ToolFailuresCheck(ThresholdCheck):
    """The share of the step's tool calls that failed, at or above `threshold` (logs with no call have no share)."""

    name, key = "tool_failures", FAILURE_SHARE

    def describe(self, reading, streak, logs):
        calls = number(logs.get(CALLS_PER_COMPLETION))
        per_completion = f" ({calls:.2f} calls per completion)" if calls is not None else ""
        return (
            f"{reading.value:.0%} of the tool calls failed{per_completion}, {in_a_row(streak)} at or above "
            f"{self.options.threshold:.0%}"
        )

    def fix(self, reading):
        return (
            "read the tool calls and results in the sample completions: a tool that raises on the arguments the model "
            "sends, a misspelt tool name or arguments of the wrong type; make the tool accept them or return an error "
            "the model can act on, and check the tools' docstrings (they are the schema the model sees)"
        )


class ToolCallsCheck(Check):
    """Tool calls per completion at or below `stopped_below`, after an earlier log was above it."""

    name = "tool_calls"

    def __init__(self, options) -> None:
        super().__init__(options)
        self.peak: float | None = None  # the most calls per completion seen so far (also before a resume)

    def value_of(self, logs) -> float | None:
        value = number(logs.get(CALLS_PER_COMPLETION))
        return value if value is not None and math.isfinite(value) else None

    def learn(self, value: float) -> None:
        self.peak = value if self.peak is None else max(self.peak, value)

    def read(self, logs):
        value = self.value_of(logs)
        if value is None:
            return None
        had_called = self.peak is not None and self.peak > self.options.stopped_below
        self.learn(value)
        return Reading(value, had_called and value <= self.options.stopped_below)

    def describe(self, reading, streak, logs):
        return (
            f"the policy stopped calling its tools: {reading.value:.3g} calls per completion, {in_a_row(streak)} at or "
            f"below {self.options.stopped_below:g}, after up to {self.peak or 0.0:.3g} earlier"
        )

    def fix(self, reading):
        return (
            "the rewards likely pay as much without the tool: reward the answers a tool call makes right (or a correct "
            "call), lower learning_rate, and read the sample completions to see what replaced the calls"
        )
