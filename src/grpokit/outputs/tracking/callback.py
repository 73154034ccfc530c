"""The trainer callback that drives the trackers: run start, per-step metrics, completions tables, system metrics, end."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from grpokit.compat.trl_internals import recent_generation_batch
from grpokit.outputs.conversation import MESSAGES_KEY, conversation_text, is_conversation
from grpokit.outputs.run_record import number, tokens_per_second
from grpokit.outputs.tracking.base import NullTracker, RunStart
from grpokit.outputs.tracking.system_metrics import SystemMetricsSampler

logger = logging.getLogger("grpokit.tracking")

COMPLETIONS_KEY = "completions"
# The Trainer's end-of-training summary: logged once, under these names, at the last step.
SUMMARY_KEYS = ("train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss")


def numeric_metrics(logs: dict[str, Any]) -> dict[str, float]:
    """The finite numbers in a trainer `logs` dict (TRL logs None for a metric with no valid value)."""
    return {
        key: float(value)
        for key, value in logs.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    }


def message_text(value: Any) -> str:
    """A prompt or completion as text: plain strings unchanged, chat messages as `role: content` lines
    (tool calls and tool results included: `grpokit.outputs.conversation.conversation_text`)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "role" not in value:
        content = value.get("content", "")
        if isinstance(content, list):  # [{"type": "text", "text": ...}, {"type": "image"}]
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        return str(content)
    if isinstance(value, dict) or is_conversation(value):
        return conversation_text(value)
    if isinstance(value, list):
        return "\n".join(message_text(item) for item in value)
    return str(value)


def trl_recent_completions(trainer, *, keep_messages: bool = False) -> list[dict[str, Any]]:
    """The latest generation batch GRPOTrainer keeps: one row per completion with prompt, completion, each reward, advantage.

    `completion` is text; with `keep_messages`, a chat completion is also kept as its message list
    under `messages` (tool calls and results included) for the report to draw.

    Read through `grpokit.compat.trl_internals` (the buffer is private to TRL); with a TRL release that
    keeps none, this returns no rows and the callback says so once.
    """
    batch = recent_generation_batch(trainer)
    if batch is None:
        return []
    rows = []
    for i, (prompt, completion) in enumerate(zip(batch.prompts, batch.completions)):
        row: dict[str, Any] = {"prompt": message_text(prompt), "completion": message_text(completion)}
        if keep_messages and is_conversation(completion):
            row[MESSAGES_KEY] = completion
        for name, values in batch.rewards.items():
            value = values[i] if i < len(values) else None
            row[f"rewards/{name}"] = (
                value if isinstance(value, (int, float)) and math.isfinite(value) else None
            )
        if i < len(batch.advantages):
            row["advantage"] = batch.advantages[i]
        rows.append(row)
    return rows


