"""The parts every health check is made of: one reading of a log, a transition, the `Check` base (no torch).

`grpokit.trainer.health_checks` holds the checks of the training metrics and the `HealthMonitor` that
runs them; `grpokit.trainer.tool_checks` the checks of the agent's tool use. Both build on these.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Reading:
    """One check's look at one log: the value it read and whether it counts against the run."""

    value: float
    bad: bool


@dataclass(frozen=True)
class Transition:
    """A check that fired or cleared at this log."""

    check: str
    status: str  # warned | tripped | recovered
    message: str
    value: float | None
    fix: str


def number(value: Any) -> float | None:
    """A log value as a float (NaN and inf kept), or None when it is not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def in_a_row(count: int, what: str = "log") -> str:
    return f"{count} {what}{'s' if count != 1 else ''} in a row"


def is_eval_log(logs: dict[str, Any]) -> bool:
    return any(key.startswith("eval_") for key in logs)


class Check:
    """One health check. Subclasses set `name`, read their log key, and say what they saw."""

    name = ""
    reads_eval_logs = False
    scales_with_the_run = True  # a default patience shrinks to fit a short run (`scaled_patience`)

    def __init__(self, options) -> None:
        self.options = options
        self.patience_for_run: int | None = None  # set by `HealthMonitor.fit_to_run`

    @property
    def action(self) -> str:
        return self.options.action

    @property
    def patience(self) -> int:
        if self.patience_for_run is not None:
            return self.patience_for_run
        return getattr(self.options, "patience", 1)

    def read(self, logs: dict[str, Any]) -> Reading | None:
        raise NotImplementedError

    def describe(self, reading: Reading, streak: int, logs: dict[str, Any]) -> str:
        raise NotImplementedError

    def fix(self, reading: Reading) -> str:
        raise NotImplementedError


class ThresholdCheck(Check):
    """Counts a log whose `key` is at or above the option `threshold`."""

    key = ""

    def read(self, logs):
        value = number(logs.get(self.key))
        if value is None or not math.isfinite(value):
            return None
        return Reading(value, value >= self.options.threshold)
