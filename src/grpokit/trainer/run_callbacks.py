"""The run's callbacks: built in one function, named, in the order the Trainer calls them.

`build_run_callbacks` makes every grpokit callback of a training run into a `RunCallbacks`, whose
field order is the run order; `install_run_callbacks` hands them to the built GRPOTrainer in that
order, after removing what grpokit replaces (transformers' progress bar and printer, its MLflow, W&B
and TensorBoard callbacks). The recipe then reads them by name: `callbacks.stop.stopped_early_by`,
`callbacks.health.trip`, `callbacks.tracking.log_final_model(...)`.

| field | what it does | why there |
|---|---|---|
| `tool_metric_names` | TRL's tool metrics renamed in each log (`tools/calls_per_completion`, `tools/failure_share`) | first: every callback after it reads one name |
| `step_time` | `step_time` in each log: wall seconds per optimizer step (TRL's own `step_time` kept as `trl_step_time`) | before every reader of a log |
| `extra` | the caller's own (the demo's held-out accuracy) | first: the keys they add to a log are recorded |
| `reward_spread` | adds `rewards/<name>/frac_zero_std` to each log | before health, which names them, and the recorders |
| `health` | the health checks: `health/<check>` in each log, warn or stop | before the recorders |
| `failure_counts` | `on_error: zero` failures summed over ranks (every rank) | before metrics.jsonl reads them |
| `tensorboard` | transformers' writer under `<output_dir>/tensorboard` (`report_to`) | records the logs as enriched above |
| `metrics` | `metrics.jsonl` | |
| `checkpoint_markers` | marks each checkpoint complete once saved | |
| `stop` | SIGTERM / Ctrl-C: checkpoint after this step and stop | before the watchdog |
| `last_step_log` | logs the run's last step whatever `logging_steps` says | after `stop`: a stopped run's last step is logged too |
| `watchdog` | the hang watchdog | after every callback that decides whether a step saves |
| `progress` | the progress bar (main process) | |
| `sample_completions` | `sample_completions.jsonl` | |
| `before_after` | the same prompts answered greedily before and after training (`log_completions_every` > 0) | after training's last step, before tracking ends |
| `tracking` | MLflow / W&B | last: the tracked run ends after everything else |

A new callback is one field where it belongs in that order and one line in `build_run_callbacks`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from grpokit.config.schema import RunConfig
from grpokit.outputs.before_after import before_after_callback
from grpokit.outputs.checkpoints import CheckpointMarkerCallback
from grpokit.outputs.files import BEFORE_AFTER_FILE, METRICS_FILE, SAMPLE_COMPLETIONS_FILE
from grpokit.outputs.metrics import (
    MetricsJsonlCallback,
    SampleCompletionsCallback,
    StepTimeCallback,
    ToolMetricNamesCallback,
)
from grpokit.outputs.tracking import (
    TrackingCallback,
    replace_transformers_trackers,
    tensorboard_callback,
    tracking_callback,
)
from grpokit.rewards.reward_set import RewardSet
from grpokit.trainer.callbacks import GracefulStopCallback, LastStepLogCallback, RichProgressCallback
from grpokit.trainer.health import HealthCallback
from grpokit.trainer.reward_callbacks import FailureCountsAcrossRanks, RewardSpreadCallback
from grpokit.trainer.watchdog import HangWatchdogCallback


@dataclass(frozen=True)
class RunCallbacks:
    """grpokit's callbacks of one training run; the field order is the order the Trainer calls them in."""

    tool_metric_names: ToolMetricNamesCallback
    step_time: StepTimeCallback
    extra: tuple[TrainerCallback, ...]
    reward_spread: RewardSpreadCallback
    health: HealthCallback
    failure_counts: FailureCountsAcrossRanks
    tensorboard: TrainerCallback | None  # transformers' TensorBoardCallback, when report_to names it
    metrics: MetricsJsonlCallback
    checkpoint_markers: CheckpointMarkerCallback
    stop: GracefulStopCallback
    last_step_log: LastStepLogCallback
    watchdog: HangWatchdogCallback
    progress: RichProgressCallback
    sample_completions: SampleCompletionsCallback
    before_after: TrainerCallback | None  # None when log_completions_every is 0
    tracking: TrackingCallback

    def in_run_order(self) -> Iterator[TrainerCallback]:
        """Every callback, in field order (`extra` unpacked, an absent one skipped)."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, tuple):
                yield from value
            elif value is not None:
                yield value


def build_run_callbacks(
    trainer: Any,
    config: RunConfig,
    reward_set: RewardSet,
    train_dataset: Any,
    *,
    is_main_process: bool,
    console: Any = None,
    extra: Sequence[TrainerCallback] = (),
) -> RunCallbacks:
    """Every grpokit callback of a run on `trainer` (a built GRPOTrainer), named, in run order.

    `is_main_process`: this process is the job's rank 0 (it alone opens trackers); `extra`: the caller's
    callbacks, called first.
    """
    options = config.options
    output_dir = Path(options.output_dir)
    failure_counts = FailureCountsAcrossRanks(reward_set.failure_counts)
    stop = GracefulStopCallback(timeout=options.stop_timeout)
    tracking = tracking_callback(
        trainer, config, train_dataset, is_main_process=is_main_process, stopped_by_signal=lambda: stop.stopped_early_by
    )
    stop.before_forced_exit.append(tracking.end_stopped_by_signal)  # a second signal or a stuck step: KILLED
    return RunCallbacks(
        tool_metric_names=ToolMetricNamesCallback(),
        step_time=StepTimeCallback(),
        extra=tuple(extra),
        reward_spread=RewardSpreadCallback(trainer),
        health=HealthCallback(
            options.health, output_dir, max_completion_length=config.grpo_config.max_completion_length
        ),
        failure_counts=failure_counts,
        tensorboard=tensorboard_callback(config),
        metrics=MetricsJsonlCallback(output_dir / METRICS_FILE, failure_counts=failure_counts),
        checkpoint_markers=CheckpointMarkerCallback(),
        stop=stop,
        last_step_log=LastStepLogCallback(),
        watchdog=HangWatchdogCallback(options.health.hang, output_dir),
        progress=RichProgressCallback(console),
        sample_completions=SampleCompletionsCallback(
            trainer,
            output_dir / SAMPLE_COMPLETIONS_FILE,
            weights=dict(zip(reward_set.names, reward_set.weights)),
            every=options.log_completions_every,
        ),
        before_after=(
            before_after_callback(trainer, reward_set, trainer.processing_class, output_dir / BEFORE_AFTER_FILE)
            if options.log_completions_every > 0
            else None
        ),
        tracking=tracking,
    )


def install_run_callbacks(trainer: Any, config: RunConfig, callbacks: RunCallbacks) -> None:
    """Give `trainer` the run's callbacks in run order, in place of transformers' progress, printer and trackers."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    replace_transformers_trackers(trainer, config)
    for callback in callbacks.in_run_order():
        trainer.add_callback(callback)