class TrackingCallback(TrainerCallback):
    """Sends what the trainer logs to `tracker` (one tracker, a composite, or `NullTracker`).

    - on_train_begin: open the run (the same run again when resuming), log the dataset, start system metrics;
    - on_log: every numeric log value at the global step (`step_time` included: `StepTimeCallback` runs
      first), plus `tokens_per_second`;
      every `completions_every` steps a completions table from `completions()`;
    - on_step_end: pending system metric samples;
    - on_train_end: the last completions table, close the run, report lost log calls.
    """

    def __init__(
        self,
        tracker,
        *,
        run_name: str,
        config: dict[str, Any],
        output_dir: str | Path,
        train_dataset: Any = None,
        dataset_source: str = "",
        completions: Callable[[], list[dict[str, Any]]] | None = None,
        completions_every: int = 0,
        system_metrics_interval: float = 0.0,
        tags: dict[str, str] | None = None,
        register_model_as: str | None = None,
        stopped_by_signal: Callable[[], int | None] | None = None,
    ) -> None:
        self.tracker = tracker
        self.stopped_by_signal = stopped_by_signal  # the signal that stopped training early, if any: KILLED
        self.run_name = run_name
        self.config = config
        self.output_dir = Path(output_dir)
        self.train_dataset = train_dataset
        self.dataset_source = dataset_source
        self.completions = completions
        self.completions_every = completions_every
        self.system_metrics_interval = system_metrics_interval
        self.tags = tags or {}
        self.register_model_as = register_model_as
        self._sampler: SystemMetricsSampler | None = None
        self._last_tokens_line: dict[str, Any] | None = None
        self._last_table_step = -1
        self._said_no_completions = False
        self._finished = False

    @property
    def active(self) -> bool:
        return not isinstance(self.tracker, NullTracker)

    def on_train_begin(self, args, state, control, **kwargs):
        if not self.active or not state.is_world_process_zero:
            return
        self.tracker.start(
            RunStart(
                run_name=self.run_name,
                state_dir=Path(args.output_dir),
                output_dir=self.output_dir,
                resumed_step=state.global_step,
                config=self.config,
                tags=self.tags,
            )
        )
        if self.train_dataset is not None:
            self.tracker.log_dataset(self.train_dataset, name="train", source=self.dataset_source)
        if self.system_metrics_interval > 0:
            self._sampler = SystemMetricsSampler(self.system_metrics_interval)
            self._sampler.start()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not self.active or not state.is_world_process_zero or not logs:
            return
        metrics = numeric_metrics(logs)
        if not any(key in logs for key in SUMMARY_KEYS) and not any(key.startswith("eval_") for key in logs):
            metrics.update(self._throughput(state.global_step, logs))
        self.tracker.log_metrics(metrics, step=state.global_step)
        self._flush_system_metrics(state.global_step)
        if self.completions_every and state.global_step % self.completions_every == 0:
            self._log_completions(state.global_step)

    def _throughput(self, step: int, logs: dict[str, Any]) -> dict[str, float]:
        """Tokens per second since the previous training log that held `num_tokens` (TRL's, cumulative), over
        the `step_time` that `StepTimeCallback` put in the log: the report's figure (`run_record.tokens_per_second`)."""
        line = {"step": step, "num_tokens": logs.get("num_tokens"), "step_time": logs.get("step_time")}
        points = tokens_per_second([self._last_tokens_line, line] if self._last_tokens_line else [line])
        if number(line["num_tokens"]) is not None:
            self._last_tokens_line = line
        return {"tokens_per_second": points[-1][1]} if points else {}

    def _log_completions(self, step: int) -> None:
        if self.completions is None or step == self._last_table_step:
            return
        rows = self.completions()
        if not rows:
            if not self._said_no_completions:
                self._said_no_completions = True
                logger.info("tracking: the trainer kept no completions to log at step %d", step)
            return
        self.tracker.log_table(COMPLETIONS_KEY, [{"step": step, **row} for row in rows], step=step)
        self._last_table_step = step

    def _flush_system_metrics(self, step: int, samples=None) -> None:
        if self._sampler is None:
            return
        for sample in samples if samples is not None else self._sampler.drain():
            self.tracker.log_metrics(sample.values, step=step, timestamp=sample.timestamp)

    def on_step_end(self, args, state, control, **kwargs):
        if self.active and state.is_world_process_zero:
            self._flush_system_metrics(state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        if not self.active or not state.is_world_process_zero:
            return
        if self.completions_every:
            self._log_completions(state.global_step)
        if self._sampler is not None:
            self._flush_system_metrics(state.global_step, self._sampler.stop())
            self._sampler = None
        signum = self.stopped_by_signal() if self.stopped_by_signal is not None else None
        if signum is None:
            self.tracker.finish(success=True)
        else:
            self.tracker.finish(success=True, stopped_by_signal=signum)  # the run ends KILLED
        self._finished = True
        for line in self.tracker.lost_calls_report():
            logger.warning(line)

    def end_stopped_by_signal(self, signum: int) -> None:
        """Close the run as stopped by `signum` when the process exits at once (a second signal, a stuck step)."""
        if self.active and not self._finished:
            self._finished = True
            self.tracker.finish(success=False, stopped_by_signal=signum)

    def log_final_model(self, model_dir: Path) -> None:
        """After the trainer saved the model: upload it (MLflow), register it if asked, report new losses."""
        if not self.active:
            return
        before = self.tracker.lost_calls_report()
        self.tracker.log_model(model_dir, registered_name=self.register_model_as)
        after = self.tracker.lost_calls_report()
        if after != before:
            for line in after:
                logger.warning(line)
