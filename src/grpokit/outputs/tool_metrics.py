"""What the agent did with its tools, in a run's logs: TRL's two tool metrics under names that say what they measure.

GRPOTrainer (TRL 1.16) logs two numbers per step when it trains with `tools`:

| TRL's key | grpokit's key | what it is |
|---|---|---|
| `tools/call_frequency` | `tools/calls_per_completion` | tool calls per completion: every call of the step's completions (all ranks) over the number of completions; 2.0 when each completion called twice |
| `tools/failure_frequency` | `tools/failure_share` | the share of those calls that failed: the tool raised, was unknown, or the call was malformed (0..1) |

grpokit renames them once, at the head of the run's callbacks (`ToolMetricNamesCallback` in
`grpokit.outputs.metrics`), so `metrics.jsonl`, the health checks, TensorBoard, MLflow and W&B all
read the same names. Eval logs (`eval_tools/...`) are renamed the same way. TRL writes a failure share
of 0 for steps with no call at all; grpokit leaves the share out of those logs (no call, no share), so
a policy that stopped calling its tools does not look like one whose calls all succeed.

Example:
    >>> readable_tool_metrics({"tools/call_frequency": 1.5, "tools/failure_frequency": 0.25, "loss": 0.1})
    {'loss': 0.1, 'tools/calls_per_completion': 1.5, 'tools/failure_share': 0.25}
    >>> readable_tool_metrics({"tools/call_frequency": 0.0, "tools/failure_frequency": 0.0})
    {'tools/calls_per_completion': 0.0}
"""

from __future__ import annotations

from typing import Any

CALLS_PER_COMPLETION = "tools/calls_per_completion"
FAILURE_SHARE = "tools/failure_share"
EVAL_PREFIX = "eval_"
# TRL's key -> grpokit's key (TRL 1.16, grpo_trainer.py `_tool_call_loop`'s counts).
TRL_TOOL_METRICS = {
    "tools/call_frequency": CALLS_PER_COMPLETION,
    "tools/failure_frequency": FAILURE_SHARE,
}


def readable_tool_metrics(logs: dict[str, Any]) -> dict[str, Any]:
    """Rename TRL's tool metrics in `logs` in place (see the module docstring) and return `logs`.

    Logs without tool metrics are returned unchanged.
    """
    for prefix in ("", EVAL_PREFIX):
        for trl_key, key in TRL_TOOL_METRICS.items():
            if prefix + trl_key in logs:
                logs[prefix + key] = logs.pop(prefix + trl_key)
        calls = logs.get(prefix + CALLS_PER_COMPLETION)
        if isinstance(calls, (int, float)) and not isinstance(calls, bool) and calls == 0:
            logs.pop(prefix + FAILURE_SHARE, None)
    return logs
