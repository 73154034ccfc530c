"""The run's step-by-step record: `metrics.jsonl` and `sample_completions.jsonl`, written on the main process.

Both files are appended to as training goes and never hold a step twice: on resume (or a restart
after a crash) the lines past the resumed step, and any line cut short, are dropped first.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from grpokit.outputs.conversation import MESSAGES_KEY
from grpokit.outputs.files import atomic_write_text
from grpokit.outputs.tool_metrics import readable_tool_metrics
from grpokit.outputs.tracking.callback import trl_recent_completions


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def truncate_jsonl_after(path: Path, step: int) -> None:
    """Drop the records of `path` past `step` (and lines cut short by a crash): a resumed or restarted
    run then never holds a step twice."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                kept.append(line)
        except json.JSONDecodeError:
            continue
    atomic_write_text(path, "".join(line + "\n" for line in kept))


class ToolMetricNamesCallback(TrainerCallback):
    """Renames TRL's tool metrics in each log (`grpokit.outputs.tool_metrics`): first among the run's
    callbacks, so the health checks, metrics.jsonl and every tracker read `tools/calls_per_completion`
    and `tools/failure_share`."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs:
            readable_tool_metrics(logs)


STEP_TIME = "step_time"
TRL_STEP_TIME = "trl_step_time"


class StepTimeCallback(TrainerCallback):
    """`step_time` in each training log: wall seconds per optimizer step since the previous training log (or
    since training began), set before any other grpokit callback reads the log, so metrics.jsonl, the report
    and every tracker hold the same figure.

    TRL 1.16 logs a `step_time` of its own under that name: the seconds spent inside its `training_step`
    (generation, rewards, forward and backward), without the optimizer step, the callbacks or the data
    loading. It is kept as `trl_step_time`; before this callback it overwrote grpokit's wall time in
    metrics.jsonl, which then understated every step by those missing parts.

    Example:
        >>> from types import SimpleNamespace
        >>> timer, state = StepTimeCallback(), SimpleNamespace(global_step=0)
        >>> timer.on_train_begin(None, state, None)
        >>> state.global_step, logs = 2, {"loss": 0.1, "step_time": 0.001}
        >>> timer.on_log(None, state, None, logs=logs)
        >>> sorted(logs), logs["trl_step_time"], 0 < logs["step_time"] < 1
        (['loss', 'step_time', 'trl_step_time'], 0.001, True)
    """

    def __init__(self) -> None:
        self._last_time: float | None = None
        self._last_step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self._last_time, self._last_step = time.perf_counter(), state.global_step

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "train_runtime" in logs or any(key.startswith("eval_") for key in logs):
            return  # the end-of-training summary and evaluations are not steps: their time goes to the next step
        now = time.perf_counter()
        if STEP_TIME in logs:
            logs[TRL_STEP_TIME] = logs.pop(STEP_TIME)
        steps = max(state.global_step - self._last_step, 1)
        logs[STEP_TIME] = (now - (self._last_time or now)) / steps
        self._last_time, self._last_step = now, state.global_step


class MetricsJsonlCallback(TrainerCallback):
    """Append one JSON object per logged training step to `metrics.jsonl`.

    Each line holds `step`, `epoch`, `step_time` (wall seconds per optimizer step since the previous line,
    set in the log by `StepTimeCallback`; TRL's own figure as `trl_step_time`), and everything TRL logged (`reward`, `rewards/<name>/mean`, `loss`, `completions/mean_length`, ...;
    its tool metrics as `tools/calls_per_completion` and `tools/failure_share`),
    plus `rewards/<name>/failures` for rewards configured `on_error: zero`. On resume, lines past the
    resumed step are dropped so the file never holds a step twice.
    """

    def __init__(self, path: str | Path, failure_counts: Callable[[], dict[str, int]] | None = None) -> None:
        self.path = Path(path)
        self.failure_counts = failure_counts

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        truncate_jsonl_after(self.path, state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or "train_runtime" in logs:
            return
        if any(key.startswith("eval_") for key in logs):
            record = {"step": state.global_step, **{k: _finite(v) for k, v in logs.items()}}
        else:
            record = {"step": state.global_step, "epoch": state.epoch, STEP_TIME: logs.get(STEP_TIME)}
            record.update({key: _finite(value) for key, value in logs.items()})
        if self.failure_counts is not None:
            record.update({f"rewards/{name}/failures": count for name, count in self.failure_counts().items()})
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")


class SampleCompletionsCallback(TrainerCallback):
    """Record a few of TRL's latest completions to `sample_completions.jsonl` for the report.

    At the first logged step, every `every` steps and at the end, up to `per_step` rows of
    `{"step", "prompt", "completion", "reward"}` (the weighted total, as TRL computes it) are appended;
    a chat completion also as `messages`, its message list (assistant turns, tool calls, tool results).
    """

    def __init__(self, trainer, path: str | Path, *, weights: dict[str, float], every: int, per_step: int = 8) -> None:
        self.trainer = trainer
        self.path = Path(path)
        self.weights = weights
        self.every = every
        self.per_step = per_step
        self._recorded_steps: set[int] = set()

    def _record(self, step: int) -> None:
        if step in self._recorded_steps:
            return
        self._recorded_steps.add(step)
        rows = trl_recent_completions(self.trainer, keep_messages=True)[: self.per_step]
        with self.path.open("a", encoding="utf-8") as handle:
            for row in rows:
                scores = [(row.get(f"rewards/{name}"), weight) for name, weight in self.weights.items()]
                present = [score * weight for score, weight in scores if score is not None]
                total = sum(present) if present else None
                record = {"step": step, "prompt": row["prompt"], "completion": row["completion"], "reward": total}
                if MESSAGES_KEY in row:
                    record[MESSAGES_KEY] = row[MESSAGES_KEY]
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            truncate_jsonl_after(self.path, state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or self.every <= 0 or not logs or "reward" not in logs:
            return
        if not self._recorded_steps or state.global_step % self.every == 0:
            self._record(state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero and self.every > 0 and self._recorded_steps:
            self._record(state.global_step)
