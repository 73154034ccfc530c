"""Experiment tracking behind one factory: MLflow, Weights & Biases, and transformers' TensorBoard writer.

    tracker = build_trackers(config, is_main_process=True)    # NullTracker when nothing is configured
    replace_transformers_trackers(trainer, config)             # transformers' own trackers out of the way
    callback = tracking_callback(trainer, config, train_dataset, is_main_process=True)   # grpokit's, one of the run's callbacks
    callback.log_final_model(output_dir)                       # after the model is saved

grpokit's own keys switch trackers on (`mlflow_uri` + `mlflow_experiment_name`, `wandb_project`, or
`wandb_token` alone as in the AWS sample, which logs to the project `grpokit`);
transformers' MLflowCallback / WandbCallback are removed because they read environment variables and
log every TrainingArguments field. `report_to: tensorboard` uses transformers' TensorBoardCallback,
writing under `<output_dir>/tensorboard`, placed among the run's callbacks after those that add to the
logs (`tensorboard_callback`). Tracking never stops a training: see `GuardedTracker`.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grpokit.config.schema import RunConfig
from grpokit.outputs.files import TENSORBOARD_DIR
from grpokit.outputs.tracking.base import CompositeTracker, GuardedTracker, NullTracker, RunStart, Tracker
from grpokit.outputs.tracking.callback import TrackingCallback, trl_recent_completions

__all__ = [
    "CompositeTracker",
    "GuardedTracker",
    "NullTracker",
    "RunStart",
    "Tracker",
    "TrackingCallback",
    "build_trackers",
    "default_run_name",
    "replace_transformers_trackers",
    "tensorboard_callback",
    "tracking_callback",
]

logger = logging.getLogger("grpokit.tracking")

def default_run_name(model_id: str, now: float | None = None) -> str:
    """`<model>-<YYYYmmdd-HHMMSS>`: the last part of the model id or path, then the local start time.

    >>> default_run_name("Qwen/Qwen2.5-0.5B-Instruct", now=0.0).startswith("Qwen2.5-0.5B-Instruct-19")
    True
    """
    model = re.split(r"[/:\\]", model_id.rstrip("/\\"))[-1] or "model"
    return f"{model}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}"


def run_name_for(config: RunConfig) -> str:
    return config.run_name or default_run_name(config.options.model_id)


def build_trackers(config: RunConfig, *, is_main_process: bool) -> Tracker:
    """The trackers `config` switches on, each behind a `GuardedTracker`, as one tracker.

    Returns `NullTracker` on processes other than rank 0 and when no tracker is configured; one guarded
    tracker; or a `CompositeTracker` of several. Creating a tracker opens no connection (that happens at
    train start), so this never fails because a server is down.
    """
    if not is_main_process:
        return NullTracker()
    options = config.options
    trackers: list[GuardedTracker] = []
    if options.mlflow_uri and options.mlflow_experiment_name:
        from grpokit.outputs.tracking.mlflow_tracker import MlflowTracker

        mlflow = MlflowTracker(
            tracking_uri=options.mlflow_uri,
            experiment_name=options.mlflow_experiment_name,
            run_name=options.mlflow_run_name,
        )
        trackers.append(GuardedTracker(mlflow))
    elif options.mlflow_uri or options.mlflow_experiment_name:
        logger.warning("MLflow tracking is off: set both mlflow_uri and mlflow_experiment_name to turn it on")
    if options.resolved_wandb_project:
        from grpokit.outputs.tracking.wandb_tracker import WandbTracker

        if not options.wandb_project:
            logger.info("wandb_token is set: tracking to W&B project '%s' (set wandb_project to choose)", options.resolved_wandb_project)
        api_key = os.environ.get("WANDB_API_KEY") or options.wandb_token
        trackers.append(
            GuardedTracker(
                WandbTracker(project=options.resolved_wandb_project, mode=options.wandb_mode, api_key=api_key)
            )
        )
    if not trackers:
        return NullTracker()
    return trackers[0] if len(trackers) == 1 else CompositeTracker(trackers)


def replace_transformers_trackers(trainer, config: RunConfig) -> None:
    """Remove transformers' MLflow, W&B and TensorBoard callbacks (grpokit adds its own in the run's order)."""
    from transformers.integrations import MLflowCallback, TensorBoardCallback, WandbCallback

    for name, callback_class, enabled_by in (
        ("mlflow", MLflowCallback, "mlflow_uri and mlflow_experiment_name"),
        ("wandb", WandbCallback, "wandb_project"),
    ):
        trainer.remove_callback(callback_class)
        if name in config.report_to and not _tracker_enabled(config, name):
            logger.warning(
                "report_to: %s does nothing by itself in grpokit; set %s to track to %s",
                name,
                enabled_by,
                name,
            )
    trainer.remove_callback(TensorBoardCallback)  # `tensorboard_callback` makes the run's own


def tensorboard_callback(config: RunConfig):
    """transformers' TensorBoard writer under `<output_dir>/tensorboard` when `report_to` names tensorboard; else None."""
    from transformers.integrations import TensorBoardCallback, is_tensorboard_available

    wanted = "tensorboard" in config.report_to or ("all" in config.report_to and is_tensorboard_available())
    if not wanted:  # `report_to: all` takes it when it is installed, as transformers does
        return None
    callback = TensorBoardCallback()
    if callback.logging_dir is None:  # TENSORBOARD_LOGGING_DIR wins, as in transformers
        callback.logging_dir = str(Path(config.options.output_dir) / TENSORBOARD_DIR)
    return callback


def _tracker_enabled(config: RunConfig, name: str) -> bool:
    options = config.options
    if name == "mlflow":
        return bool(options.mlflow_uri and options.mlflow_experiment_name)
    return bool(options.resolved_wandb_project)


def tracking_callback(
    trainer,
    config: RunConfig,
    train_dataset: Any = None,
    *,
    is_main_process: bool,
    stopped_by_signal: Callable[[], int | None] | None = None,
) -> TrackingCallback:
    """grpokit's tracking callback for a built GRPOTrainer: the trackers the config switches on (none off rank 0).

    `stopped_by_signal` says which signal stopped training early (the run then ends KILLED), if any.
    """
    options = config.options
    return TrackingCallback(
        build_trackers(config, is_main_process=is_main_process),
        run_name=run_name_for(config),
        config=config.to_yaml_dict(),
        output_dir=options.output_dir,
        train_dataset=train_dataset,
        dataset_source=options.train_dataset_path,
        completions=lambda: trl_recent_completions(trainer),
        completions_every=options.log_completions_every,
        system_metrics_interval=options.system_metrics_interval,
        tags={"grpokit.model_id": options.model_id},
        register_model_as=options.mlflow_register_model,
        stopped_by_signal=stopped_by_signal,
    )
