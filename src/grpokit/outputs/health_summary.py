"""The run's health over the whole run, from its metrics rows: what a check's patience can miss.

The health checks (`grpokit.trainer.health_checks`) fire on a condition that held for `patience` logs in
a row, which a short run never reaches. This module reads every logged training row of a finished (or
stopped) run at once and says what held over the run:

| finding | when |
|---|---|
| `nothing_learned` | the gradient norm was 0 on every logged step: no weight moved |
| `truncation` | every completion was cut at `max_completion_length`, or on average at least `TRUNCATED_SHARE` of them |
| `zero_spread` | on average at least `ZERO_SPREAD_SHARE` of the groups had the same reward for every completion |
| `unfinished` | the last logged step is before `max_steps`: the run was stopped (a signal, a health check, a crash) |
| `tool_failures` | on average at least `TOOL_FAILURE_SHARE` of the tool calls failed (over the logs with a call) |
| `tool_calls` | the policy called its tools, then made none in the last quarter of the logs (at least `STOPPED_LOGS`); or never called one |

`health_findings(metrics, config)` is pure (rows in, findings out); the report puts them at the top of its
health section and `grpokit train` prints them at the end of every run, with the verdict of
`grpokit.outputs.report_health.health_verdict`: healthy, warnings or stopped.

Example:
    >>> [f.text for f in health_findings([{"step": 1, "grad_norm": 0.0}, {"step": 2, "grad_norm": 0.0}], None)]
    ['grad norm was 0 on every step (2 of 2): nothing was learned']
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from grpokit.outputs.tool_metrics import CALLS_PER_COMPLETION, FAILURE_SHARE

ZERO_SPREAD_SHARE = 0.5  # mean share of zero-spread groups over the run that is worth a warning: most groups taught nothing
TRUNCATED_SHARE = 0.5  # mean share of cut completions over the run that is worth a warning
ZERO_GRAD_NORM = 1e-12  # below this, a gradient norm is zero (float32 noise stays far above it)
DYNAMIC_SAMPLING_SHARE = "dynamic_sampling/zero_spread_share"  # the share before dynamic sampling dropped groups
TOOL_FAILURE_SHARE = 0.5  # mean share of failed tool calls over the run that is worth a warning
NO_CALLS = 0.01  # tool calls per completion at or below this: none (the default of health.tool_calls.stopped_below)
STOPPED_LOGS = 3  # the fewest last logs without a call that say the policy stopped calling


@dataclass(frozen=True)
class Finding:
    """One thing that held over the whole run: which, in one line, and what to do about it."""

    name: str  # nothing_learned | truncation | zero_spread | tool_failures | tool_calls | unfinished
    text: str
    fix: str
    value: float | None = None  # the share or norm behind it


def _values(metrics: Sequence[dict[str, Any]], key: str) -> list[float]:
    values = []
    for line in metrics:
        value = line.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            values.append(float(value))
    return values


def _every_step(count: int, metrics: Sequence[dict[str, Any]]) -> str:
    """'every step (N of N)': said of the logged steps, so a run that logged every 10th step is not overstated."""
    last_step = max((int(line.get("step", 0)) for line in metrics), default=count)
    return f"every step ({count} of {last_step})" if count == last_step else f"every logged step ({count} logs over {last_step} steps)"


def _unfinished(metrics: Sequence[dict[str, Any]], config: dict[str, Any] | None) -> Finding | None:
    """A run whose last logged step falls short of `max_steps` (the last step is always logged)."""
    max_steps = (config or {}).get("max_steps")
    steps = [int(line["step"]) for line in metrics if isinstance(line.get("step"), (int, float))]
    if not isinstance(max_steps, int) or isinstance(max_steps, bool) or max_steps <= 0 or not steps or max(steps) >= max_steps:
        return None
    return Finding(
        "unfinished",
        f"the run ended at step {max(steps)} of {max_steps} (max_steps): it was stopped before the end",
        "run the same command again: with `resume: auto` (the default) it goes on from its last checkpoint",
        max(steps) / max_steps,
    )


def _nothing_learned(metrics: Sequence[dict[str, Any]]) -> Finding | None:
    norms = _values(metrics, "grad_norm")
    if not norms or any(abs(norm) > ZERO_GRAD_NORM for norm in norms):
        return None
    return Finding(
        "nothing_learned",
        f"grad norm was 0 on {_every_step(len(norms), metrics)}: nothing was learned",
        "every group's completions got the same reward (zero advantage) or the learning rate is 0: see the "
        "lines below, raise temperature or num_generations, or give the rewards partial credit",
        0.0,
    )


def _truncation(metrics: Sequence[dict[str, Any]], config: dict[str, Any] | None) -> Finding | None:
    shares = _values(metrics, "completions/clipped_ratio")
    if not shares:
        return None
    limit = (config or {}).get("max_completion_length")
    named = f"max_completion_length={limit}" if isinstance(limit, int) else "max_completion_length"
    fix = "raise max_completion_length, or reward shorter answers (a length reward): a cut completion rarely scores"
    if min(shares) >= 1.0:
        return Finding("truncation", f"every completion was cut at {named}", fix, 1.0)
    mean = math.fsum(shares) / len(shares)
    if mean < TRUNCATED_SHARE:
        return None
    return Finding("truncation", f"{mean:.0%} of completions were cut at {named}, on average over the run", fix, mean)


def _zero_spread(metrics: Sequence[dict[str, Any]]) -> Finding | None:
    shares = _values(metrics, DYNAMIC_SAMPLING_SHARE) or _values(metrics, "frac_reward_zero_std")
    if not shares:
        return None
    mean = math.fsum(shares) / len(shares)
    if mean < ZERO_SPREAD_SHARE:
        return None
    return Finding(
        "zero_spread",
        f"all completions of a prompt got the same reward in {mean:.0%} of groups" + (" over the run" if mean < 1 else ""),
        "such groups teach nothing: raise temperature or num_generations, give the rewards partial credit, "
        "turn on dynamic_sampling, or filter the data with grpokit probe --write-filtered",
        mean,
    )


def _tool_failures(metrics: Sequence[dict[str, Any]]) -> Finding | None:
    shares = _values(metrics, FAILURE_SHARE)  # logged only for steps with a call
    if not shares:
        return None
    mean = math.fsum(shares) / len(shares)
    if mean < TOOL_FAILURE_SHARE:
        return None
    return Finding(
        "tool_failures",
        f"{mean:.0%} of the tool calls failed, on average over the steps that made one",
        "read the tool calls and results in the sample completions: make the tools accept the arguments the model "
        "sends or return an error it can act on; the tools' docstrings are the schema the model sees",
        mean,
    )


def _tool_calls(metrics: Sequence[dict[str, Any]]) -> Finding | None:
    calls = _values(metrics, CALLS_PER_COMPLETION)
    if not calls:
        return None
    if max(calls) <= NO_CALLS:
        return Finding(
            "tool_calls",
            f"no completion called a tool on {_every_step(len(calls), metrics)}",
            "run grpokit validate (the chat template must support tool calling), check the tools' docstrings and "
            "say in the prompt or system prompt that tools are there to be used",
            max(calls),
        )
    without = next((count for count, value in enumerate(reversed(calls)) if value > NO_CALLS), len(calls))
    if without < max(STOPPED_LOGS, len(calls) // 4):
        return None
    return Finding(
        "tool_calls",
        f"the policy stopped calling its tools: none in the last {without} logs, after up to {max(calls):.2f} calls per completion",
        "reward the answers a tool call makes right (the rewards may pay as much without the tool), lower "
        "learning_rate, and read the sample completions",
        0.0,
    )


def health_findings(metrics: Sequence[dict[str, Any]], config: dict[str, Any] | None) -> list[Finding]:
    """What held over the logged training rows of a run (`metrics.jsonl` without its eval lines).

    `config` is the resolved config as saved (`grpokit_config.yaml`; None when absent): it names
    `max_completion_length`. Returns the findings, most serious first; [] for a run with no rows.
    """
    found = [
        _unfinished(metrics, config),
        _nothing_learned(metrics),
        _truncation(metrics, config),
        _zero_spread(metrics),
        _tool_failures(metrics),
        _tool_calls(metrics),
    ]
    return [finding for finding in found if finding is not None]
